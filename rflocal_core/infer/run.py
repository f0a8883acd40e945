"""A trained run, loaded and ready to predict: the same path for every model, baseline or network.

    run = load_run("setnet-demo-...")      # rebuilt from config.json and model.pt (weights_only=True)
    pred = run.predict(inputs)             # a Prediction, its sigma times the run's sigma_scale
    export_onnx("setnet-demo-...")         # the network as runs/<id>/model.onnx, checked against PyTorch
    run = load_run("setnet-demo-...", backend="onnxruntime")   # predicts through that graph
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import CheckpointError, DatasetNotFoundError, InvalidInputError
from rflocal_core.models.features import make_batch
from rflocal_core.models.inputs import Inputs, Prediction
from rflocal_core.models.neural import NeuralModel
from rflocal_core.models.onnx_export import (
    BACKENDS,
    EXPORT_TOLERANCE,
    OPSET,
    OnnxModel,
    compare_backends,
    export_graph,
    exportable,
    onnx_session,
)
from rflocal_core.models.registry import BASELINES, NETWORKS
from rflocal_core.models.transforms import InputTransform, load_transformed
from rflocal_core.reference import RunReference, run_reference, scene_maps_of
from rflocal_core.results import JsonResult
from rflocal_core.train.calibrate import (
    SigmaCalibration,
    calibrate_blocks,
    calibrate_run_folder,
    scale_sigma,
    sigma_map_of,
    sigma_scale_of,
    store_calibration,
)
from rflocal_core.train.runs import load_checkpoint, run_dir
from rflocal_core.validation import check_choice
from rflocal_core.workspace import atomic_path, atomic_write_text

#: The run's ONNX graph (what the onnxruntime backend runs) and its record (see :func:`export_onnx`).
ONNX_FILE, ONNX_RECORD = "model.onnx", "model.onnx.json"
#: Validation samples an export is checked on (evenly spread over the split).
VERIFY_SAMPLES = 512


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
        that declares ``any_scene``: a set network in the sample frame, a map network in the window frame,
        which reads the maps that come with the data, e.g. a dataset of that scene); never map matching."""
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
    def backend(self) -> str:
        """What runs the model: ``"onnxruntime"`` for a network loaded with that backend, else ``"torch"``."""
        return str(getattr(self.model, "backend", "torch"))

    @property
    def sigma_scale(self) -> float:
        """The scale of the model's sigma fitted on the validation split (1 for runs written before)."""
        return sigma_scale_of(self.config)

    @property
    def sigma_map(self) -> dict[str, Any]:
        """The run's whole sigma calibration: ``scale``, ``power`` and ``ref_m`` (see :mod:`rflocal_core.train.calibrate`)."""
        return sigma_map_of(self.config)

    def predict(self, x: Inputs) -> Prediction:
        """Positions [N, 2] and the calibrated uncertainty (the model's sigma times :attr:`sigma_scale`, and
        the size factor of ``sigma_power`` where fitted) for the samples of ``x``: the one place a run
        predicts (``predict``, Live Inference, Metrics)."""
        m = self.sigma_map
        return scale_sigma(self.model.predict(x), m["scale"], power=m["power"], ref_m=m["ref_m"])


def load_run(run_id: str, *, backend: str = "torch") -> LoadedRun:
    """Rebuild a run's model from ``config.json`` and ``model.pt`` (``weights_only=True``).

    ``backend``: ``"torch"``, or ``"onnxruntime"``: a network then predicts through its ONNX
    graph (exported and checked by :func:`export_onnx` when missing or older than ``model.pt``);
    a baseline runs in Python either way.
    """
    check_choice("backend", backend, BACKENDS)
    run = _load_torch(run_id)
    if backend == "onnxruntime" and isinstance(run.model, NeuralModel):
        run.model = onnx_model(run)
    return run


def _load_torch(run_id: str) -> LoadedRun:
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


# --------------------------------------------------------------------------- ONNX


