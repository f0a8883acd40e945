"""Training with DistributedDataParallel: 2 CPU ranks (gloo) under torchrun.

The DDP run is an ordinary run (it loads, predicts, evaluates), its parameters after a few steps
are those of one process over the same global batches, a cancelled DDP run resumes to the same
parameters, and a dataset missing on one rank fails on every rank with the same message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rflocal_core import settings
from rflocal_core.infer import evaluate_run, load_run
from rflocal_core.models import errors_m, load_inputs
from rflocal_core.models.registry import NETWORKS
from rflocal_core.train import read_metrics, train
from rflocal_core.train.distributed import without_nproc

pytestmark = pytest.mark.raytrace
ROOT = Path(__file__).resolve().parents[1]
DATASET = "ddp-ds"
#: No randomness that depends on how the batch is split: no dropout, no augmentation; the auxiliary
#: loss (a mean over report tokens, not samples) off, so the mean over a global batch is exact.
MODEL_CONFIG = {"dropout": 0.0, "node_dropout": [0.0], "rss_noise_db": 0.0, "position_jitter_m": 0.0,
                "aux_weight": 0.0}
TRAIN_CONFIG = {"epochs": 3, "batch_size": 32, "patience": 0, "warmup_epochs": 1.0}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_dataset, workspace_env):
    path = tmp_path_factory.mktemp("ddp-ws")
    with workspace_env(path):
        tiny_dataset("ddp-city", DATASET, samples=300)
        yield path


def _torchrun(ws: Path, *args: str, log_dir: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    logs = [] if log_dir is None else ["--redirects", "3", "--log-dir", str(log_dir)]
    env = {**os.environ, settings.WORKSPACE_ENV: str(ws), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *logs, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout,
                          check=False)


def _last_net(ws: Path, run_id: str) -> dict[str, torch.Tensor]:
    """The parameters after the last epoch (``resume.pt``; ``model.pt`` holds the best epoch)."""
    return torch.load(ws / "runs" / run_id / "resume.pt", weights_only=True)["net"]


def _assert_same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal within float tolerance, but for the key bias of attention: its gradient is zero in exact
    arithmetic (softmax does not change when every score moves alike), so AdamW turns rounding noise
    into steps of the full rate and its values are noise in either run."""
    assert a.keys() == b.keys()
    for key, x in a.items():
        y = b[key]
        if key.endswith("in_proj_bias"):  # query, key, value biases: leave out the key's third
            third = len(x) // 3
            x, y = torch.cat([x[:third], x[2 * third:]]), torch.cat([y[:third], y[2 * third:]])
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")


@pytest.fixture(scope="module")
def single(ws):
    """The same training in one process: the reference for the parameters."""
    torch.set_num_threads(1)
    return train(DATASET, "setnet", model_config=MODEL_CONFIG, train_config=TRAIN_CONFIG, seed=5, run_id="single")


def test_torchrun_two_ranks_give_an_ordinary_run_with_the_single_process_parameters(ws, single):
    proc = _torchrun(ws, "-m", "rflocal_core", "train", "--dataset", DATASET, "--model", "setnet", "--seed", "5",
                     "--config", json.dumps(MODEL_CONFIG), "--train-config", json.dumps(TRAIN_CONFIG))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # rank 0 alone prints the result
    run_id = result["run_id"]
    run = ws / "runs" / run_id
    config = json.loads((run / "config.json").read_text())
    assert config["ddp"] == {"world_size": 2, "backend": "gloo"} and config["train_config"]["batch_size"] == 32
    rows = read_metrics(run_id)
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # written once, by rank 0
    assert rows[-1]["samples"] == read_metrics(single.run_id)[-1]["samples"]  # every rank's share counted
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    _assert_same_parameters(_last_net(ws, run_id), _last_net(ws, single.run_id))
    # the same validation figures as one process over the whole val split
    assert result["median_m"] == pytest.approx(single.summary.median_m, rel=1e-3)
    # an ordinary run: it loads, predicts and evaluates in one process
    x = load_inputs(DATASET, "val", with_maps=False)
    pred = load_run(run_id).predict(x)
    assert np.isfinite(pred.position_m).all()
    assert np.median(errors_m(pred, x)) == pytest.approx(result["median_m"], rel=1e-5)
    assert evaluate_run(run_id, DATASET, split="test").summary.count > 0


