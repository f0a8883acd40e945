"""Offset-invariant fingerprint distance: shift the query's heard RSS by the mean difference over the slots
both heard (clipped to +-cmax dB) before the Euclidean distance; kNN geometric median K=15 tau=2 as in kde.py."""
import sys

import numpy as np
from common import errs, fig, fill, geomedian, score

z = np.load(sys.argv[1])
tr = z["train_truth"]; ok = np.isfinite(tr).all(1)
tr = tr[ok]; rtr = z["train_rss"][ok]
floor = -120.0
ftr = fill(rtr, floor); htr = np.isfinite(rtr).astype(float)


def offset_topk(rss, K, cmax, pen):
    f = fill(rss, floor); h = np.isfinite(rss).astype(float)
    idx = np.empty((len(f), K), int); dist = np.empty((len(f), K))
    for s in range(0, len(f), 256):
        q, hq = f[s:s+256], h[s:s+256]
        both = hq[:, None, :] * htr[None]  # [n, M, S]
        nb = both.sum(-1)
        diff = (ftr[None] - q[:, None, :]) * both
        c = np.clip(diff.sum(-1) / np.maximum(nb, 1), -cmax, cmax)  # [n, M]
        qs = q[:, None, :] + c[..., None] * hq[:, None, :]
        d = np.sqrt(((qs - ftr[None]) ** 2).sum(-1) + pen * c**2)
        nn = np.argpartition(d, K, 1)[:, :K]
        dk = np.take_along_axis(d, nn, 1); o = np.argsort(dk, 1)
        idx[s:s+256] = np.take_along_axis(nn, o, 1); dist[s:s+256] = np.take_along_axis(dk, o, 1)
    return idx, dist


def est(idx, dist, K=15, tau=2.0):
    w = np.exp(-(dist[:, :K] - dist[:, :1]) / tau); w /= w.sum(1, keepdims=True)
    return geomedian(tr[idx[:, :K]], w)


for cmax, pen in ((0.0, 0.0), (3.0, 1.0), (6.0, 1.0), (6.0, 0.25), (10.0, 0.5)):
    iv, dv = offset_topk(z["val_rss"], 15, cmax, pen)
    ev = errs(est(iv, dv), z["val_truth"])
    line = f"cmax {cmax} pen {pen}: val {fig(ev)} ({score(ev):.0f})"
    if cmax in (0.0, 6.0):
        it, dt = offset_topk(z["test_rss"], 15, cmax, pen)
        line += f" test {fig(errs(est(it, dt), z['test_truth']))}"
    print(line, flush=True)
