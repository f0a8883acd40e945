"""Every model of the registry on every real measurement set: test figures, seeds, skips (issue 15).

Sets and their splits (fixed; the same on every run):

- ``antwerp``: Antwerp LoRaWAN (emitter mode). ``x_val.csv`` / ``y_val.csv`` (8,306 messages)
  split 90/10 at random (seed 0) into train and val; the published ``x_test.csv`` /
  ``y_test.csv`` (8,307 messages) is the test split (as ``bench/antwerp_models.py``).
- ``duke``: Duke CBRS drive test (ue mode, six cells of unknown position, so only
  fingerprinting models run). Rows with the same position and device are one sample. Split
  by area: the campus is cut into squares of ``DUKE_BLOCK_M`` (200 m); the squares are
  shuffled (split seed) and each in turn goes to the split furthest below its share of
  80/10/10 % train/val/test (:func:`rflocal_core.dataset.splits.block_splits`), so
  neighbouring points of one walk are never on both sides. A split holds only 3-9 squares
  of test, and kNN's test median moves between 142 and 269 m with the split seed, so Duke
  has one area split per seed (``duke-b200-s0``, ``-s1``, ...): run ``i`` of every model
  (baselines too) uses split ``i`` and model seed ``i``, and the median is over the splits.

The models come from the registry at run time (:func:`rflocal_core.train.models`): a model
that cannot run on a set (it needs radio maps, or node positions the set does not have) is
skipped and the reason is kept. Networks run once per seed (``--seeds``, default 3) under
``--max-minutes`` each, and the table reports the median over the seeds of each figure (the
per-seed figures are in the JSON); baselines run once per distinct dataset (once on Antwerp,
once per area split on Duke).

Run::

    nice -n 10 .venv/bin/python bench/bench_real.py --max-minutes 3 --seeds 3
    .venv/bin/python bench/bench_real.py --sets duke --only knn,heimdall --seeds 1 --max-minutes 1

Prints a markdown table (test median, mean, P95, 1σ/2σ coverage, train seconds) and writes
``bench/results/real.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ["CUDA_VISIBLE_DEVICES"] = ""
# One thread per process: on the busy shared 2 cores, two torch threads spin against each other and
# a network ran 1-2 epochs in 3 minutes instead of 8 (run several bench processes instead).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy/torch load
    os.environ.setdefault(_var, "1")
HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "real"
#: Side of the Duke split squares, metres.
DUKE_BLOCK_M = 200.0
#: Figures of each run kept in the JSON and aggregated over seeds.
FIGURES = ("test_median_m", "test_mean_m", "test_p95_m", "inside_1sigma", "inside_2sigma", "val_median_m",
           "train_s")

#: Published figures, with their setting (not measured here).
PUBLISHED = {
    "antwerp": [
        {"model": "DRAFNET (published)", "median_m": None, "mean_m": 293.6,
         "setting": "full 2019 Antwerp LoRaWAN set, own split"},
        {"model": "DRAFNET (published)", "median_m": None, "mean_m": 225.6,
         "setting": "messages heard by >= 3 gateways (as our test file)"},
        {"model": "MLP (published)", "median_m": 204.0, "mean_m": 358.0,
         "setting": "Anagnostopoulos & Kalousis 2019, full 2019 release"},
        {"model": "kNN (published)", "median_m": None, "mean_m": 398.4,
         "setting": "Aernouts et al. 2018, full 2018 set"},
    ],
    "duke": [],
}


@dataclass
class RealSet:
    """A real set: how to import it, its split in words, and the dataset each seed uses."""

    name: str
    importer: Callable[[Path, str, int], dict[str, Any]]
    split: str
    data_dir: str
    #: Dataset name in the bench workspace for a seed (one per split seed where the split varies).
    dataset_for: Callable[[int], str]


def import_antwerp(data: Path, dataset: str, seed: int) -> dict[str, Any]:
    """Antwerp: x_val 90/10 train/val (seed 0 whatever ``seed``), x_test the test split."""
    from rflocal_core.dataset import import_measurements
    from rflocal_core.measurements import convert_antwerp

    del seed  # one fixed split: the published test file
    ms = convert_antwerp(str(data), split="all")
    fixed = {s.id: "test" for s in ms.samples if s.id.startswith("test-")}
    info = import_measurements(ms, name=dataset, split_fractions=(0.9, 0.1, 0.0), fixed_splits=fixed, seed=0)
    return {"splits": info.splits}


def import_duke(data: Path, dataset: str, seed: int) -> dict[str, Any]:
    """Duke: one sample per position and device, 200 m squares split 80/10/10 (squares shuffled with ``seed``)."""
    from rflocal_core.dataset.table_import import import_table

    info = import_table(data / "Duke_CBRS.csv", name=dataset,
                        columns={"node": "PCI", "lat": "latitude", "lon": "longitude", "rss_dbm": "rsrp"},
                        group_by=["latitude", "longitude", "device"], split_fractions=(0.8, 0.1, 0.1), seed=seed,
                        split_block_m=DUKE_BLOCK_M)
    return {"splits": info.splits, "split": info.split}


SETS = {
    "antwerp": RealSet("antwerp", import_antwerp,
                       "train/val: x_val 90/10 at random (seed 0); test: published x_test", "antwerp_lorawan",
                       lambda seed: "antwerp"),
    "duke": RealSet("duke", import_duke,
                    f"{DUKE_BLOCK_M:.0f} m squares, whole squares to train/val/test (80/10/10 %); one area split "
                    "per seed (squares shuffled with the seed)", "duke_cbrs",
                    lambda seed: f"duke-b{DUKE_BLOCK_M:.0f}-s{seed}"),
}


@dataclass
class Row:
    """One model on one set: per-seed figures, or why it was skipped."""

    set: str
    model: str
    kind: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None

    def figure(self, key: str) -> float | None:
        """Median over the seeds of ``key`` (None when no run has it)."""
        values = [r[key] for r in self.runs if r.get(key) is not None]
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        out = {"set": self.set, "model": self.model, "kind": self.kind, "seeds": [r["seed"] for r in self.runs],
               "median_over_seeds": {k: self.figure(k) for k in FIGURES}, "runs": self.runs}
        if self.skipped:
            out["skipped"] = self.skipped
        return out


def ensure_dataset(real: RealSet, data_root: Path, seed: int) -> dict[str, Any]:
    """Import the dataset of ``real`` for ``seed`` into the bench workspace unless it is there; its splits."""
    from rflocal_core.dataset import list_datasets, open_dataset
    from rflocal_core.workspace import subdir

    dataset = real.dataset_for(seed)
    # bench processes split by --only import the same set side by side: one imports, the others wait and read it
    lock = subdir("datasets").parent / ".bench-real-import.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if dataset not in {d["name"] for d in list_datasets()}:
            info = real.importer(data_root / real.data_dir, dataset, seed)
            print(f"imported {dataset}: {info}", file=sys.stderr, flush=True)
    attrs = dict(open_dataset(dataset).attrs)
    return {"dataset": dataset, "splits": (attrs.get("counts") or {}).get("splits"),
            "split": (attrs.get("input") or {}).get("split")}


def skip_reason(model: str, dataset: str) -> str | None:
    """Why ``model`` cannot run on ``dataset`` before trying it (None: try it): the rules of ``--model auto``."""
    from rflocal_core.train.auto import dataset_traits, unfit_reason

    if dataset not in _TRAITS:  # one read of the train split per dataset, not one per model
        _TRAITS[dataset] = dataset_traits(dataset)
    return unfit_reason(model, dataset, _TRAITS[dataset])


_TRAITS: dict[str, Any] = {}


def run_model(dataset: str, model: str, *, seed: int, epochs: int, max_minutes: float,
              model_config: dict[str, Any] | None = None, calibration: str = "val",
              refit: bool = False, sigma_radii: str = "gaussian",
              train_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` with ``seed`` (and ``model_config``), evaluate on test: one run's figures.

    ``train_options``: more training options of a network run (``TrainConfig``: lr, batch_size, select_on, ...).

    ``refit``: a baseline that can (``can_refit``) is fitted once more on train + val with its val choices
    fixed (``train --refit``); the others are trained as usual. The run's ``refit`` says which happened.
    ``sigma_radii``: ``train --sigma-radii`` (every model).
    """
    from rflocal_core.infer import evaluate_run
    from rflocal_core.models.registry import BASELINES, NETWORKS
    from rflocal_core.train import train

    t0 = time.perf_counter()
    # networks are calibrated on val; baselines where --calibration says (blocks: 200 m squares, 5 folds)
    tc = ({"epochs": epochs, "max_minutes": max_minutes, **(train_options or {})} if model in NETWORKS
          else {"calibration": calibration})
    tc["sigma_radii"] = sigma_radii
    refit = bool(refit and model in BASELINES and BASELINES[model].can_refit)
    if refit:
        tc["refit"] = True
    result = train(dataset, model, model_config=model_config, train_config=tc, seed=seed, tags=("bench_real",))
    train_s = time.perf_counter() - t0
    test = evaluate_run(result.run_id, dataset, split="test")
    cal = test.calibration
    figures = {"val_median_m": result.summary.median_m, "test_median_m": test.summary.median_m,
               "test_mean_m": test.summary.mean_m, "test_p95_m": test.summary.p95_m,
               "inside_1sigma": cal.inside_1sigma if cal.available else None,
               "inside_2sigma": cal.inside_2sigma if cal.available else None,
               "ratio_2sigma": cal.ratio_2sigma if cal.available else None}
    finite = {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in figures.items()}
    return {"seed": seed, "run_id": result.run_id, **finite, "test_count": test.summary.count,
            "train_s": round(train_s, 1), "stopped": result.stopped, "refit": refit}


