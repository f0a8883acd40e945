"""Textbook kNN of issue 15's last bullet: k = 5 over the fixed nodes' RSS, "not heard" = -110 dBm, Euclidean
distance, the plain mean of the neighbours' positions, fitted on train (brief B26).

Usage: PYTHONPATH=$PWD python bench/auto_b26/textbook_knn.py WORKSPACE DATASET [DATASET ...]
"""
import os
import sys

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
from rflocal_core.models import load_inputs  # noqa: E402


def main() -> None:
    for ds in sys.argv[2:]:
        tr, te = load_inputs(ds, "train"), load_inputs(ds, "test")
        k = tr.fixed_slots
        a = np.nan_to_num(tr.rss_dbm[:, :k], nan=-110.0)
        b = np.nan_to_num(te.rss_dbm[:, :k], nan=-110.0)
        out = np.zeros((len(te), 2))
        for s in range(0, len(te), 1024):
            d = ((b[s:s + 1024, None, :] - a[None]) ** 2).sum(-1)
            nn = np.argpartition(d, 5, axis=1)[:, :5]
            out[s:s + 1024] = tr.truth_m[nn, :2].mean(1)
        e = np.hypot(*(out - te.truth_m[:, :2]).T)
        print(f"{ds}: textbook kNN, test median {np.median(e):.1f} / mean {e.mean():.1f} m (n = {len(te)})")


if __name__ == "__main__":
    main()
