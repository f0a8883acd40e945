"""A network as an ONNX graph, and onnxruntime as a second backend that predicts like PyTorch.

The graph takes the tensors of a :class:`~rflocal_core.models.features.Batch` (and, for the
map networks, of a :class:`~rflocal_core.models.maps.MapBatch`) as named inputs, with the
batch and report-slot axes dynamic, and returns what a prediction reads::

    inputs   node_xy [N, S, 2] f32, feats [N, S, F] f32, node_id [N, S] i64, mask [N, S] bool
             (heimdall with use_iq also) iq [N, S, 2, 1024] i16, iq_ok [N, S] bool
             (mapformer, locheatmap also) site_maps [N, S, H, W] f32, site_ok [N, S, H, W] bool,
             site_has_map [N, S] bool, scene_rasters [N, C, H, W] f32
    outputs  mu [N, 2], sigma [N, 2] on the unit square (mapformer also residual_db [N])

    names, outputs = export_graph(model, example, path)      # model: a NeuralModel
    onnx = OnnxModel.wrap(model, onnx_session(path), path)   # predicts through onnxruntime
    worst = compare_backends(model, onnx, batch, source)     # max |onnx - torch| per output

The normalization (:class:`~rflocal_core.models.features.FeatureSpec`) and the maps are made in
Python as for PyTorch; only the network runs in onnxruntime. Exported in eval mode: no dropout,
no augmentation; mapformer's inference-time refinement (Adam steps on the position,
``refine_steps > 0``) and earlier-report history tokens are not part of a graph (see
:func:`exportable`). A network with an IQ branch takes each report's capture as ADC codes, a fixed
:data:`~rflocal_core.iq.CAPTURE_SAMPLES` per capture (a report without one: zeros and ``iq_ok`` false).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import Batch
from rflocal_core.models.maps import MapBatch, MapSource
from rflocal_core.models.neural import PREDICT_OUTPUTS, NeuralModel
from rflocal_core.options import check_options, option

#: What runs a network when a run predicts.
BACKENDS = ("torch", "onnxruntime")
#: Largest difference allowed between onnxruntime's and PyTorch's outputs (unit square; dB for residual_db).
EXPORT_TOLERANCE = 1e-4
#: ONNX operator set of the exported graphs.
OPSET = 18
#: Graph inputs of every network, then of the map networks; those with a report-slot axis.
SET_INPUTS = ("node_xy", "feats", "node_id", "mask")
IQ_INPUTS = ("iq", "iq_ok")
MAP_INPUTS = ("site_maps", "site_ok", "site_has_map", "scene_rasters")
SLOT_INPUTS = (*SET_INPUTS, "site_maps", "site_ok", "site_has_map", *IQ_INPUTS)


@dataclass(frozen=True)
class PredictOptions:
    """How a run predicts.

    Parameters
    ----------
    backend : str
        ``"torch"``: the network in PyTorch; ``"onnxruntime"``: the run's ONNX export (made and
        checked against PyTorch on the validation split at first use). Baselines run in Python
        whichever is chosen.
    """

    backend: str = option("torch", choices=BACKENDS, label="Backend",
                          help="what runs a network: torch (PyTorch) or onnxruntime (the run's ONNX export, made and "
                               "checked against PyTorch at first use); baselines run in Python either way")

    def __post_init__(self) -> None:
        check_options(self)


class SetGraph(nn.Module):
    """A set network (setnet, heimdall, fpnet, fpnet_knn) with tensor inputs and a tuple of outputs."""

    def __init__(self, net: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.net, self.outputs = net, outputs

    def forward(self, node_xy: torch.Tensor, feats: torch.Tensor, node_id: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        truth = torch.zeros_like(node_xy[:, 0])  # read by the losses only
        out = self.net(Batch(node_xy, feats, node_id, mask, truth))
        return tuple(out[k] for k in self.outputs)


class IQSetGraph(SetGraph):
    """A set network with an IQ branch (heimdall ``use_iq``): the captures and their mask are two more inputs."""

    def forward(self, node_xy: torch.Tensor, feats: torch.Tensor, node_id: torch.Tensor,  # type: ignore[override]
                mask: torch.Tensor, iq: torch.Tensor, iq_ok: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(Batch(node_xy, feats, node_id, mask, torch.zeros_like(node_xy[:, 0]), iq=iq, iq_ok=iq_ok))
        return tuple(out[k] for k in self.outputs)


class MapGraph(nn.Module):
    """A map network (mapformer, locheatmap) with tensor inputs; the unit square's side is a constant."""

    def __init__(self, net: nn.Module, outputs: tuple[str, ...], extent_m: float | None) -> None:
        super().__init__()
        self.net, self.outputs, self.extent_m = net, outputs, extent_m

    def forward(self, node_xy: torch.Tensor, feats: torch.Tensor, node_id: torch.Tensor, mask: torch.Tensor,
                site_maps: torch.Tensor, site_ok: torch.Tensor, site_has_map: torch.Tensor,
                scene_rasters: torch.Tensor) -> tuple[torch.Tensor, ...]:
        base = Batch(node_xy, feats, node_id, mask, torch.zeros_like(node_xy[:, 0]))
        out = self.net(MapBatch(base, site_maps, site_ok, site_has_map, scene_rasters, self.extent_m))
        return tuple(out[k] for k in self.outputs)


