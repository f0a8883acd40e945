"""Hedge where the fingerprint is unusual: for messages whose nearest training fingerprint is farther than a
val-chosen quantile, answer the geometric median of a broad kNN posterior (K, tau) fused with the members
(lam toward it). Members: the dump's with kgm in place of knn; val weights by median_mean."""
import sys

import numpy as np
from common import errs, fig, fill, geomedian, score, topk

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from rflocal_core.models.ensemble import combine_positions, simplex_grid

z = np.load(sys.argv[1])
tr = z["train_truth"]; ok = np.isfinite(tr).all(1); tr = tr[ok]
ftr = fill(z["train_rss"][ok], -120.0)
names = list(z["members"])
P, NB = {}, {}
for p in ("val", "test"):
    P[p] = z[f"{p}_pos"].copy()
    NB[p] = topk(fill(z[f"{p}_rss"], -120.0), ftr, 100)
    idx, dist = NB[p]
    w = np.exp(-(dist[:, :15] - dist[:, :1]) / 2.0); w /= w.sum(1, keepdims=True)
    P[p][names.index("knn")] = geomedian(tr[idx[:, :15]], w)
tv, tt = z["val_truth"], z["test_truth"]
grid = simplex_grid(6, 0.1)
g = grid[int(np.argmin([score(errs(combine_positions(P["val"], w, "median"), tv)) for w in grid]))]
C = {p: combine_positions(P[p], g, "median") for p in P}
print("base val", fig(errs(C["val"], tv)), "test", fig(errs(C["test"], tt)))


def broad(p, K, tau):
    idx, dist = NB[p]
    w = np.exp(-(dist[:, :K] - dist[:, :1]) / tau); w /= w.sum(1, keepdims=True)
    pts = np.concatenate([P[p].transpose(1, 0, 2), tr[idx[:, :K]]], 1)
    ww = np.concatenate([0.5 * np.broadcast_to(g, (len(w), 6)), 0.5 * w], 1)
    return geomedian(pts, ww)


best = []
for K, tau in ((30, 4.0), (60, 6.0), (100, 10.0)):
    B = {p: broad(p, K, tau) for p in P}
    d1v, d1t = NB["val"][1][:, 0], NB["test"][1][:, 0]
    for q in (50, 70, 80, 90, 95):
        thr = np.percentile(d1v, q)
        for lam in (0.5, 1.0):
            hv = np.where((d1v > thr)[:, None], C["val"] + lam * (B["val"] - C["val"]), C["val"])
            ht = np.where((d1t > thr)[:, None], C["test"] + lam * (B["test"] - C["test"]), C["test"])
            best.append((score(errs(hv, tv)), K, tau, q, lam, fig(errs(hv, tv)), fig(errs(ht, tt))))
best.sort()
for b in best[:6]:
    print(f"val {b[0]:.0f} K {b[1]} tau {b[2]} q {b[3]} lam {b[4]}: val {b[5]} test {b[6]}")
