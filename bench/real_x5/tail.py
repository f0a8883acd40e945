"""Offline tail-cutting study on dumped member predictions (val: choose, test: report)."""
import json
import sys

import numpy as np

from rflocal_core.models.baselines import knn_criterion
from rflocal_core.models.ensemble import combine_positions, simplex_grid


def errs(p, t):
    return np.hypot(*(p - t).T)

def fig(e):
    return [round(float(np.median(e)), 1), round(float(e.mean()), 1), round(float(np.percentile(e, 95)), 0)]

def nearest_train(p, train):
    # distance from each p to the nearest training position, and that position
    out_d = np.empty(len(p)); out_i = np.empty(len(p), int)
    for s in range(0, len(p), 2048):
        d = np.hypot(p[s:s+2048, None, 0] - train[None, :, 0], p[s:s+2048, None, 1] - train[None, :, 1])
        out_i[s:s+2048] = d.argmin(1); out_d[s:s+2048] = d.min(1)
    return out_d, out_i

def knn_smooth(p, train, k):
    out = np.empty_like(p)
    for s in range(0, len(p), 2048):
        d = np.hypot(p[s:s+2048, None, 0] - train[None, :, 0], p[s:s+2048, None, 1] - train[None, :, 1])
        nn = np.argpartition(d, k, 1)[:, :k]
        out[s:s+2048] = train[nn].mean(1)
    return out

def main(path):
    z = np.load(path)
    names = list(z["members"]); w = z["weights"]
    tv, tt, tr = z["val_truth"], z["test_truth"], z["train_truth"]
    tr = tr[np.isfinite(tr).all(1)]
    pv, pt = z["val_pos"], z["test_pos"]
    cv, ct = z["val_ens_pos"], z["test_ens_pos"]
    base_v, base_t = errs(cv, tv), errs(ct, tt)
    out = {"members": dict(zip(names, [round(float(x), 2) for x in w])), "ensemble": {"val": fig(base_v), "test": fig(base_t)}}
    for i, n in enumerate(names):
        out[f"member {n}"] = {"val": fig(errs(pv[i], tv)), "test": fig(errs(pt[i], tt))}
    # 1. gate on disagreement: spread = weighted mean distance of members to centre
    def spread(P, c):
        return (w[:, None] * np.hypot(*(P - c[None]).transpose(2, 0, 1))).sum(0)
    sv, st = spread(pv, cv), spread(pt, ct)
    eq = np.full(len(names), 1 / len(names))
    alts = {"mean_w": lambda P: combine_positions(P, w, "mean"), "median_eq": lambda P: combine_positions(P, eq, "median"),
            "mean_eq": lambda P: combine_positions(P, eq, "mean")}
    for an, f in alts.items():
        av, at = f(pv), f(pt)
        best = None
        for q in [0, 50, 60, 70, 80, 90, 95, 101]:
            thr = np.percentile(sv, q) if q <= 100 else np.inf
            for lam in [0.25, 0.5, 0.75, 1.0]:
                gv = np.where((sv > thr)[:, None], cv + lam * (av - cv), cv)
                sc = knn_criterion(errs(gv, tv), "median_mean")
                if best is None or sc < best[0]:
                    best = (sc, thr, lam, q)
        _, thr, lam, q = best
        gt = np.where((st > thr)[:, None], ct + lam * (at - ct), ct)
        out[f"gate spread -> {an}"] = {"q": q, "lam": lam, "test": fig(errs(gt, tt)), "val_score": round(best[0], 1)}
    # 2. restrict to training positions: pull predictions farther than R from any training position
    dv, iv = nearest_train(cv, tr); dt, it = nearest_train(ct, tr)
    out["dist to nearest train pos (test) p50/p95/max"] = [round(float(np.percentile(dt, q)), 1) for q in (50, 95, 100)]
    best = None
    for R in [10, 25, 50, 100, 200, 400, 1e9]:
        for lam in [0.5, 1.0]:
            pulled = np.where((dv > R)[:, None], cv + lam * (tr[iv] + (cv - tr[iv]) * (R / np.maximum(dv, 1e-9))[:, None] - cv), cv)
            sc = knn_criterion(errs(pulled, tv), "median_mean")
            if best is None or sc < best[0]:
                best = (sc, R, lam)
    _, R, lam = best
    pt2 = np.where((dt > R)[:, None], ct + lam * (tr[it] + (ct - tr[it]) * (R / np.maximum(dt, 1e-9))[:, None] - ct), ct)
    out["hull pull"] = {"R": R, "lam": lam, "test": fig(errs(pt2, tt))}
    # 3. density smoothing: mean of the K training positions nearest to the prediction
    best = None
    for K in [1, 3, 10, 30]:
        for lam in [0.25, 0.5, 1.0]:
            sv2 = cv + lam * (knn_smooth(cv, tr, K) - cv)
            sc = knn_criterion(errs(sv2, tv), "median_mean")
            if best is None or sc < best[0]:
                best = (sc, K, lam)
    _, K, lam = best
    out["density smooth"] = {"K": K, "lam": lam, "test": fig(errs(ct + lam * (knn_smooth(ct, tr, K) - ct), tt))}
    # 4. weights per number of nodes heard (val -> test)
    hv = np.isfinite(z["val_rss"]).sum(1); ht = np.isfinite(z["test_rss"]).sum(1)
    groups = [(3, 3), (4, 4), (5, 99)] if hv.min() >= 3 else [(1, 1), (2, 2), (3, 99)]
    gt = ct.copy(); table = {}
    grid = simplex_grid(len(names), 0.1)
    for lo, hi in groups:
        mv, mt = (hv >= lo) & (hv <= hi), (ht >= lo) & (ht <= hi)
        if mv.sum() < 30:
            continue
        scores = [knn_criterion(errs(combine_positions(pv[:, mv], g, "median"), tv[mv]), "median_mean") for g in grid]
        g = grid[int(np.argmin(scores))]
        gt[mt] = combine_positions(pt[:, mt], g, "median")
        table[f"{lo}-{hi}"] = {"val_n": int(mv.sum()), "test_n": int(mt.sum()), "w": g.round(2).tolist(),
                               "test_before": fig(base_t[mt]), "test_after": fig(errs(gt[mt], tt[mt]))}
    out["weights per heard"] = {"groups": table, "test": fig(errs(gt, tt))}
    # error by number heard
    out["ens test by heard"] = {int(h): [int((ht == h).sum()), *fig(base_t[ht == h])] for h in np.unique(ht) if (ht == h).sum() > 20}
    for k, v in out.items():
        print(k, json.dumps(v))

if __name__ == "__main__":
    for p in sys.argv[1:]:
        print("==", p); main(p)
