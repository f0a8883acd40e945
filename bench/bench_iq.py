"""Issue 17 benchmark: localization from IQ captures in the default procedural city (emitter mode).

One run: a ray-traced IQ dataset (6 rooftop receivers, OFDM bursts, int16 captures), then, on its
test split, heimdall with the IQ branch (use_iq), heimdall with the captures' lags as features
(iq_lags), heimdall without either (features only: the no-IQ
ablation), tdoa_multilateration (cross-correlated captures, least squares), setnet and kNN: median,
P95 and mean error, and heimdall-IQ's batch-1 latency (P50/P95/P99) in PyTorch. Networks train
under the same time budget each. Prints one JSON object (also written to bench/results/iq.json)::

    PYTHONPATH=$PWD python bench/bench_iq.py [--samples 1500] [--minutes 4] [--models "heimdall + IQ,knn"]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {  # name shown: (model, model options)
    "heimdall + IQ": ("heimdall", {"use_iq": True}),
    "heimdall + IQ lags": ("heimdall", {"iq_lags": True}),  # the captures' cross-correlation lags as features
    "heimdall (no IQ)": ("heimdall", {}),
    "tdoa_multilateration": ("tdoa_multilateration", None),
    "setnet": ("setnet", {}),
    "knn": ("knn", None),
}


def _latency_ms(run_id: str, dataset: str, repeats: int = 200) -> dict[str, float]:
    """Batch-1 predict latency of a run on test samples (PyTorch, the whole predict path)."""
    from rflocal_core.infer import load_run
    from rflocal_core.models import load_inputs

    run, test = load_run(run_id), load_inputs(dataset, "test")
    times = []
    for i in range(repeats):
        one = test.subset(np.array([i % len(test)]))
        t0 = time.perf_counter()
        run.model.predict(one)
        times.append(1000 * (time.perf_counter() - t0))
    return {f"p{q}_ms": round(float(np.percentile(times, q)), 2) for q in (50, 95, 99)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1500)
    parser.add_argument("--minutes", type=float, default=4.0, help="time budget of each network")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--out", default="iq.json", help="file name under bench/results")
    args = parser.parse_args()
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-bench-iq-")

    import torch

    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.infer import evaluate_run
    from rflocal_core.scene import SceneConfig, SiteConfig, build_scene
    from rflocal_core.train import train

    torch.set_num_threads(2)
    build_scene(SceneConfig(name="city", sites=SiteConfig(mode="emitter")))
    gen = generate_dataset(GenerationConfig(name="iq", scenes=("city",), samples_per_scene=args.samples,
                                            mode="emitter", iq=True, cell_size_m=2.0, map_samples_per_tx=2_000_000))
    out = {"samples": gen["samples"], "generation_s": gen["seconds"], "iq_ms_per_capture": gen.get("iq_ms_per_capture"),
           "minutes_per_network": args.minutes, "models": {}}
    for shown in chosen:
        model, options = MODELS[shown]
        t0 = time.perf_counter()
        tc = {"epochs": 400, "max_minutes": args.minutes} if options is not None and model != "knn" else None
        result = train("iq", model, model_config=options, train_config=tc, seed=0)
        summary = evaluate_run(result.run_id, "iq", split="test").summary
        row = {"median_m": round(summary.median_m, 1), "p95_m": round(summary.p95_m, 1),
               "mean_m": round(summary.mean_m, 1), "train_s": round(time.perf_counter() - t0, 1)}
        if shown == "heimdall + IQ":
            row["latency_batch1"] = _latency_ms(result.run_id, "iq")
        out["models"][shown] = row
        print(shown, row, flush=True)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
