"""The Scene Builder's box map in a real browser with the internet unreachable.

streamlit run + headless Chromium (Debian's, via Playwright), as in tests/test_browser.py.
Every request that is not to this machine is aborted (and Chromium resolves no other host),
so Leaflet must come from the app itself and the map tiles fail: the map must still have a
size, a draw control and a grid, and a box dragged on it must fill the S,W,N,E field, with
its size shown live and held to the 2 km limit while it is drawn.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest

from rflocal_core.geo import BBox
from tests import browser_support
from tests.browser_support import launch_chromium, serve_app

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CHROMIUM_ARGS = (*browser_support.CHROMIUM_ARGS,
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")  # no host but this one resolves
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")
MAP_FRAME = 'iframe[title="pages.views.boxmap.boxmap"]'
SIZE = re.compile(r"(\d+) m × (\d+) m")
BOX = re.compile(r"^-?\d+\.\d{6}(,-?\d+\.\d{6}){3}$")

pytestmark = browser_support.BROWSER_MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("browser-map-ws")
    with serve_app(workspace) as url:
        yield url, workspace


@pytest.fixture(scope="module")
def browser():
    with launch_chromium(CHROMIUM_ARGS) as b:
        yield b


@pytest.fixture
def offline_page(server, browser):
    """A page on the Scene Builder's box source; requests off this machine are aborted and listed."""
    url, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    blocked: list[str] = []

    def only_local(route):
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_local)
    page = context.new_page()
    page.goto(url)  # the root, then the sidebar: a server's first session knows no deep link yet
    page.get_by_role("heading", name="RFLocal workbench").wait_for(timeout=60_000)
    page.get_by_test_id("stSidebarNav").get_by_text("Scene Builder").click()
    page.get_by_role("heading", name="Scene Builder").wait_for(timeout=60_000)
    page.get_by_role("radiogroup", name="Source").get_by_text("Box on a map (online)").click()
    page.locator(MAP_FRAME).wait_for(timeout=60_000)
    yield page, page.frame_locator(MAP_FRAME), blocked
    context.close()


def tile_png(rgb: tuple[int, int, int] = (200, 230, 200)) -> bytes:
    """A plain 256 x 256 PNG, standing in for a map tile server."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * 256 for _ in range(256))
    header = struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def drag(page, container, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Press at ``start``, move to ``end`` in steps (fractions of the map's size), keep the button down."""
    bb = container.bounding_box()
    page.mouse.move(bb["x"] + start[0] * bb["width"], bb["y"] + start[1] * bb["height"])
    page.mouse.down()
    page.mouse.move(bb["x"] + end[0] * bb["width"], bb["y"] + end[1] * bb["height"], steps=12)


def test_box_map_draws_offline_and_fills_the_field(offline_page, tmp_path):
    from playwright.sync_api import expect

    page, frame, blocked = offline_page
    container = frame.locator(".leaflet-container")
    container.wait_for(timeout=60_000)
    bb = container.bounding_box()
    assert bb["width"] > 300 and bb["height"] > 300, bb  # folium's CDN map was 0 px high offline
    control = frame.locator("a.leaflet-draw-draw-rectangle")
    assert control.count() == 1
    readout = frame.locator(".boxmap-readout")
    expect(readout).to_contain_text("Offline: no map tiles, grid only", timeout=30_000)
    assert frame.locator(".grid-label").count() >= 4
    page.screenshot(path=str(tmp_path / "map-offline.png"), full_page=True)
    # The tiles were asked for and refused; nothing the map needs came from elsewhere.
    assert any("tile" in u for u in blocked), blocked
    assert not [u for u in blocked if u.split("?")[0].endswith((".js", ".css"))], blocked

    # A small box: corners and size live while dragging, then the field.
    control.click()
    drag(page, container, (0.3, 0.3), (0.5, 0.65))
    expect(readout).to_contain_text("drawing:")
    live = readout.inner_text()
    page.screenshot(path=str(tmp_path / "map-drawing.png"), full_page=True)
    page.mouse.up()
    field = page.get_by_role("textbox", name="Box S,W,N,E (degrees)")
    expect(field).to_have_value(BOX, timeout=30_000)
    box = BBox.parse(field.input_value())
    width, height = box.size_m()
    shown = [float(v) for v in SIZE.search(live).groups()]
    assert 50 < width < 2000 and 50 < height < 2000
    assert shown == pytest.approx([width, height], abs=2.0)  # the readout measures as the core does
    assert f"SW {box.south:.6f}, {box.west:.6f}" in readout.inner_text()

    # A box dragged wider than 2 km stops at the limit while it is drawn.
    control.click()
    drag(page, container, (0.02, 0.9), (0.98, 0.1))
    expect(readout).to_contain_text("at the 2000 m limit")
    page.screenshot(path=str(tmp_path / "map-limit.png"), full_page=True)
    page.mouse.up()
    expect(field).not_to_have_value(field.input_value(), timeout=30_000)
    expect(field).to_have_value(BOX)
    big = BBox.parse(field.input_value())
    width, _ = big.check_size()  # the core accepts it
    assert 1990 < width <= 2000
    assert page.get_by_test_id("stException").count() == 0


