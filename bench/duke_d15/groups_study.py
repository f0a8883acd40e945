"""Duke: sigma maps per group of nodes heard against one map, on the test splits (brief D15; reads dump_oof.py's npz).

Usage: PYTHONPATH=$PWD python bench/duke_d15/groups_study.py OUT_DIR/knn-s0.npz ...
Each map is fitted on the out-of-block rows (or val) and applied to test; prints test 1σ / 2σ and
whether both are within 10 points of 39.3 / 86.5.
"""
import sys

import numpy as np

from rflocal_core.metrics import calibration
from rflocal_core.train.calibrate import fit_sigma_folds, fit_sigma_scale, size_factor


def cov(e, s):
    c = calibration(e, s)  # as evaluate counts it (samples without a finite positive sigma left out)
    return 100 * c.inside_1sigma, 100 * c.inside_2sigma


def ok(c):
    return abs(c[0] - 39.3) <= 10 and abs(c[1] - 86.5) <= 10


def apply(cal, s):
    if cal.scale is None:
        return s
    return s * cal.scale * size_factor(s, cal.power, cal.ref_m)


def group_of(h, edges):
    """Group index per sample: edges (1, 2, 3) -> 1 | 2 | 3+."""
    g = np.zeros(len(h), dtype=int)
    for i, lo in enumerate(edges):
        g[h >= lo] = i
    return g


def per_group(fit, e, s, h, fold, st, ht, edges):
    out = np.full_like(st, np.nan)
    g, gt = group_of(h, edges), group_of(ht, edges)
    cals = []
    for i in range(len(edges)):
        cal = fit(e[g == i], s[g == i], fold[g == i] if fold is not None else None)
        cals.append(cal)
        out[gt == i] = apply(cal, st[gt == i])
    return out, cals


def fit_folds(e, s, f):
    return fit_sigma_folds(e, s, f)


def fit_pooled(e, s, f):
    return fit_sigma_scale(e, s)


def fit_pooled_scale(e, s, f):
    return fit_sigma_scale(e, s, method="coverage")


def row(label, c):
    return f"{label} {c[0]:.0f}/{c[1]:.0f}{' OK' if ok(c) else ''}"


def antwerp(z, path):
    """Random split: the maps are fitted on val (per group of gateways heard: 3 | 4 | 5+, 3 | 4+, 3-4 | 5+)."""
    et, st, ht, ev, sv, hv = z["et"], z["st"], z["ht"], z["ev"], z["sv"], z["hv"]
    r = np.linalg.norm
    print(path, "val", len(ev), "test", len(et))
    for lo, hi in ((3, 3), (4, 4), (5, 5), (6, 99)):
        v, t = (hv >= lo) & (hv <= hi), (ht >= lo) & (ht <= hi)
        print(f"  heard {lo}{'+' if hi > lo else ''}: share val {np.mean(v):.2f} test {np.mean(t):.2f}; "
              f"median error val {np.median(r(ev[v], axis=1)):.0f} m, test {np.median(r(et[t], axis=1)):.0f} m")
    res = [row("val one map", cov(et, apply(fit_sigma_scale(ev, sv), st)))]
    for edges in ((3, 4, 5), (3, 4), (3, 5)):
        for label, fit in (("pooled", fit_pooled), ("pooled scale only", fit_pooled_scale)):
            s_new, cals = per_group(fit, ev, sv, hv, None, st, ht, edges)
            res.append(row(f"groups from {edges} {label} [" + ", ".join(
                f"s {c.scale:.2f} p {c.power:g}" for c in cals) + "]", cov(et, s_new)))
    print("  " + "\n  ".join(res))


def pseudo_areas(eo, so, ho, fold):
    """Each fold of squares as a test area, every map fitted on the other folds' rows: within-goal counts."""
    wins = {}
    for f in np.unique(fold):
        fit_rows, test_rows = fold != f, fold == f
        # re-number the remaining folds 0..3 for the worst-fold fits
        e, s, h, fd = eo[fit_rows], so[fit_rows], ho[fit_rows], fold[fit_rows]
        et, st, ht = eo[test_rows], so[test_rows], ho[test_rows]
        maps = {"blocks one map (worst fold)": apply(fit_sigma_folds(e, s, fd), st),
                "one map pooled": apply(fit_sigma_scale(e, s), st)}
        for label, fit in (("worst fold", fit_folds), ("pooled", fit_pooled)):
            maps[f"groups 1|2|3+ {label}"] = per_group(fit, e, s, h, fd, st, ht, (1, 2, 3))[0]
        for k, v in maps.items():
            wins.setdefault(k, []).append(ok(cov(et, v)))
    return {k: sum(v) for k, v in wins.items()}


def main():
    for path in sys.argv[1:]:
        z = np.load(path)
        if "e_oof" not in z:
            antwerp(z, path)
            continue
        eo, so, ho, fold = z["e_oof"], z["s_oof"], z["h_oof"], z["fold"]
        good = np.isfinite(eo).all(1) & np.isfinite(so).all(1) & (so > 0).all(1)
        eo, so, ho, fold = eo[good], so[good], ho[good], fold[good]
        et, st, ht = z["et"], z["st"], z["ht"]
        ev, sv, hv = z["ev"], z["sv"], z["hv"]
        r = np.linalg.norm
        print(path)
        for lo, hi in ((1, 1), (2, 2), (3, 99)):
            so_g, te_g = (ho >= lo) & (ho <= hi), (ht >= lo) & (ht <= hi)
            print(f"  heard {lo}{'+' if hi > lo else ''}: share oof {np.mean(so_g):.2f} test {np.mean(te_g):.2f}; "
                  f"median error oof {np.median(r(eo[so_g], axis=1)):.0f} m, test {np.median(r(et[te_g], axis=1)):.0f} m")
        res = [row("val one map", cov(et, apply(fit_sigma_scale(ev, sv), st))),
               row("blocks one map (worst fold)", cov(et, apply(fit_sigma_folds(eo, so, fold), st)))]
        for edges in ((1, 2, 3), (1, 2)):
            name = "1|2|3+" if len(edges) == 3 else "1|2+"
            for label, fit in (("worst fold", fit_folds), ("pooled", fit_pooled), ("pooled scale only", fit_pooled_scale)):
                s_new, cals = per_group(fit, eo, so, ho, fold, st, ht, edges)
                res.append(row(f"groups {name} {label} [" + ", ".join(
                    f"s {c.scale:.2f} p {c.power:g}" for c in cals) + "]", cov(et, s_new)))
        s_new, _ = per_group(fit_folds, eo, so, ho, fold, st, ht, (1, 2, 3))
        gt = group_of(ht, (1, 2, 3))
        res.append("groups 1|2|3+ worst fold, test per group: " + ", ".join(
            "{} {:.0f}/{:.0f}".format(("1", "2", "3+")[i], *cov(et[gt == i], s_new[gt == i])) for i in range(3)))
        print("  " + "\n  ".join(res))
        print("  pseudo test areas within 10 points (of 5):", pseudo_areas(eo, so, ho, fold))


if __name__ == "__main__":
    main()
