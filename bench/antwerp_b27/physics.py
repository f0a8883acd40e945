"""Do the gateways' positions re-rank the radio-map kNN's candidates (brief B27, issue 15)?

Usage: python physics.py OOF.npz [DETECTION] [PROFILE]
OOF.npz: oof.py's output. Per fold, each gateway with a known position gets a log-distance law fitted on the
other folds' messages (RSS = a - 10 b log10 d, residual sigma s, d >= 20 m) and a detection law (logistic in
log10 d: P(heard)). Each candidate of a held message is scored by that physics: the heard RSS under the law
(PROFILE 1: less a per-candidate offset, the mean residual, as the device's power is unknown) plus, with
DETECTION 1, log P(heard) or log P(not heard) of every located gateway. The answer is the weighted geometric
median of the top candidates under log w / T + beta * physics. beta 0 is the kNN's own posterior.
x_val only; test is not touched.
"""
import sys

import numpy as np
from scipy.special import expit

o = np.load(sys.argv[1])
DETECTION = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
PROFILE = int(sys.argv[3]) if len(sys.argv) > 3 else 1
pos, pp, pw, truth, fold, rss, gw = (o[k] for k in ("pos", "pp", "pw", "truth", "fold", "rss", "gw"))
n, K, G = pp.shape[0], pp.shape[1], rss.shape[1]
known = np.isfinite(gw).all(1)
heard = np.isfinite(rss)


def logistic(ld, h):
    X, c = np.c_[np.ones(len(ld)), ld], np.zeros(2)
    for _ in range(25):  # Newton steps
        p = expit(X @ c)
        c += np.linalg.solve((X * (p * (1 - p) + 1e-9)[:, None]).T @ X + 1e-6 * np.eye(2), X.T @ (h - p))
    return c


def fit(rows):
    """[G, 5]: a, b, s, c0, c1 per located gateway heard at least 20 times in rows (NaN otherwise)."""
    par = np.full((G, 5), np.nan)
    for g in np.flatnonzero(known):
        ld = np.log10(np.maximum(np.hypot(*(truth[rows] - gw[g]).T), 20.0))
        h = heard[rows, g]
        if h.sum() < 20:
            continue
        A = np.c_[np.ones(h.sum()), -10 * ld[h]]
        coef, *_ = np.linalg.lstsq(A, rss[rows, g][h], rcond=None)
        s = np.std(rss[rows, g][h] - A @ coef)
        par[g] = [coef[0], coef[1], max(s, 3.0), *logistic(ld, h)]
    return par


def physics(par, rows, cand):
    """[len(rows), K] log-likelihood of each candidate position of each message."""
    ll, z, use = np.zeros(cand.shape[:2]), [], np.flatnonzero(np.isfinite(par[:, 0]))
    for g in use:
        ld = np.log10(np.maximum(np.hypot(cand[..., 0] - gw[g, 0], cand[..., 1] - gw[g, 1]), 20.0))
        p = np.clip(expit(par[g, 3] + par[g, 4] * ld), 1e-4, 1 - 1e-4)
        h = heard[rows, g][:, None]
        ll += np.where(h, np.log(p), np.log1p(-p)) * DETECTION
        z.append(np.where(h, (rss[rows, g][:, None] - (par[g, 0] - 10 * par[g, 1] * ld)) / par[g, 2], 0.0))
    z, hm = np.stack(z), heard[rows][:, use].T[:, :, None]
    off = (z * hm).sum(0) / np.maximum(hm.sum(0), 1) if PROFILE else 0.0
    return ll - 0.5 * (((z - off) ** 2) * hm).sum(0)


def geometric_median(p, w, steps=30):
    w = w / w.sum(1, keepdims=True)
    z = (p * w[..., None]).sum(1)
    for _ in range(steps):  # Weiszfeld
        ww = w / np.maximum(np.hypot(*(p - z[:, None]).transpose(2, 0, 1)), 1.0)
        z = (p * ww[..., None]).sum(1) / ww.sum(1, keepdims=True)
    return z


def errors(z):
    e = np.hypot(*(z - truth).T)
    return f"{np.median(e):.1f} / {e.mean():.1f} m"


LL = np.zeros((n, K))
for f in range(fold.max() + 1):
    held, par = np.flatnonzero(fold == f), fit(np.flatnonzero(fold != f))
    for s in range(0, len(held), 400):
        LL[held[s:s + 400]] = physics(par, held[s:s + 400], pp[held[s:s + 400]].astype(np.float64))
order = np.argsort(-pw, axis=1, kind="stable")  # the kNN's candidates are not sorted by weight
pw, LL = np.take_along_axis(pw, order, 1), np.take_along_axis(LL, order, 1)
pp = np.take_along_axis(pp, order[..., None], 1).astype(np.float64)
print(f"detection {DETECTION:g}, offset profiled {PROFILE}; the run's own answer out of fold: {errors(pos)}")
lw = np.log(np.maximum(pw, 1e-30))
for T in (1.0, 2.0):
    for top in (30, 100, 1000):
        row = []
        for b in (0.0, 0.1, 0.3, 1.0):
            score = lw[:, :top] / T + b * LL[:, :top]
            w = np.exp(score - score.max(1, keepdims=True))
            row.append(f"beta {b:g}: {errors(geometric_median(pp[:, :top], w))}")
        print(f"T {T:g} top {top:4d}  " + "; ".join(row), flush=True)