def test_box_map_shows_the_outlines_of_a_loaded_file(offline_page, tmp_path):
    if not (SHARED_DATA / "osm" / "West-Oakland.osm").is_file():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    from playwright.sync_api import expect

    page, frame, _ = offline_page
    path = page.get_by_role("textbox", name="…or a path on this machine")
    path.fill(str(SHARED_DATA / "osm" / "West-Oakland.osm"))
    path.press("Enter")
    page.get_by_text("West-Oakland.osm: 23 buildings and 31 roads").wait_for(timeout=60_000)
    outlines = frame.locator(".leaflet-overlay-pane path")
    expect(outlines).to_have_count(23 + 31, timeout=30_000)
    expect(frame.locator(".grid-label").first).to_contain_text("°")
    page.screenshot(path=str(tmp_path / "map-outlines.png"), full_page=True)


def test_uploaded_file_names_the_scene(offline_page):
    # Issue 14: a scene built from an uploaded file kept the previous scene name.
    if not (SHARED_DATA / "osm" / "bavaria_village_48.135_10.068.osm").is_file():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    from playwright.sync_api import expect

    page, _, _ = offline_page
    page.get_by_role("radiogroup", name="Source").get_by_text("OSM / GeoJSON file").click()
    # The source's own uploader (the box source's outline uploader may still be on the page).
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="OSM XML (.osm) or GeoJSON footprints")
    uploader.locator("input[type=file]").set_input_files(str(SHARED_DATA / "osm" / "bavaria_village_48.135_10.068.osm"))
    expect(page.get_by_role("textbox", name="Scene name")).to_have_value("bavaria_village_48.135_10.068",
                                                                         timeout=60_000)


def test_box_map_shows_tiles_when_they_load(server, browser):
    # "Online": a stand-in answers the tile requests (this test, too, never reaches the internet).
    from playwright.sync_api import expect

    url, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    png = tile_png()
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL) else (
        route.fulfill(status=200, content_type="image/png", body=png) if route.request.url.endswith(".png")
        else route.abort("internetdisconnected")))
    page = context.new_page()
    page.goto(url)
    page.get_by_role("heading", name="RFLocal workbench").wait_for(timeout=60_000)
    page.get_by_test_id("stSidebarNav").get_by_text("Scene Builder").click()
    page.get_by_role("radiogroup", name="Source").get_by_text("Box on a map (online)").click()
    frame = page.frame_locator(MAP_FRAME)
    expect(frame.locator("img.leaflet-tile-loaded").first).to_be_visible(timeout=60_000)
    expect(frame.locator(".boxmap-readout")).to_contain_text("no box")
    assert "Offline" not in frame.locator(".boxmap-readout").inner_text()
    assert frame.locator(".grid-label").count() >= 4  # the grid stays over the tiles
    context.close()
