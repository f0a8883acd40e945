"""Second stage: LightGBM predicts the correction (truth - ensemble) from the members' offsets to the ensemble,
their spread, the nearest fingerprint distance and the gateways heard. Trained on val (5-fold CV inside val
chooses the shrink factor), applied to test."""
import sys

import lightgbm as lgb
import numpy as np
from common import errs, fig, fill, geomedian, score, topk

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from rflocal_core.models.ensemble import combine_positions, simplex_grid

z = np.load(sys.argv[1])
tr = z["train_truth"]; ok = np.isfinite(tr).all(1); tr = tr[ok]
ftr = fill(z["train_rss"][ok], -120.0)
names = list(z["members"])
P, F, C = {}, {}, {}
tv, tt = z["val_truth"], z["test_truth"]
for p in ("val", "test"):
    P[p] = z[f"{p}_pos"].copy()
    idx, dist = topk(fill(z[f"{p}_rss"], -120.0), ftr, 15)
    w = np.exp(-(dist - dist[:, :1]) / 2.0); w /= w.sum(1, keepdims=True)
    P[p][names.index("knn")] = geomedian(tr[idx], w)
    P[p][names.index("nn1")] = tr[idx[:, 0]]
grid = simplex_grid(6, 0.1)
g = grid[int(np.argmin([score(errs(combine_positions(P["val"], w, "median"), tv)) for w in grid]))]
for p in ("val", "test"):
    C[p] = combine_positions(P[p], g, "median")
    off = (P[p] - C[p][None]).transpose(1, 0, 2).reshape(len(C[p]), -1)
    spread = np.hypot(*(P[p] - C[p][None]).transpose(2, 0, 1)).T
    idx, dist = topk(fill(z[f"{p}_rss"], -120.0), ftr, 5)
    heard = np.isfinite(z[f"{p}_rss"]).sum(1)
    F[p] = np.column_stack([off, spread, dist, heard, C[p]])
print("base val", fig(errs(C["val"], tv)), "test", fig(errs(C["test"], tt)))
params = {"objective": "huber", "alpha": 100.0, "learning_rate": 0.05, "num_leaves": 7, "min_data_in_leaf": 20,
          "verbose": -1, "num_threads": 1, "seed": 0}
Y = tv - C["val"]
folds = np.arange(len(tv)) % 5
oof = np.zeros_like(Y)
for f in range(5):
    m = folds != f
    for ax in range(2):
        b = lgb.train(params, lgb.Dataset(F["val"][m], Y[m, ax]), num_boost_round=150)
        oof[~m, ax] = b.predict(F["val"][~m])
for s in (0.0, 0.25, 0.5, 1.0):
    print(f"shrink {s}: val (out of fold) {fig(errs(C['val'] + s * oof, tv))}")
corr = np.column_stack([lgb.train(params, lgb.Dataset(F["val"], Y[:, ax]), num_boost_round=150).predict(F["test"])
                        for ax in range(2)])
for s in (0.25, 0.5, 1.0):
    print(f"shrink {s}: test {fig(errs(C['test'] + s * corr, tt))}")
