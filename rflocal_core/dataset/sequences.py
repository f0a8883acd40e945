"""A dataset's moving samples as sequence files: one sample per report time, each with its own truth.

A generated sample of a moving target holds reports at several times and its positions at each
(``pos_m [N, T, 3]``). :func:`export_sequences` splits it into one sample per report time, all
carrying ``sequence`` = the original sample id, so ``predict --track`` can filter them:

    ms = export_sequences("walks", split="test", limit=20)   # ids <dataset>-<row>-t<k>
    ms = export_sequences("walks", history=True)             # each sample: the reports so far (history tokens)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import zarr

from rflocal_core.dataset import store
from rflocal_core.dataset.exchange import IMPORT_SOURCE, export_dataset
from rflocal_core.errors import InvalidInputError
from rflocal_core.measurements import MeasurementSet, Position, Sample


def _rows_by_id(root: zarr.Group, name: str) -> dict[str, int]:
    """Row of each exported sample id: ``<dataset>-<row>`` for generated datasets, the file's ids for imported ones."""
    samples = root["samples"]
    if dict(root.attrs).get("source") == IMPORT_SOURCE:
        return {str(sid): i for i, sid in enumerate(dict(samples.attrs).get("sample_ids", []))}
    return {f"{name}-{i}": i for i in range(samples["scene_idx"].shape[0])}


def export_sequences(name: str, *, split: str = "test", limit: int | None = None, scene: str | None = None,
                     history: bool = False) -> MeasurementSet:
    """The samples of a dataset split as sequences: one sample per report time (see the module docs).

    Parameters
    ----------
    name, split, limit, scene
        As :func:`~rflocal_core.dataset.exchange.export_dataset` (``limit`` counts the original samples).
    history : bool
        Each sample holds the reports up to its time (what mapformer's history tokens read), not only
        those at its time.

    Returns
    -------
    MeasurementSet
        Sample ids ``<original id>-t<k>`` (k from 0), ``sequence`` the original id, truth the position
        at that report time (None where the dataset keeps none: imported datasets keep the last).

    Raises
    ------
    InvalidInputError
        No sample of the split has more than one report time (nothing to track).
    """
    ms = export_dataset(name, split=split, limit=limit, scene=scene)
    root = store.open_dataset(name)
    rows = _rows_by_id(root, name)
    samples = root["samples"]
    out: list[Sample] = []
    longest = 1
    for sample in ms.samples:
        row = rows[sample.id]
        mask, times_s = np.asarray(samples["step_mask"][row]), np.asarray(samples["t_s"][row], float)
        pos, latlon = np.asarray(samples["pos_m"][row], float), np.asarray(samples["latlon"][row], float)
        times = sorted({r.t_s for r in sample.reports})
        longest = max(longest, len(times))
        steps = np.flatnonzero(mask) if mask.any() else np.arange(len(mask))
        for k, t in enumerate(times):
            step = int(steps[np.argmin(np.abs(times_s[steps] - t))])  # the report times were written rounded
            reports = tuple(r for r in sample.reports if (r.t_s <= t if history else r.t_s == t))
            out.append(Sample(f"{sample.id}-t{k}", reports, _truth(sample.truth, pos[step], latlon[step]), sample.id))
    if longest < 2:
        # an import that keeps its tracks is tracked as exported: its samples are already the track's steps
        hint = (" Its samples already keep the tracks of the import (each sample a step, with its track id and "
                "time): export them without --sequences (Live Inference: 'As sequences' off) and track them as they "
                "are." if keeps_tracks(name) else "")
        msg = (f"dataset: the {split} split of {name!r} has one report time per sample (snapshots); expected a "
               f"dataset generated with motion and --sequence MIN,MAX above 1 to export sequences.{hint}")
        raise InvalidInputError(msg)
    note = ("Sequences: each sample of the split is split into one sample per report time (ids <sample>-t<k>, "
            "sequence = the sample's id), truth the position at that time"
            + ("; each holds the reports up to its time." if history else "."))
    return replace(ms, samples=tuple(out), notes=(*ms.notes, note))


def _truth(last: Position | None, pos: np.ndarray, latlon: np.ndarray) -> Position | None:
    """The truth at one step, written as the file writes the last one (lat/lon only where it has them)."""
    if last is None or not np.isfinite(pos[:2]).all():
        return None
    geo = last.lat is not None and np.isfinite(latlon).all()
    return Position(lat=float(latlon[0]) if geo else None, lon=float(latlon[1]) if geo else None,
                    x_m=_short(pos[0]), y_m=_short(pos[1]), alt_m=_short(pos[2]) if np.isfinite(pos[2]) and last.alt_m is not None else None)


def _short(value: float) -> float:
    """As the export writes positions: the shortest decimal that reads back as the same float32."""
    return float(str(np.float32(value)))


def sample_tracks(name: str, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The track id (None: no track) and time (s: the last report's ``t_s``) of each dataset row of ``indices``.

    Imported datasets keep their samples' tracks (a table's ``sequence`` column or ``sequence_gap_s``, a JSON
    file's ``sequence``); None for a dataset without any (generated datasets: one moving sample is its own track,
    see :func:`export_sequences`).
    """
    samples = store.open_dataset(name)["samples"]
    tracks = dict(samples.attrs).get("sample_sequences")
    if not tracks:
        return None
    idx = np.asarray(indices, dtype=np.int64)
    t_s = np.asarray(samples["t_s"][...], dtype=np.float64)[idx]
    steps = np.asarray(samples["step_mask"][...], dtype=bool)[idx]
    last = np.where(steps.any(1), steps.shape[1] - 1 - np.argmax(steps[:, ::-1], axis=1), 0)
    ids = np.array([tracks[i] if i < len(tracks) else None for i in idx], dtype=object)
    return ids, t_s[np.arange(len(idx)), last]


def keeps_tracks(name: str) -> bool:
    """Whether the dataset keeps its samples' tracks (:func:`sample_tracks` has something to give)."""
    return bool(dict(store.open_dataset(name)["samples"].attrs).get("sample_sequences"))
