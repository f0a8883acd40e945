"""Training on several processes with PyTorch ``DistributedDataParallel`` (DDP).

A network run is trained by ``torchrun --nproc-per-node N -m rflocal_core train ...`` (or
``rflocal train --nproc N ...``, which starts torchrun's launcher itself): every process (rank)
loads the dataset, holds a replica of the network and computes the gradient of its share of each
global batch; DDP averages the gradients, so the optimizer steps are those of one process over the
whole batch (the global batch size stays ``batch_size``). Gloo on CPU, NCCL on CUDA.

What keeps the ranks in step (:class:`Dist`):

- the shuffled order comes from one generator seeded alike on every rank; each rank takes its
  contiguous share of each global batch (:meth:`Dist.share`, a ``DistributedSampler`` over the
  batch's rows), and augments it with its own generator seeded by (seed, rank, epoch);
- the learning rate, the time budget and a cancel come from rank 0 once per step
  (:meth:`Dist.step_flags`), so every rank stops after the same step;
- validation runs on each rank's share of the val split; the errors and loss sums are gathered, so
  every rank sees the same figures and takes the same best-epoch and early-stop decisions;
- input errors before training are agreed (:meth:`Dist.agree`): a dataset missing on one rank
  fails on every rank with the same message;
- rank 0 alone writes the run (``config.json``, checkpoints, ``metrics.jsonl``, ``resume.pt``,
  ``status.json``): the run is an ordinary one. Its folder must be where every rank sees it (one
  machine, or a shared mount).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as torch_dist

from rflocal_core.errors import InvalidInputError, RFLocalInputError
from rflocal_core.options import check_options, option

T = TypeVar("T")

#: How long a rank waits for the others at a collective before it fails (a rank that died is
#: noticed by torchrun, which stops the others, long before).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class LaunchConfig:
    """How many training processes ``rflocal train`` starts on this machine.

    Parameters
    ----------
    nproc : int
        Processes (ranks) of a DDP run started through torchrun's launcher; 1 trains in this
        process as before. Under ``torchrun`` the processes are already there: leave it at 1.
    """

    nproc: int = option(1, lo=1, hi=256, label="Processes (DDP)",
                        help="networks: train with N DistributedDataParallel processes on this machine (launches "
                             "torchrun; gloo on CPU, NCCL on CUDA)")

    def __post_init__(self) -> None:
        check_options(self)


def launched() -> bool:
    """Whether this process is a rank started by torchrun (``RANK`` and ``WORLD_SIZE`` are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0") or 0)


@dataclass(frozen=True)
class Dist:
    """This process's place in a DDP run; ``Dist()`` is a single process (every method a no-op).

    Attributes
    ----------
    rank, world, local_rank : int
    on : bool
        A process group is up (under torchrun, even with one process).
    device : torch.device
        Where collectives' tensors live (CUDA for NCCL).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    on: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def main_only(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` on rank 0, a no-op elsewhere (progress: one rank reports, and checks the cancel)."""
        if self.is_main:
            return fn
        return lambda *args, **kwargs: None

    def share(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of ``rows`` (sizes differ by at most one); all of it alone."""
        if self.world == 1:
            return rows
        return torch.tensor_split(rows, self.world)[self.rank]

    def agree(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank; if it failed on any, fail on every rank with the same message.

        The message is the first failing rank's; when not every rank failed it says which one did
        (``... (on rank 1 of 2)``). Outside DDP ``fn`` just runs.
        """
        if not self.on:
            return fn()
        error: BaseException | None = None
        value: Any = None
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - agreed below, then raised on every rank
            error = exc
        mine = None if error is None else (type(error).__name__, str(error), isinstance(error, RFLocalInputError))
        failures = [(r, f) for r, f in enumerate(self.gather_objects(mine)) if f is not None]
        if not failures:
            return value
        rank, (kind, text, is_input) = failures[0]
        if len({f[1] for _, f in failures}) > 1 or len(failures) < self.world:
            text = f"{text} (on rank {rank} of {self.world})"
        if error is not None and not is_input:
            raise error  # this rank's own error, with its traceback
        if is_input:
            raise _input_error(kind, text)
        msg = f"{kind} on rank {rank} of {self.world}: {text}"
        raise RuntimeError(msg)

    def gather_objects(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order."""
        if not self.on:
            return [obj]
        out: list[Any] = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.on:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the ranks (float64)."""
        if not self.on:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        return [float(v) for v in t.cpu()]

    def from_main(self, values: Sequence[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (one small collective)."""
        if not self.on:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch_dist.broadcast(t, src=0)
        return [float(v) for v in t.cpu()]

    def step_flags(self, *, lr: float, finite: bool, cancel: bool, out_of_time: bool) -> tuple[float, int, bool, bool]:
        """One collective per step: rank 0's rate, cancel and time-out, and the first rank whose loss
        was not finite (-1: none)."""
        if not self.on:
            return lr, (-1 if finite else 0), cancel, out_of_time
        main = self.is_main
        bad = np.zeros(self.world)
        bad[self.rank] = 0.0 if finite else 1.0
        vec = self.sum([lr if main else 0.0, float(cancel and main), float(out_of_time and main), *bad])
        failed = [r for r in range(self.world) if vec[3 + r] > 0]
        return vec[0], (failed[0] if failed else -1), vec[1] > 0, vec[2] > 0

    def concat(self, arr: np.ndarray) -> np.ndarray:
        """The ranks' arrays joined in rank order (validation errors of each share)."""
        if not self.on:
            return arr
        return np.concatenate(self.gather_objects(np.asarray(arr)))

    def wrap(self, net: torch.nn.Module, device: torch.device, *, find_unused: bool) -> torch.nn.Module:
        """``net`` in ``DistributedDataParallel`` (``net`` itself outside DDP).

        ``find_unused``: the network leaves parameters without a gradient in some step (auxiliary
        heads in the ``aux`` stage, branches a configuration turns off), which plain DDP refuses.
        """
        if not self.on:
            return net
        # a convolution's gradient in another memory layout than its weight: slower, not wrong
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" \
            else None
        return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, find_unused_parameters=find_unused)


def _input_error(kind: str, text: str) -> RFLocalInputError:
    """An input error of the class named ``kind`` (from :mod:`rflocal_core.errors`) with ``text``."""
    from rflocal_core import errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, RFLocalInputError):
        try:
            return cls(text)
        except TypeError:  # a class with other required arguments
            pass
    return InvalidInputError(text)


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Dist]:
    """The process group of a torchrun rank for the block (``Dist()`` outside torchrun).

    ``device``: a :class:`~rflocal_core.train.engine.TrainConfig` device; CUDA (``"cuda"``, or
    ``"auto"`` with a GPU) uses NCCL on GPU ``LOCAL_RANK``, CPU uses gloo. The group is started by
    the first call and stays up until the process exits: torchrun's rendezvous store does not take a
    second start of the default group (a second ``train`` in the same ranks would hang).
    """
    if not launched():
        yield Dist()
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
        atexit.register(_destroy)
    elif cuda != (torch_dist.get_backend() == "nccl"):
        msg = (f"device: {device!r} needs the {'nccl' if cuda else 'gloo'} backend, but this process's group "
               f"already uses {torch_dist.get_backend()} (one device per torchrun process)")
        raise InvalidInputError(msg)
    yield Dist(rank=rank, world=world, local_rank=local_rank, on=True, device=dev)


def _destroy() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N`` (what each rank is started with)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(argv: Sequence[str], nproc: int) -> int:
    """Run ``python -m rflocal_core ARGV`` as ``nproc`` DDP ranks through torchrun's launcher
    (``torch.distributed.launcher``, what ``torchrun --standalone`` runs); returns the exit status.

    Rank 0 writes to this terminal (the JSON result on stdout, progress and errors on stderr); the
    other ranks' output is kept in a temporary folder and shown only when a rank fails differently
    from rank 0. The status is rank 0's, else the first failing rank's.
    """
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig as ElasticConfig
    from torch.distributed.launcher.api import elastic_launch

    # torchrun's default: one thread per rank unless the user chose
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logs = Path(tempfile.mkdtemp(prefix="rflocal-ddp-"))
    redirects = {r: (Std.NONE if r == 0 else Std.ALL) for r in range(nproc)}
    config = ElasticConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                           rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                           logs_specs=DefaultLogsSpecs(log_dir=str(logs), redirects=redirects))
    quiet = logging.getLogger("torch.distributed.elastic")
    level, quiet.level = quiet.level, logging.CRITICAL  # its failure report repeats what the ranks said
    try:
        elastic_launch(config, sys.executable)("-m", "rflocal_core", *argv)
        return 0
    except ChildFailedError as exc:
        return _failed(exc, logs)
    finally:
        quiet.setLevel(level)
        shutil.rmtree(logs, ignore_errors=True)


def _failed(exc: Any, logs: Path) -> int:
    """Exit status of a failed launch; prints the last line of each rank > 0 whose failure rank 0 did not say."""
    codes = {f.local_rank: int(f.exitcode) for f in exc.failures.values()}
    main = codes.get(0)
    for rank in sorted(r for r in codes if r != 0):
        # an agreed input error: rank 0 printed the same line (a rank still exiting when the launcher
        # stops the others is reported as killed by a signal, or has already written that line)
        if main == 2 and codes[rank] in (2, -15, -9):
            continue
        lines = [ln for p in logs.glob(f"**/attempt_*/{rank}/stderr.log")
                 for ln in p.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        tail = lines[-1] if lines else f"exit status {codes[rank]}"
        if main == 2 and tail.startswith("error: "):
            continue
        print(f"rank {rank}: {tail}", file=sys.stderr)
    if main is not None and main > 0:
        return main
    positive = [c for c in codes.values() if c > 0]
    return positive[0] if positive else 1
