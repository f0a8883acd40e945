"""The Scene Builder's box map: the offline Leaflet component, its value, and file outlines.

What the browser does (drawing, the live readout, the side limit while dragging) is in
tests/test_browser_map.py; here the page is driven under AppTest, where the map is a
component instance whose value a test can set as the browser would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core.errors import InvalidInputError, OSMFormatError
from rflocal_core.geo import BBox
from rflocal_core.scene.outlines import MAX_FEATURES, file_outlines

ROOT = Path(__file__).resolve().parents[1]
COMPONENT = "pages.views.boxmap.boxmap"
BOX_SOURCE = "Box on a map (online)"


@pytest.fixture
def bbox_page(tmp_path, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/views/scene_builder.py")
    at.run()
    at.radio(key="sb_source").set_value(BOX_SOURCE)
    at.run()
    assert not at.exception, at.exception
    return at


def map_args(at: AppTest) -> dict:
    maps = [c for c in at.get("component_instance") if c.proto.component_name == COMPONENT]
    assert len(maps) == 1, [c.proto.component_name for c in at.get("component_instance")]
    return json.loads(maps[0].proto.json_args)


def test_vendored_leaflet_is_installed_and_served_from_the_component_folder():
    from pages.views import boxmap

    assert boxmap.missing_files() == [], "run scripts/setup.sh (npm ci in pages/components/boxmap)"
    html = (boxmap.COMPONENT_DIR / "index.html").read_text(encoding="utf-8")
    for name in boxmap.VENDORED:
        assert f'src="{name}"' in html
    # Nothing is loaded from another host: every script and stylesheet is a relative path.
    assert "//" not in "".join(line for line in html.splitlines() if "<script src" in line or "<link" in line)
    lock = json.loads((boxmap.COMPONENT_DIR / "package-lock.json").read_text(encoding="utf-8"))
    for pkg in ("leaflet", "leaflet-draw"):
        assert lock["packages"][f"node_modules/{pkg}"]["integrity"].startswith("sha512-")


def test_bbox_source_declares_the_map_with_the_limit(bbox_page):
    args = map_args(bbox_page)
    assert args["max_side_m"] == 2000.0
    assert args["box"] is None and args["outlines"] is None
    assert len(args["center"]) == 2 and "{z}/{x}/{y}" in args["tiles"]


def test_typed_box_is_shown_on_the_map(bbox_page):
    bbox_page.text_input(key="sb_bbox").set_value("48.136,11.574,48.138,11.577")
    bbox_page.run()
    assert map_args(bbox_page)["box"] == [48.136, 11.574, 48.138, 11.577]
    bbox_page.text_input(key="sb_bbox").set_value("not a box")
    bbox_page.run()
    assert map_args(bbox_page)["box"] is None
    assert not bbox_page.exception


def test_drawn_box_fills_the_field_once(bbox_page):
    # What the browser sends when a box is drawn (index.html: setComponentValue).
    bbox_page.session_state["sb_map"] = {"box": [48.1, 11.5, 48.11, 11.51], "size_m": [744.0, 1112.0], "id": "1-1"}
    bbox_page.run()
    assert not bbox_page.exception and not bbox_page.error
    assert bbox_page.text_input(key="sb_bbox").value == "48.100000,11.500000,48.110000,11.510000"
    assert map_args(bbox_page)["box"] == [48.1, 11.5, 48.11, 11.51]
    # Typing afterwards wins: the same drawing is not taken again on the next rerun.
    bbox_page.text_input(key="sb_bbox").set_value("48.136,11.574,48.138,11.577")
    bbox_page.run()
    assert bbox_page.text_input(key="sb_bbox").value == "48.136,11.574,48.138,11.577"


def test_drawn_box_over_the_limit_is_refused_by_the_core(bbox_page):
    bbox_page.session_state["sb_map"] = {"box": [48.1, 11.5, 48.2, 11.51], "id": "1-2"}
    bbox_page.run()
    assert not bbox_page.exception
    assert "bbox: 744 m x 11114 m is too large" in bbox_page.error[0].value
    assert bbox_page.text_input(key="sb_bbox").value == ""


def test_outlines_of_an_osm_file_go_to_the_map(bbox_page, shared_data):
    bbox_page.text_input(key="sb_outline_path").set_value(str(shared_data / "osm" / "West-Oakland.osm"))
    bbox_page.run()
    assert not bbox_page.exception and not bbox_page.error
    args = map_args(bbox_page)
    kinds = [f["properties"]["kind"] for f in args["outlines"]["features"]]
    assert kinds.count("building") == 23 and kinds.count("road") == 31
    south, west, north, east = args["fit"]
    assert south < 37.8076 < north and west < -122.300 < east
    assert any("West-Oakland.osm: 23 buildings and 31 roads" in c.value for c in bbox_page.caption)


def test_outlines_of_a_bad_path_say_so(bbox_page, tmp_path):
    bbox_page.text_input(key="sb_outline_path").set_value(str(tmp_path / "nowhere.osm"))
    bbox_page.run()
    assert not bbox_page.exception
    assert "osm_file: file not found" in bbox_page.error[0].value
    assert map_args(bbox_page)["outlines"] is None


def test_file_outlines_of_each_kind(shared_data, tmp_path):
    osm = file_outlines(shared_data / "osm" / "bavaria_village_48.135_10.068.osm")
    assert (osm.buildings, osm.shown_buildings) == (32, 32)
    assert osm.bbox == (48.135, 10.068, 48.137, 10.071)
    assert "geojson" not in osm.to_json()  # the map's payload stays out of the CLI/JSON form
    ring = osm.geojson["features"][0]["geometry"]["coordinates"][0]
    assert all(len(str(v).split(".")[-1]) <= 6 for point in ring for v in point)
    # A GeoJSON file of a square and a MultiPolygon of two squares.
    square = [[10.0, 48.0], [10.001, 48.0], [10.001, 48.001], [10.0, 48.001], [10.0, 48.0]]
    shifted = [[x + 0.002, y] for x, y in square]
    above = [[x, y + 0.002] for x, y in square]
    path = tmp_path / "two.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [square]}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "MultiPolygon", "coordinates": [[shifted], [above]]}},
    ]}))
    gj = file_outlines(path)
    assert (gj.buildings, gj.roads) == (2, 0)
    assert [f["geometry"]["type"] for f in gj.geojson["features"]] == ["Polygon", "MultiPolygon"]
    assert gj.bbox == pytest.approx((48.0, 10.0, 48.003, 10.003))
    assert MAX_FEATURES >= 10_000
    with pytest.raises(OSMFormatError, match="unsupported extension"):
        file_outlines(tmp_path / "x.txt")


def test_drawn_box_value_is_checked():
    from pages.views.boxmap import box_text, drawn_box

    box = drawn_box({"box": [48.136, 11.574, 48.138, 11.577]})
    assert box == BBox(48.136, 11.574, 48.138, 11.577)
    assert box_text(box) == "48.136000,11.574000,48.138000,11.577000"
    with pytest.raises(InvalidInputError, match=r"bbox: expected the map to send \[S, W, N, E\]"):
        drawn_box({"box": [1, 2]})
    with pytest.raises(InvalidInputError, match="too large"):
        drawn_box({"box": [48.0, 11.0, 48.1, 11.1]})


def test_missing_leaflet_says_how_to_install_it(tmp_path, monkeypatch):
    from pages.views import boxmap

    monkeypatch.setattr(boxmap, "VENDORED", ("node_modules/not-installed/x.js",))
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/views/scene_builder.py")
    at.run()
    at.radio(key="sb_source").set_value(BOX_SOURCE)
    at.run()
    assert not at.exception
    assert "make setup" in at.warning[0].value and "not-installed/x.js" in at.warning[0].value
    assert not [c for c in at.get("component_instance") if c.proto.component_name == COMPONENT]
    at.text_input(key="sb_bbox").set_value("48.136,11.574,48.138,11.577")  # typing still works
    at.run()
    assert not at.exception
