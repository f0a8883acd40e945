"""Neural localization models over sets of measurement reports.

Both models take a :class:`~rflocal_core.models.features.Batch` (N samples x S report
slots with a mask), are invariant to the order of the slots, ignore masked slots exactly as
if they were absent, and return a position in normalized scene units plus a 1-sigma
uncertainty per axis::

    out = net(batch)          # {"mu": [N, 2], "sigma": [N, 2], ...}
    loss, parts = net.loss(batch, out, stage="joint")

``setnet``
    Report tokens (sinusoidal encoding of the node position, RSS, AoA (sin, cos), ToA,
    transmit power and their masks) through a masked transformer encoder, pooled by
    attention with a learned seed plus a masked mean. Auxiliary heads predict, per
    report, the bearing (sin, cos) and distance from that node to the target.
``heimdall``
    A per-node encoder with learnable node embeddings; a geometry encoder of pairwise
    node distances, bearings and height differences; max + mean + quality-weighted
    (RSS) pooling; global fusion; position and uncertainty heads trained with Gaussian NLL.
    Node dropout (progressive), RSS noise and node position jitter augment training.
    Optional per-receiver calibration (``use_calibration``): a learned RSS gain and offset per
    known node, identity at the start (a receiver whose gain is off by some dB is corrected
    before anything reads its RSS). Finite outputs and gradients for any mask, an empty set
    and a batch of one included (the pooling weights of an empty set are zero, not NaN).

Uncertainty: ``sigma = softplus(s) + sigma_min`` keeps it positive and away from collapse;
the position loss is the beta-NLL of Seitzer et al. (2022): the Gaussian NLL weighted by
``sigma^(2 beta)`` (detached), so the mean keeps learning where sigma is large (beta=0 is
the plain NLL).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import FRAMES, TOKEN_COLUMNS, Batch, token_width, tracing
from rflocal_core.models.iqenc import LAG_TARGET_MIN_QUALITY, IQEncoder, IQEncoderConfig, capture_lags
from rflocal_core.models.registry import NETWORKS, register
from rflocal_core.options import check_options, option, redefault
from rflocal_core.validation import check_choice, dataclass_from_dict


def _masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, S, D], [N, S] -> [N, D]; zero for an empty set."""
    w = mask.to(h.dtype).unsqueeze(-1)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


def _masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, S, D], [N, S] -> [N, D]; zero for an empty set."""
    filled = h.masked_fill(~mask.unsqueeze(-1), float("-inf"))
    out = filled.max(1).values
    return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))


def mlp(sizes: list[int], *, final_act: bool = False) -> nn.Sequential:
    """Linear layers of widths ``sizes`` with GELU between them (and after the last with ``final_act``)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_act:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def sinusoidal(xy: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """[..., 2] in [0, 1] -> [..., 4 * num_freqs]: sin, cos of 2^k pi x for k < num_freqs."""
    freqs = math.pi * 2.0 ** torch.arange(num_freqs, device=xy.device, dtype=xy.dtype)
    ang = xy.unsqueeze(-1) * freqs  # [..., 2, F]
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)


