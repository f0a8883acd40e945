"""Duke: does the phone model matter to kNN? Samsung reports 2-11 dB below Pixel per cell (median).

Rebuilds the samples from the CSV (one per position and device, median RSRP per cell) and puts each
in the split of the bench dataset holding its position, so the area splits are the bench's.
kNN (floor -140 dBm, softmin tau 1 dB, k from val) plain, restricted to training samples of the same
device, and with a per-device offset (the val-chosen dB added to Samsung's RSRP).
"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
import numpy as np
import pandas as pd

from rflocal_core.dataset.store import open_dataset

CELLS = list("ABCDEF")
d = pd.read_csv("/work/shared/data/real/duke_cbrs/Duke_CBRS.csv")
g = d.groupby(["latitude", "longitude", "device", "PCI"]).rsrp.median().unstack("PCI").reindex(columns=CELLS)
g = g.reset_index()


def knn(q, ref, pos, k, tau=1.0, mask=None):
    d2 = (q**2).sum(1)[:, None] + (ref**2).sum(1)[None] - 2 * q @ ref.T
    dd = np.sqrt(np.maximum(d2, 0))
    if mask is not None:
        dd = np.where(mask, dd, np.inf)
    nn = np.argpartition(dd, k - 1, axis=1)[:, :k]
    dk = np.take_along_axis(dd, nn, 1)
    w = np.exp(-(dk - dk.min(1, keepdims=True)) / tau)
    w /= w.sum(1, keepdims=True)
    return (w[..., None] * pos[nn]).sum(1)


def predict(f, m, tr, xy, dev, k, same):
    """kNN estimates of the rows ``m`` from the rows ``tr`` (``same``: only training samples of the same phone)."""
    mask = (dev[m][:, None] == dev[tr][None]) if same else None
    return knn(f[m], f[tr], xy[tr], k, mask=mask)


for seed in (0, 1, 2):
    root = open_dataset(f"duke-b200-s{seed}")
    latlon = np.asarray(root["samples/latlon"][...])[:, 0]
    pos = np.asarray(root["samples/pos_m"][...])[:, 0, :2]
    split = np.empty(len(latlon), dtype=object)
    for s in ("train", "val", "test"):
        split[np.asarray(root[f"splits/{s}"][...])] = s
    key = {(round(a, 5), round(b, 5)): i for i, (a, b) in enumerate(latlon)}
    idx = np.array([key.get((round(a, 5), round(b, 5)), -1) for a, b in zip(g.latitude, g.longitude, strict=True)])
    print(f"matched {np.mean(idx >= 0):.3f}", flush=True)
    g, idx = g[idx >= 0].reset_index(drop=True), idx[idx >= 0]
    sp, xy = split[idx], pos[idx].astype(float)
    rss = g[CELLS].to_numpy(float)
    dev = (g.device == "Samsung").to_numpy()
    tr, va, te = (sp == "train"), (sp == "val"), (sp == "test")
    out = [f"split {seed} (n test {te.sum()})"]
    for name in ("plain", "same device", "offset"):
        best = None
        for k in (5, 7, 11, 15):
            for off in ((0.0,) if name != "offset" else (0.0, 2.0, 4.0, 6.0, 8.0)):
                f = np.where(np.isfinite(rss), rss + np.where(dev, off, 0.0)[:, None], -140.0)
                same = name == "same device"
                ev = np.linalg.norm(predict(f, va, tr, xy, dev, k, same) - xy[va], axis=1)
                sc = 0.5 * (np.median(ev) + ev.mean())
                if best is None or sc < best[0]:
                    et = np.linalg.norm(predict(f, te, tr, xy, dev, k, same) - xy[te], axis=1)
                    best = (sc, k, off, np.median(et), et.mean())
        out.append(f"{name}: k={best[1]} off={best[2]} test {best[3]:.0f}/{best[4]:.0f}")
    print(" | ".join(out), flush=True)
