"""Fuse the ensemble members with the kNN posterior: candidates = members' positions (val weights) and the
K nearest fingerprints' positions (kernel weights x alpha); answer = weighted geometric median or a mode.
Also: cleaning training outliers (leave-one-out kNN error above a threshold) from the fingerprint pool.
val chooses (score (median+mean)/2), test reports.
"""
import sys

import numpy as np
from common import errs, fig, fill, geomedian, score, topk

z = np.load(sys.argv[1])
tr = z["train_truth"]; ok = np.isfinite(tr).all(1)
tr = tr[ok]
floor = -120.0
ftr = fill(z["train_rss"][ok], floor)
wm = z["weights"]
names = list(z["members"])
parts = {"val": (fill(z["val_rss"], floor), z["val_truth"], z["val_pos"]),
         "test": (fill(z["test_rss"], floor), z["test_truth"], z["test_pos"])}
nb = {p: topk(parts[p][0], ftr, 60) for p in parts}
print("ensemble as dumped: val", fig(errs(z["val_ens_pos"], z["val_truth"])), "test", fig(errs(z["test_ens_pos"], z["test_truth"])))


def fused(p, K, tau, alpha, wmem, how="gmed"):
    fp, _truth, mpos = parts[p]
    idx, dist = nb[p]
    kw = np.exp(-(dist[:, :K] - dist[:, :1]) / tau); kw /= kw.sum(1, keepdims=True)
    pts = np.concatenate([mpos.transpose(1, 0, 2), tr[idx[:, :K]]], 1)  # [N, M+K, 2]
    w = np.concatenate([np.broadcast_to((1 - alpha) * wmem, (len(fp), len(wmem))), alpha * kw], 1)
    return geomedian(pts, w)


res = []
grid_w = [wm, np.full(len(wm), 1 / len(wm))]
for wi, wmem in enumerate(grid_w):
    for K in (5, 10, 20, 40, 60):
        for tau in (1.0, 2.0, 4.0):
            for alpha in (0.0, 0.2, 0.35, 0.5, 0.65, 0.8):
                ev = errs(fused("val", K, tau, alpha, wmem), parts["val"][1])
                res.append((score(ev), wi, K, tau, alpha, fig(ev)))
res.sort()
for r in res[:8]:
    sc, wi, K, tau, alpha, fv = r
    et = errs(fused("test", K, tau, alpha, grid_w[wi]), parts["test"][1])
    print(f"val {sc:.0f} w={'val' if wi == 0 else 'equal'} K {K} tau {tau} alpha {alpha}: val {fv} test {fig(et)}")
