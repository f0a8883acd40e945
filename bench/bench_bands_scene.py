"""One scene carrying two bands (issue 18): every site has a 3.5 GHz and a 28 GHz cell; one band vs both.

Builds one procedural city whose sites each carry a 3.5 GHz and a 28 GHz cell (``bands``; ground
and buildings concrete, whose ITU models hold at both), generates one ue-mode dataset over it,
prints how the bands differ (path gain of co-sited cells, coverage, reports per sample) and runs
the ``bands`` ablation: setnet trained and tested on the 3.5 GHz cells only, on the 28 GHz cells
only, on both bands' cells, and on both with the band token feature.

Run::

    .venv/bin/python bench/bench_bands_scene.py [--size 300] [--sites 6] [--samples 600] [--minutes 2] \
        [--seeds 1] [--workspace /tmp/rflocal-bench-bands-scene] [--out bands_scene.json]

Writes ``bench/results/bands_scene.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BANDS = (3.5e9, 28e9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=300.0, help="city side, m")
    parser.add_argument("--sites", type=int, default=6, help="sites (each with a cell per band)")
    parser.add_argument("--samples", type=int, default=600, help="samples")
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per variant")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per variant")
    parser.add_argument("--workspace", default="/tmp/rflocal-bench-bands-scene")
    parser.add_argument("--out", default="bands_scene.json", help="file name under bench/results")
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
    build_scene(SceneConfig(name="city2b", procedural=ProceduralConfig(size_m=args.size),
                            materials=MaterialConfig(building="concrete", ground="concrete"),
                            sites=SiteConfig(count=args.sites, bands=BANDS)))
    out = generate_dataset(GenerationConfig(
        name="bands2", scenes=("city2b",), samples_per_scene=args.samples, cell_size_m=4.0, min_sites=2,
        map_samples_per_tx=2_000_000, paths_samples_per_src=10_000))
    root = open_dataset("bands2")
    pg = np.asarray(root["scenes/city2b/path_gain_db"])
    low, high = pg[0::2], pg[1::2]  # cells a/3.5G, a/28G, b/3.5G, ...: co-sited pairs
    both = np.isfinite(low) & np.isfinite(high)
    rss = np.asarray(root["samples/rss_dbm"])
    heard = np.isfinite(rss).any(1)  # [N, S]
    result: dict = {
        "args": vars(args), "seconds": out["seconds"], "samples": out["samples"],
        "pg_28_minus_35_db_median": float(np.median(high[both] - low[both])),
        "cells_with_ray": {"3.5GHz": float(np.isfinite(low).mean()), "28GHz": float(np.isfinite(high).mean())},
        "reports_per_sample": {"3.5GHz": float(heard[:, 0::2].sum(-1).mean()),
                               "28GHz": float(heard[:, 1::2].sum(-1).mean()), "both": float(heard.sum(-1).mean())},
    }
    study = ablate.run_study("bands", "bands2", seeds=args.seeds, max_minutes_per_variant=args.minutes, name="bench")
    result["ablation"] = [{k: r[k] for k in ("variant", "seed", "median_m", "p95_m", "mean_m", "train_s")}
                          for r in study["rows"]]
    arms: dict[str, list[dict]] = {}
    for r in result["ablation"]:
        arms.setdefault(r["variant"], []).append(r)
    result["ablation_mean"] = {v: {k: float(np.mean([r[k] for r in rs])) for k in ("median_m", "p95_m", "mean_m")}
                               for v, rs in arms.items()}
    print(json.dumps(result, indent=1))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
