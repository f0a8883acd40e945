"""Is exact-path generation repeatable? The drone test's dataset generated again and again, and PathSolver calls
on Dr.Jit's threads against one thread.

Run:  .venv/bin/python bench/bench_paths_repeat.py [--generations 30] [--tries 5] [--calls 6]

The configuration is ``tests/test_dataset_drone.py``'s (procedural city of 200 m, seed 2, 4 sites; 60 drone
samples of 8 waypoints at 40 m, 10^4 rays per source, depth 3, diffraction), in a temporary workspace.
Prints one JSON object (also written to bench/results/paths_repeat.json):

- ``generations``: how many of ``--generations`` datasets generated in this process equal the first bit for
  bit (every array of ``samples``);
- ``threaded`` / ``one_thread``: the drone's waypoint (-40, 40) m traced to the 28 emitters it serves with
  ``compute_paths(..., reproducible=False)`` (Dr.Jit's default threads) and ``True`` (one thread), ``--calls``
  calls per try: in how many of ``--tries`` tries all calls agreed bit for bit, and the median seconds per call
  (the two alternate, so both see the same load).
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
KEYS = ("rss_dbm", "node_pos_m", "pos_m", "los", "aoa_deg", "toa_ns")
CONFIG = dict(
    scenes=("dronecity",), samples_per_scene=60, mode="emitter", survey="drone", drone_altitude_m=40.0,
    drone_spacing_m=40.0, drone_points=8, cell_size_m=4.0, drone_map_samples_per_tx=400_000,
    paths_samples_per_src=10_000, aoa_noise_deg=0.0, toa_noise_ns=0.0, nlos_bias_mean_ns=0.0, min_sites=3,
)


def _generations(count: int) -> tuple[int, np.ndarray, np.ndarray]:
    """How many of ``count`` generations equal the first; the first's emitter and waypoint positions."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset, open_dataset

    first = None
    same = 0
    for g in range(count):
        generate_dataset(GenerationConfig(name=f"drone-{g}", **CONFIG))
        samples = open_dataset(f"drone-{g}")["samples"]
        arrays = {k: np.asarray(samples[k][...]) for k in KEYS}
        first = arrays if first is None else first
        same += all(np.array_equal(first[k], arrays[k], equal_nan=True) for k in KEYS)
    return same, first["pos_m"][:, 0], first["node_pos_m"]


def _calls(pos: np.ndarray, node: np.ndarray, tries: int, calls: int) -> dict[str, dict[str, float]]:
    """Tries in which every call agreed, and seconds per call, threaded and on one thread."""
    import drjit as dr

    from rflocal_core.raytrace import compute_paths, load_rt_scene

    targets = pos[np.nonzero(np.all(np.isclose(node[..., :2], [-40.0, 40.0]), axis=-1))[0]]
    scene = load_rt_scene("dronecity", sites=[{"id": "drone", "x_m": -40.0, "y_m": 40.0, "z_m": 40.0,
                                               "freq_hz": 3.5e9, "pattern": "iso", "tx_power_dbm": None}])
    options = dict(max_depth=3, samples_per_src=CONFIG["paths_samples_per_src"], seed=0, diffraction=True)
    compute_paths(scene, targets, **options)  # compile the kernels first
    agreed = {False: 0, True: 0}
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(tries):
        for reproducible in (False, True):
            outs = []
            for _ in range(calls):
                t0 = time.perf_counter()
                outs.append(compute_paths(scene, targets, reproducible=reproducible, **options))
                seconds[reproducible].append(time.perf_counter() - t0)
            agreed[reproducible] += all(np.array_equal(getattr(outs[0], k), getattr(o, k), equal_nan=True)
                                        for o in outs[1:] for k in ("toa_ns", "aoa_deg", "los", "path_gain_db"))
    return {name: {"tries_all_calls_equal": agreed[r], "tries": tries, "calls_per_try": calls,
                   "median_s_per_call": round(statistics.median(seconds[r]), 3),
                   "threads": dr.thread_count() if not r else 1, "links": len(targets)}
            for name, r in (("threaded", False), ("one_thread", True))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=30, help="datasets generated in this process")
    parser.add_argument("--tries", type=int, default=5, help="tries of --calls calls, threaded and on one thread")
    parser.add_argument("--calls", type=int, default=6, help="PathSolver calls per try")
    args = parser.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-bench-paths-")

    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="dronecity", procedural=ProceduralConfig(size_m=200, seed=2),
                            sites=SiteConfig(count=4)))
    t0 = time.perf_counter()
    same, pos, node = _generations(args.generations)
    out = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "load_average_1min": round(os.getloadavg()[0], 2),
           "generations": {"equal_to_first": same, "generated": args.generations,
                           "seconds": round(time.perf_counter() - t0, 1)},
           **_calls(pos, node, args.tries, args.calls)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "paths_repeat.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
