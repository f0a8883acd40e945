"""Extrude building footprints into closed triangle meshes and write them as PLY.

A footprint (shapely ``Polygon`` or ``MultiPolygon`` in scene metres, holes allowed)
becomes a closed, outward-oriented mesh: walls for every ring, a triangulated roof
that respects holes, and a floor. Closedness matters for ray tracing: a gap lets rays
leak into a building.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from rflocal_core.errors import MeshError


def extrude(footprint: Polygon | MultiPolygon, height_m: float, *, base_z_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Extrude a footprint into a closed prism.

    Parameters
    ----------
    footprint : Polygon or MultiPolygon
        Footprint in scene metres; holes are kept as courtyards.
    height_m : float
        Height of the roof above ``base_z_m``; must be positive.
    base_z_m : float
        Height of the floor.

    Returns
    -------
    vertices : ndarray, shape [num_vertices, 3], float64
    faces : ndarray, shape [num_faces, 3], int64
        Counter-clockwise seen from outside (outward normals).
    """
    if not np.isfinite(height_m) or height_m <= 0:
        msg = f"height_m: expected a positive number of metres, got {height_m!r}"
        raise MeshError(msg)
    parts = list(footprint.geoms) if isinstance(footprint, MultiPolygon) else [footprint]
    all_vertices: list[np.ndarray] = []
    all_faces: list[np.ndarray] = []
    offset = 0
    for part in parts:
        vertices, faces = _extrude_polygon(part, height_m, base_z_m)
        all_vertices.append(vertices)
        all_faces.append(faces + offset)
        offset += len(vertices)
    if not all_vertices:
        msg = "footprint: expected at least one polygon, got an empty geometry"
        raise MeshError(msg)
    return np.concatenate(all_vertices), np.concatenate(all_faces)


def _extrude_polygon(poly: Polygon, height_m: float, base_z_m: float) -> tuple[np.ndarray, np.ndarray]:
    if poly.is_empty or poly.area <= 0:
        msg = "footprint: expected a polygon with positive area, got an empty or flat one"
        raise MeshError(msg)
    poly = orient(shapely.remove_repeated_points(poly), sign=1.0)  # exterior CCW, holes CW
    rings = [np.asarray(poly.exterior.coords)[:-1, :2]]
    rings += [np.asarray(r.coords)[:-1, :2] for r in poly.interiors]

    index: dict[tuple[float, float], int] = {}
    xy: list[np.ndarray] = []
    for ring in rings:
        for point in ring:
            key = (float(point[0]), float(point[1]))
            if key in index:
                msg = f"footprint: ring touches itself at ({key[0]:.3f}, {key[1]:.3f})"
                raise MeshError(msg)
            index[key] = len(index)
        xy.append(ring)
    xy_all = np.concatenate(xy)
    n = len(xy_all)
    bottom = np.column_stack([xy_all, np.full(n, base_z_m)])
    top = np.column_stack([xy_all, np.full(n, base_z_m + height_m)])
    vertices = np.concatenate([bottom, top])

    faces: list[tuple[int, int, int]] = []
    start = 0
    for ring in rings:
        m = len(ring)
        for i in range(m):
            a, b = start + i, start + (i + 1) % m
            # The solid lies left of each ring edge, so (a, b, b') faces outward.
            faces.append((a, b, b + n))
            faces.append((a, b + n, a + n))
        start += m

    triangles = shapely.constrained_delaunay_triangles(poly)
    for tri in triangles.geoms:
        tri = orient(tri, sign=1.0)
        coords = np.asarray(tri.exterior.coords)[:3, :2]
        try:
            ids = [index[(float(c[0]), float(c[1]))] for c in coords]
        except KeyError:
            msg = "footprint: roof triangulation added a vertex not on the outline"
            raise MeshError(msg) from None
        faces.append((ids[0] + n, ids[1] + n, ids[2] + n))  # roof, normal up
        faces.append((ids[0], ids[2], ids[1]))  # floor, normal down
    return vertices, np.asarray(faces, dtype=np.int64)


def is_closed(faces: np.ndarray) -> bool:
    """Return True if every directed edge is matched by exactly one opposite edge.

    That is the condition for a closed, consistently oriented (watertight) surface.
    """
    edges = Counter()
    for a, b, c in np.asarray(faces):
        for u, v in ((a, b), (b, c), (c, a)):
            edges[(int(u), int(v))] += 1
    return all(count == 1 and edges.get((v, u), 0) == 1 for (u, v), count in edges.items())


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Return the enclosed volume (positive for outward-facing faces), in m³."""
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6.0)


def ground_plane(x_min: float, y_min: float, x_max: float, y_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Return a rectangle at z = 0 facing up: ``vertices [4, 3]``, ``faces [2, 3]``."""
    vertices = np.array(
        [[x_min, y_min, 0.0], [x_max, y_min, 0.0], [x_max, y_max, 0.0], [x_min, y_max, 0.0]]
    )
    return vertices, np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a binary little-endian PLY file (float32 vertices, int32 faces)."""
    vertices = np.ascontiguousarray(vertices, dtype="<f4")
    faces = np.asarray(faces, dtype="<i4")
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    face_records = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face_records["n"] = 3
    face_records["idx"] = faces
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(vertices.tobytes())
        fh.write(face_records.tobytes())


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a PLY file written by :func:`write_ply`."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    num_v = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    num_f = next(int(line.split()[2]) for line in header if line.startswith("element face"))
    vertices = np.frombuffer(data, dtype="<f4", count=num_v * 3, offset=end).reshape(num_v, 3)
    records = np.frombuffer(
        data, dtype=[("n", "u1"), ("idx", "<i4", (3,))], count=num_f, offset=end + num_v * 12
    )
    if struct.unpack("<B", data[end + num_v * 12 : end + num_v * 12 + 1])[0] != 3 and num_f:
        msg = f"{path}: expected triangle faces"
        raise MeshError(msg)
    return vertices.astype(np.float64), records["idx"].astype(np.int64)
