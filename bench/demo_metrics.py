"""Metrics of the shipped demo models and every baseline on the demo dataset's test split.

The demo dataset is regenerated exactly as ``make demo-model`` made it (same scene, same
configuration, seed 0: the same samples), the shipped runs ``demo-setnet`` and ``demo-knn``
are installed, the baselines are fitted on its train split, and every run is evaluated with
:func:`rflocal_core.infer.evaluate_run` (errors, calibration, Cramér-Rao bound).

Run::

    .venv/bin/python bench/demo_metrics.py [--workspace bench/workspace-demo]

About 4 minutes on 2 CPU cores (mostly ray tracing and exact paths). Prints a markdown table
and writes ``bench/results/demo_metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = ""
HERE = Path(__file__).resolve().parent
BASELINES = ("map_matching", "toa_multilateration", "aoa_triangulation", "log_distance", "weighted_centroid",
             "strongest_site")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=str(HERE / "workspace-demo"))
    args = parser.parse_args(argv)
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    sys.path.insert(0, str(HERE.parent))
    from rflocal_core import demo
    from rflocal_core.dataset import GenerationConfig, generate_dataset, list_datasets
    from rflocal_core.infer import evaluate_run
    from rflocal_core.scene import build_scene, list_scenes
    from rflocal_core.train import list_runs, train

    manifest = json.loads(demo.MANIFEST.read_text(encoding="utf-8"))
    if demo.DEMO_SCENE not in {s["name"] for s in list_scenes()}:
        build_scene(demo.demo_scene_config())
    if demo.DEMO_DATASET not in {d["name"] for d in list_datasets()}:
        generate_dataset(GenerationConfig(name=demo.DEMO_DATASET, scenes=(demo.DEMO_SCENE,),
                                          samples_per_scene=int(manifest["samples"]), seed=0))
    demo.install_demo()
    have = {r["run_id"] for r in list_runs()}
    for model in BASELINES:
        if f"{model}-demo" not in have:
            train(demo.DEMO_DATASET, model, run_id=f"{model}-demo")
    rows = []
    for run_id in (*demo.DEMO_RUNS, *(f"{m}-demo" for m in BASELINES)):
        e = evaluate_run(run_id, demo.DEMO_DATASET, split="test", use_cache=False)
        c, cal = e.crlb, e.calibration
        los = {b.group: b.median_m for b in e.breakdowns.los}
        rows.append({
            "run_id": run_id, "model": e.model, "median_m": e.summary.median_m, "p95_m": e.summary.p95_m,
            "rmse_m": e.summary.rmse_m, "median_los_m": los.get("LoS"), "median_nlos_m": los.get("NLoS"),
            "inside_1sigma": cal.inside_1sigma, "inside_2sigma": cal.inside_2sigma,
            "crlb_median_m": c.median_m, "crlb_rms_m": c.rms_m,
            "ratio_rmse_to_crlb": c.ratio_rmse_to_crlb,
        })
    out = {"dataset": demo.DEMO_DATASET, "split": "test", "crlb": {k: v for k, v in c.to_json().items() if k != "cdf"},
           "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "demo_metrics.json").write_text(json.dumps(out, indent=2), encoding="utf-8")

    def f(v: float | None, scale: float = 1.0) -> str:
        return "–" if v is None else f"{v * scale:.1f}"

    print("| run | median m | P95 m | RMSE m | LoS / NLoS median m | in 1σ / 2σ % | RMSE/√CRLB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run_id']} | {f(r['median_m'])} | {f(r['p95_m'])} | {f(r['rmse_m'])} | "
              f"{f(r['median_los_m'])} / {f(r['median_nlos_m'])} | {f(r['inside_1sigma'], 100)} / "
              f"{f(r['inside_2sigma'], 100)} | {f(r['ratio_rmse_to_crlb'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
