"""Training throughput and peak memory: the train split streamed against read into memory (issue 16).

Run:  .venv/bin/python bench/bench_stream_train.py [--samples 5000] [--tile 40] [--gateways 16] [--epochs 2]
      [--batch 256] [--out bench/results/stream_train.json]

Imports ``--samples`` synthetic measurements heard by ``--gateways`` gateways (no ray tracing), repeats
that dataset ``--tile`` times into a larger one (same chunks, each split every copy's rows), then trains ``setnet`` (d_model 32, 1 layer) on it once with ``data_loading="memory"`` and once
with ``"stream"``, each in a fresh process (one thread) so that its peak resident memory is its own.
Per mode it prints the median training samples/s over the epochs (``samples / seconds`` of each
``metrics.jsonl`` row: the epoch's training and validation), the wall time of ``train`` (loading,
the feature-frame pass, training, calibration), the resident memory after the imports and the peak
(``ru_maxrss``), and the validation median. Prints one JSON object and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).resolve().parent / "results" / "stream_train.json"
DATASET = "bench-stream"


def _measurements(n: int, gateways: int):
    from rflocal_core.measurements.format import MeasurementSet, Node, Position, Report, Sample

    lat0, lon0 = 51.21, 4.40
    sites = [(400.0 * (g % 4) / 3, 400.0 * (g // 4) / max(1, (gateways - 1) // 4)) for g in range(gateways)]
    per_deg = 111_320 * math.cos(math.radians(lat0))
    nodes = tuple(Node(f"g{i}", lat=lat0 + y / 111_320, lon=lon0 + x / per_deg, alt_m=20.0)
                  for i, (x, y) in enumerate(sites))
    samples = []
    for k in range(n):
        x, y = 20.0 + (k * 37) % 360, 20.0 + (k * 53) % 360
        reports = tuple(Report(node=f"g{i}", rss_dbm=-40.0 - 30.0 * math.log10(max(math.hypot(x - gx, y - gy), 1.0)))
                        for i, (gx, gy) in enumerate(sites))
        samples.append(Sample(f"s{k}", reports, Position(lat=lat0 + y / 111_320, lon=lon0 + x / per_deg)))
    return MeasurementSet("ue", None, nodes, tuple(samples))


def _tile(src_name: str, name: str, times: int) -> None:
    """Dataset ``name``: every ``samples/`` array of ``src_name`` repeated ``times`` times (same chunks), each
    split the source's rows of every copy (importing 10^5 measurements one by one takes many minutes)."""
    import numpy as np
    import zarr

    from rflocal_core import settings
    from rflocal_core.dataset.store import open_dataset

    src = open_dataset(src_name)
    dst = zarr.open_group(settings.workspace_dir() / "datasets" / name, mode="w")
    n = int(src["samples/pos_m"].shape[0])
    for group in ("samples", "splits"):
        dst.create_group(group)
    for key in src["samples"].array_keys():
        a = src[f"samples/{key}"]
        out = dst.create_array(f"samples/{key}", shape=(n * times, *a.shape[1:]), dtype=a.dtype, chunks=a.chunks,
                               fill_value=a.fill_value)
        out[...] = np.concatenate([np.asarray(a[...])] * times)
    for key in src["splits"].array_keys():
        idx = np.asarray(src[f"splits/{key}"][...])
        dst.create_array(f"splits/{key}", data=np.concatenate([idx + k * n for k in range(times)]))
    dst.attrs.update({**dict(src.attrs), "counts": {**dict(src.attrs)["counts"], "samples": n * times}})


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, epochs: int, batch: int) -> dict:
    """One training run in this process; its figures."""
    import statistics

    import torch

    from rflocal_core.train import train

    torch.set_num_threads(1)
    base = _rss_mb()
    t0 = time.perf_counter()
    result = train(DATASET, "setnet", model_config={"d_model": 32, "layers": 1, "heads": 2},
                   train_config={"epochs": epochs, "batch_size": batch, "patience": 0, "data_loading": mode}, seed=1)
    wall = time.perf_counter() - t0
    runs = Path(os.environ["RFLOCAL_WORKSPACE"]) / "runs" / result.run_id
    rows = [json.loads(line) for line in (runs / "metrics.jsonl").read_text().splitlines() if line]
    config = json.loads((runs / "config.json").read_text())
    return {"mode": mode, "data_loading": config["data_loading"],
            "samples_per_s_median": round(statistics.median(r["samples"] / r["seconds"] for r in rows), 1),
            "samples_per_s": [round(r["samples"] / r["seconds"], 1) for r in rows],
            "wall_s": round(wall, 2), "rss_after_imports_mb": round(base, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "val_median_m": round(result.summary.median_m, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5_000, help="measurements imported")
    parser.add_argument("--tile", type=int, default=40, help="the imported dataset repeated this many times")
    parser.add_argument("--gateways", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", choices=("memory", "stream"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.epochs, args.batch)))
        return 0
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-bench-stream-train-")
    from rflocal_core.dataset.exchange import import_measurements
    from rflocal_core.dataset.store import open_dataset
    from rflocal_core.train.stream import split_megabytes

    t0 = time.perf_counter()
    import_measurements(_measurements(args.samples, args.gateways), name="base")
    _tile("base", DATASET, args.tile)
    out = {"samples": args.samples * args.tile, "imported": args.samples, "tile": args.tile,
           "gateways": args.gateways, "epochs": args.epochs, "batch": args.batch,
           "import_s": round(time.perf_counter() - t0, 1),
           "train_split_mb": round(split_megabytes(open_dataset(DATASET), "train"), 1),
           "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "load_before": os.getloadavg()}
    for mode in ("memory", "stream"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--epochs", str(args.epochs),
                               "--batch", str(args.batch)], capture_output=True, text=True, check=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["load_after"] = os.getloadavg()
    text = json.dumps(out, indent=1)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
