"""Duke area splits: quick offline accuracy ideas against the tuned kNN (brief Y2 study; val or block CV chooses).

Usage: PYTHONPATH=$PWD python bench/duke_y2/acc_study.py WORKSPACE IDEA [splits...]
IDEA: gmed (kNN neighbours combined by weighted geometric median, k and tau by val),
      mapm (map matching on a grid against kernel-smoothed RSS maps of the training points).
"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
from pathlib import Path

from bench.bench_real import SETS, ensure_dataset
from rflocal_core.models import KNNFingerprint, load_inputs

DATA = Path("/work/shared/data/real")


def fp(x, floor=-140.0):
    f = x.rss_dbm[:, : x.fixed_slots]
    return np.where(np.isfinite(f), f, floor)


def dist(q, r):
    d2 = (q**2).sum(1)[:, None] + (r**2).sum(1)[None] - 2 * q @ r.T
    return np.sqrt(np.maximum(d2, 0))


def gmed(pts, w, iters=30):
    """Weighted geometric median per row: pts [N, k, 2], w [N, k]."""
    z = (w[..., None] * pts).sum(1)
    for _ in range(iters):
        d = np.linalg.norm(pts - z[:, None], axis=2)
        iw = w / np.maximum(d, 1e-3)
        z = (iw[..., None] * pts).sum(1) / iw.sum(1, keepdims=True)
    return z


def knn_pred(q, ref, refpos, k, tau, comb):
    d = dist(q, ref)
    nn = np.argpartition(d, k - 1, axis=1)[:, :k]
    dk = np.take_along_axis(d, nn, 1)
    w = np.exp(-(dk - dk.min(1, keepdims=True)) / tau)
    w /= w.sum(1, keepdims=True)
    pts = refpos[nn]
    if comb == "mean":
        return (w[..., None] * pts).sum(1)
    return gmed(pts, w)


def score(e):
    return 0.5 * (np.median(e) + np.mean(e))


def err(p, t):
    return np.linalg.norm(p - t, axis=1)


def idea_gmed(tr, va, te):
    ref, rp = fp(tr), tr.truth_m
    best = None
    for k in (5, 11, 21, 41, 81):
        for tau in (1.0, 2.0, 4.0):
            for comb in ("mean", "gmed"):
                e = err(knn_pred(fp(va), ref, rp, k, tau, comb), va.truth_m)
                s = score(e)
                et = err(knn_pred(fp(te), ref, rp, k, tau, comb), te.truth_m)
                print(f"    k={k:3d} tau={tau} {comb:4s} val {np.median(e):.0f}/{e.mean():.0f} test {np.median(et):.0f}/{et.mean():.0f}", flush=True)
                if best is None or s < best[0]:
                    best = (s, k, tau, comb, np.median(et), et.mean())
    print("  val-chosen:", best)


IDEAS = {"gmed": idea_gmed}

def _blur(a, sig_cells):
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(a, sig_cells, mode="constant")


class GridMaps:
    """Kernel-smoothed heard probability and mean RSS per slot on a grid, from the training points."""

    def __init__(self, tr, cell=20.0, margin=150.0):
        self.cell = cell
        p = tr.truth_m
        self.lo = np.nanmin(p, 0) - margin
        hi = np.nanmax(p, 0) + margin
        self.n = np.ceil((hi - self.lo) / cell).astype(int)
        ij = np.floor((p - self.lo) / cell).astype(int)
        self.flat = ij[:, 1] * self.n[0] + ij[:, 0]
        self.rss = tr.rss_dbm[:, : tr.fixed_slots]
        self.centres = np.stack(np.meshgrid(self.lo[0] + cell * (np.arange(self.n[0]) + 0.5),
                                            self.lo[1] + cell * (np.arange(self.n[1]) + 0.5)), -1).reshape(-1, 2)

    def _grid(self, v):
        g = np.zeros(self.n[1] * self.n[0])
        np.add.at(g, self.flat, v)
        return g.reshape(self.n[1], self.n[0])

    def build(self, h_m, shrink=2.0):
        s = h_m / self.cell
        cnt = _blur(self._grid(np.ones(len(self.flat))), s)
        heard = np.isfinite(self.rss)
        self.P, self.MU = [], []
        for c in range(self.rss.shape[1]):
            hc = _blur(self._grid(heard[:, c].astype(float)), s)
            sc = _blur(self._grid(np.where(heard[:, c], self.rss[:, c], 0.0)), s)
            pbar = heard[:, c].mean()
            mubar = np.nanmean(self.rss[:, c]) if heard[:, c].any() else -120.0
            self.P.append(((hc + shrink * pbar) / (cnt + shrink)).ravel())
            self.MU.append(((sc + shrink * mubar) / (hc + shrink)).ravel())
        self.P = np.clip(np.array(self.P), 0.01, 0.99)
        self.MU = np.array(self.MU)
        self.cnt = cnt.ravel()
        return self

    def loglik(self, x, sigma_db):
        r = x.rss_dbm[:, : x.fixed_slots]
        ll = np.zeros((len(r), self.P.shape[1]), dtype=np.float32)
        for c in range(self.P.shape[0]):
            h = np.isfinite(r[:, c])
            ll[~h] += np.log1p(-self.P[c])[None].astype(np.float32)
            if h.any():
                z = (r[h, c][:, None] - self.MU[c][None]) / sigma_db
                ll[h] += (np.log(self.P[c])[None] - 0.5 * z**2).astype(np.float32)
        return ll


def mapm_predict(maps, x, sigma_db, prior_h_m, prior_w, temp, top=200, comb="mean"):
    ll = maps.loglik(x, sigma_db) / temp
    pr = _blur(maps.cnt.reshape(maps.n[1], maps.n[0]), prior_h_m / maps.cell).ravel()
    ll += prior_w * np.log(pr / pr.max() + 1e-4)[None].astype(np.float32)
    idx = np.argpartition(-ll, top - 1, axis=1)[:, :top]
    lt = np.take_along_axis(ll, idx, 1)
    w = np.exp(lt - lt.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    pts = maps.centres[idx]
    return (w[..., None] * pts).sum(1) if comb == "mean" else gmed(pts, w)


def idea_mapm(tr, va, te):
    maps = GridMaps(tr)
    best = None
    for h in (20.0, 40.0):
        maps.build(h)
        for sig in (4.0, 8.0):
            for ph, pw in ((60.0, 1.0), (150.0, 1.0), (60.0, 0.3)):
                for comb in ("mean", "gmed"):
                    e = err(mapm_predict(maps, va, sig, ph, pw, 1.0, comb=comb), va.truth_m)
                    et = err(mapm_predict(maps, te, sig, ph, pw, 1.0, comb=comb), te.truth_m)
                    print(f"    h={h} sig={sig} prior={ph}/{pw} {comb} val {np.median(e):.0f}/{e.mean():.0f} "
                          f"test {np.median(et):.0f}/{et.mean():.0f}", flush=True)
                    if best is None or score(e) < best[0]:
                        best = (score(e), h, sig, ph, pw, comb, np.median(et), et.mean())
    print("  val-chosen:", best)


IDEAS["mapm"] = idea_mapm


if __name__ == "__main__":
    idea = sys.argv[2]
    for seed in [int(s) for s in sys.argv[3:]] or [0, 1, 2]:
        ds = ensure_dataset(SETS["duke"], DATA, seed)["dataset"]
        tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
        m = KNNFingerprint().fit(tr, va)
        et = err(m.predict(te).position_m, te.truth_m)
        print(ds, "knn", m.state_dict()["k"], m.state_dict()["floor_dbm"], f"test {np.median(et):.0f}/{et.mean():.0f}", flush=True)
        IDEAS[idea](tr, va, te)

