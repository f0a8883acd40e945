"""Sigma from the radio-map posterior (brief B15): which spread makes the 1σ / 2σ coverage hold after one
scale (+ power) fitted on val. Usage: python sigma.py SCORES.npz
The answer stays the model's (geometric median of the top 30 at T = 1); the sigma is a spread of the
posterior over the K best candidates at temperature T around that answer, with a floor (m) added in quadrature.
"""
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import POS, Z, answer, err, posterior  # noqa: E402
from rflocal_core.metrics.stats import calibration  # noqa: E402
from rflocal_core.train.calibrate import fit_sigma_scale, size_factor  # noqa: E402


def spreads(split, est, T, K, kind):
    lw = Z[f"{split}_logw"]
    out = []
    for s in range(0, len(lw), 2000):
        nn, w = posterior(lw[s:s + 2000], T, K)
        dxy = POS[nn] - est[s:s + 2000, None]
        if kind == "axis":  # weighted RMS per axis
            out.append(np.sqrt((w[..., None] * dxy**2).sum(1)))
        else:  # isotropic: weighted mean distance, per axis
            r = (w * np.hypot(dxy[..., 0], dxy[..., 1])).sum(1)
            out.append(np.stack([r, r], 1) / np.sqrt(2))
    return np.concatenate(out)


def coverage(split, est, sig, cal):
    s = sig * cal.scale * size_factor(sig, cal.power, cal.ref_m)
    c = calibration(est - Z[f"{split}_truth"], s)
    return c.inside_1sigma, c.inside_2sigma


if __name__ == "__main__":
    est = {sp: answer(Z[f"{sp}_logw"], 1.0, 30, "gm")[0] for sp in ("val", "test")}
    res = []
    for T, K, kind, floor in itertools.product((1.0, 2.0, 3.0), (30, 300, 3000), ("axis", "iso"), (0.0, 10.0, 30.0)):
        sig = {sp: np.sqrt(spreads(sp, est[sp], T, K, kind) ** 2 + floor**2 / 2) for sp in ("val",)}
        cal = fit_sigma_scale(est["val"] - Z["val_truth"], sig["val"])
        v1, v2 = coverage("val", est["val"], sig["val"], cal)
        gap = max(abs(v1 - 0.393), abs(v2 - 0.865))
        res.append((gap, T, K, kind, floor, cal))
        print(f"T {T} K {K} {kind} floor {floor}: val 1σ {v1:.3f} 2σ {v2:.3f} (scale {cal.scale:.2f} p {cal.power})",
              flush=True)
    res.sort(key=lambda r: r[0])
    for gap, T, K, kind, floor, cal in res[:3]:  # val chooses; test reports
        sig = np.sqrt(spreads("test", est["test"], T, K, kind) ** 2 + floor**2 / 2)
        t1, t2 = coverage("test", est["test"], sig, cal)
        print(f"VAL-CHOSEN T {T} K {K} {kind} floor {floor} (val gap {gap:.3f}): TEST 1σ {t1:.3f} 2σ {t2:.3f}")
