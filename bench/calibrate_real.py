"""Sigma calibration on the real sets: one scale against scale + power, fitted on val, coverage on test (issue 15).

For finished runs of ``bench/bench_real.py`` (their ids in its JSON, ``--results``), the model's own
sigma is predicted on val and test, :func:`~rflocal_core.train.calibrate.fit_sigma_scale` fits it
on val with each method, and the share of test positions inside the 1σ and 2σ ellipses is
printed (goal: within 10 points of 39.3% and 86.5% on each test split). ``--blocks M`` adds, for
baselines, the power fit on out-of-fold predictions over M-metre squares of train + val
(:func:`~rflocal_core.train.calibrate.calibrate_blocks`, 5 folds, the run's seed; what
``train --calibration blocks`` does). ``--store`` then keeps the default fit in each run (as
``runs calibrate`` does), so ``evaluate`` and the Metrics page show it.

Run::

    .venv/bin/python bench/calibrate_real.py --results bench/results/real.json [--blocks 200] [--store]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
METHODS = ("coverage", "power")


def coverage_rows(run_id: str, block_m: float = 0.0) -> dict[str, object]:
    """Val-fitted calibration of one run by each method: parameters and test coverage (percent)."""
    from rflocal_core.infer.run import load_run
    from rflocal_core.metrics import calibration
    from rflocal_core.models.transforms import InputTransform, load_transformed
    from rflocal_core.train.calibrate import fit_sigma_scale, scale_sigma

    run = load_run(run_id)
    transform = InputTransform.from_dict(run.config.get("input_transform"))
    val, test = (load_transformed(run.config["dataset"], s, transform, with_maps=False) for s in ("val", "test"))
    pv, pt = run.model.predict(val), run.model.predict(test)  # the model's own sigma
    out: dict[str, object] = {"run": run_id, "model": run.config.get("model"), "dataset": run.config["dataset"]}
    for method in METHODS:
        cal = fit_sigma_scale(pv.position_m - val.truth_m, pv.sigma_m, method=method)
        if cal.scale is None:
            return {**out, "no_sigma": True}
        p = scale_sigma(pt, cal.scale, power=cal.power, ref_m=cal.ref_m)
        c = calibration(p.position_m - test.truth_m, p.sigma_m)
        out[method] = {"scale": round(cal.scale, 3), "power": cal.power,
                       "val": [round(100 * cal.inside_1sigma_after, 1), round(100 * cal.inside_2sigma_after, 1)],
                       "test": [round(100 * c.inside_1sigma, 1), round(100 * c.inside_2sigma, 1)]}
    if block_m > 0 and run.config.get("kind") == "baseline":
        from rflocal_core.train.calibrate import calibrate_blocks

        train = load_transformed(run.config["dataset"], "train", transform, with_maps=False)
        cal = calibrate_blocks(lambda: type(run.model)(run.model.config), train, val, block_m=block_m, folds=5,
                               seed=int(run.config.get("seed", 0)))
        p = scale_sigma(pt, cal.scale, power=cal.power, ref_m=cal.ref_m)
        c = calibration(p.position_m - test.truth_m, p.sigma_m)
        out["blocks"] = {"scale": round(cal.scale, 3), "power": cal.power, "count": cal.count,
                         "fit": [round(100 * cal.inside_1sigma_after, 1), round(100 * cal.inside_2sigma_after, 1)],
                         "test": [round(100 * c.inside_1sigma, 1), round(100 * c.inside_2sigma, 1)]}
    return out


def _ok(test: list[float]) -> str:
    return "yes" if all(abs(v - t) <= 10 for v, t in zip(test, (39.3, 86.5), strict=True)) else "no"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", default=str(HERE / "workspace-real"))
    parser.add_argument("--results", action="append", default=[], help="bench_real JSON (repeatable)")
    parser.add_argument("--runs", default="", help="comma-separated run ids (besides --results)")
    parser.add_argument("--store", action="store_true", help="keep the default fit in each run's config.json")
    parser.add_argument("--blocks", type=float, default=0.0, metavar="M",
                        help="baselines: also fit on out-of-fold predictions over M-metre squares (0: not)")
    parser.add_argument("--out", default=str(HERE / "results" / "real-calibration.json"))
    args = parser.parse_args()
    os.environ["RFLOCAL_WORKSPACE"] = args.workspace
    import torch

    torch.set_num_threads(1)
    runs = [r for r in args.runs.split(",") if r]
    for path in args.results:
        sets = json.loads(Path(path).read_text()).get("sets", {})
        runs += [run["run_id"] for s in sets.values() for row in s["rows"] for run in row["runs"]]
    rows = []
    print("| model | dataset | test 1σ / 2σ, one scale | test 1σ / 2σ, scale + power (p) | within 10 points |"
          + (" blocks: test 1σ / 2σ (p) | within 10 points |" if args.blocks else ""))
    print("|---|---|---|---|---|" + ("---|---|" if args.blocks else ""))
    for run_id in dict.fromkeys(runs):
        row = coverage_rows(run_id, args.blocks)
        rows.append(row)
        if row.get("no_sigma"):
            continue
        one, pw = row["coverage"], row["power"]
        line = (f"| {row['model']} | {row['dataset']} | {one['test'][0]:.0f}% / {one['test'][1]:.0f}% | "
                f"{pw['test'][0]:.0f}% / {pw['test'][1]:.0f}% ({pw['power']:g}) | {_ok(pw['test'])} |")
        if "blocks" in row:
            bl = row["blocks"]
            line += f" {bl['test'][0]:.0f}% / {bl['test'][1]:.0f}% ({bl['power']:g}) | {_ok(bl['test'])} |"
        print(line, flush=True)
        if args.store:
            from rflocal_core.infer import calibrate_run

            calibrate_run(run_id)
    import sys
    import time

    from rflocal_core.workspace import atomic_write_text

    out = {"command": " ".join(["bench/calibrate_real.py", *sys.argv[1:]]),
           "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    atomic_write_text(Path(args.out), json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
