"""Duke kNN: the blocks calibration (worst fold) with 3, 5 or 10 folds of 200 m squares; test coverage."""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
import numpy as np

from rflocal_core.models import KNNFingerprint, load_inputs
from rflocal_core.train.calibrate import calibrate_blocks, size_factor

for seed in (0, 1, 2):
    ds = f"duke-b200-s{seed}"
    tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
    m = KNNFingerprint().fit(tr, va)
    pt = m.predict(te)
    out = [ds]
    for folds in [int(f) for f in sys.argv[2:]]:
        cal = calibrate_blocks(KNNFingerprint, tr, va, block_m=200.0, folds=folds, seed=seed)
        s = pt.sigma_m * cal.scale * size_factor(pt.sigma_m, cal.power, cal.ref_m)
        d2 = (((pt.position_m - te.truth_m) / s) ** 2).sum(1)
        c = (100 * np.mean(d2 <= 1), 100 * np.mean(d2 <= 4))
        ok = abs(c[0] - 39.3) <= 10 and abs(c[1] - 86.5) <= 10
        out.append(f"folds={folds} p={cal.power} s={cal.scale:.2f}: {c[0]:.0f}/{c[1]:.0f}{' OK' if ok else ''}")
    print(" | ".join(out), flush=True)
