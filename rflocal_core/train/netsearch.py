"""Hyperparameter search for a network on its validation split (``TrainConfig.search_trials``, issue 15).

Before a network run trains, ``search_trials`` trials each train a new network (the run's seed
and feature frame) with one set of options for at most ``search_minutes / search_trials``
minutes in a temporary folder; a trial's score is its best epoch's validation figure
``select_on`` (the one that chooses epochs). Optuna TPE (:func:`rflocal_core.tuning.search`)
proposes the next set. The run then trains with the best set for its own budget, and its
``config.json`` keeps the search (``search``: the space, every trial's options and validation
figures, the choice). The test split is never read.

What is searched: the optimizer options every network has (:data:`TRAIN_SPACE`) and the options
a network's config class lists in its ``SEARCH_SPACE`` (e.g. width, depth and augmentations of
``fpnet``). Shapes of a space entry: :mod:`rflocal_core.tuning`.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import FeatureSpec
from rflocal_core.models.inputs import Inputs
from rflocal_core.models.nets import prepared_network
from rflocal_core.models.neural import NeuralModel
from rflocal_core.models.registry import NETWORKS
from rflocal_core.progress import StepProgressFn, sub_progress
from rflocal_core.train.engine import TrainConfig, fit_network, selection_score
from rflocal_core.train.runs import config_section
from rflocal_core.tuning import SpaceEntry, check_space, search

#: Training options every network's search varies (``TrainConfig`` fields).
TRAIN_SPACE: dict[str, SpaceEntry] = {
    "lr": ("float", 3e-4, 1e-2, "log"),
    "weight_decay": ("float", 1e-6, 1e-2, "log"),
    "batch_size": ("choice", (64, 128, 256)),
}


@dataclass(frozen=True)
class NetSearchResult:
    """What :func:`search_network` chose.

    Attributes
    ----------
    model_config : dict
        The network's options with the chosen ones set (what the run trains).
    train_config : TrainConfig
        The training options with the chosen ones set.
    record : dict
        For the run's ``config.json`` (``search``): ``space``, ``trials`` (one row per trial: its
        options, ``value`` (the ``select_on`` figure), ``median_m``, ``mean_m``, ``epochs_run``,
        ``seconds``, ``state``), ``best_params``, ``best_value``, ``select_on``, ``trial_minutes``,
        ``seconds``.
    """

    model_config: dict[str, Any]
    train_config: TrainConfig
    record: dict[str, Any]


def search_space(model: str) -> dict[str, SpaceEntry]:
    """The options a search over ``model`` varies: :data:`TRAIN_SPACE` and its config's ``SEARCH_SPACE``."""
    if model not in NETWORKS:
        msg = f"model: a search trains networks ({', '.join(NETWORKS)}), got {model!r}"
        raise InvalidInputError(msg)
    space = {**TRAIN_SPACE, **dict(getattr(NETWORKS[model].config_cls, "SEARCH_SPACE", {}))}
    check_space(space)
    return space


def check_search(model: str, cfg: TrainConfig, *, ddp: bool, streamed: bool) -> None:
    """Refuse a search the run cannot do (before anything is written)."""
    if cfg.search_trials <= 0:
        return
    if ddp or streamed:
        how = "under DDP" if ddp else "with a streamed train split"
        msg = (f"search_trials: the search trains {cfg.search_trials} networks one after another in one process, with "
               f"the splits in memory; this run is {how}: search without torchrun and with data_loading 'memory', "
               "or search_trials 0")
        raise InvalidInputError(msg)
    search_space(model)


def search_network(
    model: str, model_config: dict[str, Any] | None, cfg: TrainConfig, train_in: Inputs, val_in: Inputs,
    spec: FeatureSpec, *, seed: int, report: StepProgressFn,
) -> NetSearchResult:
    """Search ``model``'s options on ``val_in`` (``cfg.search_trials`` trials in ``cfg.search_minutes``).

    Parameters
    ----------
    model_config : dict, optional
        The user's options: fixed (an option of the network's space given here is not searched). The
        training options of :data:`TRAIN_SPACE` are always searched.
    cfg : TrainConfig
        The run's training options; a trial trains under them (no refit) for at most
        ``search_minutes / search_trials`` minutes (or the run's ``max_minutes`` if less).
    spec : FeatureSpec
        The run's feature frame (every trial and the run share it).
    report : callable(stage, fraction, *, step)
        Progress; may raise to cancel (the trial in progress stops, nothing is kept).

    Raises
    ------
    InvalidInputError
        A model without a search space, or no trial ended with a finite validation figure.
    """
    space = {k: v for k, v in search_space(model).items() if k not in (model_config or {})}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    budget = cfg.search_minutes / cfg.search_trials
    trial_cfg = replace(cfg, max_minutes=min(budget, cfg.max_minutes or math.inf), refit=False, search_trials=0)
    figures: list[dict[str, Any]] = []

    def score(params: dict[str, Any]) -> float:
        n = len(figures)
        tc = replace(trial_cfg, **{k: v for k, v in params.items() if k in train_keys})
        options = {**(model_config or {}), **{k: v for k, v in params.items() if k not in train_keys}}
        sub = sub_progress(report, prefix=f"search trial {n + 1}/{cfg.search_trials}: ",
                           span=(n / cfg.search_trials, (n + 1) / cfg.search_trials))
        out = _trial(model, options, tc, train_in, val_in, spec, seed=seed, report=sub)
        figures.append({"median_m": out.best.median_m, "mean_m": out.best.mean_m, "epochs_run": out.epochs_run,
                        "best_epoch": out.best_epoch})
        return selection_score(out.best, cfg.select_on)

    t0 = time.perf_counter()
    result = search(score, space, n_trials=cfg.search_trials, max_seconds=60 * cfg.search_minutes, seed=seed)
    trials = [{**row, **(figures[i] if i < len(figures) else {})} for i, row in enumerate(result.trials)]
    best_train = {k: v for k, v in result.best_params.items() if k in train_keys}
    best_model = {**(model_config or {}), **{k: v for k, v in result.best_params.items() if k not in train_keys}}
    record = {"space": {k: list(v) for k, v in space.items()},
              "select_on": cfg.select_on, "trial_minutes": budget, "trials": trials,
              "best_params": dict(result.best_params), "best_value": result.best_value,
              "seconds": round(time.perf_counter() - t0, 3)}
    return NetSearchResult(best_model, replace(cfg, **best_train), record)


def search_table(run_id: str) -> dict[str, Any] | None:
    """The search a network run made before it trained (its ``config.json`` ``"search"``), else None."""
    return config_section(run_id, "search")


def _trial(model: str, options: dict[str, Any], cfg: TrainConfig, train_in: Inputs, val_in: Inputs,
           spec: FeatureSpec, *, seed: int, report: StepProgressFn) -> Any:
    """One network with ``options`` trained under ``cfg`` in a temporary folder; its :class:`FitResult`."""
    net = prepared_network(model, options, spec=spec, data=train_in, seed=seed)  # as the run builds its own
    with tempfile.TemporaryDirectory(prefix="rflocal-search-") as tmp:
        return fit_network(Path(tmp), NeuralModel(model, net, spec), cfg, train_in, val_in, seed=seed,
                           progress=report)
