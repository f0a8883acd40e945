"""Duke: choose the radio-map kNN's options on out-of-block folds of train+val instead of val (brief Z6).

Duke's val squares are few (3-8) and unlike test (split 0: 60% of val hears one cell, 24% of test), so
val picks poorly (radiomap_study.py: its best test configurations rank low on val). Here every grid
configuration, weight 0 (plain softmin kNN, tau 1 dB) included, is scored on 5 folds of 200 m squares
of train+val (map and fingerprints of the other folds), the lowest (median + mean) / 2 over all
out-of-fold errors wins, and that configuration is fitted on train and tested once.

Usage: cd WORKTREE && PYTHONPATH=$PWD nice -n 10 python bench/duke_z6/oof_select.py WORKSPACE [seeds...]
"""
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np
import radiomap_study as rs  # sets the thread and workspace environment from sys.argv[1]

from rflocal_core.models import KNNFingerprint, load_inputs
from rflocal_core.models.baselines import KNNConfig
from rflocal_core.models.radiomap import fit_radio_map, radio_map_loglik

BANDWIDTHS = (50.0, 100.0, 200.0)
SIGMAS = (4.0, 8.0)
WEIGHTS = (0.0, 0.25, 1.0, 4.0)
KS = (5, 15, 30)
FLOOR = -140.0
FOLDS = 5
TAU = 1.0  # plain kNN's tau on all three splits (softmin_min_db)


def folds_of(pos, block_m=200.0, k=FOLDS, seed=0):
    blk = np.floor(pos / block_m).astype(np.int64)
    _, inv = np.unique(blk[:, 0] * 1_000_003 + blk[:, 1], return_inverse=True)
    return (np.random.default_rng(seed).permutation(inv.max() + 1) % k)[inv]


def oof_errors(raw, pos, fold):
    """Out-of-fold errors [n_cfg, N] of every grid configuration, and the configurations."""
    cfgs = [(h, s, w, k, est) for h, s, w, k, est in itertools.product(BANDWIDTHS, SIGMAS, WEIGHTS, KS, rs.ESTIMATES)
            if not (w == 0.0 and (h, s) != (BANDWIDTHS[0], SIGMAS[0]))]  # weight 0: one copy
    index = {c: i for i, c in enumerate(cfgs)}
    out = np.full((len(cfgs), len(pos)), np.nan)
    feats = np.where(np.isfinite(raw), raw, FLOOR)
    nan_xy = np.full((raw.shape[1], 2), np.nan)
    for f in range(FOLDS):
        te, tr = fold == f, fold != f
        D = rs.fp_dist(feats[te], feats[tr])
        for h in BANDWIDTHS:
            m = fit_radio_map(pos[tr], raw[tr], nan_xy, bandwidth_m=h)
            for s in SIGMAS:
                ll = radio_map_loglik(raw[te], m["p_heard"], m["mean_dbm"], s)
                ll -= ll.max(1, keepdims=True)
                for w in WEIGHTS:
                    if w == 0.0 and (h, s) != (BANDWIDTHS[0], SIGMAS[0]):
                        continue
                    top = rs.best(D - TAU * w * ll, max(KS))
                    for k in KS:
                        ev = rs.estimates(top, pos[tr], k, TAU)
                        for est in rs.ESTIMATES:
                            out[index[(h, s, w, k, est)], te] = rs.errs(ev[est], pos[te])
        print(f"    fold {f} done", flush=True)
    return out, cfgs


def main():
    for seed in [int(s) for s in sys.argv[2:]] or [0, 1, 2]:
        t0 = time.time()
        ds = rs.ensure_dataset(rs.SETS["duke"], rs.DATA, seed)["dataset"]
        tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
        base = KNNFingerprint().fit(tr, va)
        ebt = rs.errs(base.predict(te).position_m, te.truth_m)
        med0, ht = float(np.median(ebt)), rs.heard(te)
        print(f"{ds} knn (val-tuned) test {med0:.0f}/{ebt.mean():.0f} goal <= {0.85 * med0:.0f}", flush=True)
        raw = np.r_[tr.rss_dbm[:, : tr.fixed_slots], va.rss_dbm[:, : va.fixed_slots]]
        pos = np.r_[tr.truth_m, va.truth_m]
        E, cfgs = oof_errors(raw, pos, folds_of(pos, seed=seed))
        score = 0.5 * (np.median(E, 1) + E.mean(1))
        order = np.argsort(score)
        for i in order[:3]:
            print(f"    oof {np.median(E[i]):.0f}/{E[i].mean():.0f} {cfgs[i]}")
        for label, i in (("oof choice", order[0]),
                         ("oof choice among weight 0", min((j for j in order if cfgs[j][2] == 0.0), key=score.__getitem__))):
            h, s, w, k, est = cfgs[i]
            cfg = {"k": k, "floor_dbm": FLOOR, "estimate": est}
            if w > 0:
                cfg.update(radio_map_m=h, radio_map_sigma_db=s, radio_map_weight=w)
            m = KNNFingerprint(KNNConfig(**cfg)).fit(tr, None)
            e = rs.errs(m.predict(te).position_m, te.truth_m)
            print(f"  {label}: {cfg} -> test {np.median(e):.0f}/{e.mean():.0f} ratio {np.median(e) / med0:.2f} "
                  f"[{rs.groups(e, ht)}]", flush=True)
        print(f"  seed {seed} took {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
