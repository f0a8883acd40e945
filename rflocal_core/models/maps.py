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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import RSS_MAX_DBM, RSS_MIN_DBM, Batch, tracing

#: AoA likelihood: probability that a reported bearing points at the target (else uniform:
#: NLoS, reflections).
AOA_INLIER_PROB = 0.6

#: Scene raster channels, in order: building height / 100 m, footprint (0/1), road (0/1),
#: material class / (number of classes - 1) (0: none).
SCENE_CHANNELS = ("height", "footprint", "road", "material")

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
    dist = (dx * dx + dy * dy).clamp_min(1e-12).sqrt()
    # the aoa features are (sin, cos) of the compass bearing: (east, north) of the direction
    cos_d = (base.col("aoa_sin")[..., None, None] * dx + base.col("aoa_cos")[..., None, None] * dy) / dist
    kappa = 1.0 / math.radians(sigma_deg) ** 2
    inlier = math.log(AOA_INLIER_PROB) + kappa * (cos_d - 1) + 0.5 * math.log(kappa / (2 * math.pi))
    uniform = torch.full_like(inlier, math.log((1 - AOA_INLIER_PROB) / (2 * math.pi)))
    return torch.where(on, torch.logaddexp(inlier, uniform), torch.zeros_like(inlier)).sum(1)  # masked: NaN-safe


@dataclass
class MapBatch:
    """Report tokens plus the maps of each slot's node and of each sample's scene (see module doc)."""

    base: Batch
    site_maps: torch.Tensor
    site_ok: torch.Tensor
    site_has_map: torch.Tensor
    scene_rasters: torch.Tensor
    extent_m: float | None = None

    def __len__(self) -> int:
        return len(self.base)

    def to(self, device: torch.device | str) -> MapBatch:
        return MapBatch(self.base.to(device), self.site_maps.to(device), self.site_ok.to(device),
                        self.site_has_map.to(device), self.scene_rasters.to(device), self.extent_m)

    def index(self, rows: torch.Tensor | slice) -> MapBatch:
        return MapBatch(self.base.index(rows), self.site_maps[rows], self.site_ok[rows], self.site_has_map[rows],
                        self.scene_rasters[rows], self.extent_m)

    def with_base(self, base: Batch) -> MapBatch:
        """The same maps with other tokens (augmentation changes masks and features, not slots)."""
        return replace(self, base=base)


# --------------------------------------------------------------------------- from datasets


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
    """

    def __init__(self, site_maps: torch.Tensor, site_ok: torch.Tensor, scene_rasters: torch.Tensor,
                 slot_map: torch.Tensor, scene: torch.Tensor, extent_m: float | None = None) -> None:
        self.site_maps, self.site_ok, self.scene_rasters = site_maps, site_ok, scene_rasters
        self.slot_map, self.scene, self.extent_m = slot_map, scene, extent_m

    @property
    def res(self) -> int:
        return int(self.site_maps.shape[-1])

    @classmethod
    def from_inputs(cls, x: Any, spec: Any, *, res: int) -> MapSource:
        """Resample the radio maps and scene rasters of ``x.maps`` onto the unit square of ``spec``.

        Raises :class:`~rflocal_core.errors.InvalidInputError` when ``x`` has no maps (imported
        measurements, or loaded with ``with_maps=False``).
        """
        from rflocal_core.dataset.rasters import MATERIAL_CLASSES

        if not x.maps:
            msg = (f"dataset {x.dataset!r}: map-conditioned models need the radio maps of a generated dataset "
                   "(imported measurements have none)")
            raise InvalidInputError(msg)
        centres = (np.arange(res) + 0.5) / res
        gx, gy = np.meshgrid(spec.origin_m[0] + centres * spec.extent_m, spec.origin_m[1] + centres * spec.extent_m)
        site_maps, site_ok, rasters, offsets = [], [], [], {}
        k = 0
        for g, name in enumerate(x.scenes):
            maps = x.maps.get(name)
            if maps is None:
                continue
            pg = maps.path_gain_db.astype(np.float64)
            ray = np.isfinite(pg)
            floor = np.where(ray, pg, PG_MIN_DB)
            pg_unit = maps.grid.bilinear(floor, gx.ravel(), gy.ravel()).reshape(-1, res, res)
            ok = maps.grid.bilinear(ray.astype(np.float64), gx.ravel(), gy.ravel()).reshape(-1, res, res) > 0.5
            site_maps.append(np.where(ok, np.clip((pg_unit - PG_MIN_DB) / (PG_MAX_DB - PG_MIN_DB), -0.5, 1.5), 0.0))
            site_ok.append(ok)
            offsets[g] = k
            k += len(pg)
            r = maps.rasters

            def sample(key: str, scale: float) -> np.ndarray:
                if key not in r:
                    return np.zeros((res, res))
                iy, ix = maps.grid.cell_of(gx, gy)  # nearest cell: classes and masks are not interpolated
                return np.asarray(r[key], dtype=np.float64)[iy, ix] / scale

            rasters.append(np.stack([sample("building_height_m", 100.0), sample("footprint", 1.0),
                                     sample("roads", 1.0), sample("material", len(MATERIAL_CLASSES) - 1)]))
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
                   float(spec.extent_m))

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
        return MapBatch(base, self.site_maps[idx] * has[..., None, None], self.site_ok[idx] & has[..., None, None],
                        has, self.scene_rasters[self.scene[rows]], self.extent_m)
