"""Duke: which sigma map transfers to unseen squares (reads /tmp/duke_oof_s*.npz of calib_study.py)."""
import sys

import numpy as np

from rflocal_core.metrics import EXPECTED_1SIGMA, EXPECTED_2SIGMA
from rflocal_core.train.calibrate import POWER_GRID, _coverage_scale, fit_sigma_scale, size_factor


def d2of(e, s):
    return ((e / s) ** 2).sum(1)


def cov(d2):
    return 100 * np.mean(d2 <= 1), 100 * np.mean(d2 <= 4)


def ok(c):
    return abs(c[0] - 39.3) <= 10 and abs(c[1] - 86.5) <= 10


def worst(d2):
    return max(abs(np.mean(d2 <= 1) - EXPECTED_1SIGMA), abs(np.mean(d2 <= 4) - EXPECTED_2SIGMA))


def apply(cal, s):
    return s * cal.scale * size_factor(s, cal.power, cal.ref_m)


def rank_corr(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return np.corrcoef(ra, rb)[0, 1]


def groups(h):
    return np.minimum(h, 3)


for path in sys.argv[1:]:
    z = np.load(path)
    eo, so, ho, fold = z["e_oof"], z["s_oof"], z["h_oof"], z["fold"]
    et, st, ht = z["et"], z["st"], z["ht"]
    ev, sv = z["ev"], z["sv"]
    good = np.isfinite(eo).all(1) & np.isfinite(so).all(1) & (so > 0).all(1)
    eo, so, ho, fold = eo[good], so[good], ho[good], fold[good]
    print(path, "n oof", len(eo), "rank corr |e|~sigma oof", round(rank_corr(np.linalg.norm(eo, axis=1), np.sqrt(so.prod(1))), 2),
          "|e|~heard", round(rank_corr(np.linalg.norm(eo, axis=1), -ho), 2),
          "test |e|~sigma", round(rank_corr(np.linalg.norm(et, axis=1), np.sqrt(st.prod(1))), 2))
    print("  share heard 1/2/3+: oof", [round(np.mean(groups(ho) == g), 2) for g in (1, 2, 3)],
          "test", [round(np.mean(groups(ht) == g), 2) for g in (1, 2, 3)])
    for name, (e, s) in {"val": (ev, sv), "oof": (eo, so)}.items():
        cal = fit_sigma_scale(e, s)
        print(f"  {name} power p={cal.power}: test {cov(d2of(et, apply(cal, st)))}")
    # per heard group, power fit in each
    s_new = np.full_like(st, np.nan)
    for g in (1, 2, 3):
        cal = fit_sigma_scale(eo[groups(ho) == g], so[groups(ho) == g])
        s_new[groups(ht) == g] = apply(cal, st[groups(ht) == g])
        print(f"    heard {g}: s={cal.scale:.2f} p={cal.power} test group cov {cov(d2of(et[groups(ht)==g], s_new[groups(ht)==g]))}")
    c = cov(d2of(et, s_new))
    print(f"  oof per-heard power: test {c} {'OK' if ok(c) else ''}")
    # constant sigma per heard group (ignores the model's sigma)
    s_c = np.full_like(st, np.nan)
    for g in (1, 2, 3):
        r = np.linalg.norm(eo[groups(ho) == g], axis=1)
        sc = _coverage_scale(r**2)  # sigma per axis s: d2 = r^2/s^2
        s_c[groups(ht) == g] = sc
    c = cov(d2of(et, s_c))
    print(f"  oof constant per heard: test {c} {'OK' if ok(c) else ''}")
    # minimax over folds of (s, p)
    ref = float(np.median(np.sqrt(so.prod(1))))
    best = None
    for p in POWER_GRID:
        sf = so * size_factor(so, p, ref)
        for s in np.exp(np.linspace(np.log(0.05), np.log(20), 200)):
            d2 = d2of(eo, sf * s)
            w = max(worst(d2[fold == f]) for f in np.unique(fold))
            if best is None or w < best[0]:
                best = (w, p, s)
    _, p, s = best
    c = cov(d2of(et, st * s * size_factor(st, p, ref)))
    print(f"  oof minimax folds p={p} s={s:.2f} worst fold gap {best[0]:.3f}: test {c} {'OK' if ok(c) else ''}")
