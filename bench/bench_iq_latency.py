"""Issue 17: batch-1 latency and throughput of a heimdall run that reads IQ captures, PyTorch and onnxruntime.

For an existing run (trained with ``use_iq`` and/or ``iq_lags``) and its dataset's test split (with the
run's input transform, e.g. RSS only): the whole predict path (``run.model.predict`` of one sample:
features, the lags computed from the captures, the network) in PyTorch and in onnxruntime (the run's
``model.onnx``, made at first use), and the ONNX graph alone (``session.run``); P50/P95/P99 in ms over
``--repeats`` calls after 10 warm-up calls, one thread. Then, with ``--seconds`` > 0, requests/s of
8 client threads sending single-sample measurement files (with their captures; the first
``--files`` test samples) through ``predict_measurements`` on the onnxruntime run, as
``bench/bench_onnx.py`` does. Prints one JSON object with the load average before and after::

    PYTHONPATH=$PWD python bench/bench_iq_latency.py --run RUN_ID --dataset DATASET [--repeats 60] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _percentiles(times: list[float]) -> dict[str, float]:
    return {f"p{q}_ms": round(float(np.percentile(times, q)), 1) for q in (50, 95, 99)}


def _throughput(run: object, dataset: str, files: int, seconds: float) -> dict[str, object]:
    """requests/s of single-sample files (with captures) through predict_measurements, 8 client threads."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_onnx import throughput

    from rflocal_core.dataset import export_dataset

    test_ms = export_dataset(dataset, split="test", limit=files)
    one = [type(test_ms)(test_ms.mode, test_ms.scene, test_ms.nodes, (s,), (), test_ms.notes) for s in test_ms.samples]
    return throughput(run, one, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput run length (0: none)")
    parser.add_argument("--files", type=int, default=40, help="test samples sent as single-sample files")
    args = parser.parse_args()

    import torch

    from rflocal_core.infer import load_run
    from rflocal_core.models.features import make_batch
    from rflocal_core.models.onnx_export import onnx_feed
    from rflocal_core.models.transforms import InputTransform, load_transformed

    torch.set_num_threads(1)
    runs = {"torch": load_run(args.run), "onnxruntime": load_run(args.run, backend="onnxruntime")}
    transform = InputTransform.from_dict(runs["torch"].config.get("input_transform"))
    x = load_transformed(args.dataset, "test", transform, with_maps=False)
    out: dict[str, object] = {"run": args.run, "dataset": args.dataset, "load_before": os.getloadavg()}
    for name, run in runs.items():
        times = []
        for i in range(10 + args.repeats):
            one = x.subset(np.array([i % len(x)]))
            t0 = time.perf_counter()
            run.model.predict(one)
            times.append(1000 * (time.perf_counter() - t0))
        out[f"{name} predict"] = _percentiles(times[10:])
    onnx = runs["onnxruntime"].model
    graph = []
    for i in range(10 + args.repeats):
        feed = onnx_feed(make_batch(x.subset(np.array([i % len(x)])), onnx.spec).compact())
        t0 = time.perf_counter()
        onnx.session.run(None, feed)
        graph.append(1000 * (time.perf_counter() - t0))
    out["onnxruntime graph"] = _percentiles(graph[10:])
    if args.seconds > 0:
        out["onnxruntime throughput, 8 clients"] = _throughput(runs["onnxruntime"], args.dataset, args.files,
                                                               args.seconds)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
