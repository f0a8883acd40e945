"""Data Generation benchmark: radio maps vs the bare solver, and labelled samples per second.

Run:  .venv/bin/python bench/bench_datagen.py [--repeats 3] [--rss-samples 20000] [--path-samples 10000]

Prints one JSON object. Everything runs in a temporary workspace on the default
procedural scene (512 m x 512 m, 6 rooftop sites at 3.5 GHz).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--map-samples", type=int, default=10_000_000, help="rays per site")
    parser.add_argument("--rss-samples", type=int, default=20_000)
    parser.add_argument("--path-samples", type=int, default=10_000)
    args = parser.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-bench-")

    from rflocal_core.backend import ensure_backend
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.raytrace import compute_radio_map, load_rt_scene
    from rflocal_core.scene import SceneConfig, build_scene

    info = ensure_backend()
    build_scene(SceneConfig(name="bench"))
    from sionna.rt import RadioMapSolver

    settings = {"cell_size_m": 1.0, "samples_per_tx": args.map_samples, "max_depth": 3, "diffraction": True}
    ours, bare = [], []
    scene = load_rt_scene("bench")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rm = RadioMapSolver()(scene, center=[0.0, 0.0, 1.5], orientation=[0.0, 0.0, 0.0], size=[512.0, 512.0],
                              cell_size=[1.0, 1.0], samples_per_tx=args.map_samples, max_depth=3, diffraction=True)
        rm.path_gain.numpy()
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        compute_radio_map("bench", plane_height_m=1.5, **settings)
        ours.append(time.perf_counter() - t0)

    rss = generate_dataset(GenerationConfig(name="rss", scenes=("bench",), samples_per_scene=args.rss_samples,
                                            timing=False, cell_size_m=1.0, map_samples_per_tx=args.map_samples))
    rss_s = sum(v for k, v in rss["seconds"].items() if k not in ("radio_maps", "rasters"))
    paths = generate_dataset(GenerationConfig(name="paths", scenes=("bench",), samples_per_scene=args.path_samples,
                                              timing=True, cell_size_m=1.0, map_samples_per_tx=args.map_samples))
    paths_s = sum(v for k, v in paths["seconds"].items() if k not in ("radio_maps", "rasters"))
    result = {
        "device": info.device,
        "cpu_count": os.cpu_count(),
        "radio_maps_6_sites_512m_1m": {
            "rays_per_site": args.map_samples,
            "ours_s_median": round(statistics.median(ours), 2),
            "bare_solver_s_median": round(statistics.median(bare), 2),
            "ratio": round(statistics.median(ours) / statistics.median(bare), 2),
            "goal_ratio_max": 1.5,
        },
        "rss_only": {"samples": args.rss_samples, "seconds": round(rss_s, 2),
                     "samples_per_s": round(args.rss_samples / rss_s), "goal_samples_per_s": 5000},
        "with_pathsolver": {"samples": args.path_samples, "seconds": round(paths_s, 1),
                            "seconds_per_10k": round(paths_s * 10_000 / args.path_samples, 1), "goal_s_per_10k": 300,
                            "stages": paths["seconds"]},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
