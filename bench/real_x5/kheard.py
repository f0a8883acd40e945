"""k of kNN chosen per number of nodes heard (val), against one k: test figures."""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
from rflocal_core.models import KNNFingerprint, load_inputs
from rflocal_core.models.baselines import knn_criterion

ds = sys.argv[2]
tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
m = KNNFingerprint({}).fit(tr, va)
print("chosen", m._state["k"], m._state["floor_dbm"])
ks = (1, 3, 5, 7, 11, 15, 21, 31)
def run(x):
    return {k: p.position_m for k, p in m._predict_ks(x, ks)}
pv, pt = run(va), run(te)
e = lambda p, x: np.hypot(*(p - x.truth_m).T)
hv = np.isfinite(va.rss_dbm[:, :va.fixed_slots]).sum(1); ht = np.isfinite(te.rss_dbm[:, :te.fixed_slots]).sum(1)
groups = [(3, 3), (4, 4), (5, 5), (6, 99)] if hv.min() >= 3 else [(1, 1), (2, 2), (3, 99)]
k0 = m._state["k"]
out = pt[k0].copy()
for lo, hi in groups:
    mv, mt = (hv >= lo) & (hv <= hi), (ht >= lo) & (ht <= hi)
    sc = {k: knn_criterion(e(pv[k][mv], va.subset(mv) if False else va)[mv] if False else np.hypot(*(pv[k][mv] - va.truth_m[mv]).T), "median_mean") for k in ks}
    kb = min(sc, key=sc.get)
    out[mt] = pt[kb][mt]
    et = {k: np.hypot(*(pt[k][mt] - te.truth_m[mt]).T) for k in ks}
    print(f"heard {lo}-{hi}: val n {mv.sum()} test n {mt.sum()} k chosen {kb}; test median by k",
          {k: round(float(np.median(v)), 0) for k, v in et.items()}, "mean by k", {k: round(float(v.mean()), 0) for k, v in et.items()})
for name, p in (("one k", pt[k0]), ("k per heard", out)):
    er = np.hypot(*(p - te.truth_m).T)
    print(name, round(float(np.median(er)), 1), round(float(er.mean()), 1))
