"""A hedged ensemble answer (brief B16): the weighted geometric median of the members' answers where the
radio-map member ``kmap`` joins with its whole posterior (its K best training positions, weights ** 1/T)
instead of its one answer; σ the mixture's spread around that answer. Offline on dump.py's file.

Usage: python hedge.py WORKSPACE DUMP.npz
Val chooses (831 messages, the members fitted on train alone); test is printed for the val-chosen rows.
"""
import itertools
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.argv = [sys.argv[0], sys.argv[2]]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import SP, Z, err, fit  # noqa: E402
from rflocal_core.models import load_inputs  # noqa: E402
from rflocal_core.models.baselines import weighted_geometric_median  # noqa: E402
from rflocal_core.models.ensemble import snap_to_positions  # noqa: E402

TR = load_inputs("antwerp", "train").truth_m
SNAP = {"val": TR, "test": np.concatenate([TR, load_inputs("antwerp", "val").truth_m])}
NAMES = ["kgm", "lgbm", "fpnet_knn", "fpnet", "kmap", "kmap100"]


def mixture(sp, T, share):
    """Points [N, M-1+K, 2] and weights: the members but kmap, then kmap's posterior with ``share`` of the
    weight (the rest of the weights rescaled to 1 - share); untempered weights for the spread too."""
    w = Z[f"{sp}_weights"].copy()
    i = NAMES.index("kmap")
    others = np.delete(np.arange(len(w)), i)
    wo = w[others] / w[others].sum() * (1 - share)
    mp = Z[f"{sp}_member_pos"][others].transpose(1, 0, 2)  # [N, M-1, 2]
    pw = Z[f"{sp}_post_w"].astype(np.float64)
    pt = pw ** (1 / T)
    pt /= pt.sum(1, keepdims=True)
    pts = np.concatenate([mp, Z[f"{sp}_post_pos"].astype(np.float64)], 1)
    n = len(mp)
    wt = np.concatenate([np.tile(wo, (n, 1)), share * pt], 1)
    w1 = np.concatenate([np.tile(wo, (n, 1)), share * pw], 1)
    return pts, wt, w1


def answer(sp, T, share, snap):
    pts, wt, w1 = mixture(sp, T, share)
    est = weighted_geometric_median(pts, wt)
    sig = np.sqrt((w1[..., None] * (pts - est[:, None]) ** 2).sum(1))
    if snap:
        est = snap_to_positions(est, SNAP[sp], snap)
    return est, sig


if __name__ == "__main__":
    rows = []
    for T, share, snap in itertools.product((1.0, 2.0, 3.0, 4.0, 6.0), (0.24, 0.4, 0.6), (0, 10)):
        est, sig = {}, {}
        for sp in SP:
            est[sp], sig[sp] = answer(sp, T, share, snap)
        v, t, gap, cal = fit(est, sig)
        ev, et = err("val", est["val"]), err("test", est["test"])
        rows.append((T, share, snap, np.median(ev), ev.mean(), v, gap, cal, np.median(et), et.mean(), t))
        print(f"T {T} share {share} snap {snap}: val {np.median(ev):.1f}/{ev.mean():.1f} m {v[0]:.3f}/{v[1]:.3f} "
              f"gap {gap:.3f} (s {cal.scale:.2f} p {cal.power})", flush=True)
    ok = [r for r in rows if r[6] <= 0.08 and r[3] <= 130]  # band with margin on val, median with room
    for label, pick in (("least val gap", min(rows, key=lambda r: r[6])),
                        ("least val mean with val gap <= 0.08", min(ok, key=lambda r: r[4]) if ok else None)):
        if pick is None:
            print(label, ": none")
            continue
        T, share, snap, *_ = pick
        print(f"CHOSEN ({label}) T {T} share {share} snap {snap}: val {pick[3]:.1f}/{pick[4]:.1f} "
              f"{pick[5][0]:.3f}/{pick[5][1]:.3f} | TEST {pick[8]:.1f}/{pick[9]:.1f} m "
              f"{pick[10][0]:.3f}/{pick[10][1]:.3f}")
