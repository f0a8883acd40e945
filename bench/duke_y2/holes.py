"""Duke area splits: how far each test position is from the nearest train+val position (a floor for any
estimate that lands on walked positions, as kNN's neighbours do), against kNN's error."""
import os
import sys

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
import numpy as np

from rflocal_core.models import KNNFingerprint, load_inputs

for seed in (0, 1, 2):
    ds = f"duke-b200-s{seed}"
    tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
    ref = np.r_[tr.truth_m, va.truth_m]
    d = np.array([np.min(np.linalg.norm(ref - p, axis=1)) for p in te.truth_m])
    e = np.linalg.norm(KNNFingerprint().fit(tr, va).predict(te).position_m - te.truth_m, axis=1)
    print(f"{ds}: test to nearest walked position median {np.median(d):.0f} m, mean {d.mean():.0f} m, "
          f"P90 {np.percentile(d, 90):.0f} m; kNN error median {np.median(e):.0f} m; "
          f"share of test with kNN error < 2x that distance {np.mean(e < 2 * d):.2f}")
