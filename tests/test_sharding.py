"""The streaming DistributedSampler over ZarrSamples (issue 16): chunk-aligned shares, equal counts, DDP.

The dataset is an import of 2,600 synthetic measurements (no Sionna): its train split spreads over
6 chunks of ``samples/`` (``SAMPLE_CHUNK`` = 512 rows).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from rflocal_core import settings
from rflocal_core.dataset.sharding import ChunkShardSampler, global_batches, shard_plan
from rflocal_core.dataset.torch_data import ZarrSamples
from rflocal_core.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[1]
DATASET = "stream-ds"


def _measurements(n: int):
    from rflocal_core.measurements.format import MeasurementSet, Node, Position, Report, Sample

    lat0, lon0 = 51.21, 4.40
    gateways = [(0.0, 0.0), (400.0, 0.0), (0.0, 400.0)]
    per_deg = 111_320 * math.cos(math.radians(lat0))
    nodes = tuple(Node(f"g{i}", lat=lat0 + y / 111_320, lon=lon0 + x / per_deg, alt_m=20.0)
                  for i, (x, y) in enumerate(gateways))
    samples = []
    for k in range(n):
        x, y = 20.0 + (k * 37) % 360, 20.0 + (k * 53) % 360
        reports = tuple(Report(node=f"g{i}", rss_dbm=-40.0 - 30.0 * math.log10(max(math.hypot(x - gx, y - gy), 1.0)))
                        for i, (gx, gy) in enumerate(gateways))
        samples.append(Sample(f"s{k}", reports, Position(lat=lat0 + y / 111_320, lon=lon0 + x / per_deg)))
    return MeasurementSet("ue", None, nodes, tuple(samples))


@pytest.fixture(scope="module")
def ws(tmp_path_factory, workspace_env):
    from rflocal_core.dataset.exchange import import_measurements

    path = tmp_path_factory.mktemp("stream-ws")
    with workspace_env(path):
        import_measurements(_measurements(2600), name=DATASET)
        yield path


def test_ranks_get_disjoint_equal_shares_that_cover_the_split_but_fewer_than_world_rows():
    chunk_of = np.repeat(np.arange(7), [40, 3, 55, 17, 60, 1, 30])  # uneven chunks, as a random split gives
    for world in (1, 2, 3):
        for epoch in (0, 1):
            parts = shard_plan(chunk_of, world=world, seed=4, epoch=epoch, buffer=16)
            joined = np.concatenate(parts)
            assert {len(p) for p in parts} == {len(chunk_of) // world}
            assert len(np.unique(joined)) == len(joined)  # disjoint
            assert len(chunk_of) - len(joined) < world  # the dropped tail
    first, second = (shard_plan(chunk_of, world=2, seed=4, epoch=e, buffer=16) for e in (0, 1))
    assert not np.array_equal(first[0], second[0])  # another chunk order and shuffle each epoch
    # unshuffled (buffer 1), a rank's part is a run of chunks in the epoch's chunk order, each chunk's rows
    # together; the buffer shuffles only within its blocks of 16
    plain = shard_plan(chunk_of, world=2, seed=4, epoch=0, buffer=1)[0]
    assert np.count_nonzero(np.diff(chunk_of[plain])) == len(set(chunk_of[plain])) - 1
    assert len(set(chunk_of[plain])) < len(set(chunk_of))
    for start in range(0, len(plain), 16):
        assert np.array_equal(np.sort(plain[start:start + 16]), np.sort(first[0][start:start + 16]))
    assert not np.array_equal(plain, first[0])
    ordered = shard_plan(chunk_of, world=2, seed=4, epoch=0, shuffle=False)
    assert np.array_equal(np.concatenate(ordered), np.arange(len(chunk_of) // 2 * 2))
    with pytest.raises(InvalidInputError, match="world, buffer: expected both >= 1"):
        shard_plan(chunk_of, world=0, seed=0, epoch=0)


def test_a_rank_reads_only_the_chunks_of_its_share(ws):
    """Every chunk key the store is asked for, through one epoch of a DataLoader on each of 2 ranks."""
    keys: list[str] = []

    class Keys(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.args and "get(" in str(record.args[0]):
                keys.append(str(record.args[0]))

    handler = Keys()

    path = settings.workspace_dir() / "datasets" / DATASET
    every = set(ZarrSamples(DATASET).chunk_of().tolist())
    assert len(every) == 6
    shares = []
    for rank in (0, 1):
        store = zarr.storage.LoggingStore(zarr.storage.LocalStore(path, read_only=True), log_level="INFO")
        # its own handler only where the logger has none up the tree (pytest's): attach ours explicitly
        store.logger.addHandler(handler)
        store.logger.propagate = False
        ds = ZarrSamples(DATASET, store=store)
        sampler = ChunkShardSampler(ds, num_replicas=2, rank=rank, seed=1, buffer=300)
        sampler.set_epoch(3)
        keys.clear()
        rows = [int(i) for batch in torch.utils.data.DataLoader(ds, batch_sampler=sampler.batches(256))
                for i in batch["index"]]
        read = {int(k.split("samples/rss_dbm/c/")[1].split("/")[0]) for k in keys if "samples/rss_dbm/c/" in k}
        assert read == sampler.chunks() and len(read) < len(every), (rank, read)
        assert set(np.asarray(rows) // ds.chunk_rows) <= read
        shares.append(set(rows))
    assert not shares[0] & shares[1]
    # the same batches read a buffer block at a time
    streamed = [b["index"].tolist() for b in sampler.stream(ZarrSamples(DATASET), 256)]
    loaded = [b["index"].tolist() for b in torch.utils.data.DataLoader(ds, batch_sampler=sampler.batches(256))]
    assert streamed == loaded and len(streamed) == 8
    assert len(shares[0]) == len(shares[1]) == len(ZarrSamples(DATASET)) // 2 // 128 * 128  # whole steps of 128


def test_ddp_over_the_streaming_sampler_takes_the_steps_of_one_process_over_its_global_batches(ws, tmp_path):
    """2 gloo ranks each read their share; the parameters equal one process stepping over the union
    of the ranks' rows per step (:func:`global_batches`). Not those of the in-memory path's order:
    that order puts nearly every chunk in every batch, which is what streaming avoids."""
    sys.path.insert(0, str(ROOT / "tests"))
    import stream_ranks as sr

    env = {**os.environ, settings.WORKSPACE_ENV: str(ws), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "tests" / "stream_ranks.py"), DATASET, str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    ds = ZarrSamples(DATASET)
    net = sr.model()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for epoch in range(sr.EPOCHS):
        batches = global_batches(ds.chunk_of(), world=2, seed=sr.SEED, epoch=epoch, batch_size=sr.BATCH,
                                 buffer=sr.BUFFER)
        union = [int(ds.indices[p]) for b in batches for p in b]
        assert sorted(union) == sorted(ranks[0]["seen"][epoch] + ranks[1]["seen"][epoch])
        assert not set(ranks[0]["seen"][epoch]) & set(ranks[1]["seen"][epoch])
        for r in (0, 1):  # what each rank read lies in the chunks it was given
            assert set(np.asarray(ranks[r]["seen"][epoch]) // ds.chunk_rows) <= set(ranks[r]["chunks"][epoch])
        loader = torch.utils.data.DataLoader(ds, batch_sampler=[b.tolist() for b in batches])
        sr.fit(net, loader, 1.0 / sr.BATCH, opt)
    ddp = torch.load(tmp_path / "params.pt", weights_only=True)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-10, atol=1e-12)
