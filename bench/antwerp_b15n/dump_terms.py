"""Dump the radio-map kNN's score terms at each message's best candidates (brief B15, second session).

Usage: python dump_terms.py WORKSPACE OUT.npz [TOP]
For val and test, the TOP (300) best training positions under today's score (35 m map, local spread,
weight 1, floor -120 dBm) and at each: the fingerprint distance d (dB), the profiled heard-RSS term, the
sum of log p_heard over the heard gateways, the sum of log(1 - p_heard) over the gateways not heard, and,
per gateway (val only), the heard RSS residual after the profiled offset, the map's spread and log p_heard
(heard) or log(1 - p_heard) (not heard), for per-gateway weights.
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import bench_real  # noqa: E402
from rflocal_core.models import KNNFingerprint, load_inputs  # noqa: E402
from rflocal_core.models.radiomap import OFFSET_SIGMA_DB  # noqa: E402

TOP = int(sys.argv[3]) if len(sys.argv) > 3 else 300
bench_real.ensure_dataset(bench_real.SETS["antwerp"], bench_real.DATA, 0)
X = {p: load_inputs("antwerp", p) for p in ("train", "val", "test")}
cfg = {"floor_dbm": -120.0, "estimate": "median", "radio_map_m": 35.0, "radio_map_spread": "local",
       "radio_map_weight": 1.0, "k": 30}
m = KNNFingerprint(cfg).fit(X["train"])
db = m._state["fingerprints"][X["train"].scenes[0]]
ref, P, MU, SP = (np.asarray(db[k], np.float64) for k in ("rss_dbm", "p_heard", "mean_dbm", "spread_db"))
tau = float(m._state["tau_db"])
out = {"train_pos": np.asarray(db["pos_m"]), "tau_db": tau}
for split in ("val", "test"):
    x = X[split]
    raw = x.rss_dbm[:, : x.fixed_slots]
    feats = np.where(np.isfinite(raw), raw, -120.0)
    acc = {k: [] for k in ("cand", "d", "rss", "lph", "lnot", "resid", "isd", "lpg")}
    for s in range(0, len(x), 512):
        r = slice(s, s + 512)
        d = np.sqrt(np.maximum((feats[r] ** 2).sum(1)[:, None] + (ref ** 2).sum(1)[None] - 2 * feats[r] @ ref.T, 0))
        score = m._map_score(d.copy(), raw[r], x.scenes[0])
        nn = np.argsort(score, axis=1)[:, :TOP]
        h = np.isfinite(raw[r])
        rr = np.where(h, raw[r], 0.0)
        mu, sp, p = MU[nn], SP[nn], P[nn]  # [n, TOP, S]
        iv = 1.0 / sp ** 2
        hh = h[:, None, :]
        # profiled offset b = sum h iv (r - mu) / (sum h iv + 1/so^2)
        b = (hh * iv * (rr[:, None, :] - mu)).sum(-1) / ((hh * iv).sum(-1) + 1.0 / OFFSET_SIGMA_DB ** 2)
        res = np.where(hh, rr[:, None, :] - b[..., None] - mu, 0.0)
        rss = (-0.5 * hh * res ** 2 * iv + 0.5 * hh * np.log(iv)).sum(-1) - 0.5 * b ** 2 / OFFSET_SIGMA_DB ** 2
        acc["cand"].append(nn.astype(np.int32))
        acc["d"].append(np.take_along_axis(d, nn, 1).astype(np.float32))
        acc["rss"].append(rss.astype(np.float32))
        acc["lph"].append((hh * np.log(p)).sum(-1).astype(np.float32))
        acc["lnot"].append(((~hh) * np.log1p(-p)).sum(-1).astype(np.float32))
        if split == "val":
            acc["resid"].append(res.astype(np.float16))
            acc["isd"].append(np.where(hh, sp, 0).astype(np.float16))
            acc["lpg"].append(np.where(hh, np.log(p), np.log1p(-p)).astype(np.float16))
        print(split, s, flush=True)
    for k, v in acc.items():
        if v:
            out[f"{split}_{k}"] = np.concatenate(v)
    out[f"{split}_truth"] = x.truth_m
    out[f"{split}_raw"] = raw
np.savez(sys.argv[2], **out)
print("ok", {k: np.shape(v) for k, v in out.items()})
