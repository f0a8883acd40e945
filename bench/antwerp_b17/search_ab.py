"""``hedge=search`` on the best Antwerp run's state (brief B17): the model chooses its own T / mass on val.

Usage: python search_ab.py WORKSPACE RUN_ID [HEDGE_MEDIAN_M]   (default 120: B16's rule)
The run (``ensemble --refit``, b16) is rebuilt with ``hedge=search``; the search runs on val with the members
fitted on train alone (``refit(train)``: the model as it was when it fitted), as ``_fit`` does; the chosen pair
goes into the refitted run's state; the σ map is fitted on val as the run's; test is scored once.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.metrics.stats import calibration  # noqa: E402
from rflocal_core.models import Ensemble, errors_m, load_inputs  # noqa: E402
from rflocal_core.train.calibrate import fit_sigma_scale, scale_sigma  # noqa: E402

run = load_run(sys.argv[2])
cap = float(sys.argv[3]) if len(sys.argv) > 3 else 120.0
opts = {"posterior_member": "kmap", "sigma_mass": 0.8, "snap_k": 0, "hedge": "search", "hedge_median_m": cap}
cfg = {**run.model.config.to_dict(), **opts}
ds = run.config["dataset"]
tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
on_train = Ensemble.from_state(cfg, run.model.refit(tr).state_dict())
st = on_train.state_dict()
pos = np.stack([m.predict(va).position_m for m in on_train._members()])  # noqa: SLF001 (what _fit passes)
chosen = on_train._search_hedge(va, pos, np.asarray(st["weights"]))  # noqa: SLF001
print(json.dumps({k: v for k, v in chosen.items() if k != "candidates"}))
for r in sorted(chosen["candidates"], key=lambda r: (r["temperature"], r["sigma_mass"])):
    print(f"T {r['temperature']} mass {r['sigma_mass']}: val {r['val_median_m']:.1f} / {r['val_mean_m']:.1f} m, "
          f"{r['val_inside_1sigma']:.3f} / {r['val_inside_2sigma']:.3f} gap {r['gap']:.3f}")
val_model = Ensemble.from_state(cfg, {**st, "hedge": chosen})
test_model = Ensemble.from_state(cfg, {**run.model.state_dict(), "hedge": chosen})
pv = val_model.predict(va)
cal = fit_sigma_scale(pv.position_m - va.truth_m, pv.sigma_m)
for name, x, p in (("val", va, pv), ("test", te, test_model.predict(te))):
    p = scale_sigma(p, cal.scale, power=cal.power, ref_m=cal.ref_m)
    e = errors_m(p, x)
    c = calibration(p.position_m - x.truth_m, p.sigma_m)
    print(f"hedge=search (T {chosen['temperature']}, mass {chosen['sigma_mass']}) {name}: {np.median(e):.1f} / "
          f"{e.mean():.1f} m, inside 1σ {c.inside_1sigma:.3f} 2σ {c.inside_2sigma:.3f} "
          f"(σ map s {cal.scale:.3f} p {cal.power})", flush=True)
