"""Where the radio-map posterior fails (brief B15): its mass near the truth by error size, and the best
candidate among the K best-scored (an oracle: how far a perfect ranking of the candidates would get).
Usage: python tail.py SCORES.npz   (val only)
"""
import sys
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import POS, Z, answer, err, posterior  # noqa: E402

lw, truth = Z["val_logw"], Z["val_truth"]
est, spread, _, _ = answer(lw, 1.0, 30, "gm")
e = err(est, "val")
print(f"val errors > 1 km: {(e > 1000).sum()} of {len(e)}, {e[e > 1000].sum() / e.sum():.0%} of the error sum; "
      f"> 500 m: {(e > 500).sum()}, {e[e > 500].sum() / e.sum():.0%}")
near, _ = cKDTree(POS).query(truth)
bands = ((0, 200), (200, 500), (500, 1000), (1000, np.inf))
for T in (1.0, 3.0):
    nn, w = posterior(lw, T, lw.shape[1])
    d = np.hypot(*(POS[nn] - truth[:, None]).transpose(2, 0, 1))
    mass = (w * (d < 200)).sum(1)
    for lo, hi in bands:
        s = (e >= lo) & (e < hi)
        print(f"T {T} error {lo}-{hi} m (n {s.sum()}): posterior mass within 200 m of the truth median {np.median(mass[s]):.3f}"
              f" mean {mass[s].mean():.3f}; spread (top 30) median {np.median(np.hypot(*spread[s].T)):.0f} m; "
              f"truth to the nearest training position median {np.median(near[s]):.0f} m")
for K in (30, 300):
    nn, _ = posterior(lw, 1.0, K)
    best = np.hypot(*(POS[nn] - truth[:, None]).transpose(2, 0, 1)).min(1)
    print(f"oracle: the best of the {K} best-scored positions: median {np.median(best):.0f} m, mean {best.mean():.0f} m")
