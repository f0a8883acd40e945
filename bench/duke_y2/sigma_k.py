"""Duke: kNN position with its own k, sigma from the spread of K neighbours (K > k); calibrated on blocks."""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
from pathlib import Path

import numpy as np

from bench.bench_real import SETS, ensure_dataset
from rflocal_core.models import KNNFingerprint, load_inputs
from rflocal_core.train.calibrate import fit_sigma_scale, out_of_block, size_factor

KS = (15, 40, 100)
for seed in [int(s) for s in sys.argv[2:]] or [0, 1, 2]:
    ds = ensure_dataset(SETS["duke"], Path("/work/shared/data/real"), seed)["dataset"]
    tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
    m = KNNFingerprint().fit(tr, va)
    k, floor = int(m.state_dict()["k"]), float(m.state_dict()["floor_dbm"])
    pt = m.predict(te)
    et = pt.position_m - te.truth_m
    eo, so0, fold = out_of_block(lambda c={"k": k, "floor_dbm": floor}: KNNFingerprint(c), tr, va, block_m=200.0, folds=5, seed=seed)
    line = [f"{ds} k={k}"]
    for big in (k, *KS):
        cfg = {"k": big, "floor_dbm": floor}
        if big == k:
            so, st = so0, pt.sigma_m
        else:
            _, so, _ = out_of_block(lambda c=cfg: KNNFingerprint(c), tr, va, block_m=200.0, folds=5, seed=seed)
            st = KNNFingerprint(cfg).fit(tr).predict(te).sigma_m
        cal = fit_sigma_scale(eo, so)
        s = st * cal.scale * size_factor(st, cal.power, cal.ref_m)
        d2 = ((et / s) ** 2).sum(1)
        c = (100 * np.mean(d2 <= 1), 100 * np.mean(d2 <= 4))
        ok = abs(c[0] - 39.3) <= 10 and abs(c[1] - 86.5) <= 10
        r = np.linalg.norm(et, axis=1)
        g = np.sqrt(np.abs(st.prod(1)))
        corr = np.corrcoef(np.argsort(np.argsort(r)), np.argsort(np.argsort(g)))[0, 1]
        line.append(f"K={big} p={cal.power} corr={corr:.2f} test {c[0]:.0f}/{c[1]:.0f}{' OK' if ok else ''}")
    print(" | ".join(line), flush=True)
