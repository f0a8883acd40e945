"""The radio-map posterior as built into `knn` (no gateway positions): the prior of a sparse place is the
slot's mean heard RSS and a heard rate of 0.5, instead of the log-distance fit (brief Z3). val then test."""
import sys

import numpy as np
from geo2 import fp_dist
from maplik import ll

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/antwerp_y1")
from common import errs, fig, geomedian

z = np.load(sys.argv[1])
tr, rtr = z["train_truth"], z["train_rss"]
H = np.isfinite(rtr).astype(np.float32); R = np.where(H > 0, rtr, 0).astype(np.float32)
slot_mean = np.where(H.sum(0) > 0, R.sum(0) / np.maximum(H.sum(0), 1), -120.0).astype(np.float32)
ftr = np.where(np.isfinite(rtr), rtr, -120.0)
ok = np.ones(rtr.shape[1], bool)
for h in (35.0, 50.0):
    dd = np.hypot(*(tr[:, None] - tr[None]).transpose(2, 0, 1)).astype(np.float32)
    K = np.exp(-0.5 * (dd / h) ** 2); sK = K.sum(1)[:, None]
    p = np.clip((K @ H + 2 * 0.5) / (sK + 2), 0.05, 0.95)
    mm = (K @ (H * R) + 2 * slot_mean[None]) / (K @ H + 2)
    for beta, M in ((0.5, 30), (0.5, 60), (1.0, 30)):
        out = []
        for part in ("val", "test"):
            rss = z[f"{part}_rss"]
            D = fp_dist(np.where(np.isfinite(rss), rss, -120.0), ftr)
            sc = -(D - D.min(1, keepdims=True)) / 2.0 + beta * ll(rss, p, mm, ok, 3.0, 6.0, 1.0)
            idx = np.argpartition(-sc, M, 1)[:, :M]
            sv = np.take_along_axis(sc, idx, 1)
            w = np.exp(sv - sv.max(1, keepdims=True)); w /= w.sum(1, keepdims=True)
            out.append(fig(errs(geomedian(tr[idx], w), z[f"{part}_truth"])))
        print(f"h {h} beta {beta} M {M}: val {out[0]} test {out[1]}", flush=True)
