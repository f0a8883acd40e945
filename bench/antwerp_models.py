"""Every model that needs no radio map on the real Antwerp LoRaWAN data (emitter mode).

Protocol: ``x_val.csv`` / ``y_val.csv`` (8,306 messages) are split 90/10 into train and val;
the published ``x_test.csv`` / ``y_test.csv`` (8,307 messages) is the test split. Gateways are
placed by lat/lon (five have no coordinates: the networks still use their RSSI through node
embeddings and a "position unknown" flag; geometric methods skip them); the devices' transmit
power is unknown.

Run::

    .venv/bin/python bench/antwerp_models.py [--data ../shared/data/real/antwerp_lorawan] [--epochs 60]

Prints a markdown table (test median and mean error, m) and writes
``bench/results/antwerp.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = ""
HERE = Path(__file__).resolve().parent

MODELS = ("setnet", "heimdall", "knn", "lgbm", "knn_lgbm", "weighted_centroid", "strongest_site", "log_distance")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data" / "real" / "antwerp_lorawan"))
    parser.add_argument("--workspace", default=str(HERE / "workspace-antwerp"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--only", default=None, help="comma-separated models")
    args = parser.parse_args(argv)
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    Path(args.workspace).mkdir(parents=True, exist_ok=True)

    from rflocal_core.dataset import import_measurements, list_datasets
    from rflocal_core.infer import evaluate_run
    from rflocal_core.measurements import convert_antwerp
    from rflocal_core.models.registry import NETWORKS
    from rflocal_core.train import train

    if "antwerp" not in {d["name"] for d in list_datasets()}:
        ms = convert_antwerp(args.data, split="all")
        fixed = {s.id: "test" for s in ms.samples if s.id.startswith("test-")}
        info = import_measurements(ms, name="antwerp", split_fractions=(0.9, 0.1, 0.0), fixed_splits=fixed)
        print(f"imported: {info.splits}", file=sys.stderr)
    models = [m for m in MODELS if not args.only or m in args.only.split(",")]
    rows = []
    for model in models:
        t0 = time.perf_counter()
        tc = {"epochs": args.epochs, "max_minutes": args.max_minutes} if model in NETWORKS else None
        result = train("antwerp", model, train_config=tc, seed=0)
        test = evaluate_run(result.run_id, "antwerp", split="test").summary
        rows.append({"model": model, "run_id": result.run_id, "val_median_m": result.summary.median_m,
                     "test_median_m": test.median_m, "test_mean_m": test.mean_m, "test_p95_m": test.p95_m,
                     "train_s": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    lines = ["| model | test median m | test mean m | test P95 m | train s |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['test_median_m']:.0f} | {r['test_mean_m']:.0f} | {r['test_p95_m']:.0f} | "
              f"{r['train_s']:.0f} |" for r in rows]
    print("\n".join(lines))
    out = HERE / "results" / "antwerp.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"epochs": args.epochs, "rows": rows, "table": "\n".join(lines)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
