"""Map tensors for the map-conditioned networks (``mapformer``, ``locheatmap``).

Every raster is resampled onto the model's *unit square*: the square of
:class:`~rflocal_core.models.features.FeatureSpec` in which positions are normalized to
``[0, 1]`` (x east, y north). A raster ``r [..., H, W]`` holds at row ``i``, column ``j`` the
value at unit position ``((j + 0.5) / W, (i + 0.5) / H)``: cell centres, row 0 in the south.
That is ``torch.nn.functional.grid_sample``'s convention with ``align_corners=False`` for the
grid coordinate ``2 u - 1``, so :func:`lookup` of a cell centre returns that cell's value
exactly and interpolates bilinearly in between.

Contract of a batch (``N`` samples, ``S`` report slots, ``H x W`` cells, ``C`` scene channels)::

    MapBatch.base           Batch: report tokens, mask, truth (unit square), as for setnet
    MapBatch.site_maps      [N, S, H, W] float32  path gain of the slot's node, normalized (see pg_to_unit)
    MapBatch.site_ok        [N, S, H, W] bool     cells where that node's map has a ray
    MapBatch.site_has_map   [N, S] bool           the slot's node has a radio map at all
    MapBatch.scene_rasters  [N, C, H, W] float32  SCENE_CHANNELS of the sample's scene
    MapBatch.extent_m       float or None         side of the unit square in metres (None: unknown)
    MapBatch.site_channels  [N, S, E, H, W] float32 or None  MAP_CHANNELS of the slot's node (issue 18; read
                                                  only for models that ask: ``channels=True``)

Frames (:class:`MapFrameConfig`, ``frame``): in the ``scene`` frame the unit square is the
training split's square and each scene's maps are resampled onto one ``H x W`` grid of it,
whatever the scene's size. In the ``window`` frame (issue 19) each sample has its own square of
fixed metres, ``W`` cells of ``cell_m`` around a first estimate of its position
(:meth:`~rflocal_core.models.features.FeatureSpec.frames`): every scene's maps are resampled once
onto a lattice of ``cell_m`` cells through the centres of its own map cells
(:func:`~rflocal_core.models.window.lattice_phase`; :class:`WindowMapSource`) and each sample's window is cut
from them, so a cell is ``cell_m`` metres in every scene and ``extent_m`` is the window's side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import MAP_FRAMES, RSS_MAX_DBM, RSS_MIN_DBM, WINDOW_CENTRES, Batch, tracing
from rflocal_core.models.nets import NetConfig
from rflocal_core.models.window import lattice_phase, timing_at
from rflocal_core.options import option

#: AoA likelihood: probability that a reported bearing points at the target (else uniform:
#: NLoS, reflections).
AOA_INLIER_PROB = 0.6

#: Scene raster channels, in order: building height / 100 m, footprint (0/1), road (0/1),
#: material class / (number of classes - 1) (0: none).
SCENE_CHANNELS = ("height", "footprint", "road", "material")

#: Per-site map channels beyond path gain (issue 18), in order: SINR scaled from SS-SINR's [-23, 40] dB to
#: [0, 1]; ToA as a distance (c x ToA, metres); the AoA at the site as (sin, cos) of its compass bearing;
#: whether the ToA/AoA maps hold a value there (0/1). 0 where a map has no value (or the dataset none).
MAP_CHANNELS = ("sinr", "toa_m", "aoa_sin", "aoa_cos", "timing_ok")
SINR_MIN_DB, SINR_MAX_DB = -23.0, 40.0

#: Path gain is normalized as ``(pg_db - PG_MIN_DB) / (PG_MAX_DB - PG_MIN_DB)``; no ray -> 0.
PG_MIN_DB, PG_MAX_DB = -170.0, -40.0


def pg_to_unit(pg_db: torch.Tensor) -> torch.Tensor:
    """Path gain (dB, -inf or NaN: no ray) to the normalized map value (0 where no ray)."""
    ok = torch.isfinite(pg_db)
    unit = (torch.nan_to_num(pg_db, nan=PG_MIN_DB, neginf=PG_MIN_DB) - PG_MIN_DB) / (PG_MAX_DB - PG_MIN_DB)
    return torch.where(ok, unit.clamp(-0.5, 1.5), torch.zeros_like(unit))


def unit_to_pg_db(unit: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pg_to_unit` (for cells with a ray)."""
    return unit * (PG_MAX_DB - PG_MIN_DB) + PG_MIN_DB


