"""Model selection for a user's own data: train every model that fits, keep the best on validation.

``python -m rflocal_core train --dataset DS --model auto --max-minutes M`` and "auto" on the
Training Monitor call :func:`auto_train`::

    from rflocal_core.train.auto import auto_train
    result = auto_train("my-data", config={"max_minutes": 10})   # AutoResult
    result.model, result.run_id, result.candidates                   # the chosen model, its run, the table

The candidates are every registered model (:data:`~rflocal_core.models.registry.BASELINES`, then
:data:`~rflocal_core.models.registry.NETWORKS`, read when the selection starts, so models registered
later join by themselves) that fits the dataset, each with its defaults and then with each option set it
names in its class attribute ``auto_variants`` (:func:`~rflocal_core.models.registry.model_variants`;
the candidate ``MODEL:NAME``, e.g. ``knn:radio_map``: options that a user would not know to set, trained
as that model with them). A model is skipped, with the reason in the table, when it reads radio maps and
the dataset has none (imported measurements), when it places reports at their nodes' positions and no
node of the train split has a known position, or when it fingerprints the fixed node slots (class
attribute ``needs_fixed_slots``) and the dataset's slots vary, or when it locates from one kind of
report (class attribute ``needs_measurement``: angles of arrival, times of arrival) and no node of known
position reports it in the train split (it would only fall back to the weighted centroid). A model that
refuses the dataset when trained (an :class:`~rflocal_core.errors.InvalidInputError`) is skipped too,
with its message.

The budget: the baselines first (they are fitted in one step, usually in seconds), then the networks,
each with an equal share of the time left (``max_minutes`` of its training, so its epoch loop stops
on time). A candidate is not started once the budget is spent, and a network not when its share is
under :data:`MIN_NETWORK_SECONDS`. Each candidate is trained by :func:`rflocal_core.train.train` into
an ordinary run tagged :data:`~rflocal_core.train.runs.AUTO_CANDIDATE_TAG`; the choice reads the
validation split only: by default (``select="one_se"``) the first candidate in the table's order
(baselines in the registry's order, from the geometric ones to the ensemble, then the networks) whose
validation median is within one standard error of the lowest, the error of the difference taken by a
paired bootstrap over 200 m squares of the validation positions
(:func:`~rflocal_core.metrics.median_difference_se`): a few walked areas cannot rank models whose
medians differ by less than that, and the ensemble, whose weights are fitted on that same split, would
otherwise win them (Duke, README brief B26); ``select="lowest"``: the lowest median, then the lowest mean.
The chosen candidate's run becomes
the result: renamed to the auto run's id, tagged ``"auto"`` instead, its ``config.json`` holding the
table under the key ``"auto"``; so ``predict``, ``evaluate``, Live Inference and Metrics use it like
any run. The other candidates' runs are deleted (kept, hidden from run lists by default, with
``keep_candidates``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.dataset.store import open_dataset
from rflocal_core.errors import InvalidInputError
from rflocal_core.infer.run import load_run
from rflocal_core.metrics import ErrorSummary, median_difference_se
from rflocal_core.models.inputs import errors_m
from rflocal_core.models.registry import BASELINES, NETWORKS, model_variants
from rflocal_core.models.transforms import InputTransform, load_transformed
from rflocal_core.options import check_options, option
from rflocal_core.progress import JobCancelled, ProgressFn, Step, StepProgressFn, as_progress
from rflocal_core.results import JsonResult, json_field
from rflocal_core.train import (
    TrainConfig,
    TrainResult,
    check_extent,
    model_needs_maps,
    model_needs_node_positions,
    train,
)
from rflocal_core.train.engine import BASELINE_KEYS
from rflocal_core.train.runs import AUTO_CANDIDATE_TAG, config_section, new_run_id, run_dir, runs_dir
from rflocal_core.validation import dataclass_from_dict
from rflocal_core.workspace import atomic_write_text, rename_dir, validate_name

#: The model name that asks for a selection (``train --model auto``).
AUTO_MODEL = "auto"
#: The tag of the run a selection writes (its chosen candidate's run).
AUTO_TAG = "auto"
#: A network is not started with a share of the budget under this many seconds.
MIN_NETWORK_SECONDS = 10.0
#: Of a network's share, what its epoch loop gets (the rest: loading the data, the last validation).
NETWORK_SHARE_FRACTION = 0.9
#: The report fields of :class:`~rflocal_core.models.inputs.Inputs`, and what the table calls them.
MEASUREMENTS = {"rss_dbm": "received power", "toa_ns": "time-of-arrival", "aoa_deg": "angle-of-arrival",
                "iq_scale": "IQ capture"}
#: How the candidates are compared (option ``select``; the words kept in the table).
CRITERIA = {
    "one_se": "the first candidate in the table's order whose validation median error is within one standard error "
              "of the lowest (paired bootstrap over 200 m squares of the validation positions)",
    "lowest": "lowest validation median error, then lowest validation mean error",
}
#: The baseline candidates' sigma calibration unless the training options name one: "auto" fits the sigma
#: map on out-of-fold squares of train + val for a dataset split by area (an unseen area's errors, not
#: val's few squares; on Duke's area splits the chosen knn within the 39 / 86% goal on 2 of 3 test splits
#: against 0 of 3 calibrated on val, README brief B26), else on val as a plain ``train``.
BASELINE_CALIBRATION = "auto"
#: The squares whose samples the bootstrap of ``select="one_se"`` draws together, and how many draws.
SELECT_SQUARE_M = 200.0
SELECT_DRAWS = 2000
#: The bootstrap reads at most this many validation samples (a fixed random subset of a larger split).
SELECT_MAX_SAMPLES = 20_000
#: Separates a model from the name of one of its option sets in a candidate's name (``knn:radio_map``).
VARIANT_SEP = ":"


def candidate_name(model: str, variant: str | None = None) -> str:
    """``model``, or ``model:variant`` for one of its option sets."""
    return model if variant is None else f"{model}{VARIANT_SEP}{variant}"


def candidate_names() -> list[str]:
    """Every candidate of a selection, in the order trained: each registered model, then its option sets."""
    return [candidate_name(m, v) for m in [*BASELINES, *NETWORKS] for v in (None, *model_variants(m))]


@dataclass(frozen=True)
class AutoConfig:
    """How :func:`auto_train` chooses.

    Parameters
    ----------
    max_minutes : float
        Wall-clock budget of the whole selection, every candidate together.
    candidates : tuple of str
        Consider only these candidates: a model with its defaults (``knn``) or one of its option sets
        (``knn:radio_map``). Default: every registered model and every option set.
    keep_candidates : bool
        Keep the runs of the candidates not chosen (tagged ``auto-candidate``; run lists leave them
        out by default); without it they are deleted once the choice is made.
    """

    max_minutes: float = option(10.0, lo=0.1, hi=60 * 24 * 30, unit="min", label="Time budget (min)", flag=None,
                                help="auto: wall-clock budget of all candidates together")
    candidates: tuple[str, ...] = option((), check=False, label="Candidates",
                                         help="auto: comma-separated candidates to consider, MODEL (its "
                                              "defaults) or MODEL:VARIANT (an option set; `models` lists them); "
                                              "default: every model and option set that fits the dataset")
    keep_candidates: bool = option(False, label="Keep the candidates' runs",
                                   help="auto: keep the runs of the candidates not chosen (hidden from run lists)")
    select: str = option("one_se", choices=tuple(CRITERIA), label="Choose",
                         help="auto: " + "; ".join(f"{k}: {v}" for k, v in CRITERIA.items()))

    def __post_init__(self) -> None:
        names = self.candidates
        if isinstance(names, str):  # the command line's A,B,C
            names = tuple(n.strip() for n in names.split(",") if n.strip())
        object.__setattr__(self, "candidates", tuple(names))
        check_options(self)
        known = candidate_names()
        unknown = [n for n in self.candidates if n not in known]
        if unknown or not all(isinstance(n, str) for n in self.candidates):
            msg = f"candidates: expected names among {', '.join(known)}, got {', '.join(map(str, unknown))}"
            raise InvalidInputError(msg)

    def to_dict(self) -> dict[str, Any]:
        return {"max_minutes": self.max_minutes, "candidates": list(self.candidates),
                "keep_candidates": self.keep_candidates, "select": self.select}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AutoConfig:
        return dataclass_from_dict(cls, d, field="auto")


@dataclass(frozen=True, kw_only=True)
class Candidate(JsonResult):
    """One row of the table of a selection."""

    model: str
    #: ``"baseline"`` or ``"network"``.
    kind: str
    #: The name of the model's option set (class attribute ``auto_variants``) it trains with; None: the defaults.
    variant: str | None = json_field(default=None, omit_none=True)
    #: Those options.
    options: dict[str, Any] | None = json_field(default=None, omit_none=True)
    #: ``"trained"``, ``"skipped"`` (does not fit the dataset, or no time left) or ``"failed"``.
    status: str
    reason: str | None = json_field(default=None, omit_none=True)
    #: Validation figures (networks: of the best epoch).
    val_median_m: float | None = None
    val_mean_m: float | None = None
    val_p95_m: float | None = None
    #: ``select="one_se"``: the bootstrap standard error of its validation median minus the lowest one.
    val_se_m: float | None = json_field(default=None, omit_none=True)
    #: Wall-clock seconds of the candidate, loading included.
    seconds: float | None = None
    #: Networks: the training budget it was given.
    max_minutes: float | None = json_field(default=None, omit_none=True)
    stopped: str | None = json_field(default=None, omit_none=True)
    chosen: bool = False
    #: Its run (the chosen one's, or a kept candidate's).
    run_id: str | None = json_field(default=None, omit_none=True)

    @property
    def name(self) -> str:
        """``model``, or ``model:variant``."""
        return candidate_name(self.model, self.variant)


@dataclass(frozen=True, kw_only=True)
class AutoResult(JsonResult):
    """What :func:`auto_train` did: the chosen model's run, its validation figures and the table."""

    run_id: str
    model: str
    dataset: str
    #: Validation errors of the chosen model.
    summary: ErrorSummary = json_field(flatten=True)
    #: Wall-clock seconds of the whole selection.
    seconds: float
    max_minutes: float
    stopped: str
    candidates: tuple[Candidate, ...]
    #: The chosen run's sigma scale fitted on the validation split (None: its model gives no sigma).
    sigma_scale: float | None = json_field(default=None, omit_none=True)
    warnings: tuple[str, ...] = json_field(default=(), omit_empty=True)
    #: The chosen candidate's option set (None: the model's defaults).
    variant: str | None = json_field(default=None, omit_none=True)


