"""Duke (brief C15): choose the grid-posterior options on 5 folds of 200 m squares of train + val instead of on
val (3-8 squares, unlike test). Per fold the cells are re-optimised without the fold's squares (one local run
from the split's train fit, c15_s{i}_cells.json written by study.py) and a kNN like ``knn``'s (floor -140 dBm,
softmin tau 1 dB, the split's val-chosen k) is built on the other squares; every configuration of study.py is
scored on the pooled out-of-fold answers by (median + mean) / 2, then the fold choice is read on test.

Usage from the project root: ``PYTHONPATH=$PWD nice -n 10 .venv/bin/python bench/duke_c15/folds.py DUMP_DIR 0 1 2``
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import cellfit as cf  # noqa: E402
import study as st  # noqa: E402

FOLDS = 5
BLOCK_M = 200.0
FLOOR_DBM = -140.0
TAU_DB = 1.0


def fold_configs() -> list[dict]:
    """The few configurations scored on the folds (all of study.py's would take hours on the shared cores)."""
    def c(tau, prior, alpha, knn_h):
        return {"tau": tau, "prior_h_m": prior[0], "prior_eps": prior[1], "alpha": alpha, "knn_h_m": knn_h,
                "how": "gmed"}
    none, walked = (None, 0), (100, 0.3)
    return [c(1.0, none, 0.0, None), c(1.0, walked, 0.0, None), c(0.3, walked, 0.0, None),
            c(1.0, none, 1.0, 200), c(1.0, none, 1.0, 100), c(0.3, none, 1.0, 200), c(1.0, walked, 1.0, 200),
            c(0.0, none, 1.0, 100)]


def knn_neighbours(ref_rss, ref_xy, q_rss, k):
    """Positions [N, k, 2] and softmin weights [N, k] of the k nearest fingerprints (as ``knn`` on Duke)."""
    a, b = np.nan_to_num(q_rss, nan=FLOOR_DBM), np.nan_to_num(ref_rss, nan=FLOOR_DBM)
    d = np.sqrt(np.maximum((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T, 0))
    nn = np.argpartition(d, k - 1, axis=1)[:, :k]
    dk = np.take_along_axis(d, nn, 1)
    w = np.exp(-(dk - dk.min(1, keepdims=True)) / TAU_DB)
    return ref_xy[nn], w / w.sum(1, keepdims=True)


def oof(z: dict, cells: list, seed: int, g: np.ndarray) -> dict:
    """Out-of-fold errors of every configuration over train + val, and kNN's."""
    xy, rss = np.r_[z["train_xy"], z["val_xy"]], np.r_[z["train_rss"], z["val_rss"]]
    k = z["val_nnw"].shape[1]
    sq = np.floor(xy / BLOCK_M).astype(int)
    keys, inv = np.unique(sq, axis=0, return_inverse=True)
    fold_of_sq = np.random.default_rng(seed).permutation(len(keys)) % FOLDS
    fold = fold_of_sq[inv.ravel()]
    errs: dict = {}
    for f in range(FOLDS):
        te, tr = fold == f, fold != f
        cf_cells = [cf.refit_cell(xy[tr], rss[tr, c], p) for c, p in enumerate(cells)]
        zz = {"train_xy": xy[tr], "train_rss": rss[tr], "oof_xy": xy[te], "oof_rss": rss[te]}
        zz["oof_nnpos"], zz["oof_nnw"] = knn_neighbours(rss[tr], xy[tr], rss[te], k)
        zz["oof_knn"] = (zz["oof_nnpos"] * zz["oof_nnw"][..., None]).sum(1)
        e_knn = np.linalg.norm(zz["oof_knn"] - xy[te], axis=1)
        errs.setdefault("knn", []).append(e_knn)
        for key, e in st.errors_each(zz, "oof", cf_cells, g, {}, fold_configs()).items():
            errs.setdefault(key, []).append(e)
        print(f"  fold {f}: {te.sum()} samples, kNN median {np.median(e_knn):.0f} m", flush=True)
    return {key: np.concatenate(v) for key, v in errs.items()}


def main(dump: Path, seeds: list[int]) -> None:
    for s in seeds:
        z = dict(np.load(dump / f"duke_s{s}.npz"))
        cells = json.loads((dump / f"c15_s{s}_cells.json").read_text())
        g = cf.grid(z["train_xy"], st.STEP_M, st.MARGIN_M)
        e = oof(z, cells, s, g)
        score = {key: (np.median(v) + np.mean(v)) / 2 for key, v in e.items()}
        ev = json.loads((dump / f"c15_s{s}_eval.json").read_text())
        print(f"split {s}: out-of-fold kNN median / mean {np.median(e['knn']):.0f} / {np.mean(e['knn']):.0f}")
        for key in sorted(score, key=score.get)[:8]:
            t = ev["test"].get(key)
            print(f"  fold-ranked {key}: oof {np.median(e[key]):.0f} / {np.mean(e[key]):.0f}"
                  + (f", test {t[0]:.0f} / {t[1]:.0f}" if t else " (kNN itself)"))
        np.savez(dump / f"c15_s{s}_oof.npz", **{k: v for k, v in e.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(a) for a in sys.argv[2:]])