def gaussian_beta_nll(mu: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sample beta-NLL summed over axes: [N, 2] x3 -> [N]."""
    nll = 0.5 * ((target - mu) / sigma) ** 2 + torch.log(sigma)
    if beta > 0:
        nll = nll * sigma.detach() ** (2 * beta)
    return nll.sum(-1)


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class NetConfig:
    """Options common to the networks.

    Parameters
    ----------
    d_model : int
        Token width.
    dropout : float
        Dropout inside the network (0 disables).
    sigma_min : float
        Floor of the predicted sigma, in normalized scene units (1e-3 of a 500 m scene is 0.5 m).
    beta : float
        beta of the beta-NLL position loss (0: plain Gaussian NLL).
    node_dropout : tuple of float
        Fraction of a sample's reports removed in training, per third of the epochs
        (progressive schedule); at least one report is always kept.
    rss_noise_db : float
        Uniform noise +-rss_noise_db added to training RSS.
    position_jitter_m : float
        Gaussian jitter (m, 1 sigma) added to training node positions.
    frame : str
        ``"scene"`` (default): positions in the training split's square; ``"sample"``: metres relative
        to each sample's reporting nodes, so the network predicts in any scene, of any size (issue 19;
        see :mod:`rflocal_core.models.features`).
        ``fpnet`` reads fixed node slots: scene only; the map networks have ``scene`` and ``window``
        (:class:`~rflocal_core.models.maps.MapFrameConfig`).
    """

    #: What a hyperparameter search varies besides the training options (:mod:`rflocal_core.train.netsearch`).
    SEARCH_SPACE: ClassVar[dict[str, tuple[Any, ...]]] = {"dropout": ("float", 0.0, 0.3)}

    d_model: int = option(64, lo=8, hi=1024, help="token width")
    dropout: float = option(0.0, lo=0.0, hi=0.9, help="dropout inside the network (0 disables)")
    sigma_min: float = option(1e-3, lo=1e-6, hi=0.5, help="floor of the predicted sigma, in normalized scene units")
    beta: float = option(0.5, lo=0.0, hi=1.0, help="beta of the beta-NLL position loss (0: plain Gaussian NLL)")
    # checked by hand: a list of fractions
    node_dropout: tuple[float, ...] = option((0.0,), check=False,
                                             help="fraction of reports removed in training, per third of the epochs")
    rss_noise_db: float = option(0.0, lo=0.0, hi=20.0, unit="dB", help="uniform noise added to training RSS")
    position_jitter_m: float = option(0.0, lo=0.0, hi=100.0, unit="m",
                                      help="Gaussian jitter (1 sigma) added to training node positions")
    # scene by default: sample beat it on every held-out real tile (bench_any_city.py, issue 19), but lost
    # on a seen real RSS-only city in a short run (tests/test_measurement_quality.py, Antwerp: 528 vs 382 m)
    frame: str = option("scene", choices=FRAMES,
                        help="scene: positions in the training scenes' square; sample: metres relative to each "
                             "sample's nodes (predicts in any scene, of any size)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "node_dropout", tuple(float(v) for v in self.node_dropout))
        check_options(self)
        if not self.node_dropout or not all(0.0 <= p <= 0.9 for p in self.node_dropout):
            msg = f"node_dropout: expected a non-empty list of fractions in [0, 0.9], got {self.node_dropout!r}"
            raise InvalidInputError(msg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> NetConfig:
        return dataclass_from_dict(cls, d, field=cls.__name__)


def phy_features_option() -> Any:
    """The ``phy_features`` option of the networks that read PHY/MAC report tokens (``setnet``, ``heimdall``,
    ``mapformer``)."""
    return option(False, help="PHY/MAC token features (RSRQ, SINR, CQI, rank, serving, beam L1-RSRP, Doppler, beam id, "
                              "neighbour rank, A3/A5 events), "
                              "masked where a report lacks them")


def band_feature_option() -> Any:
    """The ``band_feature`` option of ``setnet``, ``heimdall`` and ``mapformer``: each token's band as a feature
    (issue 18)."""
    return option(False, help="the band of each token (its node's carrier, else its sample's: datasets that mix "
                              "bands) as a token feature")


def check_encoder(config: Any) -> None:
    """Check that ``heads`` divides ``d_model`` (the ranges of ``pe_freqs``, ``layers``, ``heads`` are options)."""
    if config.d_model % config.heads:
        msg = f"heads: d_model ({config.d_model}) must be divisible by heads, got heads={config.heads}"
        raise InvalidInputError(msg)


@dataclass(frozen=True)
class SetNetConfig(NetConfig):
    """``setnet`` options (see :class:`NetConfig` for the common ones).

    Parameters
    ----------
    pe_freqs : int
        Frequencies of the sinusoidal node-position encoding (4 x pe_freqs features).
    layers, heads : int
        Transformer encoder depth and attention heads (``d_model % heads == 0``).
    aux_weight : float
        Weight of the auxiliary bearing/distance losses.
    aux_epochs : int
        Two-stage training: the first ``aux_epochs`` epochs train the auxiliary heads only,
        then position and auxiliary losses jointly; 0 trains jointly from the start.
    phy_features : bool
        Read the PHY/MAC report fields as token features (:data:`~rflocal_core.models.features.PHY_COLUMNS`).
    band_feature : bool
        Read each sample's band as a token feature (:data:`~rflocal_core.models.features.BAND_COLUMNS`).
    """

    pe_freqs: int = option(6, lo=1, hi=16, help="frequencies of the sinusoidal position encoding")
    layers: int = option(3, lo=1, hi=12, help="transformer encoder depth")
    heads: int = option(4, lo=1, hi=16, help="attention heads (dividing d_model)")
    aux_weight: float = option(0.5, lo=0.0, hi=100.0, help="weight of the auxiliary bearing/distance losses")
    aux_epochs: int = option(0, lo=0, hi=10_000, help="epochs that train the auxiliary heads only (0: joint)")
    phy_features: bool = phy_features_option()
    band_feature: bool = band_feature_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_encoder(self)


@dataclass(frozen=True)
class HeimdallConfig(NetConfig):
    """``heimdall`` options; augmentation on by default (see :class:`NetConfig`).

    Parameters
    ----------
    node_embedding_dim : int
        Width of the learnable per-node embedding (0 disables it).
    geometry : bool
        Use the pairwise geometry encoder.
    phy_features : bool
        Read the PHY/MAC report fields as token features (:data:`~rflocal_core.models.features.PHY_COLUMNS`).
    use_calibration : bool
        Per-receiver calibration layers: for each known node a learned gain and offset of its
        RSS feature (``rss * (1 + g) + o``, both 0 at the start; unknown nodes are not calibrated).
    use_iq : bool
        The IQ branch: each report's capture through :class:`~rflocal_core.models.iqenc.IQEncoder`
        (an embedding and its onset, also relative to the sample's mean onset: the time differences
        of arrival) joins the report's token (datasets generated with ``--iq``).
    iq_width : int
        Stem width of the IQ encoder (16: 0.55 M parameters; about 20 is the design's 0.8 M).
    iq_crop : int
        Samples of each capture the IQ encoder reads, a window around its energy onset (0: all 1,024).
    iq_stem_stride : int
        Stride of the IQ encoder's stem (2 halves the time steps of every stage).
    iq_lags : bool
        IQ timing features computed from the captures before the network
        (:data:`~rflocal_core.models.features.IQ_LAG_COLUMNS`: each capture's cross-correlation lag against
        the sample's strongest, as ``tdoa_multilateration`` measures it): the token gets the range difference
        relative to the mean over the sample's captures, and the geometry encoder each pair's difference.
    band_feature : bool
        Read each sample's band as a token feature (:data:`~rflocal_core.models.features.BAND_COLUMNS`).
    iq_lag_aux : float
        Weight of an auxiliary training loss on the IQ encoder (``use_iq``): the differences of its onsets
        must give the captures' cross-correlation lags against the sample's strongest capture
        (:func:`~rflocal_core.models.iqenc.capture_lags`, computed from the captures on each batch, not from
        the truth), in samples. 0: off; without ``use_iq`` it does nothing (as ``iq_crop``). Training only: the graph
        and predictions are the network's own.
    """

    node_dropout: tuple[float, ...] = redefault(NetConfig, "node_dropout", (0.0, 0.2, 0.5))
    rss_noise_db: float = redefault(NetConfig, "rss_noise_db", 3.0)
    position_jitter_m: float = redefault(NetConfig, "position_jitter_m", 1.0)
    node_embedding_dim: int = option(16, lo=0, hi=512, help="width of the learnable per-node embedding (0: none)")
    geometry: bool = option(True, help="the pairwise geometry encoder")
    phy_features: bool = phy_features_option()
    use_calibration: bool = option(False, help="per-receiver calibration: a learned RSS gain and offset per known node")
    use_iq: bool = option(False, help="IQ branch: each report's capture through a 1D EfficientNet encoder")
    iq_width: int = option(16, lo=4, hi=64, help="stem width of the IQ encoder (its stages are multiples)")
    iq_crop: int = option(0, lo=0, hi=1024, help="samples the IQ encoder reads around each capture's energy onset "
                                                  "(0: all)")
    iq_stem_stride: int = option(1, lo=1, hi=4, help="stride of the IQ encoder's stem")
    iq_lags: bool = option(False, help="IQ timing: each capture's cross-correlation lag (TDoA) as token and pair "
                                       "features")
    band_feature: bool = band_feature_option()
    iq_lag_aux: float = option(0.0, lo=0.0, hi=100.0, help="weight of a training loss making the IQ encoder's onset "
                                                           "differences equal the captures' cross-correlation lags "
                                                           "(use_iq; 0: off)")


#: Columns an IQ token adds after the encoder's embedding: onset relative to the sample's mean, present.
IQ_EXTRA = 2
#: Pair features :attr:`HeimdallConfig.iq_lags` adds to the geometry encoder: range difference, both timed.
PAIR_LAG_EXTRA = 2
#: The relative onset is a fraction of the capture (1024 samples: 10 km at 30.72 MS/s); a city's
#: time differences are a few hundredths of it, scaled towards 1 here.
ONSET_SCALE = 20.0


# --------------------------------------------------------------------------- models


class LocNet(nn.Module):
    """Common parts: configuration, position/uncertainty head, augmentation and loss."""

    #: The registry name, set by :func:`~rflocal_core.models.registry.register`.
    name: ClassVar[str] = "net"
    #: Which registry the class joins.
    kind: ClassVar[str] = "network"
    config_cls: ClassVar[type[NetConfig]] = NetConfig
    #: Whether it needs each report's node position (nodes of unknown position cannot be placed).
    needs_node_positions: ClassVar[bool] = False

    def __init__(self, config: NetConfig, *, vocab_size: int = 0) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = int(vocab_size)

    def _head_out(self, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.position_head(g)
        mu = 0.5 + out[:, :2]  # the head starts at the scene centre
        sigma = F.softplus(out[:, 2:] - 2.0) + self.config.sigma_min
        return mu, sigma

    def augment(self, batch: Batch, *, epoch_fraction: float, extent_m: float, generator: torch.Generator) -> Batch:
        """Training-time node dropout (progressive schedule), RSS noise and position jitter."""
        c = self.config
        sched = c.node_dropout
        p = sched[min(int(epoch_fraction * len(sched)), len(sched) - 1)]
        mask = batch.mask
        if p > 0:
            drop = torch.rand(mask.shape, generator=generator) < p
            keep = mask & ~drop
            # keep at least one report: restore the strongest if all were dropped
            empty = ~keep.any(1) & mask.any(1)
            if empty.any():
                score = batch.col("rss").masked_fill(~mask, -1e9) + torch.rand(mask.shape, generator=generator) * 1e-3
                first = F.one_hot(score.argmax(1), mask.shape[1]).bool()
                keep = keep | (first & empty.unsqueeze(1))
            mask = keep
        feats = batch.feats
        if c.rss_noise_db > 0:
            feats = feats.clone()
            i = TOKEN_COLUMNS.index("rss")
            noise = (torch.rand(mask.shape, generator=generator) * 2 - 1) * c.rss_noise_db / 90.0
            feats[..., i] = feats[..., i] + noise * feats[..., TOKEN_COLUMNS.index("rss_ok")]
        node_xy = batch.node_xy
        if c.position_jitter_m > 0:
            # metres to units: the side of each sample's square (sample frame) or the scene's
            unit_m = extent_m if batch.scale_m is None else batch.scale_m.to(node_xy.dtype).view(-1, 1, 1)
            jitter = torch.randn(node_xy.shape, generator=generator) * (c.position_jitter_m / unit_m)
            node_xy = node_xy + jitter * batch.col("pos_ok").unsqueeze(-1)
        return batch.with_tokens(node_xy=node_xy, feats=feats, mask=mask)

    def loss(self, batch: Batch, out: dict[str, torch.Tensor], *, stage: str = "joint"
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss and its parts. ``stage``: ``"joint"`` or ``"aux"`` (auxiliary only)."""
        pos = gaussian_beta_nll(out["mu"], out["sigma"], batch.truth, self.config.beta).mean()
        parts = {"position": float(pos.detach())}
        total = pos
        aux = self._aux_loss(batch, out)
        if aux is not None:
            parts["aux"] = float(aux.detach())
            weight = self.aux_weight
            total = aux if stage == "aux" else pos + weight * aux
        return total, parts

    def _aux_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None

    @property
    def aux_weight(self) -> float:
        """Weight of :meth:`_aux_loss` in the joint loss."""
        return float(getattr(self.config, "aux_weight", 0.0))


@register("setnet")
class SetNet(LocNet):
    """Masked set transformer over report tokens (``setnet``)."""

    needs_node_positions = True  # a token knows its node only by the node's position
    config_cls = SetNetConfig

    def __init__(self, config: SetNetConfig, *, vocab_size: int = 0) -> None:
        super().__init__(config, vocab_size=vocab_size)
        d = config.d_model
        in_dim = 4 * config.pe_freqs + token_width(config.frame, phy=config.phy_features, band=config.band_feature)
        self.token_mlp = mlp([in_dim, 2 * d, d])
        layer = nn.TransformerEncoderLayer(d, config.heads, 2 * d, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.seed = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pool = nn.MultiheadAttention(d, config.heads, batch_first=True)
        self.position_head = mlp([2 * d, 2 * d, d, 4])
        self.aux_head = mlp([d, d, 3])  # bearing sin, cos; distance (extent units)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        tokens = torch.cat([sinusoidal(batch.node_xy, c.pe_freqs) * batch.col("pos_ok").unsqueeze(-1),
                            batch.feats], dim=-1)
        h = self.token_mlp(tokens)
        mask = batch.mask
        # An always-present seed token keeps attention defined for an empty set.
        n = h.shape[0]
        seed = self.seed.expand(n, 1, -1)
        h = torch.cat([seed, h], dim=1)
        full = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=mask.device), mask], dim=1)
        h = self.norm(self.encoder(h, src_key_padding_mask=~full))
        pooled, _ = self.pool(h[:, :1], h, h, key_padding_mask=~full, need_weights=False)
        g = torch.cat([pooled[:, 0], _masked_mean(h, full)], dim=-1)
        mu, sigma = self._head_out(g)
        aux = self.aux_head(h[:, 1:])
        return {"mu": mu, "sigma": sigma, "aux": aux}

    def _aux_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> torch.Tensor:
        delta = batch.truth.unsqueeze(1) - batch.node_xy  # [N, S, 2] node -> target (x east, y north)
        dist = delta.norm(dim=-1)
        target = torch.stack([delta[..., 0] / dist.clamp_min(1e-6), delta[..., 1] / dist.clamp_min(1e-6), dist], -1)
        ok = (batch.mask & (batch.col("pos_ok") > 0)).to(out["aux"].dtype)
        err = F.smooth_l1_loss(out["aux"], target, reduction="none", beta=0.05).sum(-1)
        return (err * ok).sum() / ok.sum().clamp_min(1.0)


