"""SINR/ToA/AoA maps (issue 18): what the ToA/AoA maps cost in data generation, and what mapformer gains from them.

Generates one ue-mode dataset (procedural city, rooftop sites, snapshots, exact paths) with
``timing_maps`` on, prints the seconds per stage (``timing_maps`` next to ``radio_maps`` and
``paths``), then runs the ``map-channels`` ablation (mapformer without / with the map-channel
stream) on it and prints median / P95 per variant.

Run::

    .venv/bin/python bench/bench_map_channels.py [--size 300] [--samples 800] [--cell 4] [--factor 4]
        [--minutes 4] [--workspace /tmp/rflocal-bench-mapch]

Writes ``bench/results/map_channels.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=300.0, help="city side, m")
    parser.add_argument("--sites", type=int, default=6)
    parser.add_argument("--samples", type=int, default=800)
    parser.add_argument("--cell", type=float, default=4.0, help="radio-map cell, m")
    parser.add_argument("--factor", type=int, default=4, help="timing_map_factor")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per variant")
    parser.add_argument("--no-train", action="store_true", help="only the generation cost")
    parser.add_argument("--workspace", default="/tmp/rflocal-bench-mapch")
    args = parser.parse_args(argv)
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    sys.path.insert(0, str(HERE.parent))
    import torch

    from rflocal_core import ablate
    from rflocal_core.dataset import GenerationConfig, generate_dataset, open_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    torch.set_num_threads(1)
    shutil.rmtree(args.workspace, ignore_errors=True)
    build_scene(SceneConfig(name="city", procedural=ProceduralConfig(size_m=args.size), sites=SiteConfig(count=args.sites)))
    t0 = time.perf_counter()
    out = generate_dataset(GenerationConfig(
        name="mapch", scenes=("city",), samples_per_scene=args.samples, cell_size_m=args.cell,
        map_samples_per_tx=2_000_000, paths_samples_per_src=10_000, timing_maps=True, timing_map_factor=args.factor))
    g = open_dataset("mapch")["scenes/city"]
    grid, coarse = g.attrs["grid"], g.attrs["timing_grid"]
    result: dict = {"args": vars(args), "generation_s": round(time.perf_counter() - t0, 1), "seconds": out["seconds"],
                    "map_cells": grid["nx"] * grid["ny"], "timing_nodes": coarse["nx"] * coarse["ny"],
                    "report_positions": out["samples"],
                    "timing_mask_fraction": float(g["mask_timing"][...].mean())}
    if not args.no_train:
        study = ablate.run_study("map-channels", "mapch", max_minutes_per_variant=args.minutes, name="bench")
        result["ablation"] = [{k: r[k] for k in ("variant", "median_m", "p95_m", "mean_m", "train_s", "infer_ms")}
                              for r in study["rows"]]
    print(json.dumps(result, indent=1))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "map_channels.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