def rss_unit_to_dbm(rss_unit: torch.Tensor) -> torch.Tensor:
    """The ``rss`` token feature back to dBm (see :mod:`rflocal_core.models.features`)."""
    return rss_unit * (RSS_MAX_DBM - RSS_MIN_DBM) + RSS_MIN_DBM


def lookup(maps: torch.Tensor, pos_unit: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of per-slot maps at one position per sample (differentiable in both).

    Parameters
    ----------
    maps : Tensor [N, S, H, W]
    pos_unit : Tensor [N, 2]
        Positions on the unit square (x, y); outside it the border value is used.

    Returns
    -------
    Tensor [N, S]
        The map values at the positions: exact at cell centres, bilinear in between.
    """
    grid = (2.0 * pos_unit - 1.0).to(maps.dtype).view(-1, 1, 1, 2)  # grid_sample wants (x, y) in [-1, 1]
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0, 0]


def aoa_loglik(base: Batch, h: int, w: int, *, sigma_deg: float) -> torch.Tensor:
    """AoA back-projection [N, H, W]: log-likelihood (nats) of each sample's bearings at each cell.

    Per slot that reports AoA and has a known node position: a von Mises in the difference
    between the reported compass bearing and the bearing node -> cell centre (``kappa =
    1 / sigma^2``, weight :data:`AOA_INLIER_PROB`) mixed with a uniform; summed over the slots
    (0 where a sample has no bearing). Cells follow the raster convention of this module.
    """
    dev, dtype = base.feats.device, base.feats.dtype
    on = (base.mask & (base.col("pos_ok") > 0.5) & (base.col("aoa_ok") > 0.5))[..., None, None]
    if not tracing() and not bool(on.any()):  # a shortcut; an exported graph keeps the general path
        return torch.zeros(len(base), h, w, device=dev, dtype=dtype)
    ys = (torch.arange(h, device=dev, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=dev, dtype=dtype) + 0.5) / w
    dx = xs.view(1, 1, 1, w) - base.node_xy[..., 0, None, None].to(dtype)  # [N, S, 1, W]
    dy = ys.view(1, 1, h, 1) - base.node_xy[..., 1, None, None].to(dtype)  # [N, S, H, 1]
    return aoa_loglik_at(base, dx, dy, sigma_deg=sigma_deg)


def aoa_loglik_at(base: Batch, dx: torch.Tensor, dy: torch.Tensor, *, sigma_deg: float,
                  per_slot: bool = False) -> torch.Tensor:
    """The AoA log-likelihood of :func:`aoa_loglik` at any points: ``dx``, ``dy`` [N, S, *P] (broadcastable) are
    point - node (unit square), per slot; returns [N, *P], summed over the slots (``per_slot``: [N, S, *P])."""
    dtype = dx.dtype
    extra = (1,) * (max(dx.dim(), dy.dim()) - 2)
    on = (base.mask & (base.col("pos_ok") > 0.5) & (base.col("aoa_ok") > 0.5)).view(*base.mask.shape, *extra)
    dist = (dx * dx + dy * dy).clamp_min(1e-12).sqrt()
    # the aoa features are (sin, cos) of the compass bearing: (east, north) of the direction
    sin_b = base.col("aoa_sin").view(*base.mask.shape, *extra).to(dtype)
    cos_b = base.col("aoa_cos").view(*base.mask.shape, *extra).to(dtype)
    cos_d = (sin_b * dx + cos_b * dy) / dist
    kappa = 1.0 / math.radians(sigma_deg) ** 2
    inlier = math.log(AOA_INLIER_PROB) + kappa * (cos_d - 1) + 0.5 * math.log(kappa / (2 * math.pi))
    uniform = torch.full_like(inlier, math.log((1 - AOA_INLIER_PROB) / (2 * math.pi)))
    out = torch.where(on, torch.logaddexp(inlier, uniform), torch.zeros_like(inlier))  # masked: NaN-safe
    return out if per_slot else out.sum(1)


@dataclass(frozen=True)
class MapFrameConfig(NetConfig):
    """The frame options of the map networks (``mapformer``, ``locheatmap``): one definition for both.

    Parameters
    ----------
    frame : str
        ``"window"`` (default): a window of :meth:`window_cells` cells of ``cell_m`` around each
        sample's first position estimate, positions in metres of the window, so the network
        predicts in any scene, of any size (issue 19); ``"scene"``: positions and maps on the
        training scenes' square (one grid per scene, whatever its size; runs from before frames).
    cell_m : float
        ``"window"`` frame: the cell size (m) of the maps fed to the network.
    window_centre : str
        ``"window"`` frame: where each window is centred: ``"prior"`` (default), the argmax of the physics
        prior (mapformer's, RSS + ToA + AoA + footprints) over the scene's whole ``cell_m`` lattice (exact
        branch and bound; since 2026-12-03 12:30 UTC); ``"prior_top24"``, that argmax searched only near the 24
        best cells of a 16 m physics search over the whole scene (``"prior"`` before then: it missed the
        argmax for 2% of Paris's samples); ``"search"``, that 16 m search's best cell (runs from before this
        option).
    """

    # the scene frame reads the maps of its training scenes' square; the window one any scene's (the default:
    # it beat scene on every held-out real tile, bench_any_city.py, issue 19)
    frame: str = option("window", choices=MAP_FRAMES,
                        help="scene: maps and positions on the training scenes' square; window: a window of fixed "
                             "metres around each sample (predicts in any scene, of any size)")
    cell_m: float = option(8.0, lo=0.5, hi=100.0, unit="m", help="window frame: map cell size")
    # the prior's argmax at cell_m: fewer windows miss their target than around the 16 m search's best cell
    window_centre: str = option("prior", choices=WINDOW_CENTRES,
                                help="window frame: centre on the physics prior's argmax over the scene (prior), "
                                     "that argmax near the 24 best cells of a 16 m map-matching search "
                                     "(prior_top24), or on that search's best cell (search)")

    def window_cells(self) -> int:
        """Cells per side of the map grid (the network's own resolution option)."""
        raise NotImplementedError

    def centre_timing(self) -> str:
        """The ToA/AoA terms of the window centring's prior (:data:`~rflocal_core.models.window.PRIOR_TIMINGS`):
        straight lines, unless the network's own prior mixes in the ToA/AoA maps (mapformer's ``prior_timing``)."""
        return "line"

    def window(self) -> tuple[float, int, str, str] | None:
        """``(cell_m, cells, centre, centre_timing)`` of the window frame for :meth:`FeatureSpec.fit`; None in the
        scene frame."""
        if self.frame != "window":
            return None
        return float(self.cell_m), int(self.window_cells()), self.window_centre, self.centre_timing()


@dataclass
class MapBatch:
    """Report tokens plus the maps of each slot's node and of each sample's scene (see module doc)."""

    base: Batch
    site_maps: torch.Tensor
    site_ok: torch.Tensor
    site_has_map: torch.Tensor
    scene_rasters: torch.Tensor
    extent_m: float | None = None
    site_channels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.base)

    def to(self, device: torch.device | str) -> MapBatch:
        return MapBatch(self.base.to(device), self.site_maps.to(device), self.site_ok.to(device),
                        self.site_has_map.to(device), self.scene_rasters.to(device), self.extent_m,
                        None if self.site_channels is None else self.site_channels.to(device))

    def index(self, rows: torch.Tensor | slice) -> MapBatch:
        return MapBatch(self.base.index(rows), self.site_maps[rows], self.site_ok[rows], self.site_has_map[rows],
                        self.scene_rasters[rows], self.extent_m,
                        None if self.site_channels is None else self.site_channels[rows])

    def with_base(self, base: Batch) -> MapBatch:
        """The same maps with other tokens (augmentation changes masks and features, not slots)."""
        return replace(self, base=base)


# --------------------------------------------------------------------------- from datasets


def resample_scene(maps: Any, gx: np.ndarray, gy: np.ndarray, inside: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene's maps at the points ``gx, gy`` [h, w] (m): ``(site_maps [K, h, w], site_ok [K, h, w],
    rasters [C, h, w])``, path gain normalized (:func:`pg_to_unit`), rasters :data:`SCENE_CHANNELS`.

    Path gain is bilinear (no ray counts as :data:`PG_MIN_DB`, a ray where over half the weight has
    one); classes and masks take the nearest cell. ``inside`` [h, w]: points on the scene's grid;
    elsewhere no ray and zero rasters (default: the grid's border value, as the scene frame reads it).
    """
    from rflocal_core.dataset.rasters import MATERIAL_CLASSES

    h, w = gx.shape
    pg = maps.path_gain_db.astype(np.float64)
    ray = np.isfinite(pg)
    floor = np.where(ray, pg, PG_MIN_DB)
    pg_unit = maps.grid.bilinear(floor, gx.ravel(), gy.ravel()).reshape(-1, h, w)
    ok = maps.grid.bilinear(ray.astype(np.float64), gx.ravel(), gy.ravel()).reshape(-1, h, w) > 0.5
    if inside is not None:
        ok = ok & inside
    site_maps = np.where(ok, np.clip((pg_unit - PG_MIN_DB) / (PG_MAX_DB - PG_MIN_DB), -0.5, 1.5), 0.0)
    r = maps.rasters
    iy, ix = maps.grid.cell_of(gx, gy)  # nearest cell: classes and masks are not interpolated

    def sample(key: str, scale: float) -> np.ndarray:
        if key not in r:
            return np.zeros((h, w))
        v = np.asarray(r[key], dtype=np.float64)[iy, ix] / scale
        return v if inside is None else np.where(inside, v, 0.0)

    rasters = np.stack([sample("building_height_m", 100.0), sample("footprint", 1.0), sample("roads", 1.0),
                        sample("material", len(MATERIAL_CLASSES) - 1)])
    return site_maps, ok, rasters


def resample_channels(maps: Any, gx: np.ndarray, gy: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """One scene's :data:`MAP_CHANNELS` at the points ``gx, gy`` [h, w] (m): [K, E, h, w] float32.

    NaN-aware bilinear (a value where over half of the weight has one, as path gain); the AoA
    through its unit vector. ``inside`` as for :func:`resample_scene`. Channels the scene lacks
    (``maps.channels``: an older dataset, emitter mode, no ``timing_maps``) stay 0.
    """
    h, w = gx.shape
    out = np.zeros((len(maps.path_gain_db), len(MAP_CHANNELS), h, w), dtype=np.float32)
    ch = getattr(maps, "channels", None) or {}

    def interp(field: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        num = maps.grid.bilinear(np.where(ok, field, 0.0), gx.ravel(), gy.ravel()).reshape(-1, h, w)
        weight = maps.grid.bilinear(ok.astype(np.float64), gx.ravel(), gy.ravel()).reshape(-1, h, w)
        good = weight > 0.5 if inside is None else (weight > 0.5) & inside
        return np.where(good, num / np.maximum(weight, 1e-9), 0.0), good

    if "sinr_db" in ch:
        sinr = np.asarray(ch["sinr_db"], dtype=np.float64)
        value, good = interp(sinr, np.isfinite(sinr))
        out[:, 0] = np.where(good, np.clip((value - SINR_MIN_DB) / (SINR_MAX_DB - SINR_MIN_DB), 0.0, 1.0), 0.0)
    timing = timing_at(maps, gx, gy, inside)  # the window centring reads the same values
    if timing is not None:
        out[:, 1], out[:, 2], out[:, 3], out[:, 4] = timing
    return out


class MapSource:
    """The maps of a set of samples, resampled once per scene, gathered per minibatch.

    Holding ``[N, S, H, W]`` for a whole split would take gigabytes, so the per-scene
    tensors are kept (``site_maps`` [K, H, W] for all sites of all scenes, ``scene_rasters``
    [G, C, H, W]) with, per sample, its scene and the map index of each slot's node.

        src = MapSource.from_inputs(x, spec, res=64)       # x loaded with maps
        mb = src.batch(make_batch(x, spec).index(rows), rows)

    Parameters
    ----------
    site_maps, site_ok : Tensor [K, H, W]
    scene_rasters : Tensor [G, C, H, W]
    slot_map : Tensor [N, S] int64
        Row of ``site_maps`` for each slot's node (-1: none, e.g. drone waypoints).
    scene : Tensor [N] int64
    extent_m : float, optional
        Side of the unit square in metres (passed on to every batch).
    site_channels : Tensor [K, E, H, W], optional
        :data:`MAP_CHANNELS` of every site (``from_inputs(..., channels=True)``).
    """

    def __init__(self, site_maps: torch.Tensor, site_ok: torch.Tensor, scene_rasters: torch.Tensor,
                 slot_map: torch.Tensor, scene: torch.Tensor, extent_m: float | None = None,
                 site_channels: torch.Tensor | None = None) -> None:
        self.site_maps, self.site_ok, self.scene_rasters = site_maps, site_ok, scene_rasters
        self.slot_map, self.scene, self.extent_m = slot_map, scene, extent_m
        self.site_channels = site_channels

    @property
    def res(self) -> int:
        return int(self.site_maps.shape[-1])

    @classmethod
    def from_inputs(cls, x: Any, spec: Any, *, res: int, channels: bool = False) -> MapSource:
        """Resample the radio maps and scene rasters of ``x.maps`` onto the unit square of ``spec``.

        ``channels``: also each site's :data:`MAP_CHANNELS` (SINR, ToA, AoA maps). Raises
        :class:`~rflocal_core.errors.InvalidInputError` when ``x`` has no maps (imported
        measurements, or loaded with ``with_maps=False``).
        """
        if spec.frame == "window":
            return WindowMapSource.from_inputs(x, spec, res=res, channels=channels)
        if not x.maps:
            msg = (f"dataset {x.dataset!r}: map-conditioned models need the radio maps of a generated dataset "
                   "(imported measurements have none)")
            raise InvalidInputError(msg)
        centres = (np.arange(res) + 0.5) / res
        gx, gy = np.meshgrid(spec.origin_m[0] + centres * spec.extent_m, spec.origin_m[1] + centres * spec.extent_m)
        site_maps, site_ok, rasters, offsets, extra = [], [], [], {}, []
        k = 0
        for g, name in enumerate(x.scenes):
            maps = x.maps.get(name)
            if maps is None:
                continue
            sm, ok, r = resample_scene(maps, gx, gy)
            if channels:
                extra.append(resample_channels(maps, gx, gy))
            site_maps.append(sm)
            site_ok.append(ok)
            offsets[g] = k
            k += len(sm)
            rasters.append(r)
        slot_map = np.full(x.slot_site.shape, -1, dtype=np.int64)
        for g, off in offsets.items():
            rows = x.scene_idx == g
            slot_map[rows] = np.where(x.slot_site[rows] >= 0, x.slot_site[rows] + off, -1)
        empty = np.zeros((1, res, res))
        return cls(torch.from_numpy(np.concatenate(site_maps or [empty]).astype(np.float32)),
                   torch.from_numpy(np.concatenate(site_ok or [empty.astype(bool)])),
                   torch.from_numpy(np.stack(rasters).astype(np.float32)) if rasters else
                   torch.zeros((1, len(SCENE_CHANNELS), res, res)),
                   torch.from_numpy(slot_map), torch.from_numpy(np.asarray(x.scene_idx, dtype=np.int64)),
                   float(spec.extent_m),
                   torch.from_numpy(np.concatenate(extra or [np.zeros((1, len(MAP_CHANNELS), res, res), np.float32)]))
                   if channels else None)

    def batch(self, base: Batch, rows: torch.Tensor | np.ndarray | slice) -> MapBatch:
        """The :class:`MapBatch` of samples ``rows`` (rows of the inputs this source was built from).

        ``base`` must hold the same samples with the slots in their original order (not
        :meth:`Batch.compact`-ed).
        """
        if isinstance(rows, np.ndarray):
            rows = torch.from_numpy(rows)
        slot = self.slot_map[rows]
        has = slot >= 0
        idx = slot.clamp_min(0)
        extra = None if self.site_channels is None else self.site_channels[idx] * has[..., None, None, None]
        return MapBatch(base, self.site_maps[idx] * has[..., None, None], self.site_ok[idx] & has[..., None, None],
                        has, self.scene_rasters[self.scene[rows]], self.extent_m, extra)


class WindowMapSource(MapSource):
    """The maps of a set of samples in the ``window`` frame: each scene's maps once on the lattice of
    ``cell_m`` cells (:func:`~rflocal_core.models.window.lattice_phase`), and per sample the first lattice cell
    of its window (see the module doc).

    Windows reaching past a scene's maps see no ray and zero rasters there. Built by
    :meth:`MapSource.from_inputs` for a window-frame spec; :meth:`batch` cuts the windows.

    Parameters
    ----------
    lattices : list of (site_maps [K, H, W], site_ok [K, H, W], rasters [C, H, W]) or None
        Per scene of the inputs (None: no maps).
    slot_map : Tensor [N, S] int64
        Row of the scene's ``site_maps`` for each slot's node (-1: none).
    scene : Tensor [N] int64
    start : Tensor [N, 2] int64
        Lattice (column, row) of each sample's window's south-west cell in its scene's lattice.
    cells : int
        Cells per window side.
    extent_m : float
        The window's side (m).
    channel_lattices : list of Tensor [K, E, H, W] or None, optional
        Per scene, its sites' :data:`MAP_CHANNELS` on the lattice (``channels=True``).
    """

    def __init__(self, lattices: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None], slot_map: torch.Tensor,
                 scene: torch.Tensor, start: torch.Tensor, cells: int, extent_m: float,
                 channel_lattices: list[torch.Tensor | None] | None = None) -> None:
        self.lattices, self.slot_map, self.scene, self.start = lattices, slot_map, scene, start
        self.cells, self.extent_m = int(cells), float(extent_m)
        self.channel_lattices = channel_lattices
        self.site_channels = None

    @property
    def res(self) -> int:
        return self.cells

    @classmethod
    def from_inputs(cls, x: Any, spec: Any, *, res: int, channels: bool = False) -> WindowMapSource:
        """Resample each scene's maps onto the ``spec.cell_m`` lattice; place each sample's window."""
        if not x.maps:
            msg = (f"dataset {x.dataset!r}: map-conditioned models need the radio maps of a generated dataset "
                   "(imported measurements have none)")
            raise InvalidInputError(msg)
        if int(res) != spec.window_cells:
            msg = f"res: the window frame of this model has {spec.window_cells} cells per side, got {res!r}"
            raise InvalidInputError(msg)
        cell = float(spec.cell_m)
        origin, _ = spec.frames(x)
        phase = lattice_phase(x, cell)  # each scene's lattice: on its own map cells
        first = np.round((origin - phase) / cell).astype(np.int64)  # window origins lie on the lattice
        start = np.zeros_like(first)
        lattices: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = []
        extra: list[torch.Tensor | None] = []
        for g, name in enumerate(x.scenes):
            maps = x.maps.get(name)
            if maps is None:
                lattices.append(None)
                extra.append(None)
                continue
            x0, y0, x1, y1 = maps.grid.extent_m
            ph = np.mod(np.array([maps.grid.x0_m, maps.grid.y0_m]) - cell / 2, cell)  # as lattice_phase
            k0 = np.floor((np.array([x0, y0]) - ph) / cell).astype(np.int64)
            k1 = np.ceil((np.array([x1, y1]) - ph) / cell).astype(np.int64)
            gx, gy = np.meshgrid((np.arange(k0[0], k1[0]) + 0.5) * cell + ph[0],
                                 (np.arange(k0[1], k1[1]) + 0.5) * cell + ph[1])
            inside = (gx >= x0) & (gx <= x1) & (gy >= y0) & (gy <= y1)
            sm, ok, r = resample_scene(maps, gx, gy, inside)
            lattices.append((torch.from_numpy(sm.astype(np.float32)), torch.from_numpy(ok),
                             torch.from_numpy(r.astype(np.float32))))
            extra.append(torch.from_numpy(resample_channels(maps, gx, gy, inside)) if channels else None)
            rows = x.scene_idx == g
            start[rows] = first[rows] - k0
        return cls(lattices, torch.from_numpy(np.where(x.slot_site >= 0, x.slot_site, -1).astype(np.int64)),
                   torch.from_numpy(np.asarray(x.scene_idx, dtype=np.int64)), torch.from_numpy(start),
                   spec.window_cells, spec.window_m, extra if channels else None)

    def batch(self, base: Batch, rows: torch.Tensor | np.ndarray | slice) -> MapBatch:
        """The :class:`MapBatch` of samples ``rows``: each sample's window cut from its scene's lattice."""
        if isinstance(rows, np.ndarray):
            rows = torch.from_numpy(rows)
        slot, scene, start = self.slot_map[rows], self.scene[rows], self.start[rows]
        n, s = slot.shape
        w = self.cells
        site_maps = torch.zeros((n, s, w, w))
        site_ok = torch.zeros((n, s, w, w), dtype=torch.bool)
        rasters = torch.zeros((n, len(SCENE_CHANNELS), w, w))
        has = torch.zeros((n, s), dtype=torch.bool)
        extra = None if self.channel_lattices is None else torch.zeros((n, s, len(MAP_CHANNELS), w, w))
        ar = torch.arange(w)
        for g in torch.unique(scene).tolist():
            lat = self.lattices[g] if g < len(self.lattices) else None
            if lat is None:
                continue
            sm, ok, r = lat
            sel = torch.nonzero(scene == g)[:, 0]
            ix, iy = start[sel, 0:1] + ar, start[sel, 1:2] + ar  # [m, W]
            valid = ((iy >= 0) & (iy < r.shape[1]))[:, :, None] & ((ix >= 0) & (ix < r.shape[2]))[:, None, :]
            iy, ix = iy.clamp(0, r.shape[1] - 1), ix.clamp(0, r.shape[2] - 1)
            rasters[sel] = r[:, iy[:, :, None], ix[:, None, :]].permute(1, 0, 2, 3) * valid[:, None]
            if len(sm) == 0:
                continue
            sl = slot[sel]
            on = (sl >= 0) & (sl < len(sm))
            idx = sl.clamp(0, len(sm) - 1)[:, :, None, None]
            cut = valid[:, None] & on[..., None, None]
            site_maps[sel] = sm[idx, iy[:, None, :, None], ix[:, None, None, :]] * cut
            site_ok[sel] = ok[idx, iy[:, None, :, None], ix[:, None, None, :]] & cut
            has[sel] = on
            if extra is not None and self.channel_lattices[g] is not None:
                extra[sel] = self._cut_channels(self.channel_lattices[g], idx, iy, ix, cut)
        return MapBatch(base, site_maps, site_ok, has, rasters, self.extent_m, extra)

    @staticmethod
    def _cut_channels(lattice: torch.Tensor, idx: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor,
                      cut: torch.Tensor) -> torch.Tensor:
        """The windows [m, S, E, W, W] of the channel lattice [K, E, H, W] (``idx`` [m, S, 1, 1], ``iy``/``ix`` [m, W])."""
        e = torch.arange(lattice.shape[1])[None, None, :, None, None]
        out = lattice[idx[..., None], e, iy[:, None, None, :, None], ix[:, None, None, None, :]]
        return out * cut[:, :, None]