@dataclass(frozen=True)
class DatasetTraits:
    """What decides which models fit a dataset (:func:`dataset_traits`)."""

    has_maps: bool
    positioned_nodes: bool
    fixed_slots: int
    #: The report fields (``rss_dbm``, ``toa_ns``, ``aoa_deg``) that some node of known position reports.
    measurements: frozenset[str] = frozenset(MEASUREMENTS)


def dataset_traits(dataset: str) -> DatasetTraits:
    """Whether ``dataset`` has radio maps, nodes of known position in its train split, fixed slots, and
    which kinds of report its nodes of known position give."""
    root = open_dataset(dataset)
    x = load_transformed(dataset, "train", None, with_maps=False)
    known = x.node_mask & x.known_nodes
    given = frozenset(f for f in MEASUREMENTS
                      if getattr(x, f) is not None and (known & np.isfinite(getattr(x, f))).any())
    return DatasetTraits(has_maps="scenes" in root, positioned_nodes=bool(given), fixed_slots=int(x.fixed_slots),
                         measurements=given)


def model_needs_fixed_slots(model: str) -> bool:
    """Whether ``model`` fingerprints the fixed node slots (class attribute ``needs_fixed_slots``)."""
    return bool(getattr(NETWORKS.get(model) or BASELINES.get(model), "needs_fixed_slots", False))


