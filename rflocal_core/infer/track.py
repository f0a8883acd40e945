"""Tracking a file's sequences after any model (``predict --track kalman|particle``, Live Inference).

A sequence file gives each sample a ``sequence`` (the track it belongs to) and report times
(``t_s``); one sample per report time. The run predicts every sample on its own; then each
sequence's predictions, ordered by time, go through :func:`rflocal_core.tracking.track` with
each prediction's σ as its measurement noise. Every row keeps the raw ``x_m``, ``y_m``,
``error_m`` and gains ``tracked_x_m``, ``tracked_y_m``, ``tracked_sigma_*``, ``tracked_error_m``:

    res = predict_measurements(run, ms)
    tracked = track_prediction(res, ms, TrackConfig(method="particle"), mask=run_outdoor_mask(run, res.scene))
    predict_tracked_file(["run-a"], "walk.json", TrackConfig(method="kalman"))   # what `predict --track` prints
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from rflocal_core.errors import InferenceInputError
from rflocal_core.infer.predict import FilePrediction, PredictedSample, RunPrediction, predict_file, read_input
from rflocal_core.infer.run import LoadedRun, load_run
from rflocal_core.infer.views import scene_map
from rflocal_core.measurements import MeasurementSet
from rflocal_core.tracking import OutdoorMask, TrackConfig, outdoor_mask, track

#: Cell of the building mask a particle filter moves in (m): walls drawn to about this.
MASK_CELL_M = 1.0


def sample_times(ms: MeasurementSet) -> dict[str, list[tuple[float, str]]]:
    """Each sequence's samples as ``(time, sample id)`` in time order (a sample's time: its latest ``t_s``).

    Raises
    ------
    InferenceInputError
        A sample has no ``sequence`` (the message names the field and the first such sample), or a
        sequence of several samples has one time for all (no report times: ``t_s``).
    """
    missing = [i for i, s in enumerate(ms.samples) if s.sequence is None]
    if missing:
        first = missing[0]
        msg = (f"samples[{first}].sequence: tracking needs each sample's sequence id (the track it belongs to, one "
               f"sample per report time), got none for {len(missing)} of {len(ms.samples)} samples (first: sample "
               f"{ms.samples[first].id!r}); predict without --track, or add \"sequence\" to the samples")
        raise InferenceInputError(msg)
    out: dict[str, list[tuple[float, str]]] = {}
    index: dict[str, int] = {}
    for i, sample in enumerate(ms.samples):
        out.setdefault(str(sample.sequence), []).append((max(r.t_s for r in sample.reports), sample.id))
        index.setdefault(str(sample.sequence), i)
    for seq, rows in out.items():
        times = {t for t, _ in rows}
        if len(rows) > 1 and len(times) == 1:
            msg = (f"samples[{index[seq]}].reports[].t_s: the {len(rows)} samples of sequence {seq!r} all have t_s = "
                   f"{rows[0][0]:g}; tracking needs the report times (t_s, seconds) to increase along a sequence")
            raise InferenceInputError(msg)
        rows.sort(key=lambda row: row[0])  # stable: samples at one time keep the file's order
    return out


def track_rows(tracks: np.ndarray, t_s: np.ndarray, z_m: np.ndarray, sigma_m: np.ndarray | None,
               config: TrackConfig) -> np.ndarray:
    """Tracked positions [N, 2] of rows of several tracks: each track's rows (``tracks`` [N], None: no track)
    filtered in time order (``t_s`` [N]) from the answers ``z_m`` [N, 2] (NaN: no answer, a step without a report)
    with their ``sigma_m`` [N, 2]. Rows without a track stay NaN."""
    out = np.full((len(z_m), 2), np.nan)
    for seq in dict.fromkeys(s for s in tracks if s is not None):
        rows = np.flatnonzero(tracks == seq)
        rows = rows[np.argsort(t_s[rows], kind="stable")]
        out[rows] = track(t_s[rows], z_m[rows], None if sigma_m is None else sigma_m[rows], config).xy
    return out


def run_outdoor_mask(run: LoadedRun, scene: str | None, points_m: list[tuple[float, float]] = ()) -> OutdoorMask:
    """Where a device of ``scene`` can be: the open cells around the buildings a map of the run shows
    (:func:`~rflocal_core.infer.views.scene_map`), over the scene's extent and ``points_m``."""
    view = scene_map(run, scene or "", list(points_m))
    return outdoor_mask([(np.asarray(xs), np.asarray(ys)) for xs, ys in view.buildings], view.extent_m,
                        cell_m=MASK_CELL_M)


