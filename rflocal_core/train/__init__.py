"""Training: fit a model on a dataset and keep it as a run in ``workspace/runs``.

Baselines are runs too: fitted, validated and saved the same way as networks, so every
model is loaded and compared alike (:mod:`rflocal_core.infer`).

Public API::

    from rflocal_core.train import train, resume, list_runs
    result = train("ds", "map_matching")     # TrainResult: run_id, summary.median_m, stopped, ...
    result = train("ds", "heimdall", train_config={"epochs": 40, "max_minutes": 5})
    result = resume(result.run_id)           # continue a cancelled or interrupted network run

Under ``torchrun`` (``RANK``, ``WORLD_SIZE`` set) :func:`train` and :func:`resume` train a network
with DistributedDataParallel on every rank (:mod:`rflocal_core.train.distributed`); rank 0 writes
the run, every rank returns the same result.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core import settings
from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.dataset.store import open_dataset, position_extent_m
from rflocal_core.errors import CheckpointError, InvalidInputError, RunNotFoundError
from rflocal_core.metrics import ErrorSummary, error_summary
from rflocal_core.models.features import FeatureSpec
from rflocal_core.models.inputs import Inputs, errors_m, join_inputs
from rflocal_core.models.nets import build_network, prepared_network
from rflocal_core.models.neural import NeuralModel
from rflocal_core.models.registry import BASELINES, NETWORKS
from rflocal_core.models.transforms import InputTransform, load_transformed
from rflocal_core.progress import JobCancelled, ProgressFn, StepProgressFn, as_progress, sub_progress
from rflocal_core.reference import write_reference
from rflocal_core.results import JsonResult, json_field
from rflocal_core.train import distributed
from rflocal_core.train.calibrate import (
    SigmaCalibration,
    calibrate_blocks,
    calibrate_run_folder,
    resolve_calibration,
    store_calibration,
)
from rflocal_core.train.distributed import Dist
from rflocal_core.train.engine import FitResult, TrainConfig, fit_fixed, fit_network, load_resume, refit_plan
from rflocal_core.train.netsearch import check_search, search_network
from rflocal_core.train.runs import (
    StopReason,
    active,
    append_metrics,
    create_run,
    delete_run,
    is_active,
    list_runs,
    load_checkpoint,
    new_run_id,
    read_metrics,
    run_dir,
    runs_dir,
    save_checkpoint,
    write_status,
)
from rflocal_core.train.stream import StreamedSplit, StreamSummary, merge_summaries, resolve_loading
from rflocal_core.workspace import atomic_write_text

__all__ = ["CheckpointError", "RunNotFoundError", "StopReason", "TrainConfig", "TrainResult", "check_extent",
           "delete_run", "list_runs", "models", "read_metrics", "resume", "runs_dir", "train"]


@dataclass(frozen=True, kw_only=True)
class TrainResult(JsonResult):
    """A trained run (see :func:`train` and :func:`resume`).

    In the JSON the fields of ``summary`` stand at the top level (``median_m``, ``p95_m``, ...);
    the fields a kind of model does not have are left out (``inference_ms_per_sample`` for
    networks, the epoch fields for baselines), and ``warnings`` when there are none.
    """

    run_id: str
    model: str
    dataset: str
    #: Validation errors (of the best epoch, for networks).
    summary: ErrorSummary = json_field(flatten=True)
    seconds: float
    #: Baselines: validation prediction time per sample.
    inference_ms_per_sample: float | None = json_field(default=None, omit_none=True)
    #: Networks: the best epoch, the epochs run, and why training stopped (``"epochs"``,
    #: ``"early stopping"``, ``"time limit"``).
    best_epoch: int | None = json_field(default=None, omit_none=True)
    epochs_run: int | None = json_field(default=None, omit_none=True)
    stop_reason: str | None = json_field(default=None, omit_none=True)
    #: Why it stopped, in words: "fitted", "all epochs done (60/60)", "early stop at epoch 41 (patience 15)", ...
    stopped: str
    warnings: tuple[str, ...] = json_field(default=(), omit_empty=True)
    #: The sigma scale fitted on the validation split, which the run applies when it predicts
    #: (None: the model gives no sigma; :mod:`rflocal_core.train.calibrate`).
    sigma_scale: float | None = json_field(default=None, omit_none=True)


def model_needs_maps(model: str) -> bool:
    """Whether the model ``model`` (network or baseline) reads the dataset's radio maps."""
    return bool(getattr(NETWORKS.get(model) or BASELINES.get(model), "needs_maps", False))