def bench_set(real: RealSet, models: Sequence[str], *, seeds: Sequence[int], epochs: int,
              max_minutes: float, options: dict[str, dict[str, Any]] | None = None,
              calibration: str = "val", refit: bool = False, sigma_radii: str = "gaussian",
              train_options: dict[str, Any] | None = None) -> list[Row]:
    """Every model of ``models`` on ``real``: networks once per seed (with ``train_options``), baselines once per
    distinct dataset."""
    from rflocal_core.errors import RFLocalInputError
    from rflocal_core.models.registry import NETWORKS

    pairs = [(seed, real.dataset_for(seed)) for seed in seeds]
    once = list({dataset: (seed, dataset) for seed, dataset in reversed(pairs)}.values())[::-1]
    rows = []
    for model in models:
        kind = "network" if model in NETWORKS else "baseline"
        row = Row(real.name, model, kind)
        rows.append(row)
        row.skipped = skip_reason(model, pairs[0][1])
        for seed, dataset in (pairs if kind == "network" else once):
            if row.skipped:
                break
            try:
                row.runs.append({"dataset": dataset, **run_model(dataset, model, seed=seed, epochs=epochs,
                                                                 max_minutes=max_minutes,
                                                                 model_config=(options or {}).get(model),
                                                                 calibration=calibration, refit=refit,
                                                                 sigma_radii=sigma_radii,
                                                                 train_options=train_options)})
            except RFLocalInputError as exc:  # a model that refuses this set says why
                row.skipped = f"refused: {exc}"
        print(json.dumps(row.to_json()), file=sys.stderr, flush=True)
    return rows


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "–" if value is None else format(value, spec)


