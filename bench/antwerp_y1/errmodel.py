"""A learned error size as the ensemble's sigma: LightGBM on the training split predicts log(leave-one-out
kgm error) from the fingerprint neighbourhood (nearest distances, gateways heard, neighbour spread);
then scale + power fitted on val, test coverage. argv[2] = nosnap: centre without the snap."""
import sys

import lightgbm as lgb
import numpy as np
from common import errs, fill, geomedian, report_sigmas, topk

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from rflocal_core.models.ensemble import combine_positions

z = np.load(sys.argv[1]); w = z["weights"]
tr = z["train_truth"]; ok = np.isfinite(tr).all(1); tr = tr[ok]
rtr = z["train_rss"][ok]; ftr = fill(rtr, -120.0)
NOSNAP = len(sys.argv) > 2 and sys.argv[2] == "nosnap"


def feats(rss, exclude_self=False):
    idx, dist = topk(fill(rss, -120.0), ftr, 30, exclude_self=exclude_self)
    kw = np.exp(-(dist[:, :15] - dist[:, :1]) / 2.0); kw /= kw.sum(1, keepdims=True)
    est = geomedian(tr[idx[:, :15]], kw)
    sp15 = np.sqrt((kw[..., None] * (tr[idx[:, :15]] - est[:, None]) ** 2).sum((1, 2)))
    sp30 = np.sqrt(((tr[idx] - est[:, None]) ** 2).sum(-1).mean(1))
    heard = np.isfinite(rss).sum(1)
    strongest = np.nanmax(rss, 1)
    return np.column_stack([dist[:, :10], dist[:, 29], np.log1p(sp15), np.log1p(sp30), heard, strongest]), est


Ftr, est_tr = feats(rtr, exclude_self=True)
y = np.log(errs(est_tr, tr) + 20.0)
params = {"objective": "l2", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 40, "verbose": -1,
          "num_threads": 1, "seed": 0}
b = lgb.train(params, lgb.Dataset(Ftr, y), num_boost_round=200)
by, ENS = {}, {}
for sp in ("val", "test"):
    F, _ = feats(z[f"{sp}_rss"])
    s = np.exp(b.predict(F))
    c = combine_positions(z[f"{sp}_pos"], w, "median") if NOSNAP else z[f"{sp}_ens_pos"]
    ENS[sp] = c
    P = z[f"{sp}_pos"]
    spread = np.sqrt((w[:, None, None] * (P - c[None]) ** 2).sum(0))
    e = errs(c, z[f"{sp}_truth"])
    print(sp, "corr(log err, log sigma_pred)", np.corrcoef(np.log(e + 20), np.log(s))[0, 1].round(3),
          "corr with log mixture spread", np.corrcoef(np.log(e + 20), np.log(spread.mean(1) + 1))[0, 1].round(3))
    by[sp] = {"errmodel": np.column_stack([s, s]), "errmodel+spread": np.sqrt(s[:, None] ** 2 + spread**2)}
report_sigmas(by, ENS, z)
