"""Where the physics prior fails: per tile, mapformer's physics prior alone and the line-of-sight share of its ranges.

Brief A21 (issue 19): on Paris (Sionna's ``etoile``) held out, mapformer ties its physics prior, which is more than
10 m off on half the samples (a wrong mode where few ToA ranges are line-of-sight). Training tiles that teach the
network to leave that mode must be tiles where the prior fails the same way. This script measures, with the tile
settings of ``bench_any_city.py`` (500 samples, 4 m cells), the candidates: Sionna's ``san_francisco`` and procedural
tiles of the presets of ``bench_any_city.PROCEDURAL_EXTRA`` (``pd``: dense, 5-10 m streets, 20-40 m median height;
``pm``: Paris-like 80-140 m blocks, 10-25 m streets, 15-25 m), and, for comparison, the four tiles of
``bench_any_city.py`` (its dataset, all samples). Per tile: the ``physics prior`` row (median / P95, m) and the shares
of samples it has more than 10 m and 50 m off; ToA reports and line-of-sight ToA reports a sample, the NLoS share of
the ToA reports. Scenes and the candidates' dataset are kept in ``bench/workspace-any-city``; results in
``bench/results/prior_tiles.json``::

    PYTHONPATH=$PWD nice -n 10 python bench/bench_prior_tiles.py   # 7 min of ray tracing, 9 of priors (load 5)
    PYTHONPATH=$PWD python bench/bench_prior_tiles.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_any_city as ac  # noqa: E402  (bench/ is not a package)

RESULTS = ac.ROOT / "bench" / "results" / "prior_tiles.json"
#: The candidate training tiles: procedural tile names (``bench_any_city.procedural_extra``) and Sionna scenes.
CANDIDATES = ("pd1-p00", "pd1-p01", "pd1-p02", "pm1-p00", "pm1-p01", "pm1-p02", "san_francisco")
#: ``pd1-p03`` (603 m, 44 m blocks, 37.6 m median) is left out: no outdoor position there is covered by enough sites.
CANDIDATES_DATASET = "prior-tiles-500-4m"
#: A tile is Paris-like for the prior when at least this share of its samples has the prior more than 10 m off.
PARIS_LIKE_SHARE = 0.4


def candidate_scenes() -> tuple[str, ...]:
    """Build the candidate tiles (kept when present): their scene names, in :data:`CANDIDATES` order."""
    from rflocal_core.scene.tiles import TilesConfig, build_tiles

    sionna = tuple(c for c in CANDIDATES if c in ac.BUNDLED)
    real = {t.source: t.name for t in build_tiles(TilesConfig(count=0, seed=0, prefix="ac", unseen=0,
                                                              bundled=sionna)).tiles}
    out = []
    for name in CANDIDATES:
        if name in real:
            out.append(real[name])
        else:
            out.append(next(t.name for t in build_tiles(ac.procedural_extra(name)).tiles if t.name == name))
    return tuple(out)


def prior_facts(x: Any, cell_m: float) -> dict[str, Any]:
    """The physics prior's errors on ``x`` (one tile's samples) and the line-of-sight share of its ToA reports."""
    err = np.hypot(*(ac.physics_prior(x, cell_m) - x.truth_m).T)
    toa = np.isfinite(x.toa_ns)
    los = toa & (x.los == 1)
    return {"n": len(x), "prior_median_m": round(float(np.median(err)), 1),
            "prior_p95_m": round(float(np.percentile(err, 95)), 1),
            "share_over_10m": round(float(np.mean(err > 10)), 3), "share_over_50m": round(float(np.mean(err > 50)), 3),
            "toa_per_sample": round(float(toa.sum(1).mean()), 2),
            "los_toa_per_sample": round(float(los.sum(1).mean()), 2),
            "nlos_share_of_toa": round(float(1 - los.sum() / max(int(toa.sum()), 1)), 3)}


def all_samples(dataset: str) -> Any:
    """Every sample of ``dataset`` as one :class:`Inputs`, with maps."""
    import zarr

    from rflocal_core.dataset.store import dataset_path
    from rflocal_core.models import load_inputs

    n = zarr.open_group(str(dataset_path(dataset)), mode="r")["samples/scene_idx"].shape[0]
    return load_inputs(dataset, "train", split_index=np.arange(n))


def table(results: dict[str, Any]) -> str:
    """Markdown: one row a tile."""
    lines = ["| tile | role | prior median / P95 (m) | > 10 m off | > 50 m off | ToA / LoS ToA a sample | NLoS share "
             "of ToA | Paris-like |", "|---|---|---|---|---|---|---|---|"]
    for name, row in results.get("tiles", {}).items():
        like = "yes" if row["share_over_10m"] >= PARIS_LIKE_SHARE else "no"
        lines.append(f"| {name} | {row['role']} | {row['prior_median_m']:g} / {row['prior_p95_m']:g} | "
                     f"{100 * row['share_over_10m']:.0f}% | {100 * row['share_over_50m']:.0f}% | "
                     f"{row['toa_per_sample']:.2f} / {row['los_toa_per_sample']:.2f} | "
                     f"{100 * row['nlos_share_of_toa']:.0f}% | {like if row['role'] == 'candidate' else '-'} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="store_true", help="only print the table of bench/results/prior_tiles.json")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return 0
    os.environ["RFLOCAL_WORKSPACE"] = str(ac.WORKSPACE)
    import torch

    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    scenes = candidate_scenes()
    ac.generate_tiles(CANDIDATES_DATASET, scenes, 500, 4.0)
    _, base = ac.build_data(500, 4.0, "etoile")
    tiles = {}
    for dataset, role in ((base, "bench tile"), (CANDIDATES_DATASET, "candidate")):
        x = all_samples(dataset)
        for i, scene in enumerate(x.scenes):
            tiles[scene] = {"role": role, **prior_facts(x.subset(np.flatnonzero(x.scene_idx == i)), 4.0)}
            print(scene, json.dumps(tiles[scene]), flush=True)
    results = {"tiles": tiles, "date_utc": datetime.now(UTC).isoformat(timespec="minutes"),
               "load_1min": [round(load0, 1), round(os.getloadavg()[0], 1)], "cpus": os.cpu_count(),
               "datasets": [base, CANDIDATES_DATASET], "command": " ".join(["python", *sys.argv])}
    RESULTS.write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