def model_needs_node_positions(model: str) -> bool:
    """Whether ``model`` places each report at its node's position (it cannot use nodes of unknown position)."""
    return bool(getattr(NETWORKS.get(model) or BASELINES.get(model), "needs_node_positions", False))


def node_position_warnings(model: str, dataset: str, train_in: Inputs) -> list[str]:
    """Warnings about reports whose node has no known position, for a model that needs node positions.

    Raises
    ------
    InvalidInputError
        No report of the train split has a node of known position (e.g. cells whose
        positions are not published): the model could only guess the centre.
    """
    if not model_needs_node_positions(model):
        return []
    reported = train_in.node_mask & (np.isfinite(train_in.rss_dbm) | np.isfinite(train_in.toa_ns)
                                     | np.isfinite(train_in.aoa_deg))
    blind = reported & ~train_in.known_nodes
    if not blind.any():
        return []
    node_ids = list(open_dataset(dataset).attrs.get("node_ids") or [])
    slots = np.unique(train_in.slot_site[blind])
    names = [str(node_ids[k]) for k in slots if 0 <= k < len(node_ids)] or [f"{len(slots)} nodes"]
    listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    if not (reported & train_in.known_nodes).any():
        msg = (f"model: {model} needs the position of each report's node, but no node reporting in the train split "
               f"of {dataset!r} has a known position ({listed}); choose knn or heimdall, which tell nodes apart by "
               "their ids, or give the node positions (data import --nodes, or node_lat/node_lon columns)")
        raise InvalidInputError(msg)
    share = 100.0 * blind.sum() / reported.sum()
    return [f"{len(names)} nodes of {dataset!r} have an unknown position ({listed}): {model} cannot place their "
            f"reports ({share:.1f}% of the train split's reports); knn and heimdall use them"]


def models() -> list[str]:
    """Names of the models that can be trained (networks first)."""
    return list(NETWORKS) + list(BASELINES)


def train(
    dataset: str, model: str, *, model_config: dict[str, Any] | None = None,
    train_config: dict[str, Any] | TrainConfig | None = None, seed: int = 0, progress: ProgressFn | None = None,
    run_id: str | None = None, input_transform: dict[str, Any] | InputTransform | None = None,
    allow_large_extent: bool = False, tags: tuple[str, ...] = (), owner: str | None = None,
    user: User = LOCAL_USER,
) -> TrainResult:
    """Fit ``model`` on the train split of ``dataset``, validate, save the run.

    Parameters
    ----------
    model_config : dict, optional
        Options of the model (e.g. :class:`~rflocal_core.models.nets.HeimdallConfig`).
    train_config : dict or TrainConfig, optional
        Epoch loop options for networks; baselines read only ``calibration`` (``"blocks"``: the
        sigma map fitted on out-of-fold predictions over squares, :func:`~rflocal_core.train.calibrate.calibrate_blocks`).
    progress : callable(stage, fraction[, step]), optional
        Progress reports (with the epochs done as a :class:`~rflocal_core.progress.Step` when it
        takes ``step``); may raise to cancel (:class:`~rflocal_core.progress.JobCancelled`).
    run_id : str, optional
        Id for the new run (default: ``<model>-<dataset>-<time>-<hex>``).
    input_transform : dict or InputTransform, optional
        Train and validate on this view of the dataset (features, sites, steps, dropout;
        see :class:`~rflocal_core.models.transforms.InputTransform`); kept in the run's config.
    allow_large_extent : bool
        Train even when the dataset's true and mobile-sensor positions span more than
        :data:`rflocal_core.settings.max_dataset_extent_m` (50 km); without it that is refused,
        since such an extent is almost always a GPS fault (networks then predict kilometres off).
    tags : tuple of str
        Kept in the run's ``config.json``; ``"ablation"`` marks the runs an ablation study trains,
        which run lists leave out by default (:func:`~rflocal_core.train.runs.list_runs`).
    owner : str, optional
        Who started the run (default the user's name; ``"local"`` on the command line), kept in its
        ``config.json`` and shown in run lists.
    user : User
        Who asks (default: the command line's :data:`~rflocal_core.access.LOCAL_USER`); a viewer is refused.

    Returns
    -------
    TrainResult
        ``run_id``, ``model``, ``dataset``, ``summary`` (validation errors,
        :func:`rflocal_core.metrics.error_summary`), ``seconds``, ``stopped`` (why it stopped:
        "fitted", "all epochs done (60/60)", "early stop at epoch 41 (patience 15)", "time budget
        reached at epoch 23/60"; also in the run's ``status.json``), ``warnings``.

    Raises
    ------
    InvalidInputError
        Under torchrun, a model that is not a network (baselines fit in one process).
    """
    require(user, "train")
    owner = user.name if owner is None else owner
    report = as_progress(progress)
    transform = (input_transform if isinstance(input_transform, InputTransform)
                 else InputTransform.from_dict(input_transform))
    if model in NETWORKS:
        cfg = train_config if isinstance(train_config, TrainConfig) else TrainConfig.from_dict(train_config)
        if cfg.calibration == "blocks":
            msg = (f"calibration: 'blocks' fits the model once more per fold of squares, which a baseline does in "
                   f"seconds; {model} is a network, trained once: use 'val'")
            raise InvalidInputError(msg)
        _check_refit(model, cfg.refit, schedule=cfg.schedule)
        with distributed.session(cfg.device) as dist:
            return _train_network(dataset, model, model_config, cfg, seed, report, run_id, transform, tags,
                                  owner=owner, allow_large_extent=allow_large_extent, dist=dist)
    if model not in BASELINES:
        msg = f"model: expected one of {', '.join(models())}, got {model!r}"
        raise InvalidInputError(msg)
    if distributed.launched():
        msg = (f"model: {model} is a baseline, fitted in one process; DDP (torchrun, --nproc) trains the networks "
               f"({', '.join(NETWORKS)}): run it without torchrun")
        raise InvalidInputError(msg)
    check_extent(dataset, allow_large_extent=allow_large_extent)
    # baselines read only the calibration options of the training configuration
    cal_cfg = train_config if isinstance(train_config, TrainConfig) else TrainConfig.from_dict(train_config)
    _check_no_search(model, cal_cfg.search_trials)
    _check_refit(model, cal_cfg.refit)
    return _train_baseline(dataset, model, model_config, seed, report, run_id, transform, tags, owner=owner,
                           calibration=cal_cfg)


