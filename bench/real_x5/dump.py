"""Dump an ensemble run's member predictions on val and test (npz) for offline calibration/tail studies."""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import torch

torch.set_num_threads(1)
os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
from rflocal_core.infer.run import load_run
from rflocal_core.models import load_inputs

run_id, out = sys.argv[2], sys.argv[3]
run = load_run(run_id)
ds = run.config["dataset"]
m = run.model
res = {"members": np.array(m._state["members"]), "weights": np.array(m._state["weights"])}
for s in ("train", "val", "test"):
    x = load_inputs(ds, s)
    res[f"{s}_truth"] = x.truth_m
    res[f"{s}_rss"] = x.rss_dbm[:, : x.fixed_slots]
    if s == "train":
        continue
    preds = m._member_predictions(x)
    res[f"{s}_pos"] = np.stack([p.position_m for p in preds])
    res[f"{s}_sig"] = np.stack([p.sigma_m for p in preds])
    p = run.predict(x)
    res[f"{s}_ens_pos"] = p.position_m
    res[f"{s}_ens_sig"] = p.sigma_m
res["sigma_scale"] = np.array(run.sigma_scale)
np.savez_compressed(out, **res)
print("ok", out, {k: v.shape for k, v in res.items()})
