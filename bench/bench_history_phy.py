"""mapformer's history tokens with and without the earlier reports' PHY/MAC columns (issue 18).

On a vehicular sequence dataset with PHY/MAC reports (``physeq`` of :mod:`bench_feature_layers`: the 300 m
procedural city, 6 rooftop sites, sequences of 3-5 reports, the RRC period of 4), mapformer with its
history tokens (each sample: the last report's tokens plus every earlier report of the sequence) is trained
three ways, each for a wall-clock budget per seed:

- ``no PHY``: report and history tokens carry RSS/ToA/AoA (history: RSS and age) only;
- ``PHY, current report``: ``phy_features`` with ``history_phy`` off (the state before this bench);
- ``PHY, current + history``: ``phy_features`` and ``history_phy`` (the default): the earlier reports'
  PHY/MAC columns too.

Test error at the last report of each sequence (median, P95, m), mean and std over the seeds, then the
permutation importance of the seed-0 ``current + history`` run (each PHY/MAC field moves with its history).

Run::

    nice -n 10 .venv/bin/python bench/bench_history_phy.py [--samples 800] [--sequence 3,5] [--minutes 2] \\
        [--seeds 2] [--repeats 1] [--workspace /tmp/rflocal-bench-history-phy] [--out history_phy.json]

A workspace that already holds ``physeq`` is reused (the dataset takes ~200 s to generate on busy cores).
Writes ``bench/results/history_phy.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The arms (name, model_config).
ARMS = (("mapformer: no PHY", {}),
        ("mapformer: PHY, current report", {"phy_features": True, "history_phy": False}),
        ("mapformer: PHY, current + history", {"phy_features": True, "history_phy": True}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=800)
    parser.add_argument("--sequence", default="3,5", metavar="MIN,MAX")
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per run")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="permutation-importance repeats (0: none)")
    parser.add_argument("--workspace", default="/tmp/rflocal-bench-history-phy")
    parser.add_argument("--out", default="history_phy.json", help="file name under bench/results")
    args = parser.parse_args(argv)
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    import torch

    torch.set_num_threads(1)
    from bench_feature_layers import _dataset

    from rflocal_core.ablate import Study, Variant, run_study
    from rflocal_core.importance import permutation_importance

    dataset, seconds = _dataset(args.samples, tuple(int(v) for v in args.sequence.split(",")))
    study = Study("history-phy", "mapformer history tokens with and without the earlier reports' PHY/MAC columns",
                  "mapformer", tuple(Variant(name, model_config=config) for name, config in ARMS))
    t0 = time.perf_counter()
    result = run_study(study, dataset, seeds=args.seeds, epochs=args.epochs, max_minutes_per_variant=args.minutes,
                       name=f"history-phy-{dataset}-{args.seeds}seeds-{args.minutes:g}min")
    out: dict = {"dataset": dataset, "dataset_s": round(seconds, 1), "minutes_per_run": args.minutes,
                 "study_s": round(time.perf_counter() - t0, 1), "load_average": os.getloadavg(),
                 "rows": [{k: r.get(k) for k in ("variant", "seed", "median_m", "p95_m", "mean_m", "train_s", "run_id")}
                          for r in result["rows"]],
                 "summary": result["summary"]}
    if args.repeats > 0:
        run_id = next(r["run_id"] for r in result["rows"] if r["variant"] == ARMS[-1][0] and r["seed"] == 0)
        out["importance"] = permutation_importance(run_id, repeats=args.repeats).to_json()
    print(json.dumps(out, indent=1))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
