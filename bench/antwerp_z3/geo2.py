"""Gateway-geometry posterior, censored (Tobit) log-distance model per gateway (brief Z3, issue 15).

As geo.py, but each gateway's (A, n, sigma) is fitted with the not-heard links as censored below the
gateway's floor F_g (its 1st percentile of heard RSS): P(not heard | d) = eps + (1 - eps) Phi((F - mu(d)) / sigma).
Score: -(D - Dmin)/tau + a_r * heard-RSS log-lik (offset profiled) + a_d * not-heard log-lik [+ ensemble prior].
val chooses, test reports the chosen configurations only.
Usage: python geo2.py /tmp/z3_geo.npz /tmp/y1_bags22.npz
"""
import sys

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_ndtr

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/antwerp_y1")
from common import errs, fig, geomedian, score


def tobit_fit(ld, y, heard, F):
    """Censored log-distance fit: mu = A - 10 n ld; heard y ~ N(mu, s); not heard: y < F."""
    def nll(p):
        A, n, ls = p; s = np.exp(ls)
        mu = A - 10 * n * ld
        a = -0.5 * ((y[heard] - mu[heard]) / s) ** 2 - ls
        b = log_ndtr((F - mu[~heard]) / s)
        return -(a.sum() + b.sum())
    x0 = np.array([np.mean(y[heard]) + 30, 3.0, np.log(8.0)])
    r = minimize(nll, x0, method="Nelder-Mead", options={"maxiter": 2000, "xatol": 1e-3, "fatol": 1e-3})
    A, n, ls = r.x
    return A, n, np.exp(ls)


def fit_gateways(pos, rss, gw, *, min_heard=30):
    G = gw.shape[0]
    ok = np.isfinite(gw[:, :2]).all(1)
    gxy = np.where(ok[:, None], gw[:, :2], 0.0)
    d = np.hypot(*(pos[:, None, :] - gxy[None]).transpose(2, 0, 1))
    ld = np.log10(np.maximum(d, 10.0))
    heard = np.isfinite(rss)
    A = np.zeros(G); n = np.zeros(G); sig = np.ones(G); F = np.full(G, -125.0); use = np.zeros(G, bool)
    for g in range(G):
        h = heard[:, g]
        if not ok[g] or h.sum() < min_heard:
            continue
        F[g] = np.percentile(rss[h, g], 1)
        A[g], n[g], sig[g] = tobit_fit(ld[:, g], np.where(h, rss[:, g], 0.0), h, F[g])
        use[g] = True
    return {"A": A, "n": n, "sig": sig, "F": F, "ok": use}


def terms(cand, gw, m, eps):
    ok = m["ok"]
    gxy = np.where(ok[:, None], gw[:, :2], 0.0)
    d = np.hypot(*(cand[:, None, :] - gxy[None]).transpose(2, 0, 1))
    ld = np.log10(np.maximum(d, 10.0))
    mu = m["A"] - 10 * m["n"] * ld
    lcen = np.logaddexp(np.log(eps), np.log1p(-eps) + log_ndtr((m["F"] - mu) / m["sig"]))
    mu[:, ~ok] = 0; lcen[:, ~ok] = 0
    return mu.astype(np.float32), lcen.astype(np.float32)


def ll_parts(rss, mu, lcen, m, sb):
    ok = m["ok"][None]
    H = (np.isfinite(rss) & ok).astype(np.float32)
    Hn = ((~np.isfinite(rss)) & ok).astype(np.float32)
    r = np.where(H > 0, rss, 0.0).astype(np.float32)
    w = (1 / m["sig"] ** 2).astype(np.float32)
    Hw = H * w
    s_rr = (Hw * r * r).sum(1)[:, None] - 2 * (Hw * r) @ mu.T + Hw @ (mu * mu).T
    s_r = (Hw * r).sum(1)[:, None] - Hw @ mu.T
    s_w = Hw.sum(1)[:, None]
    lr = -0.5 * (s_rr - s_r**2 / (s_w + 1 / sb**2))
    ld = Hn @ lcen.T
    return lr, ld


def fp_dist(q, ref):
    q = q.astype(np.float32); ref = ref.astype(np.float32)
    d2 = (q**2).sum(1)[:, None] + (ref**2).sum(1)[None] - 2 * q @ ref.T
    return np.sqrt(np.maximum(d2, 0))


