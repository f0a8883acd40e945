"""A trained network with its feature normalization: predicts like a baseline.

    model = NeuralModel.from_checkpoint(payload)     # payload from train.runs.load_checkpoint
    pred = model.predict(load_inputs("ds", "test"))  # Prediction in scene metres
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import Batch, FeatureSpec, make_batch
from rflocal_core.models.inputs import Inputs, Prediction, scene_extent
from rflocal_core.models.maps import MapBatch, MapSource
from rflocal_core.models.nets import LocNet, build_network
from rflocal_core.models.registry import NETWORKS

#: Samples per forward pass when predicting a whole split.
PREDICT_CHUNK = 2048
#: The network outputs a prediction reads (``residual_db``: mapformer's physics residual).
PREDICT_OUTPUTS = ("mu", "sigma", "residual_db")


@dataclass
class NeuralModel:
    """A network, its name and the :class:`FeatureSpec` it was trained with."""

    name: str
    net: LocNet
    spec: FeatureSpec

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any]) -> NeuralModel:
        """Rebuild from a checkpoint payload (``config``: model_config + features; ``state``)."""
        name = payload.get("model")
        if name not in NETWORKS:
            msg = f"checkpoint: model {name!r} is not a network ({', '.join(NETWORKS)})"
            raise InvalidInputError(msg)
        cfg = payload.get("config") or {}
        spec = FeatureSpec.from_dict(cfg["features"])
        # the spec says how the inputs were encoded; configs from before frames existed leave it out
        # an option added since keeps the behaviour the run was trained with (``checkpoint_defaults``)
        before = getattr(NETWORKS[name].config_cls, "checkpoint_defaults", {})
        model_config = {**before, **(cfg.get("model_config") or {}), "frame": spec.frame}
        net = build_network(name, model_config, vocab_size=len(spec.node_keys))
        state = {k: torch.as_tensor(np.asarray(v)) for k, v in payload["state"].items()}
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:  # missing, unexpected or mis-shaped weights
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            msg = (f"checkpoint: the weights of this {name} run do not fit the {name} network of this version "
                   f"(it was probably trained by an older one; train it again): {first}")
            raise InvalidInputError(msg) from exc
        net.eval()
        return cls(name, net, spec)

    def checkpoint_config(self) -> dict[str, Any]:
        return {"model_config": self.net.config.to_dict(), "features": self.spec.to_dict()}

    @property
    def any_scene(self) -> bool:
        """Whether it predicts in a scene it was not trained on: a set network trained in the sample frame, or
        a map network in the window frame (given that scene's maps with the inputs, as a dataset holds them)."""
        return self.spec.frame == ("window" if self.needs_maps else "sample")

    @property
    def needs_maps(self) -> bool:
        """Whether the network reads radio maps and scene rasters (``mapformer``, ``locheatmap``)."""
        return bool(getattr(self.net, "needs_maps", False))

    @property
    def map_res(self) -> int:
        """Cells per side of the map grid the network reads (of the training square, or of each window)."""
        return int(getattr(self.net.config, "map_res", None) or getattr(self.net.config, "res", 64))

    def map_source(self, x: Inputs) -> MapSource | None:
        """The maps of ``x`` on this model's grid (None for networks without maps)."""
        if not self.needs_maps:
            return None
        reads = getattr(self.net.config, "reads_map_channels", None)  # SINR/ToA/AoA maps (issues 18, 19)
        channels = bool(reads()) if callable(reads) else bool(getattr(self.net.config, "use_map_channels", False))
        return MapSource.from_inputs(x, self.spec, res=self.map_res, channels=channels)

    def inputs(self, batch: Batch, source: MapSource | None, rows: np.ndarray | None = None, *,
               size: int = PREDICT_CHUNK) -> Iterator[Batch | MapBatch]:
        """The network's inputs for ``batch`` in chunks of ``size`` samples, on the CPU.

        ``rows``: the rows of ``source``'s inputs that ``batch`` holds (default: all, in order).
        Set networks get :meth:`Batch.compact`-ed tokens; map networks a :class:`MapBatch`.
        """
        rows = np.arange(len(batch)) if rows is None else np.asarray(rows)
        for start in range(0, len(batch), size):
            part = batch.index(slice(start, start + size))
            yield part.compact() if source is None else source.batch(part, rows[start:start + size])

    def chunks(self, batch: Batch, source: MapSource | None, rows: np.ndarray | None = None, *,
               size: int = PREDICT_CHUNK) -> Iterator[tuple[Any, dict[str, torch.Tensor]]]:
        """``(input, output)`` of the network over ``batch`` in chunks (the caller sets the mode).

        ``rows``: the rows of ``source``'s inputs that ``batch`` holds (default: all, in order).
        """
        device = next(self.net.parameters()).device
        for inp in self.inputs(batch, source, rows, size=size):
            inp = inp.to(device)
            yield inp, self.net(inp)

    def forward_numpy(self, inp: Batch | MapBatch) -> dict[str, np.ndarray]:
        """The outputs a prediction reads (``mu``, ``sigma``, ``residual_db`` where given) of one chunk,
        float32 on the CPU; the network is in eval mode (this is what another backend replaces)."""
        device = next(self.net.parameters()).device
        # mapformer's refinement re-enables gradients for the position inside (not under inference_mode)
        with torch.no_grad():
            out = self.net(inp.to(device))
        return {k: out[k].detach().float().cpu().numpy() for k in PREDICT_OUTPUTS if k in out}

    def predict_batch(self, batch: Batch, source: MapSource | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Normalized (mu, sigma), each [N, 2] float64, for an encoded batch (eval mode)."""
        mu, sigma, _ = self._predict_all(batch, source)
        return mu, sigma

    def _predict_all(self, batch: Batch, source: MapSource | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        was_training = self.net.training
        if was_training:  # switching modes walks every module: ~0.3 ms of a ~1 ms batch-1 prediction
            self.net.eval()
        mus, sigmas, residuals = [], [], []
        try:
            for inp in self.inputs(batch, source):
                out = self.forward_numpy(inp)
                mus.append(out["mu"])
                sigmas.append(out["sigma"])
                if "residual_db" in out:
                    residuals.append(out["residual_db"])
        finally:
            if was_training:
                self.net.train()
        if not mus:
            return np.zeros((0, 2)), np.zeros((0, 2)), None
        residual = np.concatenate(residuals).astype(np.float64) if residuals else None
        return np.concatenate(mus).astype(np.float64), np.concatenate(sigmas).astype(np.float64), residual

    def predict(self, x: Inputs, *, unknown_nodes: str = "allow") -> Prediction:
        """Positions [N, 2] in scene metres with a 1-sigma uncertainty per axis.

        ``info["residual_db"]`` [N]: for networks with a physics residual (``mapformer``), the RMS
        difference (dB) between the observed RSS and the maps at the predicted position.
        """
        batch = make_batch(x, self.spec, unknown_nodes=unknown_nodes)
        mu, sigma, residual = self._predict_all(batch, self.map_source(x))
        info: dict[str, Any] = {"model": self.name}
        if residual is not None:
            info["residual_db"] = residual
        pos = batch.to_metres(mu, self.spec)
        if self.any_scene:  # a window or a sample's square may reach past its scene: stay in the scene given
            ext = scene_extent(x)
            pos = np.stack([np.clip(pos[:, 0], ext[:, 0], ext[:, 1]), np.clip(pos[:, 1], ext[:, 2], ext[:, 3])], 1)
        return Prediction(pos, sigma * batch.scales(self.spec)[:, None], info)


def check_timing_maps(net_config: Any, x: Inputs) -> None:
    """Refuse to train a network with ``prior_timing="line_or_maps"`` on data without ToA/AoA maps: the option
    would silently be the straight line (it falls back per site, which suits prediction, not training)."""
    timing = getattr(net_config, "prior_timing", "line")
    if timing == "line" or not x.maps:
        return
    if any("toa_ns" in maps.channels and "aoa_deg" in maps.channels for maps in x.maps.values()):
        return
    msg = (f"prior_timing: {timing!r} reads the ToA/AoA maps, but dataset {x.dataset!r} has none; expected "
           "'line', or a dataset generated with timing_maps")
    raise InvalidInputError(msg)
