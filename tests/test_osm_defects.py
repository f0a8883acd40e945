"""OSM files as they come from the wild: one defect per small hand-made file.

Each file holds good buildings beside one defect; every good building must be built and
the bad feature skipped or repaired and reported by reason and id (API and CLI).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rflocal_core.dataset.rasters import rasterize_scene, scene_grid
from rflocal_core.errors import OSMFormatError
from rflocal_core.scene import SceneBuildResult, SceneConfig, SiteConfig, build_scene, load_scene_meta, scene_dir
from rflocal_core.scene.mesh import is_closed, read_ply

ORIGIN = (52.5200, 13.4050)
M_PER_DEG_LAT = 111_320.0


class OsmFile:
    """A small OSM XML file written node by node; positions in metres east/north of :data:`ORIGIN`."""

    def __init__(self) -> None:
        self.nodes: dict[int, tuple[float, float]] = {}
        self.elements: list[str] = []

    def node(self, x_m: float, y_m: float) -> int:
        node_id = 1 + len(self.nodes)
        lat = ORIGIN[0] + y_m / M_PER_DEG_LAT
        lon = ORIGIN[1] + x_m / (M_PER_DEG_LAT * math.cos(math.radians(ORIGIN[0])))
        self.nodes[node_id] = (lat, lon)
        return node_id

    def square(self, x_m: float, y_m: float, side_m: float = 20.0) -> list[int]:
        """Four corner nodes, counter-clockwise from the south-west corner."""
        return [self.node(x_m, y_m), self.node(x_m + side_m, y_m), self.node(x_m + side_m, y_m + side_m),
                self.node(x_m, y_m + side_m)]

    def way(self, way_id: int, refs: list[int], tags: dict[str, str] | None = None) -> None:
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        self.elements.append(f'  <way id="{way_id}" version="1">{nds}{_tags(tags)}</way>')

    def relation(self, relation_id: int, members: list[tuple[str, int, str]], tags: dict[str, str]) -> None:
        xml = "".join(f'<member type="{t}" ref="{r}" role="{role}"/>' for t, r, role in members)
        self.elements.append(f'  <relation id="{relation_id}" version="1">{xml}{_tags(tags)}</relation>')

    def building(self, way_id: int, x_m: float, y_m: float, tags: dict[str, str] | None = None) -> None:
        """A closed 20 m square way tagged ``building=yes`` (plus ``tags``)."""
        ring = self.square(x_m, y_m)
        self.way(way_id, [*ring, ring[0]], {"building": "yes", **(tags or {})})

    def write(self, path: Path) -> Path:
        lat_lo, lat_hi = ORIGIN[0] - 60 / M_PER_DEG_LAT, ORIGIN[0] + 400 / M_PER_DEG_LAT
        dlon = 1 / (M_PER_DEG_LAT * math.cos(math.radians(ORIGIN[0])))
        lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="rflocal-tests">',
                 f'  <bounds minlat="{lat_lo:.7f}" minlon="{ORIGIN[1] - 60 * dlon:.7f}" '
                 f'maxlat="{lat_hi:.7f}" maxlon="{ORIGIN[1] + 400 * dlon:.7f}"/>']
        lines += [f'  <node id="{i}" version="1" lat="{lat:.8f}" lon="{lon:.8f}"/>'
                  for i, (lat, lon) in self.nodes.items()]
        path.write_text("\n".join([*lines, *self.elements, "</osm>"]) + "\n", encoding="utf-8")
        return path


def _tags(tags: dict[str, str] | None) -> str:
    return "".join(f'<tag k="{k}" v="{v}"/>' for k, v in (tags or {}).items())


def good_buildings(osm: OsmFile, count: int = 3) -> set[str]:
    """``count`` good buildings along y = 0 (ways 1, 2, ...); returns their ids."""
    for i in range(count):
        osm.building(1 + i, 40.0 * i, 0.0)
    return {f"way/{1 + i}" for i in range(count)}


def build(path: Path, name: str) -> tuple[SceneBuildResult, dict[str, Any], dict[str, dict[str, Any]]]:
    """Build ``path``; return the summary, scene.json and buildings.geojson properties by osm_id."""
    summary = build_scene(SceneConfig(name=name, source="osm_file", path=str(path), sites=SiteConfig(count=2)))
    meta = load_scene_meta(name)
    features = json.loads((scene_dir(name) / "buildings.geojson").read_text())["features"]
    return summary, meta, {f["properties"]["osm_id"]: f["properties"] for f in features}


def ids_by_reason(table: dict[str, Any]) -> dict[str, list[str]]:
    return {reason: entry["ids"] for reason, entry in table.items()}


def assert_report(summary: SceneBuildResult, meta: dict[str, Any], *, skipped: dict[str, list[str]],
                  repaired: dict[str, list[str]]) -> None:
    """The summary and scene.json report exactly these features, by reason (counts = len(ids))."""
    report = meta["buildings"]["footprints"]
    for got_skipped, got_repaired in ((summary.skipped, summary.repaired), (report["skipped"], report["repaired"])):
        assert ids_by_reason(got_skipped) == skipped
        assert ids_by_reason(got_repaired) == repaired
        entries = [*got_skipped.values(), *got_repaired.values()]
        assert all(entry["count"] == len(entry["ids"]) for entry in entries)
    notes = [line for line in summary.notes if line.startswith(("skipped: ", "repaired: "))]
    assert len(notes) == len(skipped) + len(repaired)


# --------------------------------------------------------------------------- one defect per file


def test_relation_with_absent_member_way(workspace: Path, tmp_path: Path) -> None:
    osm = OsmFile()
    good = good_buildings(osm)
    ring = osm.square(0.0, 100.0)
    osm.way(20, [*ring, ring[0]])  # present outer; the inner way 999 is not in the file
    osm.relation(50, [("way", 20, "outer"), ("way", 999, "inner")], {"type": "multipolygon", "building": "yes"})
    summary, meta, props = build(osm.write(tmp_path / "absent_member.osm"), "absent")
    assert set(props) == good and summary.buildings == 3
    assert_report(summary, meta, skipped={"missing_member_ways": ["relation/50"]}, repaired={})
    assert summary.notes == ("skipped: 1 relations with missing member ways (relation/50)",)


def test_way_with_absent_nodes(workspace: Path, tmp_path: Path) -> None:
    osm = OsmFile()
    good = good_buildings(osm)
    a, b, c, _ = osm.square(0.0, 100.0)
    osm.way(10, [a, b, c, 9999, a], {"building": "yes"})  # node 9999 was cut off by the extract
    summary, meta, props = build(osm.write(tmp_path / "absent_nodes.osm"), "nodes")
    assert set(props) == good
    assert_report(summary, meta, skipped={"missing_nodes": ["way/10"]}, repaired={})


def test_unclosed_rings(workspace: Path, tmp_path: Path) -> None:
    osm = OsmFile()
    good = good_buildings(osm)
    a, b, c, d = osm.square(0.0, 100.0)
    osm.way(11, [a, b, c, d], {"building": "yes"})  # open by 20 m: skipped
    ring = osm.square(40.0, 100.0)
    near = osm.node(40.0, 100.3)  # 0.3 m from the first node: closed
    osm.way(12, [*ring, near], {"building": "yes"})
    e, f, g, h = osm.square(80.0, 100.0)  # a multipolygon whose outer ring stays open
    osm.way(21, [e, f, g])
    osm.way(22, [g, h])
    osm.relation(51, [("way", 21, "outer"), ("way", 22, "outer")], {"type": "multipolygon", "building": "yes"})
    summary, meta, props = build(osm.write(tmp_path / "unclosed.osm"), "unclosed")
    assert set(props) == good | {"way/12"}
    assert props["way/12"]["area_m2"] == pytest.approx(400.0, rel=0.02)
    assert_report(summary, meta, skipped={"unclosed_ring": ["relation/51", "way/11"]},
                  repaired={"closed_gap": ["way/12"]})


def test_empty_relation_and_empty_way(workspace: Path, tmp_path: Path) -> None:
    osm = OsmFile()
    good = good_buildings(osm)
    osm.relation(52, [], {"type": "multipolygon", "building": "yes"})
    osm.relation(53, [("node", 1, "")], {"type": "multipolygon", "building": "yes"})  # no member ways
    osm.way(13, [], {"building": "yes"})
    a, b, _, _ = osm.square(0.0, 100.0)
    osm.way(14, [a, b, a], {"building": "yes"})  # two distinct nodes
    summary, meta, props = build(osm.write(tmp_path / "empty.osm"), "empty")
    assert set(props) == good
    assert_report(summary, meta, skipped={"empty_relation": ["relation/52", "relation/53"],
                                          "too_few_nodes": ["way/13", "way/14"]}, repaired={})


def test_broken_highway_relation_beside_buildings(workspace: Path, tmp_path: Path) -> None:
    # The failure of the issue: a highway area whose member way lost its nodes made
    # osmnx raise for the whole file; it must cost no building (and roads still come through).
    osm = OsmFile()
    good = good_buildings(osm, 5)
    osm.way(30, [9001, 9002, 9003, 9001])  # every node missing
    osm.relation(60, [("way", 30, "outer")], {"type": "multipolygon", "highway": "pedestrian"})
    road = [osm.node(-10.0 + 30.0 * i, 50.0) for i in range(5)]
    osm.way(31, road, {"highway": "residential"})
    osm.way(32, [road[0], road[1], 9004, road[3], road[4]], {"highway": "service"})  # cut in the middle
    osm.way(33, [9005, road[2]], {"highway": "footway"})
    summary, meta, props = build(osm.write(tmp_path / "broken_highway.osm"), "highway")
    assert set(props) == good and summary.buildings == 5
    assert_report(summary, meta, skipped={"road_no_nodes": ["way/33"]}, repaired={"road_missing_nodes": ["way/32"]})
    roads = json.loads((scene_dir("highway") / "roads.geojson").read_text())["features"]
    assert meta["roads"] == 2
    assert [f["geometry"]["type"] for f in roads] == ["LineString", "MultiLineString"]


def test_self_intersecting_footprint(workspace: Path, tmp_path: Path) -> None:
    osm = OsmFile()
    good = good_buildings(osm)
    a, b, c, d = osm.square(0.0, 100.0)
    osm.way(15, [a, b, d, c, a], {"building": "yes"})  # a bow tie: two triangles of 100 m² each
    summary, meta, props = build(osm.write(tmp_path / "bowtie.osm"), "bowtie")
    assert set(props) == good | {"way/15"}
    assert props["way/15"]["area_m2"] == pytest.approx(200.0, rel=0.02)
    assert_report(summary, meta, skipped={}, repaired={"self_intersecting": ["way/15"]})
    index = props["way/15"]["id"]
    _, faces = read_ply(scene_dir("bowtie") / "meshes" / f"building_{index:05d}.ply")
    assert is_closed(faces)


def test_multipolygon_with_hole_and_split_outer(workspace: Path, tmp_path: Path) -> None:
    osm = OsmFile()
    good = good_buildings(osm)
    a, b, c, d = osm.square(0.0, 100.0, 40.0)
    osm.way(40, [a, b, c])  # the outer ring in two ways, one of them reversed
    osm.way(41, [a, d, c])
    hole = osm.square(10.0, 110.0, 20.0)
    osm.way(42, [*hole, hole[0]])
    osm.relation(54, [("way", 40, "outer"), ("way", 41, "outer"), ("way", 42, "inner")],
                 {"type": "multipolygon", "building": "yes", "building:levels": "2"})
    summary, meta, props = build(osm.write(tmp_path / "courtyard.osm"), "courtyard")
    assert set(props) == good | {"relation/54"}
    assert props["relation/54"]["area_m2"] == pytest.approx(1600.0 - 400.0, rel=0.02)
    assert (props["relation/54"]["height_rule"], props["relation/54"]["height_m"]) == ("levels", 6.0)
    assert_report(summary, meta, skipped={}, repaired={})


def test_building_tagged_on_relation_and_its_outer_way_is_built_once(workspace: Path, tmp_path: Path) -> None:
    """Old-style tagging (building=* on the multipolygon and on its outer way) makes one building, not two."""
    osm = OsmFile()
    good = good_buildings(osm)
    outer = osm.square(0.0, 100.0, 40.0)
    osm.way(40, [*outer, outer[0]], {"building": "yes"})
    hole = osm.square(10.0, 110.0, 20.0)
    osm.way(41, [*hole, hole[0]])
    osm.relation(55, [("way", 40, "outer"), ("way", 41, "inner")], {"type": "multipolygon", "building": "yes"})
    summary, meta, props = build(osm.write(tmp_path / "old_style.osm"), "old_style")
    assert set(props) == good | {"relation/55"}
    assert props["relation/55"]["area_m2"] == pytest.approx(1600.0 - 400.0, rel=0.02)
    assert_report(summary, meta, skipped={"outer_way_of_relation": ["way/40"]}, repaired={})


def test_building_parts_with_min_height(workspace: Path, tmp_path: Path) -> None:
    # An outline covered by two parts (one lifted: 8 m to 14 m), an outline with one
    # part (a tower) and the rest of it, and a part lifted above its own top.
    osm = OsmFile()
    good = good_buildings(osm)
    a, b, c, d = osm.square(0.0, 100.0, 40.0)
    osm.way(43, [a, b, c, d, a], {"building": "yes", "height": "20"})
    m1, m2 = osm.node(20.0, 100.0), osm.node(20.0, 140.0)
    osm.way(44, [a, m1, m2, d, a], {"building:part": "yes", "height": "20"})
    osm.way(45, [m1, b, c, m2, m1], {"building:part": "yes", "min_height": "8", "height": "14"})
    e, f, g, h = osm.square(100.0, 100.0, 40.0)
    osm.way(46, [e, f, g, h, e], {"building": "yes", "building:levels": "3"})
    tower = osm.square(110.0, 110.0, 10.0)
    osm.way(47, [*tower, tower[0]], {"building:part": "yes", "height": "30"})
    lifted = osm.square(112.0, 112.0, 4.0)
    osm.way(48, [*lifted, lifted[0]], {"building:part": "yes", "min_height": "31", "height": "30"})
    alone = osm.square(200.0, 100.0)
    osm.way(49, [*alone, alone[0]], {"building:part": "yes", "height": "5"})  # no outline: a building of its own
    summary, meta, props = build(osm.write(tmp_path / "parts.osm"), "parts")
    assert set(props) == good | {"way/44", "way/45", "way/46", "way/47", "way/49"}  # way/43 replaced by its parts
    assert (props["way/44"]["height_m"], props["way/44"].get("min_height_m")) == (20.0, None)
    assert (props["way/45"]["height_m"], props["way/45"]["min_height_m"]) == (14.0, 8.0)
    assert props["way/46"]["area_m2"] == pytest.approx(1600.0 - 100.0, rel=0.02)  # the outline minus the tower
    assert (props["way/46"]["height_m"], props["way/47"]["height_m"]) == (9.0, 30.0)
    assert meta["buildings"]["footprints"]["parts"] == {"parts": 5, "outlines_with_parts": 2, "outline_remainders": 1,
                                                         "standalone_parts": 1}
    assert props["way/49"]["height_m"] == 5.0
    assert_report(summary, meta, skipped={"base_not_below_top": ["way/48"]}, repaired={})
    assert summary.notes[-1] == ("building:part: 5 parts replaced 2 outlines (1 outline remainders kept, "
                                    "1 parts outside any outline kept on their own)")
    vertices, faces = read_ply(scene_dir("parts") / "meshes" / f"building_{props['way/45']['id']:05d}.ply")
    assert is_closed(faces)
    assert (vertices[:, 2].min(), vertices[:, 2].max()) == (pytest.approx(8.0), pytest.approx(14.0))
    # The rasters take the roof of the lifted part (its top) and stay finite.
    meta = load_scene_meta("parts")
    grid = scene_grid(meta, 2.0)
    rasters = rasterize_scene("parts", meta, grid)
    frame_x, frame_y = _scene_xy(meta, 30.0, 120.0)
    iy, ix = grid.cell_of(np.array([frame_x]), np.array([frame_y]))
    assert rasters["building_height_m"][iy[0], ix[0]] == pytest.approx(14.0)
    assert np.isfinite(rasters["building_height_m"]).all()


def _scene_xy(meta: dict[str, Any], x_m: float, y_m: float) -> tuple[float, float]:
    """Scene-frame x, y of a point given in metres east/north of :data:`ORIGIN`."""
    from rflocal_core.scene import scene_frame

    lat = ORIGIN[0] + y_m / M_PER_DEG_LAT
    lon = ORIGIN[1] + x_m / (M_PER_DEG_LAT * math.cos(math.radians(ORIGIN[0])))
    x, y = scene_frame(meta).to_xy(np.array([lat]), np.array([lon]))
    return float(x[0]), float(y[0])


# --------------------------------------------------------------------------- every defect at once, CLI


def wild_file(path: Path) -> Path:
    """Two good buildings and one of each defect above."""
    osm = OsmFile()
    good_buildings(osm, 2)
    ring = osm.square(0.0, 100.0)
    osm.way(20, [*ring, ring[0]])
    osm.relation(50, [("way", 20, "outer"), ("way", 999, "inner")], {"type": "multipolygon", "building": "yes"})
    a, b, c, d = osm.square(40.0, 100.0)
    osm.way(10, [a, b, c, 9999, a], {"building": "yes"})
    a, b, c, d = osm.square(80.0, 100.0)
    osm.way(11, [a, b, c, d], {"building": "yes"})
    osm.relation(52, [], {"type": "multipolygon", "building": "yes"})
    osm.way(30, [9001, 9002, 9003, 9001])
    osm.relation(60, [("way", 30, "outer")], {"type": "multipolygon", "highway": "pedestrian"})
    a, b, c, d = osm.square(120.0, 100.0)
    osm.way(15, [a, b, d, c, a], {"building": "yes"})
    return osm.write(path)


def test_wild_file_through_the_cli(workspace: Path, tmp_path: Path, run_cli: Any) -> None:
    path = wild_file(tmp_path / "wild.osm")
    proc = run_cli(["scene", "build", "--osm-file", str(path), "--name", "wild", "--sites", "2"], workspace)
    assert proc.returncode == 0, proc.stderr
    summary = SceneBuildResult.from_json(json.loads(proc.stdout))  # the CLI prints the result's JSON
    assert summary.to_json() == json.loads(proc.stdout)
    assert summary.buildings == 3  # ways 1, 2 and the repaired bow tie 15
    skipped = {"empty_relation": ["relation/52"], "missing_member_ways": ["relation/50"],
               "missing_nodes": ["way/10"], "unclosed_ring": ["way/11"]}
    meta = json.loads((workspace / "scenes" / "wild" / "scene.json").read_text())
    assert_report(summary, meta, skipped=skipped, repaired={"self_intersecting": ["way/15"]})
    assert summary.notes[0] == "skipped: 1 empty relations (no member ways) (relation/52)"
    assert meta["buildings"]["footprints"]["seen"] == {
        "nodes": 24, "ways": 7, "relations": 3, "building_ways": 5, "building_relations": 2, "building_parts": 0,
        "building_nodes": 0, "highway_ways": 0, "bad_nodes": 0, "deleted": 0}


def test_no_usable_building(workspace: Path, tmp_path: Path, run_cli: Any) -> None:
    osm = OsmFile()
    a, b, c, d = osm.square(0.0, 0.0)
    osm.way(10, [a, b, c, 9999, a], {"building": "yes"})
    osm.relation(50, [("way", 999, "outer")], {"type": "multipolygon", "building": "yes"})
    osm.way(31, [a, b], {"highway": "residential"})
    path = osm.write(tmp_path / "nothing.osm")
    expected = (r"^osm_file: 'nothing\.osm' holds no buildings \(seen 4 nodes, 2 ways, 1 relations, "
                r"2 tagged building \(1 ways, 1 relations\); "
                r"skipped: 1 relations with missing member ways \(relation/50\); "
                r"skipped: 1 features with missing nodes \(way/10\)\); "
                r"expected closed ways or multipolygon relations tagged building=\*$")
    with pytest.raises(OSMFormatError, match=expected):
        build_scene(SceneConfig(name="nothing", source="osm_file", path=str(path)))
    proc = run_cli(["scene", "build", "--osm-file", str(path), "--name", "nothing"], workspace)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(expected, lines[0].removeprefix("error: ")), proc.stderr
    assert not (workspace / "scenes" / "nothing").exists()


def test_not_an_osm_file(workspace: Path, tmp_path: Path) -> None:
    path = tmp_path / "track.osm"
    path.write_text('<?xml version="1.0"?><gpx version="1.1"><trk/></gpx>\n', encoding="utf-8")
    with pytest.raises(OSMFormatError, match=r"^osm_file: 'track\.osm' is not OpenStreetMap XML "
                                             r"\(root element <gpx>; expected <osm>\)$"):
        build_scene(SceneConfig(name="gpx", source="osm_file", path=str(path)))


def test_deleted_and_bad_nodes(workspace: Path, tmp_path: Path) -> None:
    # A JOSM file keeps deleted elements (action="delete"); a node may carry no coordinates.
    osm = OsmFile()
    good = good_buildings(osm)
    ring = osm.square(0.0, 100.0)
    osm.way(16, [*ring, ring[0]], {"building": "yes"})
    ring = osm.square(40.0, 100.0)
    osm.way(17, [*ring, ring[0]], {"building": "yes"})
    path = osm.write(tmp_path / "josm.osm")
    text = path.read_text()
    text = text.replace('<way id="16" version="1">', '<way id="16" version="1" action="delete">')
    text = text.replace(f'<node id="{ring[1]}" version="1" lat=', f'<node id="{ring[1]}" version="1" lat="x" old=')
    path.write_text(text, encoding="utf-8")
    summary, meta, props = build(path, "josm")
    assert set(props) == good
    assert_report(summary, meta, skipped={"missing_nodes": ["way/17"]}, repaired={})
    seen = meta["buildings"]["footprints"]["seen"]
    assert (seen["deleted"], seen["bad_nodes"], seen["building_ways"]) == (1, 1, 4)


# --------------------------------------------------------------------------- GeoJSON, feature by feature


def test_geojson_bad_features_are_skipped(workspace: Path, tmp_path: Path) -> None:
    def square(x_m: float, side_m: float = 20.0) -> list[list[float]]:
        dlon = 1 / (M_PER_DEG_LAT * math.cos(math.radians(ORIGIN[0])))
        lon0, lat0 = ORIGIN[1] + x_m * dlon, ORIGIN[0]
        dlat, dl = side_m / M_PER_DEG_LAT, side_m * dlon
        return [[lon0, lat0], [lon0 + dl, lat0], [lon0 + dl, lat0 + dlat], [lon0, lat0 + dlat], [lon0, lat0]]

    def feature(geometry: Any) -> dict[str, Any]:
        return {"type": "Feature", "geometry": geometry, "properties": {"height": 12}}

    s = square(120.0)
    features = [
        feature({"type": "Polygon", "coordinates": [square(0.0)]}),
        feature({"type": "Polygon", "coordinates": [square(40.0)]}),
        feature(None),  # an unlocated feature
        feature({"type": "Polygon", "coordinates": [[[1, 2]]]}),  # not a ring
        feature({"type": "Polygon", "coordinates": [[s[0], s[1], s[3], s[2], s[0]]]}),  # a bow tie
        feature({"type": "Polygon", "coordinates": [[[500.0, 0.0], [501.0, 0.0], [501.0, 1.0], [500.0, 0.0]]]}),
        feature({"type": "Point", "coordinates": s[0]}),
        feature({"type": "Polygon", "coordinates": [[s[0], s[1], [2 * s[1][0] - s[0][0], s[0][1]], s[0]]]}),  # flat
    ]
    path = tmp_path / "wild.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    summary = build_scene(SceneConfig(name="gj", source="geojson_file", path=str(path), sites=SiteConfig(count=2)))
    meta = load_scene_meta("gj")
    assert summary.buildings == 3
    assert_report(summary, meta, skipped={"invalid_geometry": ["features[3]"], "no_geometry": ["features[2]"],
                                          "not_lonlat": ["features[5]"], "zero_area": ["features[7]"]},
                  repaired={"self_intersecting": ["features[4]"]})
    assert meta["buildings"]["footprints"]["seen"] == {"features": 8, "non_polygon": 1}


def test_scene_builder_page_names_what_was_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    app.run()
    app.switch_page("pages/views/scene_builder.py")
    app.run()
    app.radio(key="sb_source").set_value("OSM / GeoJSON file")
    app.run()
    app.text_input(key="sb_name").set_value("wild")
    app.number_input(key="sb_count").set_value(2)
    app.text_input(key="sb_path").set_value(str(wild_file(tmp_path / "wild.osm")))
    app.button(key="sb_build").click()
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert "3 buildings" in app.success[0].value
    warning = app.warning[0].value
    assert "- skipped: 1 relations with missing member ways (relation/50)" in warning.splitlines()
    assert "- repaired: 1 invalid (self-intersecting) rings fixed with make_valid (way/15)" in warning.splitlines()


def test_overpass_out_geom_file(workspace: Path, tmp_path: Path) -> None:
    # Overpass Turbo exports ("out geom") carry coordinates inside ways and relation
    # members instead of <node> elements, and a <bounds> inside every element.
    def lat_lon(x_m: float, y_m: float) -> str:
        lon = ORIGIN[1] + x_m / (M_PER_DEG_LAT * math.cos(math.radians(ORIGIN[0])))
        return f'lat="{ORIGIN[0] + y_m / M_PER_DEG_LAT:.8f}" lon="{lon:.8f}"'

    def corners(x_m: float, y_m: float, side_m: float) -> list[str]:
        return [lat_lon(x_m, y_m), lat_lon(x_m + side_m, y_m), lat_lon(x_m + side_m, y_m + side_m),
                lat_lon(x_m, y_m + side_m)]

    elements = []
    for way_id, x_m in ((1, 0.0), (2, 40.0)):
        c = corners(x_m, 0.0, 20.0)
        nds = "".join(f'<nd ref="{way_id * 10 + i % 4}" {c[i % 4]}/>' for i in range(5))
        elements.append(f'<way id="{way_id}"><bounds minlat="0" minlon="0" maxlat="1" maxlon="1"/>{nds}'
                        '<tag k="building" v="yes"/></way>')
    c = corners(100.0, 0.0, 40.0)  # the outer ring in two members, coordinates only
    first = "".join(f"<nd {c[i]}/>" for i in (0, 1, 2))
    second = "".join(f"<nd {c[i % 4]}/>" for i in (2, 3, 4))
    elements.append(f'<relation id="5"><member type="way" ref="70" role="outer">{first}</member>'
                    f'<member type="way" ref="71" role="outer">{second}</member>'
                    '<tag k="type" v="multipolygon"/><tag k="building" v="yes"/></relation>')
    path = tmp_path / "export.osm"
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="Overpass API">\n'
                    + "\n".join(elements) + "\n</osm>\n", encoding="utf-8")
    summary, meta, props = build(path, "overpass")
    assert set(props) == {"way/1", "way/2", "relation/5"}
    assert props["relation/5"]["area_m2"] == pytest.approx(1600.0, rel=0.02)
    assert_report(summary, meta, skipped={}, repaired={})
    assert meta["bbox"]["south"] == pytest.approx(ORIGIN[0]) and meta["bbox"]["west"] == pytest.approx(ORIGIN[1])
