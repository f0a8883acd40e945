"""Issue 17: batch-1 latency of a heimdall run with the IQ branch, in PyTorch and in onnxruntime.

For an existing run (trained with ``use_iq``) and its dataset's test split: the whole predict path
(``run.model.predict`` of one sample) in PyTorch and in onnxruntime (the run's ``model.onnx``, made
at first use), and the ONNX graph alone (``session.run``); P50/P95/P99 in ms over ``--repeats``
calls after 10 warm-up calls, one thread. Prints one JSON object with the load average before and
after::

    PYTHONPATH=$PWD python bench/bench_iq_latency.py --run RUN_ID --dataset DATASET [--repeats 60]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()

    import torch

    from rflocal_core.infer import load_run
    from rflocal_core.models import load_inputs
    from rflocal_core.models.features import make_batch
    from rflocal_core.models.onnx_export import onnx_feed

    torch.set_num_threads(1)
    runs = {"torch": load_run(args.run), "onnxruntime": load_run(args.run, backend="onnxruntime")}
    x = load_inputs(args.dataset, "test", with_maps=False)
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
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
