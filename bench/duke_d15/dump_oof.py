"""Dump val, test and out-of-block (5 folds of 200 m squares of train + val) errors, sigmas and nodes heard (brief D15).

Usage (from the project root)::

    PYTHONPATH=$PWD python bench/duke_d15/dump_oof.py WORKSPACE OUT_DIR MODEL_NAME [splits ...] [--set KEY=VALUE ...]

MODEL_NAME is a registered baseline; ``--set`` passes its options (e.g. the radio-map kNN). One
``OUT_DIR/<name>-s<seed>.npz`` per Duke split (``--antwerp``: one ``<name>-antwerp.npz``, no blocks).
The folds are those of ``train --calibration blocks`` with the run's seed (= the split seed in bench_real).
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from pathlib import Path


def heard(x):
    """Nodes heard per sample: slots with a finite RSS."""
    return np.isfinite(x.rss_dbm).sum(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("out")
    ap.add_argument("model")
    ap.add_argument("splits", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--name", default=None)
    ap.add_argument("--antwerp", action="store_true")
    a = ap.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = a.workspace
    from bench.bench_real import DATA, SETS, ensure_dataset
    from rflocal_core.models import load_inputs
    from rflocal_core.models.registry import BASELINES, model_config
    from rflocal_core.train.calibrate import out_of_block

    cfg = model_config(a.model, None, a.set)
    name = a.name or a.model
    for seed in ([0] if a.antwerp else a.splits):
        t0 = time.time()
        real = SETS["antwerp" if a.antwerp else "duke"]
        ds = ensure_dataset(real, DATA, seed)["dataset"]
        tr, va, te = (load_inputs(ds, s) for s in ("train", "val", "test"))
        m = BASELINES[a.model](cfg).fit(tr, va)
        pv, pt = m.predict(va), m.predict(te)
        out = {"ev": pv.position_m - va.truth_m, "sv": pv.sigma_m, "hv": heard(va),
               "et": pt.position_m - te.truth_m, "st": pt.sigma_m, "ht": heard(te)}
        if not a.antwerp:
            e, s, f = out_of_block(lambda: BASELINES[a.model](cfg), tr, va, block_m=200.0, folds=5, seed=seed)
            out.update(e_oof=e, s_oof=s, fold=f, h_oof=np.r_[heard(tr), heard(va)])
        tag = "antwerp" if a.antwerp else f"s{seed}"
        Path(a.out).mkdir(parents=True, exist_ok=True)
        np.savez(Path(a.out) / f"{name}-{tag}.npz", **out)
        et = np.linalg.norm(out["et"], axis=1)
        print(ds, name, "test median/mean", round(float(np.median(et))), round(float(et.mean())),
              f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
