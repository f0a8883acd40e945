"""Refit after selection (brief B15, second session): the radio-map kNN fitted on train vs. on train + val.

Usage: python refit.py WORKSPACE
Options fixed beforehand (the README's radio-map kNN: 35 m, local spread, weight 1, floor -120 dBm; k 30 median and
k 1000 T 3); the only change is the fingerprint pool: train (7,475) or train + val (8,306). Test once each.
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import bench_real  # noqa: E402
from rflocal_core.models import KNNFingerprint, errors_m, load_inputs  # noqa: E402
from dataclasses import replace  # noqa: E402

bench_real.ensure_dataset(bench_real.SETS["antwerp"], bench_real.DATA, 0)
X = {p: load_inputs("antwerp", p) for p in ("train", "val", "test")}
a, b = X["train"], X["val"]
assert a.scenes == b.scenes and a.rss_steps_dbm is None and a.phy is None
both = replace(a, **{f: np.concatenate([getattr(a, f), getattr(b, f)]) for f in a.SLOT_FIELDS + a.SAMPLE_FIELDS})
base = {"floor_dbm": -120.0, "estimate": "median", "radio_map_m": 35.0, "radio_map_spread": "local",
        "radio_map_weight": 1.0}
for name, extra in (("k 30", {"k": 30}), ("k 1000 T 3", {"k": 1000, "estimate_temperature": 3.0})):
    for pool, tr in (("train", X["train"]), ("train+val", both)):
        m = KNNFingerprint({**base, **extra}).fit(tr)
        e = errors_m(m.predict(X["test"]), X["test"])
        print(f"{name} pool {pool} ({len(tr)}): test {np.median(e):.1f} / {e.mean():.1f}", flush=True)