def table(rows: Sequence[Row]) -> str:
    """Markdown table of the measured rows (medians over seeds), the skips and the published figures."""
    lines = ["| set | model | runs | test median m | test mean m | test P95 m | inside 1σ | inside 2σ | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    sets = dict.fromkeys(r.set for r in rows)
    last = {r.set: r for r in rows if r.runs}
    for r in [r for name in sets for r in rows if r.set == name]:
        if not r.runs:
            continue
        pct = [_fmt(None if r.figure(k) is None else 100 * r.figure(k), ".0f") + ("%" if r.figure(k) is not None
                                                                                     else "")
               for k in ("inside_1sigma", "inside_2sigma")]
        lines.append(f"| {r.set} | {r.model} | {len(r.runs)} | {_fmt(r.figure('test_median_m'))} | "
                     f"{_fmt(r.figure('test_mean_m'))} | {_fmt(r.figure('test_p95_m'))} | {pct[0]} | {pct[1]} | "
                     f"{_fmt(r.figure('train_s'))} |")
        if r is last.get(r.set):  # the published figures of a set right under its measured rows
            lines += [f"| {r.set} | {p['model']}: {p['setting']} | – | {_fmt(p['median_m'])} | "
                      f"{_fmt(p['mean_m'])} | – | – | – | – |" for p in PUBLISHED.get(r.set, [])]
    versus = [line for name in sets if (line := against_knn(name, [r for r in rows if r.set == name]))]
    skipped = [f"- {r.set} / {r.model}: {r.skipped}" for r in rows if r.skipped]
    return "\n".join(lines + ([""] + versus if versus else [])
                     + ([""] + ["Skipped or refused:"] + skipped if skipped else []))


def against_knn(name: str, rows: Sequence[Row]) -> str | None:
    """One line: the model of lowest median other than knn, against knn (median and mean ratios)."""
    knn = next((r for r in rows if r.model == "knn" and r.runs), None)
    others = [r for r in rows if r.model != "knn" and r.figure("test_median_m") is not None]
    if knn is None or not others or not knn.figure("test_median_m") or not knn.figure("test_mean_m"):
        return None
    best = min(others, key=lambda r: r.figure("test_median_m"))
    med, mean = best.figure("test_median_m"), best.figure("test_mean_m")
    return (f"- {name}: best model other than knn (lowest median): {best.model}, {med:.0f} m median / {mean:.0f} m mean = "
            f"{med / knn.figure('test_median_m'):.2f} / {mean / knn.figure('test_mean_m'):.2f} x knn's")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DATA), help="folder holding antwerp_lorawan/ and duke_cbrs/")
    parser.add_argument("--workspace", default=str(HERE / "workspace-real"))
    parser.add_argument("--sets", default="antwerp,duke", help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--only", default=None, help="comma-separated models (default: every registered model)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per network (0, 1, ...)")
    parser.add_argument("--epochs", type=int, default=200, help="epoch cap per network (the time budget rules)")
    parser.add_argument("--max-minutes", type=float, default=3.0, help="time budget per network run")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                        help="a model option for this bench (repeatable), e.g. fpnet:rss_offset_db=0")
    parser.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training option of the network runs (repeatable, TrainConfig), e.g. batch_size=256")
    parser.add_argument("--calibration", default="val", choices=("val", "blocks", "auto"),
                        help="where baselines fit their sigma map (train --calibration; networks: val)")
    parser.add_argument("--refit", action="store_true",
                        help="baselines that can (knn): refit on train + val after choosing on val (train --refit)")
    parser.add_argument("--sigma-radii", default="gaussian", choices=("gaussian", "quantile", "auto"),
                        help="the 1σ and 2σ radii: gaussian (2σ = 2 × 1σ; the benchmark's rows so far), fitted "
                             "apart, or auto (train --sigma-radii, whose default is auto)")
    parser.add_argument("--out", default=str(HERE / "results" / "real.json"))
    parser.add_argument("--table", action="store_true", help="only print (and refresh) the table of --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        print(write_results(Path(args.out), {})["table"])
        return 0
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    Path(args.workspace).mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from rflocal_core.train import models as registered

    names = [s for s in args.sets.split(",") if s]
    unknown = [s for s in names if s not in SETS] + [m for m in (args.only or "").split(",")
                                                     if m and m not in registered()]
    if unknown:
        print(f"unknown set or model: {', '.join(unknown)}", file=sys.stderr)
        return 2
    wanted = [m for m in registered() if not args.only or m in args.only.split(",")]
    seeds = list(range(max(1, args.seeds)))
    from rflocal_core.errors import RFLocalInputError

    try:
        options, train_options = model_options(args.set), training_options(args.train_set)
    except RFLocalInputError as exc:  # a bad --set or --train-set: one line, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bench = {"command": " ".join(["bench/bench_real.py", *(sys.argv[1:] if argv is None else argv)]),
             "code": code_version(), "epochs": args.epochs, "max_minutes": args.max_minutes,
             "calibration": args.calibration, "refit": args.refit, "sigma_radii": args.sigma_radii,
             "train_options": train_options}
    done: dict[str, Any] = {}
    for name in names:
        real = SETS[name]
        datasets = [ensure_dataset(real, Path(args.data), seed) for seed in seeds]
        rows = bench_set(real, wanted, seeds=seeds, epochs=args.epochs, max_minutes=args.max_minutes,
                         options=options, calibration=args.calibration, refit=args.refit,
                         sigma_radii=args.sigma_radii, train_options=train_options)
        finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        done[name] = {"split": real.split, "datasets": datasets,
                      "rows": [{**r.to_json(), "bench": {**bench, "options": options.get(r.model),
                                                         "finished_utc": finished}} for r in rows]}
        print(table(rows))
    write_results(Path(args.out), done)
    return 0