def track_prediction(res: RunPrediction, ms: MeasurementSet, config: TrackConfig, *,
                     mask: OutdoorMask | None = None) -> RunPrediction:
    """``res`` with each sequence's predictions tracked by ``config.method`` (``mask``: the particle filter's).

    Samples the run could not predict are left out of their sequence; a prediction without a
    position is a time step without a report; one without a σ takes ``config.default_sigma_m``.
    """
    if config.method is None:
        return res
    by_id = {row.id: row for row in res.predictions}
    tracked: dict[str, PredictedSample] = {}
    for seq, rows in sample_times(ms).items():
        rows = [(t, sid) for t, sid in rows if sid in by_id]
        if not rows:
            continue
        preds = [by_id[sid] for _, sid in rows]
        z = np.array([[_nan(p.x_m), _nan(p.y_m)] for p in preds])
        sigma = np.array([[_nan(p.sigma_x_m), _nan(p.sigma_y_m)] for p in preds])
        out = track(np.array([t for t, _ in rows]), z, sigma, config, mask)
        for k, ((t, sid), pred) in enumerate(zip(rows, preds)):
            tracked[sid] = _with_track(pred, seq, t, out.xy[k], out.sigma[k])
    return replace(res, predictions=tuple(tracked.get(row.id, row) for row in res.predictions), track=config.method)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _round(value: float) -> float | None:
    return round(float(value), 2) if math.isfinite(value) else None


def _with_track(pred: PredictedSample, seq: str, t_s: float, xy: np.ndarray, sigma: np.ndarray) -> PredictedSample:
    error = None
    if pred.truth is not None and pred.truth.x_m is not None and np.isfinite(xy).all():
        error = _round(math.hypot(xy[0] - pred.truth.x_m, xy[1] - pred.truth.y_m))
    return replace(pred, sequence=seq, t_s=round(float(t_s), 6), tracked_x_m=_round(xy[0]), tracked_y_m=_round(xy[1]),
                   tracked_sigma_x_m=_round(sigma[0]), tracked_sigma_y_m=_round(sigma[1]), tracked_error_m=error)


def predict_tracked_file(run_ids: list[str] | str, source: str | os.PathLike[str] | bytes, config: TrackConfig, *,
                         strict: bool = False, backend: str = "torch",
                         table: Mapping[str, Any] | None = None) -> FilePrediction:
    """:func:`~rflocal_core.infer.predict.predict_file`, then each run's sequences tracked (``config.method``).

    ``table``: read ``source`` as a table with this column mapping (:func:`~rflocal_core.infer.predict.read_input`).
    Raises :class:`~rflocal_core.errors.InferenceInputError` naming the field when the file has no
    sequence ids or no report times (before any model runs).
    """
    if config.method is not None:  # refuse a file without sequences before predicting it
        sample_times(read_input(source, table=table, strict=strict)[1])
    result = predict_file(run_ids, source, strict=strict, backend=backend, table=table)
    if config.method is None or result.measurements is None:
        return result
    runs = []
    for res in result.runs:
        mask = None
        if config.method == "particle" and res.scene is not None:
            points = [(p.x_m, p.y_m) for p in res.predictions if p.x_m is not None]
            mask = run_outdoor_mask(load_run(res.run_id), res.scene, points)
            if mask.outdoor.all():
                note = f"no building footprints known for scene {res.scene!r}: the particle filter ran without walls"
                res = replace(res, warnings=(*res.warnings, note))
        runs.append(track_prediction(res, result.measurements, config, mask=mask))
    return replace(result, runs=tuple(runs))


def sequence_lines(res: RunPrediction, sample_id: str) -> dict[str, list[float | None]] | None:
    """The tracked sequence of ``sample_id`` in time order, for a map: ``raw_x``, ``raw_y`` (the model's
    positions), ``tracked_x``, ``tracked_y``, ``truth_x``, ``truth_y`` (None where absent); None when
    ``res`` is not tracked or the sample has no sequence."""
    row = next((p for p in res.predictions if p.id == sample_id), None)
    if res.track is None or row is None or row.sequence is None:
        return None
    rows = sorted((p for p in res.predictions if p.sequence == row.sequence), key=lambda p: p.t_s or 0.0)
    return {"raw_x": [p.x_m for p in rows], "raw_y": [p.y_m for p in rows],
            "tracked_x": [p.tracked_x_m for p in rows], "tracked_y": [p.tracked_y_m for p in rows],
            "truth_x": [p.truth.x_m if p.truth else None for p in rows],
            "truth_y": [p.truth.y_m if p.truth else None for p in rows]}
