"""Training: fit a model on a dataset and keep it as a run in ``workspace/runs``.

Baselines are runs too: fitted, validated and saved the same way as networks, so every
model is loaded and compared alike (:mod:`rflocal_core.infer`).

Public API::

    from rflocal_core.train import train, list_runs
    result = train("ds", "map_matching")     # {"run_id", "median_m", "p95_m", "mean_m", ...}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rflocal_core.dataset.store import open_dataset
from rflocal_core.errors import InvalidInputError
from rflocal_core.jobs import JobCancelled
from rflocal_core.metrics import error_summary
from rflocal_core.models import BASELINES, errors_m, load_inputs
from rflocal_core.train.runs import (
    CheckpointError,
    RunNotFoundError,
    append_metrics,
    create_run,
    delete_run,
    list_runs,
    new_run_id,
    read_metrics,
    runs_dir,
    save_checkpoint,
    write_status,
)

ProgressFn = Callable[[str, float], None]

#: Models that need the dataset's radio maps.
MAP_MODELS = ("map_matching",)

__all__ = ["CheckpointError", "RunNotFoundError", "delete_run", "list_runs", "models", "read_metrics", "runs_dir",
           "train"]


def models() -> list[str]:
    """Names of the models that can be trained."""
    return list(BASELINES)


def train(
    dataset: str, model: str, *, model_config: dict[str, Any] | None = None, seed: int = 0,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Fit ``model`` on the train split of ``dataset``, validate, save the run.

    Returns
    -------
    dict
        ``run_id``, ``model``, ``dataset``, validation ``median_m``, ``p95_m``,
        ``mean_m`` (and the rest of :func:`rflocal_core.metrics.error_summary`), ``seconds``.
    """
    report = progress or (lambda stage, fraction: None)
    if model not in BASELINES:
        msg = f"model: expected one of {', '.join(BASELINES)}, got {model!r}"
        raise InvalidInputError(msg)
    attrs = dict(open_dataset(dataset).attrs)  # fails early on an unknown dataset
    cls = BASELINES[model]
    instance = cls(model_config)  # validates the configuration before anything is written
    run_id = new_run_id(model, dataset)
    config = {
        "run_id": run_id, "kind": "baseline", "model": model, "model_config": instance.config.to_dict(),
        "dataset": dataset, "dataset_digest": attrs.get("digest") or (attrs.get("input") or {}).get("sha256"),
        "seed": seed, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = create_run(run_id, config)
    t0 = time.perf_counter()
    try:
        report("loading data", 0.05)
        with_maps = model in MAP_MODELS
        train_in = load_inputs(dataset, "train", with_maps=with_maps)
        val_in = load_inputs(dataset, "val", with_maps=with_maps)
        if len(train_in.truth_m) == 0 or len(val_in.truth_m) == 0:
            msg = f"dataset {dataset!r}: train and val splits must both hold samples with truth"
            raise InvalidInputError(msg)
        report("fitting", 0.3)
        instance.fit(train_in, val_in)
        report("validating", 0.8)
        t1 = time.perf_counter()
        pred = instance.predict(val_in)
        per_sample_ms = 1000 * (time.perf_counter() - t1) / max(len(val_in.truth_m), 1)
        summary = error_summary(errors_m(pred, val_in))
        seconds = round(time.perf_counter() - t0, 3)
        append_metrics(path, {"epoch": 0, "stage": "fit", "val": summary, "seconds": seconds})
        save_checkpoint(path, model=model, config=instance.config, state=instance.state_dict())
        best = {"median_m": summary["median_m"], "p95_m": summary["p95_m"], "mean_m": summary["mean_m"],
                "seconds": seconds}
        write_status(path, state="done", best=best)
    except JobCancelled:
        write_status(path, state="cancelled")
        raise
    except BaseException as exc:
        write_status(path, state="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    report("done", 1.0)
    return {"run_id": run_id, "model": model, "dataset": dataset, **summary, "seconds": seconds,
            "inference_ms_per_sample": round(per_sample_ms, 4)}