def code_version() -> str:
    """``git describe``-like id of the code that ran (commit, ``+dirty`` with uncommitted changes)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True,
                              check=False).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def model_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{model: model_config}`` from ``["MODEL:KEY=VALUE", ...]``, checked by the model's options."""
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.models.registry import model_config

    by_model: dict[str, list[str]] = {}
    for item in items:
        model, sep, assignment = item.partition(":")
        if not sep:
            msg = f"--set: expected MODEL:KEY=VALUE, got {item!r}"
            raise InvalidInputError(msg)
        by_model.setdefault(model, []).append(assignment)
    return {model: model_config(model, None, assignments) for model, assignments in by_model.items()}


def training_options(items: Sequence[str]) -> dict[str, Any]:
    """``{key: value}`` of the network runs' ``TrainConfig`` from ``["KEY=VALUE", ...]``, checked; the bench's own
    ``--epochs``, ``--max-minutes`` and ``--refit`` are not among them."""
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.options import parse_assignments
    from rflocal_core.train import TrainConfig

    values = parse_assignments(TrainConfig, items, owner="--train-set")
    own = sorted(set(values) & {"epochs", "max_minutes", "refit", "calibration", "sigma_radii"})
    if own:
        msg = f"--train-set: {', '.join(own)} has its own flag in this bench; got {values!r}"
        raise InvalidInputError(msg)
    TrainConfig.from_dict(values)
    return values


