"""Timed walks made of real Duke CBRS fingerprints, shared by ``tests/test_table_tracks.py`` and
``bench/bench_table_tracks.py``.

The Duke file has no times and is not in walk order, so a walk is made: from a start sample (one position and
phone), the nearest unvisited sample 3-40 m from the last, timed at 1.4 m/s (a pedestrian). The walks are written as
one G-NetTrack export (strongest cell as ``PSC``/``Level``, the others ``NCell*``/``NRxLev*``, whole-second
timestamps ``%Y.%m.%d_%H.%M.%S``), two hours apart; the Duke rows more than 15 m from every walked position are
left to train on.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import pandas as pd

SAMPLE_COLUMNS = ["latitude", "longitude", "device"]


@dataclass(frozen=True)
class Campus:
    """Duke's samples: ``keys`` (latitude, longitude, device) and their local ``x``, ``y`` in metres."""

    keys: list
    x: np.ndarray
    y: np.ndarray

    @classmethod
    def of(cls, duke: pd.DataFrame) -> Campus:
        keys = list(duke.groupby(SAMPLE_COLUMNS, sort=False).groups)
        lat, lon = np.array([k[0] for k in keys]), np.array([k[1] for k in keys])
        x = np.radians(lon - lon.mean()) * np.cos(np.radians(lat.mean())) * 6371e3
        return cls(keys, x, np.radians(lat - lat.mean()) * 6371e3)

    def near(self, i: int, radius_m: float) -> np.ndarray:
        return np.hypot(self.x - self.x[i], self.y - self.y[i]) < radius_m


@dataclass(frozen=True)
class TimedWalks:
    """The export of the walks, the Duke rows away from them, and each walk's samples and duration in seconds."""

    export: pd.DataFrame
    rest: pd.DataFrame
    samples: list[int]
    seconds: list[float]


def _walk(campus: Campus, start: int, steps: int, taken: list[int]) -> tuple[list[int], list[float]]:
    """Up to ``steps`` samples from ``start`` (fewer where no unvisited sample lies within 40 m) and their times."""
    order, t_s = [start], [0.0]
    while len(order) < steps:
        d = np.hypot(campus.x - campus.x[order[-1]], campus.y - campus.y[order[-1]])
        d[order + taken] = np.inf
        d[d < 3.0] = np.inf
        nxt = int(np.argmin(d))
        if not d[nxt] < 40.0:
            break
        order.append(nxt)
        t_s.append(t_s[-1] + d[nxt] / 1.4)
    return order, t_s


def _export_rows(duke: pd.DataFrame, keys: list, walks: list[tuple[list[int], list[float]]]) -> pd.DataFrame:
    groups = duke.groupby(SAMPLE_COLUMNS, sort=False)
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


def timed_walks(duke: pd.DataFrame, starts: list[int] | tuple[int, ...], steps: int) -> TimedWalks:
    """One walk of up to ``steps`` samples from each start (sample indices of :class:`Campus`), see the module."""
    campus = Campus.of(duke)
    walks: list[tuple[list[int], list[float]]] = []
    for start in starts:
        walks.append(_walk(campus, start, steps, [i for w in walks for i in w[0]]))
    near = np.zeros(len(campus.keys), dtype=bool)
    for i in (i for w in walks for i in w[0]):
        near |= campus.near(i, 15.0)
    far = {campus.keys[i] for i in np.flatnonzero(~near)}
    rest = duke[[k in far for k in zip(duke.latitude, duke.longitude, duke.device)]]
    return TimedWalks(_export_rows(duke, campus.keys, walks), rest, [len(w[0]) for w in walks],
                      [w[1][-1] for w in walks])
