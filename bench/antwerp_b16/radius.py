"""σ from a credible radius of the mixture (brief B16): around the ensemble's answer, the radius holding a share
alpha of the mixture (members' answers with their weights, ``kmap``'s posterior over its 1,000 best positions
with ``share`` of the weight, tempered by T), over 2 as the 1-sigma of that radius at 86.5%. Shape measure:
rho = sqrt(q76.5 / q49.3) of the normalized d² (both shares within the band are possible only if rho <= 2; a
2-D Gaussian has 1.46), after the best exponent p on σ. Usage: python radius.py DUMP.npz
"""
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import Z, err, fit  # noqa: E402

NAMES = ["kgm", "lgbm", "fpnet_knn", "fpnet", "kmap", "kmap100"]


def mixture(sp, T, share):
    w = Z[f"{sp}_weights"].copy()
    others = [i for i, n in enumerate(NAMES) if n != "kmap"]
    wo = w[others] / w[others].sum() * (1 - share)
    mp = Z[f"{sp}_member_pos"][others].transpose(1, 0, 2)
    pw = Z[f"{sp}_post_w"].astype(np.float64) ** (1 / T)
    pw /= pw.sum(1, keepdims=True)
    pts = np.concatenate([mp, Z[f"{sp}_post_pos"].astype(np.float64)], 1)
    return pts, np.concatenate([np.tile(wo, (len(mp), 1)), share * pw], 1)


def radius(sp, est, T, share, alpha, floor):
    pts, w = mixture(sp, T, share)
    d = np.hypot(*(pts - est[:, None]).transpose(2, 0, 1))
    o = np.argsort(d, 1)
    d, w = np.take_along_axis(d, o, 1), np.take_along_axis(w, o, 1)
    i = np.minimum((np.cumsum(w, 1) < alpha).sum(1), d.shape[1] - 1)
    r = np.sqrt(d[np.arange(len(d)), i] ** 2 + floor**2)
    return r


def rho(e, g):
    best = (9.0, 1.0)
    for p in np.arange(0.2, 3.01, 0.1):
        d2 = (e / g**p) ** 2
        best = min(best, (float(np.sqrt(np.quantile(d2, 0.765) / np.quantile(d2, 0.493))), round(p, 1)))
    return best


if __name__ == "__main__":
    est = {sp: Z[f"{sp}_answer"] for sp in ("val", "test")}
    ev = err("val", est["val"])
    g0 = np.sqrt(Z["val_sigma"].prod(1))
    print(f"run σ: rho {rho(ev, g0)}", flush=True)
    rows = []
    for T, share, alpha, floor in itertools.product((1.0, 3.0), (0.24, 0.6, 1.0), (0.5, 0.8, 0.9, 0.95), (0.0, 30.0)):
        r = radius("val", est["val"], T, share, alpha, floor)
        rh = rho(ev, r)
        rows.append((rh[0], T, share, alpha, floor))
        print(f"T {T} share {share} alpha {alpha} floor {floor}: rho {rh}", flush=True)
    rows.sort()
    for rh, T, share, alpha, floor in rows[:3]:
        sig = {sp: np.repeat(radius(sp, est[sp], T, share, alpha, floor)[:, None], 2, 1) / 2 for sp in est}
        v, t, gap, cal = fit(est, sig)
        print(f"VAL-CHOSEN T {T} share {share} alpha {alpha} floor {floor} (rho {rh:.2f}): val {v[0]:.3f}/{v[1]:.3f} "
              f"gap {gap:.3f} p {cal.power} | TEST {t[0]:.3f}/{t[1]:.3f}", flush=True)
