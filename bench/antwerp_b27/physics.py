"""Do the gateways' positions re-rank the radio-map kNN's candidates (brief B27, issue 15)?

Usage: python physics.py OOF.npz [MODEL] [DETECTION] [PROFILE]
OOF.npz: oof.py's output. Per fold, the gateways with a known position get a path-loss law fitted on the other
folds' messages (d >= 20 m), and each candidate of a held message is scored by it:
- MODEL logistic (default): per gateway heard 20+ times, least squares on the heard RSS (RSS = a - 10 b log10 d,
  residual sigma s) and a detection law (logistic in log10 d); the heard RSS under the law plus, with DETECTION 1,
  log P(heard) or log P(not heard) of every such gateway;
- MODEL censored: `data fit-noise`'s Tobit model (`noisefit.fit_censored_path_loss`: an intercept per gateway, one
  exponent and sigma; a link below its gateway's floor, the 1st percentile of its heard RSS, is not heard): log
  phi of each heard RSS, log Phi((floor - mu) / sigma) of each gateway not heard.
PROFILE 1: the heard residuals less a per-candidate offset (their mean), as the device's power is unknown.
The answer is the weighted geometric median of the top candidates under log w / T + beta * physics; beta 0 is
the kNN's own posterior. x_val only; test is not touched.
"""
import sys
from pathlib import Path

import numpy as np
from scipy.special import expit, log_ndtr

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.dataset.noisefit import Links, fit_censored_path_loss  # noqa: E402
from rflocal_core.models.baselines import weighted_geometric_median  # noqa: E402

o = np.load(sys.argv[1])
MODEL = sys.argv[2] if len(sys.argv) > 2 else "logistic"
DETECTION = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
PROFILE = int(sys.argv[4]) if len(sys.argv) > 4 else 1
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


def fit_logistic(rows):
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


def fit_censored(rows):
    """[G, 4]: P0, n, sigma, floor per located gateway heard in rows (the exponent and sigma shared)."""
    use = np.flatnonzero(known & heard[rows].any(0))
    d = np.maximum(np.hypot(*(truth[rows][:, None, :] - gw[use][None]).transpose(2, 0, 1)), 20.0)
    node = np.broadcast_to(np.arange(len(use)), d.shape)
    links = Links(rss=rss[rows][:, use].ravel(), dist_m=d.ravel(), node=node.ravel(),
                  sample=np.repeat(np.arange(len(rows)), len(use)), xy=np.repeat(truth[rows], len(use), 0),
                  node_names=[str(g) for g in use], samples=len(rows), mode="emitter")
    floors = np.array([np.percentile(rss[rows, g][heard[rows, g]], 1) for g in use])
    theta = fit_censored_path_loss(links, floors)
    par = np.full((G, 4), np.nan)
    par[use] = np.c_[theta[:-2], np.full(len(use), theta[-2]), np.full(len(use), theta[-1]), floors]
    return par


def physics(par, rows, cand):
    """[len(rows), K] log-likelihood of each candidate position of each message."""
    ll, z, use = np.zeros(cand.shape[:2]), [], np.flatnonzero(np.isfinite(par[:, 0]))
    for g in use:
        ld = np.log10(np.maximum(np.hypot(cand[..., 0] - gw[g, 0], cand[..., 1] - gw[g, 1]), 20.0))
        mu, h = par[g, 0] - 10 * par[g, 1] * ld, heard[rows, g][:, None]
        if MODEL == "censored":
            ll += np.where(h, 0.0, log_ndtr((par[g, 3] - mu) / par[g, 2]))
        else:
            p = np.clip(expit(par[g, 3] + par[g, 4] * ld), 1e-4, 1 - 1e-4)
            ll += np.where(h, np.log(p), np.log1p(-p)) * DETECTION
        z.append(np.where(h, (rss[rows, g][:, None] - mu) / par[g, 2], 0.0))
    z, hm = np.stack(z), heard[rows][:, use].T[:, :, None]
    off = (z * hm).sum(0) / np.maximum(hm.sum(0), 1) if PROFILE else 0.0
    return ll - 0.5 * (((z - off) ** 2) * hm).sum(0)


def errors(z):
    e = np.hypot(*(z - truth).T)
    return f"{np.median(e):.1f} / {e.mean():.1f} m"


LL = np.zeros((n, K))
for f in range(fold.max() + 1):
    held = np.flatnonzero(fold == f)
    par = (fit_censored if MODEL == "censored" else fit_logistic)(np.flatnonzero(fold != f))
    if f == 0 and MODEL == "censored":
        print(f"fold 0 fit: exponent n {par[np.isfinite(par[:, 1]), 1][0]:.2f}, sigma "
              f"{par[np.isfinite(par[:, 2]), 2][0]:.1f} dB, {np.isfinite(par[:, 0]).sum()} gateways")
    for s in range(0, len(held), 400):
        LL[held[s:s + 400]] = physics(par, held[s:s + 400], pp[held[s:s + 400]].astype(np.float64))
order = np.argsort(-pw, axis=1, kind="stable")  # the kNN's candidates are not sorted by weight
pw, LL = np.take_along_axis(pw, order, 1), np.take_along_axis(LL, order, 1)
pp = np.take_along_axis(pp, order[..., None], 1).astype(np.float64)
detail = f"detection {DETECTION:g}, " if MODEL == "logistic" else ""
print(f"{MODEL}: {detail}offset profiled {PROFILE}; the run's own answer out of fold: {errors(pos)}")
lw = np.log(np.maximum(pw, 1e-30))
for T in (1.0, 2.0):
    for top in (30, 100, 1000):
        row = []
        for b in (0.0, 0.1, 0.3, 1.0):
            score = lw[:, :top] / T + b * LL[:, :top]
            w = np.exp(score - score.max(1, keepdims=True))
            row.append(f"beta {b:g}: {errors(weighted_geometric_median(pp[:, :top], w))}")
        print(f"T {T:g} top {top:4d}  " + "; ".join(row), flush=True)
