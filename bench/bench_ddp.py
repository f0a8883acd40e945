"""Training throughput with DistributedDataParallel: 1 process against N DDP processes on CPU (gloo).

Run:  .venv/bin/python bench/bench_ddp.py [--samples 3000] [--epochs 6] [--model setnet] [--nproc 2] [--repeats 3]

Builds a 240 m procedural scene with 5 sites and a generated dataset in a temporary workspace, then
trains the same network with the same options and seed by the command line: in one process, and with
``--nproc N`` (torchrun's launcher, N gloo ranks). Each process gets one thread (OMP_NUM_THREADS=1),
so N processes use N cores; ``--threads`` also times one process with N threads (the machine's
other way to use N cores). Throughput: training samples over the epochs' seconds (``metrics.jsonl``;
an epoch's time includes its validation pass); ``wall_s`` adds start-up and data loading. With
``--repeats R`` the configurations alternate (1, N, 1, N, ...) so that a machine whose load changes
weighs on both alike, and the figures are medians over the repeats.
Prints one JSON object; ``--out`` also
writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _train(ws: Path, args: argparse.Namespace, *, nproc: int, threads: int) -> dict:
    """One training run by the command line; its figures."""
    cmd = [sys.executable, "-m", "rflocal_core", "train", "--dataset", "bench-ddp", "--model", args.model,
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--patience", "0", "--seed", "1"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "RFLOCAL_WORKSPACE": str(ws), "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        msg = f"training failed ({' '.join(cmd[3:])}): {proc.stderr.strip()[-2000:]}"
        raise RuntimeError(msg)
    result = json.loads(proc.stdout)
    from rflocal_core.infer import evaluate_run
    from rflocal_core.train import read_metrics

    os.environ["RFLOCAL_WORKSPACE"] = str(ws)
    rows = read_metrics(result["run_id"])
    samples = sum(r["samples"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    test = evaluate_run(result["run_id"], "bench-ddp", split="test").summary
    return {"nproc": nproc, "threads_per_process": threads, "samples_per_s": round(samples / seconds, 1),
            "epoch_s": [r["seconds"] for r in rows], "wall_s": round(wall, 2),
            "val_median_m": round(result["median_m"], 3), "test_median_m": round(test.median_m, 3),
            "test_p95_m": round(test.p95_m, 3), "run_id": result["run_id"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="setnet")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", action="store_true", help="also time one process with --nproc threads")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the configurations this many times")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    ws = Path(tempfile.mkdtemp(prefix="rflocal-bench-ddp-"))
    os.environ["RFLOCAL_WORKSPACE"] = str(ws)

    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="bench-ddp", procedural=ProceduralConfig(size_m=240, seed=4), sites=SiteConfig(count=5)))
    generate_dataset(GenerationConfig(name="bench-ddp", scenes=("bench-ddp",), samples_per_scene=args.samples,
                                      cell_size_m=4.0, map_samples_per_tx=1_000_000, paths_samples_per_src=10_000,
                                      min_sites=2))
    load = os.getloadavg()[0]
    configs = [(1, 1), (args.nproc, 1)] + ([(1, args.nproc)] if args.threads else [])
    runs = [_train(ws, args, nproc=n, threads=t) for _ in range(args.repeats) for n, t in configs]
    median = {f"{n}x{t}": statistics.median(r["samples_per_s"] for r in runs
                                            if (r["nproc"], r["threads_per_process"]) == (n, t)) for n, t in configs}
    out = {"model": args.model, "samples": args.samples, "epochs": args.epochs, "batch_size": args.batch_size,
           "cpu_count": os.cpu_count(), "load_1min_at_start": round(load, 2), "load_1min_at_end":
           round(os.getloadavg()[0], 2), "median_samples_per_s": median, "runs": runs,
           "ddp_speedup": round(median[f"{args.nproc}x1"] / median["1x1"], 3)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