def unfit_reason(model: str, dataset: str, traits: DatasetTraits) -> str | None:
    """Why ``model`` cannot be trained on ``dataset`` (None: it fits)."""
    if model_needs_maps(model) and not traits.has_maps:
        return f"reads radio maps and scene rasters; {dataset!r} has none (imported measurements)"
    if model_needs_node_positions(model) and not traits.positioned_nodes:
        return f"places reports at their nodes' positions; no node reporting in the train split of {dataset!r} " \
               "has a known position"
    if model_needs_fixed_slots(model) and traits.fixed_slots <= 0:
        return f"fingerprints the fixed node slots; the slots of {dataset!r} hold other nodes in each sample"
    field = getattr(NETWORKS.get(model) or BASELINES.get(model), "needs_measurement", None)
    if field is not None and field not in traits.measurements:
        return f"locates from {MEASUREMENTS.get(field, field)} reports; no node of known position reports one in " \
               f"the train split of {dataset!r} (it would only fall back to the weighted centroid)"
    return None


def plan(dataset: str, candidates: tuple[str, ...] = ()) -> list[Candidate]:
    """The candidates of a selection on ``dataset``, baselines first: ``"planned"``, or ``"skipped"`` with the reason.

    ``candidates`` restricts them to these names (:func:`candidate_names`; default: every registered model
    with its defaults and each of its option sets).
    """
    traits = dataset_traits(dataset)
    rows = []
    for kind, registry in (("baseline", BASELINES), ("network", NETWORKS)):
        for model in registry:
            variants = {None: None, **model_variants(model)}
            names = [v for v in variants if not candidates or candidate_name(model, v) in candidates]
            reason = unfit_reason(model, dataset, traits) if names else None
            rows += [Candidate(model=model, kind=kind, variant=v, options=variants[v],
                               status="planned" if reason is None else "skipped", reason=reason) for v in names]
    return rows


