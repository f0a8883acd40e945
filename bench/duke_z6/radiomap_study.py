"""Duke: does ``knn --set radio_map_m=...`` beat plain kNN by 15% in median? (brief Z6, issue 15, study).

Per area split (200 m squares, seeds 0 1 2, as ``bench/bench_real.py``): plain ``knn`` (defaults, k and
the not-heard floor chosen on val) against the radio-map kNN of ``rflocal_core/models/radiomap.py``.
The radio-map grid (bandwidth, sigma, weight, k, estimate, floor) is scored on VAL only, with the same
arithmetic as ``KNNFingerprint._map_score`` / ``_neighbour_weights`` (fingerprint distance minus
tau x weight x the map log-likelihood, softmin over the k best); the configuration chosen on val is then
re-run through the real model (``KNNFingerprint(KNNConfig(radio_map_m=...))``, i.e. ``knn --set ...``)
and its test figures are the ones reported (the offline and model figures are printed side by side).
A two-member blend (plain kNN, radio-map kNN; weight on val, grid 0.1) is reported as the cheap ensemble.

Usage: cd WORKTREE && PYTHONPATH=$PWD nice -n 10 python bench/duke_z6/radiomap_study.py WORKSPACE [seeds...]
"""
import itertools
import os
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from pathlib import Path

import numpy as np

from bench.bench_real import SETS, ensure_dataset
from rflocal_core.models import KNNFingerprint, load_inputs
from rflocal_core.models.baselines import KNNConfig, weighted_geometric_median
from rflocal_core.models.radiomap import fit_radio_map, radio_map_loglik

DATA = Path("/work/shared/data/real")
BANDWIDTHS = (25.0, 50.0, 100.0, 200.0, 400.0)
SIGMAS = (2.0, 4.0, 8.0)
WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 16.0)
KS = (5, 15, 30, 60)
FLOORS = (-120.0, -140.0)
ESTIMATES = ("mean", "median")


def errs(p, t):
    return np.linalg.norm(p - t, axis=1)


def crit(e):
    return 0.5 * (np.median(e) + e.mean())


def heard(x):
    return np.isfinite(x.rss_dbm[:, : x.fixed_slots]).sum(1)


def groups(e, h):
    return " ".join(f"h{g}{'+' if g == 3 else ''} {np.median(e[(h == g) if g < 3 else (h >= 3)]):.0f}" for g in (1, 2, 3))


def fp_dist(q, ref):
    d2 = (q**2).sum(1)[:, None] + (ref**2).sum(1)[None] - 2 * q @ ref.T
    return np.sqrt(np.maximum(d2, 0.0))


def best(score, k):
    """The k best (lowest) columns per row, sorted, and their scores (one partition serves every smaller k)."""
    nn = np.argpartition(score, k - 1, axis=1)[:, :k]
    dk = np.take_along_axis(score, nn, 1)
    o = np.argsort(dk, 1)
    return np.take_along_axis(nn, o, 1), np.take_along_axis(dk, o, 1)


def estimates(top, pos, k, tau):
    """Softmin over the k best scores: weighted mean and weighted geometric median."""
    nn, dk = top[0][:, :k], top[1][:, :k]
    w = np.exp(-(dk - dk.min(1, keepdims=True)) / tau)
    w /= w.sum(1, keepdims=True)
    mean = (w[..., None] * pos[nn]).sum(1)
    return {"mean": mean, "median": weighted_geometric_median(pos[nn], w, start=mean)}


def scan(raw_tr, pos, parts, tau):
    """Offline grid on val (test figures kept aside); rows (val crit, val med, val mean, cfg, test errors)."""
    rows = []
    D = {(f, p): fp_dist(np.where(np.isfinite(c["raw"]), c["raw"], f), np.where(np.isfinite(raw_tr), raw_tr, f))
         for f in FLOORS for p, c in parts.items()}
    nan_xy = np.full((raw_tr.shape[1], 2), np.nan)  # Duke: no cell position is known
    for h in BANDWIDTHS:
        m = fit_radio_map(pos, raw_tr, nan_xy, bandwidth_m=h)
        for s in SIGMAS:
            L = {}
            for p, c in parts.items():
                ll = radio_map_loglik(c["raw"], m["p_heard"], m["mean_dbm"], s)
                L[p] = ll - ll.max(1, keepdims=True)
            for f, w in itertools.product(FLOORS, WEIGHTS):
                top = {p: best(D[(f, p)] - tau * w * L[p], max(KS)) for p in parts}
                for k in KS:
                    ev = estimates(top["val"], pos, k, tau)
                    et = estimates(top["test"], pos, k, tau)
                    for est in ESTIMATES:
                        e = errs(ev[est], parts["val"]["truth"])
                        rows.append((crit(e), float(np.median(e)), float(e.mean()),
                                     {"radio_map_m": h, "radio_map_sigma_db": s, "radio_map_weight": w, "k": k,
                                          "floor_dbm": f, "estimate": est}, errs(et[est], parts["test"]["truth"]),
                                     ev[est], et[est]))
        print(f"    scanned h={h:g} ({len(rows)} rows)", flush=True)
    return rows


