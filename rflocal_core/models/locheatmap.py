"""``locheatmap``: sparse reports -> completed radio maps -> position heatmap -> differentiable position.

The network reads a :class:`~rflocal_core.models.maps.MapBatch` (a plain
:class:`~rflocal_core.models.features.Batch` also works: no scene rasters, no radio-map target)
and returns the keys of every :class:`~rflocal_core.models.nets.LocNet`::

    net = LocHeatmap(LocHeatmapConfig(mode="proposal", res=64))
    out = net(map_batch)   # mu [N, 2], sigma [N, 2] (unit square), heatmap [N, res, res], completed, ...
    loss, parts = net.loss(map_batch, out)

Pipeline (all rasters follow the map contract of :mod:`rflocal_core.models.maps`: row ``i``,
column ``j`` is the unit position ``((j + 0.5) / W, (i + 0.5) / H)``, row 0 in the south)

1. :func:`rasterize_reports`: each report is put in the cell of its node (a base station in
   ``ue`` mode, a measurement point of a drone survey in ``emitter`` mode); channels
   :data:`RASTER_CHANNELS` (RSS as the ``rss`` token feature, AoA as sin/cos of the compass
   bearing node -> target, and one presence mask per quantity); several reports in one cell
   are averaged; masked slots, nodes of unknown position and nodes outside the square are dropped.
   With ``aoa_backprojection`` (default, every mode) a sixth channel, :func:`backprojection`,
   draws each bearing as a ray across the grid (where the bearings point, not only where they
   were measured).
2. A deep completion autoencoder (conv encoder, dense latent bottleneck, conv decoder) fills in
   the dense maps :data:`COMPLETED_CHANNELS`.
3. A U-Net maps the completed maps, the sparse rasters, two coordinate channels and (optionally)
   the scene rasters to a heatmap logit ``[N, 1, res, res]``.
4. A differentiable read-out turns the heatmap into a position: :func:`dsnt`,
   :func:`soft_argmax` or :func:`centre_of_mass`; ``sigma`` is the standard deviation of the
   read-out distribution (plus the variance of a uniform cell, ``w^2 / 12``, and ``sigma_min^2``),
   so the uncertainty is the heatmap's own spread.

Completion targets (exact functions of the MapBatch; a cell without a target has weight 0)

``rss``
    The target's own RSS field, in ``rss`` feature units. Only the reporting cells are known, so
    in training a random ``holdout_fraction`` of each sample's reports is hidden from the
    completion input (at least one stays) and the completed map is scored at the cells of *all*
    reports: the hidden ones are genuine completion targets (masked auto-encoding), and the
    visible ones keep the map consistent with what was measured.
``aoa_sin``, ``aoa_cos``
    The bearing field towards the true position: at cell centre ``c``, (sin, cos) of the compass
    bearing ``c -> truth``, i.e. exactly the ``aoa`` feature a node at ``c`` would report
    (geometric bearing, the quantity the AoA reports sample). Undefined, so weight 0, within
    half a cell of the truth and for samples without a true position.
``pg``
    The strongest-site coverage map of the reporting nodes: per cell the maximum (option
    ``rss_target="mean"``: the mean) of ``MapBatch.site_maps`` over the slots that report, have a
    map (``site_has_map``) and a ray there (``site_ok``); normalized path gain
    (:func:`~rflocal_core.models.maps.pg_to_unit`). It does not depend on the target: it is the
    propagation environment against which the U-Net reads the sparse RSS (a UE at ``c`` would
    see its strongest node at about this path gain). Unavailable (weight 0) for slots without
    maps, e.g. drone waypoints.

Modes (:data:`MODES`)

==============================  =====================================================================
``proposal``                    completion + U-Net + DSNT read-out
``proposal_rss_only``           the same on the RSS channels only (completed ``rss``, ``pg``)
``proposal_aoa_only``           the same on the AoA channels only (completed ``aoa_sin``, ``aoa_cos``)
``proposal_dsnt``               ``proposal`` + the DSNT regularizer: Jensen-Shannon divergence of the
                                heatmap to a Gaussian at the truth (Nibali et al., 2018), ``js_weight``
``proposal_gaussian_dsnt``      ``proposal_dsnt`` + cross-entropy of the heatmap against the Gaussian
                                target (``heatmap_weight``)
``proposal_gaussian_softargmax``  Gaussian-target cross-entropy, soft-argmax read-out (``softargmax_beta``)
``DCAe``                        the completion autoencoder alone, position (and sigma) regressed from
                                its latent bottleneck by an MLP; its heatmap is the Gaussian (mu, sigma)
``DCAe_simple``                 a simpler completion net (one conv per level, no dense latent, a 1x1
                                decoder), position regressed from its flattened bottleneck
``LocUNet``                     U-Net on the raw sparse rasters, centre of mass of ReLU (or sigmoid)
                                of the output map; MSE of that map against a unit-peak Gaussian
``LocUNet_softargmax``          U-Net on the raw sparse rasters, soft-argmax read-out
==============================  =====================================================================

Every mode's loss has the position term of :class:`~rflocal_core.models.nets.LocNet`
(``position_loss``: beta-NLL with the heatmap's sigma, the DSNT distance loss, or, by
default, both) plus, for the modes with a completion network, ``completion_weight`` x the masked
MSE of the completed maps (mean over the channels that have a target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import Batch
from rflocal_core.models.maps import SCENE_CHANNELS, MapBatch, MapFrameConfig, aoa_loglik
from rflocal_core.models.nets import LocNet, NetConfig, gaussian_beta_nll, mlp
from rflocal_core.models.registry import register
from rflocal_core.options import option, redefault
from rflocal_core.validation import check_choice, check_int

MODES = ("proposal", "DCAe", "DCAe_simple", "LocUNet", "LocUNet_softargmax", "proposal_rss_only",
         "proposal_aoa_only", "proposal_gaussian_dsnt", "proposal_gaussian_softargmax", "proposal_dsnt")

#: Channels of :func:`rasterize_reports`.
RASTER_CHANNELS = ("rss", "aoa_sin", "aoa_cos", "rss_ok", "aoa_ok")
#: Input channels of the networks: the rasters plus the AoA back-projection (:func:`backprojection`).
INPUT_CHANNELS = (*RASTER_CHANNELS, "aoa_bp")
BP_CHANNEL = INPUT_CHANNELS.index("aoa_bp")
#: The back-projection channel is ``((ll - max ll) / BP_SCALE_NATS).clamp(-5, 0)``.
BP_SCALE_NATS = 10.0
#: Channels of the completion network's output (see the module doc for their targets).
COMPLETED_CHANNELS = ("rss", "aoa_sin", "aoa_cos", "pg")

_COMPLETION_MODES = ("proposal", "proposal_rss_only", "proposal_aoa_only", "proposal_gaussian_dsnt",
                     "proposal_gaussian_softargmax", "proposal_dsnt", "DCAe", "DCAe_simple")
_SOFTARGMAX_MODES = ("LocUNet_softargmax", "proposal_gaussian_softargmax")
_JS_MODES = ("proposal_dsnt", "proposal_gaussian_dsnt")
_GAUSSIAN_CE_MODES = ("proposal_gaussian_dsnt", "proposal_gaussian_softargmax")


# --------------------------------------------------------------------------- rasters


def cell_centres(h: int, w: int, *, device: Any = None, dtype: torch.dtype = torch.float32
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-square coordinates of the cell centres: x [W] (columns), y [H] (rows, row 0 south)."""
    x = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    y = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    return x, y


