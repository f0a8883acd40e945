"""PHY/MAC reports in data generation: what they cost and what they look like.

Generates the same small ue-mode dataset (procedural 300 m city, 6 rooftop sites, vehicular
sequences of 3-5 reports, exact paths) with the PHY/MAC reports on and off, and prints the
seconds per stage and the distributions of RSRQ, SINR, CQI, rank, best beam and Doppler.

Run::

    .venv/bin/python bench/bench_phy.py [--samples 200] [--workspace /tmp/rflocal-bench-phy]

Writes ``bench/results/phy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _distributions(name: str) -> dict:
    import numpy as np

    from rflocal_core.dataset import open_dataset

    s = open_dataset(name)["samples"]
    made = np.asarray(s["phy_mask"][...])
    out: dict = {"reports": int(made.sum())}
    for key in ("rsrq_db", "sinr_db", "doppler_hz"):
        v = np.asarray(s[key][...])[made]
        v = v[np.isfinite(v)]
        out[key] = {"p5": float(np.percentile(v, 5)), "median": float(np.median(v)), "p95": float(np.percentile(v, 95))}
    for key in ("cqi", "ri"):
        v = np.asarray(s[key][...])[made]
        v = v[v >= 0]
        out[key] = {str(int(k)): int(c) for k, c in zip(*np.unique(v, return_counts=True))}
    serving = np.asarray(s["serving"][...]) == 1
    beam = np.asarray(s["beam_id"][...])
    out["serving_beams_used"] = len(np.unique(beam[serving & (beam >= 0)]))
    sinr = np.asarray(s["sinr_db"][...])[serving]
    out["serving_sinr_median_db"] = float(np.nanmedian(sinr))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--workspace", default="/tmp/rflocal-bench-phy")
    args = parser.parse_args(argv)
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    sys.path.insert(0, str(HERE.parent))
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    shutil.rmtree(args.workspace, ignore_errors=True)
    build_scene(SceneConfig(name="city", procedural=ProceduralConfig(size_m=300.0), sites=SiteConfig(count=6)))
    base = {"scenes": ("city",), "samples_per_scene": args.samples, "cell_size_m": 4.0,
            "map_samples_per_tx": 2_000_000, "paths_samples_per_src": 10_000, "sequence_length": (3, 5),
            "motion": "vehicular"}
    result = {}
    for phy in (True, False):
        name = "phy-on" if phy else "phy-off"
        out = generate_dataset(GenerationConfig(name=name, phy=phy, **base))
        result[name] = {"seconds": out["seconds"]}
    result["phy-on"].update(_distributions("phy-on"))
    print(json.dumps(result, indent=1))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "phy.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
