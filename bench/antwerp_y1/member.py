"""The kNN geometric-median estimate (K=15, tau=2 dB, -120 dBm) as an ensemble member: replace one member,
choose the weights on val (grid 0.1, geometric median, (median+mean)/2), report test; then the snap (k=10)."""
import sys

import numpy as np
from common import errs, fig, fill, geomedian, score, topk

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from rflocal_core.models.ensemble import combine_positions, simplex_grid, snap_to_positions

z = np.load(sys.argv[1])
tr = z["train_truth"]; ok = np.isfinite(tr).all(1); tr = tr[ok]
ftr = fill(z["train_rss"][ok], -120.0)
names = list(z["members"])
new = {}
for p in ("val", "test"):
    idx, dist = topk(fill(z[f"{p}_rss"], -120.0), ftr, 15)
    w = np.exp(-(dist - dist[:, :1]) / 2.0); w /= w.sum(1, keepdims=True)
    new[p] = geomedian(tr[idx], w)
grid = simplex_grid(6, 0.1)
for replace in ("knn", "nn1", "fpnet_knn"):
    j = names.index(replace)
    P = {p: z[f"{p}_pos"].copy() for p in ("val", "test")}
    for p, arr in P.items():
        arr[j] = new[p]
    sc = [score(errs(combine_positions(P["val"], g, "median"), z["val_truth"])) for g in grid]
    g = grid[int(np.argmin(sc))]
    cv, ct = combine_positions(P["val"], g, "median"), combine_positions(P["test"], g, "median")
    sv, st = snap_to_positions(cv, tr, 10), snap_to_positions(ct, tr, 10)
    print(f"replace {replace} by kgm: weights {dict(zip(names, g.round(2)))} val {fig(errs(cv, z['val_truth']))} "
          f"test {fig(errs(ct, z['test_truth']))}; snap10 val {fig(errs(sv, z['val_truth']))} test {fig(errs(st, z['test_truth']))}",
          flush=True)
