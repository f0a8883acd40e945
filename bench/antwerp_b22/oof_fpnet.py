"""Refit of a fingerprint network on train + val (``fit_fixed``), out of fold on the val split (brief B22).

Usage: python oof_fpnet.py WORKSPACE OUT.json [MODEL [FOLD_SEED [MINUTES [FOLDS]]]]
MODEL (default ``fpnet_knn``) on ``antwerp`` as bench_real imports x_val.csv (imported into WORKSPACE when absent;
train / val inside it). The val split is dealt to 5 random folds (FOLD_SEED, default 0); per fold (the first FOLDS of
them, default all 5) the network is trained on train for MINUTES (default 3; the ensemble's 200 epochs at most,
its cosine schedule over the budget), the best epoch chosen on the other 4 folds, then:
  - "train only": that network, scored on the held-out fold;
  - "db + folds" (fpnet_knn): the same weights, its fingerprint database = train + the 4 folds (no training);
  - "refit": a new network (same seed, feature frame of train) trained on train + the 4 folds by ``fit_fixed`` for
    the steps to the chosen epoch x (train + 4 folds) / train, the cosine schedule ending where that epoch stood.
Test is not touched.
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_real import SETS, ensure_dataset  # noqa: E402
from rflocal_core.models import errors_m, load_inputs  # noqa: E402
from rflocal_core.models.features import FeatureSpec, make_batch  # noqa: E402
from rflocal_core.models.fpnet import fixed_vector  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402
from rflocal_core.models.nets import build_network  # noqa: E402
from rflocal_core.models.neural import NeuralModel  # noqa: E402
from rflocal_core.train.engine import TrainConfig, fit_fixed, fit_network, refit_plan  # noqa: E402
from rflocal_core.train.runs import CHECKPOINT_FORMAT, read_torch  # noqa: E402

name = sys.argv[3] if len(sys.argv) > 3 else "fpnet_knn"
fold_seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
minutes = float(sys.argv[5]) if len(sys.argv) > 5 else 3.0
n_folds = int(sys.argv[6]) if len(sys.argv) > 6 else 5
Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
ds = ensure_dataset(SETS["antwerp"], Path("/work/shared/data/real"), 0)["dataset"]
tr, va = load_inputs(ds, "train"), load_inputs(ds, "val")
fold = np.random.default_rng(fold_seed).permutation(len(va)) % 5
tc = TrainConfig(epochs=200, max_minutes=minutes)
seed = 2  # the ensemble's seed + place of fpnet_knn in B19's member list


def new_model(data):
    """A fresh network (seeded) on train's feature frame, prepared on ``data``."""
    probe = build_network(name, None, vocab_size=0).config
    spec = FeatureSpec.fit(tr, frame=probe.frame, window=probe.window() if hasattr(probe, "window") else None)
    torch.manual_seed(seed)
    net = build_network(name, None, vocab_size=len(spec.node_keys))
    net.prepare(data, spec)
    return NeuralModel(name, net, spec)


def best_model(folder):
    payload = read_torch(Path(folder) / "model.pt", run_id="oof", expected_format=CHECKPOINT_FORMAT)
    return NeuralModel.from_checkpoint({"model": name, **payload})


variants = ["train only", "refit"] + (["db + folds"] if name == "fpnet_knn" else [])
err = {k: np.full(len(va), np.nan) for k in variants}
log, t0 = [], time.time()
for f in range(n_folds):
    va_in, va_out = va.subset(fold != f), va.subset(fold == f)
    both = join_inputs(tr, va_in)
    with tempfile.TemporaryDirectory() as tmp:
        fit = fit_network(Path(tmp), new_model(tr), tc, tr, va_in, seed=seed, progress=lambda *a, **k: None)
        m = best_model(tmp)
    err["train only"][fold == f] = errors_m(m.predict(va_out), va_out)
    if "db + folds" in err:
        b = make_batch(both, m.spec)
        keep = torch.isfinite(b.truth).all(1)
        m.net.db_rss, m.net.db_pos = fixed_vector(b.index(keep), m.net.vocab_size)[0].float(), b.truth[keep].float()
        err["db + folds"][fold == f] = errors_m(m.predict(va_out), va_out)
    n_tr = int(np.isfinite(tr.truth_m).all(1).sum())
    n_both = n_tr + int(np.isfinite(va_in.truth_m).all(1).sum())
    plan = refit_plan(fit.best_step, fit.best_progress, tc, train_samples=n_tr, refit_samples=n_both)
    with tempfile.TemporaryDirectory() as tmp:
        done = fit_fixed(Path(tmp), new_model(both), tc, both, plan, seed=seed, progress=lambda *a, **k: None)
        r = best_model(tmp)
    err["refit"][fold == f] = errors_m(r.predict(va_out), va_out)
    row = {"fold": f, "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "stop": fit.stop_reason,
           "plan": plan.to_dict(), "refit": done,
           "fold_mean_m": {k: float(np.nanmean(e[fold == f])) for k, e in err.items()}}
    log.append(row)
    print(json.dumps(row), f"{time.time() - t0:.0f} s", flush=True)
done_rows = np.isfinite(err["train only"])
rows = {k: {"median_m": float(np.median(e[done_rows])), "mean_m": float(e[done_rows].mean()),
            "p95_m": float(np.percentile(e[done_rows], 95))} for k, e in err.items()}
for k, r in rows.items():
    print(f"{k}: {r['median_m']:.1f} / {r['mean_m']:.1f} m, P95 {r['p95_m']:.0f} ({done_rows.sum()} rows)", flush=True)
Path(sys.argv[2]).write_text(json.dumps({"dataset": ds, "model": name, "fold_seed": fold_seed, "minutes": minutes,
                                         "folds": n_folds, "train": len(tr), "val": len(va), "per_fold": log,
                                         "rows": rows}, indent=1))
np.savez(sys.argv[2] + ".npz", fold=fold, **{k.replace(" ", "_").replace("+", "p"): e for k, e in err.items()})