def check_auto(dataset: str, config: AutoConfig | dict[str, Any] | None = None, *,
               train_config: dict[str, Any] | None = None, run_id: str | None = None,
               allow_large_extent: bool = False) -> AutoConfig:
    """Validate the arguments of :func:`auto_train` (before a background job starts); returns the config.

    Raises
    ------
    InvalidInputError
        A bad option, an unknown dataset, a refused extent, a taken run id, or no candidate fits.
    """
    return _checked(dataset, config, train_config, run_id, allow_large_extent)[0]


def _checked(dataset: str, config: AutoConfig | dict[str, Any] | None, train_config: dict[str, Any] | None,
             run_id: str | None, allow_large_extent: bool) -> tuple[AutoConfig, list[Candidate]]:
    cfg = config if isinstance(config, AutoConfig) else AutoConfig.from_dict(config)
    if TrainConfig.from_dict({k: v for k, v in (train_config or {}).items() if k != "max_minutes"}).refit:
        msg = ("refit: auto compares its candidates on val, so none is refitted on train + val; train the chosen "
               "model again with --refit (knn, lgbm, ensemble, the networks)")
        raise InvalidInputError(msg)
    check_extent(dataset, allow_large_extent=allow_large_extent)
    if run_id is not None and (runs_dir() / validate_name(run_id, field="run")).exists():
        msg = f"run: a run {run_id!r} exists already; choose another id"
        raise InvalidInputError(msg)
    rows = plan(dataset, cfg.candidates)
    if not any(r.status == "planned" for r in rows):
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in rows) or "no model"
        msg = f"model: auto found no model that fits dataset {dataset!r} ({reasons})"
        raise InvalidInputError(msg)
    return cfg, rows


@dataclass
class _Budget:
    """The wall clock of a selection: its start, its length, and progress reports against it."""

    start: float
    seconds: float
    report: StepProgressFn

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def tell(self, stage: str) -> None:
        """Report ``stage``: the fraction and the time left are the budget's (may raise JobCancelled)."""
        spent = time.perf_counter() - self.start
        step = Step("auto budget", min(spent, self.seconds), self.seconds, limit_s=max(self.left(), 0.0), last=True)
        self.report(stage, min(spent / self.seconds, 0.99), step=step)

    def sub(self, label: str) -> StepProgressFn:
        """The progress callback of one candidate's training."""

        def report(stage: str, fraction: float, *, step: Step | None = None) -> None:
            self.tell(f"{label}: {stage}")

        return report


