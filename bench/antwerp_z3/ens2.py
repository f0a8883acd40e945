"""Radio-map kNN variants in the best Antwerp ensemble, then the ensemble's answer as a prior over the
radio-map posterior (brief Z3). Members: kgm, lgbm, fpnet_knn, fpnet (from the dump of
ensemble-antwerp-20261203T060506-8b3c) + kmap35 (radio_map_m=35, k=30) + kmap100 (radio_map_m=100,
k=60, weight 1). Weights on val (grid 0.1, geometric median, by mean; 1 choice or 100 bootstrap bags).
Re-rank: the 200 best training positions of kmap35's posterior, weights x exp(-dist to the ensemble / s),
the geometric median of the best M; (s, M) chosen on val. Test reported for what val chose.
Usage: python ens2.py WORKSPACE /tmp/y1_bags22.npz
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "antwerp_y1"))
from common import errs, fig

from rflocal_core.models import KNNFingerprint, load_inputs
from rflocal_core.models.baselines import weighted_geometric_median
from rflocal_core.models.ensemble import combine_positions, simplex_grid, snap_to_positions

z = np.load(sys.argv[2])
X = {p: load_inputs("antwerp", p) for p in ("train", "val", "test")}
T = {p: z[f"{p}_truth"] for p in ("val", "test")}
base = {"floor_dbm": -120.0, "estimate": "median"}
variants = {"kmap35": {**base, "k": 30, "radio_map_m": 35.0}, "kmap100": {**base, "k": 60, "radio_map_m": 100.0,
                                                                         "radio_map_weight": 1.0}}
models = {n: KNNFingerprint(c).fit(X["train"]) for n, c in variants.items()}
pred = {n: {p: m.predict(X[p]).position_m for p in ("val", "test")} for n, m in models.items()}
for n in pred:
    print(f"{n}: val {fig(errs(pred[n]['val'], T['val']))} test {fig(errs(pred[n]['test'], T['test']))}", flush=True)
names = list(z["members"])
keep = ["kgm", "lgbm", "fpnet_knn", "fpnet"]
P = {p: np.concatenate([z[f"{p}_pos"][[names.index(k) for k in keep]], np.stack([pred[n][p] for n in pred])])
     for p in ("val", "test")}
labels = keep + list(pred)
grid = simplex_grid(len(labels), 0.1)
E = np.stack([errs(combine_positions(P["val"], g, "median"), T["val"]) for g in grid])
rng = np.random.default_rng(0)
ens = {}
for bags in (1, 100):
    if bags == 1:
        wgt = grid[int(np.argmin(E.mean(1)))]
    else:
        wgt = np.mean([grid[int(np.argmin(E[:, rng.integers(0, len(T["val"]), len(T["val"]))].mean(1)))]
                       for _ in range(bags)], 0)
    c = {p: combine_positions(P[p], wgt, "median") for p in ("val", "test")}
    ens[bags] = c
    s = {p: snap_to_positions(c[p], z["train_truth"], 10) for p in c}
    print(f"bags {bags}: {dict(zip(labels, wgt.round(2)))} val {fig(errs(c['val'], T['val']))} "
          f"test {fig(errs(c['test'], T['test']))}; snap10 val {fig(errs(s['val'], T['val']))} "
          f"test {fig(errs(s['test'], T['test']))}", flush=True)
wide = KNNFingerprint({**variants["kmap35"], "k": 200}).fit(X["train"])
nb = {p: wide.neighbours(X[p])[:2] for p in ("val", "test")}
for bags, c in ens.items():
    res = []
    for s_m in (100.0, 200.0, 400.0, 800.0):
        for M in (10, 30, 60):
            out = {}
            for p in ("val", "test"):
                pos, w = nb[p]
                w2 = w * np.exp(-np.hypot(*(pos - c[p][:, None]).transpose(2, 0, 1)) / s_m)
                top = np.argsort(-w2, 1)[:, :M]
                pw = np.take_along_axis(w2, top, 1)
                out[p] = weighted_geometric_median(np.take_along_axis(pos, top[..., None], 1), pw / pw.sum(1, keepdims=True))
            ev = errs(out["val"], T["val"])
            res.append((ev.mean(), s_m, M, fig(ev), fig(errs(out["test"], T["test"]))))
    res.sort()
    for r in res[:3]:
        print(f"re-rank bags {bags}: s {r[1]} M {r[2]} val {r[3]} (test {r[4]})")
    print(f"re-rank bags {bags} chosen on val (mean): s {res[0][1]} M {res[0][2]} val {res[0][3]} TEST {res[0][4]}",
          flush=True)
