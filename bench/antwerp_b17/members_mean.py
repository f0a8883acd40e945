"""The knn members' own options for the mean (brief B17, task 3): variants of kmap / kmap100 / kgm (k, the
estimate, the answer's temperature) out of fold on all of x_val, then the 3-member geometric median with the
best weights by mean. Val only (x_val, 5 folds as oof.py); no test.

Usage: python members_mean.py WORKSPACE RUN_ID OOF.npz
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import KNNFingerprint, load_inputs  # noqa: E402
from rflocal_core.models.ensemble import combine_positions, simplex_grid  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402

run = load_run(sys.argv[2])
Z = dict(np.load(sys.argv[3]))
ds = run.config["dataset"]
x = join_inputs(load_inputs(ds, "train"), load_inputs(ds, "val"))
fold, truth = Z["fold"], Z["truth"]
assert np.allclose(truth, x.truth_m)
st = run.model.state_dict()
VARIANTS = {"kmap": [{"estimate": "mean"}, {"k": 60}, {"k": 15}, {"estimate_temperature": 2.0}],
            "kmap100": [{"estimate": "mean"}, {"k": 120}], "kgm": [{"k": 30}, {"estimate": "mean"}]}
names = list(Z["names"])
base = Z["pos"]
grid = simplex_grid(3, 0.05)


def ensemble_mean(pos):
    errs = [np.hypot(*(combine_positions(pos, w, "median") - truth).T) for w in grid]
    g = int(np.argmin([e.mean() for e in errs]))
    return np.median(errs[g]), errs[g].mean(), grid[g]


m0 = ensemble_mean(base)
print(f"as the run: ensemble {m0[0]:.1f} / {m0[1]:.1f} m, weights {m0[2]}", flush=True)
for name, variants in VARIANTS.items():
    i, j = st["members"].index(name), names.index(name)
    frozen = KNNFingerprint.from_state((st.get("configs") or {}).get(name), st["states"][i]).frozen_config()
    for v in variants:
        pos = np.full((len(x), 2), np.nan)
        for f in range(fold.max() + 1):
            m = KNNFingerprint({**frozen, **v}).fit(x.subset(np.flatnonzero(fold != f)))
            held = np.flatnonzero(fold == f)
            pos[held] = m.predict(x.subset(held)).position_m
        e = np.hypot(*(pos - truth).T)
        trial = base.copy()
        trial[j] = pos
        med, mean, w = ensemble_mean(trial)
        print(f"{name} {v}: alone {np.median(e):.1f} / {e.mean():.1f} m; ensemble {med:.1f} / {mean:.1f} m, "
              f"weights {w}", flush=True)
