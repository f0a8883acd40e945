"""The Data Generation page through AppTest: fresh listings when a job ends, the radio-map plot,
the summaries as tables with units.

A browser reruns a page's ``st.fragment(run_every=...)`` parts on their timers, without rerunning
the page; :func:`run_fragments` does the same in AppTest, which has no public call for it.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest, local_script_runner

from pages.views.plots import radio_map_figure
from rflocal_core import dataset as ds
from rflocal_core.dataset.view import dataset_overview, split_rows, stage_rows
from rflocal_core.jobs import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/views/data_generation.py"
SCENE, DATASET = "tiny", "tinyds"
FAST = {"cell_size_m": 4.0, "map_samples_per_tx": 1_000_000, "paths_samples_per_src": 10_000, "min_sites": 2}


@pytest.fixture(scope="module")
def data_ws(tmp_path_factory, workspace_env, tiny_dataset) -> Path:
    """A workspace with the 240 m scene ``tiny`` (5 sites) and a 60-sample dataset ``tinyds`` on it."""
    ws = tmp_path_factory.mktemp("data_state_ws")
    with workspace_env(ws):
        tiny_dataset(SCENE, DATASET, samples=60, cache=None)  # built afresh: the page shows each stage's time
    return ws


@pytest.fixture
def page(data_ws, monkeypatch) -> AppTest:
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(data_ws))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception
    return at


def run_fragments(at: AppTest) -> AppTest:
    """Rerun only the fragments the last run registered, as the browser's ``run_every`` timers do."""
    ids = list(at._fragment_storage._fragments)  # after a run: exactly the fragments that run drew
    assert ids, "the page has no fragment to rerun"
    plain = local_script_runner.RerunData
    local_script_runner.RerunData = functools.partial(plain, fragment_id_queue=ids, is_fragment_scoped_rerun=True,
                                                      is_auto_rerun=True)
    try:
        at.run()
    finally:
        local_script_runner.RerunData = plain
    return at


def _frame_with(at: AppTest, column: str) -> pd.DataFrame:
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert frames, f"no table with a {column!r} column; tables: {[list(d.value.columns) for d in at.dataframe]}"
    return frames[0]


def _array(value) -> np.ndarray:
    """A figure array from its JSON: a list, or Plotly's typed array (``dtype``, ``bdata``, ``shape``)."""
    if isinstance(value, dict):
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return data.reshape([int(n) for n in str(shape).split(",")]) if shape else data
    return np.asarray(value, dtype=float)


def _listing_state(at: AppTest, name: str) -> str:
    listing = _frame_with(at, "state")
    return str(listing.loc[listing["name"] == name, "state"].iloc[0])


def test_datasets_tab_refreshes_when_a_generation_ends(page, data_ws):
    config = ds.GenerationConfig(name="fresh", scenes=(SCENE,), samples_per_scene=30, **FAST)
    job = REGISTRY.submit("generate", config.name, lambda ctx: ds.generate_dataset(config, progress=ctx.progress))
    partial = data_ws / "datasets" / ".partial-fresh"
    deadline = time.time() + 60
    while not partial.exists() and time.time() < deadline:
        time.sleep(0.1)
    page.run()
    assert not job.finished, "the generation ended before the page could show it running; make it larger"
    assert _listing_state(page, "fresh").startswith("generating (")  # not "partial (resumable)": a job writes it
    assert job.wait(300), "the generation did not end in 300 s"
    assert job.state == "done", job.error
    # the page is not rerun as a whole (nothing is clicked): only its timers fire
    run_fragments(page)
    assert not page.exception
    assert _listing_state(page, "fresh") == "complete"
    # and the finished job's summary is a table with units, not a dict
    assert {"stage", "time (s)", "share (%)"} <= set(_frame_with(page, "time (s)").columns)


def test_nothing_reruns_while_no_job_ends(page):
    assert _listing_state(page, DATASET) == "complete"
    before = REGISTRY.ended()
    run_fragments(page)
    assert not page.exception
    assert REGISTRY.ended() == before
    # only the fragments ran: the listing, drawn by the page itself, was not drawn again
    assert not [d for d in page.dataframe if "state" in d.value.columns]


def test_dataset_view_shows_summary_tables_with_units(page):
    page.selectbox(key="dg_open").set_value(DATASET).run()
    assert not page.exception
    # the jobs panel above may show another dataset's summary: pick the tables of the one opened
    splits = [d.value for d in page.dataframe if "split" in d.value.columns]
    assert all(list(t.columns) == ["split", "samples", "share (%)"] for t in splits)
    assert any(t.set_index("split").loc["total", "samples"] == 60 for t in splits), splits
    stages = _frame_with(page, "time (s)")
    assert list(stages.columns) == ["stage", "time (s)", "share (%)"]
    assert "radio maps (Sionna RT)" in set(stages["stage"])
    total = stages.set_index("stage")
    assert total.loc["total", "time (s)"] == pytest.approx(total.drop("total")["time (s)"].sum(), abs=0.05)
    listing = _frame_with(page, "state")
    assert listing["splits"].map(type).eq(str).all()  # "train 48 · val 6 · ...", not a dict
    assert not any("{" in c.value for c in page.caption), [c.value for c in page.caption]  # no raw dicts left


