"""A 20,000-sample RSS + ToA + AoA generation on Ray with 1 and 2 workers (issue 16).

Run:  .venv/bin/python bench/bench_ray_generate.py [--samples 20000] [--workers 1,2] [--map-samples 10000000]
      [--cell 2] [--repeats 1] [--store DIR_OR_URL] [--out FILE]

Prints one JSON object (also written to ``--out``, default bench/results/ray_generate.json): the wall time
of the whole generation (radio maps, rasters, sampling, PathSolver batches, reports, writing) on the
default procedural city (512 m, 6 rooftop sites, 2 m maps) on a local Ray cluster of each CPU count of
``--workers``, the seconds per stage, the ratio of the fewest to the most CPUs, and how far the datasets'
delays are apart (the solver's repeatability: the maps are equal bit for bit). The Ray workers write
their maps and path batches into the store themselves (the workspace's datasets folder, or ``--store``,
e.g. ``file:///tmp/out``). A smoke run: ``--samples 200 --map-samples 100000 --cell 8 --out /tmp/x.json``.
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
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs over the CPU counts")
    parser.add_argument("--workers", default="1,2", help="CPU counts of the local Ray cluster, comma-separated")
    parser.add_argument("--cell", type=float, default=2.0, help="radio map cell size, m")
    parser.add_argument("--store", default=None, help="folder or fsspec URL of the datasets (default: workspace)")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON result is written")
    args = parser.parse_args()
    workers = sorted({int(w) for w in args.workers.split(",")}, reverse=True)
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-bench-raygen-")
    os.environ.pop("RAY_ADDRESS", None)

    import zarr

    from rflocal_core import cluster
    from rflocal_core.cluster import ExecutorConfig
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import SceneConfig, build_scene

    build_scene(SceneConfig(name="bench"))
    runs: dict[str, list[float]] = {f"ray_{c}": [] for c in workers}
    stages: dict[str, list[dict[str, float]]] = {f"ray_{c}": [] for c in workers}
    paths: dict[int, str] = {}
    for r in range(args.repeats):  # alternating, so that a change of load on a shared machine hits all alike
        for cpus in workers:
            cluster.shutdown()
            name = f"ray{cpus}" if r == 0 else f"ray{cpus}-{r}"
            config = GenerationConfig(name=name, scenes=("bench",), samples_per_scene=args.samples, timing=True,
                                      map_samples_per_tx=args.map_samples, cell_size_m=args.cell)
            t0 = time.perf_counter()
            result = generate_dataset(config, executor=ExecutorConfig(executor="ray", ray_cpus=cpus), out=args.store)
            runs[f"ray_{cpus}"].append(round(time.perf_counter() - t0, 1))
            stages[f"ray_{cpus}"].append(result["seconds"])
            paths.setdefault(cpus, result["path"])
    cluster.shutdown()
    wall = {k: statistics.median(v) for k, v in runs.items()}
    few, most = workers[-1], workers[0]
    one, two = (zarr.open_group(paths[c], mode="r") for c in (few, most))
    toa1, toa2 = one["scenes/bench/paths/toa_ns"][...], two["scenes/bench/paths/toa_ns"][...]
    result = {
        "what": f"{args.samples:,} samples, RSS + ToA + AoA (PathSolver), default city, 6 sites, {args.cell:g} m maps, "
                f"{args.map_samples:,} rays per site, store {args.store or 'workspace'}",
        "cpus": os.cpu_count(),
        "load_1min_at_end": os.getloadavg()[0],
        "repeats": args.repeats,
        "wall_s_runs": runs,
        "wall_s": wall,
        "stage_s": stages,
        f"ray_{few}_over_ray_{most}": round(wall[f"ray_{few}"] / wall[f"ray_{most}"], 3),
        f"ray_{few}_over_ray_{most}_per_alternation": [
            round(a / b, 3) for a, b in zip(runs[f"ray_{few}"], runs[f"ray_{most}"])],
        "maps_equal": bool(np.array_equal(one["scenes/bench/path_gain_db"][...], two["scenes/bench/path_gain_db"][...])),
        "toa_max_abs_diff_ns": float(np.nanmax(np.abs(toa1 - toa2))),
        "toa_found_same": bool(np.array_equal(np.isfinite(toa1), np.isfinite(toa2))),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
