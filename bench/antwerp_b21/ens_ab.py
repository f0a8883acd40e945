"""The same ``--refit`` ensemble run with its ``lgbm`` member as fitted on train or refitted on train + val (B21).

Usage: python ens_ab.py WORKSPACE RUN_ID [OUT.json]
RUN_ID: an ``ensemble`` run trained with ``--refit``. Both variants keep the run's other members, weights, hedge
and sigma map; only the ``lgbm`` member differs: as the run holds it, or ``refit`` on train + val (the trees early
stopping chose on val times (train + val) / train; the run's own choice when it already refitted it, then the
other variant is that member fitted again on train alone, early-stopped on val: deterministic). Scored on test once.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import Ensemble, LightGBMFingerprint, errors_m, load_inputs  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402
from rflocal_core.train.calibrate import scale_sigma  # noqa: E402

run = load_run(sys.argv[2])
ds = run.config["dataset"]
tr, va, te = load_inputs(ds, "train"), load_inputs(ds, "val"), load_inputs(ds, "test")
st = run.model.state_dict()
i = st["members"].index("lgbm")
cfg = (st.get("configs") or {}).get("lgbm")
held = LightGBMFingerprint.from_state(cfg, st["states"][i])
if "train_samples" not in st["states"][i]:  # a state saved before the count was kept: the factor a new run uses
    scale = (len(tr) + len(va)) / len(tr)
    held = LightGBMFingerprint.from_state({**held.config.to_dict(), "refit_rounds_scale": scale}, st["states"][i])
if "refit" in st["states"][i]:  # the run refitted it: the train-only member is fitted again (deterministic)
    train_only, refitted = LightGBMFingerprint(held.config).fit(tr, va), held
else:
    train_only, refitted = held, held.refit(join_inputs(tr, va))
print("lgbm rounds: train only", train_only.state_dict()["rounds"], "refit", refitted.state_dict()["rounds"], flush=True)
m = run.sigma_map
out = {}
for name, member in (("lgbm fitted on train", train_only), ("lgbm refit on train + val", refitted)):
    states = list(st["states"])
    states[i] = member.state_dict()
    model = Ensemble.from_state(run.model.config, {**st, "states": states})
    p = scale_sigma(model.predict(te), m["scale"], power=m["power"], ref_m=m["ref_m"])
    e = errors_m(p, te)
    d2 = (((p.position_m - te.truth_m) / p.sigma_m) ** 2).sum(1)
    alone = errors_m(member.predict(te), te)
    out[name] = {"median_m": float(np.median(e)), "mean_m": float(e.mean()), "p95_m": float(np.percentile(e, 95)),
                 "inside_1s": float(np.mean(d2 <= 1)), "inside_2s": float(np.mean(d2 <= 4)),
                 "member_median_m": float(np.median(alone)), "member_mean_m": float(alone.mean())}
    print(f"{name}: ensemble test {np.median(e):.1f} / {e.mean():.1f} m, inside 1σ {np.mean(d2 <= 1):.3f} "
          f"2σ {np.mean(d2 <= 4):.3f}; the member alone {np.median(alone):.1f} / {alone.mean():.1f} m", flush=True)
if len(sys.argv) > 3:
    Path(sys.argv[3]).write_text(json.dumps({"run": sys.argv[2], "rows": out}, indent=1))