def blend(pa, pb, ta, tb, truth_v):
    """Weight of member a on val (grid 0.1, median_mean), its val and test positions."""
    best = min((crit(errs(a * pa + (1 - a) * pb, truth_v)), a) for a in np.linspace(0, 1, 11))
    a = best[1]
    return a, a * ta + (1 - a) * tb


def main():
    seeds = [int(s) for s in sys.argv[2:]] or [0, 1, 2]
    for seed in seeds:
        t0 = time.time()
        ds = ensure_dataset(SETS["duke"], DATA, seed)["dataset"]
        tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
        base = KNNFingerprint().fit(tr, va)
        st = base.state_dict()
        bv, bt = base.predict(va).position_m, base.predict(te).position_m
        ebt, ebv = errs(bt, te.truth_m), errs(bv, va.truth_m)
        ht = heard(te)
        med0 = float(np.median(ebt))
        print(f"{ds} knn k {st['k']} floor {st['floor_dbm']} tau {st['tau_db']:.2f}: val {np.median(ebv):.0f}/{ebv.mean():.0f} "
              f"test {med0:.0f}/{ebt.mean():.0f} [{groups(ebt, ht)}]  goal <= {0.85 * med0:.0f}", flush=True)
        ok = np.isfinite(tr.truth_m).all(1)
        raw_tr, pos = tr.rss_dbm[ok, : tr.fixed_slots], tr.truth_m[ok]
        parts = {"val": {"raw": va.rss_dbm[:, : va.fixed_slots], "truth": va.truth_m},
                 "test": {"raw": te.rss_dbm[:, : te.fixed_slots], "truth": te.truth_m}}
        rows = scan(raw_tr, pos, parts, float(st["tau_db"]))
        for name, key in (("median_mean", 0), ("median", 1)):
            rows.sort(key=lambda r: r[key])
            print(f"  val-chosen by {name}: top 3 on val (test only for the first is reported)")
            for r in rows[:3]:
                print(f"    val {r[1]:.0f}/{r[2]:.0f} {r[3]}")
            c, et = rows[0][3], rows[0][4]
            m = KNNFingerprint(KNNConfig(**c)).fit(tr, None)
            pt, pv = m.predict(te).position_m, m.predict(va).position_m
            e_model = errs(pt, te.truth_m)
            ev = errs(pv, va.truth_m)
            print(f"    -> offline test {np.median(et):.0f}/{et.mean():.0f}; model (knn --set) val {np.median(ev):.0f}/"
                  f"{ev.mean():.0f} test {np.median(e_model):.0f}/{e_model.mean():.0f} "
                  f"ratio {np.median(e_model) / med0:.2f} [{groups(e_model, ht)}]", flush=True)
            a, pb = blend(pv, bv, pt, bt, va.truth_m)
            eb = errs(pb, te.truth_m)
            print(f"    blend {a:.1f} x map + {1 - a:.1f} x knn (val): test {np.median(eb):.0f}/{eb.mean():.0f} "
                  f"ratio {np.median(eb) / med0:.2f} [{groups(eb, ht)}]", flush=True)
        # what test would reward (NOT a choice: shows the room the grid has)
        best_test = min(rows, key=lambda r: np.median(r[4]))
        print(f"  oracle (best test median of the grid, not a result): {np.median(best_test[4]):.0f}/{best_test[4].mean():.0f} "
              f"{best_test[3]} val {best_test[1]:.0f}", flush=True)
        print(f"  seed {seed} took {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
