"""Progress of long work: the callback type, cancellation, and honest time-left estimates.

Long work (scene builds, data generation, training, ablations) reports through one
callback::

    progress(stage, fraction)                       # plain: a stage text and the overall fraction
    progress(stage, fraction, step=Step(...))       # with the work done inside the stage

``fraction`` drives a progress bar only. Time left is estimated from :class:`Step`:
the units done in the current stage (sites, path batches, epochs), timed by this
stage's own rate, never from the overall fraction (whose stage weights are guesses).
An estimate for the whole job is given only where the rest is knowable: the stage is
the last one (training's epochs), or the job repeats parts (scenes, ablation variants)
and the remaining ones have been timed in an earlier part. A time budget caps it.
Until enough units of the stage have been timed, nothing is shown.

A callback may raise :class:`JobCancelled` to stop the work. Callbacks that take only
``(stage, fraction)`` keep working: entry points wrap them with :func:`as_progress`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

#: ``progress(stage, fraction)`` or ``progress(stage, fraction, *, step=Step(...))``.
ProgressFn = Callable[..., None]


class JobCancelled(Exception):
    """Raised inside a worker (by its progress callback) when its job was cancelled."""


@dataclass(frozen=True)
class Step:
    """Where the work stands inside its current stage.

    Attributes
    ----------
    key : str
        The stage's identity: the same in every update of the stage (the stage text may
        change, e.g. "3/6 sites"), and the same for that stage in every part.
    done, total : float, optional
        Units finished and units in the stage (fractional units are fine: epochs).
    limit_s : float, optional
        The stage cannot last longer than this many seconds from now (a time budget).
    last : bool
        No other stage follows in this part (or in the job, without parts).
    part, parts : int, optional
        This stage belongs to part ``part`` (0-based) of ``parts`` repeated, similar parts
        of the job (scenes of a dataset, variants of an ablation).
    """

    key: str
    done: float | None = None
    total: float | None = None
    limit_s: float | None = None
    last: bool = False
    part: int | None = None
    parts: int | None = None


class StepProgressFn(Protocol):
    def __call__(self, stage: str, fraction: float, *, step: Step | None = None) -> None: ...


def _ignore(stage: str, fraction: float, *, step: Step | None = None) -> None:
    """The callback of work nobody watches."""


def takes_step(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts the ``step`` keyword (or any keyword)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume the plain form
        return False
    return any(p.name == "step" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def as_progress(fn: ProgressFn | None) -> StepProgressFn:
    """A callback that accepts ``step``, from ``fn`` of either form (None: ignore progress)."""
    if fn is None:
        return _ignore
    if takes_step(fn):
        return fn

    def plain(stage: str, fraction: float, *, step: Step | None = None) -> None:
        fn(stage, fraction)

    return plain


def sub_progress(
    report: StepProgressFn, *, prefix: str, span: tuple[float, float], part: int | None = None,
    parts: int | None = None,
) -> StepProgressFn:
    """The callback of one piece of a larger job.

    Stage texts get ``prefix``, fractions are mapped into ``span`` of the whole. With
    ``part``/``parts`` the piece is one of several similar parts (its stage keys stay as they
    are, so later parts are timed by earlier ones); without, its stages become stages of the
    whole (keys prefixed, no longer "last").
    """
    lo, hi = span

    def sub(stage: str, fraction: float, *, step: Step | None = None) -> None:
        f = lo + (hi - lo) * min(max(fraction, 0.0), 1.0)
        if part is not None:
            inner = replace(step or Step(key=stage), part=part, parts=parts)
        else:
            inner = None if step is None else replace(step, key=prefix + step.key, last=False, part=None, parts=None)
        report(prefix + stage, f, step=inner)

    return sub


@dataclass(frozen=True)
class Eta:
    """An estimate of the time left, as a range.

    Attributes
    ----------
    low_s, high_s : float
        The range, in seconds.
    scope : str
        ``"job"`` (until the whole job ends) or ``"stage"`` (until the current stage ends).
    bound_only : bool
        Only an upper bound is known (a time budget), not a rate.
    text : str
        For people, e.g. "about 20–30 s left", "about 2–3 min left in this stage".
    """

    low_s: float
    high_s: float
    scope: str
    bound_only: bool = False
    text: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def eta_text(low_s: float, high_s: float, *, scope: str = "job", bound_only: bool = False) -> str:
    """``"about 20–30 s left"``: the range rounded outwards to 5 s, whole minutes or half hours."""
    where = " in this stage" if scope == "stage" else ""
    if high_s < 10:
        return f"a few seconds left{where}"
    if bound_only:
        return f"at most {_amount(high_s)} left{where}"
    step, unit = (5.0, "s") if high_s < 120 else (60.0, "min") if high_s < 90 * 60 else (1800.0, "h")
    a = math.floor(low_s / step) * step
    b = math.ceil(high_s / step) * step
    if a == 0:
        return f"under {_num(b, step, unit)} {unit} left{where}"
    if a == b:
        return f"about {_num(a, step, unit)} {unit} left{where}"
    return f"about {_num(a, step, unit)}–{_num(b, step, unit)} {unit} left{where}"


def _num(value_s: float, step: float, unit: str) -> str:
    scale = {"s": 1.0, "min": 60.0, "h": 3600.0}[unit]
    v = value_s / scale
    return f"{v:.1f}".rstrip("0").rstrip(".") if unit == "h" else f"{v:.0f}"


def _amount(value_s: float) -> str:
    """An upper bound, rounded up to 5 s, a whole minute or half an hour."""
    step, unit = (5.0, "s") if value_s < 120 else (60.0, "min") if value_s < 90 * 60 else (1800.0, "h")
    return f"{_num(math.ceil(value_s / step) * step, step, unit)} {unit}"


@dataclass
class _Stage:
    key: str
    start: float
    total: float | None = None
    last: bool = False
    marks: list[tuple[float, int]] = field(default_factory=list)  # (time, whole units done) when they rose
    limit: tuple[float, float] | None = None  # (seconds left then, time it was given)


class EtaEstimator:
    """Time left from a sequence of progress updates; pure logic, the caller gives the clock.

    A stage's rate is measured between its completed units, leaving out the first one
    (which carries the stage's start-up: loading a scene, compiling kernels), over the
    last ``window`` units. Nothing is estimated before ``min_units`` units are timed and
    ``min_stage_s`` seconds of the stage have passed.
    """

    def __init__(self, *, min_units: int = 2, min_stage_s: float = 3.0, window: int = 10) -> None:
        self.min_units = min_units
        self.min_stage_s = min_stage_s
        self.window = window
        self._stage: _Stage | None = None
        self._part: tuple[int, int] | None = None
        self._timeline: list[tuple[str, float]] = []  # finished stages of the current part
        self._done_parts: list[list[tuple[str, float]]] = []  # timelines of finished parts
        self._part_s: list[float] = []  # durations of finished parts
        self._part_start = 0.0

    def update(self, stage: str, step: Step | None, now: float) -> None:
        """Take one progress update made at time ``now`` (seconds, any monotonic origin)."""
        key = step.key if step is not None else stage
        part = None if step is None or step.part is None else (step.part, step.parts or 1)
        cur = self._stage
        if cur is None or part != self._part:
            if cur is not None:
                self._timeline.append((cur.key, now - cur.start))
                if self._part is not None:  # a part ended: keep its timeline for the parts after it
                    self._done_parts.append(self._timeline)
                    self._part_s.append(now - self._part_start)
                self._timeline = []
            self._part, self._part_start = part, now
            cur = self._stage = _Stage(key=key, start=now)
        elif cur.key != key:
            self._timeline.append((cur.key, now - cur.start))
            cur = self._stage = _Stage(key=key, start=now)
        if step is None:
            return
        cur.total, cur.last = step.total, step.last
        if step.done is not None:
            units = int(math.floor(step.done + 1e-9))
            if not cur.marks or units > cur.marks[-1][1]:
                cur.marks.append((now, units))
        if step.limit_s is not None:
            cur.limit = (max(float(step.limit_s), 0.0), now)

    def estimate(self, now: float) -> Eta | None:
        """The time left at ``now``: for the whole job where knowable, else for the stage, else None."""
        cur = self._stage
        if cur is None:
            return None
        stage = self._own_rate_left(cur, now)
        # all its counted units done: the stage ends any moment, but what follows is known only from a timeline
        finished = stage is not None and cur.total is not None and cur.total - cur.marks[-1][1] <= 0
        if stage is None:
            stage = self._timed_before_left(cur, now)
        cap = None if cur.limit is None else max(cur.limit[0] - (now - cur.limit[1]), 0.0)
        bound_only = stage is None and cap is not None
        if bound_only:
            stage = (0.0, cap)
        elif stage is not None and cap is not None:
            stage = (min(stage[0], cap), min(stage[1], cap))
        if stage is None:
            return None
        rest = self._rest_left(cur)
        if rest is None:
            if finished:
                return None
            return Eta(stage[0], stage[1], "stage", bound_only, eta_text(*stage, scope="stage", bound_only=bound_only))
        low, high = stage[0] + rest[0], stage[1] + rest[1]
        bound_only = bound_only and rest == (0.0, 0.0)
        return Eta(low, high, "job", bound_only, eta_text(low, high, scope="job", bound_only=bound_only))

    def _own_rate_left(self, cur: _Stage, now: float) -> tuple[float, float] | None:
        if cur.total is None or len(cur.marks) < self.min_units + 2 or now - cur.start < self.min_stage_s:
            return None
        marks = cur.marks[1:][-(self.window + 1):]  # the first unit carries the start-up
        per_unit = [(t1 - t0) / (u1 - u0) for (t0, u0), (t1, u1) in zip(marks, marks[1:])]
        if len(per_unit) < self.min_units:
            return None
        t_last, units = cur.marks[-1]
        left = max(cur.total - units, 0.0)
        since = now - t_last

        def seconds(per: float) -> float:
            # the unit under way may take longer than usual: the units after it still take their time
            return max(left * per - since, (left - 1) * per, 0.0)

        return seconds(min(per_unit)), seconds(max(per_unit))

    def _timed_before_left(self, cur: _Stage, now: float) -> tuple[float, float] | None:
        took = [s for timeline in self._done_parts for k, s in timeline if k == cur.key]
        if not took:
            return None
        spent = now - cur.start
        low, high = max(min(took) - spent, 0.0), max(max(took) - spent, 0.0)
        return None if high == 0.0 else (low, high)

    def _rest_left(self, cur: _Stage) -> tuple[float, float] | None:
        """Time of the stages after this one in this part, plus the parts after this one."""
        rest = self._rest_of_part(cur)
        if rest is None:
            return None
        if self._part is None:
            return rest
        parts_left = self._part[1] - self._part[0] - 1
        if parts_left <= 0:
            return rest
        if not self._part_s:
            return None
        return rest[0] + parts_left * min(self._part_s), rest[1] + parts_left * max(self._part_s)

    def _rest_of_part(self, cur: _Stage) -> tuple[float, float] | None:
        timed = [t for t in self._done_parts if any(k == cur.key for k, _ in t)]
        if timed:
            keys = [k for k, _ in timed[-1]]
            after = keys[len(keys) - 1 - keys[::-1].index(cur.key) + 1:]
            low = high = 0.0
            for key in after:
                took = [s for t in timed for k, s in t if k == key] or [0.0]
                low, high = low + min(took), high + max(took)
            return low, high
        return (0.0, 0.0) if cur.last else None
