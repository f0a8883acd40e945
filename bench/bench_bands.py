"""Two bands in one dataset (issue 18): the same city at 3.5 and 28 GHz, setnet without / with the band feature.

Builds one procedural city twice (3.5 GHz and 28 GHz; ground and buildings concrete, whose ITU
models hold at both), generates one ue-mode dataset over both scenes, prints the path-gain
difference between the bands and runs the ``band-feature`` ablation (setnet without / with
``band_feature``).

Run::

    .venv/bin/python bench/bench_bands.py [--size 300] [--samples 400] [--minutes 3] [--workspace /tmp/rflocal-bench-bands]

Writes ``bench/results/bands.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=300.0, help="city side, m")
    parser.add_argument("--samples", type=int, default=400, help="samples per band")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per variant")
    parser.add_argument("--workspace", default="/tmp/rflocal-bench-bands")
    args = parser.parse_args(argv)
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    sys.path.insert(0, str(HERE.parent))
    import numpy as np
    import torch

    from rflocal_core import ablate
    from rflocal_core.dataset import GenerationConfig, generate_dataset, open_dataset
    from rflocal_core.scene import MaterialConfig, ProceduralConfig, SceneConfig, SiteConfig, build_scene

    torch.set_num_threads(1)
    shutil.rmtree(args.workspace, ignore_errors=True)
    materials = MaterialConfig(building="concrete", ground="concrete")
    for name, freq in (("city35", 3.5e9), ("city28", 28e9)):
        build_scene(SceneConfig(name=name, procedural=ProceduralConfig(size_m=args.size), materials=materials,
                                sites=SiteConfig(count=6, freq_hz=freq)))
    out = generate_dataset(GenerationConfig(
        name="bands", scenes=("city35", "city28"), samples_per_scene=args.samples, cell_size_m=4.0,
        map_samples_per_tx=2_000_000, paths_samples_per_src=10_000))
    root = open_dataset("bands")
    low, high = (np.asarray(root[f"scenes/{s}/path_gain_db"]) for s in ("city35", "city28"))
    both = np.isfinite(low) & np.isfinite(high)
    rss = np.asarray(root["samples/rss_dbm"])
    scene = np.asarray(root["samples/scene_idx"])
    result: dict = {"args": vars(args), "seconds": out["seconds"], "samples": out["samples"],
                    "pg_28_minus_35_db_median": float(np.median(high[both] - low[both])),
                    "cells_with_ray": {"3.5GHz": float(np.isfinite(low).mean()), "28GHz": float(np.isfinite(high).mean())},
                    "reports_per_sample": {"3.5GHz": float(np.isfinite(rss[scene == 0]).any(1).sum(-1).mean()),
                                           "28GHz": float(np.isfinite(rss[scene == 1]).any(1).sum(-1).mean())}}
    study = ablate.run_study("band-feature", "bands", max_minutes_per_variant=args.minutes, name="bench")
    result["ablation"] = [{k: r[k] for k in ("variant", "median_m", "p95_m", "mean_m", "train_s")}
                          for r in study["rows"]]
    print(json.dumps(result, indent=1))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bands.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
