"""A trained run, loaded and ready to predict: the same path for every model, baseline or network.

    run = load_run("setnet-demo-...")      # rebuilt from config.json and model.pt (weights_only=True)
    pred = run.predict(inputs)             # a Prediction, its sigma times the run's sigma_scale
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import CheckpointError, InvalidInputError
from rflocal_core.models.inputs import Inputs, Prediction
from rflocal_core.models.neural import NeuralModel
from rflocal_core.models.registry import BASELINES, NETWORKS
from rflocal_core.models.transforms import InputTransform, load_transformed
from rflocal_core.reference import RunReference, run_reference, scene_maps_of
from rflocal_core.train.calibrate import SigmaCalibration, calibrate_run_folder, scale_sigma, sigma_scale_of
from rflocal_core.train.runs import load_checkpoint, run_dir


@dataclass
class LoadedRun:
    """A run ready to predict: its configuration and the rebuilt model."""

    run_id: str
    config: dict[str, Any]
    model: Any
    _reference: Any = field(default=None, repr=False)
    _maps: Any = field(default=None, repr=False)
    #: Scenes the run was not trained on that a file was last predicted in, and their references.
    _file_scenes: dict[str, RunReference] = field(default_factory=dict, repr=False)

    @property
    def reference(self) -> RunReference:
        """What reading a measurement file needs of the training data (read once)."""
        if self._reference is None:
            self._reference = run_reference(self.run_id)
        return self._reference

    def reference_for(self, scene: str | None) -> RunReference:
        """The reference that places predictions in ``scene``: the file scene of that name last predicted
        in (a scene the run was not trained on, see :mod:`rflocal_core.infer.anyscene`), else the run's."""
        return self._file_scenes.get(scene or "", self.reference)

    def remember_scene(self, scene: str, reference: RunReference | None) -> None:
        """Keep (or, with None, forget) the reference of a file scene, for the maps drawn after predicting."""
        if reference is None:
            self._file_scenes.pop(scene, None)
        else:
            self._file_scenes[scene] = reference

    @property
    def any_scene(self) -> bool:
        """Whether the model predicts in a scene it was not trained on (geometric baselines; a network
        that declares ``any_scene``); never a model that needs the radio maps of its scenes."""
        if self.needs_maps:
            return False
        flag = getattr(self.model, "any_scene", None)
        if flag is None:  # a network: its LocNet says
            flag = getattr(getattr(self.model, "net", None), "any_scene", False)
        return bool(flag)

    def scene_maps(self) -> dict[str, Any] | None:
        """The training dataset's radio maps for map matching (read once); None for other models."""
        if not self.needs_maps:
            return None
        if self._maps is None:
            self._maps = scene_maps_of(self.reference)
        return self._maps

    @property
    def needs_maps(self) -> bool:
        """Whether predicting needs the radio maps (map matching, map-conditioned networks)."""
        return bool(getattr(self.model, "needs_maps", False))

    @property
    def sigma_scale(self) -> float:
        """The scale of the model's sigma fitted on the validation split (1 for runs written before)."""
        return sigma_scale_of(self.config)

    def predict(self, x: Inputs) -> Prediction:
        """Positions [N, 2] and the calibrated uncertainty (the model's sigma times :attr:`sigma_scale`)
        for the samples of ``x``: the one place a run predicts (``predict``, Live Inference, Metrics)."""
        return scale_sigma(self.model.predict(x), self.sigma_scale)


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


def calibrate_run(run_id: str, *, user: User = LOCAL_USER) -> SigmaCalibration:
    """Fit (again) a run's sigma scale on its dataset's validation split and keep it in its ``config.json``.

    Training does this at its end; this is for runs trained before scales were kept, or whose
    dataset's validation split changed. The run's own view of the data (its input transform)
    is used, and the model's own sigma, not the currently scaled one.

    Returns
    -------
    SigmaCalibration
        ``scale`` (None for a model without sigma), ``method``, ``count``, and the fractions
        inside the 1σ and 2σ ellipses of the validation split before and after scaling.

    Raises
    ------
    InvalidInputError
        The run's dataset has no validation samples.
    """
    require(user, "train")
    run = load_run(run_id)
    val = load_transformed(run.config["dataset"], "val", InputTransform.from_dict(run.config.get("input_transform")),
                           with_maps=run.needs_maps)
    if len(val) == 0:
        msg = f"dataset: the val split of {run.config['dataset']!r} holds no samples; the sigma scale is fitted on it"
        raise InvalidInputError(msg)
    return calibrate_run_folder(run_dir(run_id), run.model.predict(val), val)


def checkpoint_stamp(run_id: str) -> tuple[str, int]:
    """``(run_id, model.pt mtime in ns)``: a cache key that changes when a run is retrained."""
    path = run_dir(run_id) / "model.pt"
    return run_id, path.stat().st_mtime_ns if path.is_file() else 0
