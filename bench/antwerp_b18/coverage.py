"""Are Antwerp's >1 km misses messages whose truth is far from every training position? (brief B18, step 1).

Usage: python coverage.py B16_DUMP.npz B17_OOF.npz
B16_DUMP: bench/antwerp_b16/dump.py's output (the best ensemble's members on val, fitted on train, and on test,
the run refitted on train + val). B17_OOF: bench/antwerp_b17/oof.py's output (kgm, kmap, kmap100 out of fold on
all of x_val, 5 folds). For each row: the distance from its truth to the nearest position the answering model was
trained on; the share of >1 km misses and their share of the error sum per band of that distance.
Test rows are described after the fact only (nothing is chosen on them).
"""
import sys

import numpy as np
from scipy.spatial import cKDTree

BANDS_M = (0, 50, 100, 200, 300, 500, 1000, np.inf)


def table(label: str, near_m: np.ndarray, err_m: np.ndarray) -> None:
    """Print per band of nearest-training distance: rows, median / mean error, >1 km misses."""
    miss = err_m > 1000
    print(f"\n{label}: {len(err_m)} rows, median {np.median(err_m):.1f} / mean {err_m.mean():.1f} m, "
          f">1 km {miss.mean() * 100:.1f}% of rows, {err_m[miss].sum() / err_m.sum() * 100:.0f}% of error sum; "
          f"nearest-training distance median {np.median(near_m):.0f} m, P90 {np.percentile(near_m, 90):.0f} m")
    print(f"{'band m':>12} {'rows%':>6} {'median':>7} {'mean':>7} {'>1km%':>6} {'share of >1km':>14} "
          f"{'share err sum':>13}")
    for lo, hi in zip(BANDS_M[:-1], BANDS_M[1:], strict=True):
        b = (near_m >= lo) & (near_m < hi)
        if not b.any():
            continue
        print(f"{lo:>5.0f}-{hi:<6.0f} {b.mean() * 100:6.1f} {np.median(err_m[b]):7.0f} {err_m[b].mean():7.0f} "
              f"{miss[b].mean() * 100:6.1f} {(miss & b).sum() / max(miss.sum(), 1) * 100:14.1f} "
              f"{err_m[b].sum() / err_m.sum() * 100:13.1f}")
    m = miss
    print(f"  the >1 km misses: nearest-training distance median {np.median(near_m[m]):.0f} m, "
          f"P90 {np.percentile(near_m[m], 90):.0f} m; {np.mean(near_m[m] > 500) * 100:.0f}% over 500 m, "
          f"{np.mean(near_m[m] > 200) * 100:.0f}% over 200 m")
    far = near_m > 50
    print(f"  bound: every row > 50 m from training ({far.mean() * 100:.1f}%) answered exactly: mean "
          f"{np.where(far, 0.0, err_m).mean():.1f} m (now {err_m.mean():.1f}); answered at its nearest training "
          f"position: {np.where(far, near_m, err_m).mean():.1f} m")


def main() -> None:
    dump, oof = np.load(sys.argv[1]), np.load(sys.argv[2])
    truth_all, is_val, fold = oof["truth"], oof["is_val"], oof["fold"]
    train_xy = truth_all[~is_val]
    # val (b16 split): the ensemble fitted on train
    vt = dump["val_truth"]
    near_val = cKDTree(train_xy).query(vt)[0]
    table("VAL ensemble answer (members fitted on train)", near_val, np.hypot(*(dump["val_answer"] - vt).T))
    # out of fold on all of x_val
    near_oof = np.empty(len(truth_all))
    for f in np.unique(fold):
        held = fold == f
        near_oof[held] = cKDTree(truth_all[~held]).query(truth_all[held])[0]
    for j, name in enumerate(oof["names"]):
        table(f"OUT-OF-FOLD x_val, {name}", near_oof, np.hypot(*(oof["pos"][j] - truth_all).T))
    # test, described after the fact: the refit run trained on train + val
    tt = dump["test_truth"]
    near_test = cKDTree(truth_all).query(tt)[0]
    table("TEST (after the fact, description only) ensemble answer", near_test,
          np.hypot(*(dump["test_answer"] - tt).T))
    i = ["kgm", "lgbm", "fpnet_knn", "fpnet", "kmap", "kmap100"].index("kmap")
    table("TEST (description only) kmap member", near_test, np.hypot(*(dump["test_member_pos"][i] - tt).T))
    best = np.hypot(*(dump["test_member_pos"] - tt[None]).transpose(2, 0, 1)).min(0)
    table("TEST (description only) best member per message (oracle)", near_test, best)


if __name__ == "__main__":
    main()
