"""Refit of ``lgbm`` on train + val with the val-stopped trees, out of fold on the val split (brief B21).

Usage: python oof_lgbm.py WORKSPACE OUT.json [DATASET [FOLD_SEED]]
DATASET (default ``antwerp``, as bench_real imports x_val.csv: train / val inside it). The val split is dealt to 5
random folds (FOLD_SEED, default 0); per fold the booster is early-stopped on the other 4 (fitted on train), then fitted again on train +
those 4 with the stopped trees times each factor, and all are scored on the held-out fold. Test is not touched.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.models import LightGBMFingerprint, errors_m, load_inputs  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402

ds = sys.argv[3] if len(sys.argv) > 3 else "antwerp"
tr, va = load_inputs(ds, "train"), load_inputs(ds, "val")
fold_seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
fold = np.random.default_rng(fold_seed).permutation(len(va)) % 5
scales = {"train only": 0.0, "x1": 1.0, "x(n+v)/n": None, "x1.25": 1.25, "x1.5": 1.5}
err = {k: np.zeros(len(va)) for k in scales}
rounds = []
t0 = time.time()
for f in range(5):
    va_in, va_out = va.subset(fold != f), va.subset(fold == f)
    m = LightGBMFingerprint().fit(tr, va_in)
    both = join_inputs(tr, va_in)
    rounds.append(m.state_dict()["rounds"])
    for name, s in scales.items():
        model = m if s == 0.0 else LightGBMFingerprint.from_state(
            {**m.config.to_dict(), "refit_rounds_scale": s}, m.state_dict()).refit(both)
        err[name][fold == f] = errors_m(model.predict(va_out), va_out)
    print(f"fold {f}: rounds {rounds[-1]}, {time.time() - t0:.0f} s", flush=True)
rows = {k: {"median_m": float(np.median(e)), "mean_m": float(e.mean()), "p95_m": float(np.percentile(e, 95))}
        for k, e in err.items()}
for k, r in rows.items():
    print(f"{k}: {r['median_m']:.1f} / {r['mean_m']:.1f} m, P95 {r['p95_m']:.0f}", flush=True)
Path(sys.argv[2]).write_text(json.dumps({"dataset": ds, "fold_seed": fold_seed, "train": len(tr), "val": len(va), "rounds": rounds,
                                         "rows": rows}, indent=1))
np.savez(sys.argv[2] + ".npz", fold=fold, **{k.replace("/", "_"): e for k, e in err.items()})
