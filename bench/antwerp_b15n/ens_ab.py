"""The same ensemble run with and without its refit (brief B15, second session): an A/B on the same members.

Usage: python ens_ab.py WORKSPACE RUN_ID
RUN_ID: an ``ensemble`` run trained with ``--refit`` (its knn members fitted on train + val). ``refit(train)``
fits those members again on train alone with the same fixed options, which is the model before the refit
(knn's fit is deterministic); both are scored on test with the run's sigma map.
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import errors_m, load_inputs  # noqa: E402
from rflocal_core.train.calibrate import scale_sigma  # noqa: E402

run = load_run(sys.argv[2])
ds = run.config["dataset"]
tr, te = load_inputs(ds, "train"), load_inputs(ds, "test")
m = run.sigma_map
for name, model in (("refit (train + val)", run.model), ("train only", run.model.refit(tr))):
    p = scale_sigma(model.predict(te), m["scale"], power=m["power"], ref_m=m["ref_m"])
    e = errors_m(p, te)
    d2 = (((p.position_m - te.truth_m) / p.sigma_m) ** 2).sum(1)
    print(f"{name}: test {np.median(e):.1f} / {e.mean():.1f} m, inside 1σ {np.mean(d2 <= 1):.3f} 2σ {np.mean(d2 <= 4):.3f}",
          flush=True)