def rasterize_reports(batch: Batch, res: int) -> torch.Tensor:
    """Sparse report rasters ``[N, 5, res, res]``, channels :data:`RASTER_CHANNELS`.

    Each reporting slot (``mask``, known position, node on the closed unit square) adds its RSS
    (the ``rss`` feature, where ``rss_ok``) and AoA (sin, cos, where ``aoa_ok``) to the cell
    holding its node; a cell's value is the mean of its reports, 0 where it has none, and
    ``rss_ok`` / ``aoa_ok`` are 1 in the cells with at least one such report. Values of slots
    that do not report are never read (NaN there is harmless). Differentiable in the features.
    """
    check_int("res", res, 1, 4096)
    n, s = batch.mask.shape
    xy = batch.node_xy
    inside = torch.isfinite(xy).all(-1) & (xy >= 0).all(-1) & (xy <= 1).all(-1)
    use = batch.mask & (batch.col("pos_ok") > 0) & inside
    safe = torch.where(use.unsqueeze(-1), xy, torch.zeros_like(xy))
    col = (safe[..., 0] * res).floor().long().clamp(0, res - 1)
    row = (safe[..., 1] * res).floor().long().clamp(0, res - 1)
    idx = (row * res + col).unsqueeze(1)  # [N, 1, S]
    rss_w = use & (batch.col("rss_ok") > 0)
    aoa_w = use & (batch.col("aoa_ok") > 0)
    zero = torch.zeros((), dtype=batch.feats.dtype, device=batch.feats.device)
    vals = torch.stack([torch.where(rss_w, batch.col("rss"), zero), torch.where(aoa_w, batch.col("aoa_sin"), zero),
                        torch.where(aoa_w, batch.col("aoa_cos"), zero)], 1)  # [N, 3, S]
    counts = torch.stack([rss_w, aoa_w, aoa_w], 1).to(vals.dtype)
    sums = vals.new_zeros(n, 3, res * res).scatter_add(2, idx.expand(-1, 3, -1), vals)
    cnt = counts.new_zeros(n, 3, res * res).scatter_add(2, idx.expand(-1, 3, -1), counts)
    mean = sums / cnt.clamp_min(1.0)
    present = (cnt[:, 0:2] > 0).to(vals.dtype)
    return torch.cat([mean, present], 1).view(n, 5, res, res)