def test_radio_map_has_building_outlines_and_fits_the_scene(page, data_ws):
    page.selectbox(key="dg_open").set_value(DATASET).run()
    charts = [json.loads(c.proto.spec) for c in page.get("plotly_chart")]
    maps = [c for c in charts if any(t.get("name") == "building outlines" for t in c["data"])]
    assert maps, "no radio map with building outlines"
    fig = maps[0]
    scene = json.loads((data_ws / "scenes" / SCENE / "scene.json").read_text())["extent_m"]
    assert fig["layout"]["xaxis"]["range"] == pytest.approx([scene["x_min"], scene["x_max"]])
    assert fig["layout"]["yaxis"]["range"] == pytest.approx([scene["y_min"], scene["y_max"]])
    assert fig["layout"]["yaxis"]["scaleanchor"] == "x"
    positions = [c for c in charts if c["layout"].get("title", {}).get("text") == "Sample positions"]
    assert positions[0]["layout"]["xaxis"]["range"] == pytest.approx([scene["x_min"], scene["x_max"]])
    traces = {t.get("name"): t for t in fig["data"]}
    outline = traces["building outlines"]
    assert outline["type"] == "contour" and outline["contours"]["start"] == 0.5
    mask = _array(outline["z"]).astype(float)
    assert 0 < mask.mean() < 1  # some cells are buildings, some are not
    fill = _array(traces["buildings"]["z"]).astype(float)
    assert np.array_equal(np.isfinite(fill), mask > 0.5)  # grey exactly where the outline encloses


def test_radio_map_figure_marks_buildings_apart_from_unreached_cells(data_ws, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(data_ws))
    scene = dataset_overview(DATASET)["scenes"][0]
    fig = radio_map_figure(scene, 0)
    gain = np.asarray(fig.data[0].z, dtype=float)
    buildings = np.isfinite(np.asarray(fig.data[1].z, dtype=float))
    unreached = ~np.isfinite(gain) & ~buildings
    assert unreached.any() or np.isfinite(gain).all()
    # a building cell is drawn grey whether or not the map has a value there; an unreached street stays white
    assert (buildings & ~np.isfinite(gain)).any()
    assert fig.layout.xaxis.range == tuple(scene["extent_m"][0::2])


def test_summary_rows_have_units_and_a_total():
    rows = stage_rows({"write": 0.5, "radio_maps": 1.5})
    assert [r["stage"] for r in rows] == ["radio maps (Sionna RT)", "writing samples", "total"]
    assert rows[-1] == {"stage": "total", "time (s)": 2.0, "share (%)": 100.0}
    assert rows[0]["share (%)"] == 75.0
    assert split_rows({"train": 3, "test": 1})[0] == {"split": "train", "samples": 3, "share (%)": 75.0}
    assert split_rows(None) == [] and stage_rows({}) == []


LISTING_PAGES = {
    "pages/views/home.py": "RFLocal workbench",
    "pages/views/data_generation.py": "Data Generation",
    "pages/views/training_monitor.py": "Training Monitor",
    "pages/views/live_inference.py": "Live Inference",
    "pages/views/metrics.py": "Metrics",
    "pages/views/ablations.py": "Ablations",
}


@pytest.mark.parametrize("path", list(LISTING_PAGES))
def test_every_listing_page_redraws_when_a_job_ends(path, tmp_path, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(path)
    at.run()
    assert not at.exception
    assert at.title[0].value == LISTING_PAGES[path]
    run_fragments(at)  # no job ended: the page itself is not drawn again
    assert not at.title
    job = REGISTRY.submit("test", "ends at once", lambda ctx: None)
    assert job.wait(10) and job.state == "done"
    run_fragments(at)
    assert not at.exception
    assert [t.value for t in at.title] == [LISTING_PAGES[path]]  # the whole page ran again


def test_registry_ended_lists_finished_jobs_only(workspace):
    import threading

    from rflocal_core.jobs import JobRegistry

    registry, release = JobRegistry(), threading.Event()
    running = registry.submit("test", "waits", lambda ctx: release.wait(10))
    done = registry.submit("test", "done", lambda ctx: 1)
    failed = registry.submit("test", "fails", lambda ctx: 1 / 0)
    assert done.wait(10) and failed.wait(10)
    assert registry.ended() == {done.id, failed.id}
    running.cancel()
    release.set()
    assert running.wait(10)
    assert registry.ended() == {done.id, failed.id, running.id}


def test_the_shipped_demo_split_opens_on_the_page(tmp_path, monkeypatch):
    """The demo test split every workspace gets keeps the maps' footprint but no building heights: the page's
    dataset view draws its buildings from the footprint (it raised KeyError 'building_height_m' before)."""
    from rflocal_core import demo

    if not demo.demo_available():
        pytest.skip("assets/demo is missing (make demo-model)")
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    demo.install_demo()
    scene = dataset_overview(demo.DEMO_TEST_DATASET)["scenes"][0]
    fig = radio_map_figure(scene, 0)
    assert 0 < np.isfinite(np.asarray(fig.data[1].z, dtype=float)).mean() < 1  # some cells are buildings
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "views" / "data_generation.py"),
                           default_timeout=60)
    at.run()
    at.selectbox(key="dg_open").set_value(demo.DEMO_TEST_DATASET)
    at.run()
    assert not at.exception, at.exception