def auto_train(
    dataset: str, *, config: AutoConfig | dict[str, Any] | None = None, train_config: dict[str, Any] | None = None,
    seed: int = 0, progress: ProgressFn | None = None, run_id: str | None = None, allow_large_extent: bool = False,
    owner: str | None = None, user: User = LOCAL_USER,
) -> AutoResult:
    """Train every model that fits ``dataset`` within the budget; keep the best on the validation split as a run.

    Parameters
    ----------
    config : AutoConfig or dict, optional
        The budget (``max_minutes``, default 10), the models to consider, whether to keep the others' runs.
    train_config : dict, optional
        Training options of every network candidate (:class:`~rflocal_core.train.TrainConfig`; its
        ``max_minutes`` is replaced by the candidate's share of the budget); the baselines read its sigma
        calibration options (:data:`~rflocal_core.train.engine.BASELINE_KEYS`), their ``calibration``
        :data:`BASELINE_CALIBRATION` unless it is given.
    progress : callable(stage, fraction[, step]), optional
        Progress against the budget; may raise :class:`~rflocal_core.progress.JobCancelled`, which stops the
        selection and deletes the candidates' runs.
    run_id : str, optional
        Id of the run written (default ``auto-<dataset>-<time>-<hex>``).
    owner, user
        As for :func:`rflocal_core.train.train`.

    Returns
    -------
    AutoResult
        ``run_id`` (an ordinary run of the chosen ``model``), ``summary`` (its validation errors),
        ``candidates`` (the table, also in the run's ``config.json`` under ``"auto"``), ``seconds``.

    Raises
    ------
    InvalidInputError
        Bad options, or no candidate fits or could be trained (the message gives each one's reason).
    """
    require(user, "train")
    owner = user.name if owner is None else owner
    budget_start = time.perf_counter()
    cfg, rows = _checked(dataset, config, train_config, run_id, allow_large_extent)
    run_id = run_id or new_run_id(AUTO_MODEL, dataset)
    budget = _Budget(budget_start, 60.0 * cfg.max_minutes, as_progress(progress))
    created: list[str] = []
    results: dict[str, TrainResult] = {}
    try:
        for i in range(len(rows)):
            rows[i] = _next_candidate(dataset, rows, i, budget, created, results, train_config or {}, seed, owner,
                                      user, allow_large_extent)
        budget.tell("comparing the candidates on the validation split")
        best, rows = _choose(dataset, rows, cfg.select)
        rows = [replace(r, chosen=r is best, run_id=run_id if r is best else r.run_id if cfg.keep_candidates else None)
                for r in rows]
        _make_result_run(best, run_id, rows, cfg, budget, train_config or {}, seed)
    except BaseException:
        for made in created:  # a cancelled or failed selection leaves nothing behind
            _remove(made)
        raise
    if not cfg.keep_candidates:
        for made in created:
            if made != best.run_id:
                _remove(made)
    seconds = round(time.perf_counter() - budget_start, 3)
    warnings = list(results[best.run_id].warnings)
    if seconds > 1.1 * budget.seconds:
        warnings.append(f"the selection took {seconds:.0f} s of a {budget.seconds:.0f} s budget (a candidate "
                        "cannot be stopped before its fit or epoch ends)")
    budget.report("done", 1.0)
    chosen = results[best.run_id]
    return AutoResult(run_id=run_id, model=best.model, dataset=dataset, summary=chosen.summary, seconds=seconds,
                      max_minutes=cfg.max_minutes, stopped=chosen.stopped, candidates=tuple(rows),
                      sigma_scale=chosen.sigma_scale, warnings=tuple(warnings), variant=best.variant)


def _next_candidate(
    dataset: str, rows: list[Candidate], i: int, budget: _Budget, created: list[str],
    results: dict[str, TrainResult], train_config: dict[str, Any], seed: int, owner: str, user: User,
    allow_large_extent: bool,
) -> Candidate:
    """Train the planned candidate ``rows[i]`` if the budget allows; its row of the table."""
    row = rows[i]
    if row.status != "planned":
        return row
    left = budget.left()
    # a baseline reads only its sigma calibration's options (--sigma-radii quantile reaches it too)
    tc: dict[str, Any] = {"calibration": BASELINE_CALIBRATION,
                          **{k: v for k, v in train_config.items() if k in BASELINE_KEYS}}
    if row.kind == "network":
        share = left / sum(1 for r in rows[i:] if r.status == "planned" and r.kind == "network")
        if share < MIN_NETWORK_SECONDS:
            return replace(row, status="skipped", reason=f"no time left: its share of the budget would be "
                                                         f"{max(share, 0):.1f} s (under {MIN_NETWORK_SECONDS:g} s)")
        tc = {**train_config, "max_minutes": round(max(NETWORK_SHARE_FRACTION * share / 60.0, 0.01), 3)}
    elif left <= 0:
        return replace(row, status="skipped", reason="no time left in the budget")
    label = f"{i + 1}/{len(rows)} {row.name}"
    budget.tell(f"{label}: starting")
    cand_id = new_run_id(row.model, dataset)
    created.append(cand_id)
    t0 = time.perf_counter()
    try:
        result = train(dataset, row.model, model_config=row.options, train_config=tc, seed=seed,
                       progress=budget.sub(label), run_id=cand_id,
                       allow_large_extent=allow_large_extent, tags=(AUTO_CANDIDATE_TAG,), owner=owner, user=user)
    except JobCancelled:
        raise
    except InvalidInputError as exc:  # the model refuses this dataset
        _remove(cand_id)
        return replace(row, status="skipped", reason=str(exc), seconds=round(time.perf_counter() - t0, 3))
    except Exception as exc:  # noqa: BLE001 - one candidate failing (diverged, out of memory) is a row of the table
        _remove(cand_id)
        return replace(row, status="failed", reason=f"{type(exc).__name__}: {exc}",
                       seconds=round(time.perf_counter() - t0, 3))
    results[cand_id] = result
    s = result.summary
    return replace(row, status="trained", val_median_m=s.median_m, val_mean_m=s.mean_m, val_p95_m=s.p95_m,
                   seconds=round(time.perf_counter() - t0, 3), max_minutes=tc.get("max_minutes"),
                   stopped=result.stopped, run_id=cand_id)


