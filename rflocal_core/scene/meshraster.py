"""Footprints, heights and materials of buildings derived from a scene's triangle meshes.

Used by the scene import (:mod:`rflocal_core.scene.importer`). Three steps:

1. :func:`detect_ground` finds the ground, which is left out of everything else.
   Rule: an object whose triangles (by area) face up for at least 95 % (normal within 45°
   of vertical: a flat plane or a terrain) and whose horizontal extent covers at least 90 %
   of the whole scene's on both axes; if several do, the lowest (area-weighted mean z) and
   any within 0.5 m of it. Without such an object (a scene merged into one mesh), the
   near-horizontal triangles (normal within 10° of vertical) lying within 0.5 m of the
   lowest vertex are the ground if they cover at least half of the scene's extent.
   Otherwise no ground is detected and heights are measured from the lowest vertex.
2. :func:`rasterize_top` rasterizes triangles top-down: a cell's roof is the highest
   triangle covering its centre (its z interpolated there) and the object it belongs to.
   Vertical triangles (walls) cover no cell centre. The ground alone, rasterized the same
   way, gives the ground height per cell (:func:`ground_height`).
3. :func:`derive_buildings` keeps the cells whose roof is at least
   ``min_building_height_m`` above the ground under it, labels their 4-connected components and
   turns each into a polygon (union of the cell rows, simplified by one cell), with the
   median and maximum roof height of its cells and the radio material with the largest
   surface area among the triangles within two cells of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, box

#: A triangle is near-horizontal when its normal is within this angle of vertical.
HORIZONTAL_MAX_TILT_DEG = 10.0
#: A ground object's triangles face up: normal within this angle of vertical (terrain slopes included).
GROUND_MAX_SLOPE_DEG = 45.0
#: Share of an object's area that must face up for it to be ground.
GROUND_UP_FRACTION = 0.95
#: Share of the scene's extent (per axis) that a ground object spans.
GROUND_SPAN_FRACTION = 0.9
#: Ground objects (or triangles) lie within this height of the lowest one.
GROUND_TOLERANCE_M = 0.5
#: Share of the extent's area that ground triangles must cover (fallback rule).
GROUND_COVER_FRACTION = 0.5
#: Candidate (triangle, cell) pairs evaluated at once by the rasterizer.
_CHUNK_CELLS = 4_000_000


@dataclass
class MeshObject:
    """One shape of a scene: its name, radio material name and triangles in scene metres."""

    name: str
    material: str
    vertices: np.ndarray  # [num_vertices, 3] float64
    faces: np.ndarray  # [num_faces, 3] int64


@dataclass
class Triangles:
    """All triangles of a scene, flattened: corners ``xyz [T, 3, 3]`` and the object of each."""

    xyz: np.ndarray
    owner: np.ndarray  # [T] index into the object list
    area_m2: np.ndarray  # [T]
    cos_tilt: np.ndarray  # [T] |n_z|, 1 for a horizontal triangle

    @classmethod
    def of(cls, objects: list[MeshObject]) -> Triangles:
        parts = [obj.vertices[obj.faces] for obj in objects]
        xyz = np.concatenate(parts) if parts else np.zeros((0, 3, 3))
        owner = np.repeat(np.arange(len(objects)), [len(p) for p in parts])
        normal = np.cross(xyz[:, 1] - xyz[:, 0], xyz[:, 2] - xyz[:, 0])
        norm = np.linalg.norm(normal, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos_tilt = np.where(norm > 0, np.abs(normal[:, 2]) / norm, 0.0)
        return cls(xyz, owner, 0.5 * norm, cos_tilt)


@dataclass
class Ground:
    """The result of :func:`detect_ground`.

    ``extent`` is ``(x_min, y_min, x_max, y_max)``: the ground's horizontal box when a
    ground object was found, else the box of all geometry.
    """

    detected: bool
    rule: str
    z_m: float
    z_span_m: float
    objects: list[str]
    material: str | None
    extent: tuple[float, float, float, float]
    mask: np.ndarray = field(repr=False)  # [T] True for ground triangles

    def to_dict(self) -> dict[str, Any]:
        return {"detected": self.detected, "rule": self.rule, "z_m": round(self.z_m, 3),
                "z_span_m": round(self.z_span_m, 3), "objects": self.objects[:20], "num_objects": len(self.objects),
                "triangles": int(self.mask.sum()), "material": self.material}


def detect_ground(objects: list[MeshObject], tris: Triangles) -> Ground:
    """Find the ground plane (see the module docstring for the rule)."""
    flat = tris.cos_tilt >= math.cos(math.radians(HORIZONTAL_MAX_TILT_DEG))
    xy = tris.xyz[..., :2].reshape(-1, 2)
    lo, hi = xy.min(0), xy.max(0)
    span = np.maximum(hi - lo, 1e-9)
    n = len(objects)
    area = np.bincount(tris.owner, weights=tris.area_m2, minlength=n)
    up = tris.cos_tilt >= math.cos(math.radians(GROUND_MAX_SLOPE_DEG))
    up_area = np.bincount(tris.owner, weights=tris.area_m2 * up, minlength=n)
    z_area = np.bincount(tris.owner, weights=tris.xyz[..., 2].mean(1) * tris.area_m2, minlength=n)
    candidates = []
    for i, obj in enumerate(objects):
        if area[i] <= 0 or up_area[i] / area[i] < GROUND_UP_FRACTION:
            continue
        o_lo, o_hi = obj.vertices[:, :2].min(0), obj.vertices[:, :2].max(0)
        if np.all(o_hi - o_lo >= GROUND_SPAN_FRACTION * span):
            candidates.append((float(z_area[i] / area[i]), i))
    if candidates:
        lowest = min(z for z, _ in candidates)
        chosen = [i for z, i in candidates if z - lowest <= GROUND_TOLERANCE_M]
        mask = np.isin(tris.owner, chosen)
        verts = np.concatenate([objects[i].vertices for i in chosen])
        extent = (*verts[:, :2].min(0), *verts[:, :2].max(0))
        materials = {objects[i].material for i in chosen}
        return _ground(True, "an object spanning the scene, facing up", tris, mask,
                       [objects[i].name for i in chosen], ", ".join(sorted(materials)), extent)
    z_min = float(tris.xyz[..., 2].min())
    mask = flat & (tris.xyz[..., 2].max(1) <= z_min + GROUND_TOLERANCE_M)
    extent = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    if tris.area_m2[mask].sum() >= GROUND_COVER_FRACTION * span[0] * span[1]:
        owners = sorted({objects[i].name for i in np.unique(tris.owner[mask])})
        materials = sorted({objects[i].material for i in np.unique(tris.owner[mask])})
        return _ground(True, "the lowest near-horizontal triangles", tris, mask, owners, ", ".join(materials), extent)
    none = np.zeros(len(tris.owner), dtype=bool)
    return Ground(False, "none found: heights are measured from the lowest vertex", z_min, 0.0, [], None, extent, none)


def _ground(detected: bool, rule: str, tris: Triangles, mask: np.ndarray, names: list[str], material: str,
            extent: tuple[float, ...]) -> Ground:
    z = tris.xyz[mask, :, 2]
    area = tris.area_m2[mask]
    z_m = float((z.mean(1) * area).sum() / area.sum()) if area.sum() > 0 else float(z.mean())
    return Ground(detected, rule, z_m, float(z.max() - z.min()), names, material,
                  tuple(float(v) for v in extent), mask)


@dataclass
class RoofRaster:
    """Top-down roof raster: cell (iy, ix) has centre ``(x0_m + ix·cell_m, y0_m + iy·cell_m)``.

    ``top_z_m`` is the highest surface's z (``-inf`` where no triangle covers the cell),
    ``owner`` the index of its object (-1 where none).
    """

    x0_m: float
    y0_m: float
    cell_m: float
    top_z_m: np.ndarray  # [ny, nx] float64
    owner: np.ndarray  # [ny, nx] int32

    @property
    def shape(self) -> tuple[int, int]:
        return self.top_z_m.shape

    def cell_of(self, x_m: Any, y_m: Any) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(iy, ix)`` of the cells holding the points (clipped to the raster)."""
        ny, nx = self.shape
        ix = np.clip(np.rint((np.asarray(x_m) - self.x0_m) / self.cell_m).astype(int), 0, nx - 1)
        iy = np.clip(np.rint((np.asarray(y_m) - self.y0_m) / self.cell_m).astype(int), 0, ny - 1)
        return iy, ix


