"""Issue 17 benchmark: localization from IQ captures in the default procedural city (emitter mode).

One run: a ray-traced IQ dataset (6 rooftop receivers, OFDM bursts, int16 captures), then, on its
test split, heimdall with the IQ branch (use_iq), heimdall with the captures' lags as features
(iq_lags), heimdall without either (features only: the no-IQ
ablation), tdoa_multilateration (cross-correlated captures, least squares), setnet and kNN: median,
P95 and mean error; for each IQ heimdall (captures or lags) the batch-1 latency P50/P95/P99 in
PyTorch and onnxruntime and the requests/s of 8 clients through the predict path
(``bench/bench_iq_latency.py`` on the run, after exporting it to ONNX); the IQ generation cost per
capture. Networks train under the same time budget each. Prints one JSON object (also written to bench/results/iq.json)::

    PYTHONPATH=$PWD python bench/bench_iq.py [--samples 1500] [--minutes 4] [--models "heimdall + IQ,knn"]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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


def _onnx_latency(run_id: str, dataset: str) -> dict:
    """``bench/bench_iq_latency.py`` on a run (export to ONNX, then PyTorch and onnxruntime batch-1 latency and
    8-client requests/s), in its own process: a network's latency is not measured beside a training."""
    cmd = [sys.executable, str(ROOT / "bench" / "bench_iq_latency.py"), "--run", run_id, "--dataset", dataset,
           "--repeats", "300", "--seconds", "10"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    got = json.loads(proc.stdout)
    keep = ("torch predict", "onnxruntime predict", "onnxruntime file request", "onnxruntime throughput, 8 clients",
            "load_before", "load_after")
    return {k: got[k] for k in keep if k in got}


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
        if shown.startswith("heimdall + IQ"):
            row["latency_batch1"] = _latency_ms(result.run_id, "iq")
            row["latency"] = _onnx_latency(result.run_id, "iq")
        out["models"][shown] = row
        print(shown, row, flush=True)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
