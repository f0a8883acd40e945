"""The app in a real browser: streamlit run + headless Chromium (Debian's, via Playwright)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser_support import BROWSER_MARKS, ROOT, launch_chromium, serve_app, wait_idle

SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "osm").is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


# The root first, as `make run` opens it; then deep links, whose navigation must be ours
# (not Streamlit's legacy pages-folder list).
PAGES = {
    "": "RFLocal workbench",
    "scene_builder": "Scene Builder",
    "data_generation": "Data Generation",
    "training_monitor": "Training Monitor",
    "live_inference": "Live Inference",
    "metrics": "Metrics",
    "ablations": "Ablations",
}

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("browser-ws")
    with serve_app(workspace) as url:
        yield url, workspace


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as b:
        yield b


def test_each_page_renders_its_title(server, browser, tmp_path):
    url, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for path, title in PAGES.items():
        page.goto(f"{url}/{path}")
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_text("Training Monitor").wait_for(timeout=30_000)
        assert "Overview" in nav.inner_text() and "data generation" not in nav.inner_text()
        shot = tmp_path / f"page-{path or 'home'}.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    page.close()


def test_build_procedural_city_and_upload_osm_file(server, browser, tmp_path, shared_data):
    from playwright.sync_api import expect

    url, workspace = server
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.goto(url)  # as a newcomer would: open the app, then pick the page in the sidebar
    page.get_by_role("heading", name="RFLocal workbench").wait_for(timeout=60_000)
    page.get_by_test_id("stSidebarNav").get_by_text("Scene Builder").click()
    page.get_by_role("heading", name="Scene Builder").wait_for(timeout=60_000)
    page.get_by_role("button", name="Build scene").click()
    page.get_by_text("Built scene demo").wait_for(timeout=120_000)
    page.locator("canvas").first.wait_for(timeout=60_000)  # the pydeck 3D view
    page.screenshot(path=str(tmp_path / "procedural.png"), full_page=True)
    assert (workspace / "scenes" / "demo" / "scene.xml").is_file()

    page.get_by_text("OSM / GeoJSON file").click()
    page.locator("input[type=file]").set_input_files(str(shared_data / "osm" / "bavaria_village_48.135_10.068.osm"))
    # A click before the upload has reached the server builds nothing ("choose a file"): wait for it.
    page.get_by_text("10.068.osm").wait_for(timeout=120_000)  # shown shortened: "bavaria...10.068.osm"
    # The upload's rerun names the scene after the file; a name typed before it ends is overwritten.
    expect(page.get_by_role("textbox", name="Scene name")).to_have_value("bavaria_village_48.135_10.068",
                                                                         timeout=60_000)
    wait_idle(page)
    page.get_by_role("textbox", name="Scene name").fill("bavaria")
    page.get_by_role("textbox", name="Scene name").press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Build scene").click()
    page.get_by_text("Built scene bavaria").wait_for(timeout=240_000)
    page.screenshot(path=str(tmp_path / "osm.png"), full_page=True)
    assert (workspace / "scenes" / "bavaria" / "scene.json").is_file()
    page.close()


def test_live_inference_predicts_an_uploaded_file(server, browser, tmp_path):
    # The shipped demo runs are installed into the (fresh) workspace on the page's first visit;
    # no scene is built, so the `demo` scene another test builds here is no conflict.
    single = ROOT / "assets" / "example_single.json"
    assert single.is_file(), "assets/example_single.json is missing: run `make demo-model`"
    url, workspace = server
    # Tall: Streamlit scrolls inside its main block, so a full-page shot is the viewport.
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(url)
    page.get_by_role("heading", name="RFLocal workbench").wait_for(timeout=60_000)
    page.get_by_test_id("stSidebarNav").get_by_text("Live Inference").click()
    page.get_by_role("heading", name="Live Inference").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(single))  # "Upload a file" is the default source
    metric = page.get_by_test_id("stMetric").filter(has_text="Predicted position")
    value = metric.get_by_test_id("stMetricValue").first  # one per run: both demo runs are chosen
    value.wait_for(timeout=120_000)
    assert re.fullmatch(r"\d+\.\d{6}, \d+\.\d{6}", value.inner_text().strip()), value.inner_text()
    assert page.get_by_role("heading", name="Sample ").count() == 1
    page.get_by_test_id("stPlotlyChart").first.locator(".main-svg").first.wait_for(timeout=60_000)  # the map
    page.get_by_text("Dots: predictions").wait_for(timeout=60_000)  # the script ran past the map
    assert page.get_by_test_id("stException").count() == 0
    assert (workspace / "runs" / "demo-setnet" / "model.pt").is_file()
    shot = tmp_path / "live-inference.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()
