"""Duke: is the shape or the level of the sigma map what fails? (brief D15; reads dump_oof.py's npz).

Usage: PYTHONPATH=$PWD python bench/duke_d15/windows.py OUT_DIR/knn-s0.npz ...

- "oracle": the scale + power map (and one per group of nodes heard 1 | 2 | 3+) fitted on the
  test split itself: if even that misses 39.3 / 86.5 by more than 10 points, the shape fails.
- "windows" (Duke npz only): with the exponent p of today's blocks fit, the range of scales that
  puts the test split, and each fold of squares, within 10 points of both (None: no scale does).
"""
import sys

import numpy as np

from groups_study import apply, cov, fit_pooled, ok, per_group
from rflocal_core.train.calibrate import fit_sigma_folds, fit_sigma_scale, size_factor

GRID = np.exp(np.linspace(np.log(0.3), np.log(30), 400))


def window(e, s):
    """(lowest, highest) scale of GRID putting errors ``e`` within 10 points with sigmas ``s`` (None: none)."""
    good = [float(k) for k in GRID if ok(cov(e, s * k))]
    return (round(min(good), 2), round(max(good), 2)) if good else None


def main():
    for path in sys.argv[1:]:
        z = np.load(path)
        et, st, ht = z["et"], z["st"], z["ht"]
        one = cov(et, apply(fit_sigma_scale(et, st), st))
        grp = cov(et, per_group(fit_pooled, et, st, ht, None, st, ht, (1, 2, 3))[0])
        print(path, "oracle one map %.0f/%.0f" % one, "OK" if ok(one) else "", "| per group %.0f/%.0f" % grp,
              "OK" if ok(grp) else "")
        if "e_oof" not in z:
            continue
        eo, so, fold = z["e_oof"], z["s_oof"], z["fold"]
        g = np.isfinite(eo).all(1) & np.isfinite(so).all(1) & (so > 0).all(1)
        eo, so, fold = eo[g], so[g], fold[g]
        cal = fit_sigma_folds(eo, so, fold)
        bt, bo = st * size_factor(st, cal.power, cal.ref_m), so * size_factor(so, cal.power, cal.ref_m)
        folds = [window(eo[fold == f], bo[fold == f]) for f in np.unique(fold)]
        print(f"  blocks p {cal.power:g}, chosen scale {cal.scale:.2f}; test within goal for scales {window(et, bt)}; "
              f"folds {folds}")


if __name__ == "__main__":
    main()
