"""Dump the radio-map kNN's posterior over every training position for val and test (brief B15).

Usage: python scores.py WORKSPACE OUT.npz
WORKSPACE holds (or gets) the ``antwerp`` dataset as ``bench/bench_real.py`` imports it. The model is the
README's best radio-map kNN (35 m map, local spread, weight 1, floor -120 dBm); with k = every training
position its neighbour weights are the posterior over all of them (training order), kept as log-weights
(-inf where a weight underflows: below 1e-308, which no temperature up to 6 lifts above 1e-51).
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

Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
bench_real.ensure_dataset(bench_real.SETS["antwerp"], bench_real.DATA, 0)
X = {p: load_inputs("antwerp", p) for p in ("train", "val", "test")}
assert len(X["train"].scenes) == 1
cfg = {"floor_dbm": -120.0, "estimate": "median", "radio_map_m": 35.0, "radio_map_spread": "local",
       "radio_map_weight": 1.0}
m_all = KNNFingerprint({**cfg, "k": len(X["train"])}).fit(X["train"])
m30 = KNNFingerprint({**cfg, "k": 30}).fit(X["train"])
out = {"train_pos": X["train"].truth_m}
for split in ("val", "test"):
    x = X[split]
    rows = []
    for s in range(0, len(x), 256):
        pos, w, _ = m_all.neighbours(x.subset(slice(s, s + 256)))
        assert np.allclose(pos[0], X["train"].truth_m)  # k = M: the candidates in training order
        with np.errstate(divide="ignore"):
            rows.append(np.log(w).astype(np.float32))
    out[f"{split}_logw"] = np.concatenate(rows)
    out[f"{split}_truth"] = x.truth_m
    e = errors_m(m30.predict(x), x)
    print(split, f"knn (k 30) median {np.median(e):.1f} mean {e.mean():.1f}", flush=True)
np.savez(sys.argv[2], **out)
print("ok", {k: np.shape(v) for k, v in out.items()})