def _train_baseline(
    dataset: str, model: str, model_config: dict[str, Any] | None, seed: int, report: StepProgressFn,
    run_id: str | None, transform: InputTransform, tags: tuple[str, ...] = (), *, owner: str = "local",
    calibration: TrainConfig | None = None,
) -> TrainResult:
    attrs = dict(open_dataset(dataset).attrs)  # fails early on an unknown dataset
    instance = BASELINES[model](model_config)  # validates the configuration before anything is written
    run_id = run_id or new_run_id(model, dataset)
    config = {
        "run_id": run_id, "kind": "baseline", "model": model, "model_config": instance.config.to_dict(),
        "dataset": dataset, "dataset_digest": _dataset_digest(attrs), "seed": seed,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input_transform": transform.to_dict(), "tags": list(tags), "owner": owner,
    }
    path = create_run(run_id, config)
    t0 = time.perf_counter()
    try:
        report("loading data", 0.05)
        with_maps = model_needs_maps(model)
        train_in = load_transformed(dataset, "train", transform, with_maps=with_maps)
        val_in = load_transformed(dataset, "val", transform, with_maps=with_maps)
        write_reference(path, dataset, train_in)  # what reading new measurement files needs, kept with the run
        warnings = node_position_warnings(model, dataset, train_in)
        if len(train_in.truth_m) == 0 or len(val_in.truth_m) == 0:
            msg = f"dataset {dataset!r}: train and val splits must both hold samples with truth"
            raise InvalidInputError(msg)
        report("fitting", 0.3)
        instance.fit(train_in, val_in)
        report("validating", 0.8)
        t1 = time.perf_counter()
        pred = instance.predict(val_in)
        per_sample_ms = 1000 * (time.perf_counter() - t1) / max(len(val_in.truth_m), 1)
        summary = error_summary(errors_m(pred, val_in))
        seconds = round(time.perf_counter() - t0, 3)
        append_metrics(path, {"epoch": 0, "stage": "fit", "val": summary.to_json(), "seconds": seconds})
        save_checkpoint(path, model=model, config=instance.config, state=instance.state_dict())
        report("calibrating", 0.85)
        # before "done": a finished run has its scale
        cal = _calibrate_baseline(path, model, instance, pred, train_in, val_in, calibration or TrainConfig(), seed)
        if calibration is not None and calibration.refit:
            report("refitting on train + val", 0.9)
            _refit_baseline(path, model, instance, train_in, val_in)
        best = {"median_m": summary.median_m, "p95_m": summary.p95_m, "mean_m": summary.mean_m, "seconds": seconds}
        write_status(path, state="done", best=best, stop=StopReason("fitted"))
    except JobCancelled:
        write_status(path, state="cancelled", stop=StopReason("cancelled"))
        raise
    except BaseException as exc:
        write_status(path, state="failed", error=f"{type(exc).__name__}: {exc}", stop=StopReason("failed"))
        raise
    report("done", 1.0)
    return TrainResult(run_id=run_id, model=model, dataset=dataset, summary=summary, seconds=seconds,
                       inference_ms_per_sample=round(per_sample_ms, 4), stopped="fitted", warnings=tuple(warnings),
                       sigma_scale=cal.scale)


