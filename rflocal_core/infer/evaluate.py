"""The evaluation of a run on a dataset split: every figure of the Metrics page, cached with the run.

    result = evaluate_run("knn-ds-...", "ds", split="test")
    result.summary.median_m, result.crlb.rms_m, result.calibration.inside_1sigma
    result.to_json()     # what `python -m rflocal_core evaluate` prints

The cache is ``workspace/runs/<run_id>/eval/<dataset>__<split>.json``, valid while the
checkpoint and the dataset are unchanged.

A dataset that keeps its samples' tracks (an import of timed walks) can be scored tracked as well:
``evaluate_run(..., track=TrackConfig(method="kalman", smooth=True))`` adds ``tracked``, the errors after each
track's answers are filtered over time (:func:`~rflocal_core.infer.track.track_rows`); cached apart per tracker.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core.dataset.sequences import keeps_tracks, sample_tracks
from rflocal_core.dataset.store import SPLITS, dataset_path, open_dataset
from rflocal_core.errors import InvalidInputError, OtherSceneError, RFLocalInputError
from rflocal_core.infer.run import load_run
from rflocal_core.infer.scene_check import SceneCheck, check_scene
from rflocal_core.infer.track import track_rows
from rflocal_core.metrics import (
    Breakdowns,
    Calibration,
    Cdf,
    CrlbSummary,
    ErrorSummary,
    SpatialErrorMap,
    breakdowns,
    calibration,
    cdf_points,
    crlb_summary,
    error_summary,
    spatial_error_map,
)
from rflocal_core.models.inputs import errors_m
from rflocal_core.models.transforms import InputTransform, load_transformed
from rflocal_core.results import JsonResult, json_field
from rflocal_core.tracking import TrackConfig
from rflocal_core.train.runs import run_dir
from rflocal_core.workspace import atomic_write_text, validate_name

#: Bump when the content of :func:`evaluate_run` changes: older caches are then recomputed.
METRICS_VERSION = 4


@dataclass(frozen=True, kw_only=True)
class TrackedErrors(JsonResult):
    """The errors of a run's answers filtered over each track of the split (see :func:`evaluate_run`)."""

    #: The tracker: ``method``, ``motion``, ``smooth`` and the rest of :class:`~rflocal_core.tracking.TrackConfig`.
    track: dict[str, Any]
    #: Tracks of the split, and samples without one (not tracked, left out of the figures).
    tracks: int
    untracked: int
    summary: ErrorSummary = json_field(flatten=True)
    cdf: Cdf


@dataclass(frozen=True, kw_only=True)
class EvaluationResult(JsonResult):
    """Every figure of a run on a dataset split (see :func:`evaluate_run`).

    In the JSON the fields of ``summary`` stand at the top level (``count``, ``median_m``, ...).
    """

    run_id: str
    model: str | None
    dataset: str
    split: str
    summary: ErrorSummary = json_field(flatten=True)
    breakdowns: Breakdowns
    calibration: Calibration
    #: The scale applied to the model's sigma (fitted on the run's validation split; 1 for runs
    #: written before; None when the model gives no sigma).
    sigma_scale: float | None = None
    #: The exponent on the ellipse size fitted with the scale (1: one scale; None without sigma).
    sigma_power: float | None = None
    crlb: CrlbSummary
    cdf: Cdf
    spatial: SpatialErrorMap
    inference_ms_per_sample: float
    #: Scenes of the run's training data (None: unknown).
    training_scenes: tuple[str, ...] | None
    #: Whether the dataset shows the place the run was trained on (digests, frame, nodes).
    scene_check: SceneCheck = field(default_factory=lambda: SceneCheck(status="unknown"))
    #: True when the model was fitted on this split's samples (the run's own dataset: ``train``, or ``val`` of a
    #: run refitted on train + val): its figures are in-sample, not an accuracy.
    in_sample: bool = False
    #: With a tracker asked for (``track``): the errors after each track is filtered over time.
    tracked: TrackedErrors | None = json_field(default=None, omit_none=True)
    #: True when read from the cache.
    cached: bool = False


def _training_scenes(train_dataset: str | None) -> list[str] | None:
    """Scenes the run was trained on: its dataset's scenes less the held-out ones (None: unknown)."""
    if not train_dataset:
        return None
    try:
        attrs = dict(open_dataset(train_dataset).attrs)
    except RFLocalInputError:
        return None
    config = attrs.get("config") or {}
    unseen = set(config.get("unseen_scenes") or ())
    scenes = [str(s) for s in (config.get("scenes") or ()) if s not in unseen]
    return scenes or [str(attrs.get("scene") or train_dataset)]


