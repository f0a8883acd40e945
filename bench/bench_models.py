"""The fixed localization benchmark of the training issue: every method, one run, one table.

Benchmark (fixed; do not change it without renaming it):

- the default procedural city (``SceneConfig(name="bench-city")``: seed 0, 512 m), 6 rooftop
  sites at 3.5 GHz, 2 m radio maps with diffraction;
- sigma = 6 dB correlated shadowing (20 m), 2 dB per-report measurement noise, 1 dB steps;
- ``bench-ue``: ``ue`` mode, RSS + ToA + AoA (PathSolver), 20,000 train / 2,000 val / 2,000 test;
- ``bench-emitter-rss``: ``emitter`` mode, RSS only, unknown transmit power (10-30 dBm),
  same sizes.

For each dataset and method: train on train (networks validate on val every epoch), then on
the test split: mean, median, P67, P95 error (m); training time; inference time per sample
batched (whole test split) and at batch 1 (median over single samples, feature encoding
included); for networks, the minutes until validation first came within 10% of its final
best. CPU only (CUDA_VISIBLE_DEVICES is cleared).

Run::

    .venv/bin/python bench/bench_models.py                 # full benchmark (~45 min on 2 cores)
    .venv/bin/python bench/bench_models.py --quick         # 2,400 samples, a few epochs: a smoke run

Datasets are generated once into the benchmark workspace (``--workspace``, default
``bench/workspace``) and reused. Results: a markdown table on stdout and
``bench/results/models[-quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = ""

HERE = Path(__file__).resolve().parent
SPLIT = (20000 / 24000, 2000 / 24000, 2000 / 24000)


def _prepare(quick: bool) -> list[str]:
    from rflocal_core.dataset import GenerationConfig, generate_dataset, list_datasets
    from rflocal_core.scene import SceneConfig, build_scene, list_scenes

    if "bench-city" not in {s["name"] for s in list_scenes()}:
        build_scene(SceneConfig(name="bench-city"))
    samples = 2400 if quick else 24000
    suffix = "-quick" if quick else ""
    configs = [
        GenerationConfig(name=f"bench-ue{suffix}", scenes=("bench-city",), samples_per_scene=samples, mode="ue",
                         split=SPLIT),
        GenerationConfig(name=f"bench-emitter-rss{suffix}", scenes=("bench-city",), samples_per_scene=samples,
                         mode="emitter", timing=False, split=SPLIT),
    ]
    from rflocal_core.dataset import open_dataset

    have = {d["name"] for d in list_datasets()}
    for config in configs:
        if config.name in have and open_dataset(config.name).attrs.get("digest") != config.digest():
            msg = f"{config.name} in the workspace was made with another configuration; delete it to regenerate"
            raise SystemExit(msg)
        if config.name not in have:
            t0 = time.perf_counter()
            print(f"generating {config.name} ...", file=sys.stderr, flush=True)
            generate_dataset(config)
            print(f"  {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return [c.name for c in configs]


def _applicable(model: str, x) -> bool:  # noqa: ANN001
    import numpy as np

    if model == "aoa_triangulation":
        return bool(np.isfinite(x.aoa_deg).any())
    if model == "toa_multilateration":
        return bool(np.isfinite(x.toa_ns).any())
    return True


def _batch1_ms(run, x, count: int) -> float:  # noqa: ANN001
    """Median wall time (ms) of predicting one sample, encoding included."""
    import numpy as np

    rows = np.linspace(0, len(x) - 1, min(count, len(x))).astype(int)
    run.predict(x.subset(rows[:1]))  # warm-up
    times = []
    for i in rows:
        one = x.subset(np.array([i]))
        t0 = time.perf_counter()
        run.predict(one)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def _minutes_to_within_10pct(run_id: str) -> float | None:
    from rflocal_core.train import read_metrics

    rows = [r for r in read_metrics(run_id) if "elapsed_s" in r and r["val"]["median_m"] is not None]
    if not rows:
        return None
    best = min(r["val"]["median_m"] for r in rows)
    first = next(r for r in rows if r["val"]["median_m"] <= 1.1 * best)
    return round(first["elapsed_s"] / 60, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=str(HERE / "workspace"))
    parser.add_argument("--quick", action="store_true", help="small datasets and few epochs (smoke run)")
    parser.add_argument("--epochs", type=int, default=None, help="network epochs (default 150, quick 5)")
    parser.add_argument("--max-minutes", type=float, default=10.0, help="network training budget")
    parser.add_argument("--only", default=None, help="comma-separated models to run (default: all)")
    args = parser.parse_args(argv)
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    Path(args.workspace).mkdir(parents=True, exist_ok=True)

    import torch

    from rflocal_core.infer import load_run
    from rflocal_core.metrics import error_summary
    from rflocal_core.models import BASELINES, errors_m, load_inputs
    from rflocal_core.models.registry import NETWORKS
    from rflocal_core.train import train

    datasets = _prepare(args.quick)
    epochs = args.epochs or (5 if args.quick else 150)
    wanted = list(NETWORKS) + list(BASELINES)
    if args.only:
        wanted = [m for m in wanted if m in args.only.split(",")]
    results = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "epochs": epochs,
               "max_minutes": args.max_minutes, "rows": []}
    for ds in datasets:
        test = load_inputs(ds, "test", with_maps=True)
        test_nomaps = load_inputs(ds, "test", with_maps=False)
        for model in wanted:
            if not _applicable(model, test):
                continue
            print(f"{ds}: {model} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            tc = {"epochs": epochs, "max_minutes": args.max_minutes, "patience": 25} if model in NETWORKS else None
            result = train(ds, model, train_config=tc, seed=0)
            train_s = time.perf_counter() - t0
            run = load_run(result.run_id)
            x = test if run.needs_maps else test_nomaps
            t1 = time.perf_counter()
            pred = run.predict(x)
            batched_ms = 1000 * (time.perf_counter() - t1) / len(x)
            summary = error_summary(errors_m(pred, x))
            row = {
                "dataset": ds, "model": model, "run_id": result.run_id,
                **{k: getattr(summary, k) for k in ("mean_m", "median_m", "p67_m", "p95_m")},
                "train_s": round(train_s, 1), "batched_ms": round(batched_ms, 4),
                "batch1_ms": round(_batch1_ms(run, x, 50 if model == "map_matching" else 200), 3),
                "to_within_10pct_min": _minutes_to_within_10pct(result.run_id) if model in NETWORKS else None,
                "epochs_run": result.epochs_run, "stop_reason": result.stop_reason,
            }
            results["rows"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    lines = ["| dataset | model | mean m | median m | P67 m | P95 m | train s | ms/sample batched | ms batch 1 | "
             "min to 10% of final |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        within = "" if r["to_within_10pct_min"] is None else f"{r['to_within_10pct_min']:.1f}"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['mean_m']:.1f} | {r['median_m']:.1f} | {r['p67_m']:.1f} | "
                     f"{r['p95_m']:.1f} | {r['train_s']:.0f} | {r['batched_ms']:.3f} | {r['batch1_ms']:.2f} | {within} |")
    table = "\n".join(lines)
    print(table)
    results["table"] = table
    out = HERE / "results" / f"models{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
