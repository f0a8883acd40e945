"""Runs: baselines fitted, validated, saved and reloaded like any model; CLI train/evaluate/runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rflocal_core.dataset import GenerationConfig, generate_dataset
from rflocal_core.infer import evaluate_run, load_run
from rflocal_core.models import BASELINES, errors_m, load_inputs
from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene
from rflocal_core.train import CheckpointError, RunNotFoundError, list_runs, read_metrics, train

pytestmark = pytest.mark.raytrace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs-ws")
    mp = pytest.MonkeyPatch()
    mp.setenv("RFLOCAL_WORKSPACE", str(path))
    build_scene(SceneConfig(name="rcity", procedural=ProceduralConfig(size_m=200, seed=8), sites=SiteConfig(count=5)))
    generate_dataset(GenerationConfig(name="rds", scenes=("rcity",), samples_per_scene=240, cell_size_m=4.0,
                                      map_samples_per_tx=600_000, paths_samples_per_src=10_000, min_sites=2))
    yield path
    mp.undo()


@pytest.mark.parametrize("model", sorted(BASELINES))
def test_every_baseline_trains_into_a_run_that_reloads_identically(ws, model):
    result = train("rds", model)
    run_id = result.run_id
    val = result.summary
    assert np.isfinite(val.median_m) and val.p95_m >= val.median_m
    assert result.stopped == "fitted" and result.inference_ms_per_sample >= 0 and result.best_epoch is None
    plain = result.to_json()
    assert list(plain)[:3] == ["run_id", "model", "dataset"] and plain["median_m"] == val.median_m
    assert "best_epoch" not in plain and plain["stopped"] == "fitted"
    folder = ws / "runs" / run_id
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == model and config["dataset"] == "rds" and config["dataset_digest"]
    status = json.loads((folder / "status.json").read_text())
    assert status["state"] == "done" and status["best"]["median_m"] == val.median_m
    assert status["stop"]["kind"] == "fitted"
    assert next(r for r in list_runs() if r["run_id"] == run_id)["stopped"] == "fitted"
    assert read_metrics(run_id)[0]["val"] == val.to_json()

    run = load_run(run_id)
    x = load_inputs("rds", "val", with_maps=run.needs_maps)
    again = errors_m(run.predict(x), x)
    assert np.nanmedian(again) == pytest.approx(val.median_m, abs=1e-9)

    on_test = evaluate_run(run_id, "rds", split="test")
    assert on_test.split == "test" and on_test.summary.count > 0
    assert set(on_test.to_json()) >= {"mean_m", "rmse_m", "median_m", "p67_m", "p80_m", "p95_m", "success_rates"}


def test_corrupt_or_missing_checkpoint_and_unknown_run_are_clear_errors(ws):
    run_id = train("rds", "weighted_centroid").run_id
    (ws / "runs" / run_id / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or not a safe tensor checkpoint"):
        load_run(run_id)
    (ws / "runs" / run_id / "model.pt").unlink()
    with pytest.raises(CheckpointError, match="no checkpoint model.pt"):
        load_run(run_id)
    with pytest.raises(RunNotFoundError, match="no run 'nope'"):
        load_run("nope")


def test_unknown_model_writes_no_run(ws):
    before = {r["run_id"] for r in list_runs()}
    with pytest.raises(ValueError, match="model: expected one of .*got 'setnet2'"):
        train("rds", "setnet2")
    assert {r["run_id"] for r in list_runs()} == before


def test_cli_train_evaluate_and_list(ws, run_cli):
    proc = run_cli(["train", "--dataset", "rds", "--model", "knn"], ws)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"run_id", "median_m", "p95_m", "mean_m"} <= set(out)
    proc = run_cli(["evaluate", "--run", out["run_id"], "--dataset", "rds", "--split", "test"], ws)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["split"] == "test"
    proc = run_cli(["runs", "list"], ws)
    assert out["run_id"] in {r["run_id"] for r in json.loads(proc.stdout)}
    proc = run_cli(["train", "--dataset", "missing", "--model", "knn"], ws)
    assert proc.returncode == 2 and "no dataset named 'missing'" in proc.stderr and proc.stdout == ""
    proc = run_cli(["train", "--dataset", "rds", "--model", "knn", "--config", "[1]"], ws)
    assert proc.returncode == 2 and "config: expected a JSON object" in proc.stderr


def test_runs_written_before_stop_reasons_get_theirs_from_their_figures(workspace):
    """The shipped demo runs predate ``status.json``'s ``stop``: it is derived from what they kept."""
    from rflocal_core.demo import DEMO_RUNS, install_demo
    from rflocal_core.train import StopReason

    if not install_demo():
        pytest.skip("the demo runs are not shipped in this checkout")
    rows = {r["run_id"]: r for r in list_runs()}
    setnet, knn = (json.loads((workspace / "runs" / r / "status.json").read_text()) for r in DEMO_RUNS)
    assert "stop" not in setnet and setnet["best"]["stop_reason"] == "epochs"
    epochs = setnet["best"]["epochs_run"]
    assert rows[DEMO_RUNS[0]]["stopped"] == f"all epochs done ({epochs}/{epochs})"
    assert rows[DEMO_RUNS[1]]["stopped"] == "fitted"
    legacy = {"state": "done", "best": {"stop_reason": "time limit", "epochs_run": 23}}
    assert StopReason.from_status(legacy, {"kind": "network", "train_config": {"epochs": 60}}).text == (
        "time budget reached at epoch 23/60")
    legacy = {"state": "done", "best": {"stop_reason": "early stopping", "epochs_run": 41}}
    assert StopReason.from_status(legacy, {"kind": "network", "train_config": {"epochs": 60, "patience": 15}}).text \
        == "early stop at epoch 41 (patience 15)"
    assert StopReason.from_status({"state": "running"}, {"kind": "network"}) is None