def write_results(target: Path, done: dict[str, Any]) -> dict[str, Any]:
    """Write the rows in ``done`` into ``target``, keeping the rows a former run wrote for other models and sets.

    A re-run of one set (``--sets duke``) or of some models (``--only lgbm``) so replaces only
    those rows; each row keeps the command and code it ran with (``bench``). ``table`` is the
    markdown table of every row in the file.
    """
    from rflocal_core.workspace import atomic_write_text

    sets: dict[str, Any] = {}
    if target.is_file():
        try:
            sets = dict(json.loads(target.read_text()).get("sets") or {})
        except (ValueError, AttributeError):  # not a file of this bench: replaced
            sets = {}
    for name, new in done.items():
        rerun = {r["model"] for r in new["rows"]}
        kept = [r for r in (sets.get(name) or {}).get("rows", []) if r["model"] not in rerun]
        sets[name] = {**new, "rows": order_rows([*kept, *new["rows"]])}
    rows = [Row(r["set"], r["model"], r["kind"], list(r["runs"]), r.get("skipped"))
            for name in SETS if name in sets for r in sets[name]["rows"]]
    out = {"sets": {name: sets[name] for name in SETS if name in sets}, "table": table(rows)}
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(out, indent=2, allow_nan=False))
    return out


def order_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in the registry's order (networks first), models no longer registered last."""
    from rflocal_core.train import models as registered

    order = {m: i for i, m in enumerate(registered())}
    return sorted(rows, key=lambda r: order.get(r["model"], len(order)))


if __name__ == "__main__":
    raise SystemExit(main())
