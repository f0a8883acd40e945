"""Permutation importance: what each measured quantity is worth to a trained run.

For each feature the run reads (RSS, ToA, AoA and, for a network with ``phy_features``, every
PHY/MAC field of :data:`~rflocal_core.models.inputs.PHY_INPUT_FIELDS`), its values are shuffled
across the samples of a split, slot by slot, and the split is predicted again: the rise of the
median and mean error over the unshuffled prediction is what the run loses without the
feature's information. Only present values move: a report that lacks the feature still lacks
it (the masks, and how often a feature is present, stay as they are)::

    out = permutation_importance("run-id", repeats=5)
    out.features[0]  # FeatureImportance(feature="rss", layer="rt", delta_median_m=..., ...)

The result is kept in ``runs/<run_id>/importance/<dataset>__<split>.json`` (:func:`load_importance`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import InvalidInputError
from rflocal_core.models.inputs import PHY_INPUT_FIELDS, Inputs
from rflocal_core.progress import ProgressFn, as_progress
from rflocal_core.results import JsonResult, json_field
from rflocal_core.validation import check_int
from rflocal_core.workspace import atomic_write_text

#: The ray-traced features (the :class:`~rflocal_core.models.transforms.InputTransform` names) and their fields.
RT_FEATURES: dict[str, str] = {"rss": "rss_dbm", "toa": "toa_ns", "aoa": "aoa_deg"}


def feature_layer(feature: str) -> str:
    """The layer of a feature: ``rt`` (RSS/ToA/AoA), ``phy``, ``mac``, ``beams`` or ``other`` (Doppler)."""
    from rflocal_core.models.transforms import PHY_LAYERS

    if feature in RT_FEATURES:
        return "rt"
    return next((layer for layer, fields in PHY_LAYERS.items() if feature in fields), "other")


@dataclass(frozen=True)
class FeatureImportance(JsonResult):
    """What shuffling one feature costs, over the repeats (std: None with one repeat).

    Attributes
    ----------
    feature : str
        ``rss``, ``toa``, ``aoa`` or a PHY/MAC field name.
    layer : str
        :func:`feature_layer`.
    present : float
        Fraction of the split's reports (reporting slots) that carry the feature.
    delta_median_m, delta_mean_m : float
        Median / mean test error with the feature shuffled minus without, metres (mean over repeats).
    """

    feature: str
    layer: str
    present: float
    delta_median_m: float
    delta_median_std_m: float | None
    delta_mean_m: float
    delta_mean_std_m: float | None


@dataclass(frozen=True)
class ImportanceResult(JsonResult):
    """Permutation importance of one run on one dataset split (features largest first)."""

    run_id: str
    model: str
    dataset: str
    split: str
    repeats: int
    seed: int
    count: int
    baseline_median_m: float
    baseline_mean_m: float
    seconds: float
    features: tuple[FeatureImportance, ...] = json_field(default=())


def _fields_read(run: Any) -> list[str]:
    """The features the run reads: RSS/ToA/AoA of its input transform, PHY/MAC with ``phy_features``."""
    from rflocal_core.models.transforms import InputTransform

    t = InputTransform.from_dict(run.config.get("input_transform"))
    names = [f for f in RT_FEATURES if f in t.features]
    if (run.config.get("model_config") or {}).get("phy_features"):
        names += [f for f in PHY_INPUT_FIELDS if t.phy_fields is None or f in t.phy_fields]
    return names


def _values(x: Inputs, feature: str) -> np.ndarray:
    """[N, S] values of ``feature`` in ``x`` (NaN: absent)."""
    if feature in RT_FEATURES:
        return getattr(x, RT_FEATURES[feature])
    if x.phy is None:
        return np.full(x.node_mask.shape, np.nan)
    return x.phy[..., PHY_INPUT_FIELDS.index(feature)]


def shuffle_feature(x: Inputs, feature: str, rng: np.random.Generator) -> Inputs:
    """``x`` with ``feature``'s present values permuted across samples, slot by slot (absent ones stay absent).

    A feature moves with its earlier reports (``rss_steps_dbm``, ``phy_steps``): a sample gets another sample's
    whole history of it.
    """
    values = _values(x, feature)
    present = np.isfinite(values) & x.node_mask
    out = values.copy()
    src_steps = _history_of(x, feature)
    steps = None if src_steps is None else src_steps.copy()  # never write into x's arrays
    for j in range(values.shape[1]):
        rows = np.flatnonzero(present[:, j])
        if len(rows) < 2:
            continue
        src = rows[rng.permutation(len(rows))]
        out[rows, j] = values[src, j]
        if steps is not None:
            steps[rows, :, j] = src_steps[src, :, j]
    if feature in RT_FEATURES:
        return replace(x, **{RT_FEATURES[feature]: out}, **({} if steps is None else {"rss_steps_dbm": steps}))
    k = PHY_INPUT_FIELDS.index(feature)
    phy = x.phy.copy()
    phy[..., k] = out
    if steps is None:
        return replace(x, phy=phy)
    phy_steps = x.phy_steps.copy()
    phy_steps[..., k] = steps
    return replace(x, phy=phy, phy_steps=phy_steps)


def _history_of(x: Inputs, feature: str) -> np.ndarray | None:
    """[N, T, S] values of ``feature`` at every report time (None: no history of it)."""
    if feature == "rss":
        return x.rss_steps_dbm
    if feature in PHY_INPUT_FIELDS and x.phy_steps is not None:
        return x.phy_steps[..., PHY_INPUT_FIELDS.index(feature)]
    return None


def _load(run_id: str, dataset: str | None, split: str) -> tuple[Any, str, Inputs]:
    """The run, the dataset, and the split in the run's own view of the data."""
    from rflocal_core.infer import load_run
    from rflocal_core.models.transforms import InputTransform, load_transformed

    run = load_run(run_id)
    dataset = dataset or run.config.get("dataset")
    if not dataset:
        msg = f"dataset: run {run_id!r} names no dataset of its own; give one"
        raise InvalidInputError(msg)
    x = load_transformed(dataset, split, InputTransform.from_dict(run.config.get("input_transform")),
                         with_maps=run.needs_maps)
    if len(x) < 2:
        msg = f"split: {split!r} of dataset {dataset!r} holds {len(x)} samples; a permutation needs at least 2"
        raise InvalidInputError(msg)
    return run, dataset, x


