"""A new user's whole workflow in a real browser, one screenshot per step.

scene → small dataset → kNN run → upload → prediction on the map → Metrics, through the
sidebar as a newcomer clicks it. The screenshots go to ``test-artifacts/walkthrough/`` (or
``$RFLOCAL_TEST_ARTIFACTS/walkthrough``); they are kept when the test fails, so CI can keep
them as artifacts, and removed when it passes (unless ``$RFLOCAL_KEEP_SCREENSHOTS`` is set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_support import BROWSER_MARKS, ROOT, wait_idle
from tests.test_browser import browser, server  # noqa: F401 (fixtures)

pytestmark = BROWSER_MARKS

ARTIFACTS = Path(os.environ.get("RFLOCAL_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "walkthrough"


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The screenshot folder, emptied first and removed when the test passes."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    yield ARTIFACTS
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed and not os.environ.get("RFLOCAL_KEEP_SCREENSHOTS"):
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
    else:
        print(f"walkthrough screenshots kept in {ARTIFACTS}")


def _open(page, name: str) -> None:
    """Click a page in the sidebar and wait for its title.

    A click that lands while the current page redraws itself (a job that just ended) can be lost
    (seen once under load: no Training Monitor heading within 60 s), so the click is repeated, up to
    three times, 40 s apart; a page that never shows its title still fails.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    heading = page.get_by_role("heading", name=name).first
    for attempt in range(3):
        page.get_by_test_id("stSidebarNav").get_by_text(name, exact=True).click()
        try:
            heading.wait_for(timeout=40_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    wait_idle(page)


def _set_number(page, label: str, value: float) -> None:
    box = page.get_by_role("spinbutton", name=label)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def _build_scene(page, shots: Path, workspace: Path) -> None:
    _open(page, "Scene Builder")
    page.get_by_role("button", name="Build scene").click()
    page.get_by_text("Built scene demo").wait_for(timeout=240_000)
    page.screenshot(path=str(shots / "1-scene.png"), full_page=True)
    assert (workspace / "scenes" / "demo" / "scene.xml").is_file()


def _generate(page, shots: Path, workspace: Path) -> None:
    _open(page, "Data Generation")
    name = page.get_by_role("textbox", name="Dataset name").first
    name.fill("walk")
    name.press("Enter")
    wait_idle(page)
    _set_number(page, "Samples per scene", 300)
    page.get_by_text("Radio maps", exact=True).click()
    _set_number(page, "Cell size (m)", 8)
    _set_number(page, "Rays per site", 1_000_000)
    page.get_by_text("Measurements", exact=True).first.click()
    page.get_by_text("Timing and angles (PathSolver)").click()  # RSS only: the quick dataset a newcomer tries
    wait_idle(page)
    page.get_by_role("button", name="Generate dataset").click()
    page.get_by_text("walk: 300 samples").first.wait_for(timeout=420_000)
    page.wait_for_timeout(2000)  # the page redraws itself once the job has ended
    wait_idle(page)
    from playwright.sync_api import expect

    # while that whole-page redraw runs, the old elements stay until it ends (two headings for a
    # moment on a loaded machine); one heading once it is done, not two for good
    expect(page.get_by_role("heading", name="Generation jobs")).to_have_count(1, timeout=30_000)
    page.screenshot(path=str(shots / "2-dataset.png"), full_page=True)
    assert (workspace / "datasets" / "walk").is_dir()


def _train(page, shots: Path, workspace: Path) -> str:
    _open(page, "Training Monitor")
    page.get_by_role("combobox", name="Model").first.click()
    page.get_by_role("option", name="knn", exact=True).click()
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Started **", exact=False).or_(page.get_by_text("in the background")).first.wait_for(timeout=60_000)
    run_dir = workspace / "runs"
    for _ in range(240):
        done = [p.parent.name for p in run_dir.glob("knn-*/model.pt")]
        if done:
            break
        page.wait_for_timeout(500)
    assert done, f"no kNN run finished in {run_dir}: {sorted(p.name for p in run_dir.glob('*'))}"
    page.get_by_text("Baseline fitted in one step").wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "3-training.png"), full_page=True)
    return done[0]


def _export(workspace: Path, out: Path) -> Path:
    """Five test samples of the new dataset as a measurement file, written by the command line."""
    env = {**os.environ, "RFLOCAL_WORKSPACE": str(workspace)}
    done = subprocess.run([sys.executable, "-m", "rflocal_core", "data", "export", "--dataset", "walk",
                           "--split", "test", "--limit", "5", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return out


def _predict(page, shots: Path, run_id: str, upload: Path) -> None:
    _open(page, "Live Inference")
    # the run just trained is chosen by default (not the demo runs, which belong to the demo's scene)
    page.locator("input[type=file]").set_input_files(str(upload))
    page.get_by_text("Predicted position").first.wait_for(timeout=120_000)
    page.get_by_text(run_id).first.wait_for(timeout=60_000)
    assert not page.get_by_text("belongs to another scene").count()
    page.get_by_test_id("stPlotlyChart").first.locator(".main-svg").first.wait_for(timeout=60_000)  # the map
    wait_idle(page)
    page.screenshot(path=str(shots / "4-prediction.png"), full_page=True)


def _metrics(page, shots: Path, run_id: str) -> None:
    _open(page, "Metrics")
    page.get_by_text("Error CDF", exact=True).wait_for(timeout=180_000)
    page.get_by_text("Summary", exact=True).wait_for(timeout=60_000)
    wait_idle(page)
    page.screenshot(path=str(shots / "5-metrics.png"), full_page=True)
    assert page.get_by_text(run_id).count() > 0


# Tall: Streamlit scrolls inside its main block, so a full-page shot is the viewport.
def test_scene_to_metrics_walkthrough(server, browser, shots):  # noqa: F811 - the fixtures imported above
    url, workspace = server
    page = browser.new_page(viewport={"width": 1600, "height": 2600})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.get_by_role("heading", name="RFLocal workbench").wait_for(timeout=60_000)
    try:
        _build_scene(page, shots, workspace)
        _generate(page, shots, workspace)
        run_id = _train(page, shots, workspace)
        _predict(page, shots, run_id, _export(workspace, shots / "walk-test.json"))
        _metrics(page, shots, run_id)
    except Exception:
        page.screenshot(path=str(shots / "failure.png"), full_page=True)
        raise
    assert not page.get_by_text("Traceback").count(), "a traceback is on the page"
    assert not errors, f"JavaScript errors: {errors}"
    page.close()