@dataclass(frozen=True)
class OnnxExport(JsonResult):
    """An exported network: where, its graph inputs and outputs, and how closely onnxruntime follows PyTorch.

    ``max_abs_diff``: per output (``mu``, ``sigma`` on the unit square; ``residual_db`` in dB), the
    largest difference between onnxruntime and PyTorch over ``checked_samples`` samples of the
    run's ``split``; each is at most ``tolerance`` (else the export is refused).
    """

    run_id: str
    model: str
    path: str
    bytes: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    split: str
    checked_samples: int
    max_abs_diff: dict[str, float]
    tolerance: float
    opset: int
    export_s: float


def _network(run: LoadedRun) -> NeuralModel:
    """The run's network, or an error saying why it cannot be exported."""
    model = run.model
    if not isinstance(model, NeuralModel):
        name = run.config.get("model")
        msg = (f"run {run.run_id!r}: model {name!r} is a baseline, not a network; only networks "
               f"({', '.join(NETWORKS)}) export to ONNX")
        raise InvalidInputError(msg)
    why = exportable(model)
    if why:
        msg = f"run {run.run_id!r}: {why}"
        raise InvalidInputError(msg)
    return model


def _check_inputs(run: LoadedRun) -> Inputs:
    """Up to :data:`VERIFY_SAMPLES` samples of the run's validation split (its own view of the data)."""
    dataset = run.config["dataset"]
    try:
        val = load_transformed(dataset, "val", InputTransform.from_dict(run.config.get("input_transform")),
                               with_maps=run.needs_maps)
    except DatasetNotFoundError:
        msg = (f"dataset: run {run.run_id!r} was trained on {dataset!r}, which is not in this workspace; an ONNX "
               "export is checked against PyTorch on its val split")
        raise InvalidInputError(msg) from None
    if len(val) == 0:
        msg = f"dataset: the val split of {dataset!r} holds no samples; an ONNX export is checked on it"
        raise InvalidInputError(msg)
    rows = np.unique(np.linspace(0, len(val) - 1, min(VERIFY_SAMPLES, len(val))).round().astype(int))
    return val.subset(rows)


def write_onnx(run: LoadedRun, target: Path) -> OnnxExport:
    """Export ``run``'s network to ``target`` (atomically) after checking it against PyTorch on the validation split.

    Raises :class:`InvalidInputError` for a baseline, a network that cannot be a graph, or an
    export whose outputs differ from PyTorch's by more than :data:`EXPORT_TOLERANCE` (nothing is
    written then).
    """
    model = _network(run)
    x = _check_inputs(run)
    batch, source = make_batch(x, model.spec), model.map_source(x)
    example = next(model.inputs(batch, source, size=64))
    t0 = time.perf_counter()
    with atomic_path(target) as tmp:
        names, outputs = export_graph(model, example, tmp)
        onnx = OnnxModel.wrap(model, onnx_session(tmp), target)
        worst = compare_backends(model, onnx, batch, source)
        bad = {k: v for k, v in worst.items() if not v <= EXPORT_TOLERANCE}
        if bad:
            msg = (f"run {run.run_id!r}: the ONNX graph of {model.name} differs from PyTorch by "
                   f"{', '.join(f'{k} {v:.3g}' for k, v in bad.items())} on {len(x)} validation samples; expected at "
                   f"most {EXPORT_TOLERANCE:g} (nothing written)")
            raise InvalidInputError(msg)
    return OnnxExport(run.run_id, model.name, str(target), target.stat().st_size, names, outputs, "val", len(x),
                      {k: float(f"{v:.3g}") for k, v in worst.items()}, EXPORT_TOLERANCE, OPSET,
                      round(time.perf_counter() - t0, 2))


def export_onnx(run_id: str, *, out: str | Path | None = None, user: User = LOCAL_USER) -> OnnxExport:
    """Export a network run as ONNX: ``out``, or the run's own ``model.onnx`` (what ``--backend onnxruntime`` runs).

    Dynamic batch and report-slot axes; map networks take their maps as graph inputs (see
    :mod:`rflocal_core.models.onnx_export`). Checked before it is written: onnxruntime's outputs
    equal PyTorch's within :data:`EXPORT_TOLERANCE` on (up to :data:`VERIFY_SAMPLES` of) the
    validation split.

    Raises
    ------
    InvalidInputError
        A baseline (not a network), mapformer with ``refine_steps > 0``, an empty validation
        split, a graph that differs from PyTorch, or an ``out`` that cannot be written.
    """
    require(user, "train")
    run = _load_torch(run_id)
    if out is None:
        return _export_to_run(run)
    target = Path(out)
    try:
        return write_onnx(run, target)
    except OSError as exc:
        msg = f"out: cannot write {str(out)!r} ({exc.strerror or exc}); expected a writable file path"
        raise InvalidInputError(msg) from None


