"""IQ generation benchmark: the cost of ``data generate --iq`` per capture and per sample, and TDoA.

Run:  .venv/bin/python bench/bench_iq_datagen.py [--samples 300] [--waveform ofdm]

Prints one JSON object. Runs in a temporary workspace on the default procedural scene
(512 m x 512 m, 6 rooftop sites at 3.5 GHz) in emitter mode: the seconds of every generation
stage, the IQ cost per capture and per sample, and the median / P95 error of the training-free
TDoA and ToA multilaterations on the whole dataset (the TDoA one from the captures alone).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--waveform", default="ofdm")
    parser.add_argument("--map-samples", type=int, default=2_000_000, help="rays per site")
    args = parser.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-bench-iq-")

    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.models import BASELINES, errors_m, load_inputs
    from rflocal_core.scene import SceneConfig, build_scene

    build_scene(SceneConfig(name="bench"))
    gen = generate_dataset(GenerationConfig(
        name="iq", scenes=("bench",), samples_per_scene=args.samples, mode="emitter", iq=True,
        iq_waveform=args.waveform, cell_size_m=2.0, map_samples_per_tx=args.map_samples, split=(0.5, 0.0, 0.5)))
    train, test = load_inputs("iq", "train"), load_inputs("iq", "test")
    errors = {}
    for model in ("tdoa_multilateration", "toa_multilateration"):
        fitted = BASELINES[model]().fit(train)
        pred = fitted.predict(test)
        err = errors_m(pred, test)
        errors[model] = {"median_m": round(float(np.median(err)), 1), "p95_m": round(float(np.percentile(err, 95)), 1),
                         "mean_m": round(float(np.mean(err)), 1), "fallbacks": int(pred.info.get("fallbacks", 0))}
    print(json.dumps({"samples": gen["samples"], "waveform": args.waveform, "seconds": gen["seconds"],
                      "iq_captures": gen["iq_captures"], "iq_ms_per_capture": gen["iq_ms_per_capture"],
                      "iq_ms_per_sample": gen["iq_ms_per_sample"], "test_samples": len(test), "errors": errors},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