def _calibrate_baseline(path: Path, model: str, instance: Any, pred: Any, train_in: Inputs, val_in: Inputs,
                        cfg: TrainConfig, seed: int) -> SigmaCalibration:
    """Fit the run's sigma map on val, or on out-of-fold predictions over squares (``cfg.calibration``)."""
    split = None
    if cfg.calibration == "auto":  # as the dataset was split (its import record says)
        split = (dict(open_dataset(train_in.dataset).attrs).get("input") or {}).get("split")
    source, block_m = resolve_calibration(cfg.calibration, cfg.calibration_block_m, split)
    if source != "blocks":
        return calibrate_run_folder(path, pred, val_in, radii=cfg.sigma_radii)
    cal = calibrate_blocks(lambda: BASELINES[model](instance.config), train_in, val_in,
                           block_m=block_m, folds=cfg.calibration_folds, seed=seed, radii=cfg.sigma_radii)
    store_calibration(path, cal)
    return cal


def _check_no_search(model: str, search_trials: int) -> None:
    """A baseline refuses the networks' search (``search_trials``) rather than ignore it."""
    if search_trials > 0:
        msg = (f"search_trials: the training options' search trains networks ({', '.join(NETWORKS)}); {model} is a "
               f"baseline, got search_trials={search_trials}: lgbm and knn_lgbm tune with --set search_trials=N, knn "
               "chooses k and its floor on val itself")
        raise InvalidInputError(msg)


def _check_refit(model: str, refit: bool, *, schedule: str = "cosine") -> None:
    """Refuse ``refit`` for a baseline that cannot fix its val choices, or a network on the plateau schedule (it
    follows val, which a refit on train + val has not)."""
    if not refit:
        return
    if model in NETWORKS:
        if schedule != "cosine":
            msg = (f"schedule: a refit of {model} replays the cosine schedule without val; {schedule!r} follows val: "
                   "use 'cosine' or refit False")
            raise InvalidInputError(msg)
        return
    if not BASELINES[model].can_refit:
        refittable = ", ".join(name for name, cls in BASELINES.items() if cls.can_refit)
        msg = f"refit: {model} cannot fix its validation choices for a refit on train + val; models that can: {refittable}"
        raise InvalidInputError(msg)


def _refit_baseline(path: Path, model: str, instance: Any, train_in: Inputs, val_in: Inputs) -> None:
    """Fit ``model`` again on train + val with the choices ``instance`` made on val fixed; keep it as the run's model.

    The run's ``config.json`` records it under ``refit`` (samples, the fixed options); the val figures and
    the sigma map stay those of ``instance`` (fitted on train only), the honest ones.
    """
    both = join_inputs(train_in, val_in)
    refitted = instance.refit(both)
    save_checkpoint(path, model=model, config=refitted.config, state=refitted.state_dict())
    config = json.loads((path / "config.json").read_text())
    config["refit"] = {"samples": len(both), "train_samples": len(train_in), "model_config": refitted.config.to_dict()}
    atomic_write_text(path / "config.json", json.dumps(config, indent=2))


def check_extent(dataset: str, *, allow_large_extent: bool = False) -> dict[str, Any]:
    """Refuse a dataset whose positions span more than :data:`rflocal_core.settings.max_dataset_extent_m`.

    Returns :func:`rflocal_core.dataset.store.position_extent_m` of the dataset.

    Raises
    ------
    InvalidInputError
        The extent exceeds the limit and ``allow_large_extent`` is False (the message names it).
    """
    extent = position_extent_m(dataset)
    limit = float(settings.max_dataset_extent_m)
    if extent["extent_m"] > limit and not allow_large_extent:
        msg = (f"dataset: {dataset!r} spans {extent['extent_m'] / 1000:,.1f} km (true and mobile-sensor positions: "
               f"{extent['x_m'] / 1000:,.1f} km east-west, {extent['y_m'] / 1000:,.1f} km north-south), more than the "
               f"{limit / 1000:g} km limit; so large an extent is almost always a GPS fault: check its positions "
               f"(data show {dataset}), or train anyway with --allow-large-extent (allow_large_extent=True)")
        raise InvalidInputError(msg)
    return extent


