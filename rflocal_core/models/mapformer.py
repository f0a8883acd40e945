"""``mapformer``: a map-conditioned transformer with a coarse-to-fine output and a physics loss.

Input: a :class:`~rflocal_core.models.maps.MapBatch` (report tokens plus, per slot, the radio
map of the slot's node and, per sample, the scene rasters; see :mod:`rflocal_core.models.maps`).
Output: the same keys as the other networks, positions on the unit square::

    out = net(map_batch)   # {"mu": [N, 2], "sigma": [N, 2], "coarse_logits": [N, G*G], ...}
    loss, parts = net.loss(map_batch, out)   # parts: coarse, fine, position, physics

Architecture
------------
Radio encoder
    One token per report slot: the sinusoidal encoding of the node position (as ``setnet``),
    the token features (:data:`~rflocal_core.models.features.TOKEN_COLUMNS`, their ``ok``
    flags are the feature masks; with ``phy_features`` the PHY/MAC report fields
    :data:`~rflocal_core.models.features.PHY_COLUMNS` follow, masked where a report lacks them; with
    ``band_feature`` the band) and a learned node-id embedding (id 0, unknown node: zero).
    For sequences, one more token per earlier report time and slot (the RSS then, the
    slot's position encoding and node-id embedding, and the age in seconds before the
    current report as the time embedding, plus a learned "earlier report" embedding; with
    ``phy_features`` and ``history_phy`` also that report's PHY/MAC columns, masked where it
    lacks them). A
    masked transformer encoder with a CLS token over both; the CLS output is the radio
    embedding. Snapshot datasets have no earlier reports, and the network is then the same
    as without the history stream. Temporal dropout (``temporal_dropout``) drops earlier
    reports; report dropout (``node_dropout``) drops a node at every time.
Map encoder
    A raster stack on the sample's map grid, permutation invariant in the slots:

    * radio-map stream (``use_radio_maps``), 8 channels (:data:`RADIO_CHANNELS`): from the
      slots that report RSS and have a map, the masked mean path gain; the coverage (fraction
      of those slots with a ray at the cell); per cell the RMS residual (dB) of the observed
      RSS against ``map + tx`` (tx known) or with tx profiled out (its mean over the slots,
      emitter mode), as ``exp(-mse / (2 * 8 dB)^2)`` and ``rms / 20 dB``; whether the cell
      has any degree of freedom left (the classic map-matching surface, as an input); and
      the RSS, ToA and AoA log-likelihoods of :func:`physics_loglik`, scaled;
    * scene stream (``use_scene``): the 4 :data:`~rflocal_core.models.maps.SCENE_CHANNELS`;
    * map-channel stream (``use_map_channels``, off by default; issue 18), 5 channels
      (:data:`CHANNEL_STREAM`) from each slot's SINR, ToA and AoA maps
      (:data:`~rflocal_core.models.maps.MAP_CHANNELS`; datasets generated with ``timing_maps``):
      per cell how well the reported ToA matches the ray-traced ToA map (``exp(-mean e^2 / 2
      (20 m)^2)`` over the slots that report ToA and have a map value) and the reported AoA the
      AoA map (mean ``(1 + cos)/2``), each with its "any slot" flag, and the best SINR of the
      reporting slots' cells. Unlike the ToA/AoA log-likelihoods (straight lines to the node)
      these hold the ray-traced NLoS geometry.

    ViT-style patch embedding (``map_encoder="patch"``, ``patch_size`` cells a patch) or a
    small strided CNN (``"cnn"``), sinusoidal position of each token, ``map_layers``
    transformer layers over the map tokens.
Fusion
    Cross-attention from the radio embedding (query) to the map tokens (keys/values).
Physics prior (``physics_prior``)
    :func:`physics_loglik` at every map cell (RSS against the radio maps; ToA and AoA against
    the geometry of the known nodes, robust to NLoS; building footprints), summed with a
    learned positive weight per term (starting at 1, the likelihood as derived), is
    pooled onto the coarse cells (``prior_pool``: the best map cell of each, or the log-sum-exp)
    and added to the coarse logits; each fine offset starts from the prior's best map cell (or its
    mean) within its cell. The network's own logits and offsets are
    then corrections to physics map matching with all measured quantities, so it is useful
    from the first epoch and learns where the physics is wrong (NLoS, map error).
Coarse head
    For each of the ``G x G`` cells (``grid_cells``; index ``iy * G + ix``, ``iy`` from the
    south): the map tokens sampled at the cell centre, the raster stack at 4x4 sub-cell
    resolution (space-to-depth) and per-cell maxima, and the cell position, modulated
    (FiLM) by the fused radio/map embedding, a residual block of two depthwise-separable 3x3
    convolutions over the cell grid, then a logit. Trained with cross-entropy against the
    true cell.
Fine head (``top_k > 0``)
    For each of the top-K cells an offset of at most one cell from its centre and a
    heteroscedastic sigma (Gaussian beta-NLL on the cells within one cell of the truth:
    the top-K ones and the true one).
Output
    ``mu`` is the *mode*: the best cell plus its offset (a probability-weighted mean would
    land between the modes of a multimodal heatmap). ``sigma`` is the root of the second
    moment of the top-K mixture about ``mu`` per axis, ``sum_k p_k (sigma_k^2 + (mu_k - mu)^2)``
    (``p`` the coarse probabilities renormalized over the top K): the fine sigma when one cell
    dominates, wider when the heatmap is split. With ``top_k=0`` (coarse only) ``mu`` is a
    soft-argmax over the 3x3 cells around the best one and ``sigma`` their spread plus the
    cell quantization.
Physics-consistency loss (weight ``physics_weight``)
    :meth:`MapFormer.physics_residual`: the slots' maps looked up (bilinear) at ``mu``,
    predicted RSS = path gain + tx (tx profiled out where unknown), against the observed
    RSS where the slot reports RSS, has a map and the map has a ray there; the mean squared
    residual (dB^2) / 100. Gradients flow to ``mu`` (not into the maps).
Refinement (``refine_steps > 0``, eval mode only)
    :meth:`MapFormer.refine`: Adam steps on the position against the same residual, keeping
    per sample the position with the lowest residual; ``residual_db`` (the RMS residual at
    the returned ``mu``) is a confidence signal (NaN where no slot gives evidence).

Training augmentation (:meth:`MapFormer.augment`): the :class:`~rflocal_core.models.nets.LocNet`
report dropout, RSS noise and node jitter; feature dropout (per token, each of the RSS, AoA and
ToA groups, never all of a token's); and a rotation (``map_rotation_deg``) and scaling
(``map_scale``) about the centre of the unit square applied consistently to the maps, the
scene rasters, the truth, the node positions, the AoA bearings and the ToA distances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import (
    AGE_SCALE_S,
    HIST_COLUMNS,
    NODE_Z_SCALE_M,
    PHY_COLUMNS,
    TOA_MAX_SIDES,
    TOKEN_COLUMNS,
    TX_SCALE_DBM,
    WINDOW_TOA_MAX_SIDES,
    Batch,
    index_ordered,
    token_width,
    tracing,
)
from rflocal_core.models.maps import (
    MAP_CHANNELS,
    SCENE_CHANNELS,
    MapBatch,
    MapFrameConfig,
    aoa_loglik,
    aoa_loglik_at,
    lookup,
    rss_unit_to_dbm,
    unit_to_pg_db,
)
from rflocal_core.models.nets import (
    LocNet,
    NetConfig,
    SetNetConfig,
    band_feature_option,
    check_encoder,
    gaussian_beta_nll,
    mlp,
    phy_features_option,
    sinusoidal,
)
from rflocal_core.models.registry import register
from rflocal_core.models.window import PRIOR_TIMINGS, map_pool_cells
from rflocal_core.options import option, redefault

#: Radio-map stream channels (see the module doc).
RADIO_CHANNELS = ("mean_pg", "coverage", "match", "rms", "informative", "rss_ll", "toa_ll", "aoa_ll")
#: Map-channel stream channels (``use_map_channels``, see the module doc).
CHANNEL_STREAM = ("toa_match", "toa_informative", "aoa_match", "aoa_informative", "sinr_best")
#: Metres scale of the ToA match against the ToA maps.
TOA_MATCH_M = 20.0
#: Terms of the physics prior (:func:`physics_loglik`), in order; "indoor" is the footprint penalty.
PRIOR_TERMS = ("rss", "toa", "aoa", "indoor")
#: Log-likelihood (nats) of a report from a site whose map has no ray at the cell.
NO_RAY_NATS = 8.0
#: ToA: probability of the line-of-sight component; scale (m) of the NLoS excess path length.
TOA_LOS_PROB, TOA_NLOS_SCALE_M = 0.5, 40.0
#: Penalty (nats) of a cell inside a building footprint.
INDOOR_NATS = 3.0
#: The log-likelihood channels of the raster stream are ``(ll / LL_SCALE).clamp(-5, 0)``.
LL_SCALE = 10.0
#: dB scale of the ``match`` channel and of the ``rms`` channel.
MATCH_SIGMA_DB, RMS_SCALE_DB = 8.0, 20.0
#: Sub-cells per cell side of the raster features each coarse cell sees.
SUB_CELLS = 4
#: The physics loss is the mean squared residual in dB^2 divided by this.
PHYSICS_SCALE_DB2 = 100.0

#: Inputs of a history token after its position encoding: RSS, age, log age (then PHY/MAC, ``history_phy``).
HIST_BASE = 3


_GROUPS = (("rss", "rss_ok"), ("aoa_sin", "aoa_cos", "aoa_ok"), ("toa", "toa_ok"))


@dataclass(frozen=True)
class MapFormerConfig(MapFrameConfig):
    """``mapformer`` options (see :class:`~rflocal_core.models.nets.NetConfig` for the common ones).

    Parameters
    ----------
    pe_freqs : int
        Frequencies of the sinusoidal position encodings (node positions, map tokens, cells).
    layers, heads : int
        Radio transformer depth and attention heads of all attention layers (``d_model % heads == 0``).
    map_encoder : str
        ``"patch"`` (ViT-style patch embedding) or ``"cnn"`` (small strided CNN).
    patch_size : int
        Map cells per patch side (for ``"cnn"``: the downsampling of its token grid).
    map_layers : int
        Transformer layers over the map tokens (0: the embedding only).
    map_res : int
        Cells per side of the map grid the model is fed (read by the map source; the network
        itself accepts any grid). In the ``window`` frame (see :class:`~rflocal_core.models.maps.MapFrameConfig`)
        the window is ``map_res`` cells of ``cell_m``.
    use_radio_maps, use_scene : bool
        Use the radio-map (site maps) stream / the scene-raster stream.
    grid_cells : int
        Coarse cells per side (G).
    top_k : int
        Cells refined by the fine head (0: coarse only, soft-argmax around the best cell).
    physics_weight : float
        Weight lambda of the physics-consistency loss (0 disables it).
    physics_prior : bool
        Add the physics log-likelihood of each cell (:func:`physics_loglik`: RSS against the
        radio maps, ToA and AoA against the geometry, building footprints), with learned
        weights per term, to the coarse logits, and centre each fine offset on the prior's
        mean within the cell. The network then learns a correction of physics map matching
        rather than the matching itself.
    prior_rss_sigma_db, prior_toa_sigma_m, prior_aoa_sigma_deg : float
        Spreads of the prior's RSS (shadowing + noise), line-of-sight ToA and inlier AoA terms.
    prior_subcell : int
        With ``physics_prior`` and ``top_k > 0``: the best coarse cell's offset starts from the prior's
        posterior mean on ``prior_subcell`` x ``prior_subcell`` points per map cell within one map cell
        of the centre of the prior's best map cell in it (ToA and AoA at each point, RSS and footprint of
        the map cell holding it: :func:`subcell_offset`), instead of the prior's mean over the coarse
        cell's map cells, so the output is finer than the map cells (0: as before the option; runs
        trained before it load so).
    prior_pool : str
        With ``physics_prior``: how the prior's map cells score each coarse cell. ``"lse"``: their
        log-sum-exp (the coarse cell's marginal likelihood; runs trained before the option load so);
        ``"max"`` (default): the best of them, so that the logits are the prior's log-likelihood on the map
        cells plus the network's correction per coarse cell, and the untrained network answers the prior's
        argmax (refined by ``prior_subcell``) instead of the coarse cell holding the most prior mass.
    refine_steps : int
        Inference-time gradient steps on the position against the physics residual (eval only).
    refine_lr : float
        Step size of the refinement (Adam), in unit-square units.
    feature_dropout : float
        Training: probability of dropping each measurement group (RSS, AoA, ToA) of a token.
    temporal_dropout : float
        Training: probability of dropping each earlier report (history token).
    map_rotation_deg, map_scale : float
        Training: uniform random rotation within +-map_rotation_deg and scaling within
        +-map_scale about the square's centre (0 disables).
    use_map_channels : bool
        The map-channel stream (SINR, ToA and AoA maps per site; zeros where a dataset has none).
    phy_features : bool
        The PHY/MAC report fields as token columns (:data:`~rflocal_core.models.features.PHY_COLUMNS`, each
        with its ``ok`` flag: masked where a report lacks them), as setnet's and heimdall's.
    band_feature : bool
        Each token's band (its node's carrier: a multi-band scene's co-sited cells, or the sample's
        band) as two token columns, as setnet's (masked where a dataset does not say).
    history_phy : bool
        With ``phy_features``: the history tokens (earlier reports of a sequence) carry that report's
        PHY/MAC columns too (masked where it lacks them). A checkpoint from before this option loads
        with it on and zero weights on those columns: the network it was.
    prior_timing : str
        The ToA and AoA terms of :func:`physics_loglik` (the prior, and the radio stream's log-likelihood
        channels). ``"line"`` (default; runs trained before the option load so): against the straight line
        node -> cell. ``"line_or_maps"``: each the even mixture of that and the same likelihood against the
        slot's ray-traced ToA/AoA maps (:func:`timing_map_terms`, :func:`mix_timing_maps`; the sample's ranges
        follow one or the other), also on the sub-cell points (:func:`subcell_offset`); where a batch has no
        map channels, or a slot no map value at a cell, the straight line. The window frame's centring
        (``window_centre`` ``"prior"`` and ``"prior_top24"``) then uses the same mixture (:meth:`centre_timing`;
        checkpoints from before 2026-12-04 03:00 UTC were centred with straight lines and keep it).
        ``"line_or_pooled_maps"`` (brief A26): as ``"line_or_maps"``, each slot's map terms the even mixture of
        their values over the :data:`~rflocal_core.models.window.MAP_POOL_CELLS` cells around each cell
        (:func:`pool_map_cells`; the window centring the same, :func:`~rflocal_core.models.window.pooled_timing_at`):
        the maps are traced every 16 m and interpolated, and a report's first path is often that of a cell next to
        the target's. The sub-cell points read the pooled map terms of the map cell holding them.
    """

    node_dropout: tuple[float, ...] = redefault(NetConfig, "node_dropout", (0.0, 0.1, 0.2))
    # 64 cells of 4 m: a 256 m window; the physics prior at 8 m cells was twice as far off on the held-out
    # real tiles as at 4 m (bench_any_city.py, issue 19)
    cell_m: float = redefault(MapFrameConfig, "cell_m", 4.0)
    pe_freqs: int = redefault(SetNetConfig, "pe_freqs", 6)
    layers: int = redefault(SetNetConfig, "layers", 2)
    heads: int = redefault(SetNetConfig, "heads", 4)
    map_encoder: str = option("patch", choices=("patch", "cnn"), help="patch (ViT-style) or cnn map embedding")
    patch_size: int = option(8, lo=1, hi=64, help="map cells per patch side")
    map_layers: int = option(1, lo=0, hi=8, help="transformer layers over the map tokens")
    map_res: int = option(64, lo=4, hi=1024, help="cells per side of the map grid fed to the model")
    use_radio_maps: bool = option(True, help="the radio-map stream")
    use_scene: bool = option(True, help="the scene-raster stream")
    grid_cells: int = option(16, lo=2, hi=128, help="coarse cells per side")
    top_k: int = option(4, lo=0, hi=64, help="cells refined by the fine head (0: coarse only)")
    physics_weight: float = option(0.1, lo=0.0, hi=100.0, help="weight of the physics-consistency loss")
    physics_prior: bool = option(True, help="the physics log-likelihood of each cell added to the coarse logits")
    prior_rss_sigma_db: float = option(6.5, lo=0.1, hi=50.0, unit="dB", help="spread of the prior's RSS term")
    prior_toa_sigma_m: float = option(4.0, lo=0.1, hi=1000.0, unit="m", help="spread of the prior's ToA term")
    prior_aoa_sigma_deg: float = option(7.0, lo=0.1, hi=90.0, unit="deg", help="spread of the prior's AoA term")
    # the prior's posterior mean on 1 m points around its best 4 m cell: held-out median 1.6 -> 1.5 m
    # (Aguascalientes), 1.8 -> 1.6 m (Oakland) untrained (bench_any_city.py, issue 19)
    prior_subcell: int = option(4, lo=0, hi=16, help="points per map cell side of the prior's posterior mean around "
                                                     "its best map cell in the output's coarse cell (0: the prior's "
                                                     "mean over the coarse cell)")
    # max: the untrained network answers the prior's argmax (the window's own centre), refined; lse left it for a
    # coarse cell of more prior mass on 15% of the held-out Paris samples: P95 123 m where the argmax has 96 m
    # (bench_any_city.py, issue 19; validation did not separate them, see README "Any city")
    prior_pool: str = option("max", choices=("lse", "max"),
                             help="how the prior scores a coarse cell: log-sum-exp of its map cells (its mass) or "
                                  "their max (the prior's argmax on the map cells wins)")
    refine_steps: int = option(0, lo=0, hi=1000, help="inference-time gradient steps against the physics residual")
    refine_lr: float = option(0.005, lo=1e-5, hi=0.5, help="step size of the refinement, in unit-square units")
    feature_dropout: float = option(0.1, lo=0.0, hi=0.9, help="training: drop each measurement group of a token")
    temporal_dropout: float = option(0.2, lo=0.0, hi=0.9, help="training: drop each earlier report")
    map_rotation_deg: float = option(5.0, lo=0.0, hi=45.0, unit="deg", help="training: random map rotation")
    map_scale: float = option(0.05, lo=0.0, hi=0.5, help="training: random map scaling")
    use_map_channels: bool = option(False, help="the SINR/ToA/AoA map stream (datasets generated with timing_maps)")
    phy_features: bool = phy_features_option()
    band_feature: bool = band_feature_option()
    history_phy: bool = option(True, help="with phy_features: earlier reports' history tokens carry their PHY/MAC "
                                          "columns too")
    # line_or_maps: on Paris (etoile) held out the prior so mixed is 4.7 / 35.6 m (median / P95) where the straight
    # line's is 9.6 / 95.6 m, within 0.1 m of it on the three OSM tiles (bench_any_city.py --timing-maps, issue 19)
    prior_timing: str = option("line", choices=PRIOR_TIMINGS,
                               help="the prior's ToA and AoA terms: against the straight line node -> cell (line), or "
                                    "each the even mixture of that and the ray-traced ToA/AoA maps (line_or_maps; "
                                    "datasets generated with timing_maps, straight line where a site has no map), or "
                                    "that with each report's map terms mixed over the 3x3 map cells around "
                                    "(line_or_pooled_maps)")

    #: Options a checkpoint without them was trained without: their value then (not the default now).
    checkpoint_defaults: ClassVar[dict[str, int | str]] = {"prior_subcell": 0, "prior_pool": "lse"}

    def window_cells(self) -> int:
        return int(self.map_res)

    def centre_timing(self) -> str:
        """The window centring's ToA/AoA terms: those of the prior (``prior_timing``)."""
        return str(self.prior_timing)

    def reads_map_channels(self) -> bool:
        """Whether the network reads the SINR/ToA/AoA maps (the stream, or the prior's ``line_or_maps``)."""
        return bool(self.use_map_channels or self.prior_timing != "line")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_encoder(self)
        if self.top_k > self.grid_cells ** 2:
            msg = f"top_k: expected at most grid_cells^2 = {self.grid_cells ** 2}, got {self.top_k}"
            raise InvalidInputError(msg)


