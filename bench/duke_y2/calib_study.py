"""Duke: sigma calibration fitted on val vs on out-of-block predictions of train+val (brief Y2, study).

Usage: PYTHONPATH=$PWD python bench/duke_y2/calib_study.py WORKSPACE [splits...]
"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from pathlib import Path

from bench.bench_real import SETS, ensure_dataset
from rflocal_core.metrics import calibration
from rflocal_core.models import KNNFingerprint, load_inputs
from rflocal_core.train.calibrate import fit_sigma_scale, scale_sigma

DATA = Path("/work/shared/data/real")


def folds_of(pos, block_m, k, seed):
    blk = np.floor(pos / block_m).astype(np.int64)
    key = blk[:, 0] * 1_000_003 + blk[:, 1]
    ub, inv = np.unique(key, return_inverse=True)
    rng = np.random.default_rng(seed)
    f = rng.permutation(len(ub)) % k
    return f[inv]


def oof(tr, va, block_m=200.0, k=5, seed=0):
    allpos = np.r_[tr.truth_m, va.truth_m]
    fold = folds_of(allpos, block_m, k, seed)
    ft, fv = fold[: len(tr)], fold[len(tr):]
    pos = np.full_like(allpos, np.nan); sig = np.full_like(allpos, np.nan)
    for f in range(k):
        vin = va.subset(fv != f) if (fv != f).any() else va
        m = KNNFingerprint().fit(tr.subset(ft != f), vin)
        for part, rows, off in ((tr, ft == f, 0), (va, fv == f, len(tr))):
            if rows.any():
                p = m.predict(part.subset(rows))
                idx = np.flatnonzero(rows) + off
                pos[idx] = p.position_m; sig[idx] = p.sigma_m
    return pos - allpos, sig, fold


def heard(x):
    return np.isfinite(x.rss_dbm[:, : x.fixed_slots]).sum(1)


def cov(pt, te, cal):
    q = scale_sigma(pt, cal.scale, power=cal.power, ref_m=cal.ref_m)
    c = calibration(q.position_m - te.truth_m, q.sigma_m)
    return 100 * c.inside_1sigma, 100 * c.inside_2sigma


for seed in [int(s) for s in sys.argv[2:]] or [0, 1, 2]:
    ds = ensure_dataset(SETS["duke"], DATA, seed)["dataset"]
    tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
    m = KNNFingerprint().fit(tr, va)
    pv, pt = m.predict(va), m.predict(te)
    et = np.linalg.norm(pt.position_m - te.truth_m, axis=1)
    print(ds, "k", m.state_dict()["k"], "floor", m.state_dict()["floor_dbm"], "test med/mean", round(np.median(et)), round(et.mean()))
    e_oof, s_oof, fold = oof(tr, va, seed=seed)
    eo = np.linalg.norm(e_oof, axis=1)
    print("  oof med/mean", round(np.nanmedian(eo)), round(np.nanmean(eo)), "val med", round(np.median(np.linalg.norm(pv.position_m - va.truth_m, axis=1))))
    for name, (e, s) in {"val": (pv.position_m - va.truth_m, pv.sigma_m), "oof": (e_oof, s_oof)}.items():
        for method in ("coverage", "power"):
            cal = fit_sigma_scale(e, s, method=method)
            print(f"  fit {name:4s} {method:8s} s={cal.scale:.3f} p={cal.power:g} test {cov(pt, te, cal)}")
    # heard-count split on test
    h = heard(te)
    for g in (1, 2, 3):
        sel = (h == g) if g < 3 else (h >= 3)
        print(f"  test heard {g}{'+' if g==3 else ''}: n={sel.sum()} med={np.median(et[sel]):.0f}")
    np.savez(f"/tmp/duke_oof_s{seed}.npz", e_oof=e_oof, s_oof=s_oof, fold=fold,
             h_oof=np.r_[heard(tr), heard(va)], et=pt.position_m - te.truth_m, st=pt.sigma_m, ht=h,
             ev=pv.position_m - va.truth_m, sv=pv.sigma_m, hv=heard(va))
