"""The same ``--refit`` ensemble run with its network members as fitted on train or refitted on train + val (B22).

Usage: python ens_ab_net.py WORKSPACE RUN_ID [OUT.json]
RUN_ID: an ``ensemble`` run trained with ``--refit`` by code that keeps each network member's steps to its val-chosen
epoch (``fit.best_step``; brief B22 on). Variant A keeps the run's members; variant B trains each network member again
on train + val (``Ensemble._refit_network``: the val-chosen steps x (train + val) / train, the schedule ending where the
chosen epoch stood), as ``ensemble:refit_networks=true`` does in a run. The weights, hedge and sigma map are the run's
in both. Scored on test once.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import Ensemble, errors_m, load_inputs  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402
from rflocal_core.models.neural import NeuralModel  # noqa: E402
from rflocal_core.train.calibrate import scale_sigma  # noqa: E402

run = load_run(sys.argv[2])
ds = run.config["dataset"]
tr, va, te = load_inputs(ds, "train"), load_inputs(ds, "val"), load_inputs(ds, "test")
both = join_inputs(tr, va)
st = run.model.state_dict()
refitted = list(st["states"])
t0 = time.time()
for i, (name, model, kind) in enumerate(zip(st["members"], st["models"], st["kinds"], strict=True)):
    if kind == "network":
        refitted[i] = run.model._refit_network(name, model, st["states"][i], both, seed=run.model.config.seed + i)
        print(name, "refit", refitted[i]["fit"]["refit"], f"{time.time() - t0:.0f} s", flush=True)
m = run.sigma_map
out = {}
for label, states in (("networks fitted on train", st["states"]), ("networks refit on train + val", refitted)):
    model = Ensemble.from_state(run.model.config, {**st, "states": states})
    p = scale_sigma(model.predict(te), m["scale"], power=m["power"], ref_m=m["ref_m"])
    e = errors_m(p, te)
    d2 = (((p.position_m - te.truth_m) / p.sigma_m) ** 2).sum(1)
    alone = {name: float(errors_m(NeuralModel.from_checkpoint({"model": mod, **s}).predict(te), te).mean())
             for name, mod, kind, s in zip(st["members"], st["models"], st["kinds"], states, strict=True)
             if kind == "network"}
    out[label] = {"median_m": float(np.median(e)), "mean_m": float(e.mean()), "p95_m": float(np.percentile(e, 95)),
                  "inside_1s": float(np.mean(d2 <= 1)), "inside_2s": float(np.mean(d2 <= 4)),
                  "network_mean_m": alone}
    print(f"{label}: ensemble test {np.median(e):.1f} / {e.mean():.1f} m, inside 1σ {np.mean(d2 <= 1):.3f} "
          f"2σ {np.mean(d2 <= 4):.3f}; the networks alone, mean {alone}", flush=True)
if len(sys.argv) > 3:
    Path(sys.argv[3]).write_text(json.dumps({"run": sys.argv[2], "rows": out}, indent=1))
