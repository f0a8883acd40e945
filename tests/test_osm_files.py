"""Scenes from real OpenStreetMap extracts and GeoJSON files, checked against osmnx read independently."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import osmnx as ox
import pytest
from shapely.geometry import box

from rflocal_core import settings
from rflocal_core.scene import SceneConfig, SiteConfig, build_scene, load_scene_meta, scene_dir
from rflocal_core.scene.footprints import parse_height_m, parse_levels, pick_height

OSM_FILES = ("West-Oakland.osm", "bavaria_village_48.135_10.068.osm", "aguascalientes.osm")


def file_bounds(path: Path) -> tuple[float, float, float, float]:
    """``(south, west, north, east)`` of the file's ``<bounds>`` element."""
    for _, elem in ET.iterparse(path, events=("start",)):
        if elem.tag == "bounds":
            return tuple(float(elem.get(k)) for k in ("minlat", "minlon", "maxlat", "maxlon"))  # type: ignore[return-value]
    raise AssertionError(f"{path} has no <bounds>")


def independent_footprints(path: Path) -> dict[str, Any]:
    """Buildings of an OSM file as osmnx + geopandas see them, clipped and projected here.

    Returns per-building areas (m²) keyed like the scene's ``osm_id`` ("way/123"), the
    UTM CRS used and the number of buildings with a ``building:levels`` tag.
    """
    south, west, north, east = file_bounds(path)
    gdf = ox.features_from_xml(path, tags={"building": True})
    gdf = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    clip_box = box(west, south, east, north)
    clipped = gpd.GeoSeries(gdf.geometry.make_valid().intersection(clip_box), index=gdf.index, crs="EPSG:4326")
    clipped = clipped[~clipped.is_empty]
    utm = gpd.GeoSeries([clip_box], crs="EPSG:4326").estimate_utm_crs()
    parts = clipped.to_crs(utm).explode(index_parts=True)
    parts = parts[parts.geom_type == "Polygon"]
    parts = parts[parts.area >= settings.min_footprint_area_m2]
    areas: dict[str, float] = {}
    for index, area in parts.area.items():
        key = f"{index[0]}/{index[1]}"
        areas[key] = areas.get(key, 0.0) + float(area)
    levels = {}
    if "building:levels" in gdf.columns:
        for index, value in gdf["building:levels"].items():
            key = f"{index[0]}/{index[1]}"
            if key in areas and isinstance(value, str) and value.strip():
                levels[key] = float(value)
    return {"areas": areas, "utm": utm, "levels": levels}


@pytest.fixture(scope="module")
def osm_scenes(osm_dir: Path, tmp_path_factory: pytest.TempPathFactory, workspace_env: Any) -> dict[str, Any]:
    """Each OSM file built once into one workspace: ``{file: (workspace, scene.json, summary)}``."""
    ws = tmp_path_factory.mktemp("osm_ws")
    out = {}
    with workspace_env(ws):
        for i, name in enumerate(OSM_FILES):
            summary = build_scene(SceneConfig(name=f"osm{i}", source="osm_file", path=str(osm_dir / name)))
            out[name] = (ws, load_scene_meta(f"osm{i}"), summary)
    return out


@pytest.mark.parametrize("filename", OSM_FILES)
def test_osm_file_matches_osmnx(filename: str, osm_dir: Path, osm_scenes: dict[str, Any]) -> None:
    ws, meta, summary = osm_scenes[filename]
    expected = independent_footprints(osm_dir / filename)
    areas = expected["areas"]
    assert len(areas) > 5, "the independent reading found almost nothing; the data changed?"
    # counts and total footprint area
    assert meta["buildings"]["count"] == summary.buildings == len(areas)
    total = sum(areas.values())
    assert meta["buildings"]["footprint_area_m2"] == pytest.approx(total, rel=0.005)
    # the same buildings, each with (about) the same clipped area
    features = json.loads((ws / "scenes" / meta["name"] / "buildings.geojson").read_text())["features"]
    by_id = {f["properties"]["osm_id"]: f["properties"] for f in features}
    assert set(by_id) == set(areas)
    for key, area in areas.items():
        assert by_id[key]["area_m2"] == pytest.approx(area, rel=0.01, abs=0.05), key
    # the scene box is the file's <bounds>, in the UTM zone geopandas picks
    south, west, north, east = file_bounds(osm_dir / filename)
    assert meta["bbox"] == {"south": south, "west": west, "north": north, "east": east}
    assert meta["frame"]["epsg"] == expected["utm"].to_epsg()
    assert meta["source"] == {"kind": "osm_file", "file": filename}
    # heights: levels where tagged (3 m per storey), the default elsewhere
    levels = expected["levels"]
    rules = {k: v for k, v in {"levels": len(levels), "default": len(areas) - len(levels)}.items() if v}
    assert meta["buildings"]["height_rules"] == rules == summary.height_rules
    for key, props in by_id.items():
        if key in levels:
            assert (props["height_rule"], props["height_m"]) == ("levels", pytest.approx(levels[key] * 3.0))
        else:
            assert (props["height_rule"], props["height_m"]) == ("default", 10.0)


