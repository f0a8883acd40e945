"""Radio maps on Ray against the child processes (issue 16): 6 sites, 512 m x 512 m at 1 m.

Run:  .venv/bin/python bench/bench_ray_maps.py [--repeats 2] [--map-samples 10000000] [--cell 1.0]

Prints one JSON object (also written to bench/results/ray_maps_<cell>m.json): wall time of the 6 maps of the
default procedural city (512 m, 6 rooftop sites at 3.5 GHz, diffraction) with

- ``local_1``: one worker, in this process;
- ``local_children_2``: today's path, 2 child interpreters (sites dealt round-robin);
- ``ray_2``: a local Ray cluster of 2 CPUs, one task per site (``ray_2_cold`` includes starting the
  cluster, ``ray_2`` is a second call on the running cluster, as in a long-lived workbench);
- ``ray_1``: the same with a 1-CPU cluster;

and whether every map equals the one-worker map bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of the two 2-worker paths")
    parser.add_argument("--map-samples", type=int, default=10_000_000, help="rays per site")
    parser.add_argument("--cell", type=float, default=1.0, help="cell size, m")
    args = parser.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-bench-ray-")
    os.environ.pop("RAY_ADDRESS", None)

    from rflocal_core import cluster
    from rflocal_core.backend import ensure_backend
    from rflocal_core.cluster import ExecutorConfig
    from rflocal_core.raytrace import compute_radio_map
    from rflocal_core.scene import SceneConfig, build_scene

    info = ensure_backend()
    build_scene(SceneConfig(name="bench"))
    kwargs = {"cell_size_m": args.cell, "samples_per_tx": args.map_samples, "max_depth": 3, "diffraction": True,
              "plane_height_m": 1.5}
    seconds, maps = {}, {}
    seconds["local_1"], maps["local_1"] = _timed(lambda: compute_radio_map("bench", workers=1, **kwargs), 1)
    cluster.shutdown()
    ray2 = ExecutorConfig(executor="ray", ray_cpus=2)
    t0 = time.perf_counter()
    maps["ray_2_cold"] = compute_radio_map("bench", executor=ray2, **kwargs)
    seconds["ray_2_cold"] = time.perf_counter() - t0
    # the two 2-worker paths alternate, so that a change of load on a shared machine hits both alike
    runs: dict[str, list[float]] = {"local_children_2": [], "ray_2": []}
    for _ in range(args.repeats):
        for key, executor, workers in (("local_children_2", None, 2), ("ray_2", ray2, None)):
            t0 = time.perf_counter()
            maps[key] = compute_radio_map("bench", workers=workers, executor=executor, **kwargs)
            runs[key].append(time.perf_counter() - t0)
    seconds.update({k: statistics.median(v) for k, v in runs.items()})
    cluster.shutdown()
    ray1 = ExecutorConfig(executor="ray", ray_cpus=1)
    maps["ray_1_cold"] = compute_radio_map("bench", executor=ray1, **kwargs)
    seconds["ray_1"], maps["ray_1"] = _timed(lambda: compute_radio_map("bench", executor=ray1, **kwargs), 1)
    cluster.shutdown()
    ref = maps["local_1"].path_gain_db
    result = {
        "what": f"6 sites, 512 m x 512 m at {args.cell:g} m, {args.map_samples:,} rays per site, diffraction",
        "backend": info.variant,
        "cpus": os.cpu_count(),
        "load_1min_at_end": os.getloadavg()[0],
        "repeats": args.repeats,
        "runs_2_workers": {k: [round(t, 2) for t in v] for k, v in runs.items()},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "ray_2_over_children_2": round(seconds["ray_2"] / seconds["local_children_2"], 3),
        "ray_2_cold_over_children_2": round(seconds["ray_2_cold"] / seconds["local_children_2"], 3),
        "ray_1_over_ray_2": round(seconds["ray_1"] / seconds["ray_2"], 3),
        "bit_for_bit_equal_to_local_1": {k: bool(np.array_equal(m.path_gain_db, ref)) for k, m in maps.items()},
    }
    out = RESULTS / f"ray_maps_{args.cell:g}m.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
