"""Tracking benchmark (issue 18): per-report predictions, the same tracked (Kalman, particle), and mapformer
with history tokens, on a pedestrian and a vehicular sequence dataset: median and P95 at the last report.

Setup (fixed; rename the benchmark if you change it):

- scene ``track-city``: procedural city (seed 0, 320 m), 6 sites, 2 m radio maps;
- per motion (pedestrian 1 m/s, vehicular 10 m/s): a generated dataset of ``--samples`` sequences of
  ``--steps`` report times 0.5-1.5 s apart (RSS only: ``timing=False``; 6 dB shadowing, 2 dB
  per-report noise), the generator's own trajectories along outdoor paths;
- models trained on each dataset's train split: ``knn`` (per report) and ``mapformer`` (reads the
  earlier reports of a sample as history tokens);
- the test split exported as sequences (:func:`rflocal_core.dataset.sequences.export_sequences`): one sample
  per report time with its own truth; every report predicted on its own (mapformer then sees no
  history), then each sequence tracked by :func:`rflocal_core.infer.track_prediction` (Kalman with the
  dataset's motion preset; particle filter in the scene's outdoor cells). ``mapformer+history``: each
  report time predicted with all the reports so far (``history=True``), raw and tracked.

Figures: error at the last report of each test sequence (median, P95, m), and over every report.

Run::

    .venv/bin/python bench/bench_tracking.py             # ~25 min on 2 busy cores (mapformer training: 10-12 min per dataset)
    .venv/bin/python bench/bench_tracking.py --quick     # 300 sequences, 2 epochs: a smoke run
    .venv/bin/python bench/bench_tracking.py --variants  # the tracker's defaults part by part, on the val split
    .venv/bin/python bench/bench_tracking.py --motions vehicular   # one motion only

Workspace ``bench/workspace-tracking`` (reused); results ``bench/results/tracking[-quick].json``.
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
os.environ.setdefault("RFLOCAL_WORKSPACE", str(HERE / "workspace-tracking"))

import numpy as np

MOTIONS = ("pedestrian", "vehicular")


def _prepare(samples: int, steps: int, suffix: str, motions: tuple[str, ...] = MOTIONS) -> list[str]:
    from rflocal_core.dataset import GenerationConfig, generate_dataset, list_datasets
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene, list_scenes

    if "track-city" not in {s["name"] for s in list_scenes()}:
        build_scene(SceneConfig(name="track-city", procedural=ProceduralConfig(size_m=320, seed=0),
                                sites=SiteConfig(count=6)))
    have = {d["name"] for d in list_datasets()}
    names = []
    for motion in motions:
        name = f"track-{motion}{suffix}"
        if name not in have:
            t0 = time.time()
            generate_dataset(GenerationConfig(
                name=name, scenes=("track-city",), samples_per_scene=samples, timing=False, motion=motion,
                sequence_length=(steps, steps), interval_s=(0.5, 1.5), map_samples_per_tx=2_000_000, min_sites=3))
            print(f"generated {name} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        names.append(name)
    return names


def _train(dataset: str, epochs: int) -> dict[str, str]:
    import torch

    from rflocal_core.train import train
    from rflocal_core.train.runs import runs_dir

    torch.set_num_threads(1)
    runs = {"knn": f"{dataset}-knn", "mapformer": f"{dataset}-mapformer-e{epochs}"}
    if not (runs_dir() / runs["knn"] / "model.pt").is_file():
        train(dataset, "knn", run_id=runs["knn"])
    if not (runs_dir() / runs["mapformer"] / "model.pt").is_file():  # trained once per dataset and epochs
        t0 = time.time()
        train(dataset, "mapformer", seed=0, run_id=runs["mapformer"], model_config={"d_model": 64, "heads": 4, "layers": 2},
              train_config={"epochs": epochs})
        print(f"trained mapformer on {dataset} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return runs


def _errors(res, ms, *, tracked: bool) -> tuple[np.ndarray, np.ndarray]:
    """Errors at the last report of each sequence, and at every report (m)."""
    from rflocal_core.infer import sample_times

    by_id = {p.id: p for p in res.predictions}
    value = (lambda p: p.tracked_error_m) if tracked else (lambda p: p.error_m)
    last, every = [], []
    for rows in sample_times(ms).values():
        got = [by_id[sid] for _, sid in rows if sid in by_id]
        if got:
            every += [value(p) for p in got]
            last.append(value(got[-1]))
    return (np.array([np.nan if v is None else v for v in last]), np.array([np.nan if v is None else v for v in every]))


def _stats(errors: np.ndarray) -> dict[str, float]:
    e = errors[np.isfinite(errors)]
    return {"median_m": round(float(np.median(e)), 1), "p95_m": round(float(np.percentile(e, 95)), 1), "n": len(e)}


def _evaluate(dataset: str, motion: str, runs: dict[str, str]) -> list[dict]:
    from rflocal_core.dataset.sequences import export_sequences
    from rflocal_core.infer import load_run, predict_measurements, run_outdoor_mask, track_prediction
    from rflocal_core.tracking import TrackConfig

    per_report = export_sequences(dataset, split="test")
    history = export_sequences(dataset, split="test", history=True)
    rows = []
    variants = [("knn", per_report), ("mapformer", per_report), ("mapformer+history", history)]
    for label, ms in variants:
        run = load_run(runs[label.split("+")[0]])
        res = predict_measurements(run, ms, top_k=0)
        mask = run_outdoor_mask(run, res.scene)
        for method in (None, "kalman", "particle"):
            t0 = time.perf_counter()
            out = track_prediction(res, ms, TrackConfig(method=method, motion=motion),
                                   mask=mask if method == "particle" else None) if method else res
            ms_track = 1000 * (time.perf_counter() - t0) / max(len(res.predictions), 1)
            last, every = _errors(out, ms, tracked=method is not None)
            rows.append({"dataset": dataset, "motion": motion, "model": label, "track": method or "per-report",
                         "last": _stats(last), "every": _stats(every), "track_ms_per_report": round(ms_track, 3)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


#: ``--variants``: what the tracker's defaults are made of, each on its own, on the validation split
#: (label, vehicular preset (q, speed σ) or None for the default, σ floor).
VARIANTS = (("before: q 10, speed 12, no floor", (10.0, 12.0), 0.0), ("physics preset only", None, 0.0),
            ("σ floor 2 only", (10.0, 12.0), 2.0), ("preset + floor 1", None, 1.0),
            ("preset + floor 2 (default)", None, 2.0), ("preset + floor 3", None, 3.0))


def _variants(dataset: str, motion: str, runs: dict[str, str], split: str) -> list[dict]:
    """Every model's predictions of ``split`` tracked with each of :data:`VARIANTS` (presets swapped in place)."""
    from rflocal_core import tracking
    from rflocal_core.dataset.sequences import export_sequences
    from rflocal_core.infer import load_run, predict_measurements, run_outdoor_mask, track_prediction
    from rflocal_core.tracking import MotionPreset, TrackConfig

    default = tracking.MOTION_PRESETS["vehicular"]
    rows = []
    for label, ms in (("knn", export_sequences(dataset, split=split)), ("mapformer", export_sequences(dataset, split=split)),
                      ("mapformer+history", export_sequences(dataset, split=split, history=True))):
        run = load_run(runs[label.split("+")[0]])
        res = predict_measurements(run, ms, top_k=0)
        mask = run_outdoor_mask(run, res.scene)
        last, every = _errors(res, ms, tracked=False)
        rows.append({"motion": motion, "model": label, "track": "per-report", "variant": "",
                     "last": _stats(last), "every": _stats(every)})
        for variant, preset, floor in VARIANTS:
            tracking.MOTION_PRESETS["vehicular"] = MotionPreset(*preset) if preset else default
            try:
                for method in ("kalman", "particle"):
                    out = track_prediction(res, ms, TrackConfig(method=method, motion=motion, sigma_floor=floor),
                                           mask=mask if method == "particle" else None)
                    last, every = _errors(out, ms, tracked=True)
                    rows.append({"motion": motion, "model": label, "track": method, "variant": variant,
                                 "last": _stats(last), "every": _stats(every)})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            finally:
                tracking.MOTION_PRESETS["vehicular"] = default
    return rows


