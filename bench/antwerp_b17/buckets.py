"""Weights per bucket of gateways heard (brief B17, task 3): stacking with one weight vector per bucket instead
of one for all, chosen on 4 folds of x_val's out-of-fold answers, scored on the 5th (oof.py's file). Val only.

Usage: python buckets.py OOF.npz
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.models.ensemble import combine_positions, simplex_grid  # noqa: E402

Z = dict(np.load(sys.argv[1]))
names, pos, truth, fold, heard = list(Z["names"]), Z["pos"], Z["truth"], Z["fold"], Z["heard"]
grid = simplex_grid(len(names), 0.05)
plain = np.stack([np.hypot(*(combine_positions(pos, w, "median") - truth).T) for w in grid])  # [G, N]
centre = combine_positions(pos, np.full(len(names), 1 / len(names)), "median")
spread = np.median(np.hypot(*(pos - centre[None]).transpose(2, 0, 1)), 0)  # the members' disagreement
for label, edges, key in (("one bucket", [np.inf], heard), ("heard 3 / 4 / 5-6 / 7+", [3, 4, 6, np.inf], heard),
                          ("spread quartiles (of all x_val)", list(np.quantile(spread, [0.25, 0.5, 0.75])) + [np.inf],
                           spread)):
    bucket = np.searchsorted(np.asarray(edges, dtype=float), key, side="left")
    e = np.zeros(len(truth))
    for f in range(fold.max() + 1):
        for b in np.unique(bucket):
            fit, held = (fold != f) & (bucket == b), (fold == f) & (bucket == b)
            g = int(np.argmin(plain[:, fit].mean(1)))
            e[held] = plain[g, held]
    print(f"{label}: held-out {np.median(e):.1f} / {e.mean():.1f} m", flush=True)
