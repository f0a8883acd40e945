"""Temperature of the radio-map posterior for the mean (brief Z3): softmin_scale x radio_map_weight x k x
bandwidth of `knn` with the radio map, chosen on val by the mean (k by the model's own val choice)."""
import itertools
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.models import KNNFingerprint, errors_m, load_inputs

X = {p: load_inputs("antwerp", p) for p in ("train", "val", "test")}
rows = []
for h, scale, wgt in itertools.product((35.0, 70.0), (0.5, 1.0, 2.0), (0.25, 0.5, 1.0)):
    cfg = {"floor_dbm": -120.0, "estimate": "median", "k_choices": (30, 100), "select_by": "mean",
           "radio_map_m": h, "softmin_scale": scale, "radio_map_weight": wgt}
    m = KNNFingerprint(cfg).fit(X["train"], X["val"])
    t = {(r["k"]): r for r in m.state_dict()["val_table"]}
    for k, r in t.items():
        rows.append((r["mean_m"], r["median_m"], h, scale, wgt, k))
        print(f"h {h} scale {scale} weight {wgt} k {k}: val {r['median_m']:.0f}/{r['mean_m']:.0f}", flush=True)
rows.sort()
best = rows[0]
print("best on val (mean):", best)
cfg = {"floor_dbm": -120.0, "estimate": "median", "k": best[5], "radio_map_m": best[2], "softmin_scale": best[3],
       "radio_map_weight": best[4]}
e = errors_m(KNNFingerprint(cfg).fit(X["train"]).predict(X["test"]), X["test"])
print(f"TEST {cfg}: {np.median(e):.0f}/{e.mean():.0f}")
