"""Where do the >1 km misses' candidates lie in kmap's posterior? (brief B18, step 1, second half).

Usage: python posterior_mass.py B17_OOF.npz
B17_OOF: bench/antwerp_b17/oof.py's output (kmap out of fold on all of x_val, its posterior over its 1,000 best
training positions). Per row: the posterior mass within 100 / 250 m of the truth, the rank of the first candidate
within 100 m of the truth, and whether any of the 1,000 lies there; compared for the >1 km misses and the rest.
No test rows.
"""
import sys

import numpy as np


def main() -> None:
    o = np.load(sys.argv[1])
    truth, pp, pw = o["truth"], o["post_pos"].astype(np.float64), o["post_w"].astype(np.float64)
    pw = pw / pw.sum(1, keepdims=True)
    order = np.argsort(-pw, axis=1, kind="stable")  # neighbours() keeps argpartition's order: rank by weight
    pw, pp = np.take_along_axis(pw, order, 1), np.take_along_axis(pp, order[..., None], 1)
    ki = list(o["names"]).index("kmap")
    err = np.hypot(*(o["pos"][ki] - truth).T)
    d = np.hypot(*(pp - truth[:, None, :]).transpose(2, 0, 1))  # [N, K] candidate to truth
    near = d < 100
    first = np.where(near.any(1), near.argmax(1), -1)
    for label, rows in (("kmap >1 km misses", err > 1000), ("kmap 250 m-1 km", (err > 250) & (err <= 1000)),
                        ("kmap <= 250 m", err <= 250)):
        m100 = (pw[rows] * (d[rows] < 100)).sum(1)
        m250 = (pw[rows] * (d[rows] < 250)).sum(1)
        f = first[rows]
        print(f"{label}: {rows.sum()} rows; posterior mass within 100 m of truth median {np.median(m100):.3f} "
              f"(mean {m100.mean():.3f}), within 250 m median {np.median(m250):.3f} (mean {m250.mean():.3f}); "
              f"a candidate within 100 m among the 1,000: {np.mean(f >= 0) * 100:.0f}%, its rank by weight (0 = best) median "
              f"{np.median(f[f >= 0]):.0f} (P25 {np.percentile(f[f >= 0], 25):.0f}, "
              f"P75 {np.percentile(f[f >= 0], 75):.0f})")
    # the top candidate's distance to truth vs the mass-weighted spread: are the misses confident?
    top = np.hypot(*(pp[:, 0] - truth).T)
    spread = np.sqrt((pw * ((pp - (pw[..., None] * pp).sum(1, keepdims=True)) ** 2).sum(-1)).sum(1))
    for label, rows in (("misses", err > 1000), ("rest", err <= 1000)):
        print(f"{label}: top-1 candidate to truth median {np.median(top[rows]):.0f} m; posterior spread median "
              f"{np.median(spread[rows]):.0f} m; gateways heard median {np.median(o['heard'][rows]):.0f}")


if __name__ == "__main__":
    main()
