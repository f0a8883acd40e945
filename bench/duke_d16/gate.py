"""Duke CBRS (issue 15, brief D16): gating by cells heard and sigma maps, chosen out of fold, read on test.

Reads ``d16_s{i}.npz`` (and ``d16nh_s{i}.npz`` if present) of ``dump_answers.py`` (out-of-fold answers over 5 folds
of 200 m squares of train + val, test answers, posterior spreads). For each split:

- every candidate (kNN, each fitted-cell grid posterior) alone: out-of-fold and test median / mean;
- gating: per group of cells heard (1, 2, 3+) the candidate with the best out-of-fold (median + mean) / 2 of
  that group (and, as a variant, the best median) answers; test figures against kNN's test median;
- reference only (chosen on test, not a result): the best candidate per group on test;
- sigma: the gated answer's sigma is the answering candidate's posterior spread (kNN: its neighbours' spread),
  floored at ``SIGMA_FLOOR_M``; calibrated with the core's worst-fold power map (``fit_sigma_folds``) once, or
  once per group of cells heard, or with the spread's power per group; test shares inside 1 and 2 sigma.

Usage from the project root: ``PYTHONPATH=$PWD .venv/bin/python bench/duke_d16/gate.py OUT 0 1 2 [--first-set]``
(``--first-set``: the candidates of ``d16_s{i}.npz`` only, the pool measured before the second set was added)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from rflocal_core.metrics import EXPECTED_1SIGMA, EXPECTED_2SIGMA
from rflocal_core.train.calibrate import fit_sigma_folds, size_factor

SIGMA_FLOOR_M = 5.0
GROUPS = ((1, 1), (2, 2), (3, 6))


def group_of(rss: np.ndarray) -> np.ndarray:
    """0, 1, 2 for samples hearing 1, 2, 3+ cells."""
    n = np.isfinite(rss).sum(1)
    return np.clip(n, 1, 3) - 1


def score(e: np.ndarray, how: str) -> float:
    """Selection score of errors ``e``: (median + mean) / 2 (the project's choice rule) or the median."""
    return float(np.median(e)) if how == "median" else float((np.median(e) + np.mean(e)) / 2)


def load(path: Path, second_set: bool = True) -> dict:
    """Per candidate: oof / test answers and spreads; rows, folds, groups and truths. ``path``: the
    ``d16_s{i}.npz`` of ``dump_answers.py``; the ``d16nh_s{i}.npz`` next to it (second set) joins if present."""
    z = np.load(path)
    rows = z["oof_fold"] >= 0
    d = {"names": [], "fold": z["oof_fold"][rows], "oof_xy": z["oof_xy"][rows], "test_xy": z["test_xy"],
         "oof_g": group_of(z["oof_rss"][rows]), "test_g": group_of(z["test_rss"])}
    more = path.with_name(path.name.replace("d16_", "d16nh_"))
    for zz in [z] + ([np.load(more)] if second_set and more.exists() else []):
        if not np.array_equal(zz["oof_fold"], z["oof_fold"]):
            raise ValueError(f"{more}: other out-of-fold rows than {path}")
        for n in sorted({k.split("/", 1)[1] for k in zz.files if k.startswith("test_ans/")} - set(d["names"])):
            d["names"].append(n)
            for part in ("oof", "test"):
                r = rows if part == "oof" else slice(None)
                d[f"{part}_ans/{n}"], d[f"{part}_cov/{n}"] = zz[f"{part}_ans/{n}"][r], zz[f"{part}_cov/{n}"][r]
    return d


def gated(d: dict, part: str, choice: list[str], source: str = "own") -> tuple[np.ndarray, np.ndarray]:
    """Answers [N, 2] and per-axis sigmas [N, 2] of the gate ``choice`` (one candidate per group). The sigma
    ``source``: ``own`` (the answering candidate's posterior or neighbour spread), ``knn`` (kNN's neighbour
    spread whoever answers) or ``const`` (1 m: the calibration alone sets it)."""
    g = d[f"{part}_g"]
    ans, sig = np.zeros((len(g), 2)), np.ones((len(g), 2))
    for gi, n in enumerate(choice):
        m = g == gi
        ans[m] = d[f"{part}_ans/{n}"][m]
        if source != "const":
            cov = d[f"{part}_cov/{n if source == 'own' else 'knn'}"][m]
            sig[m] = np.sqrt(np.maximum(cov[:, :2], SIGMA_FLOOR_M ** 2))
    return ans, sig


def coverage(err: np.ndarray, sig: np.ndarray, scale: float, power: float, ref: float | None) -> tuple[float, float]:
    """Shares inside the 1 and 2 sigma ellipses after the power map."""
    d2 = ((err / (scale * sig * size_factor(sig, power, ref))) ** 2).sum(1)
    return float(np.mean(d2 <= 1)), float(np.mean(d2 <= 4))


def sigma_rows(d: dict, choice: list[str]) -> list[str]:
    """:func:`sigma_rows_of` for each sigma source."""
    return [f"{src} {r}" for src in ("own", "knn", "const") for r in sigma_rows_of(d, choice, src)]


def sigma_rows_of(d: dict, choice: list[str], source: str) -> list[str]:
    """Test coverage of the gate's sigma: one worst-fold map, and one map per group of cells heard."""
    e_o, s_o = gated(d, "oof", choice, source)
    e_t, s_t = gated(d, "test", choice, source)
    e_o, e_t = e_o - d["oof_xy"], e_t - d["test_xy"]
    out = []
    cal = fit_sigma_folds(e_o, s_o, d["fold"])
    c1, c2 = coverage(e_t, s_t, cal.scale, cal.power, cal.ref_m)
    out.append(f"one map (s {cal.scale:.2f}, p {cal.power:g}): test {100 * c1:.0f}/{100 * c2:.0f}"
               + (" ok" if abs(c1 - EXPECTED_1SIGMA) <= .1 and abs(c2 - EXPECTED_2SIGMA) <= .1 else ""))
    d2 = np.zeros(len(e_t))
    for gi in range(len(GROUPS)):
        mo, mt = d["oof_g"] == gi, d["test_g"] == gi
        cal = fit_sigma_folds(e_o[mo], s_o[mo], d["fold"][mo])
        d2[mt] = ((e_t[mt] / (cal.scale * s_t[mt] * size_factor(s_t[mt], cal.power, cal.ref_m))) ** 2).sum(1)
    c1, c2 = float(np.mean(d2 <= 1)), float(np.mean(d2 <= 4))
    out.append(f"a map per group: test {100 * c1:.0f}/{100 * c2:.0f}"
               + (" ok" if abs(c1 - EXPECTED_1SIGMA) <= .1 and abs(c2 - EXPECTED_2SIGMA) <= .1 else ""))
    return out


def err_of(d: dict, part: str, n: str) -> np.ndarray:
    """Per-sample errors of candidate ``n`` on ``part``."""
    return np.linalg.norm(d[f"{part}_ans/{n}"] - d[f"{part}_xy"], axis=1)


def split_report(d: dict, s: int) -> dict:
    """Print and return the split's figures."""
    knn_t = float(np.median(err_of(d, "test", "knn")))
    rec: dict = {"split": s, "knn_test_median_m": knn_t, "candidates": {}, "gates": {}}
    print(f"split {s}: kNN test median {knn_t:.0f} m (goal <= {0.85 * knn_t:.0f}); test groups 1/2/3+: "
          + " / ".join(f"{np.mean(d['test_g'] == g):.2f}" for g in range(3)))
    for n in d["names"]:
        eo, et = err_of(d, "oof", n), err_of(d, "test", n)
        by = [(float(np.median(eo[d["oof_g"] == g])), float(np.median(et[d["test_g"] == g]))) for g in range(3)]
        rec["candidates"][n] = {"oof": [float(np.median(eo)), float(eo.mean())],
                                "test": [float(np.median(et)), float(et.mean())], "by_group_oof_test": by}
        print(f"  {n:26s} oof {np.median(eo):4.0f} / {eo.mean():4.0f}  test {np.median(et):4.0f} / {et.mean():4.0f}"
              f" ({np.median(et) / knn_t:.2f}x)  groups oof|test " + "  ".join(f"{a:.0f}|{b:.0f}" for a, b in by))
    best = min(d["names"], key=lambda n: float(np.median(err_of(d, "test", n))))
    rec["best_single_on_test_reference"] = best
    print(f"  best single candidate on test (reference, not a result): {best} "
          f"{np.median(err_of(d, 'test', best)):.0f} m = {np.median(err_of(d, 'test', best)) / knn_t:.2f}x kNN")
    for how in ("median_mean", "median", "test_reference"):
        choice = []
        for g in range(3):
            part = "test" if how == "test_reference" else "oof"
            m = d[f"{part}_g"] == g
            crit = "median" if how != "median_mean" else how
            choice.append(min(d["names"], key=lambda n: score(err_of(d, part, n)[m], crit)))
        ans, _ = gated(d, "test", choice)
        et = np.linalg.norm(ans - d["test_xy"], axis=1)
        rows = sigma_rows(d, choice) if how != "test_reference" else []
        rec["gates"][how] = {"choice": choice, "test": [float(np.median(et)), float(et.mean())],
                             "ratio": float(np.median(et) / knn_t), "sigma": rows}
        print(f"  gate by {how}: {choice}: test {np.median(et):.0f} / {et.mean():.0f} m = "
              f"{np.median(et) / knn_t:.2f}x kNN" + "".join(f"; sigma {r}" for r in rows))
    return rec


if __name__ == "__main__":
    args = sys.argv[1:]
    first_only = "--first-set" in args  # the first configuration set alone (as measured before the second)
    args = [a for a in args if a != "--first-set"]
    out = Path(args[0])
    recs = [split_report(load(out / f"d16_s{int(a)}.npz", not first_only), int(a)) for a in args[1:]]
    (out / ("d16_gate_first.json" if first_only else "d16_gate.json")).write_text(json.dumps(recs, indent=1))
