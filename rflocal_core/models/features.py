"""Measurement reports as tensors for the neural models.

One sample is a set of report tokens (one per node slot). :class:`FeatureSpec` holds what is
fitted on the training split (scene extent, node vocabulary) and travels in the checkpoint,
so a model is rebuilt and fed exactly as it was trained.

Token features (all per slot, ``ok`` flags are 1 where the value is present):

==================  ============================================================
``node_xy``         node x, y in units of the training extent from the frame origin (see below)
``node_z``          node height / 100 m
``pos_ok``          node position known
``rss``             RSS mapped from [-120, -30] dBm to [0, 1] (clipped to [-0.5, 1.5])
``aoa``             (sin, cos) of the compass bearing node -> target
``toa``             ToA x c / the frame's side (a distance in sides; a range over :data:`TOA_MAX_SIDES` is dropped)
``tx``              known transmit power / 50 dBm
``node_id``         index in the node vocabulary (0: unknown node)
==================  ============================================================

With :attr:`FeatureSpec.phy` (the ``phy_features`` option of ``setnet``, ``heimdall`` and ``mapformer``), the
PHY/MAC report fields follow as :data:`PHY_COLUMNS`, each a value and an ``ok`` flag (0 where
the report lacks it): RSRQ (+20)/20 dB, SINR (+10)/40 dB, CQI/15, rank/4, serving (0/1), beam
L1-RSRP as ``rss``, Doppler/500 Hz (clipped to ±2), best beam id/32, neighbour rank/8 (0 serving;
cells outside the report's top K are masked), A3 and A5 events (0/1). With :attr:`FeatureSpec.iq_lags`
(heimdall's ``iq_lags``) the IQ timing columns :data:`IQ_LAG_COLUMNS` come last: each capture's lag
against the sample's strongest capture (:func:`iq_lag_columns`).
Frames (:attr:`FeatureSpec.frame`): ``"scene"`` places every sample in the training split's square
(origin and side fitted once), so a scene larger than or away from the training scenes is squeezed
into it. ``"sample"`` gives each sample its own square, centred on the centroid of its reporting
nodes of known position, of side twice their largest distance from it (at least
:data:`MIN_SAMPLE_SCALE` of the training side): node positions, ToA and the prediction are relative
to the nodes and their spread, the same in any scene of any size (issue 19), and the side itself is
one more token column, ``log_scale`` = ln(side / 1 km), since RSS speaks in absolute metres. Each
sample's origin and side travel in :attr:`Batch.origin_m` and :attr:`Batch.scale_m`.
``"window"`` (map networks, :data:`MAP_FRAMES`) gives each sample a square of fixed metres
(:attr:`FeatureSpec.window_cells` cells of :attr:`FeatureSpec.cell_m`) around a first estimate of its
position from its own reports (:func:`~rflocal_core.models.window.map_position` on its scene's maps: with
:attr:`FeatureSpec.centre` ``"prior"`` the physics prior's argmax at ``cell_m``; else
:func:`~rflocal_core.models.window.coarse_position` from the geometry alone), kept inside its
scene where the scene is larger, on its scene's lattice of ``cell_m`` cells (through the centres of the
scene's map cells, :func:`~rflocal_core.models.window.lattice_phase`): its maps are cut from the
scene's at that cell size (:class:`~rflocal_core.models.maps.WindowMapSource`), the same in any scene.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from rflocal_core.constants import C_M_PER_NS, SPEED_OF_LIGHT_M_S
from rflocal_core.errors import InvalidInputError
from rflocal_core.iq import lags_to_strongest
from rflocal_core.models.inputs import PHY_INPUT_FIELDS, Inputs, node_carriers, scene_extent, search_bounds
from rflocal_core.models.window import PRIOR_TIMINGS, coarse_position, lattice_phase, map_position

RSS_MIN_DBM, RSS_MAX_DBM = -120.0, -30.0
#: Frames of :class:`FeatureSpec` (see the module docstring).
FRAMES = ("scene", "sample")
#: Frames of the map networks (``mapformer``, ``locheatmap``).
MAP_FRAMES = ("scene", "window")
#: Where the window frame centres a window (:attr:`FeatureSpec.centre`).
WINDOW_CENTRES = ("search", "prior", "prior_top24")
#: Smallest side of a sample's square, as a fraction of the training side (nodes in one spot, one node).
MIN_SAMPLE_SCALE = 0.25
#: Unit of the ``log_scale`` column (m).
SCALE_REF_M = 1000.0
NODE_Z_SCALE_M = 100.0
TX_SCALE_DBM = 50.0
#: Longest ToA range a token holds, in sides of its frame's square (scene and sample frames; the window
#: frame's window is small against the scenes it is cut from, so ranges of many sides are ordinary there).
#: A longer range is dropped (``toa_ok`` false), not shortened: a shortened range pulls the physics
#: prior and the network toward its node (issue 19: a 256 m window in a 1.7 km city).
TOA_MAX_SIDES, WINDOW_TOA_MAX_SIDES = 4.0, 16.0

#: Columns of an earlier report (:attr:`Batch.hist`): RSS as the ``rss`` feature, age / AGE_SCALE_S; with
#: :attr:`FeatureSpec.hist_phy` the report's :data:`PHY_COLUMNS` follow (masked where it lacks them).
HIST_COLUMNS = ("rss", "age")
AGE_SCALE_S = 10.0

#: Columns of the dense per-token feature vector (see :func:`token_features`).
TOKEN_COLUMNS = ("node_z", "pos_ok", "rss", "rss_ok", "aoa_sin", "aoa_cos", "aoa_ok", "toa", "toa_ok", "tx", "tx_ok")

#: PHY/MAC token columns appended when :attr:`FeatureSpec.phy` (a value and its ``ok`` flag per field of
#: :data:`~rflocal_core.models.inputs.PHY_INPUT_FIELDS`), and how each value is scaled: (offset, scale, clip).
PHY_SCALING: dict[str, tuple[float, float, float]] = {
    "rsrq_db": (20.0, 20.0, 2.0), "sinr_db": (10.0, 40.0, 2.0), "cqi": (0.0, 15.0, 1.0), "ri": (0.0, 4.0, 2.0),
    "serving": (0.0, 1.0, 1.0), "beam_rsrp_dbm": (-RSS_MIN_DBM, RSS_MAX_DBM - RSS_MIN_DBM, 1.5),
    "doppler_hz": (0.0, 500.0, 2.0), "beam_id": (0.0, 32.0, 4.0), "neighbour_rank": (0.0, 8.0, 4.0),
    "event_a3": (0.0, 1.0, 1.0), "event_a5": (0.0, 1.0, 1.0),
}
PHY_COLUMNS = tuple(c for key in PHY_INPUT_FIELDS for c in (key, f"{key}_ok"))
#: Band token columns appended when :attr:`FeatureSpec.band` (issue 18): log2(carrier / BAND_REF_HZ) / 3
#: (3.5 GHz: 0, 28 GHz: 1), the same for every report of a sample, and its ``ok`` flag.
BAND_COLUMNS = ("band", "band_ok")
BAND_REF_HZ = 3.5e9
#: IQ timing token columns appended when :attr:`FeatureSpec.iq_lags` (issue 17): each capture's time difference
#: of arrival after the sample's strongest capture (:func:`~rflocal_core.iq.lags_to_strongest`) as a range
#: difference ``c * tdoa`` in frame units (clipped to ±4), the normalized correlation peak, and the ``ok`` flag.
IQ_LAG_COLUMNS = ("iq_lag", "iq_lag_q", "iq_lag_ok")
#: Least correlation peak of a lag that counts (``tdoa_multilateration``'s default ``min_quality``).
LAG_MIN_QUALITY = 0.1
#: Largest excess of a lag's range difference over the two receivers' distance (NLoS, a sample's error), m.
LAG_MARGIN_M = 50.0


def tracing() -> bool:
    """Whether a network is being traced for export (``torch.export``, ONNX).

    A forward pass may take a shortcut on its data (``if not mask.any(): return zeros``) when
    the general path gives the same answer; a traced graph must keep the general path, since it
    would otherwise hold only the branch of the example input.
    """
    exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling() or (exporting and exporting()))


def index_ordered(x: torch.Tensor, *, largest: bool) -> torch.Tensor:
    """float64 keys [N, M] that order ``x`` [N, M] (float32) as ``x`` does, equal values by index (lower first).

    For ``topk``: which of tied values it keeps is left to the backend, and PyTorch and
    onnxruntime choose differently; with these keys an exported graph picks what PyTorch picks.
    Adding ``j |x| 2^-24 / M`` stays within the gap to the next float32 (at least ``|x| 2^-24``);
    zeros are ordered by ``j 1e-200``, which no non-zero float32 notices in float64.
    """
    m = x.shape[1]
    j = torch.arange(m, device=x.device, dtype=torch.float64)
    x64 = x.double()
    finite = torch.where(torch.isfinite(x64), x64.abs(), torch.zeros_like(x64))  # inf * 0 would be NaN
    step = (finite * (2.0 ** -24 / m) + 1e-200) * j
    return x64 - step if largest else x64 + step


#: The window frame's ``(cell_m, cells[, centre[, centre_timing]])`` (:meth:`FeatureSpec.fit`).
WindowArg = tuple[float, int] | tuple[float, int, str] | tuple[float, int, str, str]


@dataclass(frozen=True)
class FeatureSpec:
    """Normalization fitted on a training split.

    Attributes
    ----------
    origin_m : tuple of float
        Lower-left corner (x, y) of the normalized square (m).
    extent_m : float
        Side of the normalized square (m): positions map to [0, 1] in both axes.
    node_keys : tuple of str
        Node vocabulary (``"<scene>#<site>"``); index i + 1 in ``node_id``; 0 is unknown.
    max_slots : int
        Report slots per sample in training (informative; any count is accepted).
    frame : str
        ``"scene"`` (one square for every sample) or ``"sample"`` (origin at each sample's nodes);
        checkpoints from before frames existed are ``"scene"``.
    phy : bool
        Append the PHY/MAC token columns :data:`PHY_COLUMNS` (masked where a report lacks them).
    iq : bool
        Carry each report's IQ capture (:attr:`Batch.iq`) for networks with an IQ branch.
    cell_m, window_cells : float, int
        ``"window"`` frame: the cell size (m) and cells per side of each sample's window (0 otherwise).
    band : bool
        Append the band token columns :data:`BAND_COLUMNS` (after the PHY ones; masked where the band is unknown).
    iq_lags : bool
        Append the IQ timing columns :data:`IQ_LAG_COLUMNS` (last; masked where a report has no capture).
    centre : str
        ``"window"`` frame: where a window is centred (:data:`WINDOW_CENTRES`): ``"search"``, physics map
        matching at 16 m (checkpoints from before this field); ``"prior"``, the physics prior's argmax over
        the scene's whole ``cell_m`` lattice (exact branch and bound, since 2026-12-03 12:30 UTC);
        ``"prior_top24"``, that argmax searched only near the 24 best 16 m cells (``"prior"`` before then)
        (:func:`~rflocal_core.models.window.map_position`).
    hist_phy : bool
        Earlier reports (:attr:`Batch.hist`) carry the :data:`PHY_COLUMNS` after :data:`HIST_COLUMNS`
        (mapformer's history tokens; off in checkpoints from before this field).
    centre_timing : str
        ``"window"`` frame, ``centre`` ``"prior"`` / ``"prior_top24"``: the ToA/AoA terms of the prior the window is
        centred with (:data:`~rflocal_core.models.window.PRIOR_TIMINGS`): ``"line"`` (checkpoints from before this
        field), or ``"line_or_maps"`` / ``"line_or_pooled_maps"`` (mapformer's ``prior_timing``: the network's own
        prior).
    """

    origin_m: tuple[float, float]
    extent_m: float
    node_keys: tuple[str, ...]
    max_slots: int
    frame: str = "scene"
    phy: bool = False
    iq: bool = False
    cell_m: float = 0.0
    window_cells: int = 0
    band: bool = False
    iq_lags: bool = False
    centre: str = "search"
    hist_phy: bool = False
    centre_timing: str = "line"

    @property
    def window_m(self) -> float:
        """Side (m) of a sample's window in the ``"window"`` frame."""
        return self.cell_m * self.window_cells

    @classmethod
    def fit(cls, train: Inputs, *, frame: str = "scene", phy: bool = False, iq: bool = False,
            window: WindowArg | None = None, band: bool = False,
            iq_lags: bool = False, hist_phy: bool = False) -> FeatureSpec:
        """Fit on a training split; ``window``: ``(cell_m, cells[, centre[, centre_timing]])`` of the ``"window"``
        frame (required there; ``centre`` ``"search"``, ``centre_timing`` ``"line"`` by default)."""
        return cls.from_bounds(search_bounds(train), split_vocab(train), int(train.node_mask.shape[1]), frame=frame,
                               phy=phy, iq=iq, window=window, band=band, iq_lags=iq_lags, hist_phy=hist_phy)

    @classmethod
    def from_bounds(cls, b: list[float], vocab: set[str], max_slots: int, *, frame: str = "scene", phy: bool = False,
                    iq: bool = False, window: WindowArg | None = None, band: bool = False,
                    iq_lags: bool = False, hist_phy: bool = False) -> FeatureSpec:
        """As :meth:`fit`, from the split's :func:`~rflocal_core.models.inputs.search_bounds` ``b`` and its
        :func:`split_vocab` (a split read in blocks: the bounds of its box, the union of its vocabularies)."""
        if frame not in (*FRAMES, "window"):
            msg = f"frame: expected one of {', '.join((*FRAMES, 'window'))}, got {frame!r}"
            raise InvalidInputError(msg)
        if frame == "window" and (window is None or not window[0] > 0 or int(window[1]) < 1):
            msg = f"window: the window frame needs a cell size > 0 m and at least one cell, got {window!r}"
            raise InvalidInputError(msg)
        extent = max(b[1] - b[0], b[3] - b[2], 1.0)
        cx, cy = (b[0] + b[1]) / 2, (b[2] + b[3]) / 2
        cell, cells = (float(window[0]), int(window[1])) if frame == "window" and window else (0.0, 0)
        centre = str(window[2]) if frame == "window" and window and len(window) > 2 else "search"
        if centre not in WINDOW_CENTRES:
            msg = f"window_centre: expected one of {', '.join(WINDOW_CENTRES)}, got {centre!r}"
            raise InvalidInputError(msg)
        timing = str(window[3]) if frame == "window" and window and len(window) > 3 else "line"
        if timing not in PRIOR_TIMINGS:
            msg = f"prior_timing: expected one of {', '.join(PRIOR_TIMINGS)}, got {timing!r}"
            raise InvalidInputError(msg)
        return cls((cx - extent / 2, cy - extent / 2), float(extent), tuple(sorted(vocab)), int(max_slots),
                   frame, bool(phy), bool(iq), cell, cells, bool(band), bool(iq_lags), centre, bool(hist_phy), timing)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(tuple(float(v) for v in d["origin_m"]), float(d["extent_m"]), tuple(d["node_keys"]),
                   int(d["max_slots"]), str(d.get("frame", "scene")),
                   bool(d.get("phy", False)), bool(d.get("iq", False)),  # checkpoints before these: off
                   float(d.get("cell_m", 0.0)), int(d.get("window_cells", 0)), bool(d.get("band", False)),
                   bool(d.get("iq_lags", False)), str(d.get("centre", "search")), bool(d.get("hist_phy", False)),
                   str(d.get("centre_timing", "line")))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_unit(self, xy_m: np.ndarray) -> np.ndarray:
        return (xy_m - np.asarray(self.origin_m)) / self.extent_m

    def to_metres(self, xy_unit: np.ndarray) -> np.ndarray:
        return np.asarray(xy_unit) * self.extent_m + np.asarray(self.origin_m)

    def frames(self, x: Inputs) -> tuple[np.ndarray, np.ndarray]:
        """Origin [N, 2] (m) and side [N] (m) of each sample's square (see the module docstring).

        Scene frame: the spec's square for all. Sample frame: centred on the centroid of the reporting
        nodes of known position, side twice their largest distance from it, at least
        ``MIN_SAMPLE_SCALE * extent_m``; a sample without such a node gets the spec's square.
        """
        n = x.node_mask.shape[0]
        origin = np.broadcast_to(np.asarray(self.origin_m, dtype=np.float64), (n, 2)).copy()
        scale = np.full(n, float(self.extent_m))
        if self.frame == "scene":
            return origin, scale
        if self.frame == "window":
            return self._windows(x, origin)
        heard = np.isfinite(x.rss_dbm) | np.isfinite(x.aoa_deg) | np.isfinite(x.toa_ns)
        use = x.node_mask & x.known_nodes & heard
        count = use.sum(1)
        xy = np.where(use[..., None], np.nan_to_num(x.node_pos_m[..., :2]), 0.0)
        centroid = xy.sum(1) / np.maximum(count, 1)[:, None]
        spread = np.where(use, np.hypot(*(xy - centroid[:, None]).transpose(2, 0, 1)), 0.0).max(1, initial=0.0)
        own = np.maximum(2.0 * spread, MIN_SAMPLE_SCALE * self.extent_m)
        has = count > 0
        scale = np.where(has, own, scale)
        origin = np.where(has[:, None], centroid - scale[:, None] / 2, origin)
        return origin, scale

    def _windows(self, x: Inputs, fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window frame: a ``window_m`` square on the ``cell_m`` lattice around each sample's first estimate,
        shifted inside its scene's extent where the scene is wider (a target inside the scene stays inside)."""
        side, cell = self.window_m, self.cell_m
        ext = scene_extent(x)  # [N, 4]: x0, x1, y0, y1 of the scene being predicted, never the training one
        centre = np.stack([(ext[:, 0] + ext[:, 1]) / 2, (ext[:, 2] + ext[:, 3]) / 2], 1)
        centre = np.where(np.isfinite(centre), centre, fallback + self.extent_m / 2)
        first, has = coarse_position(x)
        fine = self.cell_m if self.centre != "search" else None  # the prior's argmax: fewer windows miss (issue 19)
        # the scene's own maps, where it has them: far fewer miss; "prior_top24": near the 16 m search's best cells
        # centre_timing: the network's own prior (mapformer's prior_timing), ToA/AoA maps and all
        mapped, on_map = map_position(x, fine_m=fine, exact=self.centre == "prior", prior_timing=self.centre_timing)
        first, has = np.where(on_map[:, None], mapped, first), has | on_map
        origin = np.where(has[:, None], first, centre) - side / 2
        for axis in (0, 1):
            lo, hi = ext[:, 2 * axis], ext[:, 2 * axis + 1]
            wide = np.isfinite(lo) & np.isfinite(hi) & (hi - lo >= side)
            narrow = np.isfinite(lo) & np.isfinite(hi) & ~wide
            inside = np.clip(origin[:, axis], lo, np.where(wide, hi - side, lo))
            origin[:, axis] = np.where(wide, inside, np.where(narrow, centre[:, axis] - side / 2, origin[:, axis]))
        phase = lattice_phase(x, cell)  # on the scene's own map cells: windows copy the maps, not interpolate
        # half a cell up, never to even: a first estimate on a cell centre (the prior's) is then always the
        # window's cell W/2 - 1 (np.round flipped between two cells by the parity of the lattice index)
        return np.floor((origin - phase) / cell + 0.5 + 1e-6) * cell + phase, np.full(len(origin), side)


def token_columns(frame: str) -> tuple[str, ...]:
    """Columns of a token in ``frame``: :data:`TOKEN_COLUMNS`, then ``log_scale`` in the sample frame."""
    return (*TOKEN_COLUMNS, "log_scale") if frame == "sample" else TOKEN_COLUMNS


def split_vocab(x: Inputs) -> set[str]:
    """The node identity keys (:func:`node_keys`) of the slots holding a node in ``x``."""
    keys = node_keys(x)
    return {k for k in keys[x.node_mask].ravel().tolist() if k}


def node_keys(x: Inputs) -> np.ndarray:
    """[N, S] object array of node identity keys ``"<scene>#<node index>"`` (``""``: no identity).

    The index is :attr:`Inputs.slot_site` (a site of a generated scene, a node of an
    imported dataset); drone waypoints have no identity.
    """
    scenes = list(x.scenes) or [x.dataset]
    keys = np.full(x.node_mask.shape, "", dtype=object)
    for (i, j), site in np.ndenumerate(x.slot_site):
        if site >= 0 and x.node_mask[i, j]:
            keys[i, j] = f"{scenes[min(int(x.scene_idx[i]), len(scenes) - 1)]}#{site}"
    return keys


@dataclass
class Batch:
    """Tensors of a set of samples. Shapes: N samples, S slots.

    Attributes
    ----------
    node_xy : [N, S, 2] float32, normalized (0 where unknown)
    feats : [N, S, F] float32, :data:`TOKEN_COLUMNS` (then :data:`PHY_COLUMNS` with PHY features, ...,
        :data:`IQ_LAG_COLUMNS` last with IQ lags)
    node_id : [N, S] int64
    mask : [N, S] bool, slots that carry at least one measurement
    truth : [N, 2] float32, normalized (NaN where absent)
    hist : [N, T, S, H] float32 or None
        Earlier reports of the slots (sequences only): :data:`HIST_COLUMNS` per report time
        and slot (then :data:`PHY_COLUMNS` with :attr:`FeatureSpec.hist_phy`); None when no sample has an
        earlier report.
    hist_mask : [N, T, S] bool or None
        Where ``hist`` holds a report: an RSS at an earlier time of a slot that reports now.
    origin_m : [N, 2] float64 or None
        Origin (m) of each sample's square (:meth:`FeatureSpec.frames`). None in hand-built batches
        (the spec's square).
    scale_m : [N] float64 or None
        Side (m) of each sample's square: metres = unit x scale_m + origin_m.
    iq : [N, S, 2, n] int16 or None
        Each report's IQ capture as ADC codes (:attr:`FeatureSpec.iq`; the IQ branch scales each
        capture to unit RMS, so the per-capture scale is not needed).
    iq_ok : [N, S] bool or None
        Where ``iq`` holds a capture.
    """

    node_xy: torch.Tensor
    feats: torch.Tensor
    node_id: torch.Tensor
    mask: torch.Tensor
    truth: torch.Tensor
    hist: torch.Tensor | None = None
    hist_mask: torch.Tensor | None = None
    origin_m: torch.Tensor | None = None
    scale_m: torch.Tensor | None = None
    iq: torch.Tensor | None = None
    iq_ok: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.mask.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        hist = {} if self.hist is None else {"hist": self.hist.to(device), "hist_mask": self.hist_mask.to(device)}
        # the origins stay on the host: they only map predictions back to metres
        scale = None if self.scale_m is None else self.scale_m.to(device)  # augmentation scales jitter by it
        iq = {} if self.iq is None else {"iq": self.iq.to(device), "iq_ok": self.iq_ok.to(device)}
        return Batch(*(t.to(device) for t in (self.node_xy, self.feats, self.node_id, self.mask, self.truth)), **hist,
                     origin_m=self.origin_m, scale_m=scale, **iq)

    def index(self, rows: torch.Tensor | np.ndarray | slice) -> Batch:
        hist = {} if self.hist is None else {"hist": self.hist[rows], "hist_mask": self.hist_mask[rows]}
        frame = {k: None if getattr(self, k) is None else getattr(self, k)[rows]
                 for k in ("origin_m", "scale_m", "iq", "iq_ok")}
        return Batch(self.node_xy[rows], self.feats[rows], self.node_id[rows], self.mask[rows], self.truth[rows],
                     **hist, **frame)

    def to_metres(self, xy_unit: np.ndarray, spec: FeatureSpec) -> np.ndarray:
        """[N, 2] positions of this batch's samples in metres from their frame units."""
        origin = np.asarray(spec.origin_m) if self.origin_m is None else self.origin_m.cpu().numpy()
        return np.asarray(xy_unit) * self.scales(spec)[:, None] + origin

    def scales(self, spec: FeatureSpec) -> np.ndarray:
        """[N] side (m) of each sample's square (a length in units times it is metres)."""
        return np.full(len(self), spec.extent_m) if self.scale_m is None else self.scale_m.cpu().numpy()

    def with_tokens(self, *, node_xy: torch.Tensor | None = None, feats: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None, truth: torch.Tensor | None = None,
                    hist_mask: torch.Tensor | None = None) -> Batch:
        """The same batch with some tensors replaced; the history follows ``mask`` (a slot that
        no longer reports loses its earlier reports too)."""
        mask = self.mask if mask is None else mask
        hm = self.hist_mask if hist_mask is None else hist_mask
        if hm is not None:
            hm = hm & mask.unsqueeze(1)
        return Batch(self.node_xy if node_xy is None else node_xy, self.feats if feats is None else feats,
                     self.node_id, mask, self.truth if truth is None else truth, self.hist, hm, self.origin_m,
                     self.scale_m, self.iq, self.iq_ok)

    def compact(self) -> Batch:
        """Move each sample's reporting slots to the front and drop slots no sample uses.

        The models are invariant to slot order (node ids travel with their slots), so this
        only saves work: imported datasets have many nodes but few reports per sample.
        """
        n, s = self.mask.shape
        keep = max(int(self.mask.sum(1).max()) if n else 0, 1)
        if keep == s:
            return self
        iq = {}
        if n == 1 and keep == int(self.mask.sum()):  # batch-1 inference: the reporting slots in order, one index each
            pick = self.mask[0]
            if self.iq is not None:
                iq = {"iq": self.iq[:, pick], "iq_ok": self.iq_ok[:, pick]}
            return Batch(self.node_xy[:, pick], self.feats[:, pick], self.node_id[:, pick], self.mask[:, pick],
                         self.truth, origin_m=self.origin_m, scale_m=self.scale_m, **iq)
        order = torch.argsort((~self.mask).to(torch.int8), dim=1, stable=True)[:, :keep]

        def take(t: torch.Tensor) -> torch.Tensor:
            idx = order.reshape(n, keep, *([1] * (t.dim() - 2))).expand(n, keep, *t.shape[2:])
            return torch.gather(t, 1, idx)

        # the history is dropped: only mapformer reads it, and it is never compacted (its maps follow the slots)
        if self.iq is not None:
            iq = {"iq": take(self.iq), "iq_ok": take(self.iq_ok)}
        return Batch(take(self.node_xy), take(self.feats), take(self.node_id), take(self.mask), self.truth,
                     origin_m=self.origin_m, scale_m=self.scale_m, **iq)

    def col(self, name: str) -> torch.Tensor:
        return self.feats[..., TOKEN_COLUMNS.index(name)]


def phy_token_columns(x: Inputs) -> np.ndarray:
    """[N, S, len(PHY_COLUMNS)] float32: each PHY/MAC field scaled (:data:`PHY_SCALING`) and its ``ok`` flag."""
    n, s = x.node_mask.shape
    phy = x.phy if x.phy is not None else np.full((n, s, len(PHY_INPUT_FIELDS)), np.nan)
    return scale_phy(phy, x.node_mask)


def scale_phy(phy: np.ndarray, present: np.ndarray) -> np.ndarray:
    """[..., len(PHY_COLUMNS)] float32 of PHY/MAC fields ``phy`` [..., P] (NaN: absent) where ``present`` [...]:
    each value scaled (:data:`PHY_SCALING`), then its ``ok`` flag; 0 where absent."""
    cols = []
    for k, key in enumerate(PHY_INPUT_FIELDS):
        offset, scale, clip = PHY_SCALING[key]
        ok = np.isfinite(phy[..., k]) & present
        value = np.clip((np.nan_to_num(phy[..., k]) + offset) / scale, -clip, clip)
        cols += [value * ok, ok]
    return np.stack(cols, -1).astype(np.float32)


def token_width(frame: str, *, phy: bool = False, band: bool = False, iq_lags: bool = False) -> int:
    """Width of a token's feature vector: :func:`token_columns` of ``frame``, plus :data:`PHY_COLUMNS` with PHY,
    :data:`BAND_COLUMNS` with the band and :data:`IQ_LAG_COLUMNS` with the IQ timing."""
    return (len(token_columns(frame)) + (len(PHY_COLUMNS) if phy else 0) + (len(BAND_COLUMNS) if band else 0)
            + (len(IQ_LAG_COLUMNS) if iq_lags else 0))


def iq_lag_columns(x: Inputs, mask: np.ndarray, scale_m: np.ndarray) -> np.ndarray:
    """[N, S, 3] float32 :data:`IQ_LAG_COLUMNS`: each capture's range difference to the sample's strongest capture
    (``c * tdoa`` over the frame side ``scale_m`` [N]), its correlation quality and ``ok``; 0 without a capture.

    A lag counts (``ok``) where its correlation peak reaches :data:`LAG_MIN_QUALITY` (below, noise alone could
    have made it) and its range difference is one geometry allows: at most the distance between the two
    receivers plus :data:`LAG_MARGIN_M` (a noise peak can lie a kilometre away, and one such value swamps
    the others).
    """
    n, s = mask.shape
    if x.iq is None or x.iq_scale is None:
        return np.zeros((n, s, len(IQ_LAG_COLUMNS)), np.float32)
    # the strongest of the captures that count here (a receiver a transform dropped is no reference)
    scale = np.where(mask, x.iq_scale, np.nan)
    tdoa, quality, ref = lags_to_strongest(x.iq, scale, t0_s=x.iq_t0_s, sample_rate_hz=x.iq_sample_rate_hz)
    rd = np.nan_to_num(tdoa) * SPEED_OF_LIGHT_M_S
    pos = x.node_pos_m
    baseline = np.linalg.norm(pos - np.take_along_axis(pos, np.maximum(ref, 0)[:, None, None], 1), axis=-1)
    baseline = np.where(np.isfinite(baseline), baseline, np.inf)  # a node of unknown position: quality alone
    ok = np.isfinite(tdoa) & (np.nan_to_num(quality) >= LAG_MIN_QUALITY) & (np.abs(rd) <= baseline + LAG_MARGIN_M)
    lag = np.clip(rd / scale_m[:, None], -4.0, 4.0)
    return np.stack([lag * ok, np.nan_to_num(quality) * ok, ok], -1).astype(np.float32)


def band_token_columns(x: Inputs) -> np.ndarray:
    """[N, S, 2] float32: each slot's band (:data:`BAND_COLUMNS`), 0 where unknown."""
    carrier = node_carriers(x)
    known = np.isfinite(carrier) & (carrier > 0)
    ok = known & x.node_mask
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.clip(np.log2(np.where(known, carrier, BAND_REF_HZ) / BAND_REF_HZ) / 3.0, -2.0, 2.0)
    return np.stack([value * ok, ok], -1).astype(np.float32)


def make_batch(x: Inputs, spec: FeatureSpec, *, unknown_nodes: str = "allow") -> Batch:
    """Encode :class:`Inputs` as a :class:`Batch`.

    Parameters
    ----------
    unknown_nodes : str
        ``"allow"``: nodes outside the vocabulary get id 0; ``"error"``: raise
        :class:`InvalidInputError` naming them.
    """
    if not isinstance(x, Inputs):
        msg = f"x: expected Inputs (from load_inputs), got {type(x).__name__}"
        raise InvalidInputError(msg)
    n, s = x.node_mask.shape
    known = x.known_nodes
    origin, scale = spec.frames(x)
    xy = np.where(known[..., None], (np.nan_to_num(x.node_pos_m[..., :2]) - origin[:, None]) / scale[:, None, None],
                  0.0)
    z = np.where(np.isfinite(x.node_pos_m[..., 2]), x.node_pos_m[..., 2], 0.0) / NODE_Z_SCALE_M
    rss_ok = np.isfinite(x.rss_dbm) & x.node_mask
    rss = np.clip((np.nan_to_num(x.rss_dbm, nan=RSS_MIN_DBM) - RSS_MIN_DBM) / (RSS_MAX_DBM - RSS_MIN_DBM), -0.5, 1.5)
    aoa_ok = np.isfinite(x.aoa_deg) & x.node_mask
    aoa = np.deg2rad(np.nan_to_num(x.aoa_deg))
    toa = np.nan_to_num(x.toa_ns) * C_M_PER_NS / scale[:, None]
    toa_ok = np.isfinite(x.toa_ns) & x.node_mask & (toa <= (WINDOW_TOA_MAX_SIDES if spec.frame == "window" else
                                                            TOA_MAX_SIDES))
    toa = np.clip(toa, 0.0, None)
    tx_ok = np.isfinite(x.tx_power_dbm) & x.node_mask
    tx = np.nan_to_num(x.tx_power_dbm) / TX_SCALE_DBM
    cols = {
        "node_z": z, "pos_ok": known, "rss": rss * rss_ok, "rss_ok": rss_ok, "aoa_sin": np.sin(aoa) * aoa_ok,
        "aoa_cos": np.cos(aoa) * aoa_ok, "aoa_ok": aoa_ok, "toa": toa * toa_ok, "toa_ok": toa_ok, "tx": tx * tx_ok,
        "tx_ok": tx_ok,
    }
    if spec.frame == "sample":
        cols["log_scale"] = np.broadcast_to(np.log(scale / SCALE_REF_M)[:, None], (n, s))
    feats = np.stack([np.asarray(cols[c], dtype=np.float32) for c in token_columns(spec.frame)], axis=-1)
    if spec.phy:
        feats = np.concatenate([feats, phy_token_columns(x)], axis=-1)
    if spec.band:
        feats = np.concatenate([feats, band_token_columns(x)], axis=-1)
    heard = rss_ok | aoa_ok | toa_ok
    if (spec.iq or spec.iq_lags) and x.iq_scale is not None:  # a capture is a measurement of its own
        heard = heard | np.isfinite(x.iq_scale)
    mask = x.node_mask & heard
    if spec.iq_lags:
        feats = np.concatenate([feats, iq_lag_columns(x, mask, scale)], axis=-1)
    keys = node_keys(x)
    lookup = {k: i + 1 for i, k in enumerate(spec.node_keys)}
    ids = np.zeros((n, s), dtype=np.int64)
    unknown: set[str] = set()
    for (i, j), key in np.ndenumerate(keys):
        if key:
            ids[i, j] = lookup.get(key, 0)
            if ids[i, j] == 0 and mask[i, j]:
                unknown.add(key)
    if unknown and unknown_nodes == "error":
        msg = (f"x: node ids {sorted(unknown)[:5]} were never seen in training "
               f"(the model knows {len(spec.node_keys)} nodes, e.g. {list(spec.node_keys[:3])})")
        raise InvalidInputError(msg)
    truth = ((x.truth_m - origin) / scale[:, None]).astype(np.float32)
    hist, hist_mask = history_tensors(x, mask, phy=spec.hist_phy)
    return Batch(torch.from_numpy(xy.astype(np.float32)), torch.from_numpy(feats), torch.from_numpy(ids),
                 torch.from_numpy(mask), torch.from_numpy(truth), hist, hist_mask, torch.from_numpy(origin),
                 torch.from_numpy(scale), *(iq_tensors(x, mask) if spec.iq else (None, None)))


def history_tensors(x: Inputs, mask: np.ndarray, *, phy: bool = False
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(hist [N, T, S, H], hist_mask [N, T, S])`` of :attr:`Batch` (None, None without earlier reports).

    An earlier report is a slot's RSS at an earlier time of a slot that reports now (``mask`` [N, S]);
    with ``phy`` its PHY/MAC fields (:attr:`Inputs.phy_steps`) follow as :data:`PHY_COLUMNS`, masked where
    that report lacks them (all masked where the inputs hold none).
    """
    if x.rss_steps_dbm is None or x.step_age_s is None:
        return None, None
    age = x.step_age_s[..., None]  # [N, T, 1]
    hm = np.isfinite(x.rss_steps_dbm) & np.isfinite(age) & (age > 0) & mask[:, None, :]
    if not hm.any():
        return None, None
    h_rss = np.clip((np.nan_to_num(x.rss_steps_dbm, nan=RSS_MIN_DBM) - RSS_MIN_DBM)
                    / (RSS_MAX_DBM - RSS_MIN_DBM), -0.5, 1.5)
    h_age = np.broadcast_to(np.nan_to_num(age) / AGE_SCALE_S, h_rss.shape)
    cols = [np.stack([h_rss * hm, h_age * hm], -1).astype(np.float32)]
    if phy:
        cols.append(scale_phy(x.phy_steps, hm) if x.phy_steps is not None
                    else np.zeros((*hm.shape, len(PHY_COLUMNS)), np.float32))
    return torch.from_numpy(np.concatenate(cols, -1)), torch.from_numpy(hm)


def iq_tensors(x: Inputs, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(iq [N, S, 2, n] int16, iq_ok [N, S])`` of :attr:`Batch` from ``x``'s captures (all absent without)."""
    n, s = mask.shape
    if x.iq is None:
        return torch.zeros((n, s, 2, 1), dtype=torch.int16), torch.zeros((n, s), dtype=torch.bool)
    ok = mask & np.isfinite(x.iq_scale)
    return torch.from_numpy(np.ascontiguousarray(x.iq).astype(np.int16, copy=False)), torch.from_numpy(ok)
