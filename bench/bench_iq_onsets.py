"""Issue 17: how well a heimdall ``use_iq`` run's IQ encoder times the captures (``iq_lag_aux`` or not).

For each run, its network's onsets (``out["iq_onset"]``) on the test split (with the run's input transform):
the median |onset difference − cross-correlation lag| against each sample's strongest capture, in samples,
by the lag's correlation peak q (:func:`rflocal_core.iq.lags_to_strongest`: q ≥ 0.8 are captures whose burst
stands above the noise; below 0.5 only a cross-correlation finds it). Prints one line per run::

    PYTHONPATH=$PWD python bench/bench_iq_onsets.py --dataset DATASET RUN_ID [RUN_ID ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BINS = ((0.8, 1.01), (0.5, 0.8), (0.1, 0.5))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()

    import torch

    from rflocal_core.infer import load_run
    from rflocal_core.iq import lags_to_strongest
    from rflocal_core.models.features import make_batch
    from rflocal_core.models.transforms import InputTransform, load_transformed

    torch.set_num_threads(1)
    for run_id in args.runs:
        run = load_run(run_id)
        x = load_transformed(args.dataset, "test", InputTransform.from_dict(run.config.get("input_transform")),
                             with_maps=False)
        tdoa, q, ref = lags_to_strongest(x.iq, x.iq_scale, sample_rate_hz=x.iq_sample_rate_hz)
        lag = tdoa * x.iq_sample_rate_hz
        batch = make_batch(x, run.model.spec)
        with torch.no_grad():
            onset = run.model.net.eval()(batch)["iq_onset"].numpy() * x.iq.shape[-1]
        diff = onset - np.take_along_axis(onset, np.maximum(ref, 0)[:, None], 1)
        err = np.abs(diff - lag)
        other = (np.arange(lag.shape[1])[None] != ref[:, None]) & batch.mask.numpy() & np.isfinite(lag)
        parts = []
        for lo, hi in BINS:
            m = other & (np.nan_to_num(q) >= lo) & (np.nan_to_num(q) < hi)
            parts.append(f"q in [{lo}, {min(hi, 1.0)}]: {np.median(err[m]):.1f} samples (n={int(m.sum())})")
        print(run_id, f"iq_lag_aux={run.config['model_config'].get('iq_lag_aux', 0)}:", "; ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