def _variants_table(rows: list[dict]) -> str:
    lines = ["| motion | model | variant | Kalman last median / P95 (m) | change | particle last median / P95 (m) | change |",
             "|---|---|---|---|---|---|---|"]
    base = {(r["motion"], r["model"]): r["last"]["p95_m"] for r in rows if r["track"] == "per-report"}
    cell = {(r["motion"], r["model"], r["variant"], r["track"]): r["last"] for r in rows}
    for (motion, model), b in base.items():
        lines.append(f"| {motion} | {model} | per-report | {cell[(motion, model, '', 'per-report')]['median_m']} / {b} "
                     "| | | |")
        for variant, _, _ in VARIANTS:
            k, p = cell[(motion, model, variant, "kalman")], cell[(motion, model, variant, "particle")]
            lines.append(f"| {motion} | {model} | {variant} | {k['median_m']} / {k['p95_m']} | "
                         f"{100 * (k['p95_m'] - b) / b:+.0f}% | {p['median_m']} / {p['p95_m']} | "
                         f"{100 * (p['p95_m'] - b) / b:+.0f}% |")
    return "\n".join(lines)


def _table(rows: list[dict]) -> str:
    lines = [("| motion | model | predictions | last report median / P95 (m) | every report median / P95 (m) | "
             "P95 change at the last report |"), "|---|---|---|---|---|---|"]
    base = {(r["motion"], r["model"]): r["last"]["p95_m"] for r in rows if r["track"] == "per-report"}
    for r in rows:
        b = base[(r["motion"], r["model"])]
        change = "" if r["track"] == "per-report" else f"{100 * (r['last']['p95_m'] - b) / b:+.0f}%"
        lines.append(f"| {r['motion']} | {r['model']} | {r['track']} | {r['last']['median_m']} / {r['last']['p95_m']} | "
                     f"{r['every']['median_m']} / {r['every']['p95_m']} | {change} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 sequences, 2 epochs: a smoke run")
    parser.add_argument("--samples", type=int, default=None, help="sequences per dataset (default 1500)")
    parser.add_argument("--steps", type=int, default=12, help="report times per sequence")
    parser.add_argument("--epochs", type=int, default=None, help="mapformer epochs (default 30)")
    parser.add_argument("--variants", action="store_true",
                        help="instead: the tracker's default (vehicular preset, σ floor) part by part, on the val split")
    parser.add_argument("--motions", default=",".join(MOTIONS), help="comma-separated motions to run (default both)")
    args = parser.parse_args()
    samples = args.samples or (300 if args.quick else 1500)
    epochs = args.epochs or (2 if args.quick else 30)
    suffix = "-quick" if args.quick else ""
    motions = tuple(m for m in MOTIONS if m in args.motions.split(","))
    rows = []
    for dataset, motion in zip(_prepare(samples, args.steps, suffix, motions), motions):
        runs = _train(dataset, epochs)
        rows += _variants(dataset, motion, runs, "val") if args.variants else _evaluate(dataset, motion, runs)
    print(_variants_table(rows) if args.variants else _table(rows))
    suffix += "-variants" if args.variants else ""
    suffix += "" if motions == MOTIONS else "-" + "-".join(motions)
    out = HERE / "results" / f"tracking{suffix}.json"
    out.write_text(json.dumps({"samples": samples, "steps": args.steps, "epochs": epochs, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
