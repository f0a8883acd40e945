"""How much choose.py's rule gains from choosing on the same val it reports (brief B16): the rule applied on
4/5 of val (answers, σ and the σ map), the coverage scored on the 5th; 5 folds, 2 seeds. Val only.

Usage: python choose_folds.py WORKSPACE DUMP.npz
"""
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hedge  # noqa: E402  (reads WORKSPACE DUMP.npz from argv)
from radius import radius  # noqa: E402
from study import Z, err  # noqa: E402
from rflocal_core.metrics.stats import calibration  # noqa: E402
from rflocal_core.train.calibrate import fit_sigma_scale, size_factor  # noqa: E402

truth = Z["val_truth"]
rows = []
for T, share in itertools.product((2.0, 3.0, 4.0), (0.24, 0.4, 0.6)):
    est = hedge.answer("val", T, share, 0)[0]
    for rshare, alpha, floor in itertools.product((0.6, 1.0), (0.7, 0.8, 0.9), (1.0, 30.0)):
        sig = np.repeat(radius("val", est, 1.0, rshare, alpha, floor)[:, None], 2, 1) / 2
        rows.append(((T, share, rshare, alpha, floor), est, sig))


def scored(est, sig, fit_rows, score_rows):
    cal = fit_sigma_scale(est[fit_rows] - truth[fit_rows], sig[fit_rows])
    s = sig[score_rows] * cal.scale * size_factor(sig[score_rows], cal.power, cal.ref_m)
    c = calibration(est[score_rows] - truth[score_rows], s)
    return c.inside_1sigma, c.inside_2sigma


for seed in (0, 1):
    fold = np.random.default_rng(seed).permutation(len(truth)) % 5
    inside = np.zeros((len(truth), 2), bool)
    picks = []
    for f in range(5):
        fit_rows, held = fold != f, fold == f
        ok = []
        for key, est, sig in rows:
            v = scored(est, sig, fit_rows, fit_rows)
            e = err("val", est)[fit_rows]
            gap = max(abs(v[0] - 0.393), abs(v[1] - 0.865))
            if gap <= 0.05 and np.median(e) <= 120:
                ok.append((e.mean(), gap, key, est, sig))
        mean, gap, key, est, sig = min(ok, key=lambda r: r[:2])
        picks.append(key)
        cal = fit_sigma_scale(est[fit_rows] - truth[fit_rows], sig[fit_rows])
        s = sig * cal.scale * size_factor(sig, cal.power, cal.ref_m)
        d2 = (((est - truth) / s) ** 2).sum(1)
        inside[held, 0], inside[held, 1] = d2[held] <= 1, d2[held] <= 4
    print(f"seed {seed}: held-out val 1σ {inside[:, 0].mean():.3f} 2σ {inside[:, 1].mean():.3f}; picks {picks}",
          flush=True)
