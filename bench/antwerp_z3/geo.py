"""Gateway-geometry posterior over training positions (brief Z3, issue 15).

Candidates = the training messages' positions. Score of candidate c for message q:
  fp(c)   = -(D_qc - D_q,min) / tau          fingerprint distance (Euclidean dB, not heard = floor)
  phys(c) = heard:   Gaussian log-lik of RSS under a per-gateway log-distance model (offset b profiled, prior sb)
            + log P(heard | d) for heard gateways, log P(not heard | d) for the others (per-gateway logistic in log d)
  post ∝ exp(fp + alpha * phys); answer = geometric median of the top-M candidates.
Usage: python geo.py /tmp/z3_geo.npz [/tmp/y1_bags22.npz]
"""
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/antwerp_y1")
from common import errs, fig, geomedian, score


def fit_gateways(pos, rss, gw, *, min_heard=30):
    """Per-gateway log-distance (A, n, sigma) on heard links, and logistic P(heard | log10 d)."""
    G = gw.shape[0]
    d = np.hypot(*(pos[:, None, :] - gw[None, :, :2]).transpose(2, 0, 1))  # [N, G]
    ld = np.log10(np.maximum(d, 10.0))
    heard = np.isfinite(rss) & np.isfinite(gw[:, :2]).all(1)[None]
    # pooled fit first: the fallback of gateways with few links
    X = np.stack([np.ones(heard.sum()), -10 * ld[heard]], 1)
    pooled = np.linalg.lstsq(X, rss[heard], rcond=None)[0]
    A = np.full(G, pooled[0]); n = np.full(G, pooled[1]); sig = np.full(G, 8.0)
    a0 = np.zeros(G); a1 = np.zeros(G)
    for g in range(G):
        if not np.isfinite(gw[g, :2]).all():
            continue
        h = heard[:, g]
        if h.sum() >= min_heard:
            X = np.stack([np.ones(h.sum()), -10 * ld[h, g]], 1)
            coef = np.linalg.lstsq(X, rss[h, g], rcond=None)[0]
            if 1.0 <= coef[1] <= 6.0:
                A[g], n[g] = coef
            else:  # exponent off the physical range: pooled exponent, own intercept
                n[g] = pooled[1]; A[g] = np.mean(rss[h, g] + 10 * n[g] * ld[h, g])
            sig[g] = max(np.std(rss[h, g] - (A[g] - 10 * n[g] * ld[h, g])), 3.0)
        # logistic P(heard) = sigmoid(a0 + a1 * ld): Newton with a small ridge
        y = h.astype(float); x = ld[:, g]
        w = np.array([0.0, 0.0])
        for _ in range(30):
            p = 1 / (1 + np.exp(-(w[0] + w[1] * x)))
            gr = np.array([(y - p).sum(), ((y - p) * x).sum()]) - 1e-3 * w
            s = p * (1 - p)
            Hm = np.array([[s.sum(), (s * x).sum()], [(s * x).sum(), (s * x * x).sum()]]) + 1e-3 * np.eye(2)
            w = w + np.linalg.solve(Hm, gr)
        a0[g], a1[g] = w
    return {"A": A, "n": n, "sig": sig, "a0": a0, "a1": a1, "ok": np.isfinite(gw[:, :2]).all(1)}


def phys_terms(cand, gw, m):
    """Per candidate [C, G]: mean RSS mu, log P(heard), log P(not heard); nan gateways give zeros."""
    ok = m["ok"]
    gxy = np.where(ok[:, None], gw[:, :2], 0.0)
    d = np.hypot(*(cand[:, None, :] - gxy[None]).transpose(2, 0, 1))
    ld = np.log10(np.maximum(d, 10.0))
    mu = m["A"] - 10 * m["n"] * ld
    z = m["a0"] + m["a1"] * ld
    lph = -np.logaddexp(0, -z); lpn = -np.logaddexp(0, z)
    lph = np.maximum(lph, np.log(1e-4)); lpn = np.maximum(lpn, np.log(1e-4))
    mu[:, ~ok] = 0; lph[:, ~ok] = 0; lpn[:, ~ok] = 0
    return mu, lph, lpn


