"""Duke (brief D16): does the extrapolation distance (from a sample's TRUE position to the nearest position of the
data the model was fitted on: a diagnostic, not known at prediction time) differ between the out-of-fold rows
(5 folds of 200 m squares of train + val) and test, and does it rank the errors? If the two distributions agree,
the block folds already mimic the test's extrapolation, and re-weighting them to match it cannot move the level;
if the error at equal distance differs, the level belongs to the area.

Usage from the project root: ``PYTHONPATH=$PWD .venv/bin/python bench/duke_d16/extrap.py OUT C15_DUMP 0 1 2``
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
import gate  # noqa: E402


def main(out: Path, dump: Path, seeds: list[int]) -> None:
    for s in seeds:
        z = np.load(out / f"d16_s{s}.npz")
        d = gate.load(out / f"d16_s{s}.npz")
        xy = z["oof_xy"]
        sq = np.floor(xy / 200.0).astype(int)
        keys, inv = np.unique(sq, axis=0, return_inverse=True)
        fold_all = (np.random.default_rng(s).permutation(len(keys)) % 5)[inv.ravel()]
        rows = z["oof_fold"] >= 0
        dist_o = np.zeros(rows.sum())
        for f in range(5):
            m = z["oof_fold"][rows] == f
            dist_o[m] = cKDTree(xy[fold_all != f]).query(xy[rows][m])[0]
        train_xy = np.load(dump / f"duke_s{s}.npz")["train_xy"]
        dist_t = cKDTree(train_xy).query(z["test_xy"])[0]
        e_o, e_t = gate.err_of(d, "oof", "knn"), gate.err_of(d, "test", "knn")
        q = [25, 50, 75, 90]
        print(f"split {s}: distance to the nearest fitted position, p25/50/75/90 m: out of fold "
              f"{np.percentile(dist_o, q).round()}, test {np.percentile(dist_t, q).round()};"
              f" Spearman(kNN error, distance) oof {spearmanr(e_o, dist_o)[0]:.2f},"
              f" test {spearmanr(e_t, dist_t)[0]:.2f};"
              f" kNN median error oof {np.median(e_o):.0f}, test {np.median(e_t):.0f} m")
        for lo, hi in ((0, 20), (20, 50), (50, 100), (100, 1e9)):
            mo, mt = (dist_o >= lo) & (dist_o < hi), (dist_t >= lo) & (dist_t < hi)
            print(f"   distance {lo:g}-{hi:g} m: oof {mo.mean():.2f} of rows, kNN median {np.median(e_o[mo]):.0f} m; "
                  f"test {mt.mean():.2f}, {np.median(e_t[mt]) if mt.any() else float('nan'):.0f} m")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [int(a) for a in sys.argv[3:]])