def _choose(dataset: str, rows: list[Candidate], select: str) -> tuple[Candidate, list[Candidate]]:
    """The chosen candidate by the rule ``select`` (:data:`CRITERIA`), and the table (with ``val_se_m``)."""
    done = [(r.val_median_m, r.val_mean_m if _finite(r.val_mean_m) else math.inf, k, r)
            for k, r in enumerate(rows) if r.status == "trained" and _finite(r.val_median_m)]
    if not done:
        reasons = "; ".join(f"{r.name}: {r.status}, {r.reason or 'no validation figure'}" for r in rows)
        msg = f"model: auto trained no model on dataset {dataset!r} ({reasons})"
        raise InvalidInputError(msg)
    lowest = min(done, key=lambda t: t[:3])[3]
    if select == "lowest" or len(done) < 2:
        return lowest, rows
    ranked = [t[3] for t in done]  # in the table's order
    errors, truth = zip(*(candidate_val_errors(r.run_id, dataset) for r in ranked), strict=True)
    e = np.stack(errors)  # every candidate predicts the same val samples
    e = np.where(np.isfinite(e), e, np.inf)
    med = np.median(e, axis=1)
    ref = int(np.argmin(med))
    rows_used = np.arange(e.shape[1])
    if len(rows_used) > SELECT_MAX_SAMPLES:  # the cost grows with the samples; the spread comes from the squares
        rows_used = np.sort(np.random.default_rng(0).choice(len(rows_used), SELECT_MAX_SAMPLES, replace=False))
    se = median_difference_se(e[:, rows_used], truth[0][rows_used], ref, square_m=SELECT_SQUARE_M,
                              draws=SELECT_DRAWS, seed=0)
    pick = next(i for i in range(len(ranked)) if med[i] - med[ref] <= se[i])
    noted = {id(r): replace(r, val_se_m=round(float(s), 3)) for r, s in zip(ranked, se, strict=True)}
    return noted[id(ranked[pick])], [noted.get(id(r), r) for r in rows]


def candidate_val_errors(run_id: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """A trained run's error on every sample of ``dataset``'s validation split [N], and their true positions [N, 2]."""
    run = load_run(run_id)
    x = load_transformed(dataset, "val", InputTransform.from_dict(run.config.get("input_transform")),
                         with_maps=run.needs_maps)
    return errors_m(run.predict(x), x), x.truth_m[:, :2]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _make_result_run(best: Candidate, run_id: str, rows: list[Candidate], cfg: AutoConfig, budget: _Budget,
                     train_config: dict[str, Any], seed: int) -> None:
    """Turn the chosen candidate's run into the selection's run: the table in its config, its new id and tag."""
    path = run_dir(best.run_id)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config["run_id"] = run_id
    config["tags"] = [t for t in config.get("tags") or () if t != AUTO_CANDIDATE_TAG] + [AUTO_TAG]
    config["auto"] = {
        "chosen": best.name, "criterion": CRITERIA[cfg.select], "split": "val", "max_minutes": cfg.max_minutes,
        "seconds": round(time.perf_counter() - budget.start, 3), "seed": seed, "train_config": train_config,
        "candidates": [r.to_json() for r in rows],
    }
    atomic_write_text(path / "config.json", json.dumps(config, indent=2))
    rename_dir(path, runs_dir() / validate_name(run_id, field="run"))  # the finished run appears under its id


def auto_table(run_id: str) -> dict[str, Any] | None:
    """The selection table of a run written by :func:`auto_train` (its ``config.json`` ``"auto"``), else None."""
    return config_section(run_id, "auto")


def _remove(run_id: str) -> None:
    """Delete a candidate's run folder (one this selection created), if it exists."""
    path = runs_dir() / run_id
    if path.is_dir():
        shutil.rmtree(path)