def rasterize_top(tris: Triangles, keep: np.ndarray, extent: tuple[float, float, float, float],
                  cell_m: float) -> RoofRaster:
    """Rasterize the triangles selected by ``keep`` top-down over ``extent``.

    A triangle covers a cell when the cell's centre lies in its horizontal projection
    (edges included); the cell's roof is the highest such triangle at the centre.
    """
    x_min, y_min, x_max, y_max = extent
    nx = max(1, math.ceil((x_max - x_min) / cell_m))
    ny = max(1, math.ceil((y_max - y_min) / cell_m))
    x0, y0 = x_min + cell_m / 2, y_min + cell_m / 2
    top = np.full(ny * nx, -np.inf)
    owner = np.full(ny * nx, -1, dtype=np.int32)
    idx = np.flatnonzero(keep & (tris.area_m2 * tris.cos_tilt > 1e-9))  # skip walls (no projected area)
    xyz = tris.xyz[idx]
    ix0 = np.clip(np.ceil((xyz[..., 0].min(1) - x0) / cell_m), 0, nx).astype(np.int64)
    ix1 = np.clip(np.floor((xyz[..., 0].max(1) - x0) / cell_m), -1, nx - 1).astype(np.int64)
    iy0 = np.clip(np.ceil((xyz[..., 1].min(1) - y0) / cell_m), 0, ny).astype(np.int64)
    iy1 = np.clip(np.floor((xyz[..., 1].max(1) - y0) / cell_m), -1, ny - 1).astype(np.int64)
    w, h = np.maximum(ix1 - ix0 + 1, 0), np.maximum(iy1 - iy0 + 1, 0)
    count = w * h
    start = 0
    while start < len(idx):
        stop = start + max(1, int(np.searchsorted(np.cumsum(count[start:]), _CHUNK_CELLS)))
        stop = min(stop, len(idx))
        sel = np.arange(start, stop)
        rep = np.repeat(sel, count[sel])
        local = np.arange(len(rep)) - np.repeat(np.cumsum(count[sel]) - count[sel], count[sel])
        cx = ix0[rep] + local % np.maximum(w[rep], 1)
        cy = iy0[rep] + local // np.maximum(w[rep], 1)
        z, inside = _interpolate(xyz[rep], x0 + cx * cell_m, y0 + cy * cell_m)
        flat = (cy * nx + cx)[inside]
        z, who = z[inside], tris.owner[idx[rep[inside]]]
        np.maximum.at(top, flat, z)
        best = z >= top[flat]
        owner[flat[best]] = who[best]
        start = stop
    return RoofRaster(x0, y0, cell_m, top.reshape(ny, nx), owner.reshape(ny, nx))


