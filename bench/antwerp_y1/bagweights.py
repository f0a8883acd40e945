"""Bagged ensemble weights: choose the grid weights on B bootstrap resamples of val and average them
(val is 831 messages: one choice overfits). Members: the dump's, with kgm (kNN geometric median, K=15,
tau 2 dB) in place of knn. Then the snap (k=10)."""
import sys

import numpy as np
from common import errs, fig, fill, geomedian, topk

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from rflocal_core.models.ensemble import combine_positions, simplex_grid, snap_to_positions

z = np.load(sys.argv[1])
tr = z["train_truth"]; ok = np.isfinite(tr).all(1); tr = tr[ok]
ftr = fill(z["train_rss"][ok], -120.0)
names = list(z["members"])
P = {p: z[f"{p}_pos"].copy() for p in ("val", "test")}
for p, arr in P.items():
    idx, dist = topk(fill(z[f"{p}_rss"], -120.0), ftr, 15)
    w = np.exp(-(dist - dist[:, :1]) / 2.0); w /= w.sum(1, keepdims=True)
    arr[names.index("knn")] = geomedian(tr[idx], w)
tv, tt = z["val_truth"], z["test_truth"]
grid = simplex_grid(6, 0.1)
E = np.stack([errs(combine_positions(P["val"], g, "median"), tv) for g in grid])  # [G, Nval]
rng = np.random.default_rng(0)
for crit in ("median_mean", "mean"):
    f = (lambda e: 0.5 * (np.median(e, -1) + e.mean(-1))) if crit == "median_mean" else (lambda e: e.mean(-1))
    one = grid[int(np.argmin(f(E)))]
    for B in (1, 30, 100):
        if B == 1:
            wb = one
        else:
            picks = [grid[int(np.argmin(f(E[:, rng.integers(0, E.shape[1], E.shape[1])])))] for _ in range(B)]
            wb = np.mean(picks, 0)
        ct = combine_positions(P["test"], wb, "median")
        cv = combine_positions(P["val"], wb, "median")
        st = snap_to_positions(ct, tr, 10)
        print(f"{crit} B={B}: w {dict(zip(names, wb.round(2)))} val {fig(errs(cv, tv))} test {fig(errs(ct, tt))} "
              f"snap10 {fig(errs(st, tt))}", flush=True)
