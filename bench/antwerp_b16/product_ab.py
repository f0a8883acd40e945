"""The kept hedge through the product (brief B16): an existing ``ensemble --refit`` run's state with the new
options, its σ map fitted on val (members fitted on train alone, as a run's map), test scored once.

Usage: python product_ab.py WORKSPACE RUN_ID [KEY=VALUE ...]   (default: posterior_member=kmap, sigma_mass=0.8,
snap_k=0; the other new options at their defaults)
"""
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
opts = {"posterior_member": "kmap", "sigma_mass": 0.8, "snap_k": 0}
for item in sys.argv[3:]:
    k, _, v = item.partition("=")
    opts[k] = type(getattr(run.model.config, k))(v)
model = Ensemble.from_state({**run.model.config.to_dict(), **opts}, run.model.state_dict())
ds = run.config["dataset"]
tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
pv = model.refit(tr).predict(va)
cal = fit_sigma_scale(pv.position_m - va.truth_m, pv.sigma_m)
for name, x, p in (("val", va, pv), ("test", te, model.predict(te))):
    p = scale_sigma(p, cal.scale, power=cal.power, ref_m=cal.ref_m)
    e = errors_m(p, x)
    c = calibration(p.position_m - x.truth_m, p.sigma_m)
    print(f"{opts} {name}: {np.median(e):.1f} / {e.mean():.1f} m, inside 1σ {c.inside_1sigma:.3f} 2σ "
          f"{c.inside_2sigma:.3f} (σ map s {cal.scale:.3f} p {cal.power})", flush=True)
