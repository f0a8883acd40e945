"""Write the npz the Z3 studies read (train/val/test RSS of the fixed gateway slots, truths, gateway positions).

Usage: python dump_geo.py WORKSPACE DATASET OUT.npz
WORKSPACE holds the Antwerp dataset that ``bench/bench_real.py`` imports (e.g. its ``antwerp``
dataset); RSS is NaN where a gateway did not hear the message, as ``load_inputs`` gives it.
"""
import os
import sys

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
from rflocal_core.models import load_inputs

dataset, out = sys.argv[2], sys.argv[3]
res = {}
for split in ("train", "val", "test"):
    x = load_inputs(dataset, split)
    res[f"{split}_truth"] = x.truth_m
    res[f"{split}_rss"] = x.rss_dbm[:, : x.fixed_slots]
    res[f"{split}_nodepos"] = x.node_pos_m[:, : x.fixed_slots]
    res[f"{split}_nodemask"] = x.node_mask[:, : x.fixed_slots]
np.savez_compressed(out, **res)
print("ok", out, {k: v.shape for k, v in res.items()})
