"""Background jobs: long work in threads owned by a process-wide registry.

A job belongs to the process, not to a UI session: switching pages or reloading the
browser does not stop it. The worker reports progress through its
:class:`JobContext` and checks for cancellation there; it never touches the UI.
Pages poll :meth:`Job.snapshot` (e.g. from ``st.fragment(run_every=...)``); its ``eta`` is
the time-left estimate of :mod:`rflocal_core.progress` (None until it is known).
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.progress import Eta, EtaEstimator, JobCancelled, Step

__all__ = ["REGISTRY", "STATES", "Job", "JobCancelled", "JobContext", "JobRegistry"]

STATES = ("queued", "running", "done", "failed", "cancelled")


@dataclass
class Job:
    """One unit of background work and its observable state."""

    id: str
    kind: str
    label: str
    state: str = "queued"
    stage: str = "queued"
    fraction: float = 0.0
    started_s: float | None = None
    finished_s: float | None = None
    result: Any = None
    error: str | None = None
    log: list[str] = field(default_factory=list)
    _estimator: EtaEstimator = field(default_factory=EtaEstimator, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cancel(self, *, user: User = LOCAL_USER) -> None:
        """Ask the worker to stop at its next check (``user`` must be an editor)."""
        require(user, "cancel")
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def eta(self) -> Eta | None:
        """Time left (see :class:`~rflocal_core.progress.EtaEstimator`); None until it is known."""
        if self.state != "running":
            return None
        return self._estimator.estimate(time.monotonic())

    def eta_s(self) -> float | None:
        """The upper end of :meth:`eta` in seconds, or None."""
        eta = self.eta()
        return None if eta is None else eta.high_s

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the observable state.

        ``eta`` is an :class:`~rflocal_core.progress.Eta` or None, ``eta_text`` its text
        (e.g. "about 20–30 s left") or "", ``eta_s`` its upper end or None.
        """
        with self._lock:
            elapsed = None
            if self.started_s is not None:
                elapsed = (self.finished_s or time.time()) - self.started_s
            eta = self.eta()
            return {
                "id": self.id, "kind": self.kind, "label": self.label, "state": self.state, "stage": self.stage,
                "fraction": self.fraction, "elapsed_s": elapsed, "eta": eta,
                "eta_s": None if eta is None else eta.high_s, "eta_text": "" if eta is None else eta.text,
                "error": self.error, "result": self.result, "log": list(self.log[-20:]),
            }

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the job finishes; True if it did within ``timeout_s``."""
        if self._thread is None:
            return self.finished
        self._thread.join(timeout_s)
        return self.finished


class JobContext:
    """What a worker sees: progress reporting and cancellation checks."""

    def __init__(self, job: Job) -> None:
        self._job = job

    def progress(self, stage: str, fraction: float, *, step: Step | None = None) -> None:
        """Report the current stage, the overall fraction done and, optionally, the work done
        inside the stage (:class:`~rflocal_core.progress.Step`, for the time left); raise if cancelled."""
        job = self._job
        with job._lock:
            if stage != job.stage:
                job.log.append(f"{time.strftime('%H:%M:%S')} {stage}")
            job.stage = stage
            job.fraction = float(min(max(fraction, 0.0), 1.0))
            job._estimator.update(stage, step, time.monotonic())
        self.check_cancelled()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled."""
        if self._job.cancel_requested:
            raise JobCancelled(self._job.id)

    @property
    def cancelled(self) -> bool:
        return self._job.cancel_requested


class JobRegistry:
    """All jobs of this process."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, label: str, fn: Callable[[JobContext], Any]) -> Job:
        """Start ``fn(ctx)`` in a daemon thread and return its job."""
        job = Job(id=f"{kind}-{uuid.uuid4().hex[:8]}", kind=kind, label=label)
        ctx = JobContext(job)

        def run() -> None:
            job.started_s = time.time()
            job.state = "running"
            try:
                result = fn(ctx)
            except JobCancelled:
                with job._lock:
                    job.state, job.stage = "cancelled", "cancelled"
            except BaseException as exc:  # a worker must never die silently
                with job._lock:
                    job.state, job.stage = "failed", "failed"
                    job.error = f"{type(exc).__name__}: {exc}"
                    job.log.append(traceback.format_exc(limit=8))
            else:
                with job._lock:
                    job.result = result
                    job.state, job.stage, job.fraction = "done", "done", 1.0
            finally:
                job.finished_s = time.time()

        thread = threading.Thread(target=run, name=job.id, daemon=True)
        job._thread = thread
        with self._lock:
            self._jobs[job.id] = job
        thread.start()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            if job_id not in self._jobs:
                msg = f"job: no job {job_id!r}; known jobs: {', '.join(self._jobs) or 'none'}"
                raise KeyError(msg)
            return self._jobs[job_id]

    def ended(self) -> frozenset[str]:
        """Ids of the jobs that have finished (done, failed or cancelled): a page that saw a smaller
        set draws listings a job has changed since (datasets, runs) and redraws."""
        with self._lock:
            jobs = list(self._jobs.values())
        return frozenset(j.id for j in jobs if j.finished)

    def list(self, *, kind: str | None = None) -> list[Job]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [j for j in jobs if kind is None or j.kind == kind]


#: The process-wide registry (module state survives Streamlit reruns).
REGISTRY = JobRegistry()