def _dataset_digest(attrs: dict[str, Any]) -> str | None:
    return attrs.get("digest") or (attrs.get("input") or {}).get("sha256")


@dataclass(frozen=True)
class _Prepared:
    """What a network run is trained on: read and checked before anything is written.

    Streamed (``loading["mode"] == "stream"``): ``train_in`` is a :class:`StreamedSplit`, ``head`` its
    first block (checks, warnings, the run's reference), and ``spec`` and ``net`` come once every rank's
    ``part`` of the feature frame is in (:func:`_build_network`).
    """

    attrs: dict[str, Any]
    train_in: Inputs | StreamedSplit
    val_in: Inputs
    spec: FeatureSpec | None
    net: Any
    warnings: list[str]
    loading: dict[str, Any]
    head: Inputs
    spec_options: dict[str, Any]
    part: StreamSummary | None = None


#: Rows of a streamed split read for the checks before training (its first, in store order).
HEAD_ROWS = 2048


def _prepare_network(dataset: str, model: str, model_config: dict[str, Any] | None, seed: int,
                     report: StepProgressFn, transform: InputTransform, *, allow_large_extent: bool,
                     cfg: TrainConfig, dist: Dist) -> _Prepared:
    """Check the dataset and the options, load the splits, build the network (writes nothing).

    Streamed, the network is not built yet: this rank's part of the feature frame is read instead.
    """
    check_extent(dataset, allow_large_extent=allow_large_extent)
    attrs = dict(open_dataset(dataset).attrs)
    probe_net = build_network(model, model_config, vocab_size=0)  # checks the options before any write
    probe = probe_net.config
    loading = resolve_loading(cfg.data_loading, cfg.memory_budget_mb, dataset, net=probe_net, model=model,
                              transform=transform)
    report("loading data", 0.0)
    with_maps = model_needs_maps(model)
    if loading["mode"] == "stream":
        train_in: Inputs | StreamedSplit = StreamedSplit(dataset, "train", transform, with_maps=with_maps)
        head = train_in.read(np.sort(np.argsort(train_in.indices, kind="stable")[:HEAD_ROWS]))
    else:
        train_in = head = load_transformed(dataset, "train", transform, with_maps=with_maps)
    val_in = load_transformed(dataset, "val", transform, with_maps=with_maps)
    if len(train_in) == 0 or len(val_in) == 0:
        msg = f"dataset {dataset!r}: train and val splits must both hold samples"
        raise InvalidInputError(msg)
    if with_maps and not head.maps:
        msg = (f"model: {model} reads radio maps and scene rasters, but dataset {dataset!r} has none (imported "
               "measurements); train it on a generated dataset, or choose setnet or heimdall")
        raise InvalidInputError(msg)
    for flag in ("use_iq", "iq_lags"):
        if getattr(probe, flag, False) and head.iq is None:
            msg = (f"{flag}: {model} reads IQ captures, but dataset {dataset!r} has none; generate one with --iq "
                   f"(emitter mode) or train without {flag}")
            raise InvalidInputError(msg)
    warnings = node_position_warnings(model, dataset, head)  # streamed: of the first block
    options = {"frame": probe.frame, "phy": getattr(probe, "phy_features", False), "iq": getattr(probe, "use_iq", False),
               "band": getattr(probe, "band_feature", False), "iq_lags": getattr(probe, "iq_lags", False),
               # mapformer's history tokens: the earlier reports' PHY/MAC columns
               "hist_phy": getattr(probe, "phy_features", False) and getattr(probe, "history_phy", False),
               "window": probe.window() if hasattr(probe, "window") else None}  # map networks' window frame
    prep = _Prepared(attrs, train_in, val_in, None, None, warnings, loading, head, options)
    if isinstance(train_in, StreamedSplit):
        return replace(prep, part=train_in.summary(rank=dist.rank, world=dist.world))
    return _build_network(prep, model, model_config, seed, FeatureSpec.fit(train_in, **options))


def _build_network(prep: _Prepared, model: str, model_config: dict[str, Any] | None, seed: int, spec: FeatureSpec
                   ) -> _Prepared:
    """The network of ``prep`` on the feature frame ``spec`` (seeded; fitted to the split where it must be)."""
    return replace(prep, spec=spec, net=prepared_network(model, model_config, spec=spec, data=prep.train_in, seed=seed))


