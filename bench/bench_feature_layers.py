"""What each layer of a 5G report is worth (issue 18): the ``feature-layers`` study and permutation importance.

Builds a small ue-mode dataset with PHY/MAC reports (procedural 300 m city, 6 rooftop sites,
snapshots, exact paths), runs the ``feature-layers`` ablation study (RT only / + PHY / + MAC /
+ beams, for setnet and heimdall, one seed, a wall-clock budget per variant), then the
permutation importance of each "+ beams" run (every feature shuffled on the test split).

Run::

    nice -n 10 .venv/bin/python bench/bench_feature_layers.py [--samples 1500] [--minutes 2] [--repeats 3] \\
        [--seeds 1] [--workspace /tmp/rflocal-bench-layers] [--variants "mapformer: RT only,mapformer: + beams"] \\
        [--out feature_layers.json] [--sequence 3,5]

Writes ``bench/results/feature_layers.json`` (or ``--out``). A workspace that already holds the dataset is
reused. ``--variants`` runs some of the study's variants (all by default); ``--repeats 0`` skips the importance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _dataset(samples: int, sequence: tuple[int, int] | None = None) -> tuple[str, float]:
    """Build the scene and the dataset unless the workspace has them: its name and the seconds spent.

    ``sequence``: vehicular sequences of that many reports (dataset ``physeq``; A3/A5 events and the RRC
    reporting period need them), else snapshots (``phyds``).
    """
    from rflocal_core.dataset import GenerationConfig, generate_dataset, list_datasets
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene
    from rflocal_core.scene.store import list_scenes

    name = "physeq" if sequence else "phyds"
    if any(d["name"] == name for d in list_datasets()):
        return name, 0.0
    t0 = time.perf_counter()
    if not any(s["name"] == "city" for s in list_scenes()):
        build_scene(SceneConfig(name="city", procedural=ProceduralConfig(size_m=300.0), sites=SiteConfig(count=6)))
    motion = {"motion": "vehicular", "sequence_length": sequence} if sequence else {}
    generate_dataset(GenerationConfig(name=name, scenes=("city",), samples_per_scene=samples, cell_size_m=4.0,
                                      map_samples_per_tx=2_000_000, paths_samples_per_src=10_000, **motion))
    return name, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1500)
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per variant")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per variant (the summary: mean and std over them)")
    parser.add_argument("--workspace", default="/tmp/rflocal-bench-layers")
    parser.add_argument("--variants", default=None, help="comma-separated variant names (default: all)")
    parser.add_argument("--out", default="feature_layers.json", help="file name under bench/results")
    parser.add_argument("--sequence", default=None, metavar="MIN,MAX",
                        help="vehicular sequences of MIN-MAX reports instead of snapshots (dataset physeq)")
    args = parser.parse_args(argv)
    sequence = tuple(int(v) for v in args.sequence.split(",")) if args.sequence else None
    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    sys.path.insert(0, str(HERE.parent))
    import torch

    torch.set_num_threads(1)
    from rflocal_core.ablate import run_study
    from rflocal_core.importance import permutation_importance

    dataset, seconds = _dataset(args.samples, sequence)
    out: dict = {"dataset": dataset, "dataset_s": round(seconds, 1), "minutes_per_variant": args.minutes}
    t0 = time.perf_counter()
    study = run_study("feature-layers", dataset, epochs=args.epochs, max_minutes_per_variant=args.minutes,
                      seeds=args.seeds, variants=variants, name=f"feature-layers-{dataset}-{args.seeds}seeds-"
                      f"{args.minutes:g}min" + (f"-{len(variants)}v" if variants else ""))
    out["study_s"] = round(time.perf_counter() - t0, 1)
    out["rows"] = [{k: r[k] for k in ("variant", "seed", "median_m", "p95_m", "mean_m", "train_s", "run_id")}
                   for r in study["rows"]]
    out["summary"] = study["summary"]
    out["importance"] = {}
    for row in study["rows"]:
        if args.repeats > 0 and row["variant"].endswith("+ beams") and row["seed"] == 0:
            imp = permutation_importance(row["run_id"], repeats=args.repeats)
            out["importance"][row["variant"]] = imp.to_json()
    print(json.dumps(out, indent=1))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
