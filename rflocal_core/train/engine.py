"""The epoch loop for the networks: one function a reader can hold in their head.

AdamW; linear warm-up then cosine decay (or halving on a validation plateau); gradient
clipping; validation median error every epoch; the best model kept as ``model.pt``; early
stopping on the validation median; a wall-clock budget; CPU by default, CUDA with bfloat16
autocast when present. After every epoch ``resume.pt`` holds the optimizer, schedule and
random state, so a cancelled or interrupted run continues where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rflocal_core.errors import InvalidInputError
from rflocal_core.metrics import error_summary
from rflocal_core.models.inputs import Inputs
from rflocal_core.models.features import Batch, make_batch
from rflocal_core.models.maps import MapSource
from rflocal_core.models.neural import NeuralModel
from rflocal_core.models.nets import LocNet
from rflocal_core.progress import ProgressFn, Step, as_progress
from rflocal_core.train.runs import StopReason, append_metrics, read_torch, save_checkpoint, write_torch
from rflocal_core.validation import check_choice, check_int, check_number, dataclass_from_dict

RESUME_FORMAT = "rflocal-resume/1"


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
        ``"cosine"`` (warm-up, then cosine decay to 1% of ``lr``) or ``"plateau"``
        (warm-up, then halve the rate after ``plateau_patience`` epochs without a better
        validation median).
    warmup_epochs : float
        Linear warm-up length in epochs.
    grad_clip : float
        Maximum gradient norm (0 disables clipping).
    patience : int
        Stop after this many epochs without a better validation median (0: never stop early).
    max_minutes : float or None
        Wall-clock budget; the epoch that runs out is cut short, validated and kept.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    amp : bool
        bfloat16 autocast on CUDA (ignored on CPU).
    plateau_patience : int
    """

    epochs: int = 60
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_epochs: float = 2.0
    grad_clip: float = 1.0
    patience: int = 15
    max_minutes: float | None = None
    device: str = "auto"
    amp: bool = True
    plateau_patience: int = 4

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1, 100_000)
        check_int("batch_size", self.batch_size, 1, 65_536)
        check_number("lr", self.lr, 1e-7, 1.0)
        check_number("weight_decay", self.weight_decay, 0.0, 1.0)
        check_choice("schedule", self.schedule, ("cosine", "plateau"))
        check_number("warmup_epochs", self.warmup_epochs, 0.0, 1000.0)
        check_number("grad_clip", self.grad_clip, 0.0, 1e6)
        check_int("patience", self.patience, 0, 100_000)
        if self.max_minutes is not None:
            check_number("max_minutes", self.max_minutes, 0.01, 60 * 24 * 30, "min")
        check_choice("device", self.device, ("auto", "cpu", "cuda"))
        if not isinstance(self.amp, bool):
            msg = f"amp: expected true or false, got {self.amp!r}"
            raise InvalidInputError(msg)
        check_int("plateau_patience", self.plateau_patience, 1, 1000)
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