def _interpolate(tri: np.ndarray, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z of each triangle at (px, py) by barycentric weights, and whether the point is inside."""
    (ax, ay, az), (bx, by, bz), (cx, cy, cz) = (tri[:, k].T for k in range(3))
    det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    with np.errstate(invalid="ignore", divide="ignore"):
        l1 = ((by - cy) * (px - cx) + (cx - bx) * (py - cy)) / det
        l2 = ((cy - ay) * (px - cx) + (ax - cx) * (py - cy)) / det
    l3 = 1.0 - l1 - l2
    eps = -1e-9
    inside = (det != 0) & (l1 >= eps) & (l2 >= eps) & (l3 >= eps)
    return l1 * az + l2 * bz + l3 * cz, inside


def ground_height(tris: Triangles, ground: Ground, like: RoofRaster) -> np.ndarray:
    """Ground z per cell of ``like``: the ground's own top-down raster, ``ground.z_m`` where it has none."""
    if not ground.mask.any():
        return np.full(like.shape, ground.z_m)
    x_min, y_min = like.x0_m - like.cell_m / 2, like.y0_m - like.cell_m / 2
    extent = (x_min, y_min, x_min + like.shape[1] * like.cell_m, y_min + like.shape[0] * like.cell_m)
    top = rasterize_top(tris, ground.mask, extent, like.cell_m).top_z_m
    return np.where(np.isfinite(top), top, ground.z_m)


@dataclass
class DerivedBuilding:
    """A building derived from the roof raster, in scene metres."""

    footprint: Polygon | MultiPolygon
    height_m: float  # median roof height of its cells above the ground
    height_max_m: float
    cells: int
    material: str  # radio material name with the largest surface area on it


@dataclass
class DeriveReport:
    """Counts of :func:`derive_buildings`, for ``scene.json``."""

    components: int = 0
    kept: int = 0
    dropped_small: int = 0
    dropped_degenerate: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def derive_buildings(
    raster: RoofRaster, ground_z: np.ndarray, tris: Triangles, ground: Ground, materials: list[str], *,
    min_building_height_m: float, min_footprint_area_m2: float,
) -> tuple[list[DerivedBuilding], DeriveReport, np.ndarray]:
    """Footprint polygons of the cells standing above the ground (see the module docstring).

    ``ground_z`` is the ground height per cell (:func:`ground_height`); ``materials`` the
    radio material name of each object (indexed like ``tris.owner``). Returns the
    buildings, the counts and the building height raster above the ground (0 elsewhere).
    """
    height = np.where(np.isfinite(raster.top_z_m), raster.top_z_m - ground_z, 0.0)
    labels, num = ndimage.label(height >= min_building_height_m)
    report = DeriveReport(components=int(num))
    dominant = _dominant_materials(labels, num, raster, tris, ground, materials)
    buildings = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        cells = labels[sl] == k
        polygon = _polygon(cells, raster.x0_m + sl[1].start * raster.cell_m,
                           raster.y0_m + sl[0].start * raster.cell_m, raster.cell_m)
        if polygon is None:
            report.dropped_degenerate += 1
            continue
        if polygon.area < min_footprint_area_m2:
            report.dropped_small += 1
            continue
        h = height[sl][cells]
        buildings.append(DerivedBuilding(polygon, float(np.median(h)), float(h.max()), int(cells.sum()),
                                         dominant[k]))
    report.kept = len(buildings)
    return buildings, report, np.where(labels > 0, height, 0.0)


def _polygon(cells: np.ndarray, x0: float, y0: float, cell_m: float) -> Polygon | MultiPolygon | None:
    """The union of a component's cells (centres from ``(x0, y0)``), simplified by one cell."""
    half = cell_m / 2
    boxes = []
    for row in range(cells.shape[0]):
        padded = np.concatenate([[False], cells[row], [False]])
        edges = np.flatnonzero(padded[1:] != padded[:-1])
        y = y0 + row * cell_m
        for a, b in zip(edges[::2], edges[1::2]):  # a run of cells a..b-1
            boxes.append(box(x0 + a * cell_m - half, y - half, x0 + (b - 1) * cell_m + half, y + half))
    shape = shapely.union_all(boxes).simplify(cell_m, preserve_topology=True)
    shape = shapely.make_valid(shape)
    parts = [g for g in getattr(shape, "geoms", [shape]) if isinstance(g, Polygon) and g.area > 0]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _dominant_materials(labels: np.ndarray, num: int, raster: RoofRaster, tris: Triangles, ground: Ground,
                        materials: list[str]) -> list[str]:
    """Per component (1..num), the material with the largest area of triangles within two cells of it."""
    names = sorted(set(materials))
    out = [""] * (num + 1)
    if num == 0:
        return out
    dist, (near_y, near_x) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    keep = ~ground.mask & (tris.area_m2 > 0)
    centre = tris.xyz[keep].mean(1)
    iy, ix = raster.cell_of(centre[:, 0], centre[:, 1])
    close = dist[iy, ix] <= 2.0
    comp = labels[near_y[iy, ix], near_x[iy, ix]][close]
    mat_index = np.array([names.index(m) for m in materials])[tris.owner[keep]][close]
    area = np.zeros((num + 1, len(names)))
    np.add.at(area, (comp, mat_index), tris.area_m2[keep][close])
    for k in range(1, num + 1):
        if area[k].sum() > 0:
            out[k] = names[int(np.argmax(area[k]))]
        else:  # no triangle near (cannot happen for a raster cell, kept for safety): the roof's owner
            owners = raster.owner[labels == k]
            out[k] = materials[int(np.bincount(owners[owners >= 0]).argmax())] if (owners >= 0).any() else names[0]
    return out