def _streamed_spec(prep: _Prepared, parts: list[StreamSummary]) -> FeatureSpec:
    """The feature frame of a streamed split from every rank's part (as :meth:`FeatureSpec.fit` of the whole)."""
    bounds, vocab, slots = merge_summaries(parts)
    return FeatureSpec.from_bounds(bounds, vocab, slots, **prep.spec_options)


def _train_network(
    dataset: str, model: str, model_config: dict[str, Any] | None, cfg: TrainConfig, seed: int,
    report: StepProgressFn, run_id: str | None, transform: InputTransform, tags: tuple[str, ...] = (), *,
    owner: str = "local", allow_large_extent: bool = False, dist: Dist | None = None,
) -> TrainResult:
    dist = dist or Dist()
    report = dist.main_only(report)
    # in DDP nothing is said before every rank has its data (an input error is then one line, on every rank)
    quiet = report if not dist.on else _silent
    prep = dist.agree(lambda: _prepare_network(dataset, model, model_config, seed, quiet, transform,
                                               allow_large_extent=allow_large_extent, cfg=cfg, dist=dist))
    if prep.part is not None:  # streamed: the frame from every rank's share of the split
        parts = dist.gather_objects(prep.part)
        prep = dist.agree(lambda: _build_network(prep, model, model_config, seed, _streamed_spec(prep, parts)))
    check_search(model, cfg, ddp=dist.on, streamed=prep.loading["mode"] == "stream")
    if cfg.refit and (dist.on or prep.loading["mode"] == "stream"):
        how = "DDP" if dist.on else "streamed"
        msg = (f"refit: {model} is refitted on train + val in one process, with both in memory; this run is {how}: "
               "train without torchrun and with data_loading 'memory', or refit False")
        raise InvalidInputError(msg)
    searched = None
    if cfg.search_trials > 0:  # in memory, one process (check_search above)
        part = cfg.search_minutes / (cfg.search_minutes + (cfg.max_minutes or cfg.search_minutes))  # of the time
        searched = search_network(model, model_config, cfg, prep.train_in, prep.val_in, prep.spec, seed=seed,
                                  report=sub_progress(report, prefix="", span=(0.0, part)))
        model_config, cfg = searched.model_config, searched.train_config
        prep = _build_network(prep, model, model_config, seed, prep.spec)
        report = sub_progress(report, prefix="", span=(part, 1.0))
    run_id = dist.broadcast(run_id or new_run_id(model, dataset))  # rank 0's id (it holds the time)
    net = prep.net
    config = {
        "run_id": run_id, "kind": "network", "model": model, "model_config": net.config.to_dict(),
        "train_config": cfg.to_dict(), "features": prep.spec.to_dict(), "dataset": dataset,
        "dataset_digest": _dataset_digest(prep.attrs), "seed": seed,
        "parameters": sum(p.numel() for p in net.parameters()),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "input_transform": transform.to_dict(),
        "tags": list(tags), "owner": owner, "data_loading": prep.loading,
    }
    if searched is not None:
        config["search"] = searched.record
    if dist.on:
        config["ddp"] = {"world_size": dist.world, "backend": "nccl" if dist.device.type == "cuda" else "gloo"}
    path = dist.agree(lambda: _create_network_run(run_id, config, dataset, prep.head, dist))
    result = _run_network(path, config, NeuralModel(model, net, prep.spec), cfg, prep.train_in, prep.val_in, report,
                          None, dist)
    return replace(result, warnings=tuple(prep.warnings))


def _silent(stage: str, fraction: float, *, step: Any = None) -> None:
    """A progress callback that says nothing."""


def _create_network_run(run_id: str, config: dict[str, Any], dataset: str, train_in: Inputs, dist: Dist) -> Path:
    """Rank 0 creates the run folder and its reference (the other ranks just name it)."""
    if not dist.is_main:
        return runs_dir() / run_id
    path = create_run(run_id, config)
    try:
        write_reference(path, dataset, train_in)
    except BaseException as exc:
        write_status(path, state="failed", error=f"{type(exc).__name__}: {exc}", stop=StopReason("failed"))
        raise
    return path