def answer(D, lr, ld, tr, *, tau, ar, ad, M=30, ens=None, ens_s=None):
    s = -(D - D.min(1, keepdims=True)) / tau + ar * lr + ad * ld
    if ens is not None:
        dd = np.hypot(*(tr[None] - ens[:, None]).transpose(2, 0, 1))
        s = s - dd / ens_s
    idx = np.argpartition(-s, M, 1)[:, :M]
    sv = np.take_along_axis(s, idx, 1)
    w = np.exp(sv - sv.max(1, keepdims=True)); w /= w.sum(1, keepdims=True)
    return geomedian(tr[idx], w)


def main():
    z = np.load(sys.argv[1]); e = np.load(sys.argv[2]) if len(sys.argv) > 2 else None
    gw = z["train_nodepos"][0]
    tr, rtr = z["train_truth"], z["train_rss"]
    m = fit_gateways(tr, rtr, gw)
    print("exponents", np.round(m["n"][m["ok"]], 1))
    print("sigmas", np.round(m["sig"][m["ok"]], 1))
    print("floors", np.round(m["F"][m["ok"]], 0))
    floor = -120.0
    ftr = np.where(np.isfinite(rtr), rtr, floor)
    grid = {"eps": (1e-3, 1e-2), "sb": (3.0, 8.0), "tau": (1.5, 2.0, 3.0), "ar": (0.0, 0.03, 0.1, 0.3), "ad": (0.0, 0.03, 0.1, 0.3),
                "ens_s": (None, 100.0, 300.0)}
    parts = {}
    for part in ("val", "test"):
        rss = z[f"{part}_rss"]
        parts[part] = {"D": fp_dist(np.where(np.isfinite(rss), rss, floor), ftr), "truth": z[f"{part}_truth"],
                           "ens": None if e is None else e[f"{part}_ens_pos"]}
    if e is not None:
        for part in ("val", "test"):
            print(f"ensemble {part}: {fig(errs(parts[part]['ens'], parts[part]['truth']))}")
    res = []
    for eps in grid["eps"]:
        mu, lcen = terms(tr, gw, m, eps)
        for sb in grid["sb"]:
            c = parts["val"]
            lr, ld = ll_parts(z["val_rss"], mu, lcen, m, sb)
            for tau in grid["tau"]:
                for ar in grid["ar"]:
                    for ad in grid["ad"]:
                        for es in grid["ens_s"]:
                            if es is not None and e is None:
                                continue
                            p = answer(c["D"], lr, ld, tr, tau=tau, ar=ar, ad=ad, ens=None if es is None else c["ens"],
                                       ens_s=es)
                            ev = errs(p, c["truth"])
                            res.append((score(ev), {"eps": eps, "sb": sb, "tau": tau, "ar": ar, "ad": ad, "ens_s": es}, fig(ev)))
    res.sort(key=lambda r: r[0])
    for r in res[:15]:
        print(f"val score {r[0]:.0f} {r[1]} val {r[2]}")
    # test: best overall, best without physics, best without ensemble prior
    pick = {"best": res[0]}
    pick["no physics"] = next(r for r in res if r[1]["ar"] == 0 and r[1]["ad"] == 0 and r[1]["ens_s"] is None)
    pick["no ensemble"] = next(r for r in res if r[1]["ens_s"] is None)
    if e is not None:
        pick["ens, no physics"] = next(r for r in res if r[1]["ar"] == 0 and r[1]["ad"] == 0 and r[1]["ens_s"])
    for name, r in pick.items():
        k = r[1]
        mu, lcen = terms(tr, gw, m, k["eps"])
        c = parts["test"]
        lr, ld = ll_parts(z["test_rss"], mu, lcen, m, k["sb"])
        p = answer(c["D"], lr, ld, tr, tau=k["tau"], ar=k["ar"], ad=k["ad"], ens=c["ens"] if k["ens_s"] else None,
                   ens_s=k["ens_s"])
        et = errs(p, c["truth"])
        print(f"TEST {name}: {k} val {r[2]} test {fig(et)} P95 {np.percentile(et, 95):.0f} >1km {np.mean(et > 1000):.3f}")


if __name__ == "__main__":
    main()
