"""Stacking on folds of x_val (brief B17): the ensemble's weights and the hedge's T / mass chosen on out-of-fold
answers of all of x_val against the one 10% val split, nested (choose on 4 folds, score on the 5th).

Usage: python stack.py OOF.npz        (oof.py's file; members: the refittable knn members of the b16 run)
A: weights chosen on the b16 val-split rows of the 4 folds (~665 messages, as the run does);
B: on every row of the 4 folds (~6,645). Both scored on all rows of the 5th fold. Val only (x_val); no test.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.metrics.stats import calibration  # noqa: E402
from rflocal_core.models.ensemble import (  # noqa: E402
    bagged_weights, combine_positions, credible_radius, hedged_answer, simplex_grid)
from rflocal_core.train.calibrate import fit_sigma_scale, size_factor  # noqa: E402

Z = dict(np.load(sys.argv[1]))
names, pos, truth, fold, is_val = list(Z["names"]), Z["pos"], Z["truth"], Z["fold"], Z["is_val"]
post_pos, post_w = Z["post_pos"].astype(np.float64), Z["post_w"].astype(np.float64)
STEP = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
grid = simplex_grid(len(names), STEP)
ki = names.index("kmap")
others = [j for j in range(len(names)) if j != ki]


def err(est, rows=slice(None)):
    return np.hypot(*(est[rows] - truth[rows]).T)


plain = np.stack([err(combine_positions(pos, w, "median")) for w in grid])  # [G, N]


def choose(rows, bags):
    if bags:
        return bagged_weights(grid, plain[:, rows], "mean", bags=bags, seed=0)
    return grid[int(np.argmin(plain[:, rows].mean(1)))]


CACHE = {}


def hedges(w):
    """[(key (T, mass), answer, σ)] for every candidate; answers cached by the weights (bags 0 / 100 agree)."""
    key = tuple(np.round(w, 6))
    if key not in CACHE:
        out = []
        for T in (2.0, 3.0):  # B16's picks were T 2-3; T 1 missed the band
            a = np.zeros_like(truth)
            sig = {m: np.zeros_like(truth) for m in (0.7, 0.8, 0.9)}
            for s0 in range(0, len(truth), 1024):
                r = slice(s0, s0 + 1024)
                a[r], _ = hedged_answer(pos[others][:, r], w[others], post_pos[r], post_w[r], temperature=T,
                                        how="median")
                for m in sig:
                    sig[m][r] = np.repeat(credible_radius(post_pos[r], post_w[r], a[r], m)[:, None] / 2, 2, 1)
            out += [((T, m), a, sig[m]) for m in sig]
        CACHE[key] = out
    return CACHE[key]


def coverage(est, sig, fit_rows, rows):
    cal = fit_sigma_scale(est[fit_rows] - truth[fit_rows], sig[fit_rows])
    s = sig[rows] * cal.scale * size_factor(sig[rows], cal.power, cal.ref_m)
    c = calibration(est[rows] - truth[rows], s)
    return c.inside_1sigma, c.inside_2sigma


def rule(cands, rows):
    """B16's rule: val coverage within 5 points of 39.3 / 86.5, val median <= 120 m, then least val mean."""
    ok, scored = [], []
    for key, est, sig in cands:
        c1, c2 = coverage(est, sig, rows, rows)
        e = err(est, rows)
        gap = max(abs(c1 - 0.393), abs(c2 - 0.865))
        scored.append((gap, key, est, sig))
        if gap <= 0.05 and np.median(e) <= 120:
            ok.append((e.mean(), key, est, sig))
    return min(ok, key=lambda r: r[0])[1:] if ok else min(scored, key=lambda r: r[0])[1:]


VARIANTS = (("A val split", lambda f: is_val & (fold != f)), ("B all rows", lambda f: fold != f))
for bags in (0, 100):  # the plain combination: the weights alone
    for label, pick_rows in VARIANTS:
        ep, picks = np.zeros(len(truth)), []
        for f in range(fold.max() + 1):
            w = choose(pick_rows(f), bags)
            ep[fold == f] = err(combine_positions(pos, w, "median"), fold == f)
            picks.append(tuple(np.round(w, 2).tolist()))
        print(f"bags {bags} {label}: plain held-out {np.median(ep):.1f} / {ep.mean():.1f} m; weights {picks}",
              flush=True)
for label, pick_rows in VARIANTS:  # the hedge on top (bags 100, as the b16 run)
    eh, inside, picks = np.zeros(len(truth)), np.zeros((len(truth), 2), bool), []
    for f in range(fold.max() + 1):
        rows, held = pick_rows(f), fold == f
        w = choose(rows, 100)
        key, est, sig = rule(hedges(w), rows)
        cal = fit_sigma_scale(est[rows] - truth[rows], sig[rows])
        s = sig * cal.scale * size_factor(sig, cal.power, cal.ref_m)
        d2 = (((est - truth) / s) ** 2).sum(1)
        inside[held, 0], inside[held, 1] = d2[held] <= 1, d2[held] <= 4
        eh[held] = err(est, held)
        picks.append((tuple(np.round(w, 2).tolist()), key))
        print(f"  fold {f}: weights {picks[-1][0]} hedge {key}", flush=True)
    print(f"bags 100 {label}: hedged held-out {np.median(eh):.1f} / {eh.mean():.1f} m, 1σ {inside[:, 0].mean():.3f} "
          f"2σ {inside[:, 1].mean():.3f}", flush=True)
best = grid[int(np.argmin(plain.mean(1)))]
print("in-sample best weights on all rows", dict(zip(names, best.round(2))), f"{plain.mean(1).min():.1f} m mean")
for j, n in enumerate(names):
    e = err(pos[j])
    print(f"{n} alone OOF: {np.median(e):.1f} / {e.mean():.1f} m")