def test_every_network_trains_in_the_same_two_ranks_and_loads_in_one_process(ws):
    """One torchrun, one ``train`` per network in turn (the ranks' process group serves them all)."""
    proc = _torchrun(ws, str(ROOT / "tests" / "ddp_ranks.py"), "models", DATASET)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)
    assert sorted(runs) == sorted(NETWORKS)
    x = load_inputs(DATASET, "val")
    for model, run_id in runs.items():
        config = json.loads((ws / "runs" / run_id / "config.json").read_text())
        assert config["model"] == model and config["ddp"]["world_size"] == 2
        assert np.isfinite(load_run(run_id).predict(x).position_m).all(), model


def test_cancelled_ddp_run_resumes_on_every_rank_to_the_same_parameters(ws, single):
    cancel = _torchrun(ws, str(ROOT / "tests" / "ddp_ranks.py"), "cancel", DATASET, "ddp-cancel",
                       json.dumps(TRAIN_CONFIG), json.dumps(MODEL_CONFIG))
    assert cancel.returncode == 0 and cancel.stdout.strip() == "cancelled", cancel.stderr
    run = ws / "runs" / "ddp-cancel"
    assert json.loads((run / "status.json").read_text())["state"] == "cancelled"
    assert [r["epoch"] for r in read_metrics("ddp-cancel")] == [1]  # every rank stopped after the same epoch
    resumed = _torchrun(ws, "-m", "rflocal_core", "runs", "resume", "ddp-cancel")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs_run"] == 3
    assert [r["epoch"] for r in read_metrics("ddp-cancel")] == [1, 2, 3]
    _assert_same_parameters(_last_net(ws, "ddp-cancel"), _last_net(ws, single.run_id))


def test_dataset_missing_on_one_rank_fails_on_every_rank_with_the_same_message(ws, tmp_path):
    empty = tmp_path / "empty-ws"
    empty.mkdir()
    logs = tmp_path / "logs"
    runs_before = sorted(p.name for p in (ws / "runs").glob("*"))
    proc = _torchrun(ws, str(ROOT / "tests" / "ddp_ranks.py"), "cli", str(empty), "train", "--dataset", DATASET,
                     "--model", "setnet", "--epochs", "1", log_dir=logs)
    assert proc.returncode != 0
    assert "exitcode  : 2" in proc.stderr  # torchrun's report: the ranks exited with status 2
    errors = [min(logs.glob(f"**/attempt_0/{rank}/stderr.log")).read_text().splitlines() for rank in (0, 1)]
    assert errors[0] == errors[1] and len(errors[0]) == 1, errors
    assert errors[0][0].startswith("error: ") and DATASET in errors[0][0] and "(on rank 1 of 2)" in errors[0][0]
    assert sorted(p.name for p in (ws / "runs").glob("*")) == runs_before  # rank 0 wrote no run


def test_nproc_launches_the_ranks_and_a_missing_dataset_is_one_line_and_exit_2(ws, run_cli):
    proc = run_cli(["train", "--dataset", "no-such-dataset", "--model", "setnet", "--nproc", "2"], ws, timeout=240)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-dataset" in lines[0], proc.stderr
    assert proc.stdout == ""
    refused = run_cli(["train", "--dataset", DATASET, "--model", "knn", "--nproc", "2"], ws)
    assert refused.returncode == 2 and "nproc" in refused.stderr and "knn" in refused.stderr


def test_without_nproc_strips_both_spellings():
    assert without_nproc(["train", "--nproc", "2", "--model", "setnet", "--nproc=3"]) == ["train", "--model", "setnet"]
