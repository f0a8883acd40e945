"""Which per-message signals rank the ensemble's errors (brief B16): Spearman on val of |error| and of the
normalized error |error| / σ (the run's σ map) with candidate σ features. Usage: python feats.py DUMP.npz"""
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import Z, err, member_spread, own_sigma, post_spread  # noqa: E402
from rflocal_core.train.calibrate import size_factor  # noqa: E402

NAMES = ["kgm", "lgbm", "fpnet_knn", "fpnet", "kmap", "kmap100"]


def features(sp):
    a = Z[f"{sp}_answer"]
    pos, w = Z[f"{sp}_post_pos"], Z[f"{sp}_post_w"].astype(np.float64)
    d = np.hypot(*(pos - a[:, None]).transpose(2, 0, 1))
    mp = Z[f"{sp}_member_pos"]
    dm = np.hypot(*(mp - a[None]).transpose(2, 0, 1))  # [M, N]
    g = lambda s: np.sqrt(s[:, 0] * s[:, 1])  # noqa: E731
    f = {"run σ": g(Z[f"{sp}_sigma"]), "members spread": g(member_spread(sp, a) + 1e-3),
         "own σ": g(own_sigma(sp)), "post spread T1": g(post_spread(sp, a)),
         "post spread T3": g(post_spread(sp, a, 3.0)),
         "heard": Z[f"{sp}_heard"].astype(float), "snap move": np.hypot(*(a - Z[f"{sp}_centre"]).T),
         "max member dist": dm.max(0), "2nd member dist": np.sort(dm, 0)[-2], "median member dist": np.median(dm, 0),
         "top post w": w.max(1), "eff candidates": 1 / (w**2).sum(1)}
    for r in (50, 100, 300, 1000):
        f[f"1 - mass within {r} m"] = 1 - (w * (d <= r)).sum(1)
    for i, n in enumerate(NAMES):
        f[f"dist {n}"] = dm[i]
    return f


if __name__ == "__main__":
    sc, pw, ref = Z["sigma_map"]
    s = Z["val_sigma"] * sc * size_factor(Z["val_sigma"], pw, ref)
    e = err("val", Z["val_answer"])
    r = e / np.sqrt(s[:, 0] * s[:, 1])
    big = e > 1000
    for k, v in features("val").items():
        print(f"{k:24s} rho(|e|) {spearmanr(v, e)[0]:+.2f}  rho(|e|/σ) {spearmanr(v, r)[0]:+.2f}  "
              f"median on >1 km {np.median(v[big]):9.3f} / rest {np.median(v[~big]):9.3f}")
