"""Out-of-fold answers of the best Antwerp ensemble's refittable members on all of x_val (brief B17, stacking).

Usage: python oof.py WORKSPACE RUN_ID OUT.npz [FOLDS] [K]
RUN_ID: the ``ensemble --refit`` run of README "A hedged ensemble answer" (b16). Its ``knn`` members (kgm,
kmap, kmap100: val choices fixed) are fitted again on 4/5 of train + val (= all of x_val, 8,306 messages) and
answer the 5th (folds at random, seed 0); each member's posterior over its K best positions is kept (the hedge).
The network and booster members cannot be refitted cheaply (22 min; early stopping on val): not here.
Writes positions [M, N, 2], σ, the posterior, truth, the fold of each row and which rows are the b16 val split.
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
from rflocal_core.models.registry import BASELINES  # noqa: E402

run = load_run(sys.argv[2])
FOLDS = int(sys.argv[4]) if len(sys.argv) > 4 else 5
K = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
ds = run.config["dataset"]
tr, va = load_inputs(ds, "train"), load_inputs(ds, "val")
x = join_inputs(tr, va)
n = len(x)
fold = np.random.default_rng(0).permutation(n) % FOLDS
st = run.model.state_dict()
names = [m for m, mod in zip(st["members"], st["models"], strict=True) if BASELINES.get(mod) is not None
         and BASELINES[mod].can_refit]
configs = st.get("configs") or {}
pos = np.full((len(names), n, 2), np.nan)
sig = np.full((len(names), n, 2), np.nan)
post_pos = np.zeros((len(names), n, K, 2), np.float32)
post_w = np.zeros((len(names), n, K), np.float32)
for f in range(FOLDS):
    fit_x, held = x.subset(np.flatnonzero(fold != f)), np.flatnonzero(fold == f)
    for j, name in enumerate(names):
        t0 = time.time()
        i = st["members"].index(name)
        member = BASELINES[st["models"][i]].from_state(configs.get(name), st["states"][i]).refit(fit_x)
        p = member.predict(x.subset(held))
        pos[j, held], sig[j, held] = p.position_m, p.sigma_m
        # lgbm (refittable since B21) has no posterior: its answer only
        wide = (KNNFingerprint.from_state(member.config, {**member.state_dict(), "k": K})
                if isinstance(member, KNNFingerprint) else None)
        for s in range(0, len(held) if wide is not None else 0, 512):
            rows = held[s:s + 512]
            a, b, _ = wide.neighbours(x.subset(rows))
            post_pos[j, rows], post_w[j, rows] = a, b
        e = np.hypot(*(pos[j, held] - x.truth_m[held]).T)
        print(f"fold {f} {name}: {np.median(e):.1f} / {e.mean():.1f} m ({time.time() - t0:.0f} s)", flush=True)
ki = names.index("kmap")
np.savez(sys.argv[3], names=np.array(names), pos=pos, sigma=sig, post_pos=post_pos[ki], post_w=post_w[ki],
         all_post_pos=post_pos, all_post_w=post_w,
         truth=x.truth_m, fold=fold, is_val=np.r_[np.zeros(len(tr), bool), np.ones(len(va), bool)],
         heard=np.isfinite(x.rss_dbm[:, : x.fixed_slots]).sum(1))
print("ok", names, n)
