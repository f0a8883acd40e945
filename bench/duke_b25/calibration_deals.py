"""Duke: how much the σ of an unseen area depends on where the map is fitted and on the deal of squares (B25).

Usage (from the project root, after bench_real has imported duke-b200-s0..2 into WORKSPACE)::

    PYTHONPATH=$PWD python bench/duke_b25/calibration_deals.py WORKSPACE MODEL [--deals 4]

For each area split: the model (defaults) fitted on train and val as ``train`` does, then the test shares inside
1σ / 2σ of the σ map fitted (a) on val with ``sigma_radii`` auto; (b) on the out-of-fold rows of 5 folds of
200 m squares of train + val (``--calibration blocks``) for each deal of squares (seed 0 is what ``train
--seed 0`` uses), with ``sigma_radii`` auto asking every fold (the rule since B25) and, for comparison, the pooled
rows (the rule before); (c) the two radii fitted on the out-of-fold rows of all deals pooled. A study: nothing is
chosen on test. One line per split and fit; within the goal: 29.3-49.3% and 76.5-96.5%.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def shares(cal, err: np.ndarray, sigma: np.ndarray) -> str:
    """Test shares inside the map's 1σ and 2σ ellipses, and whether both are within the goal."""
    from rflocal_core.train.calibrate import fold_shares

    one, two = fold_shares(err, sigma, np.zeros(len(err), dtype=int), cal)[0]
    ok = abs(one - 0.393) <= 0.1 and abs(two - 0.865) <= 0.1
    return f"{100 * one:5.1f} / {100 * two:5.1f} {'in' if ok else 'OUT'}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("model")
    ap.add_argument("--deals", type=int, default=4)
    a = ap.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = a.workspace
    from rflocal_core.models import load_inputs
    from rflocal_core.models.registry import BASELINES, model_config
    from rflocal_core.train.calibrate import (calibrate_prediction, fit_radii, fit_sigma_folds,
                                              fit_sigma_quantiles, out_of_block)

    make = lambda: BASELINES[a.model](model_config(a.model, None, []))  # noqa: E731
    for split in (0, 1, 2):
        ds = f"duke-b200-s{split}"
        tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
        model = make().fit(tr, va)
        pt = model.predict(te)
        et, st = pt.position_m - te.truth_m, pt.sigma_m
        print(f"{ds} {a.model} test median {np.median(np.hypot(*et.T)):.1f} m", flush=True)
        cal = calibrate_prediction(model.predict(va), va, radii="auto")
        print(f"  val, radii auto ({cal.method}, r {cal.ratio_2sigma:.2f}): {shares(cal, et, st)}", flush=True)
        errs, sigs = [], []
        for deal in range(a.deals):
            e, s, f = out_of_block(make, tr, va, block_m=200.0, folds=5, seed=deal)
            gauss = fit_sigma_folds(e, s, f)
            every = fit_radii(e, s, "auto", lambda g=gauss: g, f)
            pooled = fit_radii(e, s, "auto", lambda g=gauss: g)
            print(f"  blocks deal {deal}: every fold ({every.method}, r {every.ratio_2sigma:.2f}) "
                  f"{shares(every, et, st)}; pooled check ({pooled.method}) {shares(pooled, et, st)}", flush=True)
            errs.append(e)
            sigs.append(s)
        both = fit_sigma_quantiles(np.concatenate(errs), np.concatenate(sigs))
        print(f"  blocks, {a.deals} deals pooled, two radii (r {both.ratio_2sigma:.2f}): {shares(both, et, st)}",
              flush=True)


if __name__ == "__main__":
    main()
