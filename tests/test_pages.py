"""Every page runs headless under AppTest; the Scene Builder builds through its widgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "osm").is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA
PAGES = {
    "pages/views/home.py": "RFLocal workbench",
    "pages/views/scene_builder.py": "Scene Builder",
    "pages/views/data_generation.py": "Data Generation",
    "pages/views/training_monitor.py": "Training Monitor",
    "pages/views/live_inference.py": "Live Inference",
    "pages/views/metrics.py": "Metrics",
    "pages/views/ablations.py": "Ablations",
}


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    return at


@pytest.mark.parametrize("page,title", PAGES.items())
def test_every_page_renders_without_exception(app, page, title):
    app.switch_page(page)
    app.run()
    assert not app.exception, app.exception
    assert [t.value for t in app.title] == [title]


def test_scene_builder_builds_the_default_procedural_city(app, tmp_path):
    app.switch_page("pages/views/scene_builder.py")
    app.run()
    app.text_input(key="sb_name").set_value("city7")
    app.number_input(key="sb_seed").set_value(3)
    app.button(key="sb_build").click()
    app.run()
    assert not app.exception
    assert not app.error, [e.value for e in app.error]
    assert "Built scene **city7**" in app.success[0].value
    meta = json.loads((tmp_path / "ws" / "scenes" / "city7" / "scene.json").read_text())
    assert meta["source"]["kind"] == "procedural"
    assert meta["source"]["seed"] == 3
    assert len(meta["sites"]) == 6
    # The 3D view of the new scene is on the page.
    assert any("Buildings" == m.label for m in app.metric)

    # A second build under the same name is refused with the core's message.
    app.button(key="sb_build").click()
    app.run()
    assert "already exists" in app.error[0].value


def test_scene_builder_reports_bad_input(app):
    app.switch_page("pages/views/scene_builder.py")
    app.run()
    app.text_input(key="sb_name").set_value("../escape")
    app.button(key="sb_build").click()
    app.run()
    assert not app.exception
    assert "name: expected 1-64 characters" in app.error[0].value


def test_scene_builder_osm_path_and_scene_list(app, tmp_path, shared_data):
    app.switch_page("pages/views/scene_builder.py")
    app.run()
    app.radio(key="sb_source").set_value("OSM / GeoJSON file")
    app.run()
    app.text_input(key="sb_name").set_value("oakland")
    app.text_input(key="sb_path").set_value(str(shared_data / "osm" / "West-Oakland.osm"))
    app.button(key="sb_build").click()
    app.run()
    assert not app.exception
    assert not app.error, [e.value for e in app.error]
    assert "23 buildings" in app.success[0].value
    # The Scenes tab lists it and can delete it.
    assert "oakland" in app.selectbox(key="sb_open").options
    app.checkbox(key="sb_confirm_delete").check()
    app.run()
    app.button(key="sb_delete").click()
    app.run()
    assert not (tmp_path / "ws" / "scenes" / "oakland").exists()


def test_bbox_source_offline_says_so(app, monkeypatch):
    monkeypatch.setenv("RFLOCAL_OVERPASS_URL", "http://127.0.0.1:9/api")
    app.switch_page("pages/views/scene_builder.py")
    app.run()
    app.radio(key="sb_source").set_value("Box on a map (online)")
    app.run()
    app.text_input(key="sb_bbox").set_value("48.136,11.574,48.138,11.577")
    app.button(key="sb_build").click()
    app.run()
    assert not app.exception
    assert "offline" in app.error[0].value and "procedural" in app.error[0].value


def test_scene_builder_tile_set_tab_builds_tiles(app, tmp_path):
    """The "Tile set" tab is `scene tiles`: two tiny procedural tiles, one held out, and the command line."""
    app.switch_page("pages/views/scene_builder.py")
    app.run()
    for key, value in {"sbt_count": 2, "sbt_seed": 3, "sbt_unseen": 1, "sbt_size_m_lo": 150.0,
                       "sbt_size_m_hi": 220.0, "sbt_block_m_lo": 30.0, "sbt_block_m_hi": 45.0,
                       "sbt_street_width_m_lo": 4.0, "sbt_street_width_m_hi": 8.0, "sbt_site_count_lo": 2,
                       "sbt_site_count_hi": 3}.items():
        app.number_input(key=key).set_value(value)
    app.button(key="sbt_build").click()
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert "2 tiles (2 built now, 0 kept), 1 held out" in app.success[0].value
    assert sorted(p.name for p in (tmp_path / "ws" / "scenes").iterdir()) == ["tile3-p00", "tile3-p01"]
    assert any("data generate --name DATASET --scene tile3-p00 --scene tile3-p01 --unseen" in c.value for c in app.code)
    # A range the core refuses is named on the page, nothing built.
    app.number_input(key="sbt_block_m_lo").set_value(30.0)
    app.text_input(key="sbt_osm").set_value(str(tmp_path / "missing.osm"))
    app.button(key="sbt_build").click()
    app.run()
    assert not app.exception and "missing.osm" in app.error[0].value
