"""Network runs end to end: files of a run, reload, cancel mid-epoch, resume, failure, CLI, page;
why each run stopped (all epochs, early stop, time budget, cancelled, failed) and its time left."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core.dataset import GenerationConfig, generate_dataset
from rflocal_core.infer import evaluate_run, load_run
from rflocal_core.jobs import REGISTRY
from rflocal_core.models import errors_m, load_inputs
from rflocal_core.progress import EtaEstimator, Step
from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene
from rflocal_core.train import CheckpointError, list_runs, read_metrics, resume, train

pytestmark = pytest.mark.raytrace
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine-ws")
    mp = pytest.MonkeyPatch()
    mp.setenv("RFLOCAL_WORKSPACE", str(path))
    build_scene(SceneConfig(name="ecity", procedural=ProceduralConfig(size_m=200, seed=8), sites=SiteConfig(count=5)))
    generate_dataset(GenerationConfig(name="eds", scenes=("ecity",), samples_per_scene=400, cell_size_m=4.0,
                                      map_samples_per_tx=600_000, paths_samples_per_src=10_000, min_sites=2))
    yield path
    mp.undo()


def _row(run_id: str) -> dict:
    return next(r for r in list_runs() if r["run_id"] == run_id)


def test_phy_token_features_are_read_and_travel_in_the_checkpoint(ws):
    """phy_features: the PHY/MAC fields of the generated dataset become token columns, masked where absent."""
    from dataclasses import replace

    from rflocal_core.dataset import export_dataset
    from rflocal_core.infer.predict import predict_measurements
    from rflocal_core.models.features import PHY_COLUMNS, FeatureSpec, make_batch, token_columns
    from rflocal_core.models.nets import build_network

    result = train("eds", "setnet", model_config={"phy_features": True}, train_config={"epochs": 1, "batch_size": 64},
                   seed=3)
    config = json.loads((ws / "runs" / result.run_id / "config.json").read_text())
    assert config["features"]["phy"] is True and config["model_config"]["phy_features"] is True
    loaded = load_run(result.run_id)
    x = load_inputs("eds", "val", with_maps=False)
    assert x.phy is not None and x.phy.shape == (*x.node_mask.shape, len(PHY_COLUMNS) // 2)
    batch = make_batch(x, FeatureSpec.from_dict(config["features"]))
    base = len(token_columns(config["features"]["frame"]))  # the PHY columns follow the frame's own
    assert batch.feats.shape[-1] == base + len(PHY_COLUMNS)
    ok = batch.feats[..., base + 1::2].numpy() > 0
    np.testing.assert_array_equal(ok, np.isfinite(x.phy) & x.node_mask[..., None])
    assert ok[..., 0].sum() > 0.5 * batch.mask.sum().item()  # RSRQ with most reports
    a = loaded.predict(x)
    np.testing.assert_array_equal(a.position_m, load_run(result.run_id).predict(x).position_m)
    without = loaded.predict(replace(x, phy=None))  # masked: the network reads them
    assert not np.allclose(a.position_m, without.position_m)
    # a measurement file carries them too: the exported split predicts as the dataset does
    ms = export_dataset("eds", split="val")
    by_file = predict_measurements(loaded, ms)
    rows = {int(r["id"].rsplit("-", 1)[1]): r for r in by_file.to_json()["predictions"]}
    k = [i for i, row in enumerate(x.indices) if int(row) in rows]
    assert len(k) == len(x.indices)
    np.testing.assert_allclose([[rows[int(x.indices[i])]["x_m"], rows[int(x.indices[i])]["y_m"]] for i in k],
                               a.position_m[k], atol=0.05)
    # heimdall takes the same wider tokens
    heimdall = build_network("heimdall", {"phy_features": True}, vocab_size=len(config["features"]["node_keys"]))
    assert heimdall(batch.index(slice(0, 8)))["mu"].shape == (8, 2)


def test_mapformer_phy_tokens_train_predict_with_and_without_them_and_old_checkpoints_load(ws):
    """mapformer's phy_features: one epoch on the generated PHY reports; a measurement file with the PHY/MAC
    fields and the same file without them both predict (masked, not refused), differently; a checkpoint
    from before the option (no ``phy_features``, no ``features.phy``) loads as a network without it."""
    from dataclasses import replace

    import torch

    from rflocal_core.dataset import export_dataset
    from rflocal_core.infer.predict import predict_measurements
    from rflocal_core.measurements.format import PHY_FIELDS
    from rflocal_core.models.features import PHY_COLUMNS, TOKEN_COLUMNS
    from rflocal_core.models.nets import build_network
    from rflocal_core.models.neural import NeuralModel

    small = {"d_model": 16, "heads": 2, "layers": 1, "map_layers": 0, "map_res": 16, "grid_cells": 4, "top_k": 0,
             "physics_prior": False}  # the network alone: its tokens move the output
    result = train("eds", "mapformer", model_config={**small, "phy_features": True},
                   train_config={"epochs": 1, "batch_size": 128}, seed=3)
    config = json.loads((ws / "runs" / result.run_id / "config.json").read_text())
    assert config["features"]["phy"] is True and config["model_config"]["phy_features"] is True
    loaded = load_run(result.run_id)
    width = loaded.model.net.token_mlp[0].in_features - 4 * loaded.model.net.config.pe_freqs
    assert width == len(TOKEN_COLUMNS) + len(PHY_COLUMNS)
    ms = export_dataset("eds", split="val")
    ms = replace(ms, samples=ms.samples[:24])
    assert any(r.rsrq_db is not None for s in ms.samples for r in s.reports)
    bare = replace(ms, samples=tuple(replace(s, reports=tuple(replace(r, **dict.fromkeys(PHY_FIELDS)) for r in
                                                               s.reports)) for s in ms.samples))
    rows = [{p.id: (p.x_m, p.y_m) for p in predict_measurements(loaded, m).predictions} for m in (ms, bare)]
    assert set(rows[0]) == set(rows[1]) == {s.id for s in ms.samples}
    a, b = (np.array([r[k] for k in sorted(r)]) for r in rows)
    assert np.isfinite(a).all() and np.isfinite(b).all() and not np.allclose(a, b)  # the fields are read
    # a checkpoint written before the option: its keys absent, the weights of a network without PHY columns
    torch.manual_seed(0)
    before = build_network("mapformer", small, vocab_size=len(config["features"]["node_keys"]))
    features = {k: v for k, v in config["features"].items() if k != "phy"}
    old = NeuralModel.from_checkpoint({"model": "mapformer", "config": {"model_config": small, "features": features},
                                       "state": {k: v.numpy() for k, v in before.state_dict().items()}})
    assert old.net.config.phy_features is False and old.spec.phy is False
    assert old.net.token_mlp[0].in_features == 4 * old.net.config.pe_freqs + len(TOKEN_COLUMNS)


@pytest.mark.parametrize("model", ["setnet", "heimdall"])
def test_network_run_files_and_identical_reload(ws, model):
    result = train("eds", model, train_config={"epochs": 4, "batch_size": 32}, seed=3)
    run = ws / "runs" / result.run_id
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "network" and config["train_config"]["epochs"] == 4 and config["dataset_digest"]
    assert config["features"]["extent_m"] > 0 and config["parameters"] > 1000
    rows = read_metrics(result.run_id)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert {"train_loss", "val_loss", "lr", "seconds"} <= set(r) and r["val"]["median_m"] > 0
    best = min(rows, key=lambda r: r["val"]["median_m"])
    assert result.summary.median_m == pytest.approx(best["val"]["median_m"])
    assert result.summary.to_json() == best["val"] and result.best_epoch == best["epoch"] and result.epochs_run == 4
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "done" and status["best"]["epoch"] == best["epoch"]
    assert status["stop"]["kind"] == "epochs" and status["stop"]["text"] == "all epochs done (4/4)"
    assert result.stopped == "all epochs done (4/4)" == _row(result.run_id)["stopped"]
    assert "inference_ms_per_sample" not in result.to_json() and "warnings" not in result.to_json()

    loaded = load_run(result.run_id)
    x = load_inputs("eds", "val", with_maps=False)
    a = loaded.predict(x)
    b = load_run(result.run_id).predict(x)
    np.testing.assert_array_equal(a.position_m, b.position_m)
    assert np.median(errors_m(a, x)) == pytest.approx(result.summary.median_m, rel=1e-6)
    assert (a.sigma_m > 0).all()
    on_test = evaluate_run(result.run_id, "eds", split="test").summary
    assert on_test.count > 0 and on_test.median_m > 0


def test_cancel_mid_epoch_stops_fast_keeps_best_checkpoint_and_resumes(ws):
    # small batches make an epoch last long enough to cancel inside it
    job = REGISTRY.submit("train", "cancel-me", lambda ctx: train(
        "eds", "heimdall", train_config={"epochs": 400, "batch_size": 2}, progress=ctx.progress, run_id="cancel-me"))
    deadline = time.time() + 120
    while not read_metrics_safe("cancel-me") and time.time() < deadline:
        time.sleep(0.2)
    assert read_metrics_safe("cancel-me"), "no epoch finished in 120 s"
    time.sleep(0.5)  # inside the next epoch
    t0 = time.time()
    job.cancel()
    assert job.wait(10.0)
    assert time.time() - t0 < 5.0
    assert job.state == "cancelled"
    row = _row("cancel-me")
    assert row["state"] == "cancelled" and row["resumable"] and row["median_m"] > 0
    done_epochs = len(read_metrics("cancel-me"))
    assert row["stopped"] == f"cancelled at epoch {done_epochs + 1}/400"  # the epoch a resume continues
    x = load_inputs("eds", "val", with_maps=False)
    assert np.isfinite(load_run("cancel-me").predict(x).position_m).all()

    out = resume("cancel-me", max_minutes=0.01)  # the budget is already spent: one step, validate, stop
    assert out.stop_reason == "time limit"
    epochs = [r["epoch"] for r in read_metrics("cancel-me")]
    assert epochs == list(range(1, done_epochs + 2))
    assert _row("cancel-me")["state"] == "done"
    assert _row("cancel-me")["stopped"] == f"time budget reached at epoch {done_epochs + 1}/400" == out.stopped
    with pytest.raises(ValueError, match="already finished"):
        resume("cancel-me")


def read_metrics_safe(run_id: str) -> list:
    try:
        return read_metrics(run_id)
    except FileNotFoundError:
        return []


def test_a_crash_marks_the_run_failed_with_its_error(ws):
    def boom(stage: str, fraction: float) -> None:
        if stage.startswith("epoch 2"):
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        train("eds", "setnet", train_config={"epochs": 3}, progress=boom, run_id="crashes")
    row = _row("crashes")
    assert row["state"] == "failed" and row["error"] == "RuntimeError: disk on fire"
    assert row["stopped"] == "failed at epoch 2/3"


def test_a_time_budget_stops_the_run_and_bounds_its_time_left(ws):
    """A real run under a 3-second budget: the status says where the budget stopped it, and the
    time left shown while it ran never exceeded what was left of the budget."""
    est, shown, first = EtaEstimator(), [], []

    def watch(stage: str, fraction: float, *, step: Step | None = None) -> None:
        now = time.monotonic()
        if step is not None and not first:
            first.append(now)  # the first epoch report comes after the budget's clock started
        est.update(stage, step, now)
        eta = est.estimate(now)
        if eta is not None:
            shown.append((now - first[0], eta))

    result = train("eds", "setnet", train_config={"epochs": 1000, "max_minutes": 0.05, "batch_size": 16},
                   progress=watch, run_id="budget")
    k = result.epochs_run
    assert 0 < k < 1000 and result.stop_reason == "time limit"
    status = json.loads((ws / "runs" / "budget" / "status.json").read_text())
    assert status["stop"] == {"kind": "time_budget", "epoch": k, "epochs": 1000, "patience": None,
                              "text": f"time budget reached at epoch {k}/1000"}
    assert _row("budget")["stopped"] == result.stopped == f"time budget reached at epoch {k}/1000"
    assert shown and all(eta.scope == "job" for _, eta in shown)
    assert all(eta.high_s <= max(3.0 - t, 0.0) + 1e-6 for t, eta in shown), shown  # 1000 epochs: hours


def test_early_stop_is_recorded_with_its_epoch(ws):
    # a learning rate too small to move the validation median: the first epoch is no better than the untrained
    # network (epoch 0, initial_validation), which is kept
    result = train("eds", "setnet", train_config={"epochs": 30, "patience": 1, "lr": 1e-7, "warmup_epochs": 0},
                   run_id="stops-early")
    assert result.stop_reason == "early stopping" and result.epochs_run == 1 and result.best_epoch == 0
    assert result.stopped == "early stop at epoch 1 (patience 1)" == _row("stops-early")["stopped"]


def test_corrupt_network_checkpoint_is_a_clear_error(ws):
    run_id = train("eds", "setnet", train_config={"epochs": 1}).run_id
    path = ws / "runs" / run_id / "model.pt"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or not a safe tensor checkpoint"):
        load_run(run_id)


def test_cli_trains_a_network_with_epochs_and_budget(ws, run_cli):
    proc = run_cli(["train", "--dataset", "eds", "--model", "setnet", "--epochs", "2", "--max-minutes", "5",
                    "--seed", "4"], ws)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"run_id", "median_m", "p95_m", "mean_m"} <= set(out) and out["epochs_run"] == 2
    assert "epoch 2/2 val median" in proc.stderr and out["stopped"] == "all epochs done (2/2)"
    listed = json.loads(run_cli(["runs", "list"], ws).stdout)
    assert next(r for r in listed if r["run_id"] == out["run_id"])["stopped"] == "all epochs done (2/2)"
    proc = run_cli(["runs", "resume", out["run_id"]], ws)
    assert proc.returncode == 2 and "already finished" in proc.stderr
    proc = run_cli(["train", "--dataset", "eds", "--model", "setnet", "--epochs", "0"], ws)
    assert proc.returncode == 2 and "epochs: expected an integer in [1, 100000], got 0" in proc.stderr


def test_training_monitor_starts_a_short_run_and_shows_it_finished(ws):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/views/training_monitor.py")
    at.run()
    assert not at.exception
    at.selectbox(key="tm_dataset").set_value("eds")
    at.selectbox(key="tm_model").set_value("setnet")
    at.run()
    at.number_input(key="tm_epochs").set_value(2)
    at.button(key="tm_start").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    started = at.success[0].value
    run_id = started.split("**")[1]
    job = next(j for j in REGISTRY.list(kind="train") if j.label == run_id)
    assert job.wait(120) and job.state == "done", job.error
    at.run()
    table = at.dataframe[0].value
    assert table.loc[table["run"] == run_id, "state"].item() == "done"
    assert table.loc[table["run"] == run_id, "stopped"].item() == "all epochs done (2/2)"
    assert any(m.value == "**Stopped:** all epochs done (2/2)" for m in at.markdown)
    assert at.selectbox(key="tm_selected").value == run_id
    assert at.get("plotly_chart"), "no training curves shown"

    at.selectbox(key="tm_selected").set_value("crashes" if (ws / "runs" / "crashes").exists() else run_id)
    at.run()
    if (ws / "runs" / "crashes").exists():
        assert any("disk on fire" in e.value for e in at.error)


def test_training_monitor_shows_time_left_within_the_budget_and_why_the_run_stopped(ws):
    at = AppTest.from_file(str(ROOT / "pages" / "views" / "training_monitor.py"), default_timeout=120)
    at.run()
    at.selectbox(key="tm_dataset").set_value("eds")
    at.selectbox(key="tm_model").set_value("setnet")
    at.run()
    at.number_input(key="tm_epochs").set_value(1000)
    at.number_input(key="tm_batch").set_value(16)
    at.number_input(key="tm_minutes").set_value(0.1)
    at.button(key="tm_start").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_id = at.success[0].value.split("**")[1]
    job = next(j for j in REGISTRY.list(kind="train") if j.label == run_id)
    texts: list[str] = []
    while not job.finished:
        at.run()
        texts += [p.proto.text for p in at.get("progress") if run_id in p.proto.text]
        time.sleep(0.5)
    shown = [t for t in texts if " left" in t]
    assert shown, texts  # the 6-second budget bounds the time left from the first epoch on
    assert all("min left" not in t and " h left" not in t for t in shown), shown  # 1000 epochs would say so
    assert job.state == "done", job.error
    at.run()
    k = len(read_metrics(run_id))
    table = at.dataframe[0].value
    assert table.loc[table["run"] == run_id, "stopped"].item() == f"time budget reached at epoch {k}/1000"
    assert any(m.value == f"**Stopped:** time budget reached at epoch {k}/1000" for m in at.markdown)


ANTWERP = ROOT.parent / "shared" / "data" / "real" / "antwerp_lorawan"


@pytest.mark.parametrize("model", ["setnet", "heimdall"])
def test_networks_train_on_imported_real_data(ws, model):
    """Antwerp LoRaWAN: no maps, gateways by lat/lon (five unknown), power unknown; test file kept as test."""
    if not ANTWERP.is_dir():
        pytest.skip(f"real Antwerp LoRaWAN data not found at {ANTWERP}")
    from rflocal_core.dataset import import_measurements, list_datasets
    from rflocal_core.measurements import convert_antwerp

    if "antw-small" not in {d["name"] for d in list_datasets()}:
        ms = convert_antwerp(ANTWERP, split="all", limit=600)
        fixed = {s.id: "test" for s in ms.samples if s.id.startswith("test-")}
        info = import_measurements(ms, name="antw-small", split_fractions=(0.9, 0.1, 0.0), fixed_splits=fixed)
        assert info.splits["test"] == len(fixed) == 600 and info.splits["train"] == 540
    result = train("antw-small", model, train_config={"epochs": 3})
    out = evaluate_run(result.run_id, "antw-small", split="test").summary
    assert out.count == 600 and out.missing == 0
    # a 3-epoch model is weak, but it is somewhere in Antwerp (the test area spans ~10 km)
    assert 0 < out.median_m < 5000
    config = json.loads((ws / "runs" / result.run_id / "config.json").read_text())
    assert len(config["features"]["node_keys"]) == 44  # every gateway column, positioned or not
