"""A learned error model as sigma on Duke's area splits (brief Z4, issue 15; study, not the core).

For each split seed, a baseline (``knn`` by default) is fitted as ``train`` does, and its
out-of-block predictions over 200 m squares of train + val (5 folds, what ``--calibration blocks``
uses) are collected together with features of each sample that any fingerprint model has: cells
heard, strongest RSS, RSS spread, the model's own sigma, fingerprint distances to the fold's
training pool (nearest, 5th, 20th) and the spatial spread of the nearest fingerprints' positions.
A LightGBM regressor of log(|error| + 10 m) is trained out-of-fold (fold f predicted by a booster
of the other folds), the resulting sigma gets its scale (+ power) from the worst-fold fit, and a
booster on every out-of-fold row gives test's sigma. Test is reported, never used to fit.

Usage: PYTHONPATH=$PWD python bench/calib3/errmodel_duke.py WORKSPACE [--model knn] [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

FLOOR = -140.0
DATA = Path("/work/shared/data/real")
PARAMS = {"objective": "l2", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50,
          "feature_fraction": 0.9, "verbose": -1, "num_threads": 1, "seed": 0}
ROUNDS = 200


def fp(x):
    f = x.rss_dbm[:, : x.fixed_slots]
    return np.where(np.isfinite(f), f, FLOOR)


def neighbour_feats(q, pool_fp, pool_pos, ks=(1, 5, 20)):
    """Per query: fingerprint distances to the k-th nearest pool fingerprints, spatial spread of the 10/40 nearest."""
    out = np.zeros((len(q), len(ks) + 3))
    for a in range(0, len(q), 500):
        d = np.sqrt(((q[a:a + 500, None, :] - pool_fp[None]) ** 2).sum(-1))
        idx = np.argpartition(d, 40, axis=1)[:, :40]
        dd = np.take_along_axis(d, idx, 1)
        o = np.argsort(dd, 1)
        idx, dd = np.take_along_axis(idx, o, 1), np.take_along_axis(dd, o, 1)
        p = pool_pos[idx]
        for j, k in enumerate(ks):
            out[a:a + 500, j] = dd[:, k - 1]
        for j, k in enumerate((10, 40)):
            c = p[:, :k].mean(1, keepdims=True)
            out[a:a + 500, len(ks) + j] = np.log1p(np.sqrt(((p[:, :k] - c) ** 2).sum(-1).mean(1)))
        out[a:a + 500, -1] = (d <= dd[:, :1] + 0.5).sum(1)  # ties with the nearest (ambiguity)
    return out


def signal_feats(x):
    r = x.rss_dbm[:, : x.fixed_slots]
    heard = np.isfinite(r).sum(1)
    srt = -np.sort(-np.where(np.isfinite(r), r, -np.inf), 1)
    strongest = np.where(heard > 0, srt[:, 0], FLOOR)
    second = np.where(heard > 1, srt[:, 1], FLOOR) if r.shape[1] > 1 else np.full(len(r), FLOOR)
    with np.errstate(all="ignore"):
        spread = np.where(heard > 1, np.nanstd(r, 1), 0.0)
    return np.column_stack([heard, strongest, strongest - second, spread])


def sigma_feats(sig):
    g = np.sqrt(np.abs(sig[:, 0] * sig[:, 1]))
    return np.column_stack([np.log(g + 1e-3), np.log((sig[:, 0] + 1e-3) / (sig[:, 1] + 1e-3))])


def make_model(name):
    from rflocal_core.models import KNNFingerprint
    from rflocal_core.models.trees import KNNLightGBM, LightGBMFingerprint

    return {"knn": KNNFingerprint, "lgbm": LightGBMFingerprint, "knn_lgbm": KNNLightGBM}[name]()


def oof_rows(name, tr, va, seed):
    """Out-of-block errors, sigmas, folds and features over train + val (5 folds of 200 m squares)."""
    from rflocal_core.train.calibrate import block_folds

    fold = block_folds(np.r_[tr.truth_m, va.truth_m], block_m=200.0, folds=5, seed=seed)
    ft, fv = fold[: len(tr)], fold[len(tr):]
    n = len(fold)
    err, sig = np.full((n, 2), np.nan), np.full((n, 2), np.nan)
    nb = np.full((n, 6), np.nan)
    ftr_all = fp(tr)
    for f in range(int(fold.max()) + 1):
        keep = ft != f
        tune = va.subset(fv != f) if (fv != f).any() else va
        m = make_model(name).fit(tr.subset(keep), tune)
        for part, held, off in ((tr, ft == f, 0), (va, fv == f, len(tr))):
            if held.any():
                x = part.subset(held)
                p = m.predict(x)
                rows = np.flatnonzero(held) + off
                err[rows], sig[rows] = p.position_m - x.truth_m, p.sigma_m
                nb[rows] = neighbour_feats(fp(x), ftr_all[keep], tr.truth_m[keep])
    sf = np.r_[signal_feats(tr), signal_feats(va)]
    return err, sig, fold, np.column_stack([sf, sigma_feats(sig), nb])


def train_booster(F, y, params):
    import lightgbm as lgb

    return lgb.train(params, lgb.Dataset(F, y), num_boost_round=ROUNDS)


def learned_sigma(F_oof, e_oof, fold, F_test, params, sig_oof, sig_test, shape):
    """Out-of-fold learned sigma [N, 2] for the fit rows and the test sigma from a booster on all rows."""
    r = np.linalg.norm(e_oof, axis=1)
    y = np.log(r + 10.0) if params["objective"] == "l2" else r
    s_oof = np.full(len(F_oof), np.nan)
    for f in np.unique(fold):
        b = train_booster(F_oof[fold != f], y[fold != f], params)
        s_oof[fold == f] = b.predict(F_oof[fold == f])
    s_test = train_booster(F_oof, y, params).predict(F_test)
    if params["objective"] == "l2":
        s_oof, s_test = np.exp(s_oof), np.exp(s_test)
    s_oof, s_test = np.maximum(s_oof, 1.0), np.maximum(s_test, 1.0)

    def out(s, sig):
        if not shape:
            return np.column_stack([s, s])
        g = np.sqrt(np.abs(sig[:, 0] * sig[:, 1])) + 1e-6
        return sig * (s / g)[:, None]
    return out(s_oof, sig_oof), out(s_test, sig_test)


def coverage(e, s, cal):
    from rflocal_core.train.calibrate import size_factor

    q = s * cal.scale * size_factor(s, cal.power, cal.ref_m)
    d2 = ((e / q) ** 2).sum(1)
    return 100 * np.mean(d2 <= 1), 100 * np.mean(d2 <= 4)


def fold_gaps(e, s, cal, fold):
    """(worst fold's larger gap in points, per-fold 1σ range, 2σ range) of a fitted map on the fit rows."""
    cs = np.array([coverage(e[fold == f], s[fold == f], cal) for f in np.unique(fold)])
    worst = np.max(np.maximum(np.abs(cs[:, 0] - 39.3), np.abs(cs[:, 1] - 86.5)))
    return worst, (cs[:, 0].min(), cs[:, 0].max()), (cs[:, 1].min(), cs[:, 1].max())


def oof_quantile(F_oof, r, fold, F_test, alpha):
    params = {**PARAMS, "objective": "quantile", "alpha": alpha}
    q = np.full(len(F_oof), np.nan)
    for f in np.unique(fold):
        q[fold == f] = train_booster(F_oof[fold != f], r[fold != f], params).predict(F_oof[fold == f])
    return np.maximum(q, 1.0), np.maximum(train_booster(F_oof, r, params).predict(F_test), 1.0)


def blend_rows(F_oof, e_oof, fold, F_test):
    """sigma = q39^(1-a) (q86/2)^a, a and the scale chosen by the worst fold (out-of-fold quantile boosters)."""
    from rflocal_core.train.calibrate import fit_sigma_folds

    r = np.linalg.norm(e_oof, axis=1)
    q1o, q1t = oof_quantile(F_oof, r, fold, F_test, 0.393)
    q2o, q2t = oof_quantile(F_oof, r, fold, F_test, 0.865)
    best = None
    for a in np.linspace(0, 1, 11):
        so = q1o ** (1 - a) * (q2o / 2) ** a
        cal = fit_sigma_folds(e_oof, np.column_stack([so, so]), fold)
        w = fold_gaps(e_oof, np.column_stack([so, so]), cal, fold)[0]
        if best is None or w < best[0]:
            best = (w, a, cal)
    _, a, cal = best
    st = q1t ** (1 - a) * (q2t / 2) ** a
    so = q1o ** (1 - a) * (q2o / 2) ** a
    return a, cal, np.column_stack([so, so]), np.column_stack([st, st])


def ok(c):
    return "OK" if abs(c[0] - 39.3) <= 10 and abs(c[1] - 86.5) <= 10 else "--"


def heard_cov(e, s, cal, h):
    parts = []
    for g in (1, 2, 3):
        sel = np.minimum(h, 3) == g
        if sel.any():
            c = coverage(e[sel], s[sel], cal)
            parts.append(f"h{g}:{c[0]:.0f}/{c[1]:.0f}")
    return " ".join(parts)


def rank_corr(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def run_split(args, seed):
    from bench.bench_real import SETS, ensure_dataset
    from rflocal_core.models import load_inputs
    from rflocal_core.train.calibrate import fit_sigma_folds, fit_sigma_scale

    t0 = time.perf_counter()
    ds = ensure_dataset(SETS["duke"], DATA, seed)["dataset"]
    tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
    m = make_model(args.model).fit(tr, va)
    pv, pt = m.predict(va), m.predict(te)
    et, st = pt.position_m - te.truth_m, pt.sigma_m
    ev, sv = pv.position_m - va.truth_m, pv.sigma_m
    e_oof, s_oof, fold, F_oof = oof_rows(args.model, tr, va, seed)
    good = np.isfinite(e_oof).all(1) & np.isfinite(s_oof).all(1) & (s_oof > 0).all(1)
    e_oof, s_oof, fold, F_oof = e_oof[good], s_oof[good], fold[good], F_oof[good]
    F_test = np.column_stack([signal_feats(te), sigma_feats(st), neighbour_feats(fp(te), fp(tr), tr.truth_m)])
    ht = signal_feats(te)[:, 0].astype(int)
    rt = np.linalg.norm(et, axis=1)
    print(f"{ds} {args.model} test med/mean {np.median(rt):.0f}/{rt.mean():.0f} n_oof {len(e_oof)} "
          f"rank corr |e|~sigma test {rank_corr(rt, np.sqrt(st.prod(1))):.2f}", flush=True)
    rows, fitrows = {}, {}
    cal = fit_sigma_scale(ev, sv)
    rows["val power (today's val)"] = (st, cal)
    cal = fit_sigma_folds(e_oof, s_oof, fold)
    rows["blocks worst-fold (today's blocks)"] = (st, cal)
    fitrows["blocks worst-fold (today's blocks)"] = s_oof
    a, cal, so, stt = blend_rows(F_oof, e_oof, fold, F_test)
    rows[f"errmodel q39/q86 blend a={a:.1f}, worst-fold"] = (stt, cal)
    fitrows[f"errmodel q39/q86 blend a={a:.1f}, worst-fold"] = so
    for label, params, shape in (("l2 log|e| iso", PARAMS, False), ("l2 log|e| shape", PARAMS, True),
                                 ("quantile 0.865 iso", {**PARAMS, "objective": "quantile", "alpha": 0.865}, False)):
        so, stt = learned_sigma(F_oof, e_oof, fold, F_test, params, s_oof, st, shape)
        print(f"  {label}: rank corr |e|~learned oof {rank_corr(np.linalg.norm(e_oof, axis=1), so[:, 0]):.2f} "
              f"test {rank_corr(rt, np.sqrt(stt.prod(1))):.2f}", flush=True)
        rows[f"errmodel {label}, worst-fold"] = (stt, fit_sigma_folds(e_oof, so, fold))
        fitrows[f"errmodel {label}, worst-fold"] = so
        rows[f"errmodel {label}, pooled power"] = (stt, fit_sigma_scale(e_oof, so))
        rows[f"errmodel {label}, pooled scale"] = (stt, fit_sigma_scale(e_oof, so, method="coverage"))
    for label, (s, c) in rows.items():
        cv = coverage(et, s, c)
        print(f"  {label:42s} s={c.scale:.3f} p={c.power:g} test {cv[0]:.0f}/{cv[1]:.0f} {ok(cv)}  "
              f"[{heard_cov(et, s, c, ht)}]", flush=True)
        if label in fitrows:
            w, r1, r2 = fold_gaps(e_oof, fitrows[label], c, fold)
            print(f"      oof folds: worst gap {w:.0f} points, 1σ {r1[0]:.0f}-{r1[1]:.0f}, 2σ {r2[0]:.0f}-{r2[1]:.0f}")
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("--model", default="knn")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    for seed in (int(s) for s in args.seeds.split(",")):
        run_split(args, seed)


if __name__ == "__main__":
    main()