def phys_ll(rss, mu, lph, lpn, m, *, sb=6.0, use_rss=True, use_det=True, ok=None):
    """Physical log-likelihood [N, C] by matrix products (offset b ~ N(0, sb^2) profiled out)."""
    H = (np.isfinite(rss) & m["ok"][None]).astype(float)
    Hn = ((~np.isfinite(rss)) & m["ok"][None]).astype(float)
    r = np.where(H > 0, rss, 0.0)
    w = 1 / m["sig"] ** 2
    out = 0.0
    if use_rss:
        Hw = H * w
        s_rr = (Hw * r * r).sum(1)[:, None] - 2 * (Hw * r) @ mu.T + Hw @ (mu * mu).T
        s_r = (Hw * r).sum(1)[:, None] - Hw @ mu.T
        s_w = Hw.sum(1)[:, None]
        out = out - 0.5 * (s_rr - s_r**2 / (s_w + 1 / sb**2))
    if use_det:
        out = out + H @ lph.T + Hn @ lpn.T
    return out


def fp_dist(q, ref):
    d2 = (q**2).sum(1)[:, None] + (ref**2).sum(1)[None] - 2 * q @ ref.T
    return np.sqrt(np.maximum(d2, 0))


def main():
    z = np.load(sys.argv[1])
    gw = z["train_nodepos"][0]
    tr, rtr = z["train_truth"], z["train_rss"]
    m = fit_gateways(tr, rtr, gw)
    print("exponents", np.round(m["n"][m["ok"]], 1))
    print("sigmas", np.round(m["sig"][m["ok"]], 1))
    mu, lph, lpn = phys_terms(tr, gw, m)
    floor = -120.0
    ftr = np.where(np.isfinite(rtr), rtr, floor)
    cache = {}
    for part in ("val", "test"):
        rss = z[f"{part}_rss"]
        D = fp_dist(np.where(np.isfinite(rss), rss, floor), ftr)
        cache[part] = {"D": D, "P": phys_ll(rss, mu, lph, lpn, m), "Pr": phys_ll(rss, mu, lph, lpn, m, use_det=False),
                           "Pd": phys_ll(rss, mu, lph, lpn, m, use_rss=False), "truth": z[f"{part}_truth"]}
    # physics alone: argmax and top-M geometric median
    for key in ("P", "Pr", "Pd"):
        for part in ("val",):
            c = cache[part]
            j = c[key].argmax(1)
            print(f"physics only {key} argmax {part}: {fig(errs(tr[j], c['truth']))}")
    res = []
    M = 30
    for key in ("P", "Pr", "Pd"):
        for tau in (1.0, 2.0, 4.0):
            for alpha in (0.0, 0.03, 0.1, 0.3, 1.0):
                row = {}
                for part in ("val", "test"):
                    c = cache[part]
                    s = -(c["D"] - c["D"].min(1, keepdims=True)) / tau + alpha * c[key]
                    idx = np.argpartition(-s, M, 1)[:, :M]
                    sv = np.take_along_axis(s, idx, 1)
                    w = np.exp(sv - sv.max(1, keepdims=True)); w /= w.sum(1, keepdims=True)
                    row[part] = errs(geomedian(tr[idx], w), c["truth"])
                res.append((score(row["val"]), key, tau, alpha, fig(row["val"]), fig(row["test"])))
                if alpha == 0.0 and key != "P":
                    res.pop()
    res.sort()
    for r in res[:20]:
        print(f"val score {r[0]:.0f} {r[1]} tau {r[2]} alpha {r[3]} val {r[4]} test {r[5]}")
    for r in res:
        if r[3] == 0.0:
            print("alpha 0 (fingerprint only):", r)


if __name__ == "__main__":
    main()
