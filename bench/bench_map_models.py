"""The map-conditioned models against the others: the goals of the map-models issue, measured in one run.

Benchmark (fixed; do not change it without renaming it):

- ``bench-unseen``: three procedural cities (512 m, seeds 11, 12, 13; 6 rooftop sites at
  3.5 GHz; 2 m maps with diffraction), ``ue`` mode with RSS + ToA + AoA, 4,000 samples per
  city; the third city is held out whole as ``test_unseen``. Every model trains on the first
  two and is tested on the unseen one: ``mapformer`` (physics weight 0.1, and 0), map
  matching, ``setnet``, ``heimdall`` and the geometric baselines (kNN cannot fingerprint a
  city it never saw and is left out). Median error overall and on NLoS samples (the
  strongest link NLoS).
- ``bench-drone``: the drone-survey variant of ``emitter`` mode on the first city, RSS + AoA
  (16 waypoints per sample at 40 m, 64 m grid), 3,000 samples; ``locheatmap`` modes
  ``proposal``, ``LocUNet`` and ``DCAe`` on its test split.
  With ``--drone-seeds K`` each mode is trained with seeds 0 .. K-1 and the mean and spread
  of its errors over the seeds are reported too (the test split holds 300 samples, so one
  run's median moves by a few metres with the seed).
- The physics likelihood alone (no learning): the argmax of ``mapformer``'s prior on the
  unseen city and of ``locheatmap``'s AoA back-projection on the drone survey, so the rows
  say what the learned part adds.
- ``mapformer`` batch-1 CPU inference on the 512 m scene, map resampling and feature
  encoding included (median over 100 single samples).

Every network trains with the same budget (``--max-minutes``, default 3; ``--epochs``
default 200, patience 25). CPU only.

Run::

    .venv/bin/python bench/bench_map_models.py [--drone-seeds 3] [--max-minutes 3] [--workspace bench/workspace-maps]

About 25 minutes on 2 cores with one drone seed, 45 with three (plus about 10 to generate
the data). Datasets are generated once and reused. Results: a markdown table on stdout
and ``bench/results/map_models.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = ""
HERE = Path(__file__).resolve().parent
CITIES = ("bench-city-11", "bench-city-12", "bench-city-13")
UNSEEN_MODELS = (("mapformer", {}), ("mapformer", {"physics_weight": 0.0}), ("map_matching", None),
                 ("setnet", None), ("heimdall", None), ("weighted_centroid", None), ("log_distance", None),
                 ("toa_multilateration", None), ("aoa_triangulation", None), ("strongest_site", None))
DRONE_MODES = ("proposal", "LocUNet", "DCAe")


def _prepare() -> None:
    from rflocal_core.dataset import GenerationConfig, generate_dataset, list_datasets
    from rflocal_core.scene import ProceduralConfig, SceneConfig, build_scene, list_scenes

    have_scenes = {s["name"] for s in list_scenes()}
    for name in CITIES:
        if name not in have_scenes:
            seed = int(name.rsplit("-", 1)[1])
            build_scene(SceneConfig(name=name, procedural=ProceduralConfig(seed=seed), seed=seed))
    configs = [
        GenerationConfig(name="bench-unseen", scenes=CITIES, samples_per_scene=4000, unseen_scenes=(CITIES[2],)),
        GenerationConfig(name="bench-drone", scenes=(CITIES[0],), samples_per_scene=3000, mode="emitter",
                         survey="drone"),
    ]
    have = {d["name"] for d in list_datasets()}
    for config in configs:
        if config.name not in have:
            t0 = time.perf_counter()
            print(f"generating {config.name} ...", file=sys.stderr, flush=True)
            generate_dataset(config, progress=lambda s, f: None)
            print(f"  {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def _row(dataset: str, split: str, model: str, config: dict | None, tc: dict | None,
         transform: dict | None = None, seed: int = 0) -> dict:
    import numpy as np

    from rflocal_core.infer import load_run
    from rflocal_core.metrics import error_summary, group_labels
    from rflocal_core.models import errors_m
    from rflocal_core.models.transforms import InputTransform, load_transformed
    from rflocal_core.train import train

    t0 = time.perf_counter()
    result = train(dataset, model, model_config=config, train_config=tc, seed=seed, input_transform=transform)
    train_s = time.perf_counter() - t0
    run = load_run(result.run_id)
    x = load_transformed(dataset, split, InputTransform.from_dict(transform), with_maps=run.needs_maps)
    pred = run.predict(x)
    err = errors_m(pred, x)
    s = error_summary(err)
    los = group_labels(x)["los"]
    nlos = err[los == "NLoS"]
    label = model if not config else f"{model} {json.dumps(config, sort_keys=True)}"
    row = {"dataset": dataset, "split": split, "model": label, "run_id": result.run_id, "median_m": s.median_m,
           "p95_m": s.p95_m, "mean_m": s.mean_m,
           "nlos_median_m": float(np.median(nlos)) if len(nlos) else None, "nlos_count": int(len(nlos)),
           "train_s": round(train_s, 1), "epochs_run": result.epochs_run, "seed": seed}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _prior_row(dataset: str, split: str, transform: dict | None, terms: tuple[str, ...], label: str) -> dict:
    """The physics log-likelihood alone (no learning): argmax over the 64 x 64 map cells.

    The same :func:`~rflocal_core.models.mapformer.physics_loglik` (default spreads, unit
    weights) that ``mapformer`` adds to its logits and the AoA term that is ``locheatmap``'s
    back-projection channel: the row says what the learned part adds on top.
    """
    import numpy as np
    import torch

    from rflocal_core.metrics import error_summary, group_labels
    from rflocal_core.models.features import FeatureSpec, make_batch
    from rflocal_core.models.mapformer import PRIOR_TERMS, MapFormerConfig, physics_loglik
    from rflocal_core.models.maps import MapSource
    from rflocal_core.models.transforms import InputTransform, load_transformed

    t = InputTransform.from_dict(transform)
    spec = FeatureSpec.fit(load_transformed(dataset, "train", t, with_maps=False))
    x = load_transformed(dataset, split, t, with_maps=True)
    src = MapSource.from_inputs(x, spec, res=64)
    base = make_batch(x, spec)
    c = MapFormerConfig()
    use = torch.tensor([name in terms for name in PRIOR_TERMS], dtype=torch.float32).view(1, -1, 1, 1)
    t0 = time.perf_counter()
    pos = []
    for start in range(0, len(base), 256):
        rows = torch.arange(start, min(start + 256, len(base)))
        mb = src.batch(base.index(rows), rows)
        ll = (physics_loglik(mb, rss_sigma_db=c.prior_rss_sigma_db, toa_sigma_m=c.prior_toa_sigma_m,
                             aoa_sigma_deg=c.prior_aoa_sigma_deg) * use).sum(1)
        h, w = ll.shape[-2:]
        i = ll.flatten(1).argmax(1)
        pos.append(torch.stack([((i % w).float() + 0.5) / w, ((i // w).float() + 0.5) / h], -1))
    seconds = time.perf_counter() - t0
    err = np.linalg.norm(spec.to_metres(torch.cat(pos).numpy()) - x.truth_m, axis=1)
    s = error_summary(err)
    los = group_labels(x)["los"]
    nlos = err[los == "NLoS"]
    row = {"dataset": dataset, "split": split, "model": label, "run_id": None, "median_m": s.median_m,
           "p95_m": s.p95_m, "mean_m": s.mean_m, "nlos_median_m": float(np.median(nlos)) if len(nlos) else None,
           "nlos_count": int(len(nlos)), "train_s": 0.0, "epochs_run": None, "predict_s": round(seconds, 1)}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _batch1_ms(run_id: str, dataset: str, split: str, count: int = 100) -> float:
    from bench_models import _batch1_ms as batch1_ms  # the same measurement as the training benchmark

    from rflocal_core.infer import load_run
    from rflocal_core.models import load_inputs

    return batch1_ms(load_run(run_id), load_inputs(dataset, split, with_maps=True), count)


def _over_seeds(rows: list[dict]) -> list[dict]:
    """Per drone mode of the 3-minute runs: the mean and sample standard deviation over seeds."""
    import numpy as np

    out = []
    for mode in DRONE_MODES:
        label = f"locheatmap {json.dumps({'mode': mode}, sort_keys=True)}"
        mine = [r for r in rows if r["model"] == label]
        if not mine:
            continue
        item = {"model": label, "seeds": len(mine)}
        for key in ("median_m", "p95_m", "mean_m"):
            v = np.array([r[key] for r in mine])
            item[key] = float(v.mean())
            item[key.replace("_m", "_sd_m")] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out.append(item)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=str(HERE / "workspace-maps"))
    parser.add_argument("--max-minutes", type=float, default=3.0)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--only", default=None, help="comma-separated models (default: all)")
    parser.add_argument("--long-minutes", type=float, default=None,
                        help="also train mapformer (default options) with this budget: an extra row")
    parser.add_argument("--drone-minutes", type=float, default=None,
                        help="also train the three locheatmap drone modes with this budget: extra rows")
    parser.add_argument("--drone-seeds", type=int, default=1,
                        help="train the three locheatmap drone modes with this many seeds (0, 1, ...) and "
                             "report the mean and spread of their errors over the seeds")
    parser.add_argument("--out", default=str(HERE / "results" / "map_models.json"))
    args = parser.parse_args(argv)
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    Path(args.workspace).mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE.parent))
    import torch

    from rflocal_core.models.registry import NETWORKS

    _prepare()
    tc = {"epochs": args.epochs, "max_minutes": args.max_minutes, "patience": 25}
    only = set(args.only.split(",")) if args.only else None
    rows = []
    for model, config in UNSEEN_MODELS:
        if only is None or model in only:
            rows.append(_row("bench-unseen", "test_unseen", model, config, tc if model in NETWORKS else None))
    if only is None or "prior" in only:
        rows.append(_prior_row("bench-unseen", "test_unseen", None, ("rss", "toa", "aoa", "indoor"),
                               "physics likelihood alone (mapformer's prior, no learning)"))
    if args.long_minutes:
        long_tc = {**tc, "max_minutes": args.long_minutes, "epochs": max(args.epochs, 1000)}
        rows.append(_row("bench-unseen", "test_unseen", "mapformer", {}, long_tc))
        rows[-1]["model"] = f"mapformer ({args.long_minutes:g} min)"
    if only is None or "locheatmap" in only:
        for seed in range(max(args.drone_seeds, 1)):
            for mode in DRONE_MODES:
                rows.append(_row("bench-drone", "test", "locheatmap", {"mode": mode}, tc, {"features": ["rss", "aoa"]},
                                 seed=seed))
    if only is None or "prior" in only:
        rows.append(_prior_row("bench-drone", "test", {"features": ["rss", "aoa"]}, ("aoa",),
                               "AoA back-projection alone (locheatmap's channel, no learning)"))
    if args.drone_minutes:
        drone_tc = {**tc, "max_minutes": args.drone_minutes, "epochs": max(args.epochs, 1000)}
        for mode in DRONE_MODES:
            rows.append(_row("bench-drone", "test", "locheatmap", {"mode": mode}, drone_tc, {"features": ["rss", "aoa"]}))
            rows[-1]["model"] += f" ({args.drone_minutes:g} min)"
    seeds_summary = _over_seeds(rows) if args.drone_seeds > 1 else None
    mapformer = next((r for r in rows if r["model"] == "mapformer"), None)
    latency = _batch1_ms(mapformer["run_id"], "bench-unseen", "test_unseen") if mapformer else None
    results = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "max_minutes": args.max_minutes,
               "epochs": args.epochs, "rows": rows, "mapformer_batch1_ms": latency, "over_seeds": seeds_summary}
    lines = ["| dataset / split | model | median m | P95 m | mean m | NLoS median m (n) | train s | epochs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        nlos = "–" if r["nlos_median_m"] is None else f"{r['nlos_median_m']:.1f} ({r['nlos_count']})"
        lines.append(f"| {r['dataset']} / {r['split']} | {r['model']} | {r['median_m']:.1f} | {r['p95_m']:.1f} | "
                     f"{r['mean_m']:.1f} | {nlos} | {r['train_s']:.0f} | {r['epochs_run'] or ''} |")
    if seeds_summary:
        lines += ["", "| drone mode | seeds | median m | P95 m | mean m |", "|---|---|---|---|---|"]
        for r in seeds_summary:
            lines.append(f"| {r['model']} | {r['seeds']} | {r['median_m']:.1f} ± {r['median_sd_m']:.1f} | "
                         f"{r['p95_m']:.1f} ± {r['p95_sd_m']:.1f} | {r['mean_m']:.1f} ± {r['mean_sd_m']:.1f} |")
    if latency is not None:
        lines.append(f"\nmapformer batch-1 CPU inference (512 m scene): {latency:.2f} ms")
    results["table"] = "\n".join(lines)
    print(results["table"])
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
