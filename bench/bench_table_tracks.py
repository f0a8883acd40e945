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
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DUKE = HERE.parent.parent / "shared" / "data" / "real" / "duke_cbrs" / "Duke_CBRS.csv"
TRACKERS = {"none": {}, "kalman": {"method": "kalman"}, "kalman+smooth": {"method": "kalman", "smooth": True},
            "particle": {"method": "particle"}}
TABLE = {"columns": {"lat": "Latitude", "lon": "Longitude", "time": "Timestamp"},
         "node_pairs": ["PSC:Level", "NCell*:NRxLev*"], "time_format": "%Y.%m.%d_%H.%M.%S", "sequence_gap_s": 600}


def _samples(duke: pd.DataFrame) -> tuple[list, np.ndarray, np.ndarray]:
    keys = list(duke.groupby(["latitude", "longitude", "device"], sort=False).groups)
    lat, lon = np.array([k[0] for k in keys]), np.array([k[1] for k in keys])
    x = np.radians(lon - lon.mean()) * np.cos(np.radians(lat.mean())) * 6371e3
    y = np.radians(lat - lat.mean()) * 6371e3
    return keys, x, y


def _walk(x: np.ndarray, y: np.ndarray, start: int, steps: int, taken: list[int]) -> tuple[list[int], list[float]]:
    order, t_s = [start], [0.0]
    while len(order) < steps:
        d = np.hypot(x - x[order[-1]], y - y[order[-1]])
        d[order + taken] = np.inf
        d[d < 3.0] = np.inf
        nxt = int(np.argmin(d))
        if not d[nxt] < 40.0:
            break
        order.append(nxt)
        t_s.append(t_s[-1] + d[nxt] / 1.4)
    return order, t_s


def _export(duke: pd.DataFrame, keys: list, walks: list[tuple[list[int], list[float]]]) -> pd.DataFrame:
    groups = duke.groupby(["latitude", "longitude", "device"], sort=False)
    rows = []
    for w, (order, t_s) in enumerate(walks):
        for i, t in zip(order, t_s, strict=True):
            g = groups.get_group(keys[i]).sort_values("rsrp", ascending=False, kind="stable")
            stamp = datetime.datetime(2019, 7, 16, 10) + datetime.timedelta(hours=2 * w, seconds=round(t))
            row = {"Timestamp": stamp.strftime("%Y.%m.%d_%H.%M.%S"), "Longitude": keys[i][1], "Latitude": keys[i][0],
                   "PSC": g.PCI.iloc[0], "Level": g.rsrp.iloc[0]}
            for k in range(1, 6):
                row |= {f"NCell{k}": g.PCI.iloc[k] if k < len(g) else None,
                        f"NRxLev{k}": g.rsrp.iloc[k] if k < len(g) else None}
            rows.append(row)
    return pd.DataFrame(rows)


def _one_set(duke: pd.DataFrame, starts: list[int], steps: int, folder: Path) -> dict:
    from rflocal_core.dataset.table_import import import_table
    from rflocal_core.infer import predict_tracked_file
    from rflocal_core.tracking import TrackConfig
    from rflocal_core.train import train

    keys, x, y = _samples(duke)
    walks: list[tuple[list[int], list[float]]] = []
    for start in starts:
        walks.append(_walk(x, y, start, steps, [i for w in walks for i in w[0]]))
    near = np.zeros(len(keys), dtype=bool)
    for i in (i for w in walks for i in w[0]):
        near |= np.hypot(x - x[i], y - y[i]) < 15.0
    far = {keys[i] for i in np.flatnonzero(~near)}
    name = f"campus-{starts[0]}"
    duke[[k in far for k in zip(duke.latitude, duke.longitude, duke.device)]].to_csv(folder / f"{name}.csv", index=False)
    _export(duke, keys, walks).to_csv(folder / f"{name}.txt", sep="\t", index=False)
    import_table(folder / f"{name}.csv", name=name, group_by=["latitude", "longitude", "device"],
                 columns={"node": "PCI", "lat": "latitude", "lon": "longitude", "rss_dbm": "rsrp"})
    run = train(name, "knn").run_id
    out = {"starts": starts, "samples": [len(w[0]) for w in walks], "walk_m": [round(1.4 * w[1][-1]) for w in walks]}
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
    keys, x, y = _samples(duke)
    dense = [i for i in range(len(keys)) if (np.hypot(x - x[i], y - y[i]) < 40.0).sum() > 40]
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
