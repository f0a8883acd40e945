"""Antwerp ensemble: weights that follow the sampling density where the answer lands (brief B20), on val only.

Usage: python gate.py MEMBERS.npz OUT.json [RADIUS_M ...]
MEMBERS.npz: members_val.py's answers of B19's six members on the 831 val messages (knn members out of fold), or
the same fields for other rows (``names, pos [M, N, 2], truth, weights, ref, val_rows``). Density: training
messages of x_val (less the row itself: at predict time after --refit the row is not there) within RADIUS_M
(default 100 m) of an answer. Rules, each with a few parameters chosen on 4 of 5 folds of the rows (random,
seed 1) by least mean, scored on the 5th (nested), against the run's flat weights:
  gate:     the flat answer lands at < t messages -> take the smooth member S's answer (S: kmap, kmap100, kgm, or
            the geometric median of the three knn members with their flat weights);
  pull:     as gate, but move a share a of the way to S;
  member:   each member's weight times s where its own answer lands at < t messages (renormalized);
  bands:    grid weights (step 0.1) chosen per band of density at the flat answer (band edges chosen too);
  flatgrid: one grid point chosen on the 4 folds (no density; the nested control of the flat weights).
Also two in-sample ceilings (all rows, optimistic): the best single answer (flat or one member) per density band
at the answer, and the same with bands of density at the truth (not computable at predict time).
Test is not touched.
"""
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.models.ensemble import combine_positions, simplex_grid  # noqa: E402

BANDS = (0, 1, 5, 20, 50, 200, 10**9)
THRESHOLDS = (1, 3, 5, 10, 20, 40)
FOLDS = 5


