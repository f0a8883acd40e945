"""Where the independent units of a generation run: child processes here, or Ray tasks (issue 16).

``executor="local"`` keeps today's path (:func:`rflocal_core.raytrace.compute_radio_map` starts
child interpreters, exact paths run in this process). ``executor="ray"`` makes every unit a Ray
task: the radio map of one site, one batch of ``PathSolver`` receivers. Without an address
:func:`connect` starts a local Ray cluster (one code path for one machine and for many); with
``ray_address`` (or ``$RAY_ADDRESS``) it joins an existing one. The workspace must then be a
folder every node sees at the same path (a shared mount).

Tasks ask for ``num_cpus=1`` and, where the cluster has GPUs, ``num_gpus=1``: Ray then sets
``CUDA_VISIBLE_DEVICES`` before Mitsuba / Dr.Jit is imported in the worker (Dr.Jit has no public
way to choose a device afterwards). A failed task is retried :data:`TASK_RETRIES` times, then the
job fails with the task's own error; a progress callback that raises (a cancelled job) cancels
the tasks still pending (``ray.cancel``).

Ray is imported here only when a Ray path is taken (it costs about 0.3 s and many modules).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rflocal_core.errors import ClusterTaskError, ClusterUnavailableError, InvalidInputError, RFLocalInputError
from rflocal_core.options import check_options, option

#: The executors a generation can run on.
EXECUTORS = ("local", "ray")

#: Environment variable Ray itself reads for the address of the cluster to join.
RAY_ADDRESS_ENV = "RAY_ADDRESS"

#: Seconds to wait for the cluster's address to accept a connection before giving up on it (Ray's own
#: ``ray.init`` waits about two minutes on an address that does not answer).
CONNECT_TIMEOUT_S = 10.0

#: Retries of a failed task (an exception or a lost worker) before the job fails with its error.
TASK_RETRIES = 2

#: Seconds between two looks at the tasks still running (each look may report progress).
POLL_S = 0.5

_LOCK = threading.Lock()

#: The address this process joined through :func:`connect` (``"local"``: a cluster it started).
_JOINED: dict[str, str] = {}


@dataclass(frozen=True)
class ExecutorConfig:
    """Where a generation's units run; no part of the data (the same dataset on any executor).

    Parameters
    ----------
    executor : str
        ``"local"``: child processes on this machine (today's path); ``"ray"``: Ray tasks.
    ray_address : str or None
        ``HOST:PORT`` of a running Ray cluster's head (``ray start --head --port PORT``) to join;
        None joins ``$RAY_ADDRESS`` when set, else starts a local Ray cluster.
    ray_cpus : int or None
        CPUs of a local Ray cluster started here (None: all of this machine's); at most this many
        tasks run at once.
    """

    executor: str = option("local", choices=EXECUTORS, label="Executor",
                           help="where radio maps and path batches run: local child processes, or Ray tasks")
    ray_address: str | None = option(None, label="Ray address", none_means="$RAY_ADDRESS, else a local Ray cluster",
                                     help="HOST:PORT of the Ray cluster to join (with --executor ray)")
    ray_cpus: int | None = option(None, lo=1, hi=100_000, label="Local Ray CPUs", none_means="all of this machine's",
                                  help="CPUs of a local Ray cluster (with --executor ray and no address)")

    def __post_init__(self) -> None:
        check_options(self)
        if self.executor != "ray" and (self.ray_address or self.ray_cpus):
            field = "ray_address" if self.ray_address else "ray_cpus"
            msg = f"{field}: applies with executor 'ray', got {getattr(self, field)!r} with executor {self.executor!r}"
            raise InvalidInputError(msg)

    @property
    def uses_ray(self) -> bool:
        return self.executor == "ray"

    def address(self) -> str | None:
        """The address to join: ``ray_address``, else ``$RAY_ADDRESS``; None starts a local cluster."""
        return self.ray_address or os.environ.get(RAY_ADDRESS_ENV) or None


LOCAL = ExecutorConfig()


def _host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; refuses anything else, naming it."""
    bare = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        msg = f"ray_address: expected HOST:PORT (e.g. 10.0.0.5:6379), got {address!r}"
        raise InvalidInputError(msg)
    return host.strip("[]"), int(port)


def probe(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an address where nothing accepts a connection within ``timeout_s``.

    Raises
    ------
    ClusterUnavailableError
        Naming the address, the reason and how to start a cluster there.
    """
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError) else str(exc)
        msg = (f"ray_address: no Ray cluster answers at {address!r} ({reason}); start one there with "
               f"'ray start --head --port {port}', or give the address of a running cluster's head")
        raise ClusterUnavailableError(msg) from exc


def connect(config: ExecutorConfig) -> dict[str, float]:
    """Join (or start) the Ray cluster of ``config`` once per process; its resources (``CPU``, ``GPU``, ...).

    A process already connected keeps its cluster (:func:`shutdown` to change it); asking it for
    another address is refused, naming both.
    """
    import ray

    address = config.address()
    with _LOCK:
        joined = _JOINED.get("address")
        if ray.is_initialized() and joined is not None and joined != (address or "local"):
            msg = (f"ray_address: this process already runs its tasks on {joined!r}, got {address or 'local'!r}; "
                   "restart the workbench to join another cluster")
            raise InvalidInputError(msg)
        if not ray.is_initialized():
            if address is not None:
                probe(address)
                _join(address)
            else:
                ray.init(address="local", num_cpus=config.ray_cpus or os.cpu_count() or 1, include_dashboard=False,
                         log_to_driver=False)
            _JOINED["address"] = address or "local"
        return dict(ray.cluster_resources())


def _join(address: str) -> None:
    """``ray.init`` on an address that answered the probe; what answers may still not be a Ray head."""
    import ray

    try:
        ray.init(address=address, runtime_env=_runtime_env(), log_to_driver=False)
    except ConnectionError as exc:  # e.g. another service on that port
        msg = (f"ray_address: {address!r} answers, but not as a Ray cluster's head ({exc}); give the address "
               "printed by 'ray start --head' (host:port of its GCS, port 6379 by default)")
        raise ClusterUnavailableError(msg) from exc


def _runtime_env() -> dict[str, Any]:
    """What a worker of a joined cluster needs: this package (nodes need not have it installed)."""
    package = Path(__file__).resolve().parent
    return {"py_modules": [str(package)], "excludes": ["__pycache__"]}


def shutdown() -> None:
    """Leave (and stop, when started here) the Ray cluster of this process; nothing when none."""
    import ray

    with _LOCK:
        if ray.is_initialized():
            ray.shutdown()
        _JOINED.clear()


def _task_options(resources: dict[str, float]) -> dict[str, Any]:
    """One CPU per task, one GPU where the cluster has any; retried on errors and lost workers."""
    gpus = 1 if resources.get("GPU", 0.0) >= 1.0 else 0
    return {"num_cpus": 1, "num_gpus": gpus, "max_retries": TASK_RETRIES, "retry_exceptions": True}


def run_tasks(
    fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, config: ExecutorConfig, names: Sequence[str],
    on_done: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Run ``fn(*args)`` for every ``args`` of ``calls`` as Ray tasks; the results in the order of ``calls``.

    Parameters
    ----------
    fn : callable
        A module-level function (workers import it by name).
    names : sequence of str
        What each call computes (``"radio map of site 3 of scene city"``), for error messages.
    on_done : callable, optional
        ``on_done(index, result)`` in this process as each task finishes (progress, storing the
        result); if it raises, the tasks still pending are cancelled and the error propagates.

    Raises
    ------
    ClusterTaskError
        A task failed on every try; the message names it and quotes its error. A task that raised an
        input error (:class:`~rflocal_core.errors.RFLocalInputError`) re-raises that error itself.
    """
    import ray

    remote = ray.remote(fn).options(**_task_options(connect(config)))
    refs = [remote.remote(*args) for args in calls]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
            for ref in ready:
                i = index[ref]
                results[i] = _result(ref, names[i])
                if on_done is not None:
                    on_done(i, results[i])
    finally:
        for ref in pending:  # cancelled, or another task failed: stop the rest
            ray.cancel(ref, force=True)
    return results


def _result(ref: Any, name: str) -> Any:
    """The value of a finished task, or its error (the task's own input error, else ClusterTaskError)."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, RFLocalInputError):
            raise cause from None
        msg = f"{name} failed after {TASK_RETRIES + 1} tries: {type(cause).__name__}: {cause}"
        raise ClusterTaskError(msg) from cause
    except RayError as exc:  # a worker or node lost on every try
        msg = f"{name} failed after {TASK_RETRIES + 1} tries: {type(exc).__name__}: {exc}"
        raise ClusterTaskError(msg) from exc
