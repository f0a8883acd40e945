"""Smoothed radio map likelihood over training positions (brief Z3): each candidate's expected RSS and
P(heard) per gateway are kernel averages (bandwidth h) of the training messages around it, so one noisy
training fingerprint no longer decides; log-distance (Tobit) model as the prior of sparse places.
LL(q, c) = sum_heard [log p_cg - (r - b - m_cg)^2 / 2 s_g^2] + sum_not_heard log(1 - p_cg), offset b profiled.
Usage: python maplik.py /tmp/z3_geo.npz /tmp/y1_bags22.npz
"""
import sys

import numpy as np
from geo2 import fit_gateways, fp_dist, terms

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/antwerp_y1")
from common import errs, fig, geomedian, score


def radio_map(tr, rtr, mu, h, a=2.0, pfloor=0.01):
    H = np.isfinite(rtr).astype(np.float32); R = np.where(H > 0, rtr, 0).astype(np.float32)
    dd = np.hypot(*(tr[:, None] - tr[None]).transpose(2, 0, 1)).astype(np.float32)
    K = np.exp(-0.5 * (dd / h) ** 2)
    sK = K.sum(1)[:, None]
    p_phys = np.float32(0.5)  # prior heard rate of a sparse place: weak
    p = (K @ H + a * p_phys) / (sK + a)
    kh = K @ H
    m = (K @ (H * R) + a * mu) / (kh + a)
    return np.clip(p, pfloor, 1 - pfloor), m


def ll(rss, p, mmap, ok, s, sb, ad):
    H = (np.isfinite(rss) & ok[None]).astype(np.float32)
    Hn = ((~np.isfinite(rss)) & ok[None]).astype(np.float32)
    r = np.where(H > 0, rss, 0.0).astype(np.float32)
    w = np.float32(1 / s**2)
    Hw = H * w
    s_rr = (Hw * r * r).sum(1)[:, None] - 2 * (Hw * r) @ mmap.T + Hw @ (mmap * mmap).T
    s_r = (Hw * r).sum(1)[:, None] - Hw @ mmap.T
    s_w = Hw.sum(1)[:, None]
    lr = -0.5 * (s_rr - s_r**2 / (s_w + 1 / sb**2))
    return lr + ad * (H @ np.log(p).T + Hn @ np.log1p(-p).T)


def main():
    z = np.load(sys.argv[1]); e = np.load(sys.argv[2])
    gw = z["train_nodepos"][0]; tr, rtr = z["train_truth"], z["train_rss"]
    mfit = fit_gateways(tr, rtr, gw); mfit["n"] = np.clip(mfit["n"], 1.5, 6.0)
    mu, _ = terms(tr, gw, mfit, 1e-3)
    ok = np.ones(rtr.shape[1], bool)  # the map needs no gateway position: all 44 slots
    mu = np.where(mfit["ok"][None], mu, -125.0).astype(np.float32)
    ftr = np.where(np.isfinite(rtr), rtr, -120.0)
    P = {}
    for part in ("val", "test"):
        rss = z[f"{part}_rss"]
        P[part] = {"rss": rss, "D": fp_dist(np.where(np.isfinite(rss), rss, -120.0), ftr), "truth": z[f"{part}_truth"],
                       "ens": e[f"{part}_ens_pos"]}
    res = []
    M = 30
    for h in (50.0, 100.0, 200.0):
        p, mm = radio_map(tr, rtr, mu, h)
        for s in (4.0, 6.0):
            lv = ll(P["val"]["rss"], p, mm, ok, s, 6.0, 1.0)
            lv_nodet = ll(P["val"]["rss"], p, mm, ok, s, 6.0, 0.0)
            for det in (0, 1):
                L = lv if det else lv_nodet
                for beta in (0.0, 0.3, 1.0):  # weight of the map likelihood; fp weight 1/tau
                    for tau in (2.0, 1e9):
                        for es in (None, 300.0):
                            if beta == 0 and tau > 1e6:
                                continue
                            c = P["val"]
                            sc = -(c["D"] - c["D"].min(1, keepdims=True)) / tau + beta * L
                            if es:
                                sc = sc - np.hypot(*(tr[None] - c["ens"][:, None]).transpose(2, 0, 1)) / es
                            idx = np.argpartition(-sc, M, 1)[:, :M]
                            sv = np.take_along_axis(sc, idx, 1)
                            w = np.exp(sv - sv.max(1, keepdims=True)); w /= w.sum(1, keepdims=True)
                            ev = errs(geomedian(tr[idx], w), c["truth"])
                            res.append((score(ev), ev.mean(), {"h": h, "s": s, "det": det, "beta": beta, "tau": tau, "ens_s": es},
                                        fig(ev)))
        print("h", h, "done", flush=True)
    for key, name in ((0, "score"), (1, "mean")):
        res.sort(key=lambda r: r[key])
        print("by", name)
        for r in res[:8]:
            print(f"  val score {r[0]:.0f} mean {r[1]:.0f} {r[2]} val {r[3]}")
    for r in res:
        if r[2]["beta"] == 0:
            print("  fp only:", r[2], r[3])
    np.save("/tmp/z3_maplik_res.npy", np.array([(r[0], r[1], str(r[2])) for r in res], dtype=object), allow_pickle=True)


if __name__ == "__main__":
    main()