def resume(run_id: str, *, progress: ProgressFn | None = None, max_minutes: float | None = None,
           user: User = LOCAL_USER) -> TrainResult:
    """Continue a network run that was cancelled, interrupted or failed from its last finished epoch.

    Under torchrun every rank continues from the same ``resume.pt`` (any world size: a run trained
    with DDP resumes in one process, and the other way round).

    Parameters
    ----------
    max_minutes : float, optional
        A new wall-clock budget for the whole run (the time already spent counts).
    user : User
        Who asks (default: the command line's :data:`~rflocal_core.access.LOCAL_USER`); a viewer is refused.

    Returns
    -------
    TrainResult
        As :func:`train` returns it, for the whole run.
    """
    require(user, "resume")
    report = as_progress(progress)
    path = run_dir(run_id)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    device = str((config.get("train_config") or {}).get("device", "auto"))
    with distributed.session(device) as dist:
        report = dist.main_only(report)
        quiet = report if not dist.on else _silent  # as train: nothing said before every rank has its data
        cfg, net, payload, train_in, val_in = dist.agree(lambda: _resume_inputs(path, config, max_minutes, quiet))
        if dist.is_main:
            write_status(path, state="running")
        spec = FeatureSpec.from_dict(config["features"])
        return _run_network(path, config, NeuralModel(config["model"], net, spec), cfg, train_in, val_in, report,
                            payload, dist)


def _resume_inputs(path: Path, config: dict[str, Any], max_minutes: float | None, report: StepProgressFn
                   ) -> tuple[TrainConfig, Any, dict[str, Any], Inputs | StreamedSplit, Inputs]:
    """Check that the run can be resumed; its options, network, ``resume.pt`` payload and splits (the train
    split read as the run read it: streamed or in memory, as its ``config.json`` records)."""
    run_id = path.name
    if config.get("kind") != "network":
        msg = f"run {run_id!r}: only network runs can be resumed; {config.get('model')!r} is fitted in one step"
        raise InvalidInputError(msg)
    state = json.loads((path / "status.json").read_text(encoding="utf-8")).get("state")
    if state == "done":
        msg = f"run {run_id!r}: already finished; train a new run to train longer"
        raise InvalidInputError(msg)
    if is_active(run_id):
        msg = f"run {run_id!r}: is being trained right now; cancel it before resuming"
        raise InvalidInputError(msg)
    payload = load_resume(path)
    if payload is None:
        msg = f"run {run_id!r}: no resume.pt (it stopped before its first epoch ended); start a new run"
        raise InvalidInputError(msg)
    tc = dict(config["train_config"])
    if max_minutes is not None:
        tc["max_minutes"] = max_minutes
    cfg = TrainConfig.from_dict(tc)
    spec = FeatureSpec.from_dict(config["features"])
    # the spec says how the inputs were encoded; configs from before frames existed leave the frame out
    options = {**config["model_config"], "frame": spec.frame}
    net = build_network(config["model"], options, vocab_size=len(spec.node_keys))
    report("loading data", 0.0)
    with_maps = model_needs_maps(config["model"])
    transform = InputTransform.from_dict(config.get("input_transform"))
    streamed = (config.get("data_loading") or {}).get("mode") == "stream"  # runs before it: in memory
    train_in = (StreamedSplit(config["dataset"], "train", transform, with_maps=with_maps) if streamed
                else load_transformed(config["dataset"], "train", transform, with_maps=with_maps))
    val_in = load_transformed(config["dataset"], "val", transform, with_maps=with_maps)
    return cfg, net, payload, train_in, val_in


def _run_network(
    path: Path, config: dict[str, Any], model: NeuralModel, cfg: TrainConfig, train_in: Inputs | StreamedSplit,
    val_in: Inputs,
    report: StepProgressFn, payload: dict[str, Any] | None, dist: Dist | None = None,
) -> TrainResult:
    dist = dist or Dist()
    run_id = config["run_id"]
    with active(run_id) if dist.is_main else contextlib.nullcontext():
        result = _run_network_locked(path, config, model, cfg, train_in, val_in, report, payload, dist)
    return dist.broadcast(result)  # rank 0's (its calibration, its times): the same result on every rank


