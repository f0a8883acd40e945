"""Sigma models beyond one scale: power, log-linear in log sigma and nodes heard (fitted on val), ensemble spread."""
import json
import sys

import numpy as np

from rflocal_core.train.calibrate import _coverage_scale

T1, T2 = 0.3935, 0.8647

def cover(e, s):
    d = ((e / s) ** 2).sum(1)
    return [round(float(np.mean(d <= 1)), 3), round(float(np.mean(d <= 4)), 3)]

def worst(e, s):
    c = cover(e, s); return max(abs(c[0] - T1), abs(c[1] - T2))

def with_scale(e_v, s_v):
    d = ((e_v / s_v) ** 2).sum(1); return _coverage_scale(d)

def grid_fit(e_v, X_v, grids):
    """log s = X . beta (first col gets exact scale via coverage); grid over beta."""
    import itertools
    best = None
    for beta in itertools.product(*grids):
        ls = X_v @ np.array(beta)
        s = np.exp(ls - ls.mean())[:, None] * np.ones((1, 2))
        a = with_scale(e_v, s)
        w = worst(e_v, a * s)
        if best is None or w < best[0]:
            best = (w, beta, a, ls.mean())
    return best

def lsq_fit(e_v, X_v):
    y = np.log(np.maximum(np.hypot(*e_v.T), 1e-3))
    beta, *_ = np.linalg.lstsq(np.c_[X_v, np.ones(len(X_v))], y, rcond=None)
    return beta

def run(name, e_v, s_v, h_v, e_t, s_t, h_t, extra_v=None, extra_t=None):
    ok_v = np.isfinite(s_v).all(1) & (s_v > 0).all(1); ok_t = np.isfinite(s_t).all(1) & (s_t > 0).all(1)
    e_v, s_v, h_v = e_v[ok_v], s_v[ok_v], h_v[ok_v]; e_t, s_t, h_t = e_t[ok_t], s_t[ok_t], h_t[ok_t]
    g = np.exp(np.log(s_v).mean(1))  # geometric mean per sample of the axis sigmas
    gt = np.exp(np.log(s_t).mean(1))
    out = {}
    a = with_scale(e_v, s_v); out["scale"] = {"val": cover(e_v, a * s_v), "test": cover(e_t, a * s_t)}
    # power on per-axis sigma keeps the ellipse shape: s' = a * s * (g/m)^(p-1)
    m = np.median(g)
    Xv = np.c_[np.log(g / m)]; Xt = np.c_[np.log(gt / m)]
    _, beta, a, mu = grid_fit(e_v, Xv, [np.linspace(0, 3, 31)])
    f = lambda X, s, g_: a * np.exp(X @ np.array(beta) - mu)[:, None] * s / g_[:, None]
    out["power"] = {"p": round(beta[0], 2), "val": cover(e_v, f(Xv, s_v, g)), "test": cover(e_t, f(Xt, s_t, gt))}
    # log-linear in log sigma and nodes heard (grid, coverage)
    Xv = np.c_[np.log(g / m), h_v]; Xt = np.c_[np.log(gt / m), h_t]
    _, beta, a, mu = grid_fit(e_v, Xv, [np.linspace(0, 3, 31), np.linspace(-0.5, 0.5, 21)])
    out["pow+heard grid"] = {"beta": [round(b, 2) for b in beta], "val": cover(e_v, f(Xv, s_v, g)), "test": cover(e_t, f(Xt, s_t, gt))}
    # least squares of log|e| on the same features, then exact scale
    for fname, (Xv2, Xt2) in {"lsq logsig": (np.c_[np.log(g / m)], np.c_[np.log(gt / m)]),
                              "lsq logsig+heard": (np.c_[np.log(g / m), h_v], np.c_[np.log(gt / m), h_t]),
                              **({"lsq +extra": (np.c_[np.log(g / m), h_v, extra_v[ok_v]], np.c_[np.log(gt / m), h_t, extra_t[ok_t]])}
                                 if extra_v is not None else {})}.items():
        b = lsq_fit(e_v, Xv2)
        sv = np.exp(np.c_[Xv2, np.ones(len(Xv2))] @ b)[:, None] * s_v / g[:, None]
        st = np.exp(np.c_[Xt2, np.ones(len(Xt2))] @ b)[:, None] * s_t / gt[:, None]
        a = with_scale(e_v, sv)
        out[fname] = {"b": [round(x, 2) for x in b], "val": cover(e_v, a * sv), "test": cover(e_t, a * st)}
    print(name, json.dumps(out))

def main(path):
    z = np.load(path)
    names = list(z["members"]); w = z["weights"]
    hv = np.isfinite(z["val_rss"]).sum(1).astype(float); ht = np.isfinite(z["test_rss"]).sum(1).astype(float)
    ev = z["val_pos"] - z["val_truth"][None]; et = z["test_pos"] - z["test_truth"][None]
    for i, n in enumerate(names):
        run(n, ev[i], z["val_sig"][i], hv, et[i], z["test_sig"][i], ht)
    sc = float(z["sigma_scale"])
    cv, ct = z["val_ens_pos"], z["test_ens_pos"]
    spread = lambda P, c: np.log(np.maximum((w[:, None] * np.hypot(*(P - c[None]).transpose(2, 0, 1))).sum(0), 1.0))
    run("ensemble", cv - z["val_truth"], z["val_ens_sig"] / sc, hv, ct - z["test_truth"], z["test_ens_sig"] / sc, ht,
        spread(z["val_pos"], cv), spread(z["test_pos"], ct))

if __name__ == "__main__":
    for p in sys.argv[1:]:
        print("==", p); main(p)
