"""``make demo-model`` end to end at a small size: the pipeline that made the shipped demo still makes it."""

from __future__ import annotations

import json
import shutil

import numpy as np

from rflocal_core import demo
from rflocal_core.infer import evaluate_run, predict_file
from rflocal_core.measurements import load_measurements


def test_build_demo_makes_runs_examples_and_recorded_bounds(tmp_path, monkeypatch):
    out = tmp_path / "assets"
    manifest = demo.build_demo(samples=300, epochs=2, max_minutes=1, out_dir=out / "demo", assets_dir=out)
    assert json.loads((out / "demo" / "demo.json").read_text()) == manifest
    for run_id in demo.DEMO_RUNS:
        files = {p.name for p in (out / "demo" / "runs" / run_id).iterdir()}
        assert set(demo.RUN_FILES) | {demo.BUILDINGS_FILE} == files  # no resume.pt, no temporary files
    assert len(load_measurements(out / demo.EXAMPLE_FILE.name).samples) == demo.EXAMPLE_SAMPLES
    assert len(load_measurements(out / demo.EXAMPLE_SINGLE.name).samples) == 1
    # the recorded bounds hold for the runs as shipped, read from a workspace without the dataset
    ws = tmp_path / "fresh"
    (ws / "runs").mkdir(parents=True)
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(ws))
    for run_id in demo.DEMO_RUNS:
        (ws / "runs" / run_id).symlink_to(out / "demo" / "runs" / run_id)
        errs = [p.error_m for p in predict_file(run_id, out / demo.EXAMPLE_FILE.name).runs[0].predictions]
        bound = manifest["examples"][run_id][demo.EXAMPLE_FILE.name]
        assert np.median(errs) == bound["median_m"] or abs(np.median(errs) - bound["median_m"]) < 1e-3
        assert bound["median_bound_m"] > bound["median_m"]
    # the test split ships as a dataset of its own, and the runs score on it as the manifest recorded
    shutil.copytree(out / "demo" / demo.DEMO_TEST_DATASET, ws / "datasets" / demo.DEMO_TEST_DATASET)
    for run_id in demo.DEMO_RUNS:
        scored = evaluate_run(run_id, demo.DEMO_TEST_DATASET)
        assert scored.scene_check.status == "same", scored.scene_check
        assert scored.summary.count == manifest["test_split"][run_id]["count"]
        assert abs(scored.summary.median_m - manifest["test_split"][run_id]["median_m"]) < 0.01
