"""The radio-map kNN (``knn --set radio_map_m=35 k=30 estimate=median floor_dbm=-120``, a run of the bench
workspace) as a member of the best Antwerp ensemble (dump of ensemble-antwerp-20261203T060506-8b3c:
kgm, nn1, lgbm, knn_lgbm, fpnet_knn, fpnet): replace kgm by it or add it; weights on val (grid 0.1,
geometric median; one choice or averaged over 100 bootstrap resamples of val), snap k = 10; test reported.
Usage: python member.py WORKSPACE KNN_RUN_ID /tmp/y1_bags22.npz
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "antwerp_y1"))
from common import errs, fig

from rflocal_core.infer.run import load_run
from rflocal_core.models import load_inputs
from rflocal_core.models.ensemble import combine_positions, simplex_grid, snap_to_positions

run = load_run(sys.argv[2])
z = np.load(sys.argv[3])
kmap = {p: run.predict(load_inputs("antwerp", p)).position_m for p in ("val", "test")}
for p in ("val", "test"):
    print(f"kmap alone {p}: {fig(errs(kmap[p], z[f'{p}_truth']))}")
    print(f"ensemble (dump) {p}: {fig(errs(z[f'{p}_ens_pos'], z[f'{p}_truth']))}")
tr = z["train_truth"]
names = list(z["members"])
tv, tt = z["val_truth"], z["test_truth"]
rng = np.random.default_rng(0)
crits = {"median_mean": lambda e: 0.5 * (np.median(e, -1) + e.mean(-1)), "mean": lambda e: e.mean(-1)}
for how in ("replace", "add"):
    P = {p: z[f"{p}_pos"].copy() for p in ("val", "test")}
    labels = list(names)
    if how == "replace":
        for p, arr in P.items():
            arr[names.index("kgm")] = kmap[p]
        labels[names.index("kgm")] = "kmap"
    else:
        P = {p: np.concatenate([P[p], kmap[p][None]]) for p in P}
        labels.append("kmap")
    grid = simplex_grid(len(labels), 0.1)
    E = np.stack([errs(combine_positions(P["val"], g, "median"), tv) for g in grid])
    for crit, f in crits.items():
        for bags in (1, 100):
            if bags == 1:
                wgt = grid[int(np.argmin(f(E)))]
            else:
                picks = [grid[int(np.argmin(f(E[:, rng.integers(0, len(tv), len(tv))])))] for _ in range(bags)]
                wgt = np.mean(picks, 0)
            cv, ct = combine_positions(P["val"], wgt, "median"), combine_positions(P["test"], wgt, "median")
            sv, st = snap_to_positions(cv, tr, 10), snap_to_positions(ct, tr, 10)
            print(f"{how} {crit} bags {bags}: {dict(zip(labels, wgt.round(2)))} val {fig(errs(cv, tv))} "
                  f"test {fig(errs(ct, tt))}; snap10 val {fig(errs(sv, tv))} test {fig(errs(st, tt))}", flush=True)
