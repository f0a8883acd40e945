"""Predict the samples of a measurement file with one or several runs.

    run = load_run("setnet-demo-...")
    out = predict_measurements(run, load_measurements("file.json", on_error="collect"))
    out.predictions[0]   # PredictedSample: id, x_m, y_m, lat, lon, sigma_x_m, sigma_y_m, error_m, ...
    predict_file(["run-a", "run-b"], "file.json").to_json()   # what `predict` prints
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rflocal_core.dataset.rasters import Grid
from rflocal_core.errors import InferenceInputError
from rflocal_core.infer.anyscene import file_inputs
from rflocal_core.infer.run import LoadedRun, load_run
from rflocal_core.measurements import MeasurementSet, QualityReport
from rflocal_core.models.inputs import Inputs, Prediction, errors_m
from rflocal_core.reference import BadSample, RunReference
from rflocal_core.results import JsonResult, json_field

#: Candidate positions listed per sample for models with a posterior.
TOP_CANDIDATES = 5
#: Candidates are at least this far apart; each carries the posterior mass within it (m).
CANDIDATE_RADIUS_M = 10.0


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Candidate(JsonResult):
    """A posterior mode: its position and the posterior mass within :data:`CANDIDATE_RADIUS_M`."""

    x_m: float
    y_m: float
    lat: float
    lon: float
    p: float


@dataclass(frozen=True)
class Place(JsonResult):
    """A position in scene metres and lat/lon (None where not finite)."""

    x_m: float | None
    y_m: float | None
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class PredictedSample(JsonResult):
    """The prediction of one sample by one run.

    ``sigma_x_m``/``sigma_y_m`` are None where the model has no uncertainty; ``truth`` and
    ``error_m`` are None where the file gives no truth.
    """

    id: str
    x_m: float | None
    y_m: float | None
    lat: float | None
    lon: float | None
    sigma_x_m: float | None
    sigma_y_m: float | None
    truth: Place | None
    error_m: float | None
    #: What is unusual (measurements outside the training range, a position outside the training area).
    flags: tuple[str, ...]
    #: Posterior modes, for models with a posterior.
    candidates: tuple[Candidate, ...] = ()
    #: The 2σ ellipse (meant to hold 86.5%) over the 1σ one where the run fitted it (``sigma_radii``
    #: "quantile": heavy-tailed errors); None (not in the JSON): 2, a Gaussian's.
    ratio_2sigma: float | None = json_field(default=None, omit_none=True)
    #: Physics residual at the prediction (mapformer): a confidence signal; None for other models.
    residual_db: float | None = json_field(default=None, omit_none=True)
    #: Tracked (``predict --track``, see :mod:`rflocal_core.infer.track`): the sample's sequence, its time
    #: (the latest ``t_s`` of its reports), the filtered position, its 1σ and error; None (not in the
    #: JSON) when not tracked.
    sequence: str | None = json_field(default=None, omit_none=True)
    t_s: float | None = json_field(default=None, omit_none=True)
    tracked_x_m: float | None = json_field(default=None, omit_none=True)
    tracked_y_m: float | None = json_field(default=None, omit_none=True)
    tracked_sigma_x_m: float | None = json_field(default=None, omit_none=True)
    tracked_sigma_y_m: float | None = json_field(default=None, omit_none=True)
    tracked_error_m: float | None = json_field(default=None, omit_none=True)


@dataclass(frozen=True)
class Heatmap:
    """A posterior over a grid: ``p`` [ny, nx] (sums to 1) on ``grid``."""

    p: np.ndarray
    grid: Grid


@dataclass(frozen=True)
class RunPrediction(JsonResult):
    """What one run predicts for a measurement file (see :func:`predict_measurements`)."""

    run_id: str
    model: str | None
    mode: str
    #: The scene predicted in (None when no sample could be predicted).
    scene: str | None
    predictions: tuple[PredictedSample, ...]
    bad_samples: tuple[BadSample, ...]
    warnings: tuple[str, ...]
    #: Model time for the whole file (ms), and per sample (None when nothing was predicted).
    predict_ms: float = 0.0
    predict_ms_per_sample: float | None = None
    #: False (and in the JSON) when the scene has no geographic origin: lat/lon are placeholders.
    georeferenced: bool | None = json_field(default=None, omit_none=True)
    #: Posterior per sample id, with ``heatmaps=True`` (arrays: not in the JSON).
    heatmaps: dict[str, Heatmap] | None = json_field(default=None, json=False)
    #: True (and in the JSON) when the file's scene or nodes are not the run's training ones and the model
    #: predicted in the file's own scene (a geometric model; see :mod:`rflocal_core.infer.anyscene`).
    new_scene: bool | None = json_field(default=None, omit_none=True)
    #: The filter that tracked the file's sequences (``kalman``, ``particle``; None: not tracked).
    track: str | None = json_field(default=None, omit_none=True)
    #: ``"onnxruntime"`` (and in the JSON) when the network ran in onnxruntime; None: PyTorch or Python.
    backend: str | None = json_field(default=None, omit_none=True)

    def sample(self, sample_id: str) -> PredictedSample:
        """The prediction of sample ``sample_id``."""
        for row in self.predictions:
            if row.id == sample_id:
                return row
        msg = f"sample: run {self.run_id!r} predicted no sample {sample_id!r}"
        raise InferenceInputError(msg)


@dataclass(frozen=True)
class FileSummary(JsonResult):
    """A measurement file as read for prediction: samples read, invalid ones, and what the checks dropped."""

    samples: int
    invalid: int
    mode: str
    scene: str | None
    quality: QualityReport


@dataclass(frozen=True)
class FilePrediction(JsonResult):
    """A file predicted by one or several runs (see :func:`predict_file`)."""

    file: FileSummary
    runs: tuple[RunPrediction, ...]
    #: The file as predicted (after the quality checks): for tracking its sequences (not in the JSON).
    measurements: MeasurementSet | None = json_field(default=None, json=False)


# --------------------------------------------------------------------------- predicting


def _finite(value: Any, digits: int = 3) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _candidates(heat: np.ndarray, grid: Any, frame: Any, k: int) -> tuple[Candidate, ...]:
    """Top-``k`` posterior modes at least :data:`CANDIDATE_RADIUS_M` apart, with the mass around each."""
    flat = heat.ravel()
    top = np.argpartition(-flat, 5000)[:5000] if flat.size > 5000 else np.arange(flat.size)  # no full sort
    order = top[np.argsort(-flat[top], kind="stable")]
    order = order[flat[order] > 0]
    iy, ix = np.unravel_index(order, heat.shape)
    xs, ys = grid.x_m[ix], grid.y_m[iy]
    gx, gy = np.meshgrid(grid.x_m, grid.y_m)
    out: list[Candidate] = []
    free = np.ones(len(order), bool)  # cells not within 2 radii of a candidate (one pass per candidate)
    while len(out) < k and free.any():
        j = int(np.argmax(free))  # the strongest free cell
        x, y = xs[j], ys[j]
        mass = float(heat[(gx - x) ** 2 + (gy - y) ** 2 <= CANDIDATE_RADIUS_M**2].sum())
        lat, lon = frame.to_latlon(x, y)
        out.append(Candidate(round(float(x), 2), round(float(y), 2), float(lat), float(lon), round(mass, 4)))
        free &= (xs - x) ** 2 + (ys - y) ** 2 >= (2 * CANDIDATE_RADIUS_M) ** 2
    return tuple(out)


def predict_measurements(
    run: LoadedRun, ms: MeasurementSet, *, heatmaps: bool = False, top_k: int = TOP_CANDIDATES,
) -> RunPrediction:
    """Predict every sample of a measurement file with one run.

    Parameters
    ----------
    run : LoadedRun
        From :func:`~rflocal_core.infer.run.load_run`.
    ms : MeasurementSet
        A validated file; samples skipped by lenient reading (``ms.errors``) are listed as bad.
    heatmaps : bool
        Also return the posterior heatmap of each sample where the model has one (map
        matching), in ``heatmaps`` (not JSON: arrays).
    top_k : int
        Candidate positions per sample for models with a posterior.

    Returns
    -------
    RunPrediction
        ``run_id``, ``model``, ``scene``, ``mode``; ``predictions``: per predicted sample
        ``id``, ``x_m``, ``y_m``, ``lat``, ``lon``, ``sigma_x_m``, ``sigma_y_m`` (None where the
        model has no uncertainty), ``truth`` (``x_m``, ``y_m``, ``lat``, ``lon``) and
        ``error_m`` when the file gives the truth, ``flags`` (what is unusual: measurements
        outside the training range, a position outside the training area), ``candidates``;
        ``bad_samples`` (``index``, ``id``, ``message``); ``warnings``; ``predict_ms`` (model
        time for the whole file) and ``predict_ms_per_sample``.

    Raises
    ------
    InferenceInputError
        The file's mode is not the run's; or its scene or nodes are not the run's and the model
        cannot predict in another scene (a geometric model predicts in the file's own scene:
        ``new_scene`` is then True; see :mod:`rflocal_core.infer.anyscene`).
    """
    read = file_inputs(run, ms)
    x, bad, warnings, flags, ref = read.inputs, read.bad, read.warnings, read.flags, read.reference
    empty = RunPrediction(run.run_id, run.config.get("model"), ref.mode, None, (),
                          tuple(sorted(bad, key=lambda b: b.index)), tuple(warnings),
                          new_scene=True if read.new_scene else None,
                          backend=None if run.backend == "torch" else run.backend)
    if x is None:
        return empty
    scene = x.scenes[int(x.scene_idx[0])]
    run.remember_scene(scene, ref if read.new_scene else None)
    frame = ref.frame(scene)
    if not frame.georeferenced:
        warnings.append(f"scene {scene!r} is not geo-referenced: positions are in scene metres (x_m, y_m); "
                        "lat/lon are placeholders around a nominal origin, not places on Earth")
    t0 = time.perf_counter()
    pred = run.predict(x)
    elapsed_ms = 1000 * (time.perf_counter() - t0)
    sample_ids = [ms.samples[int(i)].id for i in x.indices]
    area = ("the extent of scene " + repr(scene)) if read.new_scene else "the area the model was trained on"
    rows, maps_out = _rows(run, x, pred, sample_ids, flags, frame, heatmaps=heatmaps, top_k=top_k,
                           area=(ref, area))
    return replace(empty, scene=scene, predictions=tuple(rows), warnings=tuple(warnings),
                   predict_ms=round(elapsed_ms, 3), predict_ms_per_sample=round(elapsed_ms / len(sample_ids), 4),
                   georeferenced=None if frame.georeferenced else False, heatmaps=maps_out if heatmaps else None)


def _rows(run: LoadedRun, x: Inputs, pred: Prediction, sample_ids: list[str], flags: list[list[str]], frame: Any,
          *, heatmaps: bool, top_k: int, area: tuple[RunReference, str]) -> tuple[list[PredictedSample],
                                                                                 dict[str, Heatmap]]:
    """One :class:`PredictedSample` per sample of ``x``, and the posteriors asked for.

    ``area``: the reference whose ``area_m`` a position should lie in, and what that area is (for the flag).
    """
    lat, lon = frame.to_latlon(pred.position_m[:, 0], pred.position_m[:, 1])
    lat, lon = np.atleast_1d(lat), np.atleast_1d(lon)
    errors = errors_m(pred, x)
    box, area_text = area[0].area_m, area[1]
    margin = 0.1 * max(box[1] - box[0], box[3] - box[2], 10.0) if np.isfinite(box).all() else 0.0
    rows, maps_out = [], {}
    ratio = run.sigma_map["ratio_2sigma"]
    ratio_2sigma = round(ratio, 4) if ratio != 2.0 else None  # a fitted 2σ radius (sigma_radii "quantile")
    for r, sid in enumerate(sample_ids):
        px, py = (float(v) for v in pred.position_m[r])
        row_flags = list(flags[r])
        if not (math.isfinite(px) and math.isfinite(py)):
            row_flags.append("the model gave no position")
        elif not (box[0] - margin <= px <= box[1] + margin and box[2] - margin <= py <= box[3] + margin):
            row_flags.append(f"predicted position outside {area_text}")
        truth = None
        if np.isfinite(x.truth_m[r]).all():
            tlat, tlon = frame.to_latlon(x.truth_m[r, 0], x.truth_m[r, 1])
            truth = Place(_finite(x.truth_m[r, 0], 2), _finite(x.truth_m[r, 1], 2), _finite(tlat, 7), _finite(tlon, 7))
        candidates: tuple[Candidate, ...] = ()
        if hasattr(run.model, "posterior") and (heatmaps or top_k > 0):
            heat, grid = run.model.posterior(x, r)
            candidates = _candidates(heat, grid, frame, top_k) if top_k > 0 else ()
            if heatmaps:
                maps_out[sid] = Heatmap(heat, grid)
        rows.append(PredictedSample(
            id=sid, x_m=_finite(px, 2), y_m=_finite(py, 2), lat=_finite(lat[r], 7), lon=_finite(lon[r], 7),
            sigma_x_m=_finite(pred.sigma_m[r, 0], 2), sigma_y_m=_finite(pred.sigma_m[r, 1], 2), truth=truth,
            error_m=_finite(errors[r], 2) if truth is not None else None, flags=tuple(row_flags),
            candidates=candidates,
            residual_db=_finite(pred.info["residual_db"][r], 2) if "residual_db" in pred.info else None,
            ratio_2sigma=ratio_2sigma,
        ))
    return rows, maps_out


def sample_heatmap(run: LoadedRun, ms: MeasurementSet, sample_id: str) -> Heatmap | None:
    """The posterior heatmap of one sample, or None if the model has none.

    A file of many samples is predicted without heatmaps; the one shown gets its own.
    """
    if not hasattr(run.model, "posterior"):
        return None
    one = replace(ms, samples=tuple(s for s in ms.samples if s.id == sample_id), errors=())
    if not one.samples:
        msg = f"sample: no sample {sample_id!r} in the file"
        raise InferenceInputError(msg)
    return (predict_measurements(run, one, heatmaps=True, top_k=0).heatmaps or {}).get(sample_id)


def read_input(source: str | os.PathLike[str] | bytes, *, table: Mapping[str, Any] | None = None,
               strict: bool = False) -> tuple[MeasurementSet, MeasurementSet, QualityReport]:
    """A measurement file read leniently for prediction: as read, after the quality checks, and their report.

    ``table``: the keywords of :func:`~rflocal_core.measurements.table.read_table` (``columns``, ``mode``,
    ``group_by``, ``missing``, ``nodes``, ``kind``) to read ``source`` as a CSV, TSV or Parquet table, the same
    mapping an import takes; the table's faulty cells and rows join the report. Otherwise ``source`` is an
    ``rflocal-measurements/1`` (or survey) JSON file.
    """
    from rflocal_core.measurements import check_quality, load_measurements
    from rflocal_core.measurements.table import read_table

    if table is None:
        raw, prior = load_measurements(source, on_error="collect", on_fault="drop"), None
    else:
        read = read_table(source, strict=strict, **table)
        raw, prior = read.measurements, read.report.quality()
    ms, quality = check_quality(raw, strict=strict, prior=prior)
    return raw, ms, quality


def predict_file(
    run_ids: list[str] | str, source: str | os.PathLike[str] | bytes, *, heatmaps: bool = False,
    strict: bool = False, backend: str = "torch", table: Mapping[str, Any] | None = None,
) -> FilePrediction:
    """Read a measurement file leniently, check its quality and predict it with one or several runs.

    Invalid samples are listed as bad samples; the faults of real logs (GPS and RSS sentinels,
    positions outside the file's extent, duplicate ids, ...) are dropped before predicting
    (:func:`~rflocal_core.measurements.quality.check_quality`), or refused with ``strict``.
    ``table``: read ``source`` as a table with this column mapping (see :func:`read_input`).

    Returns a :class:`FilePrediction`: ``file`` (``samples``, ``invalid``, ``mode``,
    ``scene``, ``quality``: what was dropped, by reason) and ``runs`` (one
    :class:`RunPrediction` per run); a file-level problem (not JSON, wrong format) raises
    :class:`~rflocal_core.measurements.MeasurementFormatError` (a table's:
    :class:`~rflocal_core.measurements.table.TableFormatError`), a fault with ``strict``
    :class:`~rflocal_core.errors.MeasurementQualityError`. ``backend``: what runs the networks
    (``"torch"`` or ``"onnxruntime"``, see :func:`~rflocal_core.infer.run.load_run`).
    """
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    if not ids:
        msg = "run: expected at least one run id, got none"
        raise InferenceInputError(msg)
    raw, ms, quality = read_input(source, table=table, strict=strict)
    runs = tuple(predict_measurements(load_run(r, backend=backend), ms, heatmaps=heatmaps) for r in ids)
    read = len(raw.samples) + len(raw.errors) + sum(d.unit == "samples" for d in raw.dropped)
    return FilePrediction(FileSummary(read, len(ms.errors), ms.mode, ms.scene, quality), runs, ms)