def exportable(model: NeuralModel) -> str | None:
    """Why ``model`` cannot be exported as a graph that predicts like it, or None when it can."""
    if getattr(model.net.config, "use_map_channels", False):
        return (f"use_map_channels: this {model.name} reads SINR/ToA/AoA maps, which its ONNX graph does not take "
                "as inputs yet; expected use_map_channels=false")
    if getattr(model.net.config, "prior_timing", "line") != "line":
        return (f"prior_timing: this {model.name}'s prior reads ToA/AoA maps, which its ONNX graph does not take "
                "as inputs yet; expected prior_timing=line")
    refine = int(getattr(model.net.config, "refine_steps", 0) or 0)
    if refine > 0:
        return (f"refine_steps: {model.name} refines its position with {refine} gradient steps at inference, "
                "which an ONNX graph cannot do; expected refine_steps=0 (train it again without refinement)")
    return None


def onnx_feed(inp: Batch | MapBatch) -> dict[str, np.ndarray]:
    """The graph inputs of a network input, as contiguous numpy arrays of the graph's types."""
    base = inp.base if isinstance(inp, MapBatch) else inp

    def arr(t: torch.Tensor, dtype: Any) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy().astype(dtype, copy=False))

    feed = {"node_xy": arr(base.node_xy, np.float32), "feats": arr(base.feats, np.float32),
            "node_id": arr(base.node_id, np.int64), "mask": arr(base.mask, np.bool_)}
    if base.iq is not None:
        feed.update(iq=arr(_full_captures(base.iq), np.int16), iq_ok=arr(base.iq_ok, np.bool_))
    if isinstance(inp, MapBatch):
        feed.update(site_maps=arr(inp.site_maps, np.float32), site_ok=arr(inp.site_ok, np.bool_),
                    site_has_map=arr(inp.site_has_map, np.bool_), scene_rasters=arr(inp.scene_rasters, np.float32))
    return feed


def _full_captures(iq_codes: torch.Tensor) -> torch.Tensor:
    """Captures of the graph's fixed length: a batch without any (one placeholder sample) becomes zeros."""
    from rflocal_core.iq import CAPTURE_SAMPLES

    n = iq_codes.shape[-1]
    if n == CAPTURE_SAMPLES:
        return iq_codes
    if n == 1 and not bool(iq_codes.any()):
        return iq_codes.new_zeros((*iq_codes.shape[:-1], CAPTURE_SAMPLES))
    msg = f"iq: expected captures of {CAPTURE_SAMPLES} samples for the ONNX graph, got {n}"
    raise InvalidInputError(msg)


def _pad_slot(t: torch.Tensor) -> torch.Tensor:
    """``t`` [N, S, ...] with one more slot of zeros (False)."""
    return torch.cat([t, torch.zeros_like(t[:, :1])], dim=1)


