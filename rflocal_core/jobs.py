"""Background jobs: long work in threads owned by a process-wide registry, with quotas.

A job belongs to the process, not to a UI session: switching pages or reloading the
browser does not stop it. The worker reports progress through its
:class:`JobContext` and checks for cancellation there; it never touches the UI.
Pages poll :meth:`Job.snapshot` (e.g. from ``st.fragment(run_every=...)``); its ``eta`` is
the time-left estimate of :mod:`rflocal_core.progress` (None until it is known).

Quotas (issue 20): at most :func:`~rflocal_core.settings.max_running_jobs` jobs run at once and at
most :func:`~rflocal_core.settings.max_jobs_per_owner` of one owner; further jobs wait in a queue
(state ``queued``, first come first served, a job whose owner is at the limit letting later jobs
of others pass) and start when a slot frees; once :func:`~rflocal_core.settings.max_queued_jobs`
wait, further starts are refused (:class:`~rflocal_core.errors.JobLimitError`). Every start,
refusal and cancel is written to the audit log (:mod:`rflocal_core.audit`).
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rflocal_core import audit, settings
from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import JobLimitError, RFLocalInputError
from rflocal_core.progress import Eta, EtaEstimator, JobCancelled, Step

__all__ = ["REGISTRY", "STATES", "Job", "JobCancelled", "JobContext", "JobRegistry", "ordinal", "queue_text"]

STATES = ("queued", "running", "done", "failed", "cancelled")


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _jobs(n: int) -> str:
    return "1 job" if n == 1 else f"{n} jobs"


def queue_text(position: int) -> str:
    """What a queued job's panel says: "queued, next in line", "queued, 2nd in line"."""
    return "queued, next in line" if position == 1 else f"queued, {ordinal(position)} in line"


