"""The fingerprint networks (``fpnet``, ``fpnet_knn``) on the real Antwerp LoRaWAN data, through the run machinery.

Same protocol as ``bench/antwerp_models.py`` (train on ``x_val.csv`` split 90/10 into train and
val, test on the published ``x_test.csv``). Each variant is ``MODEL[:KEY=VALUE;...][@EPOCHS]``
(model options, epochs); every run is trained with ``train(...)`` and evaluated on the test split with
``evaluate_run``; ``--seeds N`` trains N seeds and also reports their ensemble (the mean of the
seeds' test positions); the last row is the mean of every run's test positions. Models are trained with one torch thread.

Run::

    .venv/bin/python bench/fpnet_antwerp.py --variants fpnet,fpnet_knn --seeds 1 --max-minutes 10

Prints a markdown table and writes ``bench/results/fpnet_antwerp.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["CUDA_VISIBLE_DEVICES"] = ""
HERE = Path(__file__).resolve().parent


def parse_variant(text: str, epochs: int) -> tuple[str, dict[str, str], int]:
    """``"fpnet_knn:neighbours=64;dropout=0.2@20"`` -> ("fpnet_knn", {"neighbours": "64", "dropout": "0.2"}, 20)."""
    text, _, ep = text.partition("@")
    model, _, opts = text.partition(":")
    return model, dict(kv.split("=", 1) for kv in opts.split(";") if kv), int(ep) if ep else epochs


def ensemble_row(name: str, preds: list[np.ndarray], truth: np.ndarray) -> dict[str, object]:
    """A table row for the mean of several runs' test positions."""
    err = np.hypot(*(np.mean(preds, 0) - truth).T)
    return {"variant": name, "seed": None, "run_id": None, "val_median_m": None, "test_median_m": float(np.median(err)),
            "test_mean_m": float(err.mean()), "test_p95_m": float(np.percentile(err, 95)), "train_s": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data" / "real" / "antwerp_lorawan"))
    parser.add_argument("--workspace", default=str(HERE / "workspace-antwerp"))
    parser.add_argument("--variants", default="fpnet,fpnet_knn", help="comma-separated MODEL[:K=V;K=V]")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "results" / "fpnet_antwerp.json"))
    args = parser.parse_args(argv)
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    Path(args.workspace).mkdir(parents=True, exist_ok=True)

    import torch

    from rflocal_core.dataset import import_measurements, list_datasets
    from rflocal_core.infer import evaluate_run, load_run
    from rflocal_core.measurements import convert_antwerp
    from rflocal_core.models import load_inputs
    from rflocal_core.models.registry import model_config
    from rflocal_core.train import train

    torch.set_num_threads(1)
    if "antwerp" not in {d["name"] for d in list_datasets()}:
        ms = convert_antwerp(args.data, split="all")
        fixed = {s.id: "test" for s in ms.samples if s.id.startswith("test-")}
        info = import_measurements(ms, name="antwerp", split_fractions=(0.9, 0.1, 0.0), fixed_splits=fixed)
        print(f"imported: {info.splits}", file=sys.stderr)
    test_in = load_inputs("antwerp", "test")
    truth = test_in.truth_m
    rows, every = [], []
    for variant in args.variants.split(","):
        model, opts, epochs = parse_variant(variant, args.epochs)
        cfg = model_config(model, None, [f"{k}={v}" for k, v in opts.items()])
        preds = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            tc = {"epochs": epochs, "max_minutes": args.max_minutes, "device": "cpu"}
            result = train("antwerp", model, model_config=cfg, train_config=tc, seed=seed)
            test = evaluate_run(result.run_id, "antwerp", split="test").summary
            preds.append(load_run(result.run_id).predict(test_in).position_m)
            rows.append({"variant": variant, "seed": seed, "run_id": result.run_id,
                         "val_median_m": result.summary.median_m, "test_median_m": test.median_m,
                         "test_mean_m": test.mean_m, "test_p95_m": test.p95_m,
                         "train_s": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        every += preds
        if len(preds) > 1:
            rows.append(ensemble_row(f"{variant} (mean of {len(preds)} seeds)", preds, truth))
    if len(every) > max(args.seeds, 1):
        rows.append(ensemble_row(f"all {len(every)} runs (mean)", every, truth))
    lines = ["| variant | seed | val median m | test median m | test mean m | test P95 m |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['seed'] if r['seed'] is not None else '-'} | "
              f"{r['val_median_m'] if r['val_median_m'] is None else round(r['val_median_m'])} | "
              f"{r['test_median_m']:.0f} | {r['test_mean_m']:.0f} | {r['test_p95_m']:.0f} |" for r in rows]
    print("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"epochs": args.epochs, "max_minutes": args.max_minutes, "rows": rows,
                               "table": "\n".join(lines)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
