"""Duke (brief D16): why one-cell test samples stay far off. For each cell heard alone by at least 10 test
samples: where those test samples lie (their coordinate-wise median and spread), how far the training samples
that hear that cell alone lie from there (any answer learnt from training puts its mass near those), and the
test median error of kNN and of two fitted-cell posteriors on that group; and what the training walks heard
within 100 m of there (do they hear that cell at all?) against the test walks.

Usage from the project root: ``PYTHONPATH=$PWD .venv/bin/python bench/duke_d16/one_cell.py OUT C15_DUMP 0 1 2``
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import gate  # noqa: E402

SHOWN = ("knn", "t1-walk200/0.3", "t1-flat")


def main(out: Path, dump: Path, seeds: list[int]) -> None:
    for s in seeds:
        d = gate.load(out / f"d16_s{s}.npz")
        heard = np.isfinite(np.load(out / f"d16_s{s}.npz")["test_rss"])
        one, cell = heard.sum(1) == 1, np.argmax(heard, 1)
        c15 = np.load(dump / f"duke_s{s}.npz")
        tr_heard = np.isfinite(c15["train_rss"])
        tr_one, tr_cell = tr_heard.sum(1) == 1, np.argmax(tr_heard, 1)
        for c in range(heard.shape[1]):
            m = one & (cell == c)
            if m.sum() < 10:
                continue
            centre = np.median(d["test_xy"][m], 0)
            spread = np.median(np.linalg.norm(d["test_xy"][m] - centre, axis=1))
            dtr = np.linalg.norm(c15["train_xy"][tr_one & (tr_cell == c)] - centre, axis=1)
            errs = "; ".join(f"{n} {np.median(gate.err_of(d, 'test', n)[m]):.0f}" for n in SHOWN)
            near_tr = np.linalg.norm(c15["train_xy"] - centre, axis=1) < 100
            near_te = np.linalg.norm(d["test_xy"] - centre, axis=1) < 100
            heard_here = (f"within 100 m of the centre, train: {near_tr.sum()} samples, "
                          f"{tr_heard[near_tr, c].mean() if near_tr.any() else np.nan:.2f} hear {'ABCDEF'[c]}, "
                          f"{tr_heard[near_tr].sum(1).mean() if near_tr.any() else np.nan:.2f} cells heard in mean; "
                          f"test: {near_te.sum()}, {heard[near_te, c].mean():.2f}, {heard[near_te].sum(1).mean():.2f}")
            print(f"split {s} cell {'ABCDEF'[c]}: {m.sum()} test samples hear it alone, centre {centre.round()} m, "
                  f"spread {spread:.0f} m; {len(dtr)} training samples hear it alone, {np.mean(dtr < 100):.2f} of "
                  f"them within 100 m of that centre, p10/p50 {np.percentile(dtr, 10):.0f}/{np.median(dtr):.0f} m; "
                  f"test median error {errs} m; {heard_here}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [int(a) for a in sys.argv[3:]])
