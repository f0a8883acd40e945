"""What a rank reads per epoch: the streaming ``ChunkShardSampler`` against ``DistributedSampler`` (issue 16).

Run:  .venv/bin/python bench/bench_stream_sampler.py [--samples 20000] [--worlds 1,2,4] [--batch 128]
      [--out bench/results/stream_sampler.json]

Imports ``--samples`` synthetic measurements (3 gateways, no ray tracing) as a dataset, then for each
world size counts the ``samples/`` chunks rank 0 reads in one epoch of the train split with
``torch.utils.data.DistributedSampler`` (strided over a whole-split shuffle) and with
:class:`~rflocal_core.dataset.sharding.ChunkShardSampler`, and times rank 0's epoch through a
``DataLoader`` (its share of each global batch of ``--batch``, read a batch at a time) and through
:meth:`~rflocal_core.dataset.sharding.ChunkShardSampler.stream` (read a shuffle buffer at a time). For scale, the
in-memory path's load of the whole split (``load_inputs``) is timed too. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
OUT = Path(__file__).resolve().parent / "results" / "stream_sampler.json"


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--worlds", default="1,2,4")
    parser.add_argument("--batch", type=int, default=128, help="global batch size")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-bench-stream-")
    import torch

    from rflocal_core.dataset.exchange import import_measurements
    from rflocal_core.dataset.sharding import ChunkShardSampler
    from rflocal_core.dataset.torch_data import ZarrSamples
    from rflocal_core.models import load_inputs

    torch.set_num_threads(1)
    import_measurements(_measurements(args.samples), name="stream")
    ds = ZarrSamples("stream", "train")
    t0 = time.perf_counter()
    load_inputs("stream", "train", with_maps=False)
    rows = {"train_samples": len(ds), "chunks": len(set(ds.chunk_of().tolist())), "chunk_rows": ds.chunk_rows,
            "in_memory_load_s": round(time.perf_counter() - t0, 2), "worlds": {}}
    for world in sorted({int(w) for w in args.worlds.split(",")}):
        strided = torch.utils.data.DistributedSampler(ds, num_replicas=world, rank=0, seed=0)
        streaming = ChunkShardSampler(ds, num_replicas=world, rank=0, seed=0)
        t0 = time.perf_counter()
        seen = sum(len(b["index"]) for b in torch.utils.data.DataLoader(ds, batch_sampler=streaming.batches(args.batch)))
        per_batch = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert seen == sum(len(b["index"]) for b in streaming.stream(ds, args.batch))
        per_block = time.perf_counter() - t0
        rows["worlds"][world] = {
            "distributed_sampler_chunks_read": len(set(ds.chunk_of()[list(strided)].tolist())),
            "chunk_shard_sampler_chunks_read": len(streaming.chunks()),
            "rank0_samples": seen,
            "rank0_samples_per_s_dataloader_per_batch": round(seen / per_batch),
            "rank0_samples_per_s_stream_per_buffer": round(seen / per_block),
        }
    rows["load_1min_at_end"] = os.getloadavg()[0]
    rows["cpus"] = os.cpu_count()
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
