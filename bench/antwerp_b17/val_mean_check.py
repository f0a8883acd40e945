"""kmap100 (and kgm) with ``estimate=mean`` in the full six-member ensemble, on b16's val dump (brief B17, task 3).

Usage: python val_mean_check.py WORKSPACE RUN_ID DUMP.npz
The member is fitted on train with its val choices fixed (as the dump's val members) and its val answer
replaces the dump's; weights: the run's (b16 dump) or chosen again by mean with 100 bags; the hedged answer
(kmap's posterior, T 2 and 3) and the plain one. Val only (831 messages); no test.
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import KNNFingerprint, load_inputs  # noqa: E402
from rflocal_core.models.ensemble import bagged_weights, combine_positions, hedged_answer, simplex_grid  # noqa: E402

run = load_run(sys.argv[2])
Z = dict(np.load(sys.argv[3]))
ds = run.config["dataset"]
tr, va = load_inputs(ds, "train"), load_inputs(ds, "val")
truth = Z["val_truth"]
st = run.model.state_dict()
names = st["members"]
ki = names.index("kmap")
others = [j for j in range(len(names)) if j != ki]
grid = simplex_grid(len(names), 0.1)


def report(label, pos):
    for wlabel, w in (("run weights", Z["val_weights"]), ("weights again (mean, 100 bags)", None)):
        if w is None:
            err = np.stack([np.hypot(*(combine_positions(pos, g, "median") - truth).T) for g in grid])
            w = bagged_weights(grid, err, "mean", bags=100, seed=0)
        e = np.hypot(*(combine_positions(pos, w, "median") - truth).T)
        line = f"{label}, {wlabel} {np.round(w, 2)}: plain {np.median(e):.1f} / {e.mean():.1f} m"
        for T in (2.0, 3.0):
            a, _ = hedged_answer(pos[others], w[others], Z["val_post_pos"].astype(np.float64),
                                 Z["val_post_w"].astype(np.float64), temperature=T, how="median")
            e = np.hypot(*(a - truth).T)
            line += f"; hedge T {T} {np.median(e):.1f} / {e.mean():.1f} m"
        print(line, flush=True)


report("as the run", Z["val_member_pos"])
for change in ({"kmap100": {"estimate": "mean"}}, {"kgm": {"estimate": "mean"}},
               {"kmap100": {"estimate": "mean"}, "kgm": {"estimate": "mean"}}):
    pos = Z["val_member_pos"].copy()
    for name, v in change.items():
        i = names.index(name)
        frozen = KNNFingerprint.from_state((st.get("configs") or {}).get(name), st["states"][i]).frozen_config()
        pos[i] = KNNFingerprint({**frozen, **v}).fit(tr).predict(va).position_m
    report(str(change), pos)