@dataclass
class Job:
    """One unit of background work and its observable state."""

    id: str
    kind: str
    label: str
    owner: str = "local"
    state: str = "queued"
    stage: str = "queued"
    fraction: float = 0.0
    submitted_s: float = field(default_factory=time.time)
    started_s: float | None = None
    finished_s: float | None = None
    result: Any = None
    error: str | None = None
    log: list[str] = field(default_factory=list)
    _estimator: EtaEstimator = field(default_factory=EtaEstimator, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _registry: JobRegistry | None = field(default=None, repr=False)

    def cancel(self, *, user: User = LOCAL_USER, actor: str | None = None) -> None:
        """Ask the worker to stop at its next check; a queued job is cancelled at once (it never starts).

        ``user`` must be an editor; ``actor`` (who cancelled, default the user's name) goes to the audit
        log; cancelling a finished job does nothing.
        """
        require(user, "cancel")
        actor = user.name if actor is None else actor
        with self._lock:
            if self.finished or self._cancel.is_set():
                return
            self._cancel.set()
            was = self.state
            if was == "queued":
                self.state, self.stage, self.finished_s = "cancelled", "cancelled", time.time()
        if was == "queued":
            self._ended.set()
        audit.record(actor, "cancel", f"job:{self.id}", kind=self.kind, label=self.label, owner=self.owner, state=was)

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

    def position(self) -> int | None:
        """1 for the next job to start, 2 for the one after it, ...; None unless queued."""
        return None if self._registry is None else self._registry.position(self)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the observable state.

        ``eta`` is an :class:`~rflocal_core.progress.Eta` or None, ``eta_text`` its text
        (e.g. "about 20–30 s left") or "", ``eta_s`` its upper end or None. A queued job has its
        ``position`` in the queue (1: next to start; None otherwise) and a ``stage`` that says so
        ("queued, 2nd in line").
        """
        position = self.position()  # before the job's lock: the registry's lock is always taken first
        with self._lock:
            elapsed = None
            if self.started_s is not None:
                elapsed = (self.finished_s or time.time()) - self.started_s
            eta = self.eta()
            queued = self.state == "queued" and position is not None
            return {
                "id": self.id, "kind": self.kind, "label": self.label, "owner": self.owner, "state": self.state,
                "stage": queue_text(position) if queued else self.stage, "position": position if queued else None,
                "fraction": self.fraction, "elapsed_s": elapsed, "eta": eta,
                "eta_s": None if eta is None else eta.high_s, "eta_text": "" if eta is None else eta.text,
                "error": self.error, "result": self.result, "log": list(self.log[-20:]),
            }

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the job finishes (queued, then run); True if it did within ``timeout_s``."""
        self._ended.wait(timeout_s)
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
    """All jobs of this process, and the queue of those waiting for a slot.

    Parameters
    ----------
    max_running, max_per_owner, max_queued : int, optional
        The quotas; each one not given is read from :mod:`rflocal_core.settings` (and so from its
        environment variable) at every start.
    """

    def __init__(self, *, max_running: int | None = None, max_per_owner: int | None = None,
                 max_queued: int | None = None) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._limits = (max_running, max_per_owner, max_queued)
        self._last_limits = (1, 1, 0)  # the limits of the last start, for when a setting turns unreadable

    def limits(self) -> tuple[int, int, int]:
        """``(max_running, max_per_owner, max_queued)`` in force now."""
        running, per_owner, queued = self._limits
        running = settings.max_running_jobs() if running is None else running
        # one owner may use every slot unless told otherwise
        per_owner = settings.max_jobs_per_owner(running) if per_owner is None else per_owner
        self._last_limits = (running, per_owner, settings.max_queued_jobs() if queued is None else queued)
        return self._last_limits

    def submit(self, kind: str, label: str, fn: Callable[[JobContext], Any], *, owner: str = "local") -> Job:
        """Run ``fn(ctx)`` in a daemon thread now, or queue it until a slot frees; return its job.

        ``owner`` (who started it) counts against the per-owner quota and goes to the audit log.

        Raises
        ------
        JobLimitError
            The job cannot run now and :func:`~rflocal_core.settings.max_queued_jobs` jobs already wait.
        InvalidInputError
            A quota's environment variable is not a whole number in range.
        """
        job = Job(id=f"{kind}-{uuid.uuid4().hex[:8]}", kind=kind, label=label, owner=owner, _registry=self)
        job._thread = threading.Thread(target=self._run, args=(job, fn), name=job.id, daemon=True)
        limits = self.limits()
        with self._lock:
            self._jobs[job.id] = job
            start = self._startable(limits)
            waiting = [j for j in self._jobs.values() if j.state == "queued" and j not in start]
            refused = job in waiting and len(waiting) > limits[2]
            if refused:
                del self._jobs[job.id]
            else:
                start = self._mark_running(start)
        if refused:
            audit.record(owner, "refuse", f"job:{job.id}", kind=kind, label=label, waiting=len(waiting) - 1)
            raise JobLimitError(self._refusal(job, limits))
        try:
            audit.record(owner, "start", f"job:{job.id}", kind=kind, label=label, state=job.state,
                         position=job.position())
        finally:  # marked running: its thread must start even if the log cannot be written
            for started in start:
                started._thread.start()
        return job

    def _refusal(self, job: Job, limits: tuple[int, int, int]) -> str:
        running, per_owner, queued = limits
        active = [j for j in self.list() if j.state == "running"]
        mine = sum(1 for j in active if j.owner == job.owner)
        why = (f"{_jobs(len(active))} running, the limit ({settings.MAX_JOBS_ENV}={running})" if len(active) >= running
               else f"{job.owner} already runs {_jobs(mine)}, the limit per user "
                    f"({settings.MAX_JOBS_PER_OWNER_ENV}={per_owner})")
        return (f"job {job.label!r}: not started: {why}, and {_jobs(queued)} already waiting, the queue limit "
                f"({settings.MAX_QUEUED_JOBS_ENV}={queued}); start it again when a job has finished")

    def _startable(self, limits: tuple[int, int, int]) -> list[Job]:
        """The queued jobs that may start now, oldest first (call with the registry's lock held)."""
        max_running, max_per_owner, _ = limits
        running = [j for j in self._jobs.values() if j.state == "running"]
        per_owner = Counter(j.owner for j in running)
        free = max_running - len(running)
        start = []
        for job in self._jobs.values():  # insertion order: first come, first served
            if free <= 0:
                break
            if job.state == "queued" and per_owner[job.owner] < max_per_owner:
                start.append(job)
                per_owner[job.owner] += 1
                free -= 1
        return start

    @staticmethod
    def _mark_running(jobs: list[Job]) -> list[Job]:
        """Mark ``jobs`` running, but those cancelled meanwhile; return the ones marked."""
        marked = []
        for job in jobs:
            with job._lock:
                if job.state == "queued":
                    job.state, job.stage, job.started_s = "running", "starting", time.time()
                    marked.append(job)
        return marked

    def _dispatch(self) -> None:
        """Start the queued jobs that fit now (after a job ended)."""
        try:
            limits = self.limits()
        except RFLocalInputError:  # a quota variable edited into nonsense: the waiting jobs still start
            limits = self._last_limits
        with self._lock:
            start = self._mark_running(self._startable(limits))
        for job in start:
            job._thread.start()

    def _run(self, job: Job, fn: Callable[[JobContext], Any]) -> None:
        """The thread of a job: run it, record how it ended, then start what waited for its slot."""
        try:
            result = fn(JobContext(job))
        except JobCancelled:
            with job._lock:
                job.state, job.stage = "cancelled", "cancelled"
        except BaseException as exc:  # noqa: BLE001 - a worker must never die silently
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
            job._ended.set()
            self._dispatch()

    def position(self, job: Job) -> int | None:
        """1-based place of ``job`` among the queued jobs, or None if it is not queued."""
        with self._lock:
            waiting = [j for j in self._jobs.values() if j.state == "queued"]
        return waiting.index(job) + 1 if job in waiting else None

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

    def forget_finished(self) -> int:
        """Drop the finished jobs (done, failed or cancelled) from the registry; running and queued jobs stay.

        Returns the number dropped. The pages then no longer list them (their results are in the
        workspace: datasets, runs, the audit log)."""
        with self._lock:
            gone = [job_id for job_id, job in self._jobs.items() if job.finished]
            for job_id in gone:
                del self._jobs[job_id]
        return len(gone)

    def list(self, *, kind: str | None = None) -> list[Job]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [j for j in jobs if kind is None or j.kind == kind]


#: The process-wide registry (module state survives Streamlit reruns).
REGISTRY = JobRegistry()
