"""Footprint extrusion, PLY files, the ground plane, local frames and bounding boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon, box

from rflocal_core.errors import InvalidInputError
from rflocal_core.geo import BBox, LocalFrame, bearing_deg
from rflocal_core.scene.mesh import MeshError, extrude, ground_plane, is_closed, read_ply, signed_volume, write_ply

GEOD = Geod(ellps="WGS84")

RECTANGLE = box(0.0, 0.0, 10.0, 20.0)
L_SHAPE = Polygon([(0, 0), (30, 0), (30, 10), (10, 10), (10, 25), (0, 25)])
COURTYARD = Polygon(
    [(0, 0), (40, 0), (40, 40), (0, 40)],
    [[(10, 10), (10, 30), (30, 30), (30, 10)]],
)
TWO_PARTS = MultiPolygon([box(0, 0, 10, 10), box(20, 5, 35, 12)])
# A star with 16 points: concave at every other vertex.
STAR = Polygon(
    [
        ((12 if k % 2 == 0 else 5) * math.cos(math.pi * k / 8), (12 if k % 2 == 0 else 5) * math.sin(math.pi * k / 8))
        for k in range(16)
    ]
)
FOOTPRINTS = {
    "rectangle": RECTANGLE,
    "L-shape": L_SHAPE,
    "courtyard": COURTYARD,
    "multipolygon": TWO_PARTS,
    "star": STAR,
    "clockwise rectangle": Polygon(list(RECTANGLE.exterior.coords)[::-1]),
}


def _roof_triangles(vertices: np.ndarray, faces: np.ndarray, top_z: float) -> list[Polygon]:
    tris = []
    for face in faces:
        pts = vertices[face]
        if np.allclose(pts[:, 2], top_z):
            tris.append(Polygon(pts[:, :2]))
    return tris


# --------------------------------------------------------------------------- extrusion


@pytest.mark.parametrize("name", list(FOOTPRINTS))
def test_extrusion_is_closed_with_volume_area_times_height(name: str) -> None:
    footprint = FOOTPRINTS[name]
    height = 12.5
    vertices, faces = extrude(footprint, height)
    assert vertices.shape[1] == 3 and faces.shape[1] == 3
    assert is_closed(faces), f"{name}: mesh has open or inconsistently oriented edges"
    volume = signed_volume(vertices, faces)
    # Positive signed volume: faces point outwards, whatever the input ring orientation.
    assert volume == pytest.approx(footprint.area * height, rel=0.01)
    assert vertices[:, 2].min() == pytest.approx(0.0)
    assert vertices[:, 2].max() == pytest.approx(height)


def test_extrusion_volumes_of_known_shapes() -> None:
    # Independent numbers (not footprint.area) for the required shapes.
    assert signed_volume(*extrude(RECTANGLE, 7.0)) == pytest.approx(10 * 20 * 7.0, rel=0.01)
    assert signed_volume(*extrude(L_SHAPE, 4.0)) == pytest.approx((30 * 10 + 10 * 15) * 4.0, rel=0.01)
    assert signed_volume(*extrude(COURTYARD, 9.0)) == pytest.approx((40 * 40 - 20 * 20) * 9.0, rel=0.01)
    assert signed_volume(*extrude(TWO_PARTS, 3.0)) == pytest.approx((100 + 15 * 7) * 3.0, rel=0.01)


def test_extrusion_base_height() -> None:
    vertices, faces = extrude(RECTANGLE, 6.0, base_z_m=30.0)
    assert vertices[:, 2].min() == pytest.approx(30.0)
    assert vertices[:, 2].max() == pytest.approx(36.0)
    assert signed_volume(vertices, faces) == pytest.approx(200 * 6.0, rel=0.01)


def test_courtyard_hole_stays_open() -> None:
    vertices, faces = extrude(COURTYARD, 10.0)
    roof = _roof_triangles(vertices, faces, 10.0)
    assert roof, "no roof triangles"
    hole = Polygon(COURTYARD.interiors[0])
    for point in (Point(20, 20), Point(11, 11), Point(29, 29), Point(15, 25)):
        assert not any(tri.contains(point) for tri in roof), f"a roof triangle covers {point} inside the courtyard"
    # The roof covers exactly the ring between outline and hole.
    assert sum(t.area for t in roof) == pytest.approx(COURTYARD.area, rel=1e-6)
    assert sum(t.intersection(hole).area for t in roof) == pytest.approx(0.0, abs=1e-6)
    # Walls exist around the hole: the courtyard walls are vertical faces on the hole's ring.
    hole_xy = {tuple(np.round(c, 6)) for c in np.asarray(hole.exterior.coords)}
    wall_faces = [f for f in faces if len({round(float(z), 6) for z in vertices[f][:, 2]}) == 2]
    on_hole = [f for f in wall_faces if all(tuple(np.round(vertices[i][:2], 6)) in hole_xy for i in f)]
    assert len(on_hole) == 8  # 4 hole edges x 2 triangles
    # The volume excludes the courtyard.
    assert signed_volume(vertices, faces) == pytest.approx(1200 * 10.0, rel=0.01)


def test_multipolygon_parts_are_separate_closed_prisms() -> None:
    vertices, faces = extrude(TWO_PARTS, 5.0)
    roof = _roof_triangles(vertices, faces, 5.0)
    assert sum(t.area for t in roof) == pytest.approx(TWO_PARTS.area, rel=1e-6)
    # Nothing between the two parts.
    assert not any(tri.contains(Point(15, 8)) for tri in roof)
    assert is_closed(faces)


def test_is_closed_detects_a_missing_face() -> None:
    vertices, faces = extrude(RECTANGLE, 5.0)
    assert is_closed(faces)
    assert not is_closed(faces[1:])
    flipped = faces.copy()
    flipped[0] = flipped[0][::-1]
    assert not is_closed(flipped)


@pytest.mark.parametrize("height", [0.0, -3.0, float("nan")])
def test_extrusion_rejects_bad_heights(height: float) -> None:
    with pytest.raises(MeshError, match="height_m"):
        extrude(RECTANGLE, height)


def test_extrusion_rejects_empty_footprint() -> None:
    with pytest.raises(MeshError, match="footprint"):
        extrude(Polygon(), 5.0)


# --------------------------------------------------------------------------- PLY and ground


def test_ply_round_trip(tmp_path) -> None:
    vertices, faces = extrude(COURTYARD, 10.0, base_z_m=0.0)
    vertices = vertices + np.array([123.25, -456.5, 0.0])
    path = tmp_path / "b.ply"
    write_ply(path, vertices, faces)
    data = path.read_bytes()
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
    assert f"element vertex {len(vertices)}".encode() in data
    assert f"element face {len(faces)}".encode() in data
    v2, f2 = read_ply(path)
    np.testing.assert_allclose(v2, vertices, atol=1e-3)  # float32 on disk
    np.testing.assert_array_equal(f2, faces)
    assert is_closed(f2)
    assert signed_volume(v2, f2) == pytest.approx(1200 * 10.0, rel=1e-4)


def test_ground_plane() -> None:
    vertices, faces = ground_plane(-30.0, -20.0, 50.0, 40.0)
    assert vertices.shape == (4, 3) and faces.shape == (2, 3)
    np.testing.assert_allclose(vertices[:, 2], 0.0)
    assert vertices[:, 0].min() == -30.0 and vertices[:, 0].max() == 50.0
    assert vertices[:, 1].min() == -20.0 and vertices[:, 1].max() == 40.0
    area = 0.0
    for face in faces:
        a, b, c = vertices[face]
        normal = np.cross(b - a, c - a)
        assert normal[2] > 0, "ground triangle faces down"
        area += np.linalg.norm(normal) / 2
    assert area == pytest.approx(80.0 * 60.0)


# --------------------------------------------------------------------------- local frames

FRAME_CASES = {
    # name: (origin lat, lon, expected UTM zone)
    "munich": (48.1372, 11.5755, "32N"),
    "zone edge 31/32": (48.2, 5.9995, "31N"),
    "sydney (south)": (-33.8688, 151.2093, "56S"),
    "buenos aires (south, west)": (-34.6037, -58.3816, "21S"),
    "near equator": (0.0005, 36.82, "37N"),
}


def _metres_between(lat1, lon1, lat2, lon2) -> np.ndarray:
    _, _, dist = GEOD.inv(lon1, lat1, lon2, lat2)
    return np.asarray(dist)


@pytest.mark.parametrize("case", list(FRAME_CASES))
def test_local_frame_round_trip_below_1cm(case: str) -> None:
    lat0, lon0, zone = FRAME_CASES[case]
    frame = LocalFrame.at(lat0, lon0)
    assert frame.utm_zone == zone
    # Points up to ~1.5 km away in every direction; for the zone-edge case some lie
    # east of 6 E, in the next zone, and must still map back exactly.
    dlat = np.array([0.0, 0.01, -0.01, 0.0, 0.0, 0.007, -0.012, 0.0131])
    dlon = np.array([0.0, 0.0, 0.0, 0.015, -0.015, 0.009, 0.011, -0.0077])
    lat, lon = lat0 + dlat, lon0 + dlon
    x, y = frame.to_xy(lat, lon)
    lat2, lon2 = frame.to_latlon(x, y)
    assert np.max(_metres_between(lat, lon, lat2, lon2)) < 0.01
    # and the other way round
    x_m = np.array([-900.0, 0.0, 250.5, 1200.0])
    y_m = np.array([300.0, -1100.0, 0.25, 1200.0])
    back_x, back_y = frame.to_xy(*frame.to_latlon(x_m, y_m))
    assert np.max(np.hypot(back_x - x_m, back_y - y_m)) < 0.01
    # The origin is (0, 0), x points east and y north, distances are metres.
    assert abs(float(x[0])) < 1e-6 and abs(float(y[0])) < 1e-6
    assert y[1] > 1000 and abs(x[1]) < 0.05 * y[1]
    assert x[3] > 1000 and abs(y[3]) < 0.05 * x[3]
    local = np.hypot(x, y)[1:]
    geodesic = _metres_between(np.full(7, lat0), np.full(7, lon0), lat[1:], lon[1:])
    np.testing.assert_allclose(local, geodesic, rtol=2e-3)


def test_local_frame_dict_round_trip() -> None:
    frame = LocalFrame.at(-33.8688, 151.2093)
    data = frame.to_dict()
    assert data["crs"] == "EPSG:32756" and data["epsg"] == 32756
    assert LocalFrame.from_dict(data) == frame


def test_bearing_is_clockwise_from_north() -> None:
    np.testing.assert_allclose(bearing_deg([0, 1, 0, -1], [1, 0, -1, 0]), [0, 90, 180, 270])


# --------------------------------------------------------------------------- bounding boxes


def test_bbox_parse_and_size() -> None:
    bbox = BBox.parse(" 48.135, 10.068 ,48.137,10.071")
    assert bbox.as_tuple() == (48.135, 10.068, 48.137, 10.071)
    assert bbox.centre == pytest.approx((48.136, 10.0695))
    width, height = bbox.size_m()
    geod_w = _metres_between(48.136, 10.068, 48.136, 10.071)
    geod_h = _metres_between(48.135, 10.0695, 48.137, 10.0695)
    assert width == pytest.approx(float(geod_w), rel=5e-3)
    assert height == pytest.approx(float(geod_h), rel=5e-3)
    assert 215 < width < 230 and 215 < height < 230
    assert bbox.check_size() == (width, height)
    with pytest.raises(InvalidInputError, match=r"bbox: 2\d\d m x 2\d\d m is too large; expected at most 100 m"):
        bbox.check_size(max_side_m=100.0)


def test_bbox_southern_western_hemisphere_size() -> None:
    bbox = BBox.parse("-34.61,-58.39,-34.60,-58.37")
    width, height = bbox.size_m()
    assert width == pytest.approx(float(_metres_between(-34.605, -58.39, -34.605, -58.37)), rel=5e-3)
    assert height == pytest.approx(float(_metres_between(-34.61, -58.38, -34.60, -58.38)), rel=5e-3)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("48.1,11.5,48.2", "expected four comma-separated numbers S,W,N,E, got '48.1,11.5,48.2'"),
        ("a,b,c,d", "expected four comma-separated numbers"),
        ("91,0,92,1", r"bbox.south: expected a number of degrees in \[-90.0, 90.0\], got 91.0"),
        ("1,-181,2,0", r"bbox.west: .* got -181.0"),
        ("2,0,1,1", r"inverted box, north \(1.0\) is below south \(2.0\)"),
        ("0,2,1,1", r"inverted box, east \(1.0\) is west of west \(2.0\)"),
        ("1,0,1,1", "zero-area box"),
    ],
)
def test_bbox_parse_errors(text: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        BBox.parse(text)
