"""Tracking a drive test read from a table (``--sequence-gap-s``): per-sample ``knn`` answers against the same
followed by each tracker, on walks of real Duke CBRS fingerprints.

Setup (fixed; rename the benchmark if you change it):

- ``../shared/data/real/duke_cbrs/Duke_CBRS.csv`` grouped into samples by position and phone (12,595).
  The file has no times and is not in walk order, so each walk is made: from a start sample, the nearest
  unvisited sample 3-40 m from the last, ``--steps`` samples, timed at 1.4 m/s (a pedestrian), written as a
  G-NetTrack export (tab-separated ``.txt``; strongest cell as ``PSC``/``Level``, the others ``NCell*``/``NRxLev*``;
  timestamps ``%Y.%m.%d_%H.%M.%S``, whole seconds). Two walks per file, two hours apart.
- ``knn`` (defaults) trained on the Duke samples more than 15 m from every walked position (the walks are new
  ground, as a user's next drive test would be partly).
- ``predict_tracked_file`` on the export with ``sequence_gap_s=600`` (the pause makes two tracks): no tracker,
  ``kalman``, ``kalman`` with the smoother, ``particle`` (no buildings known on Duke: open ground); pedestrian motion.
- ``--sets`` files, their start samples drawn with seed 0 among the samples with 40 neighbours within 40 m.

Figures: median and mean error over every sample of a file, then the median over the files.

Run::

    .venv/bin/python bench/bench_table_tracks.py            # 5 files of 2 x 150 samples, about 3 min on 2 cores
    .venv/bin/python bench/bench_table_tracks.py --sets 2   # quicker

Workspace: a temporary folder; results ``bench/results/table-tracks.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the walks are the tests' (tests/duke_walks.py)

from tests.duke_walks import Campus, timed_walks  # noqa: E402

DUKE = HERE.parent.parent / "shared" / "data" / "real" / "duke_cbrs" / "Duke_CBRS.csv"
TRACKERS = {"none": {}, "kalman": {"method": "kalman"}, "kalman+smooth": {"method": "kalman", "smooth": True},
            "particle": {"method": "particle"}}
TABLE = {"columns": {"lat": "Latitude", "lon": "Longitude", "time": "Timestamp"},
         "node_pairs": ["PSC:Level", "NCell*:NRxLev*"], "time_format": "%Y.%m.%d_%H.%M.%S", "sequence_gap_s": 600}


def _one_set(duke: pd.DataFrame, starts: list[int], steps: int, folder: Path) -> dict:
    from rflocal_core.dataset.table_import import import_table
    from rflocal_core.infer import predict_tracked_file
    from rflocal_core.tracking import TrackConfig
    from rflocal_core.train import train

    walks = timed_walks(duke, starts, steps)
    name = f"campus-{starts[0]}"
    walks.rest.to_csv(folder / f"{name}.csv", index=False)
    walks.export.to_csv(folder / f"{name}.txt", sep="\t", index=False)
    import_table(folder / f"{name}.csv", name=name, group_by=["latitude", "longitude", "device"],
                 columns={"node": "PCI", "lat": "latitude", "lon": "longitude", "rss_dbm": "rsrp"})
    run = train(name, "knn").run_id
    out = {"starts": starts, "samples": walks.samples, "walk_m": [round(1.4 * t) for t in walks.seconds]}
    for label, config in TRACKERS.items():
        res = predict_tracked_file(run, folder / f"{name}.txt", TrackConfig(**config), table=TABLE).runs[0]
        key = "error_m" if label == "none" else "tracked_error_m"
        errors = np.array([getattr(p, key) for p in res.predictions])
        out[label] = {"median_m": round(float(np.median(errors)), 1), "mean_m": round(float(errors.mean()), 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    if not DUKE.is_file():
        sys.exit(f"{DUKE} is absent")
    duke = pd.read_csv(DUKE)
    campus = Campus.of(duke)
    dense = [i for i in range(len(campus.keys)) if campus.near(i, 40.0).sum() > 40]
    rng = np.random.default_rng(0)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RFLOCAL_WORKSPACE"] = str(Path(tmp) / "ws")
        sets = [_one_set(duke, [int(s) for s in rng.choice(dense, 2, replace=False)], args.steps, Path(tmp))
                for _ in range(args.sets)]
    summary = {label: {stat: float(np.median([s[label][stat] for s in sets])) for stat in ("median_m", "mean_m")}
               for label in TRACKERS}
    result = {"bench": "table-tracks", "sets": sets, "summary": summary, "seconds": round(time.time() - t0),
              "command": " ".join(["bench/bench_table_tracks.py", *sys.argv[1:]])}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "table-tracks.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| tracker | median of the files' median error m | median of the files' mean error m |")
    print("|---|---|---|")
    for label, s in summary.items():
        print(f"| {label} | {s['median_m']:.1f} | {s['mean_m']:.1f} |")


if __name__ == "__main__":
    main()
