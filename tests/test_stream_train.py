"""Training that streams its train split (issue 16): ``TrainConfig(data_loading="stream"|"auto")``.

The dataset is an import of 1,800 synthetic measurements (no Sionna): its train split spreads over
4 chunks of ``samples/`` (``SAMPLE_CHUNK`` = 512 rows).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr

from rflocal_core import cli, settings
from rflocal_core.dataset.sharding import ChunkShardSampler
from rflocal_core.errors import InvalidInputError
from rflocal_core.infer import load_run
from rflocal_core.models import load_inputs
from rflocal_core.models.neural import NeuralModel
from rflocal_core.models.transforms import InputTransform
from rflocal_core.progress import JobCancelled
from rflocal_core.train import TrainConfig, resume, train
from rflocal_core.train.runs import load_checkpoint
from rflocal_core.train.stream import StreamedSplit
from tests.test_sharding import _measurements

DATASET = "stream-train-ds"
MODEL_CONFIG = {"d_model": 32, "layers": 1, "heads": 2}
TRAIN_CONFIG = {"epochs": 3, "batch_size": 64, "patience": 0, "warmup_epochs": 1.0}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, workspace_env):
    from rflocal_core.dataset.exchange import import_measurements

    path = tmp_path_factory.mktemp("stream-train-ws")
    torch.set_num_threads(1)
    with workspace_env(path):
        import_measurements(_measurements(1800), name=DATASET)
        yield path


@pytest.fixture(scope="module")
def runs(ws):
    """The same run in memory and streamed (``auto`` with a budget of 0 MB: always streamed)."""
    out = {}
    for name, loading in (("memory", {"data_loading": "memory"}),
                          ("stream", {"data_loading": "auto", "memory_budget_mb": 0.0})):
        out[name] = train(DATASET, "setnet", model_config=MODEL_CONFIG, train_config={**TRAIN_CONFIG, **loading},
                          seed=3, run_id=f"run-{name}")
    return out


def _config(ws, run_id: str) -> dict:
    return json.loads((ws / "runs" / run_id / "config.json").read_text(encoding="utf-8"))


def test_streamed_and_in_memory_runs_both_finish_and_predict_on_the_same_feature_frame(ws, runs):
    test = load_inputs(DATASET, "test")
    for name, result in runs.items():
        assert result.epochs_run == 3 and np.isfinite(result.summary.median_m)
        pred = load_run(result.run_id).predict(test)
        assert np.isfinite(pred.position_m).all(), name
    memory, stream = (_config(ws, runs[k].run_id) for k in ("memory", "stream"))
    assert memory["data_loading"]["mode"] == "memory"
    assert stream["data_loading"] == {**stream["data_loading"], "mode": "stream", "asked": "auto", "budget_mb": 0.0}
    assert stream["train_config"]["data_loading"] == "auto"
    # the frame of the streamed split (a pass over its blocks) is the in-memory fit of the whole split
    assert stream["features"] == memory["features"]
    # each epoch a streamed run takes the whole steps of its chunk-aligned order (the in-memory one a last,
    # shorter step too)
    n = len(load_inputs(DATASET, "train", with_maps=False))
    for name, steps in (("stream", n // 64 * 64), ("memory", n)):
        rows = [json.loads(line) for line in (ws / "runs" / runs[name].run_id / "metrics.jsonl").open()]
        assert [r["samples"] for r in rows] == [steps] * 3, name


def test_a_streamed_rank_reads_only_the_chunks_of_its_share(ws, runs):
    """Every chunk key the store is asked for while rank 0 of 2 reads one epoch of its steps."""
    keys: list[str] = []
    store = zarr.storage.LoggingStore(zarr.storage.LocalStore(settings.workspace_dir() / "datasets" / DATASET,
                                                              read_only=True), log_level="INFO")
    store.logger.addHandler(type("Keys", (__import__("logging").Handler,), {
        "emit": lambda self, record: keys.append(str(record.args[0])) if record.args else None})())
    store.logger.propagate = False
    split = StreamedSplit(DATASET, "train", InputTransform(), with_maps=False, root=zarr.open_group(store, mode="r"))
    every = set(split.chunk_of().tolist())
    assert len(every) == 4
    model = NeuralModel.from_checkpoint(load_checkpoint(runs["stream"].run_id))
    sampler = ChunkShardSampler(split, num_replicas=2, rank=0, seed=3, buffer=256)
    sampler.set_epoch(1)
    keys.clear()
    seen = [int(k) for base, _, _ in split.steps(sampler, 64, model) for k in [len(base)]]
    read = {int(k.split("samples/rss_dbm/c/")[1].split("/")[0]) for k in keys if "samples/rss_dbm/c/" in k}
    assert read == sampler.chunks() and len(read) < len(every), read
    assert seen == [32] * len(sampler.batches(64))  # rank 0's half of every global batch of 64


def test_a_cancelled_streamed_run_resumes_to_the_uninterrupted_parameters(ws, runs):
    def cancel_in_epoch_2(stage: str, fraction: float, *, step=None) -> None:
        if stage.startswith("epoch 2/"):
            raise JobCancelled("cancelled")

    streamed = {**TRAIN_CONFIG, "data_loading": "stream"}
    with pytest.raises(JobCancelled):
        train(DATASET, "setnet", model_config=MODEL_CONFIG, train_config=streamed, seed=3, run_id="cut",
              progress=cancel_in_epoch_2)
    out = resume("cut")
    assert out.epochs_run == 3 and _config(ws, "cut")["data_loading"]["mode"] == "stream"
    cut, whole = (torch.load(ws / "runs" / r / "resume.pt", weights_only=True)["net"]
                  for r in ("cut", runs["stream"].run_id))
    for key, value in whole.items():
        torch.testing.assert_close(cut[key], value, msg=key)


def test_a_bad_data_loading_value_is_refused_naming_it(ws, capsys):
    with pytest.raises(InvalidInputError, match="data_loading"):
        TrainConfig(data_loading="disk")
    status = cli.main(["train", "--dataset", DATASET, "--model", "setnet", "--train-config",
                       json.dumps({"data_loading": "disk"})])
    assert status == 2 and "data_loading" in capsys.readouterr().err
    status = cli.main(["train", "--dataset", DATASET, "--model", "setnet", "--data-loading", "disk"])
    assert status == 2 and "data_loading: expected one of memory, stream, auto, got 'disk'" in capsys.readouterr().err
    # fpnet keeps the train split's fingerprints: it is not streamed (refused before any run is written)
    with pytest.raises(InvalidInputError, match="data_loading: 'stream' cannot be used here: fpnet"):
        train(DATASET, "fpnet", train_config={"data_loading": "stream"}, run_id="refused")
    assert not (ws / "runs" / "refused").exists()


def test_some_rows_of_a_split_read_as_the_same_rows_of_the_whole_split(ws):
    whole = load_inputs(DATASET, "train", with_maps=False)
    rows = np.array([700, 3, 1200, 3, 511, 512])  # unsorted, repeated, across chunks
    part = load_inputs(DATASET, "train", with_maps=False, rows=rows)
    expected = whole.subset(rows)
    for name in (*expected.SLOT_FIELDS, *expected.SAMPLE_FIELDS):
        np.testing.assert_array_equal(getattr(part, name), getattr(expected, name), err_msg=name)


def test_two_ddp_ranks_stream_their_shares_into_an_ordinary_run(ws):
    """``torchrun`` with ``--data-loading stream``: both ranks stream, rank 0 writes one ordinary run."""
    from tests.test_ddp import _torchrun

    proc = _torchrun(ws, "-m", "rflocal_core", "train", "--dataset", DATASET, "--model", "setnet", "--seed", "3",
                     "--data-loading", "stream", "--config", json.dumps(MODEL_CONFIG),
                     "--train-config", json.dumps(TRAIN_CONFIG))
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]  # rank 0 alone prints the result
    config = _config(ws, run_id)
    assert config["ddp"] == {"world_size": 2, "backend": "gloo"} and config["data_loading"]["mode"] == "stream"
    assert config["train_config"]["batch_size"] == 64  # the global batch, as configured
    n = len(load_inputs(DATASET, "train", with_maps=False))
    rows = [json.loads(line) for line in (ws / "runs" / run_id / "metrics.jsonl").open()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # written once, by rank 0
    assert [r["samples"] for r in rows] == [n // 64 * 64] * 3  # both ranks' shares of every whole step
    pred = load_run(run_id).predict(load_inputs(DATASET, "test"))
    assert np.isfinite(pred.position_m).all()
