"""ONNX deployment: batch-1 latency in PyTorch and onnxruntime, and requests/s from 8 concurrent clients.

Measurement (fixed; do not change it without renaming it):

- a fresh workspace (``--workspace``, deleted first): the procedural scene of the tests (240 m,
  5 sites, seed 4), a generated ``ue`` dataset of ``--samples`` samples (4 m maps), and one run
  of every network with its default options, trained ``--epochs`` epochs (latency depends on
  the architecture, not on how well it is trained);
- each run exported (``infer.export_onnx``: checked against PyTorch on the validation split);
- batch-1 latency, per network and backend, over ``--repeats`` single samples of the test split
  (cycled), after 10 warm-up calls: ``network`` is the network alone on a prepared input
  (``NeuralModel.forward_numpy``: a PyTorch forward under ``no_grad``, or one onnxruntime
  ``session.run``); ``predict`` is ``LoadedRun.predict`` of one sample's ``Inputs`` (features,
  maps, network, sigma scale). PyTorch runs with ``torch.set_num_threads(1)``, onnxruntime with
  one intra-op thread (its sessions are made so): one core per request, the other for the
  clients;
- throughput: 8 client threads, each sending single-sample measurement files (the test split
  exported, one sample a request, cycled) through ``infer.predict_measurements`` on one shared
  loaded run (what the page and ``predict`` call) for ``--seconds``; requests/s = completed
  requests / wall time.

Two CPU cores; CUDA_VISIBLE_DEVICES is cleared. Goals (issue 17): onnxruntime batch-1 P95 <= 5 ms
on 2 cores; >= 100 requests/s.

Run::

    .venv/bin/python bench/bench_onnx.py                      # about 10 minutes on 2 cores
    .venv/bin/python bench/bench_onnx.py --only heimdall,setnet --repeats 100 --seconds 5   # smoke

Prints a JSON object and writes it to ``bench/results/onnx.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

os.environ["CUDA_VISIBLE_DEVICES"] = ""
HERE = Path(__file__).resolve().parent
NETWORKS = ("setnet", "heimdall", "fpnet", "fpnet_knn", "mapformer", "locheatmap")


def build(workspace: Path, samples: int, epochs: int, models: list[str]) -> dict[str, str]:
    """The scene, the dataset and one run per network; returns run ids by model."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene
    from rflocal_core.train import train

    build_scene(SceneConfig(name="bench", procedural=ProceduralConfig(size_m=240, seed=4), sites=SiteConfig(count=5)))
    generate_dataset(GenerationConfig(name="bench", scenes=("bench",), samples_per_scene=samples, cell_size_m=4.0,
                                      map_samples_per_tx=1_000_000, paths_samples_per_src=10_000, min_sites=2))
    runs = {}
    for model in models:
        runs[model] = train("bench", model, train_config={"epochs": epochs}, seed=0).run_id
        print(f"trained {model}: {runs[model]}", file=sys.stderr)
    return runs


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "mean_ms": round(float(a.mean()), 3)}


def latency(run, x, repeats: int) -> dict[str, dict[str, float]]:
    """Batch-1 latency of the network alone and of the whole predict call, over single samples of ``x``."""
    from rflocal_core.models.features import make_batch

    model = run.model
    singles = [x.subset(np.array([i])) for i in range(min(len(x), 50))]
    prepared = [next(model.inputs(make_batch(s, model.spec), model.map_source(s))) for s in singles]
    model.net.eval()
    out = {}
    for label, call, items in (("network", model.forward_numpy, prepared), ("predict", run.predict, singles)):
        for i in range(10):
            call(items[i % len(items)])
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            call(items[i % len(items)])
            times.append(1000 * (time.perf_counter() - t0))
        out[label] = percentiles(times)
    return out


def throughput(run, files: list, seconds: float, clients: int = 8) -> dict[str, float]:
    """Completed single-sample predict_measurements calls per second from ``clients`` threads."""
    from rflocal_core.infer import predict_measurements

    for ms in files[:5]:
        predict_measurements(run, ms)
    stop = time.perf_counter() + seconds
    counts = [0] * clients
    errors: list[str] = []

    def client(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            try:
                res = predict_measurements(run, files[i % len(files)])
                assert res.predictions, res.bad_samples
            except Exception as exc:  # noqa: BLE001  (a failed request is reported, not counted)
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            counts[k] += 1
            i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"requests": sum(counts), "seconds": round(wall, 2), "requests_per_s": round(sum(counts) / wall, 1),
            "clients": clients, "errors": errors[:3]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=str(HERE / "workspace-onnx"))
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", default=None, help="comma-separated networks")
    parser.add_argument("--out", default=str(HERE / "results" / "onnx.json"))
    args = parser.parse_args(argv)
    ws = Path(args.workspace)
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    os.environ["RFLOCAL_WORKSPACE"] = str(ws)

    import torch

    from rflocal_core.dataset import export_dataset
    from rflocal_core.infer import export_onnx, load_run
    from rflocal_core.models.transforms import InputTransform, load_transformed

    torch.set_num_threads(1)
    models = [m for m in NETWORKS if not args.only or m in args.only.split(",")]
    runs = build(ws, args.samples, args.epochs, models)
    test_ms = export_dataset("bench", split="test")
    files = [type(test_ms)(test_ms.mode, test_ms.scene, test_ms.nodes, (s,), (), test_ms.notes) for s in test_ms.samples]
    result = {"cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "samples": args.samples,
              "repeats": args.repeats, "networks": {}}
    for model, run_id in runs.items():
        exported = export_onnx(run_id)
        row = {"run_id": run_id, "export": {k: exported.to_json()[k] for k in
                                            ("bytes", "checked_samples", "max_abs_diff", "export_s")}}
        for backend in ("torch", "onnxruntime"):
            run = load_run(run_id, backend=backend)
            x = load_transformed("bench", "test", InputTransform.from_dict(run.config.get("input_transform")),
                                 with_maps=run.needs_maps)
            row[backend] = {"latency": latency(run, x, args.repeats),
                            "throughput_8_clients": throughput(run, files, args.seconds)}
        result["networks"][model] = row
        print(json.dumps({model: row}), file=sys.stderr)
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
