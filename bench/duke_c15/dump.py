"""Dump the Duke area splits (train/val/test RSRP, truths, the val-tuned kNN's answers and neighbours) for
study.py. Usage from the project root: ``PYTHONPATH=$PWD .venv/bin/python bench/duke_c15/dump.py WORKSPACE OUT_DIR``
(WORKSPACE holds ``duke-b200-s{0,1,2}``; bench_real.py imports them, or see ``bench_real.ensure_dataset``)."""
import os
import sys
from pathlib import Path

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

import bench_real  # noqa: E402
from rflocal_core.models import KNNFingerprint, load_inputs  # noqa: E402

out_dir = Path(sys.argv[2])
for s in (0, 1, 2):
    ds = bench_real.ensure_dataset(bench_real.SETS["duke"], bench_real.DATA, s)["dataset"]
    sp = {n: load_inputs(ds, n) for n in ("train", "val", "test")}
    m = KNNFingerprint().fit(sp["train"], sp["val"])
    out = {}
    for n, x in sp.items():
        out[f"{n}_rss"], out[f"{n}_xy"] = x.rss_dbm[:, :x.fixed_slots], x.truth_m
        out[f"{n}_knn"] = m.predict(x).position_m
        out[f"{n}_nnpos"], out[f"{n}_nnw"], _ = m.neighbours(x)
    e = np.linalg.norm(out["test_knn"] - out["test_xy"], axis=1)
    print(f"{ds}: kNN test median {np.median(e):.0f} m, mean {e.mean():.0f} m, k {out['test_nnw'].shape[1]}")
    np.savez(out_dir / f"duke_s{s}.npz", **out)
