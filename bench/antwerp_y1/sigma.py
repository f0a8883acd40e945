"""Which sigma to calibrate for the kgm ensemble: mixture (as the run), the kNN posterior's spread (K nearest
fingerprints' positions around the estimate), and mixes; each fitted on val (scale + power), test coverage."""
import sys

import numpy as np
from common import fill, report_sigmas, topk

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))

z = np.load(sys.argv[1])
w = z["weights"]
print("weights", dict(zip(z["members"], w.round(2))))
tr = z["train_truth"]; ok = np.isfinite(tr).all(1); tr = tr[ok]
ftr = fill(z["train_rss"][ok], -120.0)
from rflocal_core.models.ensemble import combine_positions

NOSNAP = len(sys.argv) > 2 and sys.argv[2] == "nosnap"
ENS = {sp: combine_positions(z[f"{sp}_pos"], w, "median") if NOSNAP else z[f"{sp}_ens_pos"] for sp in ("val", "test")}
by = {}
for sp in ("val", "test"):
    P, S, c = z[f"{sp}_pos"], z[f"{sp}_sig"], ENS[sp]
    spread = np.sqrt((w[:, None, None] * (P - c[None]) ** 2).sum(0))
    has = np.isfinite(S).all(-1); ws = np.where(has, w[:, None], 0.0)
    own = np.sqrt((ws[..., None] * np.where(has[..., None], S, 0) ** 2).sum(0) / np.maximum(ws.sum(0), 1e-12)[:, None])
    mix = np.sqrt(spread**2 + own**2)
    out = {"mixture": mix}
    idx, dist = topk(fill(z[f"{sp}_rss"], -120.0), ftr, 30)
    for K, tau in ((15, 2.0), (30, 4.0)):
        kw = np.exp(-(dist[:, :K] - dist[:, :1]) / tau); kw /= kw.sum(1, keepdims=True)
        ks = np.sqrt((kw[..., None] * (tr[idx[:, :K]] - c[:, None]) ** 2).sum(1)) + 1.0
        out[f"knn{K}"] = ks
        out[f"max(mix,knn{K})"] = np.maximum(mix, ks)
        out[f"rss(mix,knn{K})"] = np.sqrt(mix**2 + ks**2)
    by[sp] = out
report_sigmas(by, ENS, z)