@register("heimdall")
class Heimdall(LocNet):
    """Per-node encoder + pairwise geometry + multi-pooling fusion (``heimdall``)."""

    config_cls = HeimdallConfig

    def __init__(self, config: HeimdallConfig, *, vocab_size: int = 0) -> None:
        super().__init__(config, vocab_size=vocab_size)
        d = config.d_model
        e = config.node_embedding_dim
        self.node_embedding = nn.Embedding(vocab_size + 1, e) if e else None
        if self.node_embedding is not None:
            nn.init.normal_(self.node_embedding.weight, std=0.02)
            with torch.no_grad():
                self.node_embedding.weight[0].zero_()  # unknown nodes: no identity
        self.iq_encoder = IQEncoder(IQEncoderConfig(width=config.iq_width, out_dim=d, crop=config.iq_crop,
                                                    stem_stride=config.iq_stem_stride)) if config.use_iq else None
        iq_width = d + IQ_EXTRA if config.use_iq else 0
        self.node_mlp = mlp([2 + token_width(config.frame, phy=config.phy_features, band=config.band_feature,
                                             iq_lags=config.iq_lags) + e + iq_width, 2 * d, d],
                            final_act=True)
        # pair features: dx, dy, distance, bearing sin/cos, dz, both-positions-known (+ range difference, both timed)
        pair_in = 7 + (PAIR_LAG_EXTRA if config.iq_lags else 0)
        self.pair_mlp = mlp([pair_in + 2 * d, d, d], final_act=True) if config.geometry else None
        self.node_mlp2 = mlp([2 * d if config.geometry else d, d, d], final_act=True)
        self.quality = nn.Linear(d, 1)
        self.rss_temperature = nn.Parameter(torch.tensor(4.0))
        self.fusion = mlp([3 * d, 2 * d, 2 * d], final_act=True)
        self.drop = nn.Dropout(config.dropout)
        self.position_head = mlp([2 * d, d, 4])
        # per node id: RSS gain and offset; row 0 (unknown node) stays at zero (padding_idx: no gradient)
        self.calibration = nn.Embedding(vocab_size + 1, 2, padding_idx=0) if config.use_calibration else None
        if self.calibration is not None:
            nn.init.zeros_(self.calibration.weight)

    def calibrated(self, batch: Batch) -> Batch:
        """``batch`` with each known node's RSS feature through its calibration (itself without calibration)."""
        if self.calibration is None:
            return batch
        cal = self.calibration(batch.node_id.clamp(0, self.vocab_size))  # [N, S, 2]
        i = TOKEN_COLUMNS.index("rss")
        rss = (batch.col("rss") * (1.0 + cal[..., 0]) + cal[..., 1]) * batch.col("rss_ok")
        feats = torch.cat([batch.feats[..., :i], rss.unsqueeze(-1), batch.feats[..., i + 1:]], dim=-1)
        return batch.with_tokens(feats=feats)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        batch = self.centred_lags(self.calibrated(batch))
        mask = batch.mask
        parts = [batch.node_xy, batch.feats]
        if self.node_embedding is not None:
            ids = batch.node_id.clamp(0, self.vocab_size)
            parts.append(self.node_embedding(ids))
        onset = None
        if self.iq_encoder is not None:
            tokens, onset = self._iq_tokens(batch)
            parts.append(tokens)
        h = self.node_mlp(torch.cat(parts, dim=-1))  # [N, S, d]
        if self.pair_mlp is not None:
            h = torch.cat([h, self._geometry(batch, h)], dim=-1)
        h = self.drop(self.node_mlp2(h))
        score = self.quality(h)[..., 0] + self.rss_temperature * batch.col("rss")
        w = torch.softmax(score.masked_fill(~mask, float("-inf")), dim=1)
        # an empty set gives NaN softmax: zero weights (no NaN gradient either: masked_fill passes none back)
        w = torch.nan_to_num(w, nan=0.0) * mask
        weighted = (w.unsqueeze(-1) * h).sum(1)
        g = self.fusion(torch.cat([_masked_max(h, mask), _masked_mean(h, mask), weighted], dim=-1))
        mu, sigma = self._head_out(self.drop(g))
        out = {"mu": mu, "sigma": sigma, "weights": w}
        if onset is not None:
            out["iq_onset"] = onset
        return out

    def centred_lags(self, batch: Batch) -> Batch:
        """``batch`` with the IQ lag column relative to the mean over the sample's timed reports (unchanged without
        ``iq_lags``): the same whichever receiver was the reference, or was dropped."""
        if not self.config.iq_lags:
            return batch
        lag, ok = batch.feats[..., -3], batch.feats[..., -1] * batch.mask.to(batch.feats.dtype)
        mean = (lag * ok).sum(1, keepdim=True) / ok.sum(1, keepdim=True).clamp_min(1.0)
        feats = torch.cat([batch.feats[..., :-3], ((lag - mean) * ok).unsqueeze(-1), batch.feats[..., -2:-1],
                           ok.unsqueeze(-1)], dim=-1)
        return batch.with_tokens(feats=feats)

    def _iq_tokens(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, S, d + IQ_EXTRA]: each capture's embedding, its onset relative to the sample's mean onset
        (x ONSET_SCALE) and a present flag; zeros where a report has no capture (or the batch none). Also
        the onsets [N, S] (fractions of the capture, 0 where none), which :meth:`_aux_loss` reads."""
        n, s = batch.mask.shape
        out = batch.feats.new_zeros((n, s, self.config.d_model + IQ_EXTRA))
        if batch.iq is None:
            return out, out.new_zeros((n, s))
        ok = batch.iq_ok & batch.mask
        if tracing():
            return self._iq_tokens_dense(batch, ok)
        if not bool(ok.any()):
            return out, out.new_zeros((n, s))
        emb, onset = self.iq_encoder(batch.iq[ok].to(out.dtype))
        full = out.new_zeros((n, s)).masked_scatter(ok, onset)
        mean = (full * ok).sum(1, keepdim=True) / ok.sum(1, keepdim=True).clamp_min(1)
        rel = ((full - mean) * ok)[ok] * ONSET_SCALE
        token = torch.cat([emb, rel.unsqueeze(-1), torch.ones_like(rel).unsqueeze(-1)], dim=-1)
        return out.masked_scatter(ok.unsqueeze(-1).expand_as(out), token), full

    def _iq_tokens_dense(self, batch: Batch, ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_iq_tokens` for an exported graph: every slot's capture through the encoder (absent ones are
        zeros, finite there), then masked. The same tokens: the encoder treats each capture on its own (GroupNorm
        per sample), while selecting the present ones has a size the graph cannot know."""
        n, s = ok.shape
        emb, onset = self.iq_encoder(batch.iq.reshape(n * s, *batch.iq.shape[2:]).to(batch.feats.dtype))
        okf = ok.to(batch.feats.dtype)
        emb, onset = emb.reshape(n, s, -1) * okf.unsqueeze(-1), onset.reshape(n, s) * okf
        mean = onset.sum(1, keepdim=True) / okf.sum(1, keepdim=True).clamp_min(1)
        rel = (onset - mean) * okf * ONSET_SCALE
        return torch.cat([emb, rel.unsqueeze(-1), okf.unsqueeze(-1)], dim=-1), onset

    @property
    def aux_weight(self) -> float:
        return float(self.config.iq_lag_aux) if self.iq_encoder is not None else 0.0

    def _aux_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """With ``iq_lag_aux``: the onsets' differences against the lags the captures give (Huber, samples).

        Each sample's reference is its strongest report by RSS (the first capture without RSS); a lag counts
        where its correlation peak reaches :data:`~rflocal_core.models.iqenc.LAG_TARGET_MIN_QUALITY`. The
        onsets are capture-local, and so are these lags (no capture start is added)."""
        if self.config.iq_lag_aux <= 0 or batch.iq is None or "iq_onset" not in out:
            return None
        ok = batch.iq_ok & batch.mask
        strength = torch.where(ok, batch.col("rss") + batch.col("rss_ok"), torch.full_like(batch.col("rss"), -9.0))
        reference = strength.argmax(1)
        lag, quality = capture_lags(batch.iq, ok, reference)
        n = batch.iq.shape[-1]
        onset = out["iq_onset"] * n
        ref_onset = onset.gather(1, reference.unsqueeze(1))
        has_ref = ok.gather(1, reference.unsqueeze(1))
        timed = (ok & has_ref & (quality >= LAG_TARGET_MIN_QUALITY)).to(onset.dtype)
        err = F.smooth_l1_loss(onset - ref_onset, lag, reduction="none", beta=1.0)
        return (err * timed).sum() / timed.sum().clamp_min(1.0)

    def _geometry(self, batch: Batch, h: torch.Tensor) -> torch.Tensor:
        """Per node: masked mean over the other reporting nodes of an MLP of the pair geometry."""
        xy = batch.node_xy
        delta = xy.unsqueeze(1) - xy.unsqueeze(2)  # [N, S, S, 2]: node i -> node j
        dist = delta.norm(dim=-1, keepdim=True)
        unit = delta / dist.clamp_min(1e-6)
        z = batch.col("node_z")
        dz = (z.unsqueeze(1) - z.unsqueeze(2)).unsqueeze(-1)
        known = batch.col("pos_ok") > 0
        both = (known.unsqueeze(1) & known.unsqueeze(2)).unsqueeze(-1).to(h.dtype)
        s = h.shape[1]
        hj = h.unsqueeze(1).expand(-1, s, -1, -1)
        hi = h.unsqueeze(2).expand(-1, -1, s, -1)
        parts = [delta * both, dist * both, unit * both, dz, both]
        if self.config.iq_lags:  # range difference of the pair: the hyperbola through both nodes the target is on
            lag, timed = batch.feats[..., -3], batch.feats[..., -1]
            pair_timed = (timed.unsqueeze(1) * timed.unsqueeze(2)).unsqueeze(-1)
            parts += [(lag.unsqueeze(1) - lag.unsqueeze(2)).unsqueeze(-1) * pair_timed, pair_timed]
        pair = torch.cat([*parts, hi, hj], dim=-1)
        e = self.pair_mlp(pair)  # [N, S, S, d]
        pm = batch.mask.unsqueeze(1) & batch.mask.unsqueeze(2) & ~torch.eye(s, dtype=torch.bool, device=h.device)
        w = pm.to(h.dtype).unsqueeze(-1)
        return (e * w).sum(2) / w.sum(2).clamp_min(1.0)