# --------------------------------------------------------------------------- physics


def _profiled_residual(batch: MapBatch, pg_db: torch.Tensor, valid: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared-residual sum and degrees of freedom over the slots (dim 1).

    ``pg_db`` [N, S, *R] path gain at some points, ``valid`` [N, S, *R]. Residual of a slot:
    observed RSS - tx - pg where tx is known, and for the slots with unknown tx the same
    with tx replaced by its mean over those slots (profiled out; one degree of freedom).
    Returns ``(sum r^2 [N, *R], dof [N, *R])``.
    """
    b = batch.base
    extra = (1,) * (pg_db.dim() - 2)
    rss = rss_unit_to_dbm(b.col("rss")).view(*b.mask.shape, *extra)
    known = (b.col("tx_ok") > 0.5).view(*b.mask.shape, *extra)
    tx = (b.col("tx") * TX_SCALE_DBM).view(*b.mask.shape, *extra)
    r = rss - torch.where(known, tx, torch.zeros_like(tx)) - pg_db
    r = torch.where(valid, r, torch.zeros_like(r))  # masked slots may hold anything, NaN included
    w = valid.to(r.dtype)
    unk = w * (~known).to(r.dtype)
    n_unk = unk.sum(1, keepdim=True)
    offset = (r * unk).sum(1, keepdim=True) / n_unk.clamp_min(1.0)
    r = torch.where(known, r, r - offset) * w
    dof = w.sum(1) - (n_unk[:, 0] > 0).to(r.dtype)
    return (r * r).sum(1), dof


def _valid_slots(batch: MapBatch) -> torch.Tensor:
    """[N, S]: slots that report RSS and whose node has a map."""
    b = batch.base
    return b.mask & (b.col("rss_ok") > 0.5) & batch.site_has_map


def physics_residual(batch: MapBatch, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared RSS residual (dB^2) of each sample at ``pos`` [N, 2] (unit square).

    Returns ``(mse [N], has_evidence [N] bool)``; ``mse`` is 0 where there is no evidence
    (no slot with RSS, a map and a ray at ``pos``, or a single slot with unknown tx).
    Differentiable in ``pos``.
    """
    pos = pos.float()
    pg = unit_to_pg_db(lookup(batch.site_maps.float(), pos))
    ray = lookup(batch.site_ok.float(), pos) > 0.5
    valid = _valid_slots(batch) & ray
    sq, dof = _profiled_residual(batch, pg, valid)
    has = dof > 0.5
    return torch.where(has, sq / dof.clamp_min(1.0), torch.zeros_like(sq)), has


def rss_cells(batch: MapBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The RSS evidence at every map cell, shared by :func:`physics_loglik` and :func:`radio_channels`.

    Returns ``(sum r^2 [N, H, W], dof [N, H, W], no_ray [N, H, W])``: the squared profiled
    residuals (dB^2) and degrees of freedom of :func:`_profiled_residual` over the slots that
    report RSS, have a map and a ray at the cell, and the number of reporting slots whose map
    has no ray there.
    """
    slots = _valid_slots(batch)
    valid = slots[..., None, None] & batch.site_ok
    sq, dof = _profiled_residual(batch, unit_to_pg_db(batch.site_maps.float()), valid)
    no_ray = (slots[..., None, None] & ~batch.site_ok).to(sq.dtype).sum(1)
    return sq, dof, no_ray


def physics_loglik(batch: MapBatch, *, rss_sigma_db: float, toa_sigma_m: float, aoa_sigma_deg: float,
                   cells: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """[N, 4, H, W]: log-likelihood (nats) of the sample's reports at each map cell, per term.

    Terms (:data:`PRIOR_TERMS`), each summed over the report slots:

    ``rss``
        ``-r^2 / (2 rss_sigma_db^2)`` with ``r`` the profiled residual of
        :func:`physics_residual` (tx known, or its mean over the slots where unknown), and
        ``-NO_RAY_NATS`` for a report from a site with no ray at the cell.
    ``toa``
        ``e`` = reported ToA distance - 3D distance node -> cell (target at ground level), m:
        a mixture of line of sight ``N(0, toa_sigma_m)`` (weight :data:`TOA_LOS_PROB`) and an
        NLoS excess path, exponential with scale :data:`TOA_NLOS_SCALE_M` for ``e > 0``.
        Zero when ``batch.extent_m`` is unknown (no metres to compare in).
    ``aoa``
        :func:`~rflocal_core.models.maps.aoa_loglik`: von Mises in the difference between the
        reported bearing and the bearing node -> cell (``kappa = 1 / sigma^2``, weight
        :data:`~rflocal_core.models.maps.AOA_INLIER_PROB`) mixed with a uniform.
    ``indoor``
        ``-INDOOR_NATS`` at cells inside a building footprint (scene raster).

    Slots without a known node position give no ToA/AoA term. Invariant to slot order.
    ``cells``: :func:`rss_cells` of the batch, if already computed.
    """
    b = batch.base
    maps = batch.site_maps.float()
    n, _, h, w = maps.shape
    dev = maps.device
    sq, _, no_ray = rss_cells(batch) if cells is None else cells
    rss = -sq / (2 * rss_sigma_db ** 2) - NO_RAY_NATS * no_ray

    ys = (torch.arange(h, device=dev, dtype=maps.dtype) + 0.5) / h
    xs = (torch.arange(w, device=dev, dtype=maps.dtype) + 0.5) / w
    dx = xs.view(1, 1, 1, w) - b.node_xy[..., 0, None, None].to(maps.dtype)  # [N, S, 1, W]
    dy = ys.view(1, 1, h, 1) - b.node_xy[..., 1, None, None].to(maps.dtype)  # [N, S, H, 1]
    toa = toa_loglik_at(batch, dx, dy, toa_sigma_m=toa_sigma_m)
    if toa is None:
        toa = torch.zeros(n, h, w, device=dev, dtype=maps.dtype)

    aoa = aoa_loglik(b, h, w, sigma_deg=aoa_sigma_deg).to(maps.dtype)
    indoor = -INDOOR_NATS * (batch.scene_rasters[:, SCENE_CHANNELS.index("footprint")].float() > 0.5).to(maps.dtype)
    return torch.stack([rss, toa, aoa, indoor], dim=1)


def toa_loglik_at(batch: MapBatch, dx: torch.Tensor, dy: torch.Tensor, *, toa_sigma_m: float,
                  per_slot: bool = False) -> torch.Tensor | None:
    """The ToA term of :func:`physics_loglik` at any points: ``dx``, ``dy`` [N, S, *P] (broadcastable) are point -
    node (unit square) per slot; returns [N, *P] summed over the slots (``per_slot``: [N, S, *P]), or None where it
    is zero for every point (no ToA report of a known node, or no metres to compare in)."""
    b = batch.base
    dtype = dx.dtype
    extra = (1,) * (max(dx.dim(), dy.dim()) - 2)
    toa_on = (b.mask & (b.col("pos_ok") > 0.5) & (b.col("toa_ok") > 0.5)).view(*b.mask.shape, *extra)
    if batch.extent_m is None or not (tracing() or bool(toa_on.any())):
        return None
    ext = float(batch.extent_m)
    dz = (b.col("node_z") * NODE_Z_SCALE_M / ext).view(*b.mask.shape, *extra).to(dtype)
    e = (b.col("toa").view(*b.mask.shape, *extra).to(dtype) - torch.sqrt(dx * dx + dy * dy + dz * dz)) * ext  # m
    s_los = toa_sigma_m
    los = math.log(TOA_LOS_PROB) - 0.5 * (e / s_los) ** 2 - math.log(s_los * math.sqrt(2 * math.pi))
    nlos = (math.log(1 - TOA_LOS_PROB) - math.log(TOA_NLOS_SCALE_M) - e.clamp_min(0) / TOA_NLOS_SCALE_M
            - 0.5 * (e.clamp_max(0) / s_los) ** 2)
    out = torch.where(toa_on, torch.logaddexp(los, nlos), torch.zeros_like(los))  # masked: NaN-safe
    return out if per_slot else out.sum(1)


def pool_map_cells(term: torch.Tensor, reach: int) -> torch.Tensor:
    """[N, S, H, W] per-slot map term ``term`` as the even mixture of its values over the ``(2 reach + 1)^2`` cells
    around each cell (log-mean-exp; the raster's edge cells repeated beyond it): the map's value at the target is
    the map's somewhere within ``reach`` cells (``prior_timing="line_or_pooled_maps"``, :data:`MAP_POOL_CELLS`;
    :func:`~rflocal_core.models.window.pooled_map_terms` is the window search's same term)."""
    if reach <= 0:
        return term
    n, s, h, w = term.shape
    pad = F.pad(term.reshape(n * s, 1, h, w), (reach, reach, reach, reach), mode="replicate")[:, 0]
    shifts = torch.stack([pad[:, dy:dy + h, dx:dx + w] for dy in range(2 * reach + 1) for dx in range(2 * reach + 1)])
    return (torch.logsumexp(shifts, 0) - math.log(len(shifts))).reshape(n, s, h, w)


def timing_map_terms(batch: MapBatch, *, toa_sigma_m: float, aoa_sigma_deg: float, pool: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The ToA and AoA terms of :func:`physics_loglik` [N, H, W] each, with the ray-traced maps of
    ``batch.site_channels`` in place of the straight lines node -> cell; None where the batch has no map channels.

    The same likelihoods (LoS/NLoS mixture; von Mises and uniform) of the reported ToA against the map's
    first-path distance and of the reported bearing against the map's bearing, at every cell where the slot's
    node has a map value (``timing_ok``); the straight line where it has none. ``pool``: each slot's terms
    mixed over the cells within ``pool`` cells (:func:`pool_map_cells`) before the sum over the slots.
    """
    if batch.site_channels is None:
        return None
    b, ch = batch.base, batch.site_channels.float()  # [N, S, E, H, W]
    n, _, _, h, w = ch.shape
    dev = ch.device
    ok = batch.site_has_map[..., None, None] & (ch[:, :, MAP_CHANNELS.index("timing_ok")] > 0.5)
    ys = (torch.arange(h, device=dev, dtype=ch.dtype) + 0.5) / h
    xs = (torch.arange(w, device=dev, dtype=ch.dtype) + 0.5) / w
    dx = (xs.view(1, 1, 1, w) - b.node_xy[..., 0, None, None].to(ch.dtype)).expand_as(ok)
    dy = (ys.view(1, 1, h, 1) - b.node_xy[..., 1, None, None].to(ch.dtype)).expand_as(ok)
    toa = None
    if batch.extent_m is not None:
        ext = float(batch.extent_m)
        dz = (b.col("node_z") * NODE_Z_SCALE_M / ext)[..., None, None].to(ch.dtype)
        # the point whose straight line from the node (node height included) is as long as the map's first path
        flat = ((ch[:, :, MAP_CHANNELS.index("toa_m")] / ext) ** 2 - dz ** 2).clamp_min(0).sqrt()
        toa = toa_loglik_at(batch, torch.where(ok, flat, dx), torch.where(ok, 0.0, dy), toa_sigma_m=toa_sigma_m,
                            per_slot=True)
    aoa = aoa_loglik_at(b, torch.where(ok, ch[:, :, MAP_CHANNELS.index("aoa_sin")], dx),
                        torch.where(ok, ch[:, :, MAP_CHANNELS.index("aoa_cos")], dy), sigma_deg=aoa_sigma_deg,
                        per_slot=True)
    toa, aoa = (None if t is None else pool_map_cells(t, pool).sum(1) for t in (toa, aoa))
    return (torch.zeros(n, h, w, device=dev, dtype=ch.dtype) if toa is None else toa), aoa.to(ch.dtype)


def mix_timing_maps(loglik: torch.Tensor, terms: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """``loglik`` [N, 4, H, W] (:func:`physics_loglik`) with its ToA and AoA terms each the even mixture of the
    straight-line term and the map term of ``terms`` (:func:`timing_map_terms`), ``prior_timing="line_or_maps"``:
    the sample's ranges and bearings follow either. Unchanged where ``terms`` is None (no map channels)."""
    if terms is None:
        return loglik
    toa, aoa = (torch.logaddexp(t.to(loglik.dtype), loglik[:, k]) - math.log(2.0) for k, t in zip((1, 2), terms))
    return torch.cat([loglik[:, :1], toa.unsqueeze(1), aoa.unsqueeze(1), loglik[:, 3:]], dim=1)


def radio_channels(batch: MapBatch, loglik: torch.Tensor,
                   cells: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """[N, 8, H, W] the radio-map stream (:data:`RADIO_CHANNELS`), invariant to slot order.

    ``loglik``: the :func:`physics_loglik` of the batch, whose RSS, ToA and AoA terms are the
    last three channels, scaled; ``cells``: its :func:`rss_cells`.
    """
    maps = batch.site_maps.float()
    slots = _valid_slots(batch)
    has = (batch.base.mask & batch.site_has_map).to(maps.dtype)[..., None, None]
    mean_pg = (maps * has).sum(1) / has.sum(1).clamp_min(1.0)
    sq, dof, no_ray = cells
    n_slots = slots.to(maps.dtype).sum(1)[:, None, None]
    coverage = (n_slots - no_ray) / n_slots.clamp_min(1.0)  # reporting slots with a ray at the cell
    informative = (dof > 0.5).to(maps.dtype)
    mse = sq / dof.clamp_min(1.0)
    match = torch.exp(-mse / (2 * MATCH_SIGMA_DB ** 2)) * informative
    rms = (mse.sqrt() / RMS_SCALE_DB).clamp(max=3.0) * informative
    ll = (loglik[:, :3] / LL_SCALE).clamp(-5.0, 0.0)
    return torch.cat([torch.stack([mean_pg, coverage, match, rms, informative], dim=1), ll], dim=1)


def channel_stream(batch: MapBatch) -> torch.Tensor:
    """[N, 5, H, W] the map-channel stream (:data:`CHANNEL_STREAM`) from ``batch.site_channels``, slot-order invariant.

    Zeros where the batch has no channels (a dataset without SINR/ToA/AoA maps).
    """
    b = batch.base
    n, _, h, w = batch.site_maps.shape
    if batch.site_channels is None:
        return torch.zeros(n, len(CHANNEL_STREAM), h, w, device=b.feats.device, dtype=torch.float32)
    ch = batch.site_channels.float()  # [N, S, E, H, W]
    idx = {k: MAP_CHANNELS.index(k) for k in MAP_CHANNELS}
    has = (b.mask & batch.site_has_map)[..., None, None]
    timing = has & (ch[:, :, idx["timing_ok"]] > 0.5)
    toa_on = timing & (b.col("toa_ok") > 0.5)[..., None, None]
    ext = float(batch.extent_m) if batch.extent_m is not None else 0.0
    err = (b.col("toa")[..., None, None].float() * ext - ch[:, :, idx["toa_m"]]) / TOA_MATCH_M
    n_toa = toa_on.float().sum(1)
    mean_sq = torch.where(toa_on, err * err, torch.zeros_like(err)).sum(1) / n_toa.clamp_min(1.0)
    toa_any = (n_toa > 0.5) & (ext > 0)
    toa_match = torch.exp(-0.5 * mean_sq) * toa_any
    aoa_on = timing & (b.col("aoa_ok") > 0.5)[..., None, None]
    cos_d = (b.col("aoa_sin")[..., None, None].float() * ch[:, :, idx["aoa_sin"]]
             + b.col("aoa_cos")[..., None, None].float() * ch[:, :, idx["aoa_cos"]])
    n_aoa = aoa_on.float().sum(1)
    aoa_match = torch.where(aoa_on, 0.5 * (1.0 + cos_d), torch.zeros_like(cos_d)).sum(1) / n_aoa.clamp_min(1.0)
    sinr_best = torch.where(has, ch[:, :, idx["sinr"]], torch.zeros_like(cos_d)).amax(1)
    return torch.stack([toa_match, toa_any.float(), aoa_match, (n_aoa > 0.5).float(), sinr_best], dim=1)


def _pool_prior(total: torch.Tensor, g: int, pool: str = "lse") -> tuple[torch.Tensor, torch.Tensor]:
    """Prior [N, H, W] -> (its score per coarse cell [N, g*g], an offset in each cell [N, g*g, 2]).

    ``pool="lse"``: the log-sum-exp over the cell's sub-cells (its marginal likelihood) and the
    prior-weighted mean of the sub-cell centres. ``pool="max"``: the largest sub-cell value and that
    sub-cell's centre, so that the best coarse cell (network logits at zero) holds the prior's argmax
    over the whole raster (decoding on the fine lattice). Offsets are in unit-square units, relative to
    the cell centre. Rasters whose side is not a multiple of ``g`` are resampled first.
    """
    n, h, w = total.shape
    if h % g or w % g:
        total = F.interpolate(total.unsqueeze(1), size=(g * SUB_CELLS, g * SUB_CELLS), mode="bilinear",
                              align_corners=False)[:, 0]
        h = w = g * SUB_CELLS
    ky, kx = h // g, w // g
    blocks = total.view(n, g, ky, g, kx).permute(0, 1, 3, 2, 4).reshape(n, g * g, ky * kx)
    sub_y = ((torch.arange(ky, device=total.device, dtype=total.dtype) + 0.5) / ky - 0.5) / g
    sub_x = ((torch.arange(kx, device=total.device, dtype=total.dtype) + 0.5) / kx - 0.5) / g
    gy, gx = torch.meshgrid(sub_y, sub_x, indexing="ij")
    sub = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # [ky * kx, 2]
    if pool == "max":
        score, at = blocks.max(dim=-1)
        return score, sub[at]
    weights = torch.softmax(blocks, dim=-1)
    return torch.logsumexp(blocks, dim=-1), weights @ sub


def subcell_offset(batch: MapBatch, loglik: torch.Tensor, weight: torch.Tensor, cell: torch.Tensor, g: int,
                   points: int, *, toa_sigma_m: float, aoa_sigma_deg: float,
                   timing: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor | None:
    """[N, 2] the weighted prior's posterior mean near its best map cell within coarse cell ``cell`` [N], as an
    offset (unit square) from that coarse cell's centre; None where the raster side is not a multiple of ``g``.

    The map cells quantize the prior: on the real tiles of bench_any_city.py its argmax is ~1.5 m off at the
    median with 4 m cells even where the likelihood is right. ToA and AoA are geometry, known at any point,
    so they are evaluated on ``points`` x ``points`` points per map cell within one map cell of the
    best one's centre (RSS and footprint terms: those of the map cell holding the point), and the output
    is the mean under that local posterior (``loglik`` [N, 4, H, W] per term, ``weight`` [4] of each term).
    ``timing``: the ToA and AoA map terms (:func:`timing_map_terms`, ``prior_timing="line_or_maps"``), each
    mixed evenly with the straight line at a point as the map cell holding it has them.
    """
    n, _, h, w = loglik.shape
    if h % g or w % g:
        return None
    ky, kx = h // g, w // g
    dev, dtype = loglik.device, loglik.dtype
    total = (loglik * weight.view(1, -1, 1, 1)).sum(1)
    blocks = total.view(n, g, ky, g, kx).permute(0, 1, 3, 2, 4).reshape(n, g * g, ky * kx)
    block = torch.gather(blocks, 1, cell.view(n, 1, 1).expand(n, 1, ky * kx))[:, 0]  # [N, ky * kx]
    sub = index_ordered(block.detach(), largest=True).topk(1, dim=1).indices[:, 0]
    iy = (cell // g) * ky + sub // kx  # the best map cell in the coarse cell
    ix = (cell % g) * kx + sub % kx
    d = (torch.arange(2 * points, device=dev, dtype=dtype) + 0.5) / points - 1.0  # map cells from its centre
    px = ((ix.to(dtype) + 0.5).view(n, 1, 1) + d.view(1, 1, -1)).expand(n, 2 * points, 2 * points)
    py = ((iy.to(dtype) + 0.5).view(n, 1, 1) + d.view(1, -1, 1)).expand(n, 2 * points, 2 * points)
    px, py = px.reshape(n, -1), py.reshape(n, -1)  # [N, P], map cells
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    at = py.floor().clamp(0, h - 1).long() * w + px.floor().clamp(0, w - 1).long()
    cells_ll = (loglik[:, [0, 3]] * weight[[0, 3]].view(1, -1, 1, 1)).sum(1).reshape(n, -1)  # RSS + footprint
    ll = torch.gather(cells_ll, 1, at)
    ux, uy = px / w, py / h  # unit square
    b = batch.base
    dx = ux.unsqueeze(1) - b.node_xy[..., 0, None].to(dtype)  # [N, S, P]
    dy = uy.unsqueeze(1) - b.node_xy[..., 1, None].to(dtype)
    toa = toa_loglik_at(batch, dx, dy, toa_sigma_m=toa_sigma_m)
    aoa = aoa_loglik_at(b, dx, dy, sigma_deg=aoa_sigma_deg).to(dtype)
    if timing is not None:  # the map terms of the map cell holding each point, or the line at the point
        toa = torch.zeros_like(ll) if toa is None else toa
        toa, aoa = (torch.logaddexp(line, torch.gather(t.to(dtype).reshape(n, -1), 1, at)) - math.log(2.0)
                    for line, t in zip((toa, aoa), timing))
    if toa is not None:
        ll = ll + weight[1] * toa
    ll = ll + weight[2] * aoa
    p = torch.softmax(ll.masked_fill(~inside, float("-inf")), dim=1)
    mean = torch.stack([(p * ux).sum(1), (p * uy).sum(1)], dim=1)
    centre = torch.stack([(cell % g).to(dtype) + 0.5, (cell // g).to(dtype) + 0.5], dim=1) / g
    return mean - centre


# --------------------------------------------------------------------------- modules


class _MapEncoder(nn.Module):
    """Raster stack [N, C, H, W] -> token grid [N, d, h, w] and the unit extent it covers."""

    def __init__(self, c_in: int, d: int, kind: str, patch: int) -> None:
        super().__init__()
        self.kind, self.patch = kind, patch
        if kind == "patch":
            self.body = nn.Conv2d(c_in, d, patch, stride=patch)
        else:
            downs = min(int(math.log2(patch)), 3) if patch > 1 else 0
            layers: list[nn.Module] = [nn.Conv2d(c_in, d // 2, 3, padding=1), nn.GELU()]
            ch = d // 2
            for _ in range(downs):
                layers += [nn.Conv2d(ch, d, 3, stride=2, padding=1), nn.GELU()]
                ch = d
            layers.append(nn.Conv2d(ch, d, 1))
            self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float]]:
        h, w = x.shape[-2:]
        p = self.patch
        th, tw = max(math.ceil(h / p), 1), max(math.ceil(w / p), 1)
        if self.kind == "patch":
            x = F.pad(x, (0, tw * p - w, 0, th * p - h))
            return self.body(x), (tw * p / w, th * p / h)
        y = self.body(x)
        if y.shape[-2:] != (th, tw):
            y = F.adaptive_avg_pool2d(y, (th, tw))
        return y, (1.0, 1.0)


def _pool_to(x: torch.Tensor, size: int, kind: str) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size]: area mean or max (fast paths for integer ratios)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if h % size == 0 and w % size == 0:
        k = (h // size, w // size)
        return F.avg_pool2d(x, k) if kind == "avg" else F.max_pool2d(x, k)
    if size % h == 0 and size % w == 0:  # finer than the raster: every sub-cell is inside one cell
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.adaptive_avg_pool2d(x, size) if kind == "avg" else F.adaptive_max_pool2d(x, size)


def _centres(n_y: int, n_x: int, extent: tuple[float, float], device: torch.device) -> torch.Tensor:
    """[n_y * n_x, 2] unit (x, y) of the centres of a grid covering ``extent``, row-major from the south."""
    ys = (torch.arange(n_y, device=device, dtype=torch.float32) + 0.5) / n_y * extent[1]
    xs = (torch.arange(n_x, device=device, dtype=torch.float32) + 0.5) / n_x * extent[0]
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(-1, 2)


@register("mapformer")
class MapFormer(LocNet):
    """Map-conditioned transformer, coarse heatmap + fine offsets, physics loss (``mapformer``)."""

    config_cls = MapFormerConfig
    needs_maps: ClassVar[bool] = True

    def __init__(self, config: MapFormerConfig, *, vocab_size: int = 0) -> None:
        super().__init__(config, vocab_size=vocab_size)
        c = config
        d = c.d_model
        # the map frames have no log_scale column: the token is TOKEN_COLUMNS, then PHY/MAC, then the band
        self.token_mlp = mlp([4 * c.pe_freqs + token_width("scene", phy=c.phy_features, band=c.band_feature),
                              2 * d, d])
        self.node_embedding = nn.Embedding(vocab_size + 1, d, padding_idx=0)
        nn.init.normal_(self.node_embedding.weight, std=0.02)
        with torch.no_grad():
            self.node_embedding.weight[0].zero_()
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, c.heads, 2 * d, c.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.radio_encoder = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.radio_norm = nn.LayerNorm(d)

        self.map_channels = (len(RADIO_CHANNELS) if c.use_radio_maps else 0) + (
            len(SCENE_CHANNELS) if c.use_scene else 0) + (len(CHANNEL_STREAM) if c.use_map_channels else 0)
        cm = self.map_channels
        if cm:
            self.map_encoder = _MapEncoder(cm, d, c.map_encoder, c.patch_size)
            self.map_pos = nn.Linear(4 * c.pe_freqs, d)
            if c.map_layers:
                mlayer = nn.TransformerEncoderLayer(d, c.heads, 2 * d, c.dropout, activation="gelu",
                                                    batch_first=True, norm_first=True)
                self.map_transformer = nn.TransformerEncoder(mlayer, c.map_layers, enable_nested_tensor=False)
            else:
                self.map_transformer = None
            self.map_norm = nn.LayerNorm(d)
            self.cross = nn.MultiheadAttention(d, c.heads, dropout=c.dropout, batch_first=True)
            self.cell_tok = nn.Linear(d, d)
            self.cell_raster = nn.Linear(cm * (SUB_CELLS ** 2 + 1), d)
        self.fuse = mlp([2 * d, 2 * d, d], final_act=True)
        self.cell_pos = nn.Linear(4 * c.pe_freqs, d)
        self.cell_norm = nn.LayerNorm(d)
        self.film = nn.Linear(d, 2 * d)
        self.cell_conv = nn.Sequential(nn.Conv2d(d, d, 3, padding=1, groups=d), nn.GELU(), nn.Conv2d(d, d, 1),
                                       nn.GELU(), nn.Conv2d(d, d, 3, padding=1, groups=d), nn.Conv2d(d, d, 1))
        self.cell_mlp = mlp([d, d, d], final_act=True)
        self.logit_head = nn.Linear(d, 1)
        self.fine_head = nn.Linear(d, 4) if c.top_k else None
        self.drop = nn.Dropout(c.dropout)
        # softplus(w) is the weight of each prior term; starts at 1 (the physics as derived)
        self.prior_weight = nn.Parameter(torch.full((len(PRIOR_TERMS),), math.log(math.e - 1.0))) \
            if c.physics_prior else None
        if c.physics_prior:  # start as the prior exactly: the network's logits and offsets begin at 0
            nn.init.zeros_(self.logit_head.weight)
            nn.init.zeros_(self.logit_head.bias)
            if self.fine_head is not None:
                nn.init.zeros_(self.fine_head.weight)
                nn.init.zeros_(self.fine_head.bias)
        # history tokens (earlier report times); built last, so snapshot data trains as before
        self.hist_phy = len(PHY_COLUMNS) if c.phy_features and c.history_phy else 0
        self.hist_mlp = mlp([4 * c.pe_freqs + HIST_BASE + self.hist_phy, 2 * d, d])
        self.hist_type = nn.Parameter(torch.randn(1, 1, 1, d) * 0.02)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load weights; a checkpoint whose history tokens had no PHY/MAC columns (from before ``history_phy``)
        gets zero weights on them, so the network computes what it did."""
        key = "hist_mlp.0.weight"
        saved, own = state_dict.get(key), self.hist_mlp[0].weight
        if saved is not None and self.hist_phy and tuple(saved.shape) == (own.shape[0], own.shape[1] - self.hist_phy):
            state_dict = {**state_dict, key: torch.cat([saved, saved.new_zeros(own.shape[0], self.hist_phy)], 1)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ----------------------------------------------------------------- forward

    def forward(self, batch: MapBatch) -> dict[str, torch.Tensor]:
        if not isinstance(batch, MapBatch):
            msg = f"mapformer: expected a MapBatch (report tokens with maps), got {type(batch).__name__}"
            raise InvalidInputError(msg)
        c = self.config
        n = batch.base.mask.shape[0]  # not len(): a traced (ONNX) batch size stays symbolic
        g_cells = c.grid_cells
        dev = batch.base.feats.device

        radio = self._encode_reports(batch.base)  # [N, d]

        # map encoder, cross-attention
        cells = _centres(g_cells, g_cells, (1.0, 1.0), dev)  # [G*G, 2]
        cell_h = self.cell_pos(sinusoidal(cells, c.pe_freqs)).unsqueeze(0).expand(n, -1, -1)
        loglik = rss = timing = None
        if c.physics_prior or c.use_radio_maps:
            rss = rss_cells(batch)  # once, for the prior and the radio-map stream
            loglik = physics_loglik(batch, rss_sigma_db=c.prior_rss_sigma_db, toa_sigma_m=c.prior_toa_sigma_m,
                                    aoa_sigma_deg=c.prior_aoa_sigma_deg, cells=rss)  # [N, 4, H, W]
            if c.prior_timing != "line":
                timing = timing_map_terms(batch, toa_sigma_m=c.prior_toa_sigma_m, aoa_sigma_deg=c.prior_aoa_sigma_deg,
                                          pool=map_pool_cells(c.prior_timing))
                loglik = mix_timing_maps(loglik, timing)
        if self.map_channels:
            ctx, cell_h = self._map_context(batch, loglik, rss, radio, cells, cell_h)
        else:
            ctx = torch.zeros_like(radio)
        cell_h, logits = self._cell_logits(radio, ctx, cell_h)
        prior_offset = None
        if self.prior_weight is not None and loglik is not None:
            prior_logits, prior_offset = self._prior_logits(loglik)
            logits = logits + prior_logits
            if c.prior_subcell > 0 and self.fine_head is not None:
                prior_offset = self._subcell_prior(batch, loglik, logits, prior_offset, timing)

        out: dict[str, torch.Tensor] = {"coarse_logits": logits}
        if self.fine_head is not None:
            mu, sigma, fine = self._fine_positions(cell_h, logits, cells, prior_offset)
            out.update(fine)
        else:
            mu, sigma = self._soft_argmax(logits, cells, 1.0 / g_cells)
        out["mu"], out["sigma"] = mu, sigma

        if not self.training and c.refine_steps > 0:
            out["mu_net"] = mu
            out["mu"], out["residual_db"] = self.refine(batch, out, steps=c.refine_steps, lr=c.refine_lr)
        else:
            with torch.no_grad():
                mse, has = physics_residual(batch, mu.detach())
            out["residual_db"] = torch.where(has, mse.sqrt(), torch.full_like(mse, float("nan")))
        return out

    def _encode_reports(self, b: Batch) -> torch.Tensor:
        """The radio encoder: report tokens (and history tokens) -> the CLS embedding [N, d]."""
        c = self.config
        n = b.mask.shape[0]
        tokens = torch.cat([sinusoidal(b.node_xy, c.pe_freqs) * b.col("pos_ok").unsqueeze(-1), b.feats], dim=-1)
        ids = self.node_embedding(b.node_id.clamp(0, self.vocab_size))
        h = self.token_mlp(tokens) + ids
        full = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=b.feats.device), b.mask], dim=1)
        h = torch.cat([self.cls.expand(n, 1, -1), h], dim=1)
        if b.hist is not None and b.hist_mask is not None and bool(b.hist_mask.any()):
            ht, hm = self._history(b, tokens[..., :4 * c.pe_freqs], ids)
            h, full = torch.cat([h, ht], dim=1), torch.cat([full, hm], dim=1)
        return self.radio_norm(self.radio_encoder(h, src_key_padding_mask=~full))[:, 0]

    def _map_context(
        self, batch: MapBatch, loglik: torch.Tensor | None, rss: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        radio: torch.Tensor, cells: torch.Tensor, cell_h: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The map context of the radio embedding [N, d], and the cell tokens with map features added."""
        c = self.config
        n, g_cells = radio.shape[0], c.grid_cells
        x = self._rasters(batch, loglik, rss)  # [N, C, H, W]
        grid, extent = self.map_encoder(x)
        th, tw = grid.shape[-2:]
        pos = self.map_pos(sinusoidal(_centres(th, tw, extent, x.device), c.pe_freqs))
        mt = grid.flatten(2).transpose(1, 2) + pos  # [N, T, d]
        if self.map_transformer is not None:
            mt = self.map_transformer(mt)
        mt = self.map_norm(mt)
        ctx, _ = self.cross(radio.unsqueeze(1), mt, mt, need_weights=False)
        # token features at the cell centres (grid_sample over the token grid's extent)
        tgrid = mt.transpose(1, 2).reshape(n, c.d_model, th, tw)
        if extent == (1.0, 1.0):  # the same as sampling at the cell centres, faster
            at = F.interpolate(tgrid, size=(g_cells, g_cells), mode="bilinear", align_corners=False)
            at = at.flatten(2).transpose(1, 2)
        else:
            where = torch.stack([cells[:, 0] / extent[0], cells[:, 1] / extent[1]], -1) * 2 - 1
            at = F.grid_sample(tgrid, where.view(1, 1, -1, 2).expand(n, -1, -1, -1), mode="bilinear",
                               padding_mode="border", align_corners=False)[:, :, 0].transpose(1, 2)
        s2d = F.pixel_unshuffle(_pool_to(x, g_cells * SUB_CELLS, "avg"), SUB_CELLS)  # [N, C * SUB^2, G, G]
        mx = _pool_to(x, g_cells, "max")
        raster = torch.cat([s2d, mx], dim=1).flatten(2).transpose(1, 2)  # [N, G*G, C * (SUB^2 + 1)]
        return ctx[:, 0], cell_h + self.cell_tok(at) + self.cell_raster(raster)

    def _cell_logits(self, radio: torch.Tensor, ctx: torch.Tensor,
                     cell_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse radio and map context into the cell tokens (FiLM, convolutions): cell tokens [N, G*G, d], logits."""
        n, d, g_cells = radio.shape[0], self.config.d_model, self.config.grid_cells
        fused = self.drop(self.fuse(torch.cat([radio, ctx], dim=-1)))  # [N, d]
        gamma, beta = self.film(fused).unsqueeze(1).chunk(2, dim=-1)
        cell_h = self.cell_norm(cell_h) * (1 + gamma) + beta
        sq = cell_h.transpose(1, 2).reshape(n, d, g_cells, g_cells)
        sq = sq + self.cell_conv(F.gelu(sq))
        cell_h = self.cell_mlp(sq.flatten(2).transpose(1, 2))  # [N, G*G, d]
        return cell_h, self.logit_head(cell_h)[..., 0]  # [N, G*G]

    def _prior_term_weights(self, loglik: torch.Tensor) -> torch.Tensor:
        """[4] the learned weight of each prior term (0 for a stream switched off)."""
        c = self.config
        use = torch.tensor([c.use_radio_maps, True, True, c.use_scene], device=loglik.device, dtype=loglik.dtype)
        return F.softplus(self.prior_weight) * use

    def _prior_logits(self, loglik: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted physics prior pooled to coarse cells (``prior_pool``): logits [N, G*G], its offset in each."""
        weight = self._prior_term_weights(loglik)
        prior = (loglik * weight.view(1, -1, 1, 1)).sum(1)  # [N, H, W]
        return _pool_prior(prior, self.config.grid_cells, self.config.prior_pool)

    def _subcell_prior(self, batch: MapBatch, loglik: torch.Tensor, logits: torch.Tensor, prior_offset: torch.Tensor,
                       timing: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``prior_offset`` with the best coarse cell's offset from :func:`subcell_offset` (``prior_subcell``;
        ``timing``: the map terms of ``prior_timing="line_or_maps"``)."""
        c = self.config
        best = index_ordered(logits.detach(), largest=True).topk(1, dim=1).indices[:, 0]  # the output's cell
        fine = subcell_offset(batch, loglik, self._prior_term_weights(loglik), best, c.grid_cells, c.prior_subcell,
                              toa_sigma_m=c.prior_toa_sigma_m, aoa_sigma_deg=c.prior_aoa_sigma_deg, timing=timing)
        if fine is None:
            return prior_offset
        return prior_offset.scatter(1, best.view(-1, 1, 1).expand(-1, 1, 2), fine.unsqueeze(1).to(prior_offset.dtype))

    def _fine_positions(
        self, cell_h: torch.Tensor, logits: torch.Tensor, cells: torch.Tensor, prior_offset: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``mu``, ``sigma`` from the fine heads of the top-k cells, and the fine and top-k outputs."""
        c = self.config
        g_cells = c.grid_cells
        size = 1.0 / g_cells
        fine = self.fine_head(self.drop(cell_h))  # [N, G*G, 4]
        offset = torch.tanh(fine[..., :2]) * size
        if prior_offset is not None:  # start from the prior's mean in the cell, still within one cell
            offset = (offset + prior_offset).clamp(-size, size)
        f_mu = cells.unsqueeze(0) + offset
        f_sigma = F.softplus(fine[..., 2:] - 2.0) * size + c.sigma_min
        k = min(c.top_k, g_cells ** 2)
        top = index_ordered(logits.detach(), largest=True).topk(k, dim=1).indices  # [N, K], best first; ties by index
        idx = top.unsqueeze(-1).expand(-1, -1, 2)
        mu_k, sigma_k = torch.gather(f_mu, 1, idx), torch.gather(f_sigma, 1, idx)
        prob_k = torch.softmax(torch.gather(logits, 1, top), dim=1)
        mu = mu_k[:, 0]
        var = (prob_k.unsqueeze(-1) * (sigma_k ** 2 + (mu_k - mu.unsqueeze(1)) ** 2)).sum(1)
        sigma = var.clamp_min(c.sigma_min ** 2).sqrt()
        return mu, sigma, {"fine_mu": f_mu, "fine_sigma": f_sigma, "topk_cells": top, "topk_mu": mu_k,
                           "topk_sigma": sigma_k, "topk_prob": prob_k}

    def _history(self, b: Batch, pe: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """History tokens [N, K, d] and their mask [N, K]: one per (earlier time, slot) that any sample uses.

        Token: MLP(node position encoding, RSS, age, log age[, the report's PHY/MAC columns]) +
        node-id embedding + a learned "earlier report" embedding; the age (seconds before the
        current report) is the time embedding. PHY/MAC columns a batch does not carry (a
        ``hist`` of :data:`HIST_COLUMNS` only) are zeros: absent, as their ``ok`` flags say.
        """
        hm = b.hist_mask
        hist = torch.where(hm.unsqueeze(-1), b.hist.to(pe.dtype), torch.zeros((), dtype=pe.dtype, device=pe.device))
        n, t, s, _ = hist.shape
        age = hist[..., 1:2]
        parts = [pe.unsqueeze(1).expand(n, t, s, -1), hist[..., :1], age, torch.log1p(age.clamp_min(0) * AGE_SCALE_S) / 5.0]
        if self.hist_phy:
            phy = hist[..., len(HIST_COLUMNS):len(HIST_COLUMNS) + self.hist_phy]
            parts.append(F.pad(phy, (0, self.hist_phy - phy.shape[-1])))
        x = torch.cat(parts, dim=-1)
        ht = self.hist_mlp(x) + ids.unsqueeze(1) + self.hist_type  # [N, T, S, d]
        ht, hm = ht.reshape(n, t * s, -1), hm.reshape(n, t * s)
        used = hm.any(0)
        return ht[:, used], hm[:, used]

    def _rasters(self, batch: MapBatch, loglik: torch.Tensor | None,
                 rss: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        parts = []
        if self.config.use_radio_maps:
            parts.append(radio_channels(batch, loglik, rss))
        if self.config.use_scene:
            parts.append(batch.scene_rasters.float())
        if self.config.use_map_channels:
            parts.append(channel_stream(batch))
        return torch.cat(parts, dim=1)

    def _soft_argmax(self, logits: torch.Tensor, cells: torch.Tensor, size: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse-only output: soft-argmax over the 3x3 cells around the best one."""
        g = self.config.grid_cells
        n = logits.shape[0]
        best = logits.detach().argmax(1)
        by, bx = best // g, best % g
        d = torch.arange(-1, 2, device=logits.device)
        ny = (by[:, None, None] + d[None, :, None]).expand(n, 3, 3).reshape(n, 9)
        nx = (bx[:, None, None] + d[None, None, :]).expand(n, 3, 3).reshape(n, 9)
        inside = (ny >= 0) & (ny < g) & (nx >= 0) & (nx < g)
        idx = ny.clamp(0, g - 1) * g + nx.clamp(0, g - 1)
        w = torch.gather(logits, 1, idx).masked_fill(~inside, float("-inf")).softmax(1)
        pts = cells[idx]  # [N, 9, 2]
        mu = (w.unsqueeze(-1) * pts).sum(1)
        var = (w.unsqueeze(-1) * (pts - mu.unsqueeze(1)) ** 2).sum(1) + size ** 2 / 12
        return mu, var.sqrt() + self.config.sigma_min

    # ----------------------------------------------------------------- physics

    physics_residual = staticmethod(physics_residual)

    def refine(self, batch: MapBatch, out: dict[str, torch.Tensor], steps: int | None = None,
               lr: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient steps on the position (not the weights) against the physics residual.

        Starts at ``out["mu"]``; Adam with step ``lr`` (unit square), positions kept in the
        square; per sample the position with the lowest residual is returned (so the residual
        never grows). Returns ``(mu [N, 2], residual_db [N])``: the RMS residual in dB at the
        returned position, NaN where no slot gives evidence (those samples are not moved).
        Works under ``torch.no_grad`` (not under ``torch.inference_mode``).
        """
        steps = self.config.refine_steps if steps is None else int(steps)
        lr = self.config.refine_lr if lr is None else float(lr)
        mu0 = out["mu"].detach().float()
        with torch.enable_grad():
            best = mu0.clone()
            best_mse, has = physics_residual(batch, best)
            best_mse = best_mse.detach()
            if steps > 0 and bool(has.any()):
                pos = mu0.clone().requires_grad_(True)
                opt = torch.optim.Adam([pos], lr=lr)
                for _ in range(steps):
                    mse, _ = physics_residual(batch, pos)
                    opt.zero_grad()
                    mse.sum().backward()
                    opt.step()
                    with torch.no_grad():
                        pos.clamp_(0.0, 1.0)
                        new, new_has = physics_residual(batch, pos)
                        better = has & new_has & (new < best_mse)
                        best = torch.where(better.unsqueeze(-1), pos, best)
                        best_mse = torch.where(better, new, best_mse)
        resid = torch.where(has, best_mse.sqrt(), torch.full_like(best_mse, float("nan")))
        return best.detach().to(out["mu"].dtype), resid

    # ----------------------------------------------------------------- training

    def loss(self, batch: MapBatch, out: dict[str, torch.Tensor], *, stage: str = "joint"
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Coarse cross-entropy + fine NLL + position NLL + physics_weight * physics.

        ``stage`` is accepted for the training engine; mapformer has no auxiliary stage.
        Samples without truth are left out.
        """
        c = self.config
        b = batch.base if isinstance(batch, MapBatch) else batch
        g = c.grid_cells
        ok = torch.isfinite(b.truth).all(-1)
        truth = torch.nan_to_num(b.truth.to(out["mu"].dtype))
        okf = ok.to(truth.dtype)
        denom = okf.sum().clamp_min(1.0)
        cell_xy = (truth * g).floor().long().clamp(0, g - 1)
        true_idx = cell_xy[:, 1] * g + cell_xy[:, 0]
        logits = out["coarse_logits"]
        coarse = (F.cross_entropy(logits.float(), true_idx, reduction="none") * okf).sum() / denom
        pos = (gaussian_beta_nll(out["mu"], out["sigma"], truth, c.beta) * okf).sum() / denom
        total = coarse + pos
        parts = {"coarse": float(coarse.detach()), "position": float(pos.detach())}
        if "fine_mu" in out:
            sel = torch.cat([out["topk_cells"], true_idx.unsqueeze(1)], dim=1)  # [N, K + 1]
            idx = sel.unsqueeze(-1).expand(-1, -1, 2)
            mu_s, sigma_s = torch.gather(out["fine_mu"], 1, idx), torch.gather(out["fine_sigma"], 1, idx)
            centre = (torch.stack([sel % g, sel // g], -1).to(truth.dtype) + 0.5) / g
            reach = ((truth.unsqueeze(1) - centre).abs() <= 1.0 / g).all(-1) & ok.unsqueeze(1)
            nll = gaussian_beta_nll(mu_s, sigma_s, truth.unsqueeze(1).expand_as(mu_s), c.beta)
            w = reach.to(nll.dtype)
            fine = (nll * w).sum() / w.sum().clamp_min(1.0)
            total = total + fine
            parts["fine"] = float(fine.detach())
        mu = out.get("mu_net", out["mu"])
        mse, has = physics_residual(batch, mu)
        hasf = (has & ok).to(mse.dtype)
        physics = (mse * hasf).sum() / hasf.sum().clamp_min(1.0) / PHYSICS_SCALE_DB2
        parts["physics"] = float(physics.detach())
        if c.physics_weight > 0:
            total = total + c.physics_weight * physics
        return total, parts

    def augment(self, batch: MapBatch | Batch, *, epoch_fraction: float, extent_m: float,
                generator: torch.Generator) -> MapBatch | Batch:
        """Report dropout, RSS noise, jitter; feature dropout; consistent map rotation and scaling."""
        c = self.config
        is_map = isinstance(batch, MapBatch)
        base = super().augment(batch.base if is_map else batch, epoch_fraction=epoch_fraction, extent_m=extent_m,
                               generator=generator)
        if c.feature_dropout > 0:
            base = self._feature_dropout(base, generator)
        if c.temporal_dropout > 0 and base.hist_mask is not None:
            keep = torch.rand(base.hist_mask.shape, generator=generator) >= c.temporal_dropout
            base = base.with_tokens(hist_mask=base.hist_mask & keep.to(base.hist_mask.device))
        if not is_map:
            return base
        batch = batch.with_base(base)
        if c.map_rotation_deg > 0 or c.map_scale > 0:
            batch = self._geometric(batch, generator)
        return batch

    def _feature_dropout(self, b: Batch, generator: torch.Generator) -> Batch:
        p = self.config.feature_dropout
        n, s = b.mask.shape
        oks = torch.stack([b.col(g[-1]) > 0.5 for g in _GROUPS], -1)  # [N, S, 3]
        drop = (torch.rand((n, s, len(_GROUPS)), generator=generator) < p).to(oks.device) & oks
        left = (oks & ~drop).any(-1)
        drop = drop & left.unsqueeze(-1)  # never drop every measurement of a token
        feats = b.feats.clone()
        for gi, group in enumerate(_GROUPS):
            for col in group:
                i = TOKEN_COLUMNS.index(col)
                feats[..., i] = feats[..., i] * (~drop[..., gi]).to(feats.dtype)
        hist_mask = None if b.hist_mask is None else b.hist_mask & ~drop[..., 0].unsqueeze(1)  # RSS dropped: all times
        return b.with_tokens(feats=feats, hist_mask=hist_mask)

    def _geometric(self, batch: MapBatch, generator: torch.Generator) -> MapBatch:
        """Rotate by theta and scale by s about (0.5, 0.5): p' = c + s R(theta) (p - c), for every input."""
        c = self.config
        b = batch.base
        n = len(b)
        dev = b.feats.device
        theta = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(c.map_rotation_deg)
        scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * c.map_scale
        theta, scale = theta.to(dev), scale.to(dev)
        cos, sin = theta.cos(), theta.sin()
        a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) * scale[:, None, None]

        def move(p: torch.Tensor) -> torch.Tensor:  # [N, ..., 2]
            shape = p.shape
            q = (p.reshape(n, -1, 2) - 0.5) @ a.transpose(1, 2) + 0.5
            return q.reshape(shape)

        node_xy = torch.where(b.col("pos_ok").unsqueeze(-1) > 0.5, move(b.node_xy), b.node_xy)
        truth = move(b.truth)  # NaN stays NaN
        feats = b.feats.clone()
        si, ci, oi = (TOKEN_COLUMNS.index(k) for k in ("aoa_sin", "aoa_cos", "aoa_ok"))
        s0, c0 = feats[..., si].clone(), feats[..., ci].clone()
        cs, sn = cos.unsqueeze(1), sin.unsqueeze(1)
        # a counter-clockwise rotation by theta lowers the compass bearing by theta
        feats[..., si] = (s0 * cs - c0 * sn) * feats[..., oi]
        feats[..., ci] = (c0 * cs + s0 * sn) * feats[..., oi]
        ti, tok = TOKEN_COLUMNS.index("toa"), TOKEN_COLUMNS.index("toa_ok")
        # the frame's range of ToA (in sides): the window frame keeps ranges up to 16 window sides, and clamping
        # them at 4 put far nodes 4 sides away, which wrecked the prior's ToA term (issue 19)
        top = WINDOW_TOA_MAX_SIDES if c.frame == "window" else TOA_MAX_SIDES
        feats[..., ti] = (feats[..., ti] * scale.unsqueeze(1)).clamp(0.0, top) * feats[..., tok]
        # output grid point q samples the input at c + A^-1 (q - c) (grid coords are 2u - 1, centred)
        inv = torch.linalg.inv(a)
        aff = torch.cat([inv, torch.zeros(n, 2, 1, device=dev, dtype=inv.dtype)], dim=2)
        maps, scene = batch.site_maps, batch.scene_rasters
        grid = F.affine_grid(aff.to(maps.dtype), list(maps.shape), align_corners=False)
        site_maps = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        site_ok = F.grid_sample(batch.site_ok.to(maps.dtype), grid, mode="nearest", padding_mode="zeros",
                                align_corners=False) > 0.5
        site_maps = site_maps * site_ok
        sgrid = F.affine_grid(aff.to(scene.dtype), list(scene.shape), align_corners=False)
        scene = F.grid_sample(scene, sgrid, mode="nearest", padding_mode="zeros", align_corners=False)
        extra = None if batch.site_channels is None else _move_channels(batch.site_channels, aff, cos, sin, scale)
        return MapBatch(b.with_tokens(node_xy=node_xy, feats=feats, truth=truth), site_maps, site_ok,
                        batch.site_has_map, scene, batch.extent_m, extra)


def _move_channels(channels: torch.Tensor, aff: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   scale: torch.Tensor) -> torch.Tensor:
    """The map channels [N, S, E, H, W] under the rotation/scaling of :meth:`MapFormer._geometric`: resampled
    (nearest: no angle is averaged), the AoA bearings turned like the reported ones and the ToA distances scaled."""
    n, s, e, h, w = channels.shape
    flat = channels.reshape(n, s * e, h, w)
    grid = F.affine_grid(aff.to(flat.dtype), list(flat.shape), align_corners=False)
    moved = F.grid_sample(flat, grid, mode="nearest", padding_mode="zeros", align_corners=False).reshape(n, s, e, h, w)
    si, ci, ti = (MAP_CHANNELS.index(k) for k in ("aoa_sin", "aoa_cos", "toa_m"))
    s0, c0 = moved[:, :, si].clone(), moved[:, :, ci].clone()
    cs, sn = cos.view(n, 1, 1, 1).to(flat.dtype), sin.view(n, 1, 1, 1).to(flat.dtype)
    moved[:, :, si] = s0 * cs - c0 * sn
    moved[:, :, ci] = c0 * cs + s0 * sn
    moved[:, :, ti] = moved[:, :, ti] * scale.view(n, 1, 1, 1).to(flat.dtype)
    return moved


#: The map-conditioned networks of this module, for the registry of the training engine.
MAP_NETWORKS: dict[str, type[LocNet]] = {"mapformer": MapFormer}