def gmed(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted geometric median [N, 2] of p [M, N, 2] with per-row weights w [M, N] (Weiszfeld, 30 steps)."""
    w = w / w.sum(0)
    est = (w[..., None] * p).sum(0)
    for _ in range(30):
        d = np.hypot(*(p - est[None]).transpose(2, 0, 1))
        inv = w / np.maximum(d, 1e-3)
        est = (inv[..., None] * p).sum(0) / inv.sum(0)[:, None]
    return est


def by_band(e: np.ndarray, d: np.ndarray) -> list:
    return [float(e[(d >= lo) & (d < hi)].mean()) if ((d >= lo) & (d < hi)).any() else None
            for lo, hi in zip(BANDS[:-1], BANDS[1:])]


def candidates(Z: dict, density) -> tuple[dict, np.ndarray]:
    """{(rule, params): answer [N, 2]} for every rule and parameter point; the density at the flat answer."""
    names, pos, w0 = list(Z["names"]), Z["pos"], Z["weights"]
    flat = combine_positions(pos, w0, "median")
    d_flat, d_mem = density(flat), np.stack([density(p) for p in pos])
    knn = [names.index(n) for n in ("kgm", "kmap", "kmap100")]
    smooth = {n: pos[names.index(n)] for n in ("kmap", "kmap100", "kgm")}
    smooth["knn3"] = combine_positions(pos[knn], w0[knn], "median")
    out = {("flat",): flat}
    for s, t in itertools.product(smooth, THRESHOLDS):
        thin = (d_flat < t)[:, None]
        out["gate", s, t] = np.where(thin, smooth[s], flat)
        for a in (0.25, 0.5, 0.75):
            out["pull", s, t, a] = np.where(thin, flat + a * (smooth[s] - flat), flat)
    for t, s in itertools.product(THRESHOLDS, (0.0, 0.25, 0.5)):
        w = w0[:, None] * np.where(d_mem < t, s, 1.0)
        out["member", t, s] = gmed(pos, np.where(w.sum(0) > 0, w, w0[:, None]))  # all thin: the flat weights
    return out, d_flat


def banded(fit: np.ndarray, score: np.ndarray, d: np.ndarray, grid_err: np.ndarray) -> tuple[np.ndarray, list]:
    """Band edges and per band the grid point of least mean on the fit rows; the score rows' errors."""
    best = None
    for edges in ((5,), (20,), (5, 50), (20, 200), (1, 20), (5, 20)):
        b = np.digitize(d, edges)
        picks = [int(np.argmin(grid_err[:, fit & (b == k)].mean(1))) if (fit & (b == k)).any() else 0
                 for k in range(len(edges) + 1)]
        tot = sum(grid_err[g, fit & (b == k)].sum() for k, g in enumerate(picks))
        if best is None or tot < best[0]:
            best = (tot, edges, picks)
    _, edges, picks = best
    b = np.digitize(d, edges)
    e = np.empty(len(d))
    for k, g in enumerate(picks):
        e[b == k] = grid_err[g, b == k]
    return e[score], [list(edges), picks]


def study(Z: dict, radius_m: float) -> dict:
    """Every rule out of fold, the flat weights, the ceilings; figures as a dict."""
    ref, rows, truth, pos = Z["ref"], Z["val_rows"], Z["truth"], Z["pos"]
    tree = cKDTree(ref)

    def density(answer: np.ndarray) -> np.ndarray:
        n = tree.query_ball_point(answer, radius_m, return_length=True)
        return n - (np.hypot(*(ref[rows] - answer).T) <= radius_m)

    cands, d_flat = candidates(Z, density)
    errs = {k: np.hypot(*(a - truth).T) for k, a in cands.items()}
    grid = simplex_grid(len(pos), 0.1)
    grid_err = np.stack([np.hypot(*(combine_positions(pos, w, "median") - truth).T) for w in grid])
    fold = np.random.default_rng(1).permutation(len(truth)) % FOLDS
    e_flat = errs["flat",]
    out = {"radius_m": radius_m, "rows": len(truth), "rows_by_band": np.histogram(d_flat, BANDS)[0].tolist(),
           "flat": {"median_m": float(np.median(e_flat)), "mean_m": float(e_flat.mean()),
                    "mean_by_band_m": by_band(e_flat, d_flat)}}
    for rule in ("gate", "pull", "member", "bands", "flatgrid"):
        oof, picks = np.empty(len(truth)), []
        for f in range(FOLDS):
            fit, score = fold != f, fold == f
            if rule == "bands":
                oof[score], pick = banded(fit, score, d_flat, grid_err)
            elif rule == "flatgrid":
                g = int(np.argmin(grid_err[:, fit].mean(1)))
                oof[score], pick = grid_err[g, score], grid[g].tolist()
            else:
                pick = min((k for k in errs if k[0] == rule), key=lambda k: errs[k][fit].mean())
                oof[score] = errs[pick][score]
            picks.append(str(pick))
        out[rule] = {"median_m": float(np.median(oof)), "mean_m": float(oof.mean()),
                     "mean_by_band_m": by_band(oof, d_flat), "picks": picks}
    E = np.stack([e_flat, *(np.hypot(*(p - truth).T) for p in pos)])
    d_truth = density(truth)
    for lab, d in (("answer", d_flat), ("truth", d_truth)):
        tot = sum(E[:, (d >= lo) & (d < hi)].sum(1).min() for lo, hi in zip(BANDS[:-1], BANDS[1:]))
        out[f"ceiling_best_answer_per_band_at_{lab}_mean_m"] = float(tot / len(truth))
    return out


def main() -> None:
    Z = dict(np.load(sys.argv[1]))
    res = {"members": [str(n) for n in Z["names"]], "weights": Z["weights"].tolist(), "bands": list(BANDS[:-1]),
           "studies": [study(Z, float(r)) for r in (sys.argv[3:] or ["100"])]}
    for s in res["studies"]:
        f = s["flat"]
        print(f"radius {s['radius_m']:g} m, {s['rows']} rows, by band {s['rows_by_band']}; flat {f['median_m']:.1f} / "
              f"{f['mean_m']:.1f} m, by band {[round(v) if v else v for v in f['mean_by_band_m']]}")
        for rule in ("gate", "pull", "member", "bands", "flatgrid"):
            r = s[rule]
            print(f"  {rule:8s} OOF {r['median_m']:.1f} / {r['mean_m']:.1f} m, by band "
                  f"{[round(v) if v else v for v in r['mean_by_band_m']]}; picks {r['picks']}")
        print(f"  ceilings (in-sample): per band at the answer {s['ceiling_best_answer_per_band_at_answer_mean_m']:.1f}, "
              f"at the truth {s['ceiling_best_answer_per_band_at_truth_mean_m']:.1f} m mean")
    Path(sys.argv[2]).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
