"""A 20,000-sample RSS + ToA + AoA generation on Ray with 1 and 2 workers (issue 16).

Run:  .venv/bin/python bench/bench_ray_generate.py [--samples 20000] [--map-samples 10000000] [--repeats 1]

Prints one JSON object (also written to bench/results/ray_generate.json): the wall time of the whole
generation (radio maps, rasters, sampling, PathSolver batches, reports, writing) on the default
procedural city (512 m, 6 rooftop sites, 2 m maps) on a local Ray cluster of 1 and of 2 CPUs, the
seconds per stage, their ratio, and how far the two datasets' delays are apart (the solver's
repeatability: the maps are equal bit for bit).
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
OUT = Path(__file__).resolve().parent / "results" / "ray_generate.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--map-samples", type=int, default=10_000_000, help="rays per site")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs on 2 and on 1 CPU")
    args = parser.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-bench-raygen-")
    os.environ.pop("RAY_ADDRESS", None)

    import zarr

    from rflocal_core import cluster
    from rflocal_core.cluster import ExecutorConfig
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.dataset.store import dataset_path
    from rflocal_core.scene import SceneConfig, build_scene

    build_scene(SceneConfig(name="bench"))
    runs: dict[str, list[float]] = {"ray_2": [], "ray_1": []}
    stages: dict[str, list[dict[str, float]]] = {"ray_2": [], "ray_1": []}
    for r in range(args.repeats):  # alternating, so that a change of load on a shared machine hits both alike
        for cpus in (2, 1):
            cluster.shutdown()
            name = f"ray{cpus}" if r == 0 else f"ray{cpus}-{r}"
            config = GenerationConfig(name=name, scenes=("bench",), samples_per_scene=args.samples, timing=True,
                                      map_samples_per_tx=args.map_samples)
            t0 = time.perf_counter()
            result = generate_dataset(config, executor=ExecutorConfig(executor="ray", ray_cpus=cpus))
            runs[f"ray_{cpus}"].append(round(time.perf_counter() - t0, 1))
            stages[f"ray_{cpus}"].append(result["seconds"])
    cluster.shutdown()
    wall = {k: statistics.median(v) for k, v in runs.items()}
    one, two = (zarr.open_group(str(dataset_path(f"ray{c}")), mode="r") for c in (1, 2))
    toa1, toa2 = one["scenes/bench/paths/toa_ns"][...], two["scenes/bench/paths/toa_ns"][...]
    result = {
        "what": f"{args.samples:,} samples, RSS + ToA + AoA (PathSolver), default city, 6 sites, 2 m maps, "
                f"{args.map_samples:,} rays per site",
        "cpus": os.cpu_count(),
        "load_1min_at_end": os.getloadavg()[0],
        "repeats": args.repeats,
        "wall_s_runs": runs,
        "wall_s": wall,
        "stage_s": stages,
        "ray_1_over_ray_2": round(wall["ray_1"] / wall["ray_2"], 3),
        "ray_1_over_ray_2_per_alternation": [round(a / b, 3) for a, b in zip(runs["ray_1"], runs["ray_2"])],
        "maps_equal": bool(np.array_equal(one["scenes/bench/path_gain_db"][...], two["scenes/bench/path_gain_db"][...])),
        "toa_max_abs_diff_ns": float(np.nanmax(np.abs(toa1 - toa2))),
        "toa_found_same": bool(np.array_equal(np.isfinite(toa1), np.isfinite(toa2))),
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
