"""Duke: would model selection choose better on out-of-block folds than on the small val split? (brief B24)

Usage: python select_oof.py WORKSPACE DATASET [DATASET ...]   (bench_real's duke-b200-s0, -s1, -s2 imports)
For auto's baseline candidates (knn, knn:radio_map, lgbm, knn_lgbm, ensemble with their defaults): the median /
mean error out of fold over 5 folds of 200 m squares of train + val (``rflocal_core.train.calibrate.out_of_block``,
the blocks calibration's folds), on val (fitted on train, as auto ranks them) and on test. A study: nothing is
chosen on test. Prints one line per dataset and candidate.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.models import load_inputs  # noqa: E402
from rflocal_core.models.registry import BASELINES, model_variants  # noqa: E402
from rflocal_core.train.calibrate import out_of_block  # noqa: E402

CANDIDATES = {"knn": ("knn", None), "knn:radio_map": ("knn", model_variants("knn")["radio_map"]),
              "lgbm": ("lgbm", None), "knn_lgbm": ("knn_lgbm", None), "ensemble": ("ensemble", None)}


def figures(model, x) -> tuple[float, float]:
    e = np.hypot(*(model.predict(x).position_m - x.truth_m).T)
    return float(np.median(e)), float(e.mean())


def main() -> None:
    for ds in sys.argv[2:]:
        tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
        for name, (model, options) in CANDIDATES.items():
            t0 = time.time()
            err, _, _ = out_of_block(lambda m=model, o=options: BASELINES[m](dict(o) if o else None), tr, va,
                                     block_m=200.0, folds=5, seed=0)
            d = np.hypot(*err.T)
            fitted = BASELINES[model](dict(options) if options else None).fit(tr, va)
            v, t = figures(fitted, va), figures(fitted, te)
            print(f"{ds} {name:14s} oof {np.nanmedian(d):6.1f}/{np.nanmean(d):6.1f}  val {v[0]:6.1f}/{v[1]:6.1f}  "
                  f"test {t[0]:6.1f}/{t[1]:6.1f} ({time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