def backprojection(batch: Batch, res: int, *, sigma_deg: float) -> torch.Tensor:
    """AoA back-projection raster ``[N, 1, res, res]``: how well each cell agrees with the sample's bearings.

    :func:`~rflocal_core.models.maps.aoa_loglik` (each reported bearing drawn as a ray from its
    node, a von Mises across it) relative to its maximum, ``((ll - max) / BP_SCALE_NATS)`` in
    ``[-5, 0]``: 0 where the rays cross best. All zeros for a sample without bearings. A sparse
    raster of bearings says where they were measured; this says where they point, which a
    convolution cannot draw across the map in a few layers.
    """
    ll = aoa_loglik(batch, res, res, sigma_deg=sigma_deg)
    top = ll.flatten(1).max(1).values.view(-1, 1, 1)
    return ((ll - top) / BP_SCALE_NATS).clamp(-5.0, 0.0).unsqueeze(1)


def _resample(values: torch.Tensor, weight: torch.Tensor, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Values [N, C, H, W] with a 0/1 weight onto res x res (cell-centre convention), weight > 0.5."""
    if values.shape[-2:] == (res, res):
        return values, weight
    mode = "area" if values.shape[-1] >= res and values.shape[-2] >= res else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    w = F.interpolate(weight, size=(res, res), mode=mode, **kw)
    v = F.interpolate(values * weight, size=(res, res), mode=mode, **kw) / w.clamp_min(1e-6)
    ok = w > 0.5
    return torch.where(ok, v, torch.zeros_like(v)), ok.to(values.dtype)


def completion_targets(batch: MapBatch | Batch, res: int, *, rss_target: str = "max"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense targets and weights ``[N, 3, res, res]`` for the ``aoa_sin``, ``aoa_cos``, ``pg`` channels.

    See the module doc: the bearing field towards the truth, and the strongest-site (or mean)
    normalized path gain of the reporting slots' maps. ``rss`` has no dense target (it is scored
    at the report cells, see :meth:`LocHeatmap.loss`).
    """
    check_choice("rss_target", rss_target, ("max", "mean"))
    base = batch.base if isinstance(batch, MapBatch) else batch
    n = len(base)
    dtype, device = base.feats.dtype, base.feats.device
    x, y = cell_centres(res, res, device=device, dtype=dtype)
    truth = base.truth.to(dtype)
    ok = torch.isfinite(truth).all(1)
    t = torch.where(ok.unsqueeze(1), truth, torch.zeros_like(truth))
    dx = t[:, 0].view(n, 1, 1) - x.view(1, 1, res)
    dy = t[:, 1].view(n, 1, 1) - y.view(1, res, 1)
    d = torch.hypot(dx, dy)
    aoa_w = (ok.view(n, 1, 1) & (d > 0.5 / res)).to(dtype)
    sin, cos = dx / d.clamp_min(1e-9) * aoa_w, dy / d.clamp_min(1e-9) * aoa_w
    pg = torch.zeros(n, 1, res, res, dtype=dtype, device=device)
    pg_w = torch.zeros_like(pg)
    if isinstance(batch, MapBatch) and batch.site_maps.numel():
        maps = batch.site_maps.to(dtype)
        valid = batch.site_ok & (base.mask & batch.site_has_map)[..., None, None]
        if rss_target == "max":
            agg = torch.where(valid, maps, torch.full_like(maps, -1e9)).max(1, keepdim=True).values
        else:
            agg = torch.where(valid, maps, torch.zeros_like(maps)).sum(1, keepdim=True) / \
                valid.sum(1, keepdim=True).clamp_min(1)
        has = valid.any(1, keepdim=True)
        agg = torch.where(has, agg, torch.zeros_like(agg))
        pg, pg_w = _resample(agg, has.to(dtype), res)
    return torch.cat([sin.unsqueeze(1), cos.unsqueeze(1), pg], 1), torch.cat([aoa_w.unsqueeze(1),
                                                                              aoa_w.unsqueeze(1), pg_w], 1)


# --------------------------------------------------------------------------- heatmap -> position


def _flat(heat: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """[N, 1, H, W] or [N, H, W] -> ([N, H * W], H, W)."""
    if heat.dim() == 4:
        if heat.shape[1] != 1:
            msg = f"heat_logits: expected [N, 1, H, W] or [N, H, W], got {list(heat.shape)}"
            raise InvalidInputError(msg)
        heat = heat[:, 0]
    if heat.dim() != 3:
        msg = f"heat_logits: expected [N, 1, H, W] or [N, H, W], got {list(heat.shape)}"
        raise InvalidInputError(msg)
    n, h, w = heat.shape
    return heat.reshape(n, h * w), h, w


def heatmap_moments(prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance per axis ``([N, 2], [N, 2])`` of a distribution over the cell centres.

    ``prob`` [N, H, W] (or [N, 1, H, W]) sums to 1 per sample.
    """
    p, h, w = _flat(prob)
    x, y = cell_centres(h, w, device=p.device, dtype=p.dtype)
    p = p.view(-1, h, w)
    px, py = p.sum(1), p.sum(2)  # marginals [N, W], [N, H]
    mu = torch.stack([(px * x).sum(1), (py * y).sum(1)], 1)
    var = torch.stack([(px * (x - mu[:, :1]) ** 2).sum(1), (py * (y - mu[:, 1:]) ** 2).sum(1)], 1)
    return mu, var


def dsnt(heat_logits: torch.Tensor) -> torch.Tensor:
    """DSNT (Nibali et al., 2018): softmax over the cells, then the expected cell-centre position [N, 2]."""
    z, h, w = _flat(heat_logits)
    return heatmap_moments(torch.softmax(z, 1).view(-1, h, w))[0]


def soft_argmax(heat_logits: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Soft-argmax: the expected cell-centre position [N, 2] under ``softmax(beta * logits)``."""
    z, h, w = _flat(heat_logits)
    return heatmap_moments(torch.softmax(beta * z, 1).view(-1, h, w))[0]


def com_weights(heat_logits: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    """The normalized ``relu``/``sigmoid`` map [N, H, W] of :func:`centre_of_mass` (uniform if all zero)."""
    check_choice("activation", activation, ("relu", "sigmoid"))
    z, h, w = _flat(heat_logits)
    a = F.relu(z) if activation == "relu" else torch.sigmoid(z)
    total = a.sum(1, keepdim=True)
    uniform = torch.full_like(a, 1.0 / (h * w))
    p = torch.where(total > 1e-12, a / total.clamp_min(1e-12), uniform)
    return p.view(-1, h, w)


def centre_of_mass(heat_logits: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    """Centre of mass [N, 2] of ``relu`` (or ``sigmoid``) of the map, as LocUNet reads its output."""
    return heatmap_moments(com_weights(heat_logits, activation))[0]


def gaussian_heatmap(pos: torch.Tensor, h: int, w: int, sigma: float | torch.Tensor) -> torch.Tensor:
    """A Gaussian blob at ``pos`` [N, 2] on the cell centres, normalized to sum 1: [N, H, W].

    ``sigma``: its standard deviation on the unit square, a number or [N, 2] per axis.
    Rows of non-finite ``pos`` come out uniform.
    """
    n = pos.shape[0]
    x, y = cell_centres(h, w, device=pos.device, dtype=pos.dtype)
    ok = torch.isfinite(pos).all(1)
    p = torch.where(ok.unsqueeze(1), pos, torch.full_like(pos, 0.5))
    s = torch.as_tensor(sigma, dtype=pos.dtype, device=pos.device).expand(n, 2)
    lx = -0.5 * ((x.view(1, w) - p[:, :1]) / s[:, :1]) ** 2  # [N, W]
    ly = -0.5 * ((y.view(1, h) - p[:, 1:]) / s[:, 1:]) ** 2  # [N, H]
    logit = (ly.unsqueeze(2) + lx.unsqueeze(1)).reshape(n, h * w)
    g = torch.softmax(logit, 1).view(n, h, w)
    return torch.where(ok.view(n, 1, 1), g, torch.full_like(g, 1.0 / (h * w)))


def gaussian_target_loss(heat_logits: torch.Tensor, pos: torch.Tensor, sigma_cells: float, beta: float = 1.0
                         ) -> torch.Tensor:
    """Cross-entropy [N] of ``softmax(beta * logits)`` against a Gaussian of ``sigma_cells`` cells at ``pos``.

    Equal to KL(target || heatmap) plus the target's (constant) entropy.
    """
    z, h, w = _flat(heat_logits)
    target = gaussian_heatmap(pos.to(z.dtype), h, w, _sigma_unit(sigma_cells, h, w, z)).reshape(z.shape)
    return -(target * torch.log_softmax(beta * z, 1)).sum(1)


def js_regularizer(prob: torch.Tensor, pos: torch.Tensor, sigma_cells: float) -> torch.Tensor:
    """DSNT regularizer [N]: Jensen-Shannon divergence (nats) of ``prob`` [N, H, W] to a Gaussian at ``pos``."""
    p, h, w = _flat(prob)
    q = gaussian_heatmap(pos.to(p.dtype), h, w, _sigma_unit(sigma_cells, h, w, p)).reshape(p.shape)
    m = (0.5 * (p + q)).clamp_min(1e-12).log()
    kl_p = (p * (p.clamp_min(1e-12).log() - m)).sum(1)
    kl_q = (q * (q.clamp_min(1e-12).log() - m)).sum(1)
    return 0.5 * (kl_p + kl_q)


def _sigma_unit(sigma_cells: float, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([sigma_cells / w, sigma_cells / h], dtype=like.dtype, device=like.device)


# --------------------------------------------------------------------------- config


def _check_widths(field: str, value: Any, lo_levels: int, hi_levels: int) -> tuple[int, ...]:
    try:
        widths = tuple(value)
    except TypeError:
        widths = ()
    ok = lo_levels <= len(widths) <= hi_levels and all(
        isinstance(c, int) and not isinstance(c, bool) and 4 <= c <= 512 for c in widths)
    if not ok:
        msg = (f"{field}: expected a list of {lo_levels} to {hi_levels} channel widths, integers in [4, 512], "
               f"got {value!r}")
        raise InvalidInputError(msg)
    return widths


@dataclass(frozen=True)
class LocHeatmapConfig(MapFrameConfig):
    """``locheatmap`` options (see :class:`~rflocal_core.models.nets.NetConfig` for the common ones).

    Parameters
    ----------
    mode : str
        One of :data:`MODES` (see the module doc).
    res : int
        Cells per side of the unit-square grid of every raster and of the heatmap (in the ``window``
        frame, :class:`~rflocal_core.models.maps.MapFrameConfig`, the window is ``res`` cells of ``cell_m``); divisible by
        ``2 ** len(completion_channels)`` and ``2 ** (len(unet_channels) - 1)``.
    completion_channels : tuple of int
        Widths of the completion encoder levels (each halves the resolution); the decoder mirrors them.
    latent_dim : int
        Width of the completion network's dense bottleneck (``DCAe`` regresses from it).
    unet_channels : tuple of int
        Widths of the U-Net levels (the first at full resolution).
    completion_weight : float
        Weight of the completion loss.
    heatmap_weight : float
        Weight of the Gaussian-target cross-entropy (``proposal_gaussian_*``) and of LocUNet's map MSE.
    js_weight : float
        Weight of the DSNT Jensen-Shannon regularizer (``*_dsnt``).
    gaussian_sigma_cells : float
        Standard deviation of the Gaussian targets, in cells.
    softargmax_beta : float
        Inverse temperature of the soft-argmax modes.
    com_activation : str
        ``relu`` or ``sigmoid``: the map whose centre of mass ``LocUNet`` reads.
    scene_rasters : bool
        Feed the scene rasters (:data:`~rflocal_core.models.maps.SCENE_CHANNELS`) to the U-Net.
    rss_target : str
        ``max`` (strongest site) or ``mean``: aggregation of the slots' radio maps into the ``pg`` target.
    holdout_fraction : float
        Share of the reports hidden from the completion input in training (their cells become targets).
    aoa_backprojection : bool
        Add the AoA back-projection channel (:func:`backprojection`) to every mode's input.
    aoa_sigma_deg : float
        Spread of the back-projected bearings.
    aoa_prior : bool
        For the softmax heatmaps (every mode but ``LocUNet``, whose centre-of-mass read-out has
        no log scale, and ``DCAe*``, which have no heatmap): add the back-projection, in nats
        with a learned weight, to the heatmap logits, so the U-Net predicts a correction to it.
    position_loss : str
        ``nll`` (beta-NLL with the heatmap's sigma, as the other networks), ``euclidean`` (the DSNT
        distance loss) or ``both`` (their sum, the default: the distance drives the mean to the
        cell, the NLL calibrates the heatmap's spread). ``beta`` defaults to 1 here (the NLL's
        mean gradient is then the squared error's).
    """

    # a 32-cell window of 16 m is 512 m, as mapformer's 64 of 8 m
    cell_m: float = redefault(MapFrameConfig, "cell_m", 16.0)
    beta: float = redefault(NetConfig, "beta", 1.0)
    mode: str = option("proposal", choices=MODES, help="the localization mode (see the module doc)")
    res: int = option(32, lo=8, hi=512, help="cells per side of every raster and of the heatmap")
    # the channel lists are checked by hand: their message names the level counts
    completion_channels: tuple[int, ...] = option((16, 32, 64), check=False,
                                                  help="widths of the completion encoder levels")
    latent_dim: int = option(128, lo=4, hi=4096, help="width of the completion network's dense bottleneck")
    unet_channels: tuple[int, ...] = option((16, 32, 64, 128), check=False,
                                            help="widths of the U-Net levels")
    completion_weight: float = option(1.0, lo=0.0, hi=100.0, help="weight of the completion loss")
    heatmap_weight: float = option(1.0, lo=0.0, hi=100.0, help="weight of the heatmap loss")
    js_weight: float = option(1.0, lo=0.0, hi=100.0, help="weight of the DSNT Jensen-Shannon regularizer")
    gaussian_sigma_cells: float = option(1.0, lo=0.1, hi=64.0, unit="cells",
                                         help="standard deviation of the Gaussian targets")
    softargmax_beta: float = option(5.0, lo=0.01, hi=1000.0, help="inverse temperature of the soft-argmax modes")
    com_activation: str = option("relu", choices=("relu", "sigmoid"), help="the map LocUNet's centre of mass reads")
    scene_rasters: bool = option(True, help="the scene rasters fed to the U-Net")
    rss_target: str = option("max", choices=("max", "mean"), help="aggregation of the radio maps into the target")
    holdout_fraction: float = option(0.2, lo=0.0, hi=0.9, help="share of the reports hidden from the completion input")
    aoa_backprojection: bool = option(True, help="the AoA back-projection channel")
    aoa_sigma_deg: float = option(7.0, lo=0.1, hi=90.0, unit="deg", help="spread of the back-projected bearings")
    aoa_prior: bool = option(True, help="the back-projection added to the heatmap logits")
    position_loss: str = option("both", choices=("nll", "euclidean", "both"), help="nll, euclidean or both")

    def window_cells(self) -> int:
        return int(self.res)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "completion_channels", _check_widths("completion_channels",
                                                                      self.completion_channels, 1, 5))
        object.__setattr__(self, "unet_channels", _check_widths("unet_channels", self.unet_channels, 2, 6))
        need = max(2 ** len(self.completion_channels), 2 ** (len(self.unet_channels) - 1))
        if self.res % need:
            msg = (f"res: expected a multiple of {need} (2 ** {len(self.completion_channels)} completion levels, "
                   f"2 ** {len(self.unet_channels) - 1} U-Net downsamplings), got {self.res!r}")
            raise InvalidInputError(msg)


# --------------------------------------------------------------------------- modules


class _Block(nn.Module):
    """(conv 3x3 -> GroupNorm -> GELU) x 2 (x 1 when ``simple``); the first conv may stride."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1, simple: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
                                   nn.GroupNorm(math.gcd(cout, 8), cout), nn.GELU()]
        if not simple:
            layers += [nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(math.gcd(cout, 8), cout), nn.GELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CompletionAE(nn.Module):
    """Deep completion autoencoder: strided conv encoder, dense latent, conv decoder.

    ``forward(x [N, cin, res, res]) -> (completed [N, cout, res, res], code [N, D])``; ``code`` is
    the latent (``D = latent_dim``) or, for ``simple``, the flattened bottleneck feature map.
    The dense latent is added back to the bottleneck feature map (global context for the decoder).
    """

    def __init__(self, cin: int, cout: int, channels: tuple[int, ...], latent_dim: int, res: int, *,
                 simple: bool = False) -> None:
        super().__init__()
        self.simple = simple
        self.res = res
        chans = (cin, *channels)
        self.encoder = nn.ModuleList(_Block(chans[k], chans[k + 1], stride=2, simple=simple)
                                     for k in range(len(channels)))
        self.bottom = res // 2 ** len(channels)
        flat = channels[-1] * self.bottom ** 2
        self.code_dim = flat if simple else latent_dim
        if simple:
            self.out = nn.Conv2d(channels[-1], cout, 1)
        else:
            self.to_latent = nn.Sequential(nn.Flatten(), nn.Linear(flat, latent_dim), nn.GELU())
            self.from_latent = nn.Sequential(nn.Linear(latent_dim, flat), nn.GELU())
            dec = (*channels[::-1], channels[0])
            self.decoder = nn.ModuleList(_Block(dec[k], dec[k + 1]) for k in range(len(channels)))
            self.out = nn.Conv2d(channels[0], cout, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.encoder:
            x = block(x)
        if self.simple:
            code = x.flatten(1)
            y = F.interpolate(self.out(x), size=(self.res, self.res), mode="bilinear", align_corners=False)
            return y, code
        code = self.to_latent(x)
        x = x + self.from_latent(code).view_as(x)
        for block in self.decoder:
            x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return self.out(x), code


class UNet(nn.Module):
    """U-Net: ``len(channels)`` levels (the first at full resolution), skip connections, 1 output channel."""

    def __init__(self, cin: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        chans = (cin, *channels)
        self.down = nn.ModuleList(_Block(chans[k], chans[k + 1], stride=1 if k == 0 else 2)
                                  for k in range(len(channels)))
        self.up = nn.ModuleList(_Block(channels[k] + channels[k - 1], channels[k - 1])
                                for k in range(len(channels) - 1, 0, -1))
        self.head = nn.Conv2d(channels[0], 1, 1)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False),
                                 skip], 1))
        return self.head(x)


# --------------------------------------------------------------------------- the network


@register("locheatmap")
class LocHeatmap(LocNet):
    """Sparse report rasters -> completed maps -> U-Net heatmap -> differentiable position (``locheatmap``)."""

    config_cls = LocHeatmapConfig
    needs_maps: ClassVar[bool] = True

    def __init__(self, config: LocHeatmapConfig, *, vocab_size: int = 0) -> None:
        super().__init__(config, vocab_size=vocab_size)
        c = config
        mode = c.mode
        bp = (BP_CHANNEL,) if c.aoa_backprojection else ()
        if mode == "proposal_rss_only":
            self.in_idx, self.out_idx = (0, 3), (0, 3)
        elif mode == "proposal_aoa_only":
            self.in_idx, self.out_idx = (1, 2, 4, *bp), (1, 2)
        else:
            self.in_idx, self.out_idx = (*range(len(RASTER_CHANNELS)), *bp), tuple(range(len(COMPLETED_CHANNELS)))
        self.has_completion = mode in _COMPLETION_MODES
        self.is_dcae = mode in ("DCAe", "DCAe_simple")
        cin = len(self.in_idx) + 2  # + coordinate channels
        self.completion = (CompletionAE(cin, len(self.out_idx), c.completion_channels, c.latent_dim, c.res,
                                        simple=mode == "DCAe_simple") if self.has_completion else None)
        self.unet = None
        if self.is_dcae:
            self.position_head = mlp([self.completion.code_dim, c.d_model, c.d_model, 4])
        else:
            unet_in = len(self.in_idx) + 2 + (len(self.out_idx) if self.has_completion else 0)
            unet_in += len(SCENE_CHANNELS) if c.scene_rasters else 0
            self.unet = UNet(unet_in, c.unet_channels)
        # softmax heatmaps take the back-projection as a log-prior; softplus(w) starts at 1
        self.prior_weight = (nn.Parameter(torch.tensor(math.log(math.e - 1.0)))
                             if c.aoa_prior and BP_CHANNEL in self.in_idx and self.unet is not None
                             and mode != "LocUNet" else None)
        x, y = cell_centres(c.res, c.res)
        self.register_buffer("coords", torch.stack([x.view(1, -1).expand(c.res, -1), y.view(-1, 1).expand(-1, c.res)]),
                             persistent=False)

    # ------------------------------------------------------------------ forward

    def forward(self, batch: MapBatch | Batch) -> dict[str, torch.Tensor]:
        c = self.config
        base = batch.base if isinstance(batch, MapBatch) else batch
        n, res = base.mask.shape[0], c.res  # not len(): a traced (ONNX) batch size stays symbolic
        reports = self._inputs(base)
        seen = reports
        if self.training and self.has_completion and c.holdout_fraction > 0:
            seen = self._inputs(self._holdout(base))
        coords = self.coords.to(reports.dtype).unsqueeze(0).expand(n, -1, -1, -1)
        out: dict[str, torch.Tensor] = {"reports": reports}
        completed = code = None
        if self.completion is not None:
            completed, code = self.completion(torch.cat([seen[:, self.in_idx], coords], 1))
            out["completed"] = completed
        if self.is_dcae:
            mu, sigma = (t.float() for t in self._head_out(code))
            out.update(mu=mu, sigma=sigma, heatmap=gaussian_heatmap(mu, res, res, sigma))
            return out
        parts = ([completed] if completed is not None else []) + [reports[:, self.in_idx], coords]
        if c.scene_rasters:
            parts.append(self._scene(batch, n, res, reports))
        logits = self.unet(torch.cat(parts, 1))
        if self.prior_weight is not None:  # the U-Net's output is a correction to the bearings' log-likelihood
            beta = c.softargmax_beta if c.mode in _SOFTARGMAX_MODES else 1.0
            bp = reports[:, BP_CHANNEL:BP_CHANNEL + 1]
            logits = logits + F.softplus(self.prior_weight) * bp * (BP_SCALE_NATS / beta)
        z = logits.float()
        if c.mode == "LocUNet":
            prob = com_weights(z, c.com_activation)
        elif c.mode in _SOFTARGMAX_MODES:
            prob = torch.softmax(c.softargmax_beta * z.flatten(1), 1).view(n, res, res)
        else:
            prob = torch.softmax(z.flatten(1), 1).view(n, res, res)
        mu, var = heatmap_moments(prob)
        sigma = torch.sqrt(var + (1.0 / res) ** 2 / 12.0 + c.sigma_min ** 2)
        out.update(mu=mu, sigma=sigma, heatmap=prob, heat_logits=logits)
        return out

    def _inputs(self, base: Batch) -> torch.Tensor:
        """[N, 6, res, res]: :func:`rasterize_reports` and the back-projection (zeros when off), :data:`INPUT_CHANNELS`."""
        c = self.config
        r = rasterize_reports(base, c.res)
        if BP_CHANNEL in self.in_idx:
            bp = backprojection(base, c.res, sigma_deg=c.aoa_sigma_deg).to(r.dtype)
        else:
            bp = r.new_zeros(base.mask.shape[0], 1, c.res, c.res)
        return torch.cat([r, bp], 1)

    def _holdout(self, base: Batch) -> Batch:
        """Hide a random ``holdout_fraction`` of each sample's reports (at least one stays)."""
        mask = base.mask
        hide = (torch.rand(mask.shape, device=mask.device) < self.config.holdout_fraction) & mask
        keep = mask & ~hide
        lost = mask.any(1) & ~keep.any(1)
        if lost.any():
            first = F.one_hot(mask.to(torch.int8).argmax(1), mask.shape[1]).bool()
            keep = keep | (first & lost.unsqueeze(1))
        return base.with_tokens(mask=keep)

    @staticmethod
    def _scene(batch: MapBatch | Batch, n: int, res: int, like: torch.Tensor) -> torch.Tensor:
        k = len(SCENE_CHANNELS)
        if not isinstance(batch, MapBatch) or batch.scene_rasters.shape[1] == 0:
            return like.new_zeros(n, k, res, res)
        r = batch.scene_rasters.to(like.dtype)
        if r.shape[1] != k:
            msg = f"scene_rasters: expected {k} channels ({', '.join(SCENE_CHANNELS)}), got {r.shape[1]}"
            raise InvalidInputError(msg)
        if r.shape[-2:] != (res, res):
            r = F.interpolate(r, size=(res, res), mode="nearest")
        return r

    # ------------------------------------------------------------------ training

    def augment(self, batch: MapBatch | Batch, *, epoch_fraction: float, extent_m: float,
                generator: torch.Generator) -> MapBatch | Batch:
        """:meth:`LocNet.augment` on the report tokens; the maps travel unchanged."""
        if isinstance(batch, MapBatch):
            return batch.with_base(super().augment(batch.base, epoch_fraction=epoch_fraction, extent_m=extent_m,
                                                   generator=generator))
        return super().augment(batch, epoch_fraction=epoch_fraction, extent_m=extent_m, generator=generator)

    def loss(self, batch: MapBatch | Batch, out: dict[str, torch.Tensor], *, stage: str = "joint"
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Position + heatmap + completion losses (``stage="aux"``: the completion loss alone)."""
        check_choice("stage", stage, ("joint", "aux"))
        c = self.config
        base = batch.base if isinstance(batch, MapBatch) else batch
        truth = base.truth.to(out["mu"].dtype)
        ok = torch.isfinite(truth).all(1)
        okf = ok.to(truth.dtype)
        denom = okf.sum().clamp_min(1.0)
        t = torch.where(ok.unsqueeze(1), truth, out["mu"].detach())
        per = torch.zeros_like(okf)
        if c.position_loss in ("nll", "both"):
            per = per + gaussian_beta_nll(out["mu"], out["sigma"], t, c.beta)
        if c.position_loss in ("euclidean", "both"):
            per = per + torch.sqrt(((out["mu"] - t) ** 2).sum(1) + 1e-12)
        pos = (per * okf).sum() / denom
        parts = {"position": float(pos.detach())}
        total = pos
        logits = out.get("heat_logits")
        if logits is not None:
            z = logits.float()
            if c.mode in _GAUSSIAN_CE_MODES and c.heatmap_weight > 0:
                beta = c.softargmax_beta if c.mode in _SOFTARGMAX_MODES else 1.0
                ce = (gaussian_target_loss(z, t, c.gaussian_sigma_cells, beta) * okf).sum() / denom
                parts["heatmap"] = float(ce.detach())
                total = total + c.heatmap_weight * ce
            if c.mode in _JS_MODES and c.js_weight > 0:
                js = (js_regularizer(out["heatmap"], t, c.gaussian_sigma_cells) * okf).sum() / denom
                parts["js"] = float(js.detach())
                total = total + c.js_weight * js
            if c.mode == "LocUNet" and c.heatmap_weight > 0:
                res = z.shape[-1]
                g = gaussian_heatmap(t, res, res, _sigma_unit(c.gaussian_sigma_cells, res, res, z))
                g = g / g.flatten(1).max(1).values.view(-1, 1, 1)
                a = F.relu(z[:, 0]) if c.com_activation == "relu" else torch.sigmoid(z[:, 0])
                mse = (((a - g) ** 2).flatten(1).mean(1) * okf).sum() / denom
                parts["heatmap"] = float(mse.detach())
                total = total + c.heatmap_weight * mse
        if "completed" in out:
            comp = self._completion_loss(batch, out)
            parts["completion"] = float(comp.detach())
            if stage == "aux":
                return comp, parts
            total = total + c.completion_weight * comp
        return total, parts

    def _completion_loss(self, batch: MapBatch | Batch, out: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        pred = out["completed"].float()
        reports = out["reports"].float()
        dense, dense_w = completion_targets(batch, c.res, rss_target=c.rss_target)
        target = torch.cat([reports[:, :1], dense], 1)[:, self.out_idx]  # COMPLETED_CHANNELS order
        weight = torch.cat([reports[:, 3:4], dense_w], 1)[:, self.out_idx]
        err = ((pred - target) ** 2 * weight).sum((0, 2, 3))
        cnt = weight.sum((0, 2, 3))
        have = cnt > 0
        if not have.any():
            return pred.sum() * 0.0
        return (err[have] / cnt[have]).mean()


def completed_channel_names(config: LocHeatmapConfig) -> tuple[str, ...]:
    """Names of the channels of ``out["completed"]`` for a configuration (empty for LocUNet modes)."""
    if config.mode not in _COMPLETION_MODES:
        return ()
    if config.mode == "proposal_rss_only":
        return ("rss", "pg")
    if config.mode == "proposal_aoa_only":
        return ("aoa_sin", "aoa_cos")
    return COMPLETED_CHANNELS
