"""Runs: every trained model (baseline or network) lives in ``workspace/runs/<run_id>/``.

Files of a run::

    config.json     model name and configuration, dataset name and digest, seed, kind, owner
    status.json     state (running / done / failed / cancelled), why it stopped (``stop``: all
                    epochs done, early stop, time budget, cancelled, failed; baselines: fitted),
                    error, best validation figures
    metrics.jsonl   one JSON line per epoch (baselines: one line for the fit)
    model.pt        {"format", "model", "config", "state"} saved with torch.save and read
                    with torch.load(weights_only=True): tensors and plain values only

Files are written through a temporary name and a rename, so a run never holds a
half-written checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rflocal_core import audit, settings
from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import CheckpointError, RFLocalInputError, RunNotFoundError
from rflocal_core.workspace import atomic_path, atomic_write_text, subdir, validate_name

CHECKPOINT_FORMAT = "rflocal-run/1"
#: The tag (``config.json`` ``tags``) of the runs an ablation study trains (left out of run lists by default).
ABLATION_TAG = "ablation"
#: The tag of the candidates a model selection (``train --model auto``) trains and does not choose
#: (left out of run lists by default, like ablation runs).
AUTO_CANDIDATE_TAG = "auto-candidate"

#: Runs being trained by this process (a run "running" on disk but not here was
#: interrupted, or is trained by another process).
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def active(run_id: str) -> Iterator[None]:
    """Mark ``run_id`` as being trained by this process for the duration of the block."""
    with _ACTIVE_LOCK:
        if run_id in _ACTIVE:
            msg = f"run {run_id!r}: is already being trained in this process"
            raise RFLocalInputError(msg)
        _ACTIVE.add(run_id)
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(run_id)


def is_active(run_id: str) -> bool:
    with _ACTIVE_LOCK:
        return run_id in _ACTIVE


def runs_dir() -> Path:
    """Return ``<workspace>/runs``."""
    return subdir("runs")


def new_run_id(model: str, dataset: str) -> str:
    """A readable unique id: ``<model>-<dataset>-<UTC time>-<4 hex>``, at most 64 characters.

    A long model or dataset name is cut, never the time and the hex: they keep ids unique.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    tail = f"-{stamp}-{uuid.uuid4().hex[:4]}"
    head = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{model}-{dataset}")[:64 - len(tail)]
    return head + tail


def run_dir(run_id: str) -> Path:
    """The folder of an existing run, or raise :class:`RunNotFoundError`."""
    validate_name(run_id, field="run")
    path = runs_dir() / run_id
    if not (path / "config.json").is_file():
        msg = f"run: no run {run_id!r} in {runs_dir()}; see 'python -m rflocal_core runs list'"
        raise RunNotFoundError(msg)
    return path


