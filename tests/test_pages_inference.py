"""Live Inference through AppTest: the shipped demo predicts out of the box; bad files get their message."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core import demo
from rflocal_core.infer import predict_file

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "views" / "live_inference.py")

pytestmark = pytest.mark.skipif(not demo.demo_available(), reason="assets/demo is missing (make demo-model)")


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="li_upload").set_value((name, data, "application/json"))
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_demo_models_are_installed_and_predict_the_example_files(tmp_path, monkeypatch):
    """A fresh workspace: the shipped runs predict the shipped examples within the recorded bounds."""
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    assert demo.install_demo() == list(demo.DEMO_RUNS)
    assert demo.install_demo() == []  # idempotent
    manifest = json.loads(demo.MANIFEST.read_text())
    for run_id in demo.DEMO_RUNS:
        for file in (demo.EXAMPLE_FILE, demo.EXAMPLE_SINGLE):
            out = predict_file(run_id, file).runs[0]
            errors = np.array([p.error_m for p in out.predictions])
            bound = manifest["examples"][run_id][file.name]
            assert len(errors) == bound["count"] and not out.bad_samples
            assert np.median(errors) <= bound["median_bound_m"], (run_id, file.name, np.median(errors), bound)
            assert np.percentile(errors, 95) <= bound["p95_bound_m"]


def test_uploading_the_example_shows_a_prediction(page):
    _upload(page, "example_single.json", demo.EXAMPLE_SINGLE.read_bytes())
    assert not page.error, [e.value for e in page.error]
    metric = page.metric[0]
    assert metric.label == "Predicted position"
    lat, lon = (float(v) for v in metric.value.split(","))
    expected = predict_file(demo.DEMO_RUNS[0], demo.EXAMPLE_SINGLE).runs[0].predictions[0]
    assert (lat, lon) == pytest.approx((expected.lat, expected.lon), abs=2e-6)
    assert any("error" in m.value for m in page.markdown)


def test_several_runs_side_by_side_and_a_batch_table(page):
    page.multiselect(key="li_runs").set_value(list(demo.DEMO_RUNS))
    page.run()
    _upload(page, "example_measurements.json", demo.EXAMPLE_FILE.read_bytes())
    assert not page.error, [e.value for e in page.error]
    assert len(page.metric) == 2
    table = page.dataframe[-1].value
    assert len(table) == 2 * 25 and set(table["run_id"]) == set(demo.DEMO_RUNS)
    page.selectbox(key="li_sample").set_value(table["id"].iloc[3])
    page.run()
    assert not page.exception and page.subheader[0].value == f"Sample {table['id'].iloc[3]}"


def _example() -> dict:
    return json.loads(demo.EXAMPLE_FILE.read_text())


def _edit(fn) -> bytes:
    doc = copy.deepcopy(_example())
    fn(doc)
    return json.dumps(doc).encode()


def _move_node(d: dict) -> None:
    d["nodes"][0]["x_m"] += 300.0  # the file gives x_m/y_m and lat/lon; scene metres win, as on import


def _unknown_everywhere(d: dict) -> None:
    d["nodes"].append({"id": "ghost", "lat": 0.0, "lon": 0.0})
    for s in d["samples"]:
        s["reports"][0]["node"] = "ghost"


def _one_bad_sample(d: dict) -> None:
    d["samples"][2]["reports"][0]["rss_dbm"] = "strong"


def _report_of_unlisted_node(d: dict) -> None:
    d["samples"][0]["reports"][0]["node"] = "nowhere"


BAD_FILES = {
    "not JSON": (b"{not json", "error", "invalid JSON at line 1"),
    "empty": (b"", "error", "got an empty file"),
    "not UTF-8": (b"\xff\xfe\x00{", "error", "expected UTF-8 encoded JSON"),
    "a list": (b"[1, 2, 3]", "error", "expected a JSON object"),
    "wrong format": (_edit(lambda d: d.update(format="other/2")), "error", 'format: expected "rflocal-measurements/1"'),
    "no samples": (_edit(lambda d: d.update(samples=[])), "error", "samples: expected a non-empty list of samples"),
    "emitter mode": (_edit(lambda d: d.update(mode="emitter")), "error", "mode: the file holds 'emitter' measurements"),
    "other scene": (_edit(lambda d: d.update(scene="atlantis")), "error", "scene: the file is for scene 'atlantis'"),
    "moved node": (_edit(_move_node), "error", "the file belongs to another scene or site layout"),
    "unknown node everywhere": (_edit(_unknown_everywhere), "warning", "None of the 25 samples"),
    "one bad sample": (_edit(_one_bad_sample), "warning", "1 of 25 samples"),
    "unlisted node": (_edit(_report_of_unlisted_node), "warning", "1 of 25 samples"),
    "survey of an emitter": (json.dumps({"src": {"features": {"x": [48.1], "y": [11.5], "rssi": [-90]}}}).encode(),
                             "error", "mode: the file holds 'emitter' measurements"),
    "too large": (b" " * (20 * 2**20 + 10) + b"{}", "error", "is too large"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_each_bad_file_shows_its_message(page, name):
    data, kind, needle = BAD_FILES[name]
    _upload(page, f"{name}.json", data)
    shown = [e.value for e in (page.error if kind == "error" else page.warning)]
    assert any(needle in text for text in shown), shown
    bad_table = next((df.value for df in page.dataframe if "message" in df.value), None)
    if name == "unknown node everywhere":
        assert any("never saw" in str(v) for v in bad_table["message"])
        assert not page.metric  # nothing predicted, nothing made up
        # the ghost node sits at (0, 0): the quality checks say so, and its position is dropped
        quality = next(df.value for df in page.dataframe if "reason" in df.value)
        assert list(quality["reason"]) == ["node_position_sentinel"] and list(quality["first ids"]) == ["ghost"]
        assert any("1 node positions (node_position_sentinel 1)" in w.value for w in page.warning)
    if name in ("one bad sample", "unlisted node"):
        assert page.metric  # the good samples are still predicted
        assert any("samples[" in str(v) for v in bad_table["message"])


def test_a_sequence_gets_a_timeline_of_its_reports(page):
    def sequence(d: dict) -> None:
        d["samples"] = d["samples"][:1]
        reports = d["samples"][0]["reports"]
        later = [{**r, "t_s": 0.5, "rss_dbm": r["rss_dbm"] - 2.0} for r in reports if "rss_dbm" in r]
        d["samples"][0]["reports"] = reports + later

    _upload(page, "sequence.json", _edit(sequence))
    assert not page.error, [e.value for e in page.error]
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text") for c in page.get("plotly_chart")]
    assert page.metric and titles.count("RSS per node over time") == 1  # the timeline, beside the map


def test_a_file_with_several_problems_lists_them_all(page):
    """A missing mode no longer hides the bad samples: the page lists every problem, one per line."""
    doc = _example()
    del doc["mode"]
    doc["samples"][1]["reports"][0]["rss_dbm"] = "oops"
    doc["samples"][4]["reports"][0]["toa_ns"] = "late"
    _upload(page, "several.json", json.dumps(doc).encode())
    (shown,) = [e.value for e in page.error]
    lines = shown.splitlines()
    assert lines[0] == "3 problems:"
    assert lines[1].startswith("- mode: expected") and lines[2].startswith("- samples[1].reports[0].rss_dbm: ")
    assert lines[3].startswith("- samples[4].reports[0].toa_ns: ")


def test_the_upload_limit_is_one_number(page):
    """The label, Streamlit's own "per file" limit and the core's cap agree, and the server takes it."""
    import tomllib

    from rflocal_core import settings
    from rflocal_core.measurements import MAX_MEASUREMENT_FILE_BYTES
    from rflocal_core.measurements.table import MAX_TABLE_FILE_BYTES

    uploader = page.file_uploader(key="li_upload")
    mib = MAX_MEASUREMENT_FILE_BYTES // 2**20
    table_mib = min(MAX_TABLE_FILE_BYTES // 2**20, settings.max_upload_mib)  # the server's cap is below the core's
    # Streamlit's limit is the larger (tables); the core refuses a JSON file over its own cap by name
    assert uploader.proto.max_upload_size_mb == table_mib and mib == 20 < table_mib
    assert f"JSON (at most {mib} MB) or table (at most {table_mib} MB)" in uploader.label
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == settings.max_upload_mib >= mib
    assert settings.max_osm_file_bytes // 2**20 <= settings.max_upload_mib  # OSM extracts fit under the server's cap


def _map(at: AppTest) -> dict:
    (spec,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith("li_map")] or [None]
    assert spec is not None, "no map"
    return spec


def test_the_map_shows_the_scene_a_scale_bar_and_the_demo_knn_posterior(page):
    """The demo opens with both shipped runs; the map: buildings inside its axes, a scale bar, a heatmap with a
    colour bar and a legend entry, a caption naming what is drawn; the candidates table has its caption."""
    from pages.views.inference_map import BUILDINGS, SCALE_BAR, TRUTH

    assert page.multiselect(key="li_runs").value == list(demo.DEMO_RUNS)
    page.radio(key="li_source").set_value("Example file").run()
    assert not page.exception and not page.error, [e.value for e in page.error]
    spec = _map(page)
    traces = {t.get("name"): t for t in spec["data"]}
    layout = spec["layout"]
    # full width: no fixed width (Streamlit stretches it), equal axes in metres
    assert "width" not in layout and layout["height"] >= 600 and layout["yaxis"]["scaleanchor"] == "x"
    # no building is clipped: every vertex lies inside the axes' ranges
    (x0, x1), (y0, y1) = layout["xaxis"]["range"], layout["yaxis"]["range"]
    xs = [v for v in traces[BUILDINGS]["x"] if v is not None]
    ys = [v for v in traces[BUILDINGS]["y"] if v is not None]
    assert len(xs) > 100 and x0 <= min(xs) and max(xs) <= x1 and y0 <= min(ys) and max(ys) <= y1
    # a scale bar of a round length, labelled
    bar = traces[SCALE_BAR]
    length = max(v for v in bar["x"] if v is not None) - min(v for v in bar["x"] if v is not None)
    assert any(a["text"] == f"{length:g} m" for a in layout["annotations"]) and length in (50, 100, 200)
    # the demo kNN's posterior: a heatmap with a colour scale, a colour bar and a legend entry
    heat = next(t for t in spec["data"] if t["type"] == "heatmap")
    assert heat["showscale"] and heat["colorbar"]["title"]["text"] and heat["colorscale"] and heat["showlegend"]
    assert heat["name"] == "posterior of knn" and heat["zmax"] == 1.0
    assert TRUTH in traces and sum(t["type"] == "scatter" and t.get("mode") == "markers" for t in spec["data"]) >= 3
    captions = [c.value for c in page.caption]
    assert any(f"the bar below the scene is {length:g} m" in c and "posterior of **knn**" in c for c in captions)
    assert any(c.startswith("Top ") and "posterior mass within 10 m" in c for c in captions)
    # zoomed to the sample: the axes hold its predictions and truth, and are smaller than the scene
    page.toggle(key="li_focus").set_value(True).run()
    zoomed = _map(page)
    (zx0, zx1), (zy0, zy1) = zoomed["layout"]["xaxis"]["range"], zoomed["layout"]["yaxis"]["range"]
    assert zx1 - zx0 < (x1 - x0) / 2
    for t in zoomed["data"]:
        if t.get("mode") == "markers":
            assert all(zx0 <= x <= zx1 for x in t["x"]) and all(zy0 <= y <= zy1 for y in t["y"]), t["name"]
