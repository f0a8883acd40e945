"""The Scene Builder's 3D view and naming: legend swatches, height bins, sites as drawn, names from files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core.errors import InvalidInputError
from rflocal_core.scene.store import height_legend, view_data
from rflocal_core.workspace import name_from_file, validate_name

ROOT = Path(__file__).resolve().parents[1]


def test_height_legend_of_one_height_is_one_value():
    rows = height_legend(11.0, 11.0)
    assert [r["label"] for r in rows] == ["11 m"]
    assert height_legend(10.5, 10.5)[0]["label"] == "10.5 m"


@pytest.mark.parametrize("lo,hi", [(6.0, 39.0), (10.0, 12.0), (10.0, 10.5), (3.2, 3.25), (0.0, 200.0)])
def test_height_legend_bins_never_print_alike(lo, hi):
    rows = height_legend(lo, hi)
    labels = [r["label"] for r in rows]
    assert len(rows) == 8 and len(set(labels)) == 8, labels
    for label in labels:
        ends = re.fullmatch(r"([\d.]+)-([\d.]+) m", label)
        assert ends and ends[1] != ends[2], label
    assert float(re.match(r"[\d.]+", labels[0])[0]) == pytest.approx(lo, abs=0.5)
    assert all(len(r["colour"]) == 3 for r in rows)


def test_view_legend_follows_the_scene(demo_scene):
    view = view_data("demo")
    heights = demo_scene["buildings"]["height_m"]
    assert view["legend"] == height_legend(heights["min"], heights["max"])
    assert {tuple(r["colour"]) for r in view["buildings"]} <= {tuple(r["colour"]) for r in view["legend"]}
    assert len(view["sites"]) == len(demo_scene["sites"])


@pytest.mark.parametrize("filename,name", [
    ("bavaria_village_48.135_10.068.osm", "bavaria_village_48.135_10.068"),
    ("/data/West Oakland (2024).osm", "West_Oakland_2024"),
    ("..hidden.geojson", "hidden"),
    ("Köln—Altstadt.json", "K_ln_Altstadt"),
    ("x..y.osm", "x.y"),
    ("___.osm", "scene"),
    ("a" * 100 + ".osm", "a" * 64),
])
def test_name_from_file_is_a_valid_name(filename, name):
    assert name_from_file(filename) == name
    assert validate_name(name) == name


def test_validate_name_still_refuses_what_name_from_file_repairs():
    with pytest.raises(InvalidInputError):
        validate_name("West Oakland (2024)")


@pytest.fixture
def scene_page(tmp_path, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/views/scene_builder.py")
    at.run()
    return at


def test_scene_from_a_file_is_named_after_it_and_drawn_as_its_legend_says(scene_page, shared_data):
    at = scene_page
    assert at.text_input(key="sb_name").value == "demo"
    at.radio(key="sb_source").set_value("OSM / GeoJSON file")
    at.run()
    at.text_input(key="sb_path").set_value(str(shared_data / "osm" / "bavaria_village_48.135_10.068.osm"))
    at.run()
    assert at.text_input(key="sb_name").value == "bavaria_village_48.135_10.068"
    at.button(key="sb_build").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Built scene **bavaria_village_48.135_10.068**" in at.success[0].value
    # The legend: a swatch per height bin, and the sites' marker as the chart draws it.
    legend = next(m.body for m in at.markdown if "scene-legend" in m.body)
    assert legend.count("background:rgb(") == len(view_data("bavaria_village_48.135_10.068")["legend"]) + 1
    assert "sites (red dot at the antenna's height)" in legend
    assert not re.search(r"(\d+)-\1 m", legend)
    deck = json.loads(at.get("deck_gl_json_chart")[0].proto.json)
    kinds = [layer["@@type"] for layer in deck["layers"]]
    assert kinds == ["PolygonLayer", "ColumnLayer", "ScatterplotLayer"]
    antennas = deck["layers"][2]
    assert antennas["radiusMinPixels"] >= 4 and antennas["getPosition"] == "@@=[lon, lat, z_m]"
    # The next file: the name is that of a built scene (unusable again), so the file renames it.
    at.text_input(key="sb_path").set_value(str(shared_data / "osm" / "West-Oakland.osm"))
    at.run()
    assert at.text_input(key="sb_name").value == "West-Oakland"
    # A name of the user's own is kept when another file is chosen.
    at.text_input(key="sb_name").set_value("mine")
    at.run()
    at.text_input(key="sb_path").set_value(str(shared_data / "osm" / "aguascalientes.osm"))
    at.run()
    assert at.text_input(key="sb_name").value == "mine"
