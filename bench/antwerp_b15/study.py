"""Posterior estimators and sigmas from the radio-map kNN's scores (brief B15): val chooses, test reports.

Usage: python study.py SCORES.npz   (from scores.py)
Posterior over the K best-scored training positions: w ~ exp(logw / T). Answers: weighted geometric
median ("gm") or mean; sigma: weighted per-axis spread around the answer (+ floor), scaled on val.
"""
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.metrics.stats import calibration  # noqa: E402
from rflocal_core.train.calibrate import fit_sigma_scale, size_factor  # noqa: E402

Z = np.load(sys.argv[1])
POS = Z["train_pos"]


def posterior(logw, T, K):
    nn = np.argpartition(-logw, K - 1, axis=1)[:, :K] if K < logw.shape[1] else np.tile(np.arange(logw.shape[1]), (len(logw), 1))
    lw = np.take_along_axis(logw, nn, 1).astype(np.float64) / T
    w = np.exp(lw - lw.max(1, keepdims=True))
    return nn, w / w.sum(1, keepdims=True)


def geomedian(pts, w, start, iters=50):
    est = start
    for _ in range(iters):
        d = np.hypot(pts[..., 0] - est[:, None, 0], pts[..., 1] - est[:, None, 1])
        inv = w / np.maximum(d, 1e-3)
        est = (inv[..., None] * pts).sum(1) / inv.sum(1)[:, None]
    return est


def answer(logw, T, K, how):
    nn, w = posterior(logw, T, K)
    pts = POS[nn]
    mean = (w[..., None] * pts).sum(1)
    est = mean if how == "mean" else geomedian(pts, w, mean)
    spread = np.sqrt((w[..., None] * (pts - est[:, None]) ** 2).sum(1))
    return est, spread, nn, w


def err(est, split):
    return np.hypot(*(est - Z[f"{split}_truth"]).T)


def nll_truth(logw, T, K, split, h=50.0):
    nn, w = posterior(logw, T, K)
    d2 = ((POS[nn] - Z[f"{split}_truth"][:, None]) ** 2).sum(-1)
    dens = (w * np.exp(-0.5 * d2 / h**2)).sum(1) / (2 * np.pi * h**2)
    return -np.mean(np.log(dens + 1e-12))


def chunked(fn, logw, *a, n=2000):
    outs = [fn(logw[s:s + n], *a) for s in range(0, len(logw), n)]
    return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]


if __name__ == "__main__":
    Ts = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    Ks = (30, 100, 300, 1000)
    rows = []
    for T, K in itertools.product(Ts, Ks):
        for how in ("gm", "mean"):
            est, _, _, _ = answer(Z["val_logw"], T, K, how)
            e = err(est, "val")
            rows.append((e.mean(), np.median(e), T, K, how))
        nll = nll_truth(Z["val_logw"], T, K, "val")
        print(f"T {T} K {K}: val gm {rows[-2][1]:.0f}/{rows[-2][0]:.0f}  mean {rows[-1][1]:.0f}/{rows[-1][0]:.0f}  "
              f"nll(50 m) {nll:.3f}", flush=True)
    rows.sort()
    print("best by val mean:", rows[:5])