def example_input(inp: Batch | MapBatch) -> Batch | MapBatch:
    """A small export example from real samples: a few rows (at least 2, never as many as the slots),
    plus one empty (masked) slot, so no axis is traced at size 0 or 1 and both axes stay symbolic."""
    base = inp.base if isinstance(inp, MapBatch) else inp
    s = base.mask.shape[1] + 1
    n = 3 if s != 3 else 5
    rows = torch.arange(n) % base.mask.shape[0]
    pick = inp.index(rows)
    b = pick.base if isinstance(pick, MapBatch) else pick
    iq = {} if b.iq is None else {"iq": _pad_slot(_full_captures(b.iq)), "iq_ok": _pad_slot(b.iq_ok)}
    padded = Batch(*(_pad_slot(t) for t in (b.node_xy, b.feats, b.node_id, b.mask)), b.truth, **iq)
    if not isinstance(pick, MapBatch):
        return padded
    return MapBatch(padded, _pad_slot(pick.site_maps), _pad_slot(pick.site_ok), _pad_slot(pick.site_has_map),
                    pick.scene_rasters, pick.extent_m)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints its steps to stdout and logs warnings; the command line's stdout is JSON."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_graph(model: NeuralModel, example: Batch | MapBatch, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Write ``model``'s network as an ONNX graph to ``path``; return its input and output names.

    ``example``: a network input of real samples (see :func:`example_input`); the batch and
    slot axes are dynamic, the map grid is the network's.
    """
    net = model.net.eval()
    example = example_input(example)
    with torch.no_grad():
        out = net(example)
    outputs = tuple(k for k in PREDICT_OUTPUTS if k in out)
    maps = isinstance(example, MapBatch)
    if maps:
        graph: nn.Module = MapGraph(net, outputs, example.extent_m)
    else:
        graph = (IQSetGraph if example.iq is not None else SetGraph)(net, outputs)
    graph.eval()
    feed = onnx_feed(example)
    batch, slots = torch.export.Dim("batch", min=1), torch.export.Dim("slots", min=1)
    dynamic = {k: ({0: batch, 1: slots} if k in SLOT_INPUTS else {0: batch}) for k in feed}
    with _quiet(), torch.no_grad():
        # optimize=False: onnxruntime optimizes the graph itself when it loads it (export ~40% faster, same latency)
        program = torch.onnx.export(graph, tuple(torch.from_numpy(v) for v in feed.values()), dynamo=True,
                                    dynamic_shapes=dynamic, input_names=list(feed), output_names=list(outputs),
                                    opset_version=OPSET, optimize=False, verbose=False)
        program.save(str(path))
    return tuple(feed), outputs


def onnx_session(path: Path) -> Any:
    """An onnxruntime CPU session of the graph at ``path``, one thread per call (callers run in parallel)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@dataclass
class OnnxModel(NeuralModel):
    """A :class:`NeuralModel` whose network runs in onnxruntime (the same normalization and maps)."""

    session: Any = None
    path: str = ""

    @classmethod
    def wrap(cls, model: NeuralModel, session: Any, path: Path | str) -> OnnxModel:
        return cls(model.name, model.net, model.spec, session, str(path))

    @property
    def backend(self) -> str:
        return "onnxruntime"

    def forward_numpy(self, inp: Batch | MapBatch) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, onnx_feed(inp)), strict=True))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b|; where both are NaN the same (0), where one is: inf."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same_nan = np.isnan(a) & np.isnan(b)
    d = np.where(same_nan, 0.0, np.abs(a - b))
    return float(np.nan_to_num(d, nan=np.inf).max()) if d.size else 0.0


def compare_backends(model: NeuralModel, onnx: OnnxModel, batch: Batch, source: MapSource | None, *,
                     size: int = 256) -> dict[str, float]:
    """Largest difference per output between ``onnx`` and PyTorch (``model``) over ``batch``."""
    worst: dict[str, float] = {}
    model.net.eval()
    for inp in model.inputs(batch, source, size=size):
        ref, got = model.forward_numpy(inp), onnx.forward_numpy(inp)
        for key, value in ref.items():
            worst[key] = max(worst.get(key, 0.0), _max_diff(got[key], value))
    return worst
