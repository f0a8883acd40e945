"""kNN posterior as a kernel over training positions: weighted mean vs geometric median vs mode.

Weights w_j ∝ exp(-(d_j - d_1)/tau) over the K nearest fingerprints (floor F dBm).
val chooses (score = (median+mean)/2), test reports.
"""
import sys

import numpy as np
from common import density_mode, errs, fig, fill, geomedian, score, topk

z = np.load(sys.argv[1])
tr = z["train_truth"]; ok = np.isfinite(tr).all(1)
tr = tr[ok]
res = []
for floor in (-120.0, -130.0):
    ftr = fill(z["train_rss"][ok], floor)
    fv, ft = fill(z["val_rss"], floor), fill(z["test_rss"], floor)
    iv, dv = topk(fv, ftr, 100)
    it, dt = topk(ft, ftr, 100)
    for K in (7, 15, 30, 60, 100):
        for tau in (1.0, 2.0, 3.0, 5.0, 8.0):
            row = {}
            for part, idx, dist, truth in (("val", iv, dv, z["val_truth"]), ("test", it, dt, z["test_truth"])):
                w = np.exp(-(dist[:, :K] - dist[:, :1]) / tau); w /= w.sum(1, keepdims=True)
                pts = tr[idx[:, :K]]
                mean = (w[..., None] * pts).sum(1)
                gm = geomedian(pts, w)
                row[part] = {"mean": errs(mean, truth), "gmed": errs(gm, truth)}
                if K <= 30:
                    for h in (50.0, 150.0):
                        mode, _ = density_mode(pts, w, h)
                        row[part][f"mode{h:.0f}"] = errs(mode, truth)
            for how in row["val"]:
                res.append((score(row["val"][how]), floor, K, tau, how, fig(row["val"][how]), fig(row["test"][how])))
res.sort()
for r in res[:25]:
    print(f"val score {r[0]:.0f} floor {r[1]} K {r[2]} tau {r[3]} {r[4]:7s} val {r[5]} test {r[6]}")
for how in ("mean", "gmed", "mode50", "mode150"):
    b = [r for r in res if r[4] == how]
    if b:
        r = b[0]
        print(f"BEST {how}: floor {r[1]} K {r[2]} tau {r[3]} val {r[5]} test {r[6]}")
