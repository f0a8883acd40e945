"""Hedged answer (hedge.py) with the credible-radius σ (radius.py) (brief B16). Val chooses.

Usage: python hedge_radius.py WORKSPACE DUMP.npz
"""
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hedge  # noqa: E402  (reads WORKSPACE DUMP.npz from argv)
from radius import radius, rho  # noqa: E402
from study import Z, err, fit  # noqa: E402

if __name__ == "__main__":
    rows = []
    for T, share, snap in itertools.product((3.0, 6.0), (0.4, 1.0), (0, 10)):
        est = {sp: hedge.answer(sp, T, share, snap)[0] for sp in ("val", "test")}
        ev = err("val", est["val"])
        for rT, rshare, alpha, floor in itertools.product((1.0, 3.0), (0.6, 1.0), (0.5, 0.8, 0.9), (0.0, 30.0)):
            r = radius("val", est["val"], rT, rshare, alpha, floor)
            if not (r > 0).all():
                continue
            rh = rho(ev, r)[0]
            rows.append((rh, T, share, snap, rT, rshare, alpha, floor, np.median(ev), ev.mean()))
        best = min(r for r in rows if r[1:4] == (T, share, snap))
        print(f"answer T {T} share {share} snap {snap}: val {best[8]:.1f}/{best[9]:.1f} m; best rho {best[0]:.2f} "
              f"(σ T {best[4]} share {best[5]} alpha {best[6]} floor {best[7]})", flush=True)
    rows.sort()
    for row in rows[:3]:
        rh, T, share, snap, rT, rshare, alpha, floor = row[:8]
        est = {sp: hedge.answer(sp, T, share, snap)[0] for sp in ("val", "test")}
        sig = {sp: np.repeat(radius(sp, est[sp], rT, rshare, alpha, floor)[:, None], 2, 1) / 2 for sp in est}
        v, t, gap, cal = fit(est, sig)
        et = err("test", est["test"])
        print(f"VAL-CHOSEN (least rho {rh:.2f}) answer T {T} share {share} snap {snap}, σ T {rT} share {rshare} "
              f"alpha {alpha} floor {floor}: val {row[8]:.1f}/{row[9]:.1f} m {v[0]:.3f}/{v[1]:.3f} gap {gap:.3f} "
              f"p {cal.power} | TEST {np.median(et):.1f}/{et.mean():.1f} m {t[0]:.3f}/{t[1]:.3f}", flush=True)