def test_osm_report_counts(osm_scenes: dict[str, Any]) -> None:
    # What was clipped or dropped is reported, and adds up.
    for filename, (_, meta, summary) in osm_scenes.items():
        report = meta["buildings"]["footprints"]
        assert report["kept"] == meta["buildings"]["count"], filename
        assert report["read"] == report["kept"] + report["dropped_outside"] + report["dropped_degenerate"], filename
        assert summary.clipped == report["clipped"]
    # Known features of the data: Oakland has buildings crossing the box edge,
    # Aguascalientes has buildings outside its <bounds>.
    assert osm_scenes["West-Oakland.osm"][1]["buildings"]["footprints"]["clipped"] > 0
    assert osm_scenes["aguascalientes.osm"][1]["buildings"]["footprints"]["dropped_outside"] > 0


def test_osm_scene_sites_and_files(osm_scenes: dict[str, Any]) -> None:
    ws, meta, _ = osm_scenes["West-Oakland.osm"]
    folder = ws / "scenes" / meta["name"]
    assert len(meta["sites"]) == 6
    assert len(list((folder / "meshes").glob("building_*.ply"))) == meta["buildings"]["count"]
    assert meta["roads"] > 0  # highways in the extract are kept for display
    ext = meta["extent_m"]
    for site in meta["sites"]:
        assert ext["x_min"] <= site["x_m"] <= ext["x_max"] and ext["y_min"] <= site["y_m"] <= ext["y_max"]


# --------------------------------------------------------------------------- small files written here

ORIGIN = (52.5200, 13.4050)


def _square(lat: float, lon: float, side_m: float) -> list[tuple[float, float]]:
    """Corners (lat, lon) of a square of ``side_m`` with its south-west corner at (lat, lon)."""
    dlat = side_m / 111_320.0
    dlon = side_m / (111_320.0 * math.cos(math.radians(lat)))
    return [(lat, lon), (lat, lon + dlon), (lat + dlat, lon + dlon), (lat + dlat, lon)]


HEIGHT_TAGS = [
    {"building": "yes", "height": "12 m"},
    {"building": "yes", "height": "40'"},
    {"building": "house", "building:levels": "4"},
    {"building": "yes"},
]


def write_osm(path: Path, buildings: list[dict[str, str]]) -> Path:
    """A small valid .osm file: one 20 m square per building, 40 m apart, inside <bounds>."""
    lat0, lon0 = ORIGIN
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="rflocal-tests">',
             f'  <bounds minlat="{lat0 - 0.001}" minlon="{lon0 - 0.001}" maxlat="{lat0 + 0.002}" maxlon="{lon0 + 0.004}"/>']
    ways = []
    node_id = 1
    for i, tags in enumerate(buildings):
        corners = _square(lat0, lon0 + i * 0.0006, 20.0)
        ids = []
        for lat, lon in corners:
            lines.append(f'  <node id="{node_id}" version="1" lat="{lat:.7f}" lon="{lon:.7f}"/>')
            ids.append(node_id)
            node_id += 1
        nds = "".join(f'<nd ref="{n}"/>' for n in [*ids, ids[0]])
        tag_xml = "".join(f'<tag k="{k}" v="{v.replace(chr(39), "&apos;")}"/>' for k, v in tags.items())
        ways.append(f'  <way id="{100 + i}" version="1">{nds}{tag_xml}</way>')
    path.write_text("\n".join([*lines, *ways, "</osm>"]) + "\n", encoding="utf-8")
    return path


