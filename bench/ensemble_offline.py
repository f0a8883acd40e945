"""Combine the predictions of finished runs offline, weights chosen on val, figures on test (issue 15).

A quick way to try which members and which combination an ``ensemble`` run should use, without
training again: the runs' val and test predictions are combined with the ``ensemble`` model's own
functions (:func:`~rflocal_core.models.ensemble.simplex_grid`, ``combine_positions``).

Run::

    .venv/bin/python bench/ensemble_offline.py --workspace bench/workspace-real --dataset antwerp \
        --runs RUN1,RUN2,RUN3 [--step 0.05]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--runs", required=True, help="comma-separated run ids")
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--nn1", action="store_true", help="add the nearest training fingerprint (k = 1, -130 dBm)")
    args = parser.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from rflocal_core.infer.run import load_run
    from rflocal_core.models import errors_m, load_inputs
    from rflocal_core.models.baselines import knn_criterion
    from rflocal_core.models.ensemble import combine_positions, simplex_grid

    runs = [r for r in args.runs.split(",") if r]
    splits = {s: load_inputs(args.dataset, s) for s in ("val", "test")}
    pos = {s: [] for s in splits}
    for run_id in runs:
        run = load_run(run_id)
        for s, x in splits.items():
            p = run.predict(x)
            pos[s].append(p.position_m)
            e = errors_m(p, x)
            print(f"{run_id} {s}: median {np.median(e):.1f} mean {e.mean():.1f}")
    if args.nn1:
        from rflocal_core.models import KNNFingerprint

        nn1 = KNNFingerprint({"k": 1, "floor_dbm": -130.0}).fit(load_inputs(args.dataset, "train"))
        for s, x in splits.items():
            pos[s].append(nn1.predict(x).position_m)
        runs.append("nn1")
    out = {}
    for how in ("mean", "median"):
        grid = simplex_grid(len(runs), args.step)
        pv, pt = np.stack(pos["val"]), np.stack(pos["test"])

        def err(p: np.ndarray, s: str) -> np.ndarray:
            return np.hypot(*(p - splits[s].truth_m).T)

        scores = [knn_criterion(err(combine_positions(pv, w, how), "val"), "median_mean") for w in grid]
        w = grid[int(np.argmin(scores))]
        e = err(combine_positions(pt, w, how), "test")
        eq = err(combine_positions(pt, np.full(len(runs), 1 / len(runs)), how), "test")
        out[how] = {"weights": w.round(3).tolist(), "val_score": float(min(scores)),
                    "test_median": float(np.median(e)), "test_mean": float(e.mean()),
                    "equal_weights_test_median": float(np.median(eq)), "equal_weights_test_mean": float(eq.mean())}
        print(how, json.dumps(out[how]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