def _export_to_run(run: LoadedRun) -> OnnxExport:
    """Export into the run folder with a record of the checkpoint it was made from."""
    folder = run_dir(run.run_id)
    result = write_onnx(run, folder / ONNX_FILE)
    record = {**result.to_json(), "model_pt_mtime_ns": checkpoint_stamp(run.run_id)[1]}
    atomic_write_text(folder / ONNX_RECORD, json.dumps(record, indent=2))
    return result


def onnx_model(run: LoadedRun) -> OnnxModel:
    """``run``'s network on onnxruntime: its ``model.onnx``, exported first when missing or older than ``model.pt``."""
    folder = run_dir(run.run_id)
    path, record = folder / ONNX_FILE, folder / ONNX_RECORD
    try:
        stamp = json.loads(record.read_text(encoding="utf-8")).get("model_pt_mtime_ns")
    except (OSError, ValueError):
        stamp = None
    if not path.is_file() or stamp != checkpoint_stamp(run.run_id)[1]:
        _export_to_run(run)
    return OnnxModel.wrap(_network(run), onnx_session(path), path)


def calibrate_run(run_id: str, *, user: User = LOCAL_USER) -> SigmaCalibration:
    """Fit (again) a run's sigma scale on its dataset's validation split and keep it in its ``config.json``.

    A baseline run calibrated on blocks (``train --calibration blocks``) is calibrated on blocks
    again, with its squares, folds and seed.
    A run is fitted with the ``sigma_radii`` it was trained with (``"auto"`` may choose otherwise on new
    val rows; records written before it was kept: ``"quantile"`` for radii fitted apart, else ``"gaussian"``).
    A run refitted on train + val (``train --refit``) is calibrated, as in training, on the val
    predictions of its model fitted on train alone (its options hold the val choices).

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
    record = run.config.get("sigma_calibration") or {}
    # as it was trained: the radii it asked for (records before they were kept: what its fit was)
    radii = record.get("radii") or ("quantile" if record.get("method") == "quantile" else "gaussian")
    if record.get("source") == "blocks" and run.config.get("kind") == "baseline":  # as it was trained: on blocks
        transform = InputTransform.from_dict(run.config.get("input_transform"))
        train = load_transformed(run.config["dataset"], "train", transform, with_maps=run.needs_maps)
        cal = calibrate_blocks(lambda: type(run.model)(run.model.config), train, val, block_m=float(record["block_m"]),
                               folds=int(record["folds"]), seed=int(run.config.get("seed", 0)), radii=radii)
        store_calibration(run_dir(run_id), cal)
        return cal
    model = run.model
    if run.config.get("refit") and run.config.get("kind") == "network":  # its network fitted on train alone is gone
        msg = (f"run: {run_id} is a network refitted on train + val (train --refit); its sigma map was fitted at "
               "training on the val predictions of its best epoch on train, which the run no longer holds: train it "
               "again to calibrate it again")
        raise InvalidInputError(msg)
    if run.config.get("refit"):  # its model has seen val: calibrate its choices fitted on train alone, as training did
        train = load_transformed(run.config["dataset"], "train", InputTransform.from_dict(run.config.get("input_transform")),
                                 with_maps=run.needs_maps)
        model = type(run.model)(run.model.config).fit(train)
    return calibrate_run_folder(run_dir(run_id), model.predict(val), val, radii=radii)


def checkpoint_stamp(run_id: str) -> tuple[str, int]:
    """``(run_id, model.pt mtime in ns)``: a cache key that changes when a run is retrained."""
    path = run_dir(run_id) / "model.pt"
    return run_id, path.stat().st_mtime_ns if path.is_file() else 0