def fitted_on_split(run_config: dict[str, Any], dataset: str, split: str) -> bool:
    """Whether a run's model was fitted on the samples of ``split`` of ``dataset``.

    Its own dataset's ``train`` split always; its ``val`` split too when the run was refitted on train + val
    (``config.json`` holds ``refit``). Another dataset's splits are other samples.
    """
    if run_config.get("dataset") != dataset:
        return False
    return split == "train" or (split == "val" and bool(run_config.get("refit")))


def _cache_key(run_path: Path, dataset_zarr: Path) -> dict[str, Any]:
    model = (run_path / "model.pt").stat()
    config = json.loads((run_path / "config.json").read_text(encoding="utf-8"))
    return {"version": METRICS_VERSION, "model_mtime_ns": model.st_mtime_ns, "model_size": model.st_size,
            "dataset_mtime_ns": dataset_zarr.stat().st_mtime_ns, "sigma_scale": config.get("sigma_scale"),
            "sigma_power": config.get("sigma_power"), "sigma_ratio_2": config.get("sigma_ratio_2")}


def evaluation_cache_path(run_id: str, dataset: str, split: str, tracker: dict[str, Any] | None = None) -> Path:
    """Where :func:`evaluate_run` caches its result: ``runs/<run_id>/eval/<dataset>__<split>.json``; tracked
    (``tracker``: the :class:`TrackConfig` as a dict), ``<dataset>__<split>__track-<digest of the tracker>.json``."""
    name = f"{validate_name(dataset, field='dataset')}__{split}"
    if tracker:
        name += "__track-" + hashlib.sha256(json.dumps(tracker, sort_keys=True).encode()).hexdigest()[:12]
    return run_dir(run_id) / "eval" / f"{name}.json"


def evaluate_run(run_id: str, dataset: str, *, split: str = "test", use_cache: bool = True,
                 allow_other_scene: bool = False, track: TrackConfig | None = None) -> EvaluationResult:
    """Evaluate a run on a dataset split: every figure of the Metrics page.

    Parameters
    ----------
    run_id : str
        A finished run (``workspace/runs/<run_id>``).
    dataset : str
        Dataset name (any dataset, not only the run's own).
    split : str
        ``train``, ``val``, ``test`` or ``test_unseen``.
    use_cache : bool
        Reuse ``runs/<run_id>/eval/<dataset>__<split>.json`` while it matches the
        checkpoint (``model.pt`` mtime and size), the run's ``sigma_scale`` and the dataset
        (``zarr.json`` mtime).
    allow_other_scene : bool
        Evaluate even when the dataset is of another place than the run's training data
        (:func:`~rflocal_core.infer.scene_check.check_scene` finds a differing scene digest,
        frame or node set); without it that is refused, except for a model that predicts in
        any scene (the geometric baselines, ``any_scene``). The result keeps the check either way.
    track : TrackConfig, optional
        Also filter each track's answers over time with this tracker (``method`` not None; no building mask:
        a particle filter moves in the open) and give their errors (``tracked``); the dataset must keep tracks.

    Returns
    -------
    EvaluationResult
        ``run_id``, ``model``, ``dataset``, ``split``, ``summary`` (:func:`~rflocal_core.metrics.error_summary`:
        ``count``, ``missing``, ``mean_m``, ``rmse_m``, ``median_m``, ``p67_m``, ``p80_m``,
        ``p95_m``, ``success_rates``), ``breakdowns`` (:func:`~rflocal_core.metrics.breakdowns`),
        ``calibration`` (:func:`~rflocal_core.metrics.calibration` of the calibrated sigma),
        ``sigma_scale`` (the run's scale of the model's sigma; None without sigma), ``crlb``
        (:func:`~rflocal_core.metrics.crlb_summary`), ``cdf`` (``x_m``, ``fraction``), ``spatial``
        (:func:`~rflocal_core.metrics.spatial_error_map`), ``inference_ms_per_sample``,
        ``training_scenes``, ``scene_check`` (:class:`~rflocal_core.infer.scene_check.SceneCheck`),
        ``cached`` (True when read from the cache). In its JSON NaN and inf are None.

    Raises
    ------
    OtherSceneError
        The dataset is of another place than the run's training data, the model is tied to its
        training scenes and ``allow_other_scene`` is False.
    RFLocalInputError
        Unknown run or dataset, bad split, a run without checkpoint, an empty split.
    """
    path = run_dir(run_id)
    if split not in SPLITS:
        msg = f"split: expected one of {', '.join(SPLITS)}, got {split!r}"
        raise InvalidInputError(msg)
    attrs = dict(open_dataset(dataset).attrs)
    if not (path / "model.pt").is_file():
        load_run(run_id)  # raises the checkpoint error that names the run
    scene = check_scene(run_id, dataset, split=split)
    # a geometric model (any_scene) solves in whatever scene it is given: scoring it elsewhere is meaningful
    if scene.other_scene and not allow_other_scene and not load_run(run_id).any_scene:
        msg = (f"{scene.summary(run_id, dataset)}; evaluate it anyway with --allow-other-scene "
               "(allow_other_scene=True)")
        raise OtherSceneError(msg)
    tracker = asdict(track) if track is not None and track.method is not None else None
    if tracker and not keeps_tracks(dataset):
        msg = (f"track: dataset {dataset!r} keeps no tracks; expected an import of timed walks (a table's sequence "
               "column or sequence_gap_s, or a JSON file's sequence)")
        raise InvalidInputError(msg)
    cache = evaluation_cache_path(run_id, dataset, split, tracker)
    key = _cache_key(path, dataset_path(dataset) / "zarr.json") | ({"track": tracker} if tracker else {})
    if use_cache:
        cached = _read_cache(cache, key)
        if cached is not None:
            return replace(cached, cached=True, scene_check=scene)
    stored = _evaluate(run_id, dataset, split, attrs.get("config") or {}, scene, track if tracker else None).to_json()
    del stored["cached"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps({"key": key, "result": stored}, allow_nan=False))
    return EvaluationResult.from_json(stored)  # as a cache hit gives it: NaN and inf are None