def test_osm_height_rules(workspace: Path, tmp_path: Path) -> None:
    path = write_osm(tmp_path / "heights.osm", HEIGHT_TAGS)
    summary = build_scene(SceneConfig(name="heights", source="osm_file", path=str(path),
                                      default_height_m=7.0, storey_height_m=3.5, sites=SiteConfig(count=2)))
    assert summary.buildings == 4
    assert summary.height_rules == {"height": 2, "levels": 1, "default": 1}
    meta = load_scene_meta("heights")
    assert meta["buildings"]["height_rules"] == {"height": 2, "levels": 1, "default": 1}
    assert meta["buildings"]["default_height_m"] == 7.0 and meta["buildings"]["storey_height_m"] == 3.5
    features = json.loads((scene_dir("heights") / "buildings.geojson").read_text())["features"]
    got = {f["properties"]["osm_id"]: (f["properties"]["height_rule"], f["properties"]["height_m"]) for f in features}
    assert got == {
        "way/100": ("height", pytest.approx(12.0)),
        "way/101": ("height", pytest.approx(40 * 0.3048)),
        "way/102": ("levels", pytest.approx(14.0)),
        "way/103": ("default", 7.0),
    }
    for f in features:
        assert f["properties"]["area_m2"] == pytest.approx(400.0, rel=0.01)
    assert meta["buildings"]["height_m"]["max"] == pytest.approx(14.0)
    assert meta["buildings"]["height_m"]["min"] == pytest.approx(7.0)


def test_geojson_file_builds(workspace: Path, tmp_path: Path) -> None:
    lat0, lon0 = ORIGIN
    features = []
    props = [{"height": 25}, {"building:levels": "3"}, {"building:material": "glass"}]
    for i, p in enumerate(props):
        ring = [[lon, lat] for lat, lon in _square(lat0, lon0 + i * 0.0006, 15.0)]
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                         "properties": p})
    # A point feature is ignored, not an error.
    features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon0, lat0]}, "properties": {}})
    path = tmp_path / "footprints.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    summary = build_scene(SceneConfig(name="gj", source="geojson_file", path=str(path), sites=SiteConfig(count=3)))
    assert summary.buildings == 3
    assert summary.height_rules == {"height": 1, "levels": 1, "default": 1}
    meta = load_scene_meta("gj")
    assert meta["source"] == {"kind": "geojson_file", "file": "footprints.geojson"}
    assert meta["buildings"]["footprint_area_m2"] == pytest.approx(3 * 225.0, rel=0.01)
    written = json.loads((scene_dir("gj") / "buildings.geojson").read_text())["features"]
    heights = [f["properties"]["height_m"] for f in written]
    assert heights == [25.0, 9.0, 10.0]
    # an OSM-style building:material property chooses the material
    assert written[2]["properties"]["material"] == "glass"
    # box: the bounds of the footprints
    assert meta["bbox"]["south"] == pytest.approx(lat0) and meta["bbox"]["west"] == pytest.approx(lon0)
    assert meta["frame"]["utm_zone"] == "33N"


# --------------------------------------------------------------------------- height parsing


@pytest.mark.parametrize(
    ("value", "metres"),
    [
        ("12", 12.0), (12, 12.0), (12.5, 12.5), ("12.5 m", 12.5), ("12 m", 12.0), ("12,5", 12.5),
        ("40'", 40 * 0.3048), ("40 ft", 40 * 0.3048), ("40 feet", 40 * 0.3048),
        ("40'6\"", 40 * 0.3048 + 6 * 0.0254), ("40' 6\"", 40 * 0.3048 + 6 * 0.0254),  # feet and inches
        (None, None), ("", None), ("tall", None), ("0", None), ("-4", None), ("5000", None),
    ],
)
def test_parse_height_m(value: Any, metres: float | None) -> None:
    got = parse_height_m(value)
    if metres is None:
        assert got is None
    else:
        assert got == pytest.approx(metres)


@pytest.mark.parametrize(("value", "levels"), [("4", 4.0), (3, 3.0), ("2.5", 2.5), ("0", None), ("many", None),
                                               (None, None), ("400", None)])
def test_parse_levels(value: Any, levels: float | None) -> None:
    assert parse_levels(value) == levels


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"height": "12 m", "building:levels": "9"}, (12.0, "height")),  # height wins
        ({"height": "40'"}, (40 * 0.3048, "height")),
        ({"building:levels": "4"}, (4 * 3.5, "levels")),
        ({"height": "unknown", "building:levels": "2"}, (2 * 3.5, "levels")),
        ({"building": "yes"}, (8.0, "default")),
        ({"building:levels": "none"}, (8.0, "default")),
    ],
)
def test_pick_height(tags: dict[str, Any], expected: tuple[float, str]) -> None:
    height, rule = pick_height(tags, default_height_m=8.0, storey_height_m=3.5)
    assert rule == expected[1]
    assert height == pytest.approx(expected[0])
    assert np.isfinite(height)
