"""Load a run and predict: the same path for every model, baseline or network."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from rflocal_core.metrics import error_summary
from rflocal_core.models import BASELINES, Inputs, Prediction, errors_m, load_inputs
from rflocal_core.models.nets import NETWORKS
from rflocal_core.models.neural import NeuralModel
from rflocal_core.train.runs import CheckpointError, load_checkpoint, run_dir


@dataclass
class LoadedRun:
    """A run ready to predict: its configuration and the rebuilt model."""

    run_id: str
    config: dict[str, Any]
    model: Any

    @property
    def needs_maps(self) -> bool:
        return self.config["model"] == "map_matching"

    def predict(self, x: Inputs) -> Prediction:
        """Positions [N, 2] (and uncertainty) for the samples of ``x``."""
        return self.model.predict(x)


def load_run(run_id: str) -> LoadedRun:
    """Rebuild a run's model from ``config.json`` and ``model.pt`` (``weights_only=True``)."""
    path = run_dir(run_id)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    payload = load_checkpoint(run_id)
    name = payload.get("model")
    if name in NETWORKS:
        try:
            return LoadedRun(run_id, config, NeuralModel.from_checkpoint(payload))
        except (KeyError, RuntimeError, TypeError) as exc:  # state does not fit the configured network
            msg = f"run {run_id!r}: checkpoint does not match its {name} configuration ({type(exc).__name__}: {exc})"
            raise CheckpointError(msg) from None
    if name not in BASELINES:
        msg = f"run {run_id!r}: checkpoint holds model {name!r}, which this version cannot load"
        raise CheckpointError(msg)
    cls = BASELINES[name]
    return LoadedRun(run_id, config, cls.from_state(payload["config"] or None, payload["state"]))


def evaluate(run_id: str, dataset: str, *, split: str = "test") -> dict[str, Any]:
    """Error statistics of a run on a dataset split (see :func:`rflocal_core.metrics.error_summary`)."""
    run = load_run(run_id)
    x = load_inputs(dataset, split, with_maps=run.needs_maps)
    t0 = time.perf_counter()
    pred = run.predict(x)
    seconds = time.perf_counter() - t0
    summary = error_summary(errors_m(pred, x))
    return {"run_id": run_id, "model": run.config["model"], "dataset": dataset, "split": split, **summary,
            "inference_ms_per_sample": round(1000 * seconds / max(len(x.truth_m), 1), 4)}