def fit_network(
    path: Path, model: NeuralModel, cfg: TrainConfig, train_in: Inputs, val_in: Inputs, *, seed: int,
    progress: ProgressFn, resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model.net`` and keep the best epoch in ``path/model.pt``.

    Parameters
    ----------
    path : Path
        The run folder (``metrics.jsonl``, ``model.pt``, ``resume.pt`` are written there).
    resume : dict, optional
        The payload of ``resume.pt`` to continue from.
    progress : callable(stage, fraction[, step])
        Called every few tenths of a second, with the epochs done as a
        :class:`~rflocal_core.progress.Step` (and the time budget left) when it takes ``step``;
        raises :class:`~rflocal_core.progress.JobCancelled` to stop (the best checkpoint and
        ``resume.pt`` stay valid).

    Returns
    -------
    dict
        ``best_epoch``, ``epochs_run``, ``stop`` (:class:`~rflocal_core.train.runs.StopReason`),
        ``stop_reason`` (``"epochs"``, ``"early stopping"`` or ``"time limit"``), ``best``
        (validation summary of the best epoch), ``seconds``.
    """
    torch.manual_seed(seed)
    report = as_progress(progress)
    device = cfg.resolved_device()
    net: LocNet = model.net.to(device)
    spec = model.spec
    train_b = make_batch(train_in, spec)
    val_b = make_batch(val_in, spec)
    keep = torch.isfinite(train_b.truth).all(1)
    train_b = train_b.index(keep)
    train_rows = torch.nonzero(keep).squeeze(1)  # rows of train_in (the map source's samples)
    train_src, val_src = model.map_source(train_in), model.map_source(val_in)
    if len(train_b) == 0 or not torch.isfinite(val_b.truth).all(1).any():
        msg = "dataset: train and val splits must both hold samples with a true position"
        raise InvalidInputError(msg)

    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(train_b) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
    aux_epochs = int(getattr(net.config, "aux_epochs", 0))
    amp = cfg.amp and device.type == "cuda"
    state = {"epoch": 0, "step": 0, "best_median": math.inf, "best_epoch": -1, "best": None, "bad_epochs": 0,
             "plateau_scale": 1.0, "plateau_bad": 0, "plateau_best": math.inf, "elapsed_s": 0.0}
    if resume is not None:
        net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in resume["net"].items()})
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(torch.as_tensor(np.asarray(resume["generator"]), dtype=torch.uint8))
        state.update(resume["state"])

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return cfg.lr * (step + 1) / warmup_steps
        if cfg.schedule == "cosine":
            t = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
            return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))
        return cfg.lr * state["plateau_scale"]

    t_start = time.perf_counter() - state["elapsed_s"]
    deadline = None if cfg.max_minutes is None else t_start + 60 * cfg.max_minutes
    last_report = 0.0
    stop_reason = "epochs"
    start_epoch = int(state["epoch"])

    def epochs_done(done: float) -> Step:  # training is the last stage: its time left is the job's
        limit = None if deadline is None else deadline - time.perf_counter()
        return Step("epochs", done, cfg.epochs, limit_s=limit, last=True)

    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.perf_counter()
        stage = "aux" if epoch < aux_epochs else "joint"
        net.train()
        order = torch.randperm(len(train_b), generator=gen)
        sums: dict[str, float] = {}
        seen = 0
        out_of_time = False
        for b in range(steps_per_epoch):
            rows = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            base = train_b.index(rows)
            inp = base if train_src is None else train_src.batch(base, train_rows[rows])
            batch = net.augment(inp, epoch_fraction=epoch / cfg.epochs, extent_m=spec.extent_m, generator=gen)
            batch = (batch.compact() if train_src is None else batch).to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(state["step"])
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = net(batch)
                loss, parts = net.loss(batch, out, stage=stage)
            if not torch.isfinite(loss):
                msg = f"training diverged at epoch {epoch + 1}, step {b + 1}: loss is {float(loss)}; lower lr (now {cfg.lr})"
                raise FloatingPointError(msg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            state["step"] += 1
            n = len(rows)
            seen += n
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * n
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * n
            now = time.perf_counter()
            if now - last_report > 0.25 or b == 0:  # every epoch says it started, however short
                last_report = now
                done = epoch + (b + 1) / steps_per_epoch
                report(f"epoch {epoch + 1}/{cfg.epochs}", done / cfg.epochs, step=epochs_done(done))
            if deadline is not None and now > deadline:
                out_of_time = True
                break

        val_summary, val_loss = _validate(model, val_b, val_in, val_src)
        state["epoch"] = epoch + 1
        state["elapsed_s"] = time.perf_counter() - t_start
        row = {"epoch": epoch + 1, "stage": stage, "train_loss": sums["loss"] / max(seen, 1),
               **{f"train_{k}_loss": v / max(seen, 1) for k, v in sums.items() if k != "loss"},
               "val_loss": val_loss, "val": val_summary, "lr": lr_at(max(state["step"] - 1, 0)),
               "seconds": round(time.perf_counter() - t_epoch, 3), "elapsed_s": round(state["elapsed_s"], 3),
               "samples": seen}
        median = val_summary["median_m"]
        improved = stage == "joint" and math.isfinite(median) and median < state["best_median"] * (1 - 1e-4)
        if improved:
            state.update(best_median=median, best_epoch=epoch + 1, best=val_summary, bad_epochs=0)
            save_checkpoint(path, model=model.name, config=model.checkpoint_config(), state=net.state_dict())
        elif stage == "joint":
            state["bad_epochs"] += 1
        if cfg.schedule == "plateau" and stage == "joint":
            if median < state["plateau_best"] * (1 - 1e-4):
                state["plateau_best"], state["plateau_bad"] = median, 0
            else:
                state["plateau_bad"] += 1
                if state["plateau_bad"] >= cfg.plateau_patience:
                    state["plateau_scale"] *= 0.5
                    state["plateau_bad"] = 0
        row["best"] = improved
        append_metrics(path, row)
        _save_resume(path, net, opt, gen, state)
        report(f"epoch {epoch + 1}/{cfg.epochs} val median {median:.2f} m", (epoch + 1) / cfg.epochs,
               step=epochs_done(epoch + 1))
        if out_of_time:
            stop_reason = "time limit"
            break
        if cfg.patience and state["bad_epochs"] >= cfg.patience:
            stop_reason = "early stopping"
            break
    if state["best"] is None:
        msg = "no epoch of joint training finished (all epochs were auxiliary?); raise epochs above aux_epochs"
        raise InvalidInputError(msg)
    kind = {"epochs": "epochs", "time limit": "time_budget", "early stopping": "early_stop"}[stop_reason]
    stop = StopReason(kind, int(state["epoch"]), cfg.epochs, cfg.patience if kind == "early_stop" else None)
    return {"best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "stop_reason": stop_reason,
            "stop": stop, "best": state["best"], "seconds": round(state["elapsed_s"], 3)}


def _validate(model: NeuralModel, val_b: Batch, val_in: Inputs, source: MapSource | None
              ) -> tuple[dict[str, Any], float]:
    """Validation error summary and mean loss, from one forward pass over the samples with truth."""
    net = model.net
    net.eval()
    ok = np.isfinite(val_in.truth_m).all(1)
    labeled = val_b.index(torch.from_numpy(ok))
    loss_sum, mus = 0.0, []
    with torch.no_grad():
        for part, out in model.chunks(labeled, source, np.flatnonzero(ok)):
            loss_sum += float(net.loss(part, out)[0]) * len(part)
            mus.append(out["mu"].float().cpu().numpy())
    mu = np.concatenate(mus).astype(np.float64) if mus else np.zeros((0, 2))
    err = np.hypot(*(model.spec.to_metres(mu) - val_in.truth_m[ok]).T)
    return error_summary(err), loss_sum / max(len(labeled), 1)


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