def _read_cache(cache: Path, key: dict[str, Any]) -> EvaluationResult | None:
    """The cached result when the cache file exists, reads and matches ``key``; else None."""
    if not cache.is_file():
        return None
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("result"), dict):
        try:
            return EvaluationResult.from_json(stored["result"])
        except (KeyError, TypeError, ValueError):  # a cache of another layout: recompute
            return None
    return None


def _evaluate(run_id: str, dataset: str, split: str, dataset_config: dict[str, Any],
              scene: SceneCheck, track: TrackConfig | None = None) -> EvaluationResult:
    """Predict the split with the run (in its own view of the data) and compute every figure."""
    run = load_run(run_id)
    # the run's own view of the data (features, sites, steps it was trained with)
    x = load_transformed(dataset, split, InputTransform.from_dict(run.config.get("input_transform")),
                         with_maps=run.needs_maps)
    if len(x) == 0:
        msg = f"split: {split!r} of dataset {dataset!r} holds no samples; choose another split"
        raise InvalidInputError(msg)
    t0 = time.perf_counter()
    pred = run.predict(x)
    seconds = time.perf_counter() - t0
    err = errors_m(pred, x)
    # seen in training: by the run's dataset, else its reference; never a same-named scene of another place
    training = scene.seen_in_training(_training_scenes(run.config.get("dataset")))
    # of the calibrated sigma (run.predict scales it), with the run's 2σ radius
    cal = calibration(pred.position_m - x.truth_m, pred.sigma_m, ratio_2sigma=run.sigma_map["ratio_2sigma"])
    return EvaluationResult(
        run_id=run_id, model=run.config.get("model"), dataset=dataset, split=split,
        summary=error_summary(err),
        breakdowns=breakdowns(err, x, training_scenes=training),
        calibration=cal,
        sigma_scale=run.sigma_scale if cal.available else None,
        sigma_power=run.sigma_map["power"] if cal.available else None,
        crlb=crlb_summary(x, err, dataset_config),
        cdf=cdf_points(err),
        spatial=spatial_error_map(x.truth_m, err),
        inference_ms_per_sample=round(1000 * seconds / max(len(x), 1), 4),
        training_scenes=tuple(training) if training is not None else None, scene_check=scene,
        in_sample=fitted_on_split(run.config, dataset, split),
        tracked=None if track is None else _tracked(dataset, split, x, pred, track),
    )


def _tracked(dataset: str, split: str, x: Any, pred: Any, track: TrackConfig) -> TrackedErrors:
    """The errors of ``pred`` after each track of the split is filtered over time by ``track``."""
    found = sample_tracks(dataset, x.indices)
    if found is None or all(seq is None for seq in found[0]):
        msg = f"track: the {split!r} split of dataset {dataset!r} holds no sample of a track; choose another split"
        raise InvalidInputError(msg)
    tracks, t_s = found
    xy = track_rows(tracks, t_s, pred.position_m, pred.sigma_m, track)
    err = np.hypot(*(xy - x.truth_m).T)
    return TrackedErrors(track=asdict(track), tracks=len({s for s in tracks if s is not None}),
                         untracked=int(sum(s is None for s in tracks)), summary=error_summary(err), cdf=cdf_points(err))
