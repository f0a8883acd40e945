"""A small hyperparameter search (Optuna TPE) for any model tuned on its validation split.

One call, fixed seed, a trial count and a time budget; the objective scores one set of
parameters on the **validation split only** (never the test split) and returns a number to
minimise::

    space = {"learning_rate": ("float", 0.03, 0.3, "log"), "num_leaves": ("int", 8, 128, "log"),
             "objective": ("choice", ("huber", "l2"))}
    result = search(lambda p: val_error(fit(**p)), space, n_trials=30, max_seconds=300, seed=0)
    result.best_params, result.best_value, result.trials   # trials: one plain dict per trial

A space entry is ``("float", lo, hi[, "log"])``, ``("int", lo, hi[, "log"])`` or
``("choice", values)``. ``result.trials`` (plain values only) is what a run keeps in its state
or metrics, so the search is recorded with the model it chose.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rflocal_core.errors import InvalidInputError

#: A search space entry: ("float" | "int", lo, hi[, "log"]) or ("choice", values).
SpaceEntry = tuple[Any, ...]


@dataclass(frozen=True)
class SearchResult:
    """The outcome of :func:`search`.

    Attributes
    ----------
    best_params : dict
        Parameters of the trial with the lowest objective.
    best_value : float
        Its objective value.
    trials : list of dict
        One row per finished trial: ``number``, ``value``, ``seconds``, ``state`` and the
        parameters (plain python values, in trial order).
    seconds : float
        Wall time of the whole search.
    """

    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"best_params": dict(self.best_params), "best_value": self.best_value,
                "trials": [dict(t) for t in self.trials], "seconds": self.seconds}


def check_space(space: Mapping[str, SpaceEntry]) -> None:
    """Refuse a malformed search space, naming the entry (see the module docstring for the form)."""
    if not space:
        msg = "space: expected at least one parameter, got an empty search space"
        raise InvalidInputError(msg)
    for name, entry in space.items():
        kind = entry[0] if isinstance(entry, tuple) and entry else None
        if kind in ("float", "int"):
            ok = len(entry) in (3, 4) and entry[1] < entry[2] and (len(entry) == 3 or entry[3] == "log")
            ok = ok and (len(entry) == 3 or entry[1] > 0)
        elif kind == "choice":
            ok = len(entry) == 2 and len(tuple(entry[1])) > 0
        else:
            ok = False
        if not ok:
            msg = (f"space[{name!r}]: expected ('float'|'int', lo, hi[, 'log']) with lo < hi (lo > 0 for log) "
                   f"or ('choice', values), got {entry!r}")
            raise InvalidInputError(msg)


def _suggest(trial: Any, name: str, entry: SpaceEntry) -> Any:
    kind = entry[0]
    if kind == "choice":
        return trial.suggest_categorical(name, list(entry[1]))
    log = len(entry) == 4
    if kind == "int":
        return trial.suggest_int(name, int(entry[1]), int(entry[2]), log=log)
    return trial.suggest_float(name, float(entry[1]), float(entry[2]), log=log)


def search(
    objective: Callable[[dict[str, Any]], float], space: Mapping[str, SpaceEntry], *, n_trials: int,
    max_seconds: float | None = None, seed: int = 0,
) -> SearchResult:
    """Minimise ``objective(params)`` over ``space`` with Optuna's TPE sampler (seeded).

    Parameters
    ----------
    objective : callable(dict) -> float
        Fits with the parameters and returns the validation score (lower is better). A
        non-finite score counts as a failed trial.
    space : mapping of name to entry
        See the module docstring.
    n_trials : int
        At most this many trials (>= 1).
    max_seconds : float, optional
        Stop starting new trials after this long (the running trial finishes).
    seed : int
        Sampler seed: the same seed, space and objective give the same trials.

    Raises
    ------
    InvalidInputError
        A bad space, ``n_trials`` < 1, or no trial finished with a finite score.
    """
    import optuna  # imported here: only searches pay its import time

    check_space(space)
    if not isinstance(n_trials, int) or n_trials < 1:
        msg = f"n_trials: expected an integer >= 1, got {n_trials!r}"
        raise InvalidInputError(msg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    t0 = time.perf_counter()

    def run(trial: Any) -> float:
        params = {name: _suggest(trial, name, entry) for name, entry in space.items()}
        value = float(objective(params))
        return value if math.isfinite(value) else float("nan")  # optuna marks a NaN trial failed

    study.optimize(run, n_trials=n_trials, timeout=max_seconds, catch=())
    rows = [{"number": t.number, "value": None if t.value is None else float(t.value),
             "seconds": None if t.duration is None else round(t.duration.total_seconds(), 3),
             "state": t.state.name.lower(), **t.params} for t in study.trials]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        msg = f"search: none of {len(study.trials)} trials finished with a finite score"
        raise InvalidInputError(msg)
    return SearchResult(dict(study.best_params), float(study.best_value), rows, round(time.perf_counter() - t0, 3))