def build_network(name: str, config: dict[str, Any] | NetConfig | None, *, vocab_size: int) -> LocNet:
    """A network by name from its configuration (a dict of options or the config object)."""
    check_choice("model", name, tuple(NETWORKS))
    cls = NETWORKS[name]
    cfg = config if isinstance(config, cls.config_cls) else cls.config_cls.from_dict(
        config if isinstance(config, dict) or config is None else _bad_config(config))
    return cls(cfg, vocab_size=vocab_size)


def prepared_network(name: str, config: dict[str, Any] | NetConfig | None, *, spec: Any, data: Any, seed: int
                     ) -> LocNet:
    """:func:`build_network` on the feature frame ``spec``, seeded (torch and numpy: one seed, one set of initial
    weights), then fitted to ``data`` beyond its weights where the network must be (``prepare``: fpnet's output
    frame, fpnet_knn's fingerprint database). What a run, its refit, a search trial and an ensemble member build."""
    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    net = build_network(name, config, vocab_size=len(spec.node_keys))
    prepare = getattr(net, "prepare", None)
    if prepare is not None:
        prepare(data, spec)  # in memory: resolve_loading streams no network that has it
    return net


def _bad_config(config: Any) -> dict[str, Any]:
    msg = f"model_config: expected a dict of options, got {type(config).__name__}"
    raise InvalidInputError(msg)
