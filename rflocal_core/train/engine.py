"""The epoch loop for the networks (:func:`fit_network`): one epoch, one validation, the loop.

AdamW; linear warm-up then cosine decay (or halving on a validation plateau); gradient
clipping; validation median error every epoch; the best model kept as ``model.pt``; early
stopping on the validation median (or the figure ``TrainConfig.select_on`` names); a wall-clock
budget; CPU by default, CUDA with bfloat16 autocast when present. After every epoch ``resume.pt``
holds the optimizer, schedule and random state, so a cancelled or interrupted run continues where it
stopped.

The cosine schedule runs over the run's *progress* (:meth:`_Loop.progress`): the fraction of the
planned steps done or, with a time budget, of the budget spent if that is further. A run that the
budget stops after 3 of 60 epochs has warmed up, decayed and ends at the floor rate (1% of ``lr``)
like a 60-epoch run does, instead of stopping at its peak rate. Warm-up lasts ``warmup_epochs`` or
:data:`WARMUP_MAX_FRACTION` of the progress, whichever ends first.

A refit on train + val (``TrainConfig.refit``; :func:`refit_plan`, :func:`fit_fixed`) runs the same loop without
validation for a fixed number of epochs: the steps to the val-chosen epoch x ``refit_steps_scale``, on the cosine
schedule stretched to end at the progress that epoch stood at; the last state is kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rflocal_core.dataset.sharding import ChunkShardSampler
from rflocal_core.errors import InvalidInputError
from rflocal_core.metrics import ErrorSummary, error_summary
from rflocal_core.models.features import Batch, make_batch
from rflocal_core.models.inputs import Inputs
from rflocal_core.models.maps import MapSource
from rflocal_core.models.nets import LocNet
from rflocal_core.models.neural import NeuralModel, check_timing_maps
from rflocal_core.train.calibrate import SIGMA_RADII
from rflocal_core.options import check_options, option
from rflocal_core.progress import JobCancelled, ProgressFn, Step, StepProgressFn, as_progress
from rflocal_core.train.distributed import Dist
from rflocal_core.train.runs import StopReason, append_metrics, read_torch, save_checkpoint, write_torch
from rflocal_core.train.stream import StreamedSplit
from rflocal_core.validation import dataclass_from_dict

RESUME_FORMAT = "rflocal-resume/1"
#: The cosine schedule's warm-up ends by this fraction of the run's progress (of the epochs a
#: time budget lets run), whatever ``warmup_epochs`` says.
WARMUP_MAX_FRACTION = 0.1
#: The cosine schedule decays to this fraction of ``lr``.
LR_FLOOR_FRACTION = 0.01
#: The validation figures that can choose the best epoch (``TrainConfig.select_on``): the median error; the mean
#: error; the share of samples more than 10 m off; the 95th percentile. Lower is better for each; the mean, the
#: share and P95 see the tail (the wrong modes a prior gets far off), which the median cannot (README, brief A27).
SELECT_ON = ("median", "mean", "over_10m", "p95")
#: The options of :class:`TrainConfig` a baseline reads (it is fitted in one step: only its sigma calibration).
BASELINE_KEYS = ("calibration", "calibration_block_m", "calibration_folds", "sigma_radii")


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained.

    Parameters
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
    schedule : str
        ``"cosine"`` (warm-up, then cosine decay to 1% of ``lr`` at the end of the epochs or of
        ``max_minutes``, whichever comes first) or ``"plateau"`` (warm-up, then halve the rate
        after ``plateau_patience`` epochs without a better validation median).
    warmup_epochs : float
        Linear warm-up length in epochs (cosine: at most 10% of the run's epochs, or of the
        time budget).
    grad_clip : float
        Maximum gradient norm (0 disables clipping).
    patience : int
        Stop after this many epochs without a better validation median (0: never stop early).
    max_minutes : float or None
        Wall-clock budget; the epoch that runs out is cut short, validated and kept. The cosine
        schedule ends with it.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    amp : bool
        bfloat16 autocast on CUDA (ignored on CPU).
    plateau_patience : int
    data_loading : str
        ``"memory"`` (the train split read whole into memory), ``"stream"`` (read in chunk-aligned
        blocks through :class:`~rflocal_core.dataset.sharding.ChunkShardSampler`, each DDP rank only
        the chunks of its share: :mod:`rflocal_core.train.stream`) or ``"auto"`` (stream when the
        split's arrays exceed ``memory_budget_mb``). The run's ``config.json`` records what was used.
    memory_budget_mb : float
        ``"auto"``: the largest train split (its rows of every ``samples/`` array, uncompressed) read
        into memory (0: stream every split).
    calibration : str
        Where the sigma map is fitted at the end (:mod:`rflocal_core.train.calibrate`): ``"val"``, or
        ``"blocks"`` (baselines only: out-of-fold predictions over squares of train + val, the model
        fitted once more per fold), or ``"auto"`` (baselines: blocks of the split's own squares for a
        dataset split by area, val otherwise; networks: val).
    calibration_block_m, calibration_folds : float, int
        ``"blocks"``: the side of the squares and how many folds they are dealt to.
    sigma_radii : str
        ``"gaussian"``: the 2σ ellipse is twice the 1σ one and the scale (+ power) map is fitted as
        before; ``"quantile"``: the 1σ and 2σ radii are fitted apart on the calibration rows (39.3% and
        86.5% of them inside), for errors heavier-tailed than a Gaussian (Duke CBRS; see
        :func:`rflocal_core.train.calibrate.fit_sigma_quantiles`); ``"auto"`` (default): the Gaussian fit
        unless a share it leaves inside is more than 10 points off 39.3% / 86.5% on those rows, then the
        quantile fit (:func:`rflocal_core.train.calibrate.gaussian_holds`).
    refit : bool
        Baselines that can fix their validation choices (``can_refit``: ``knn``, ``lgbm`` and
        ``knn_lgbm`` with the trees early stopping chose on val, ``ensemble``) and networks: after the fit on
        train, its validation figures and the sigma calibration, fit the model once more on train + val
        with those choices fixed and keep that model (standard practice: val chooses, then every
        labelled sample counts). The run's val figures and sigma map stay those of the fit on train.
        Networks (:func:`fit_fixed`): a new network, same seed and feature frame, trained on train + val
        without val for the optimizer steps to the val-chosen epoch x ``refit_steps_scale`` (whole epochs),
        on the cosine schedule stretched to end where the chosen epoch stood; the last state is kept.
    refit_steps_scale : float or None
        Networks, ``refit``: the factor on the optimizer steps to the val-chosen epoch. None: samples with
        truth in train + val over train's, which is as many epochs as val chose, each over train + val
        (the ``lgbm`` refit's trees x (train + val) / train rule, a step being a tree).
    search_trials, search_minutes : int, float
        Networks: before the run trains, a hyperparameter search (Optuna TPE on the validation split,
        :mod:`rflocal_core.train.netsearch`) of ``search_trials`` networks, each trained for at most
        ``search_minutes / search_trials`` minutes; the run then trains with the best options (its
        ``max_minutes`` on top of the search's) and keeps the trials in its ``config.json``. 0: no search.
    initial_validation : bool
        Validate the network before its first step too (epoch 0) and keep it as the best state until a
        trained epoch beats it on the validation median: a network that starts from a prior (mapformer's
        heads start at zero: its physics prior decoded by its own head) then never ends worse on
        validation than where it started. The run records it (``best_epoch`` 0, ``initial``).
    select_on : str
        The validation figure that chooses the best epoch (the one kept), counts epochs without progress
        (``patience``) and drives the plateau schedule (:func:`selection_score`, :data:`SELECT_ON`):
        ``"median"`` (the default; the choice made before this option existed), ``"mean"``, ``"over_10m"``
        (the share of samples more than 10 m off) or ``"p95"``. Wherever the docs above say "validation
        median", read this figure.
    """

    epochs: int = option(60, lo=1, hi=100_000, label="Epochs", help="networks: maximum epochs")
    batch_size: int = option(128, lo=1, hi=65_536, label="Batch size", help="samples per training step")
    lr: float = option(2e-3, lo=1e-7, hi=1.0, label="Learning rate", help="peak learning rate of AdamW")
    weight_decay: float = option(1e-4, lo=0.0, hi=1.0, label="Weight decay", help="AdamW weight decay")
    schedule: str = option("cosine", choices=("cosine", "plateau"), label="Schedule",
                           help="cosine decay, or halving on a validation plateau")
    warmup_epochs: float = option(2.0, lo=0.0, hi=1000.0, label="Warm-up epochs", help="linear warm-up length")
    grad_clip: float = option(1.0, lo=0.0, hi=1e6, label="Gradient clip", help="largest gradient norm (0: none)")
    patience: int = option(15, lo=0, hi=100_000, label="Early-stop patience (0 = off)",
                           help="stop after this many epochs without a better validation median (0: never)")
    max_minutes: float | None = option(None, lo=0.01, hi=60 * 24 * 30, unit="min", label="Time budget (min)",
                                       none_means="no limit", help="networks: wall-clock budget")
    device: str = option("auto", choices=("auto", "cpu", "cuda"), label="Device",
                         help="auto (CUDA when available), cpu or cuda")
    amp: bool = option(True, label="bfloat16 autocast", help="bfloat16 autocast on CUDA")
    plateau_patience: int = option(4, lo=1, hi=1000, label="Plateau patience",
                                   help="epochs without a better validation median before halving the rate (plateau)")
    data_loading: str = option("auto", choices=("memory", "stream", "auto"), label="Data loading",
                               help="networks: read the train split into memory, stream it in chunk-aligned blocks "
                                    "(each DDP rank its own chunks), or auto (stream above memory_budget_mb)")
    memory_budget_mb: float = option(2048.0, lo=0.0, hi=1e9, unit="MB", label="Memory budget (MB)",
                                     help="data_loading auto: stream a train split whose arrays exceed this (0: always)")
    calibration: str = option("val", choices=("val", "blocks", "auto"), label="Sigma calibration",
                              help="fit the sigma map on val, or on out-of-fold predictions over squares of "
                                   "train + val (blocks; baselines: refits the model per fold), or auto (blocks of "
                                   "the split's squares for a dataset split by area, else val)")
    calibration_block_m: float = option(200.0, lo=1.0, hi=1e6, unit="m", label="Calibration squares (m)",
                                        help="calibration blocks: side of the squares dealt to the folds")
    calibration_folds: int = option(5, lo=2, hi=50, label="Calibration folds",
                                    help="calibration blocks: folds of squares (the model is fitted once per fold)")
    sigma_radii: str = option("auto", choices=SIGMA_RADII, label="Sigma radii",
                              help="gaussian: the 2σ ellipse is twice the 1σ one; quantile: the 1σ and 2σ radii "
                                   "fitted apart on the calibration rows (39.3 and 86.5 percent inside), heavy tails; "
                                   "auto: gaussian unless it leaves a share more than 10 points off on those rows")
    # Antwerp radio-map knn (35 m, k 30): x_test 72.7 / 257.4 m -> 71.0 / 253.7 m with 11% more fingerprints (README)
    refit: bool = option(False, label="Refit on train + val",
                         help="knn, lgbm, ensemble, networks: after choosing and calibrating on val, fit again on "
                              "train + val with the choices fixed (networks: the val-chosen steps) and keep that model")
    refit_steps_scale: float | None = option(None, lo=0.1, hi=10.0, none_means="(train + val) / train samples",
                                             label="Refit steps scale",
                                             help="networks, refit: optimizer steps on train + val = the steps to the "
                                                  "val-chosen epoch x this (the default: as many epochs as val chose)")
    search_trials: int = option(0, lo=0, hi=1000, label="Search trials (0 = none)",
                                help="networks: Optuna TPE trials of the options on val before the run trains (0: none)")
    search_minutes: float = option(30.0, lo=0.0, hi=60 * 24 * 30, lo_open=True, unit="min", label="Search minutes",
                                   help="networks, search: the search's time budget, shared by its trials")
    initial_validation: bool = option(True, label="Keep the untrained network if best",
                                      help="validate before the first step (epoch 0) and keep that state unless a "
                                           "trained epoch beats it on the validation median")
    select_on: str = option("median", choices=SELECT_ON, label="Best epoch chosen on",
                            help="networks: the validation figure that chooses the epoch kept (and early stopping, "
                                 "plateau): median error, mean error, share over 10 m off, or P95")

    def __post_init__(self) -> None:
        check_options(self)
        if self.device == "cuda" and not torch.cuda.is_available():
            msg = "device: 'cuda' was asked for, but torch sees no CUDA device here; use 'auto' or 'cpu'"
            raise InvalidInputError(msg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TrainConfig:
        return dataclass_from_dict(cls, d, field="train_config")

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit_network` did.

    Attributes
    ----------
    best_epoch, epochs_run : int
    stop_reason : str
        ``"epochs"``, ``"early stopping"`` or ``"time limit"``.
    stop : StopReason
        Why it stopped, as the run's ``status.json`` says it.
    best : ErrorSummary
        Validation summary of the best epoch (``best_epoch`` 0: the network before training, kept because
        no trained epoch beat it; ``initial_validation``).
    seconds : float
        Training time, over every resumption.
    initial : ErrorSummary or None
        Validation summary of the network before its first step (None: ``initial_validation`` off).
    """

    best_epoch: int
    epochs_run: int
    stop_reason: str
    stop: StopReason
    best: ErrorSummary
    seconds: float
    initial: ErrorSummary | None = None
    #: Optimizer steps done and schedule progress (:meth:`_Loop.progress`) at the best epoch (what a refit replays).
    best_step: int | None = None
    best_progress: float | None = None


def fit_network(
    path: Path, model: NeuralModel, cfg: TrainConfig, train_in: Inputs | StreamedSplit, val_in: Inputs, *, seed: int,
    progress: ProgressFn, resume: dict[str, Any] | None = None, dist: Dist | None = None,
) -> FitResult:
    """Train ``model.net`` and keep the best epoch in ``path/model.pt``.

    Parameters
    ----------
    path : Path
        The run folder (``metrics.jsonl``, ``model.pt``, ``resume.pt`` are written there).
    train_in : Inputs or StreamedSplit
        The train split in memory, or read in blocks each epoch (:mod:`rflocal_core.train.stream`).
    resume : dict, optional
        The payload of ``resume.pt`` to continue from.
    dist : Dist, optional
        This process's rank in a DDP run (:mod:`rflocal_core.train.distributed`); every rank calls
        this alike, rank 0 alone writes the files and reports progress.
    progress : callable(stage, fraction[, step])
        Called every few tenths of a second, with the epochs done as a
        :class:`~rflocal_core.progress.Step` (and the time budget left) when it takes ``step``;
        raises :class:`~rflocal_core.progress.JobCancelled` to stop (the best checkpoint and
        ``resume.pt`` stay valid).

    Returns
    -------
    FitResult
        ``best_epoch``, ``epochs_run``, ``stop`` (:class:`~rflocal_core.train.runs.StopReason`),
        ``stop_reason`` (``"epochs"``, ``"early stopping"`` or ``"time limit"``), ``best``
        (validation summary of the best epoch), ``seconds``.
    """
    torch.manual_seed(seed)
    loop = _Loop.start(path, model, cfg, train_in, val_in, seed=seed, report=as_progress(progress), resume=resume,
                       dist=dist or Dist())
    if cfg.initial_validation and resume is None:
        loop.validate_initial()
    aux_epochs = int(getattr(loop.net.config, "aux_epochs", 0))
    stop_reason = "epochs"
    for epoch in range(int(loop.state["epoch"]), cfg.epochs):
        t_epoch = time.perf_counter()
        stage = "aux" if epoch < aux_epochs else "joint"
        sums, seen, out_of_time = loop.train_epoch(epoch, stage)
        loop.end_epoch(epoch, stage, sums, seen, t_epoch)
        loop.check_cancel()
        if out_of_time:
            stop_reason = "time limit"
            break
        if cfg.patience and loop.state["bad_epochs"] >= cfg.patience:
            stop_reason = "early stopping"
            break
    state = loop.state
    if state["best"] is None or state["epoch"] <= aux_epochs:
        msg = "no epoch of joint training finished (all epochs were auxiliary?); raise epochs above aux_epochs"
        raise InvalidInputError(msg)
    kind = {"epochs": "epochs", "time limit": "time_budget", "early stopping": "early_stop"}[stop_reason]
    stop = StopReason(kind, int(state["epoch"]), cfg.epochs, cfg.patience if kind == "early_stop" else None)
    initial = state.get("initial")
    return FitResult(state["best_epoch"], state["epoch"], stop_reason, stop, ErrorSummary.from_json(state["best"]),
                     round(state["elapsed_s"], 3), None if initial is None else ErrorSummary.from_json(initial),
                     best_step=state.get("best_step"), best_progress=state.get("best_progress"))


@dataclass(frozen=True)
class RefitPlan:
    """What a network's refit on train + val runs (:func:`refit_plan`, :func:`fit_fixed`).

    Attributes
    ----------
    epochs : int
        Whole epochs over train + val (0: the val-chosen epoch was the untrained network; nothing to refit).
    plan_epochs : float
        The cosine schedule's length in those epochs: the refit ends at the progress of the val-chosen epoch.
    scale : float
        The factor on the steps to the val-chosen epoch (``TrainConfig.refit_steps_scale`` resolved).
    steps_on_val : int
        Optimizer steps to the val-chosen epoch in the fit on train.
    progress_on_val : float
        That epoch's schedule progress in the fit on train.
    """

    epochs: int
    plan_epochs: float
    scale: float
    steps_on_val: int
    progress_on_val: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def refit_plan(best_step: int | None, best_progress: float | None, cfg: TrainConfig, *, train_samples: int,
               refit_samples: int) -> RefitPlan:
    """The epochs and schedule of a refit on ``refit_samples`` (train + val, with truth) after a fit on train whose
    val-chosen epoch came after ``best_step`` optimizer steps at schedule progress ``best_progress``
    (:class:`FitResult`).

    Steps = ``best_step`` x ``cfg.refit_steps_scale`` (None: ``refit_samples / train_samples``), rounded to whole
    epochs of ``ceil(refit_samples / cfg.batch_size)`` steps (at least one unless the chosen epoch is the untrained
    network); the cosine schedule is stretched so that it ends at ``best_progress``.

    Raises
    ------
    InvalidInputError
        ``best_step`` or ``best_progress`` is None (a fit saved before they were kept), or a sample count is not
        positive.
    """
    if best_step is None or best_progress is None:
        msg = ("refit: the fit does not record the steps and schedule progress of its best epoch (best_step "
               f"{best_step}, best_progress {best_progress}: saved before they were kept); train it again")
        raise InvalidInputError(msg)
    if train_samples <= 0 or refit_samples <= 0:
        msg = f"refit: expected positive sample counts, got train {train_samples}, train + val {refit_samples}"
        raise InvalidInputError(msg)
    scale = refit_samples / train_samples if cfg.refit_steps_scale is None else float(cfg.refit_steps_scale)
    per_epoch = math.ceil(refit_samples / cfg.batch_size)
    epochs = 0 if best_step == 0 else max(1, round(best_step * scale / per_epoch))
    progress = min(max(float(best_progress), 1e-6), 1.0)
    return RefitPlan(epochs, epochs / progress, scale, int(best_step), float(best_progress))


def fit_fixed(path: Path, model: NeuralModel, cfg: TrainConfig, data: Inputs, plan: RefitPlan, *, seed: int,
              progress: ProgressFn) -> dict[str, Any]:
    """Train ``model.net`` on ``data`` (train + val) for exactly ``plan.epochs`` epochs, without validation, and keep
    the last state in ``path/model.pt`` (a network's refit; :func:`refit_plan`).

    The loop is :func:`fit_network`'s (seeded alike, same steps, augmentation and gradient clipping) with no time
    budget, no early stopping, and the cosine schedule over ``plan.plan_epochs``.

    Returns
    -------
    dict
        ``epochs``, ``steps``, ``progress`` (the schedule's at the end), ``lr`` (the last rate), ``train_loss`` (of
        the last epoch), ``seconds``.

    Raises
    ------
    InvalidInputError
        ``cfg.schedule`` is ``"plateau"`` (it follows val, which a refit has not).
    """
    if cfg.schedule != "cosine":
        msg = f"schedule: a refit replays the cosine schedule without val; {cfg.schedule!r} follows val: use 'cosine'"
        raise InvalidInputError(msg)
    torch.manual_seed(seed)
    fixed = replace(cfg, epochs=max(plan.epochs, 1), max_minutes=None, patience=0, initial_validation=False)
    # the loop's validation inputs are never read here (no epoch is validated)
    loop = _Loop.start(path, model, fixed, data, data, seed=seed, report=as_progress(progress), resume=None,
                       dist=Dist())
    loop.plan_steps = plan.plan_epochs * loop.steps_per_epoch
    aux_epochs = int(getattr(loop.net.config, "aux_epochs", 0))
    sums, seen = {"loss": math.nan}, 1
    for epoch in range(plan.epochs):
        sums, seen, _ = loop.train_epoch(epoch, "aux" if epoch < aux_epochs else "joint")
    save_checkpoint(path, model=model.name, config=model.checkpoint_config(), state=loop.net.state_dict())
    return {"epochs": plan.epochs, "steps": int(loop.state["step"]), "progress": round(loop.progress(), 6),
            "lr": float(loop.state["lr"]), "train_loss": sums["loss"] / max(seen, 1),
            "seconds": round(time.perf_counter() - loop.t_start, 3)}


@dataclass
class _Loop:
    """The moving parts of one training run; :func:`fit_network` drives it epoch by epoch.

    ``state`` is what ``resume.pt`` keeps (epoch, step, best so far, early-stop and plateau
    counters, time spent, the schedule's progress and where its warm-up ended), plain values only.
    ``anchor`` is the progress and time spent when this stretch of the run started (0, 0 unless
    resumed): a resumed run spreads the rest of its schedule over the rest of its budget.
    """

    path: Path
    model: NeuralModel
    cfg: TrainConfig
    net: LocNet
    device: torch.device
    train_b: Batch | None  # None: streamed
    train_rows: torch.Tensor | None  # rows of train_in (the map source's samples)
    train_src: MapSource | None
    val_b: Batch
    val_in: Inputs
    val_src: MapSource | None
    opt: torch.optim.Optimizer
    gen: torch.Generator
    report: StepProgressFn
    state: dict[str, Any]
    t_start: float
    deadline: float | None
    anchor: tuple[float, float] = (0.0, 0.0)
    epoch_progress: float = 0.0
    last_report: float = 0.0
    dist: Dist = field(default_factory=Dist)
    seed: int = 0
    fwd: torch.nn.Module | None = None  # what the forward pass goes through: DDP's wrapper, or the net
    aug_gen: torch.Generator | None = None  # DDP: this rank's augmentation (None: ``gen``, as one process)
    cancel_pending: bool = False  # DDP: rank 0's progress callback asked to cancel; every rank stops
    stream: StreamedSplit | None = None  # the train split read in blocks (train_b is then None)
    sampler: ChunkShardSampler | None = None  # this rank's order and chunks of a streamed split
    n_steps: int = 0  # optimizer steps per epoch
    plan_steps: float | None = None  # the cosine schedule's length in steps (None: epochs x steps per epoch)

    @classmethod
    def start(cls, path: Path, model: NeuralModel, cfg: TrainConfig, train_in: Inputs | StreamedSplit, val_in: Inputs,
              *, seed: int, report: StepProgressFn, resume: dict[str, Any] | None, dist: Dist) -> _Loop:
        """Batches, optimizer and state, from scratch or from a ``resume.pt`` payload."""
        device = dist.device if dist.on else cfg.resolved_device()
        net: LocNet = model.net.to(device)
        check_timing_maps(model.net.config, val_in)  # before any work: an option that would do nothing
        val_b = make_batch(val_in, model.spec)
        val_src = model.map_source(val_in)
        train_b, train_rows, train_src, sampler, n_steps = _train_source(model, cfg, train_in, seed=seed, dist=dist)
        if n_steps == 0 or not torch.isfinite(val_b.truth).all(1).any():
            msg = "dataset: train and val splits must both hold samples with a true position"
            raise InvalidInputError(msg)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        state = {"epoch": 0, "step": 0, "best_score": math.inf, "best_epoch": -1, "best": None, "bad_epochs": 0,
                 "plateau_scale": 1.0, "plateau_bad": 0, "plateau_best": math.inf, "elapsed_s": 0.0,
                 "progress": 0.0, "warmup_end": None, "lr": 0.0}
        if resume is not None:
            net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in resume["net"].items()})
            opt.load_state_dict(resume["optimizer"])
            gen.set_state(torch.as_tensor(np.asarray(resume["generator"]), dtype=torch.uint8))
            _upgrade_state(state, resume["state"], cfg, steps_per_epoch=n_steps)
        t_start = time.perf_counter() - state["elapsed_s"]
        deadline = None if cfg.max_minutes is None else t_start + 60 * cfg.max_minutes
        loop = cls(path, model, cfg, net, device, train_b, train_rows, train_src, val_b, val_in, val_src, opt, gen,
                   report, state, t_start, deadline, anchor=(float(state["progress"]), float(state["elapsed_s"])),
                   dist=dist, seed=seed, stream=train_in if sampler is not None else None, sampler=sampler,
                   n_steps=n_steps)
        if dist.on:
            unused = dist.sum([float(loop.leaves_parameters_unused())])[0] > 0
            loop.fwd = dist.wrap(net, device, find_unused=unused)
            loop.report = dist.main_only(loop.deferred_cancel(report))
        return loop

    def leaves_parameters_unused(self) -> bool:
        """Whether a training step (of each stage the run has) leaves a parameter without a gradient:
        DDP must then look for such parameters every step, which costs a pass over the graph.

        One forward and backward pass on two samples; the random state and the gradients are left
        as they were.
        """
        net = self.net
        stages = ["joint"] + (["aux"] if int(getattr(net.config, "aux_epochs", 0)) > 0 else [])
        inp = self.probe_input().to(self.device)
        unused = False
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            net.train()
            for stage in stages:
                net.zero_grad(set_to_none=True)
                loss, _ = net.loss(inp, net(inp), stage=stage)
                loss.backward()
                unused = unused or any(p.requires_grad and p.grad is None for p in net.parameters())
        net.zero_grad(set_to_none=True)
        return unused

    def deferred_cancel(self, report: StepProgressFn) -> StepProgressFn:
        """``report`` whose cancel is noted (and acted on by every rank after the next step) instead
        of raised on rank 0 alone."""

        def wrapped(stage: str, fraction: float, *, step: Step | None = None) -> None:
            try:
                report(stage, fraction, step=step)
            except JobCancelled:
                self.cancel_pending = True

        return wrapped

    def check_cancel(self) -> None:
        """DDP: stop every rank when rank 0's callback asked to cancel at the epoch's end."""
        if self.dist.on and self.dist.from_main([float(self.cancel_pending)])[0] > 0:
            raise JobCancelled("cancelled")

    def probe_input(self) -> Any:
        """The network's input for (at most) the first two train samples."""
        if self.stream is not None:
            x = self.stream.read(np.arange(min(2, len(self.stream))))
            base, src, rows = make_batch(x, self.model.spec), self.model.map_source(x), torch.arange(len(x))
        else:
            rows = torch.arange(min(2, len(self.train_b)))
            base, src, rows = self.train_b.index(rows), self.train_src, self.train_rows[rows]
        return base.compact() if src is None else src.batch(base, rows)

    @property
    def steps_per_epoch(self) -> int:
        return self.n_steps

    def progress(self) -> float:
        """How far the run is through its schedule, in [0, 1]: the fraction of the planned steps done or,
        with a time budget, of the budget spent, whichever is further (never less than at the start).

        After a resume the time fraction continues from the progress reached (``anchor``), spread over
        the budget left, so a run resumed with another budget does not jump back up its schedule.
        """
        state = self.state
        p = max(state["step"] / (self.plan_steps or self.cfg.epochs * self.steps_per_epoch), self.anchor[0])
        if self.deadline is not None:
            p0, e0 = self.anchor
            budget_s = 60.0 * float(self.cfg.max_minutes or 0.0)
            spent = time.perf_counter() - self.t_start
            p = max(p, 1.0 if budget_s <= e0 else p0 + (1.0 - p0) * (spent - e0) / (budget_s - e0))
        return min(p, 1.0)

    def next_lr(self) -> float:
        """The rate of the next step: linear warm-up, then cosine decay over :meth:`progress` to 1% of
        ``lr``, or the plateau-halved rate; the end of a cosine warm-up is kept in ``state``."""
        cfg, state = self.cfg, self.state
        step = state["step"]
        warmup_steps = cfg.warmup_epochs * self.steps_per_epoch
        if cfg.schedule == "plateau":  # as before: warm-up in steps, then the plateau-halved rate
            if step < int(warmup_steps):
                return cfg.lr * (step + 1) / int(warmup_steps)
            return cfg.lr * state["plateau_scale"]
        rate, state["warmup_end"] = cosine_rate(cfg.lr, step=step, warmup_steps=warmup_steps, progress=self.progress(),
                                                warmup_end=state["warmup_end"])
        return rate

    def epochs_done(self, done: float) -> Step:
        """Progress in epochs; training is the last stage, so its time left is the job's."""
        limit = None if self.deadline is None else self.deadline - time.perf_counter()
        return Step("epochs", done, self.cfg.epochs, limit_s=limit, last=True)

    def train_epoch(self, epoch: int, stage: str) -> tuple[dict[str, float], int, bool]:
        """One pass over the shuffled train split: summed losses, samples seen, whether time ran out.

        In DDP every rank draws the same order and takes its share of each global batch; the sums
        and the count are of every rank's share.
        """
        cfg, net = self.cfg, self.net
        net.train()
        self.start_epoch(epoch)
        sums: dict[str, float] = {}
        seen = 0
        out_of_time = False
        for b, (base, src, src_rows, batch_rows) in self.epoch_steps(epoch):
            loss, parts, out_of_time = self.train_step(epoch, b, base, src, src_rows, stage, batch_rows=batch_rows)
            n = len(base)
            seen += n
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * n
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * n
            now = time.perf_counter()
            if now - self.last_report > 0.25 or b == 0:  # every epoch says it started, however short
                self.last_report = now
                done = epoch + (b + 1) / self.steps_per_epoch
                self.report(f"epoch {epoch + 1}/{cfg.epochs}", max(done / cfg.epochs, self.progress()),
                            step=self.epochs_done(done))
            if out_of_time:
                break
        return *self.summed(sums, seen), out_of_time

    def epoch_steps(self, epoch: int) -> Iterator[tuple[int, tuple[Batch, MapSource | None, torch.Tensor, int]]]:
        """The epoch's steps: ``(step, (this rank's samples, their map source, their rows of it, global batch))``.

        In memory: a shuffle of the whole split drawn from ``gen`` (every rank alike), each rank its
        share of each global batch. Streamed: the sampler's order, read a block at a time.
        """
        bs = self.cfg.batch_size
        if self.sampler is not None and self.stream is not None:
            self.sampler.set_epoch(epoch)
            steps = self.stream.steps(self.sampler, bs, self.model)
            yield from enumerate((base, src, rows, bs) for base, src, rows in steps)
            return
        order = torch.randperm(len(self.train_b), generator=self.gen)
        for b in range(self.steps_per_epoch):
            rows = order[b * bs:(b + 1) * bs]
            if len(rows) < self.dist.world:  # a tail too short to give every rank a sample
                continue
            mine = self.dist.share(rows)
            yield b, (self.train_b.index(mine), self.train_src, self.train_rows[mine], len(rows))

    def start_epoch(self, epoch: int) -> None:
        """The augmentation schedule moves on at epoch starts (rank 0's progress in DDP, whose ranks
        augment with their own generator, seeded by seed, rank and epoch: a resumed run draws alike)."""
        self.epoch_progress = self.dist.from_main([self.progress()])[0]
        if self.dist.on:
            self.aug_gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_009 + self.dist.rank)

    def summed(self, sums: dict[str, float], seen: int) -> tuple[dict[str, float], int]:
        """The epoch's loss sums and samples over every rank (this rank's alone outside DDP)."""
        if not self.dist.on:
            return sums, seen
        keys = sorted(sums)
        total = self.dist.sum([*(sums[k] for k in keys), seen])
        return dict(zip(keys, total[:-1], strict=True)), round(total[-1])

    def train_step(self, epoch: int, b: int, base: Batch, src: MapSource | None, src_rows: torch.Tensor, stage: str,
                   *, batch_rows: int) -> tuple[torch.Tensor, dict[str, float], bool]:
        """One optimizer step on the samples ``base`` (augmented; ``src_rows``: their rows of the map
        source ``src``) of a global batch of ``batch_rows``; returns the loss, its parts and whether the
        time budget ran out."""
        cfg, net, device = self.cfg, self.net, self.device
        inp = base if src is None else src.batch(base, src_rows)
        batch = net.augment(inp, epoch_fraction=self.epoch_progress, extent_m=self.model.spec.extent_m,
                            generator=self.gen if self.aug_gen is None else self.aug_gen)
        batch = (batch.compact() if src is None else batch).to(device)
        fwd = self.fwd if self.fwd is not None else net
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            out = fwd(batch)
            loss, parts = net.loss(batch, out, stage=stage)
        finite = bool(torch.isfinite(loss))
        if not finite and not self.dist.on:
            msg = (f"training diverged at epoch {epoch + 1}, step {b + 1}: loss is {float(loss)}; "
                   f"lower lr (now {cfg.lr})")
            raise FloatingPointError(msg)
        self.opt.zero_grad(set_to_none=True)
        # DDP averages the ranks' gradients: weigh each share's mean loss by its size, so the step is
        # that of the mean over the global batch
        scale = self.dist.world * len(base) / batch_rows
        (loss if scale == 1 else loss * scale).backward()
        out_of_time = self.deadline is not None and time.perf_counter() > self.deadline
        lr, bad_rank, cancel, out_of_time = self.dist.step_flags(lr=self.next_lr(), finite=finite,
                                                                 cancel=self.cancel_pending, out_of_time=out_of_time)
        if bad_rank >= 0:
            msg = (f"training diverged at epoch {epoch + 1}, step {b + 1}: loss is not finite on rank {bad_rank}; "
                   f"lower lr (now {cfg.lr})")
            raise FloatingPointError(msg)
        self.state["lr"] = lr
        for group in self.opt.param_groups:
            group["lr"] = lr
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        self.opt.step()
        self.state["step"] += 1
        if cancel:
            raise JobCancelled("cancelled")
        return loss, parts, out_of_time

    def validate_initial(self) -> None:
        """Epoch 0: validate the network before its first step and keep it as the best state so far (its
        checkpoint written), so a trained epoch must beat it on the validation median to replace it."""
        val, _ = _validate(self.model, self.val_b, self.val_in, self.val_src, self.dist)
        summary = val.to_json()
        self.state["initial"] = summary
        score = selection_score(val, self.cfg.select_on)
        if math.isfinite(score):
            self._keep_best(0, score, summary)

    def _keep_best(self, epoch: int, score: float, summary: dict) -> None:
        """Record ``epoch`` (its validation ``score``, :func:`selection_score`) as the best so far and write its
        checkpoint (rank 0 writes the run; the other ranks took the same decision)."""
        self.state.update(best_score=score, best_epoch=epoch, best=summary, best_step=int(self.state["step"]),
                          best_progress=float(self.state["progress"]))
        if self.dist.is_main:
            save_checkpoint(self.path, model=self.model.name, config=self.model.checkpoint_config(),
                            state=self.net.state_dict())

    def end_epoch(self, epoch: int, stage: str, sums: dict[str, float], seen: int, t_epoch: float) -> None:
        """Validate; keep the best model, count epochs without progress, adapt a plateau schedule; write
        the epoch's metrics row and ``resume.pt``."""
        cfg, state = self.cfg, self.state
        val, val_loss = _validate(self.model, self.val_b, self.val_in, self.val_src, self.dist)
        val_summary = val.to_json()  # plain values: the row goes to metrics.jsonl, the best to resume.pt
        state["epoch"] = epoch + 1
        state["elapsed_s"] = time.perf_counter() - self.t_start
        state["progress"] = self.progress()
        row = {"epoch": epoch + 1, "stage": stage, "train_loss": sums["loss"] / max(seen, 1),
               **{f"train_{k}_loss": v / max(seen, 1) for k, v in sums.items() if k != "loss"},
               "val_loss": val_loss, "val": val_summary, "lr": state["lr"], "progress": round(state["progress"], 4),
               "seconds": round(time.perf_counter() - t_epoch, 3), "elapsed_s": round(state["elapsed_s"], 3),
               "samples": seen}
        median, score = val.median_m, selection_score(val, cfg.select_on)
        improved = stage == "joint" and is_better(score, state["best_score"])
        if improved:
            state["bad_epochs"] = 0
            self._keep_best(epoch + 1, score, val_summary)
        elif stage == "joint":
            state["bad_epochs"] += 1
        if cfg.schedule == "plateau" and stage == "joint":
            self._plateau(score)
        row["best"] = improved
        if self.dist.is_main:
            append_metrics(self.path, row)
            _save_resume(self.path, self.net, self.opt, self.gen, state)
        # the job's fraction: of the epochs or, with a time budget, of the schedule, whichever is further
        self.report(f"epoch {epoch + 1}/{cfg.epochs} val median {median:.2f} m",
                    max((epoch + 1) / cfg.epochs, state["progress"]), step=self.epochs_done(epoch + 1))

    def _plateau(self, score: float) -> None:
        """Halve the rate after ``plateau_patience`` epochs without a better validation score."""
        state = self.state
        if is_better(score, state["plateau_best"]):
            state["plateau_best"], state["plateau_bad"] = score, 0
        else:
            state["plateau_bad"] += 1
            if state["plateau_bad"] >= self.cfg.plateau_patience:
                state["plateau_scale"] *= 0.5
                state["plateau_bad"] = 0


def _train_source(model: NeuralModel, cfg: TrainConfig, train_in: Inputs | StreamedSplit, *, seed: int, dist: Dist
                  ) -> tuple[Batch | None, torch.Tensor | None, MapSource | None, ChunkShardSampler | None, int]:
    """The train split's batch, its rows with a true position and its map source (in memory), or the
    streaming sampler (streamed); and the steps per epoch."""
    if isinstance(train_in, StreamedSplit):
        sampler = ChunkShardSampler(train_in, num_replicas=dist.world, rank=dist.rank, seed=seed)
        return None, None, None, sampler, len(sampler.batches(cfg.batch_size))
    train_b = make_batch(train_in, model.spec)
    keep = torch.isfinite(train_b.truth).all(1)
    train_b = train_b.index(keep)
    return (train_b, torch.nonzero(keep).squeeze(1), model.map_source(train_in), None,
            math.ceil(len(train_b) / cfg.batch_size))


def cosine_rate(lr: float, *, step: int, warmup_steps: float, progress: float, warmup_end: float | None
                ) -> tuple[float, float | None]:
    """The cosine schedule's rate at ``step`` and ``progress`` (in [0, 1]), and where its warm-up ended.

    Linear warm-up over ``warmup_steps`` steps or :data:`WARMUP_MAX_FRACTION` of the progress, whichever
    ends first; then cosine decay over the rest of the progress, to :data:`LR_FLOOR_FRACTION` of ``lr``
    at progress 1.

    Parameters
    ----------
    warmup_end : float or None
        The progress at which the warm-up ended (None: not yet); pass back what the last call returned.

    Returns
    -------
    rate : float
    warmup_end : float or None
    """
    if warmup_end is None:
        ramp = 1.0 if warmup_steps <= 0 else max((step + 1) / warmup_steps, progress / WARMUP_MAX_FRACTION)
        if ramp < 1.0:
            return lr * ramp, None
        warmup_end = progress
    t = min(max((progress - warmup_end) / (1.0 - warmup_end), 0.0), 1.0) if warmup_end < 1.0 else 1.0
    return lr * (LR_FLOOR_FRACTION + (1 - LR_FLOOR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t))), warmup_end


def _upgrade_state(state: dict[str, Any], saved: dict[str, Any], cfg: TrainConfig, *, steps_per_epoch: int) -> None:
    """Fill ``state`` from a ``resume.pt`` state; one written before the schedule kept its progress
    gets the step fraction and the warm-up end of the step-based schedule it ran."""
    state.update(saved)
    if "best_median" in saved:  # written before ``select_on``: the median was the score
        state["best_score"] = state.pop("best_median")
    if "progress" in saved:
        return
    total = cfg.epochs * steps_per_epoch
    state["progress"] = min(state["step"] / total, 1.0)
    warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
    state["warmup_end"] = min(warmup_steps / total, 1.0) if state["step"] >= warmup_steps else None


def selection_score(summary: ErrorSummary, select_on: str) -> float:
    """The validation figure ``select_on`` (:data:`SELECT_ON`) of ``summary``; lower is better; NaN when the
    summary has no finite error.

    ``"over_10m"`` is one minus the share within 10 m (``success_rates["10m"]``).
    """
    if select_on not in SELECT_ON:
        msg = f"select_on: expected one of {', '.join(SELECT_ON)}, got {select_on!r}"
        raise InvalidInputError(msg)
    value = {"median": summary.median_m, "mean": summary.mean_m, "p95": summary.p95_m,
             "over_10m": None if "10m" not in summary.success_rates else 1.0 - summary.success_rates["10m"]}[select_on]
    return math.nan if value is None else float(value)


def is_better(score: float, best: float) -> bool:
    """Whether validation ``score`` beats ``best`` (lower is better) by more than a relative 1e-4 (ties keep the
    earlier epoch); a NaN score never does."""
    return math.isfinite(score) and score < best * (1 - 1e-4)


def choose_epoch(scores: list[float]) -> int:
    """The epoch (index into ``scores``, in the order validated) that the loop keeps: the first whose score none
    after it beats (:func:`is_better`); -1 when no score is finite."""
    best, kept = math.inf, -1
    for k, score in enumerate(scores):
        if is_better(score, best):
            best, kept = score, k
    return kept


def _validate(model: NeuralModel, val_b: Batch, val_in: Inputs, source: MapSource | None, dist: Dist | None = None
              ) -> tuple[ErrorSummary, float]:
    """Validation error summary and mean loss, from one forward pass over the samples with truth.

    In DDP each rank validates its share of those samples; the errors and loss sums of every share
    are joined, so every rank gets the figures of the whole split.
    """
    dist = dist or Dist()
    net = model.net
    net.eval()
    ok = np.isfinite(val_in.truth_m).all(1)
    rows = np.flatnonzero(ok)
    if dist.on:
        rows = rows[dist.share(torch.arange(len(rows))).numpy()]
    labeled = val_b.index(torch.from_numpy(rows))
    loss_sum, mus = 0.0, []
    with torch.no_grad():
        for part, out in model.chunks(labeled, source, rows):
            loss_sum += float(net.loss(part, out)[0]) * len(part)
            mus.append(out["mu"].float().cpu().numpy())
    mu = np.concatenate(mus).astype(np.float64) if mus else np.zeros((0, 2))
    err = dist.concat(np.hypot(*(labeled.to_metres(mu, model.spec) - val_in.truth_m[rows]).T))
    loss_sum, count = dist.sum([loss_sum, len(labeled)])
    return error_summary(err), loss_sum / max(count, 1)


def _save_resume(path: Path, net: LocNet, opt: torch.optim.Optimizer, gen: torch.Generator,
                 state: dict[str, Any]) -> None:
    write_torch(path / "resume.pt", {"format": RESUME_FORMAT, "net": net.state_dict(), "optimizer": opt.state_dict(),
                                     "generator": gen.get_state(), "state": dict(state)})


def load_resume(path: Path) -> dict[str, Any] | None:
    """The ``resume.pt`` payload of a run folder (``weights_only=True``), or None if absent."""
    file = path / "resume.pt"
    if not file.is_file():
        return None
    return read_torch(file, run_id=path.name, expected_format=RESUME_FORMAT)

