"""A mean-oriented answer (brief B17, task 3): the geometric median of the mixture of every knn member's
posterior against today's hedge (only kmap's posterior, the others' one answer), on out-of-fold answers of all
of x_val (oof.py's file). Val only (x_val, 8,306 messages); no test.

Usage: python mixture.py OOF.npz
The weights are the best plain-combination weights by mean over all rows (3 weights on 8,306 rows).
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.models.baselines import weighted_geometric_median  # noqa: E402
from rflocal_core.models.ensemble import combine_positions, hedged_answer, simplex_grid  # noqa: E402

Z = dict(np.load(sys.argv[1]))
names, pos, truth = list(Z["names"]), Z["pos"], Z["truth"]
PP, PW = Z["all_post_pos"], Z["all_post_w"]
K = PW.shape[2]
ki = names.index("kmap")
others = [j for j in range(len(names)) if j != ki]


def err(est):
    return np.hypot(*(est - truth).T)


def show(label, est):
    e = err(est)
    print(f"{label}: {np.median(e):.1f} / {e.mean():.1f} m, P95 {np.quantile(e, 0.95):.0f}, "
          f"> 1 km {np.mean(e > 1000):.3f} ({e[e > 1000].sum() / e.sum():.2f} of the sum)", flush=True)


grid = simplex_grid(len(names), 0.05)
means = [err(combine_positions(pos, w, "median")).mean() for w in grid]
w = grid[int(np.argmin(means))]
print("weights", dict(zip(names, w.round(2))))
show("plain geometric median of the answers", combine_positions(pos, w, "median"))


def mixture(T, top, how):
    """Every member's top-``top`` candidates, weights ** 1/T renormalized, times the member's weight."""
    out = np.zeros_like(truth)
    for s in range(0, len(truth), 1024):
        r = slice(s, s + 1024)
        ps, ws = [], []
        for j in range(len(names)):  # the candidates are not in weight order: the top by weight
            idx = np.argsort(-PW[j, r], axis=1)[:, :top]
            ps.append(np.take_along_axis(PP[j, r], idx[..., None], 1).astype(np.float64))
            t = np.take_along_axis(PW[j, r], idx, 1).astype(np.float64) ** (1 / T)
            ws.append(w[j] * t / t.sum(1, keepdims=True))
        pts = np.concatenate(ps, 1)
        wt = np.concatenate(ws, 1)
        mean = (wt[..., None] * pts).sum(1) / wt.sum(1, keepdims=True)
        out[r] = mean if how == "mean" else weighted_geometric_median(pts, wt / wt.sum(1, keepdims=True), start=mean)
    return out


for T in (1.0, 2.0, 3.0):
    a = np.zeros_like(truth)
    for s in range(0, len(truth), 1024):
        r = slice(s, s + 1024)
        a[r], _ = hedged_answer(pos[others][:, r], w[others], PP[ki, r].astype(np.float64),
                                PW[ki, r].astype(np.float64), temperature=T, how="median")
    show(f"today's hedge (kmap's posterior), T {T}", a)
    for top in (100, K):
        show(f"mixture of all members' posteriors (top {top}), T {T}, geometric median", mixture(T, top, "median"))
show("mixture of all posteriors (top 100), T 1, weighted mean", mixture(1.0, 100, "mean"))
