"""σ shapes and hedged answers for the best Antwerp ensemble, offline on dump.py's file (brief B16).

Usage: python study.py DUMP.npz
Every choice is made on val (831 messages, the members fitted on train alone); test is printed for the
val-chosen rows only. Coverage after the run's own kind of map (scale + power fitted on val).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.metrics.stats import calibration  # noqa: E402
from rflocal_core.train.calibrate import fit_sigma_scale, size_factor  # noqa: E402

Z = dict(np.load(sys.argv[1]))
SP = ("val", "test")


def err(sp, est):
    return np.hypot(*(est - Z[f"{sp}_truth"]).T)


def cover(sp, est, sig, cal):
    s = sig * cal.scale * size_factor(sig, cal.power, cal.ref_m)
    c = calibration(est - Z[f"{sp}_truth"], s)
    return c.inside_1sigma, c.inside_2sigma


def fit(est, sig):
    """Map fitted on val; (val 1σ, 2σ), (test 1σ, 2σ), worst val gap, cal."""
    cal = fit_sigma_scale(est["val"] - Z["val_truth"], sig["val"])
    v = cover("val", est["val"], sig["val"], cal)
    t = cover("test", est["test"], sig["test"], cal)
    return v, t, max(abs(v[0] - 0.393), abs(v[1] - 0.865)), cal


def post_spread(sp, est, T=1.0, iso=False):
    """The kmap posterior's RMS spread per axis around est (weights ** 1/T renormalized)."""
    w = Z[f"{sp}_post_w"].astype(np.float64)
    if T != 1.0:
        w = w ** (1 / T)
        w /= w.sum(1, keepdims=True)
    d = Z[f"{sp}_post_pos"] - est[:, None]
    if iso:
        r = np.sqrt((w * (d**2).sum(-1)).sum(1) / 2)
        return np.stack([r, r], 1)
    return np.sqrt((w[..., None] * d**2).sum(1))


def member_spread(sp, est):
    w = Z[f"{sp}_weights"][:, None, None]
    return np.sqrt((w * (Z[f"{sp}_member_pos"] - est[None]) ** 2).sum(0))


def own_sigma(sp):
    s = Z[f"{sp}_member_sigma"]
    has = np.isfinite(s).all(-1)
    w = np.where(has, Z[f"{sp}_weights"][:, None], 0.0)
    return np.sqrt((w[..., None] * np.where(has[..., None], s, 0) ** 2).sum(0) / w.sum(0)[:, None])


def line(name, est, sig, show_test=True):
    v, t, gap, cal = fit(est, sig)
    ev, et = err("val", est["val"]), err("test", est["test"])
    s = (f"{name}: val {np.median(ev):.1f}/{ev.mean():.1f} m {v[0]:.3f}/{v[1]:.3f} gap {gap:.3f} "
         f"(s {cal.scale:.2f} p {cal.power})")
    if show_test:
        s += f" | TEST {np.median(et):.1f}/{et.mean():.1f} m {t[0]:.3f}/{t[1]:.3f}"
    print(s, flush=True)
    return gap


if __name__ == "__main__":
    ans = {sp: Z[f"{sp}_answer"] for sp in SP}
    cen = {sp: Z[f"{sp}_centre"] for sp in SP}
    line("run as is (σ around the centre before the snap)", ans, {sp: Z[f"{sp}_sigma"] for sp in SP})
    ms = {sp: member_spread(sp, ans[sp]) for sp in SP}
    ow = {sp: own_sigma(sp) for sp in SP}
    for T in (1.0, 2.0, 3.0):
        ps = {sp: post_spread(sp, ans[sp], T) for sp in SP}
        line(f"posterior spread T {T} around the answer", ans, ps, False)
        for a in (0.25, 0.5, 1, 2, 4):
            for b in (0, 0.5, 1, 2):
                sig = {sp: np.sqrt(a * ps[sp] ** 2 + ms[sp] ** 2 + b * ow[sp] ** 2) for sp in SP}
                line(f"  T {T} a {a} b {b}: sqrt(a post² + members² + b own²)", ans, sig, False)