def config_section(run_id: str, key: str) -> dict[str, Any] | None:
    """The object ``key`` of a run's ``config.json`` (what a run records beside its options: ``auto``'s table, a
    network's ``search``), else None (no such run, no such object, or a config that does not read)."""
    try:
        config = json.loads((run_dir(run_id) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, RunNotFoundError):
        return None
    section = config.get(key) if isinstance(config, dict) else None
    return section if isinstance(section, dict) else None


def create_run(run_id: str, config: dict[str, Any]) -> Path:
    """Create the folder of a new run with its ``config.json`` and a running status."""
    path = runs_dir() / validate_name(run_id, field="run")
    path.mkdir(parents=False, exist_ok=False)
    atomic_write_text(path / "config.json", json.dumps(config, indent=2))
    write_status(path, state="running")
    return path


#: Why a run stopped (:class:`StopReason`).
STOP_KINDS = ("epochs", "early_stop", "time_budget", "cancelled", "failed", "fitted")
#: The engine's older ``stop_reason`` words (kept in ``best.stop_reason`` of earlier runs).
_LEGACY_STOP = {"epochs": "epochs", "early stopping": "early_stop", "time limit": "time_budget"}


@dataclasses.dataclass(frozen=True)
class StopReason:
    """Why a run stopped.

    Attributes
    ----------
    kind : str
        One of :data:`STOP_KINDS`.
    epoch : int, optional
        The epoch it stopped at: the last one run (all done, early stop, time budget: that
        epoch was cut short, validated and kept), or the one under way (cancelled, failed:
        a resume continues it).
    epochs : int, optional
        The run's maximum number of epochs.
    patience : int, optional
        Early stop: the epochs without a better validation median that stopped it.
    """

    kind: str
    epoch: int | None = None
    epochs: int | None = None
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in STOP_KINDS:
            msg = f"stop: expected one of {', '.join(STOP_KINDS)}, got {self.kind!r}"
            raise ValueError(msg)

    @property
    def text(self) -> str:
        """For people: "time budget reached at epoch 23/60", "early stop at epoch 41 (patience 15)"."""
        of = "" if self.epochs is None else f"/{self.epochs}"
        at = "" if self.epoch is None else f" at epoch {self.epoch}{of}"
        if self.kind == "epochs":
            return f"all epochs done ({self.epoch}/{self.epochs})"
        if self.kind == "early_stop":
            patience = "" if self.patience is None else f" (patience {self.patience})"
            return f"early stop at epoch {self.epoch}{patience}"
        if self.kind == "time_budget":
            return f"time budget reached{at}"
        return {"cancelled": f"cancelled{at}", "failed": f"failed{at}"}.get(self.kind, "fitted")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "epoch": self.epoch, "epochs": self.epochs, "patience": self.patience,
                "text": self.text}

    @classmethod
    def from_status(cls, status: dict[str, Any], config: dict[str, Any]) -> StopReason | None:
        """The reason in a ``status.json`` (runs written before it was kept: from their figures)."""
        stop = status.get("stop")
        if isinstance(stop, dict) and stop.get("kind") in STOP_KINDS:
            return cls(stop["kind"], stop.get("epoch"), stop.get("epochs"), stop.get("patience"))
        state, best = status.get("state"), status.get("best") or {}
        if state == "done" and config.get("kind", "baseline") == "baseline":
            return cls("fitted")
        tc = config.get("train_config") or {}
        if state == "done" and best.get("stop_reason") in _LEGACY_STOP:
            kind = _LEGACY_STOP[best["stop_reason"]]
            return cls(kind, best.get("epochs_run"), tc.get("epochs"),
                       tc.get("patience") if kind == "early_stop" else None)
        if state in ("cancelled", "failed"):
            return cls(state)
        return None


