"""Issue 19: which of the physics prior's wrong modes a network of bench_any_city.py fixes, sample by sample.

The physics prior alone (``physics prior`` of ``bench/bench_any_city.py``: the straight-line RSS + ToA + AoA
likelihood's argmax with the tile's true maps) lands more than ``--mode-m`` (10 m) from the truth on about half of
Paris's samples: a wrong mode. For each network row stored in a results file of ``bench_any_city.py`` (its saved run)
(and for the reference ``physics prior (ToA/AoA maps)``, the prior reading the ray-traced ToA/AoA maps)
this reloads the model, predicts the held-out tile again and compares it with the prior on the same samples: both
medians / P95, the share of the prior's wrong-mode samples the network brings within ``--mode-m`` (``fixed``), and the
share of the prior's good samples it takes beyond (``broken``). Nothing is trained; the figures go into the results
file under ``tiles.<tile>.modes``::

    PYTHONPATH=$PWD nice -n 10 python bench/bench_any_city_modes.py --out any_city_tm.json --timing-maps \
        --tiles etoile --models "mapformer (window 4 m),mapformer (window 4 m + map channels)"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))
import bench_any_city as ac  # noqa: E402  (bench/ is not a package)


def errors_m(pos_m: np.ndarray, x: Any) -> np.ndarray:
    """[N] distance (m) of each position [N, 2] from ``x``'s truth."""
    return np.hypot(*(pos_m - x.truth_m).T)


def stats(err: np.ndarray) -> dict[str, Any]:
    """Median / P95 (m) of the finite errors, as the rows of bench_any_city.py."""
    err = err[np.isfinite(err)]
    if len(err) == 0:
        return {"n": 0}
    return {"n": len(err), "median_m": round(float(np.median(err)), 1), "p95_m": round(float(np.percentile(err, 95)), 1)}


def mode_figures(prior_err: np.ndarray, err: np.ndarray, mode_m: float) -> dict[str, Any]:
    """A model's errors ``err`` against the prior's ``prior_err`` on the same samples (m, [N] each).

    Returns ``wrong_mode`` (samples where the prior is over ``mode_m`` off), ``fixed`` (the share of them the model
    brings within ``mode_m``), ``broken`` (the share of the prior's other samples the model takes beyond ``mode_m``),
    ``better`` (the share of all samples where the model is closer than the prior) and the model's median error on
    the prior's wrong-mode samples. Samples without a finite error in both are left out.
    """
    ok = np.isfinite(prior_err) & np.isfinite(err)
    prior_err, err = prior_err[ok], err[ok]
    wrong = prior_err > mode_m
    out: dict[str, Any] = {"n": int(ok.sum()), "mode_m": mode_m, "wrong_mode": int(wrong.sum()),
                           "better": round(float(np.mean(err < prior_err)), 3) if len(err) else None}
    out["fixed"] = round(float(np.mean(err[wrong] <= mode_m)), 3) if wrong.any() else None
    out["broken"] = round(float(np.mean(err[~wrong] > mode_m)), 3) if (~wrong).any() else None
    if wrong.any():
        out["wrong_mode_median_m"] = {"prior": round(float(np.median(prior_err[wrong])), 1),
                                      "model": round(float(np.median(err[wrong])), 1)}
    return out


def tile_modes(key: str, scene: str, base: str, rows: dict[str, Any], models: list[str], cell_m: float,
               mode_m: float) -> dict[str, Any]:
    """The prior's and each stored network row's errors on held-out tile ``key``, and :func:`mode_figures`."""
    from rflocal_core.infer import load_run
    from rflocal_core.models import load_inputs

    unseen = load_inputs(ac.held_out_dataset(base, scene), "test_unseen")
    prior_err = errors_m(ac.physics_prior(unseen, cell_m), unseen)
    out: dict[str, Any] = {"physics prior": stats(prior_err)}
    for name in models:
        if name in ("physics prior (ToA/AoA maps)", "physics prior (line or maps)"):  # references: computed again
            pos = ac.physics_prior(unseen, cell_m, timing=True, either=name == "physics prior (line or maps)")
            err, facts = errors_m(pos, unseen), {}
        elif "run" in rows.get(name, {}):
            err = errors_m(load_run(rows[name]["run"]).model.predict(unseen).position_m, unseen)
            facts = {"run": rows[name]["run"]}
        else:
            print(f"  {key}: no stored run of {name!r}, skipped", flush=True)
            continue
        out[name] = {**stats(err), **facts, **mode_figures(prior_err, err, mode_m)}
        print(f"  {key} {name}: {json.dumps(out[name])}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="any_city.json", help="results file of bench_any_city.py under bench/results")
    ap.add_argument("--tiles", default="etoile", help="held-out tiles (comma-separated)")
    ap.add_argument("--models", default="mapformer (window 4 m)", help="network rows (comma-separated)")
    ap.add_argument("--timing-maps", action="store_true", help="the dataset with ToA/AoA maps (as bench_any_city.py)")
    ap.add_argument("--bundled", default="etoile", choices=ac.BUNDLED)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--cell", type=float, default=4.0)
    ap.add_argument("--mode-m", type=float, default=10.0, help="a prior error over this is a wrong mode (m)")
    args = ap.parse_args()
    path = ac.RESULTS.with_name(args.out)
    if not path.is_file():
        print(f"error: --out: no results file {path}", file=sys.stderr)
        return 2
    os.environ["RFLOCAL_WORKSPACE"] = str(ac.WORKSPACE)
    import torch

    torch.set_num_threads(1)
    scenes, base = ac.build_data(args.samples, args.cell, args.bundled, timing_maps=args.timing_maps)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for key in (t.strip() for t in args.tiles.split(",") if t.strip()):
        rows = json.loads(path.read_text())["tiles"].get(key, {}).get("models", {})
        modes = tile_modes(key, scenes[key], base, rows, models, args.cell, args.mode_m)
        results = json.loads(path.read_text())  # a parallel run's rows
        results["tiles"][key].setdefault("modes", {}).update(modes)
        path.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
