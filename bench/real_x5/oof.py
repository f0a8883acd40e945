"""kNN on Duke: calibration fitted on out-of-block train predictions (+ val) instead of val alone."""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
from rflocal_core.infer.run import load_run
from rflocal_core.metrics import calibration
from rflocal_core.models import KNNFingerprint, load_inputs
from rflocal_core.train.calibrate import fit_sigma_scale, scale_sigma

for run_id in sys.argv[2:]:
    run = load_run(run_id); ds = run.config["dataset"]
    st = run.model.state_dict(); k, floor = int(st["k"]), float(st["floor_dbm"])
    tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
    blk = np.floor(tr.truth_m / 200.0).astype(int); key = blk[:, 0] * 100000 + blk[:, 1]
    ub = np.unique(key); rng = np.random.default_rng(0); fold_of = dict(zip(ub, rng.integers(0, 5, len(ub))))
    fold = np.array([fold_of[b] for b in key])
    oof_pos = np.full_like(tr.truth_m, np.nan); oof_sig = np.full_like(tr.truth_m, np.nan)
    for f in range(5):
        m = KNNFingerprint({"k": k, "floor_dbm": floor}).fit(tr.subset(fold != f))
        p = m.predict(tr.subset(fold == f)); oof_pos[fold == f] = p.position_m; oof_sig[fold == f] = p.sigma_m
    pv, pt = run.model.predict(va), run.model.predict(te)
    e_oof = oof_pos - tr.truth_m
    for name, (e, s) in {"val": (pv.position_m - va.truth_m, pv.sigma_m),
                         "oof": (e_oof, oof_sig),
                         "oof+val": (np.r_[e_oof, pv.position_m - va.truth_m], np.r_[oof_sig, pv.sigma_m])}.items():
        row = []
        for method in ("coverage", "power"):
            cal = fit_sigma_scale(e, s, method=method)
            q = scale_sigma(pt, cal.scale, power=cal.power, ref_m=cal.ref_m)
            c = calibration(q.position_m - te.truth_m, q.sigma_m)
            row.append(f"{method} p={cal.power:g}: test {100*c.inside_1sigma:.0f}/{100*c.inside_2sigma:.0f}")
        print(ds, "fit on", name, " | ".join(row), flush=True)
