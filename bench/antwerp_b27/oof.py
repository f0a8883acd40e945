"""Out-of-fold posterior of the radio-map kNN on Antwerp's train + val (brief B27, issue 15).

Usage: python oof.py WORKSPACE RUN_ID OUT.npz
RUN_ID: a `knn` run on an x_val import (B27: the `knn:radio_map` candidate that `--model auto` chooses). It is
fitted again on 4/5 of train + val and answers the 5th (folds at random, seed 0); each answer's 1,000 best
training positions and their weights are kept, with the RSS of the fixed gateways and their positions.
Test is not touched.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import KNNFingerprint, load_inputs  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402

run = load_run(sys.argv[2])
ds = run.config["dataset"]
x = join_inputs(load_inputs(ds, "train"), load_inputs(ds, "val"))
n, K = len(x), 1000
fold = np.random.default_rng(0).permutation(n) % 5
pos = np.full((n, 2), np.nan); pp = np.zeros((n, K, 2), np.float32); pw = np.zeros((n, K), np.float32)
pd = np.zeros((n, K), np.float32)
for f in range(5):
    t0 = time.time()
    fit_x, held = x.subset(np.flatnonzero(fold != f)), np.flatnonzero(fold == f)
    m = run.model.refit(fit_x)
    pos[held] = m.predict(x.subset(held)).position_m
    wide = KNNFingerprint.from_state(m.config, {**m.state_dict(), "k": K})
    for s in range(0, len(held), 512):
        r = held[s:s + 512]
        a, b, c = wide.neighbours(x.subset(r))
        pp[r], pw[r], pd[r] = a, b, c
    e = np.hypot(*(pos[held] - x.truth_m[held]).T)
    print(f"fold {f}: {np.median(e):.1f} / {e.mean():.1f} m ({time.time()-t0:.0f} s)", flush=True)
fs = x.fixed_slots
np.savez(sys.argv[3], pos=pos, pp=pp, pw=pw, pd=pd, truth=x.truth_m, fold=fold,
         rss=x.rss_dbm[:, :fs], gw=x.node_pos_m[0, :fs, :2])
e = np.hypot(*(pos - x.truth_m).T)
print("all", np.median(e), e.mean(), "fixed", fs)