def _run_network_locked(
    path: Path, config: dict[str, Any], model: NeuralModel, cfg: TrainConfig, train_in: Inputs | StreamedSplit,
    val_in: Inputs,
    report: StepProgressFn, payload: dict[str, Any] | None, dist: Dist,
) -> TrainResult | None:
    """Fit, calibrate and write the status (rank 0: the others return None and take rank 0's result)."""
    main = dist.is_main
    try:
        out: FitResult = fit_network(path, model, cfg, train_in, val_in, seed=int(config["seed"]), progress=report,
                                     resume=payload, dist=dist)
        if not main:
            return None
        cal = _calibrate_network(path, val_in, cfg.sigma_radii)
        best = {"median_m": out.best.median_m, "p95_m": out.best.p95_m, "mean_m": out.best.mean_m,
                "seconds": out.seconds, "epoch": out.best_epoch, "epochs_run": out.epochs_run,
                "stop_reason": out.stop_reason}
        if out.initial is not None:  # the untrained network's figures (epoch 0; the best when no epoch beat it)
            best["initial_median_m"] = out.initial.median_m
        if cfg.refit:
            report("refitting on train + val", 0.95)
            _refit_network(path, config, model, cfg, train_in, val_in, out, report)
        write_status(path, state="done", best=best, stop=out.stop)
    except (JobCancelled, KeyboardInterrupt):  # the best checkpoint and resume.pt stay: resumable
        if main:
            write_status(path, state="cancelled", best=_best_so_far(path), stop=_stopped_in(path, "cancelled", cfg))
        raise
    except BaseException as exc:
        if main:
            write_status(path, state="failed", error=f"{type(exc).__name__}: {exc}", best=_best_so_far(path),
                         stop=_stopped_in(path, "failed", cfg))
        raise
    report("done", 1.0)
    return TrainResult(run_id=config["run_id"], model=config["model"], dataset=config["dataset"], summary=out.best,
                       seconds=out.seconds, best_epoch=out.best_epoch, epochs_run=out.epochs_run,
                       stop_reason=out.stop_reason, stopped=out.stop.text, sigma_scale=cal.scale)


def _refit_network(path: Path, config: dict[str, Any], model: NeuralModel, cfg: TrainConfig,
                   train_in: Inputs | StreamedSplit, val_in: Inputs, fit: FitResult, report: StepProgressFn) -> None:
    """Train a new network (the run's seed, options and feature frame) on train + val for the val-chosen steps
    (:func:`~rflocal_core.train.engine.refit_plan`, :func:`~rflocal_core.train.engine.fit_fixed`) and keep its last
    state as the run's ``model.pt``.

    The run's ``config.json`` records it under ``refit`` (samples, the plan, the refit's steps and last rate); the val
    figures and the sigma map stay those of the best epoch on train, the honest ones. A val-chosen epoch 0 (the
    untrained network) keeps the run's model (``refit.epochs`` 0).
    """
    if not isinstance(train_in, Inputs):  # refused before the run started (_train_network); a resumed run
        msg = "refit: a streamed train split cannot be joined with val in memory; resume with refit False"
        raise InvalidInputError(msg)
    both = join_inputs(train_in, val_in)
    n_train = int(np.isfinite(train_in.truth_m).all(1).sum())
    n_both = n_train + int(np.isfinite(val_in.truth_m).all(1).sum())
    plan = refit_plan(fit.best_step, fit.best_progress, cfg, train_samples=n_train, refit_samples=n_both)
    record: dict[str, Any] = {"samples": n_both, "train_samples": n_train, "best_epoch": fit.best_epoch,
                              **plan.to_dict()}
    if plan.epochs > 0:
        seed = int(config["seed"])
        # fpnet_knn's database: train + val now
        net = prepared_network(model.name, config["model_config"], spec=model.spec, data=both, seed=seed)
        record["fit"] = fit_fixed(path, NeuralModel(model.name, net, model.spec), cfg, both, plan, seed=seed,
                                  progress=report)
    saved = json.loads((path / "config.json").read_text(encoding="utf-8"))
    saved["refit"] = record
    atomic_write_text(path / "config.json", json.dumps(saved, indent=2))


def _calibrate_network(path: Path, val_in: Inputs, radii: str = "gaussian") -> SigmaCalibration:
    """Fit the sigma map of the best epoch (``model.pt``, not the last one in memory) on the val split."""
    best = NeuralModel.from_checkpoint(load_checkpoint(path.name))
    return calibrate_run_folder(path, best.predict(val_in), val_in, radii=radii)


def _stopped_in(path: Path, kind: str, cfg: TrainConfig) -> StopReason:
    """A run cancelled or failed during the epoch after the last one in metrics.jsonl."""
    try:
        finished = sum(1 for line in (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line)
    except OSError:
        finished = 0
    return StopReason(kind, min(finished + 1, cfg.epochs), cfg.epochs)


def _best_so_far(path: Path) -> dict[str, Any] | None:
    """Best validation figures in metrics.jsonl (for cancelled or failed runs)."""
    try:
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    except OSError:
        return None
    best = [r for r in rows if r.get("best")]
    if not best:
        return None
    v = best[-1]["val"]
    return {"median_m": v["median_m"], "p95_m": v["p95_m"], "mean_m": v["mean_m"], "epoch": best[-1]["epoch"],
            "seconds": rows[-1].get("elapsed_s")}

