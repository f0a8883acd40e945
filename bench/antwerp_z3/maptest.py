"""Extend the maplik.py grid on val, then report test once for the configurations chosen on val (brief Z3)."""
import itertools
import sys

import numpy as np
from geo2 import fit_gateways, fp_dist, terms
from maplik import ll, radio_map

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/antwerp_y1")
from common import errs, fig, geomedian, score

z = np.load(sys.argv[1]); e = np.load(sys.argv[2])
gw = z["train_nodepos"][0]; tr, rtr = z["train_truth"], z["train_rss"]
mfit = fit_gateways(tr, rtr, gw); mfit["n"] = np.clip(mfit["n"], 1.5, 6.0)
mu, _ = terms(tr, gw, mfit, 1e-3)
mu = np.where(mfit["ok"][None], mu, -125.0).astype(np.float32)
ok = np.ones(rtr.shape[1], bool)
ftr = np.where(np.isfinite(rtr), rtr, -120.0)
P = {}
for part in ("val", "test"):
    rss = z[f"{part}_rss"]
    P[part] = {"rss": rss, "D": fp_dist(np.where(np.isfinite(rss), rss, -120.0), ftr), "truth": z[f"{part}_truth"],
                   "ens": e[f"{part}_ens_pos"]}
maps = {h: radio_map(tr, rtr, mu, h) for h in (35.0, 50.0, 75.0, 100.0)}


def run(part, h, s, beta, tau, es, M, pfl=None):
    p, mm = maps[h]
    if pfl:
        p = np.clip(p, pfl, 1 - pfl)
    c = P[part]
    L = ll(c["rss"], p, mm, ok, s, 6.0, 1.0)
    sc = -(c["D"] - c["D"].min(1, keepdims=True)) / tau + beta * L
    if es:
        sc = sc - np.hypot(*(tr[None] - c["ens"][:, None]).transpose(2, 0, 1)) / es
    idx = np.argpartition(-sc, M, 1)[:, :M]
    sv = np.take_along_axis(sc, idx, 1)
    w = np.exp(sv - sv.max(1, keepdims=True)); w /= w.sum(1, keepdims=True)
    return errs(geomedian(tr[idx], w), c["truth"])


res = []
for h, s, beta, tau, es, M, pfl in itertools.product((35.0, 50.0, 75.0, 100.0), (3.0, 4.0), (0.5, 1.0, 2.0), (2.0, 4.0),
                                                     (None, 150.0, 300.0, 600.0), (30, 60), (None, 0.05)):
    ev = run("val", h, s, beta, tau, es, M, pfl)
    res.append((score(ev), ev.mean(), (h, s, beta, tau, es, M, pfl), fig(ev)))
print("keys: h, s, beta, tau, ens_s, M, pfloor")
picks = {}
for key, name in ((0, "score"), (1, "mean")):
    res.sort(key=lambda r: r[key])
    print("by", name)
    for r in res[:6]:
        print(f"  val score {r[0]:.0f} mean {r[1]:.0f} {r[2]} val {r[3]}")
    picks[f"best {name}"] = res[0]
    picks[f"best {name}, no ensemble"] = next(r for r in res if r[2][4] is None)
for name, r in picks.items():
    et = run("test", *r[2])
    print(f"TEST {name}: {r[2]} val {r[3]} test {fig(et)} P95 {np.percentile(et, 95):.0f} >1km {np.mean(et > 1000):.3f}",
          flush=True)
