"""Issue 17: batch-1 latency and throughput of a heimdall run that reads IQ captures, PyTorch and onnxruntime.

For an existing run (trained with ``use_iq`` and/or ``iq_lags``) and its dataset's test split (with the
run's input transform, e.g. RSS only), one sample per call, ``--repeats`` calls after 10 warm-up calls,
one thread, P50/P95/P99 in ms:

* ``torch predict`` / ``onnxruntime predict``: the whole predict path (``run.predict`` of one sample:
  features, the lags computed from the captures, the network, the σ calibration);
* ``onnxruntime phases``: the same path cut in pieces: ``features`` (``make_batch``, the lags included),
  ``lags`` (``iq_lag_columns`` alone), ``compact + feed`` (the graph's inputs) and ``session`` (the
  graph alone, ``session.run``);
* ``onnxruntime file request``: ``predict_measurements`` of a single-sample measurement file with its
  captures (what ``predict --backend onnxruntime`` and a server do per request once the JSON is parsed:
  reading the reports and captures, then the predict path, then the output rows).

``onnxruntime predict, G ms between requests`` (``--gaps-ms``): the same calls with a pause before each, as
a server answering requests as they come (a process that waited gets a core sooner than one that never
yields; back to back, the bench is a CPU hog the scheduler preempts). Each figure is given as wall-clock time (``*_ms``) and as the CPU time of the calling thread
(``cpu_*_ms``): on a shared machine the wall-clock P95 is mostly the scheduler (a request that waits for
a core), while the CPU time is what the request costs, close to its latency on an idle machine. Then,
with ``--seconds`` > 0, requests/s of 8 client threads sending single-sample files (the first ``--files``
test samples) through ``predict_measurements`` on the onnxruntime run, as ``bench/bench_onnx.py`` does.
Prints one JSON object with the load average before and after and the process's nice level (run it
without ``nice``: a niced process waits behind every other one)::

    PYTHONPATH=$PWD python bench/bench_iq_latency.py --run RUN_ID --dataset DATASET [--repeats 300] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _percentiles(wall: list[float], cpu: list[float]) -> dict[str, float]:
    out = {f"p{q}_ms": round(float(np.percentile(wall, q)), 2) for q in (50, 95, 99)}
    out.update({f"cpu_p{q}_ms": round(float(np.percentile(cpu, q)), 2) for q in (50, 95, 99)})
    return out


def _timed(calls: int, step: Callable[[int], object], *, gap_s: float = 0.0) -> dict[str, float]:
    """Wall-clock and thread CPU time (ms) of ``step(i)`` for ``i`` in 10 warm-up calls then ``calls``; with
    ``gap_s`` the caller sleeps that long before each call (requests as they come, not back to back)."""
    wall, cpu = [], []
    for i in range(10 + calls):
        if gap_s:
            time.sleep(gap_s)
        c0, t0 = time.thread_time(), time.perf_counter()
        step(i)
        wall.append(1000 * (time.perf_counter() - t0))
        cpu.append(1000 * (time.thread_time() - c0))
    return _percentiles(wall[10:], cpu[10:])


def _single_files(dataset: str, files: int) -> list:
    """The first ``files`` test samples, each as a measurement file of its own (with its captures)."""
    from rflocal_core.dataset import export_dataset

    test_ms = export_dataset(dataset, split="test", limit=files)
    return [type(test_ms)(test_ms.mode, test_ms.scene, test_ms.nodes, (s,), (), test_ms.notes) for s in test_ms.samples]


def _phases(onnx: object, ones: list, calls: int) -> dict[str, dict[str, float]]:
    """The onnxruntime predict path in pieces (see the module docstring)."""
    from rflocal_core.models.features import iq_lag_columns, make_batch
    from rflocal_core.models.onnx_export import onnx_feed

    batches = [make_batch(one, onnx.spec) for one in ones]
    feeds = [onnx_feed(b.compact()) for b in batches]
    scales = [onnx.spec.frames(one)[1] for one in ones]
    names = [o.name for o in onnx.session.get_outputs()]
    k = len(ones)
    return {
        "features": _timed(calls, lambda i: make_batch(ones[i % k], onnx.spec)),
        "lags": _timed(calls, lambda i: iq_lag_columns(ones[i % k], batches[i % k].mask.numpy(), scales[i % k])),
        "compact + feed": _timed(calls, lambda i: onnx_feed(batches[i % k].compact())),
        "session": _timed(calls, lambda i: onnx.session.run(names, feeds[i % k])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput run length (0: none)")
    parser.add_argument("--files", type=int, default=40, help="test samples sent as single-sample files")
    parser.add_argument("--gaps-ms", default="5,20", help="also onnxruntime predict with these pauses between "
                                                         "requests (comma-separated ms; empty: none)")
    args = parser.parse_args()

    import torch

    from rflocal_core.infer import load_run, predict_measurements
    from rflocal_core.models.transforms import InputTransform, load_transformed

    torch.set_num_threads(1)
    runs = {"torch": load_run(args.run), "onnxruntime": load_run(args.run, backend="onnxruntime")}
    transform = InputTransform.from_dict(runs["torch"].config.get("input_transform"))
    x = load_transformed(args.dataset, "test", transform, with_maps=False)
    ones = [x.subset(np.array([i])) for i in range(min(len(x), 100))]
    out: dict[str, object] = {"run": args.run, "dataset": args.dataset, "nice": os.nice(0),
                              "load_before": os.getloadavg()}
    for name, run in runs.items():
        out[f"{name} predict"] = _timed(args.repeats, lambda i, run=run: run.predict(ones[i % len(ones)]))
    onnx_run = runs["onnxruntime"]
    for gap in (float(g) for g in args.gaps_ms.split(",") if g.strip()):
        out[f"onnxruntime predict, {gap:g} ms between requests"] = _timed(
            args.repeats, lambda i: onnx_run.predict(ones[i % len(ones)]), gap_s=gap / 1000)
    out["onnxruntime phases"] = _phases(onnx_run.model, ones, args.repeats)
    files = _single_files(args.dataset, args.files)
    out["onnxruntime file request"] = _timed(args.repeats,
                                             lambda i: predict_measurements(onnx_run, files[i % len(files)]))
    if args.seconds > 0:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_onnx import throughput

        out["onnxruntime throughput, 8 clients"] = throughput(onnx_run, files, args.seconds)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
