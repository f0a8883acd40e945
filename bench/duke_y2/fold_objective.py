"""Duke: (s, p) of the power map chosen on out-of-fold predictions by different objectives over the folds."""
import sys

import numpy as np

from rflocal_core.metrics import EXPECTED_1SIGMA, EXPECTED_2SIGMA
from rflocal_core.train.calibrate import POWER_GRID, size_factor


def gaps(d2):
    return abs(np.mean(d2 <= 1) - EXPECTED_1SIGMA), abs(np.mean(d2 <= 4) - EXPECTED_2SIGMA)


OBJ = {
    "pooled": lambda per, pooled: max(pooled),
    "max_fold": lambda per, pooled: max(max(g) for g in per),
    "mean_fold": lambda per, pooled: float(np.mean([max(g) for g in per])),
    "rms_fold": lambda per, pooled: float(np.sqrt(np.mean([max(g) ** 2 for g in per]))),
}

for path in sys.argv[1:]:
    z = np.load(path)
    eo, so, fold = z["e_oof"], z["s_oof"], z["fold"]
    et, st = z["et"], z["st"]
    good = np.isfinite(eo).all(1) & np.isfinite(so).all(1) & (so > 0).all(1)
    eo, so, fold = eo[good], so[good], fold[good]
    ref = float(np.median(np.sqrt(so.prod(1))))
    res = {k: None for k in OBJ}
    for p in POWER_GRID[:16]:
        sf = so * size_factor(so, p, ref)
        base = ((eo / sf) ** 2).sum(1)
        for s in np.exp(np.linspace(np.log(0.3), np.log(20), 150)):
            d2 = base / s**2
            per = [gaps(d2[fold == f]) for f in np.unique(fold)]
            pooled = gaps(d2)
            for k, fn in OBJ.items():
                v = fn(per, pooled)
                if res[k] is None or v < res[k][0]:
                    res[k] = (v, p, s)
    out = []
    for k, (v, p, s) in res.items():
        d2 = ((et / (st * s * size_factor(st, p, ref))) ** 2).sum(1)
        c = (100 * np.mean(d2 <= 1), 100 * np.mean(d2 <= 4))
        ok = abs(c[0] - 39.3) <= 10 and abs(c[1] - 86.5) <= 10
        out.append(f"{k} p={p} s={s:.2f}: {c[0]:.0f}/{c[1]:.0f}{' OK' if ok else ''}")
    print(path, " | ".join(out), flush=True)
