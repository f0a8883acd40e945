"""What makes kmap's >1 km misses: the message's gateways against those heard around its truth (brief B18, step 1).

Usage: python surprise.py WORKSPACE B17_OOF.npz
WORKSPACE: the b16 workspace (dataset ``antwerp``, split as in README "Real data: Antwerp"); B17_OOF:
bench/antwerp_b17/oof.py's output (same rows: train then val of x_val, 5 folds). Per message, the training
messages of the other folds within 100 m of its truth are its neighbourhood. A heard gateway is a surprise where
under 5% of the neighbourhood heard it; a missing gateway is a surprise where over 95% heard it; the RSS of a heard
gateway is compared with the neighbourhood's mean when heard there. Misses against the rest, and the miss rate against
the number of training messages within 100 m (sampling density). No test rows.
"""
import os
import sys
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.models import load_inputs  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402

RADIUS_M = 100.0


def main() -> None:
    o = np.load(sys.argv[2])
    x = join_inputs(load_inputs("antwerp", "train", with_maps=False), load_inputs("antwerp", "val", with_maps=False))
    assert np.allclose(x.truth_m, o["truth"]), "the rows differ from the out-of-fold file"
    raw = x.rss_dbm[:, : x.fixed_slots].astype(np.float64)
    heard = np.isfinite(raw)
    truth, fold = o["truth"], o["fold"]
    err = np.hypot(*(o["pos"][list(o["names"]).index("kmap")] - truth).T)
    n = len(truth)
    s_heard, s_missing, dev_db, n_near = np.zeros(n), np.zeros(n), np.full(n, np.nan), np.zeros(n)
    for f in np.unique(fold):
        fit = np.flatnonzero(fold != f)
        tree = cKDTree(truth[fit])
        for i in np.flatnonzero(fold == f):
            nb = fit[tree.query_ball_point(truth[i], RADIUS_M)]
            n_near[i] = len(nb)
            if len(nb) < 5:
                continue
            rate = heard[nb].mean(0)
            s_heard[i] = (heard[i] & (rate < 0.05)).sum()
            s_missing[i] = (~heard[i] & (rate > 0.95)).sum()
            both = heard[i] & (heard[nb].sum(0) >= 3)
            if both.any():
                local = np.nanmean(np.where(heard[nb][:, both], raw[nb][:, both], np.nan), 0)
                d = raw[i, both] - local
                dev_db[i] = np.abs(d - np.median(d)).mean()  # after a common device offset
    for label, rows in (("misses >1 km", err > 1000), ("250 m-1 km", (err > 250) & (err <= 1000)),
                        ("<= 250 m", err <= 250)):
        ok = rows & (n_near >= 5)
        print(f"{label}: {rows.sum()} rows, {ok.sum()} with >= 5 neighbourhood messages (median "
              f"{np.median(n_near[rows]):.0f}); >= 1 surprising heard gateway {np.mean(s_heard[ok] > 0) * 100:.0f}%, "
              f">= 1 surprising missing gateway {np.mean(s_missing[ok] > 0) * 100:.0f}%, either "
              f"{np.mean((s_heard[ok] + s_missing[ok]) > 0) * 100:.0f}%; RSS deviation from the neighbourhood "
              f"(after the offset) median {np.nanmedian(dev_db[ok]):.1f} dB")
    print(f"by training messages within {RADIUS_M:.0f} m of the truth (sampling density, out of fold):")
    miss = err > 1000
    for lo, hi in ((0, 1), (1, 5), (5, 20), (20, 50), (50, 200), (200, 10**9)):
        b = (n_near >= lo) & (n_near < hi)
        print(f"  {lo}-{hi}: {b.mean() * 100:5.1f}% of rows, kmap median {np.median(err[b]):5.0f} / mean "
              f"{err[b].mean():5.0f} m, >1 km {miss[b].mean() * 100:5.1f}%, share of the misses "
              f"{(miss & b).sum() / miss.sum() * 100:5.1f}%, of the error sum {err[b].sum() / err.sum() * 100:5.1f}%; "
              + ", ".join(f"{nm} {np.hypot(*(o['pos'][j][b] - truth[b]).T).mean():.0f}"
                          for j, nm in enumerate(o["names"])) + " m mean")


if __name__ == "__main__":
    main()