def _errors(run: Any, x: Inputs) -> np.ndarray:
    from rflocal_core.models.inputs import errors_m

    err = errors_m(run.predict(x), x)
    return err[np.isfinite(err)]


def _spread(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def permutation_importance(
    run_id: str, *, dataset: str | None = None, split: str = "test", repeats: int = 5, seed: int = 0,
    features: list[str] | None = None, progress: ProgressFn | None = None, user: User = LOCAL_USER,
) -> ImportanceResult:
    """Shuffle each feature the run reads across the split's samples and measure the error it adds.

    Parameters
    ----------
    run_id : str
        A finished run (network or baseline).
    dataset : str, optional
        Dataset to measure on (default: the run's own).
    split : str
        ``test`` (default), ``val``, ``train`` or ``test_unseen``.
    repeats : int
        Shuffles per feature (1 to 50); the spread over them is the result's std.
    seed : int
        Seed of the shuffles.
    features : list of str, optional
        Only these features (default: every feature the run reads that the split holds).
    user : User
        Who asks; writes into the run's folder, so a viewer is refused.

    Returns
    -------
    ImportanceResult
        Baseline median/mean error and one :class:`FeatureImportance` per feature, the largest
        median rise first; also saved (:func:`load_importance`).
    """
    require(user, "ablate")
    check_int("repeats", repeats, 1, 50)
    check_int("seed", seed, 0, 2**31 - 1)
    run, dataset, x = _load(run_id, dataset, split)
    report = as_progress(progress)
    names = _choose(_fields_read(run), features, x, run_id)
    t0 = time.perf_counter()
    report("baseline", 0.0)
    base = _errors(run, x)
    rng = np.random.default_rng(seed)
    rows = []
    for k, name in enumerate(names):
        report(f"{name} ({k + 1}/{len(names)})", k / len(names))
        d_med, d_mean = [], []
        for _ in range(repeats):
            err = _errors(run, shuffle_feature(x, name, rng))
            d_med.append(float(np.median(err) - np.median(base)))
            d_mean.append(float(np.mean(err) - np.mean(base)))
        reporting = x.node_mask & (np.isfinite(x.rss_dbm) | np.isfinite(x.toa_ns) | np.isfinite(x.aoa_deg))
        present = float((np.isfinite(_values(x, name)) & reporting).sum() / max(reporting.sum(), 1))
        rows.append(FeatureImportance(name, feature_layer(name), round(present, 4), float(np.mean(d_med)),
                                      _spread(d_med), float(np.mean(d_mean)), _spread(d_mean)))
    rows.sort(key=lambda r: -r.delta_median_m)
    out = ImportanceResult(run_id, str(run.config.get("model")), dataset, split, repeats, seed, len(base),
                           float(np.median(base)), float(np.mean(base)), round(time.perf_counter() - t0, 2),
                           tuple(rows))
    path = _path(run_id, dataset, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out.to_json(), indent=2))
    report("done", 1.0)
    return out


def _choose(read: list[str], features: list[str] | None, x: Inputs, run_id: str) -> list[str]:
    """The features to shuffle: those asked for (each must be read by the run), else every one the split holds."""
    if features:
        unknown = [f for f in features if f not in read]
        if unknown:
            msg = f"features: {unknown} are not read by run {run_id!r}; expected some of {read}"
            raise InvalidInputError(msg)
        return list(features)
    names = [f for f in read if (np.isfinite(_values(x, f)) & x.node_mask).any()]
    if not names:
        msg = f"features: the split holds none of the features run {run_id!r} reads ({read})"
        raise InvalidInputError(msg)
    return names


def _path(run_id: str, dataset: str, split: str) -> Any:
    from rflocal_core.train.runs import run_dir

    return run_dir(run_id) / "importance" / f"{dataset}__{split}.json"


def load_importance(run_id: str, dataset: str | None = None, split: str = "test") -> ImportanceResult | None:
    """The saved permutation importance of a run on a dataset split (default: its own dataset), or None."""
    from rflocal_core.train.runs import run_dir

    if dataset is None:
        config = run_dir(run_id) / "config.json"
        dataset = json.loads(config.read_text(encoding="utf-8")).get("dataset") if config.is_file() else None
        if not dataset:
            return None
    path = _path(run_id, dataset, split)
    if not path.is_file():
        return None
    try:
        return ImportanceResult.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):  # a file of another layout
        return None
