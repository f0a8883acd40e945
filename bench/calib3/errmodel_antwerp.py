"""A learned error model as sigma for Antwerp's best ensemble (brief Z4, issue 15; study, not the core).

Reads the npz of an ``ensemble`` run (``bench/real_x5/dump.py``; the best configuration, kgm +
bagged weights + 22 minutes, is ``/tmp/y1_bags22.npz``). Antwerp's split is random, so val looks
like test: a LightGBM regressor of log(|error| + 10 m) (or a quantile) is trained on val,
out-of-fold over 5 random folds of val, from the ensemble's own sigma, the members' spread and
disagreement, gateways heard, strongest RSS, RSS spread and fingerprint distances / neighbour
spread against the training split; scale (+ power) are fitted on the out-of-fold sigma of val,
a booster on all of val gives test's sigma. Repeated over fold seeds. Test is reported, never fitted.

Usage: PYTHONPATH=$PWD python bench/calib3/errmodel_antwerp.py /tmp/y1_bags22.npz
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import lightgbm as lgb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.train.calibrate import fit_sigma_scale, size_factor

FLOOR = -120.0
PARAMS = {"objective": "l2", "learning_rate": 0.03, "num_leaves": 7, "min_data_in_leaf": 30,
          "feature_fraction": 0.8, "verbose": -1, "num_threads": 1, "seed": 0}
ROUNDS = 150


def fill(r):
    return np.where(np.isfinite(r), r, FLOOR)


def neighbour_feats(q, pool_fp, pool_pos, est):
    out = np.zeros((len(q), 7))
    r2 = (pool_fp**2).sum(1)
    for a in range(0, len(q), 1000):
        b = q[a:a + 1000]
        d = np.sqrt(np.maximum((b**2).sum(1)[:, None] + r2[None] - 2 * b @ pool_fp.T, 0))
        idx = np.argpartition(d, 40, axis=1)[:, :40]
        dd = np.take_along_axis(d, idx, 1)
        o = np.argsort(dd, 1)
        idx, dd = np.take_along_axis(idx, o, 1), np.take_along_axis(dd, o, 1)
        p = pool_pos[idx]
        out[a:a + 1000, 0:3] = dd[:, [0, 4, 19]]
        for j, k in enumerate((10, 40)):
            c = p[:, :k].mean(1, keepdims=True)
            out[a:a + 1000, 3 + j] = np.log1p(np.sqrt(((p[:, :k] - c) ** 2).sum(-1).mean(1)))
        # how far the answer is from the nearest fingerprints' positions (off the posterior)
        out[a:a + 1000, 5] = np.log1p(np.hypot(*(p[:, 0] - est[a:a + 1000]).T))
        out[a:a + 1000, 6] = np.log1p(np.min(np.hypot(*(p[:, :10] - est[a:a + 1000, None]).transpose(2, 0, 1)), 1))
    return out


def feats(z, sp, pool_fp, pool_pos):
    r = z[f"{sp}_rss"]
    heard = np.isfinite(r).sum(1)
    srt = -np.sort(-np.where(np.isfinite(r), r, -np.inf), 1)
    strongest, second = srt[:, 0], np.where(heard > 1, srt[:, 1], FLOOR)
    with np.errstate(all="ignore"):
        rstd = np.where(heard > 1, np.nanstd(r, 1), 0.0)
    c, s, P, w = z[f"{sp}_ens_pos"], z[f"{sp}_ens_sig"], z[f"{sp}_pos"], z["weights"]
    spread = np.sqrt((w[:, None] * ((P - c[None]) ** 2).sum(-1)).sum(0))
    dev = np.hypot(*(P - c[None]).transpose(2, 0, 1))  # [M, N] each member's distance to the answer
    g = np.sqrt(np.abs(s[:, 0] * s[:, 1]))
    return np.column_stack([heard, strongest, strongest - second, rstd, np.log(g + 1e-3), np.log1p(spread),
                            np.log1p(dev).T, neighbour_feats(fill(r), pool_fp, pool_pos, c)])


def booster(F, y, params, rounds=ROUNDS):
    return lgb.train(params, lgb.Dataset(F, y), num_boost_round=rounds)


def coverage(e, s, cal):
    q = s * cal.scale * size_factor(s, cal.power, cal.ref_m)
    d2 = ((e / q) ** 2).sum(1)
    return 100 * np.mean(d2 <= 1), 100 * np.mean(d2 <= 4)


def band(e, s):
    """Most points between the 1σ and 2σ shares any one scale gives (>= 27 is needed for both goals)."""
    d = np.sqrt(((e / s) ** 2).sum(1))
    d = d[np.isfinite(d)]
    grid = np.quantile(d, np.linspace(0.01, 0.99, 197))
    return max(100 * (np.mean(d <= 2 * g) - np.mean(d <= g)) for g in grid)


def ok(c):
    return "OK" if abs(c[0] - 39.3) <= 10 and abs(c[1] - 86.5) <= 10 else "--"


def rank_corr(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def learned(Fv, ev, Ft, params, fold_seed, alpha=None):
    r = np.linalg.norm(ev, axis=1)
    p = dict(params) if alpha is None else {**params, "objective": "quantile", "alpha": alpha}
    y = np.log(r + 10.0) if alpha is None else r
    fold = np.random.default_rng(fold_seed).permutation(len(Fv)) % 5
    so = np.full(len(Fv), np.nan)
    for f in range(5):
        so[fold == f] = booster(Fv[fold != f], y[fold != f], p).predict(Fv[fold == f])
    st = booster(Fv, y, p).predict(Ft)
    if alpha is None:
        so, st = np.exp(so), np.exp(st)
    so, st = np.maximum(so, 1.0), np.maximum(st, 1.0)
    return np.column_stack([so, so]), np.column_stack([st, st])


def main():
    z = np.load(sys.argv[1])
    tr = z["train_truth"]
    keep = np.isfinite(tr).all(1)
    pool_fp, pool_pos = fill(z["train_rss"][keep]), tr[keep]
    Fv, Ft = feats(z, "val", pool_fp, pool_pos), feats(z, "test", pool_fp, pool_pos)
    ev, et = z["val_ens_pos"] - z["val_truth"], z["test_ens_pos"] - z["test_truth"]
    rt = np.linalg.norm(et, axis=1)
    print(f"{sys.argv[1]} test med/mean {np.median(rt):.0f}/{rt.mean():.0f}; rank corr |e|~ensemble sigma test "
          f"{rank_corr(rt, np.sqrt(z['test_ens_sig'].prod(1))):.2f}")
    cal = fit_sigma_scale(ev, z["val_ens_sig"])
    c = coverage(et, z["test_ens_sig"], cal)
    print(f"  today's (ensemble sigma, val power)    p={cal.power:g} val {100*cal.inside_1sigma_after:.0f}/"
          f"{100*cal.inside_2sigma_after:.0f} test {c[0]:.1f}/{c[1]:.1f} {ok(c)}; band val {band(ev, z['val_ens_sig']):.0f} "
          f"test {band(et, z['test_ens_sig']):.0f}")
    for label, alpha in (("l2 log|e|", None), ("quantile 0.865", 0.865), ("quantile 0.6", 0.6),
                         ("quantile 0.5", 0.5), ("quantile 0.4", 0.4), ("quantile 0.3", 0.3)):
        for fold_seed in (0, 1, 2):
            so, st = learned(Fv, ev, Ft, PARAMS, fold_seed, alpha)
            for method in ("power", "coverage"):
                cal = fit_sigma_scale(ev, so, method=method)
                c = coverage(et, st, cal)
                print(f"  errmodel {label:15s} folds seed {fold_seed} {method:8s} p={cal.power:g} val oof "
                      f"{100*cal.inside_1sigma_after:.0f}/{100*cal.inside_2sigma_after:.0f} test {c[0]:.1f}/{c[1]:.1f} "
                      f"{ok(c)}  rank corr test {rank_corr(rt, st[:, 0]):.2f} band val oof {band(ev, so):.0f} "
                      f"test {band(et, st):.0f}", flush=True)


if __name__ == "__main__":
    main()