def write_status(path: Path, *, state: str, error: str | None = None, best: dict[str, Any] | None = None,
                 stop: StopReason | None = None) -> None:
    """Write ``status.json`` (atomically); ``stop`` says why a finished run stopped."""
    status = {"state": state, "stop": None if stop is None else stop.to_dict(), "error": error, "best": best,
              "updated_utc": _now()}
    atomic_write_text(path / "status.json", json.dumps(status, indent=2))


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    """Append one line to ``metrics.jsonl`` (one line per epoch)."""
    with open(path / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_metrics(run_id: str) -> list[dict[str, Any]]:
    """All lines of a run's ``metrics.jsonl``."""
    path = run_dir(run_id) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_torch(file: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` through a temporary name and a rename: never a half-written file."""
    with atomic_path(file) as tmp:
        torch.save(payload, tmp)


def read_torch(file: Path, *, run_id: str, expected_format: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a run file, checked for its ``format``."""
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        # torch's own text suggests weights_only=False, which we never do: name the failure only.
        msg = f"run {run_id!r}: checkpoint {file.name} is corrupt or not a safe tensor checkpoint ({type(exc).__name__})"
        raise CheckpointError(msg) from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        msg = f"run {run_id!r}: {file.name} is not an RFLocal checkpoint (expected format {expected_format!r})"
        raise CheckpointError(msg)
    return payload


def save_checkpoint(path: Path, *, model: str, config: Any, state: dict[str, Any]) -> None:
    """Save a model's configuration and state as ``model.pt`` (tensors and plain values)."""
    write_torch(path / "model.pt",
                {"format": CHECKPOINT_FORMAT, "model": model, "config": _plain(config), "state": _to_torch(state)})


def load_checkpoint(run_id: str) -> dict[str, Any]:
    """Read a run's ``model.pt`` safely (``weights_only=True``); numpy arrays come back as numpy."""
    path = run_dir(run_id) / "model.pt"
    if not path.is_file():
        msg = f"run {run_id!r}: no checkpoint model.pt (the run did not finish a fit)"
        raise CheckpointError(msg)
    payload = read_torch(path, run_id=run_id, expected_format=CHECKPOINT_FORMAT)
    payload["state"] = _to_numpy(payload["state"])
    return payload


def list_runs(*, include_ablation: bool = True) -> list[dict[str, Any]]:
    """One row per run: id, model, dataset, state, why it stopped (``stopped``), best validation
    figures, created time, ``tags``, ``ablation`` (trained by an ablation study), ``candidate`` (a
    candidate of a model selection, :data:`AUTO_CANDIDATE_TAG`) and ``owner`` (who started it; None for
    runs from before owners were kept).

    Parameters
    ----------
    include_ablation : bool
        False: leave out the runs of ablation studies (tagged :data:`ABLATION_TAG` when trained,
        or, for older ones, named in a study's ``results.json``) and the candidates of model
        selections, as run pickers do by default.
    """
    rows = []
    studies = _ablation_run_ids()
    for path in sorted(runs_dir().iterdir()):
        if not (path / "config.json").is_file():
            continue
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            status = json.loads((path / "status.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            rows.append({"run_id": path.name, "state": "unreadable", "tags": [], "ablation": False, "candidate": False})
            continue
        best = status.get("best") or {}
        stop = StopReason.from_status(status, config)
        tags = [str(t) for t in config.get("tags") or ()]
        rows.append({
            "run_id": path.name, "model": config.get("model"), "kind": config.get("kind", "baseline"),
            "dataset": config.get("dataset"), "state": status.get("state"), "active": is_active(path.name),
            "stopped": None if stop is None else stop.text, "error": status.get("error"),
            "median_m": best.get("median_m"), "p95_m": best.get("p95_m"),
            "mean_m": best.get("mean_m"), "epoch": best.get("epoch"), "seconds": best.get("seconds"),
            "resumable": config.get("kind") == "network" and status.get("state") != "done"
            and (path / "resume.pt").is_file(),
            "created_utc": config.get("created_utc"), "tags": tags, "owner": config.get("owner"),
            "ablation": ABLATION_TAG in tags or path.name in studies, "candidate": AUTO_CANDIDATE_TAG in tags,
        })
    return rows if include_ablation else [r for r in rows if not (r["ablation"] or r["candidate"])]


def _ablation_run_ids() -> set[str]:
    """Runs named in the results of ablation studies (``workspace/ablations/*/results.json``): older
    ablation runs carry no tag."""
    out: set[str] = set()
    folder = settings.workspace_dir() / "ablations"
    for file in folder.glob("*/results.json") if folder.is_dir() else ():
        try:
            rows = json.loads(file.read_text(encoding="utf-8")).get("rows") or []
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        out.update(str(r["run_id"]) for r in rows if isinstance(r, dict) and r.get("run_id"))
    return out


def delete_run(run_id: str, *, user: User = LOCAL_USER, actor: str | None = None) -> None:
    """Delete a run folder (not while this process trains it: cancel first); ``user`` must be an editor;
    ``actor`` (who deleted it, default the user's name) goes to the audit log (:mod:`rflocal_core.audit`)
    with the run's model, dataset and owner."""
    require(user, "delete_run")
    actor = user.name if actor is None else actor
    path = run_dir(run_id)
    if is_active(run_id):
        msg = f"run {run_id!r}: is being trained; cancel it before deleting"
        raise RFLocalInputError(msg)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        config = {}
    shutil.rmtree(path)
    audit.record(actor, "delete", f"run:{run_id}", model=config.get("model"), dataset=config.get("dataset"),
                 owner=config.get("owner"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and numpy scalars to JSON-like python values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {str(k): _to_torch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_torch(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_numpy(v) for v in value]
    return value


def elapsed_since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
