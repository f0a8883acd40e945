"""Fingerprint networks over the fixed nodes' RSS vector (issue 15).

On real LoRaWAN data *which* gateways hear a message says more than where they stand, and a
gateway that does not hear it is information too (it is not missing at random). These
networks therefore read one sample as the RSS vector over the node vocabulary (the fixed
nodes seen in training, :attr:`FeatureSpec.node_keys`), with a heard mask::

    per node i:  x_i = clip((RSS_i + 130) / 70, 0, 1.5) if heard else 0,  heard_i,
                 RSS_i - max_j RSS_j  (relative to the strongest: free of the unknown device power)

The node's place in the vector is its identity (a learnt per-node embedding would be the
same as the first linear layer, so there is none).

``fpnet``
    Residual MLP (pre-norm blocks, dropout) on that vector; the position is
    ``centre + scale * out`` with the centre and spread of the training positions (no clamp
    to the training extent) and a per-axis sigma. Loss (``position_loss``): the mean distance
    error plus 0.1 x the Gaussian NLL of sigma around the detached position, or the beta-NLL.
``fpnet_knn``
    A hybrid: the k nearest training fingerprints (Euclidean in dBm, not heard = ``not_heard_dbm``)
    with their positions relative to the inverse-distance kNN estimate, their fingerprint
    distances and per-node differences; attention over the neighbours re-weights them, and a
    small correction is added. The training fingerprints travel as buffers in the checkpoint.
    Leave-location-out: in training a sample never sees database entries at its own true
    position (itself and exact duplicates), else it would learn to copy.

Augmentation (training only): each heard node dropped with probability ``gateway_drop``
(only in samples that hear at least 3, and at least 2 stay heard), one Gaussian RSS offset
per sample (``rss_offset_db``: unknown device power) and uniform per-report noise
(``rss_noise_db``).

Both need fixed nodes (``Inputs.fixed_slots > 0``, an ``emitter`` or ``ue`` dataset); a drone
survey is refused with :class:`InvalidInputError` by :meth:`FPNet.prepare`, which the run
machinery calls before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import (
    RSS_MAX_DBM,
    RSS_MIN_DBM,
    TOKEN_COLUMNS,
    Batch,
    FeatureSpec,
    index_ordered,
    make_batch,
)
from rflocal_core.models.inputs import Inputs
from rflocal_core.models.nets import LocNet, NetConfig, gaussian_beta_nll
from rflocal_core.models.registry import register
from rflocal_core.options import option, redefault

#: RSS normalization of the fingerprint vector (dBm): x = (RSS - lo) / (hi - lo), clipped to [0, 1.5].
FP_RSS_LO_DBM, FP_RSS_HI_DBM = -130.0, -60.0
#: Spread (dB) of the relative-to-strongest channel.
REL_SCALE_DB = 30.0


@dataclass(frozen=True)
class FPNetConfig(NetConfig):
    """``fpnet`` options (see :class:`~rflocal_core.models.nets.NetConfig` for the common ones;
    ``node_dropout`` and ``position_jitter_m`` are not used: ``gateway_drop`` replaces the first,
    node positions are not read).

    Parameters
    ----------
    blocks : int
        Residual blocks of width ``d_model`` (hidden 2 x ``d_model``).
    gateway_drop : float
        Training: probability of dropping each heard node (samples with >= 3 heard; >= 2 stay).
    rss_offset_db : float
        Training: 1-sigma Gaussian RSS offset per sample (unknown device power).
    position_loss : str
        ``"distance"``: the mean Euclidean error (what the median and mean measure) plus 0.1 x
        the Gaussian NLL of sigma around the detached position; ``"nll"``: the beta-NLL of
        position and sigma together (it trusts easy samples more and lags on the hard ones).
    """

    SEARCH_SPACE: ClassVar[dict[str, tuple[Any, ...]]] = {
        "d_model": ("choice", (64, 128, 256, 512)), "blocks": ("int", 1, 6), "dropout": ("float", 0.0, 0.3),
        "gateway_drop": ("float", 0.0, 0.5), "rss_offset_db": ("float", 0.0, 10.0), "rss_noise_db": ("float", 0.0, 4.0),
    }

    # it reads fixed node slots or the maps of its training scenes: positions in their square only
    frame: str = option("scene", choices=("scene",), help="scene only: positions in the training scenes' square")

    d_model: int = redefault(NetConfig, "d_model", 256)
    dropout: float = redefault(NetConfig, "dropout", 0.1)
    beta: float = redefault(NetConfig, "beta", 0.0)
    rss_noise_db: float = redefault(NetConfig, "rss_noise_db", 2.0)
    blocks: int = option(3, lo=1, hi=32, help="residual blocks of width d_model")
    gateway_drop: float = option(0.2, lo=0.0, hi=0.9,
                                 help="training: chance to drop each heard node (samples with >= 3 heard)")
    rss_offset_db: float = option(6.0, lo=0.0, hi=30.0, unit="dB",
                                  help="training: 1-sigma RSS offset per sample (unknown device power)")
    position_loss: str = option("distance", choices=("distance", "nll"),
                                help="distance: mean error + 0.1 x sigma's NLL (position detached); nll: beta-NLL")


@dataclass(frozen=True)
class FPNetKNNConfig(FPNetConfig):
    """``fpnet_knn`` options (see :class:`FPNetConfig`).

    Parameters
    ----------
    neighbours : int
        Training fingerprints the network attends over.
    base_k : int
        Neighbours of the inverse-distance kNN estimate the positions are taken relative to.
    not_heard_dbm : float
        RSS of a node that does not hear the sample, for the fingerprint distance.
    """

    SEARCH_SPACE: ClassVar[dict[str, tuple[Any, ...]]] = {
        **FPNetConfig.SEARCH_SPACE, "neighbours": ("int", 4, 64, "log"), "base_k": ("int", 1, 15),
    }

    d_model: int = redefault(NetConfig, "d_model", 128)  # Antwerp: 157 m median at 128 against 165 m at 64
    # a twin fingerprint (same place, a few dB apart) is the strongest clue; noise and offsets blur it
    rss_noise_db: float = redefault(NetConfig, "rss_noise_db", 0.0)
    gateway_drop: float = redefault(FPNetConfig, "gateway_drop", 0.0)
    rss_offset_db: float = redefault(FPNetConfig, "rss_offset_db", 0.0)
    neighbours: int = option(16, lo=2, hi=512, help="training fingerprints the network attends over")
    base_k: int = option(5, lo=1, hi=512, help="neighbours of the kNN estimate the positions are relative to")
    not_heard_dbm: float = option(-130.0, lo=-250.0, hi=-50.0, unit="dBm",
                                  help="RSS of a node that does not hear the sample (fingerprint distance)")


def fixed_vector(batch: Batch, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The RSS (dBm, NaN: not heard) and heard mask [N, vocab_size] over the node vocabulary.

    Slot order does not matter (a compacted batch gives the same vector); reports of nodes
    outside the vocabulary (id 0) are left out.
    """
    n = batch.mask.shape[0]  # not len(): a traced (ONNX) batch size stays symbolic
    ids = batch.node_id
    ok = batch.mask & (batch.col("rss_ok") > 0) & (ids > 0) & (ids <= vocab_size)
    rss = batch.col("rss") * (RSS_MAX_DBM - RSS_MIN_DBM) + RSS_MIN_DBM
    col = torch.where(ok, ids, torch.zeros_like(ids))  # column 0 collects what is left out
    out = torch.full((n, vocab_size + 1), float("nan"), dtype=rss.dtype, device=rss.device)
    out.scatter_(1, col, torch.where(ok, rss, torch.full_like(rss, float("nan"))))
    out = out[:, 1:]
    return out, torch.isfinite(out)


def fingerprint_features(rss_dbm: torch.Tensor, heard: torch.Tensor) -> torch.Tensor:
    """[N, V] RSS (NaN: not heard) -> [N, 3V]: normalized RSS (0 if not heard), heard, relative to the strongest."""
    filled = torch.nan_to_num(rss_dbm, nan=FP_RSS_LO_DBM)
    x = ((filled - FP_RSS_LO_DBM) / (FP_RSS_HI_DBM - FP_RSS_LO_DBM)).clamp(0.0, 1.5) * heard
    strongest = filled.masked_fill(~heard, -1e9).max(1, keepdim=True).values
    rel = ((filled - strongest) / REL_SCALE_DB + 1.0).clamp(-1.0, 1.0) * heard
    return torch.cat([x, heard.to(x.dtype), rel], dim=1)


class ResBlock(nn.Module):
    """Pre-norm residual MLP block: h + W2 drop(GELU(W1 LN(h)))."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(2 * width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.ff(self.norm(h))


@register("fpnet")
class FPNet(LocNet):
    """Residual MLP over the fixed-node RSS fingerprint (``fpnet``)."""

    config_cls = FPNetConfig

    def __init__(self, config: FPNetConfig, *, vocab_size: int = 0) -> None:
        super().__init__(config, vocab_size=vocab_size)
        d = config.d_model
        self.inp = nn.Linear(3 * max(vocab_size, 1), d)
        self.blocks = nn.Sequential(*[ResBlock(d, config.dropout) for _ in range(config.blocks)])
        self.norm = nn.LayerNorm(d)
        self.position_head = nn.Linear(d, 4)
        # centre and 1-sigma spread of the training positions (normalized units), set by prepare()
        self.register_buffer("pos_centre", torch.full((2,), 0.5))
        self.register_buffer("pos_scale", torch.tensor(0.25))

    def prepare(self, train_in: Inputs, spec: FeatureSpec) -> None:
        """Check that the data has fixed nodes; take the output centre and scale from the training positions.

        Raises
        ------
        InvalidInputError
            ``train_in.fixed_slots == 0`` (a drone survey: no node is the same in every sample).
        """
        if train_in.fixed_slots <= 0 or self.vocab_size == 0:
            msg = (f"dataset {train_in.dataset!r}: {self.name} reads the RSS vector of fixed nodes, but this "
                   f"dataset has fixed_slots={train_in.fixed_slots} and {self.vocab_size} known nodes (a drone "
                   "survey?); expected an emitter or ue dataset with fixed nodes; choose setnet or heimdall")
            raise InvalidInputError(msg)
        truth = spec.to_unit(train_in.truth_m)
        truth = truth[np.isfinite(truth).all(1)]
        if len(truth):
            self.pos_centre.copy_(torch.as_tensor(truth.mean(0), dtype=torch.float32))
            self.pos_scale.fill_(float(max(truth.std(0).mean(), 1e-3)))

    def augment(self, batch: Batch, *, epoch_fraction: float, extent_m: float, generator: torch.Generator) -> Batch:
        """Drop heard nodes (samples with >= 3 heard, >= 2 stay), a per-sample RSS offset, per-report noise."""
        c = self.config
        mask = batch.mask
        heard = mask & (batch.col("rss_ok") > 0)
        if c.gateway_drop > 0:
            n_heard = heard.sum(1, keepdim=True)
            drop = (torch.rand(mask.shape, generator=generator) < c.gateway_drop) & heard & (n_heard >= 3)
            drop = drop & ((heard & ~drop).sum(1, keepdim=True) >= 2)
            mask = mask & ~drop
        i = TOKEN_COLUMNS.index("rss")
        scale = RSS_MAX_DBM - RSS_MIN_DBM
        offset = torch.randn(mask.shape[0], 1, generator=generator) * c.rss_offset_db
        noise = (torch.rand(mask.shape, generator=generator) * 2 - 1) * c.rss_noise_db
        feats = batch.feats.clone()
        feats[..., i] = feats[..., i] + (offset + noise) / scale * heard
        return batch.with_tokens(feats=feats, mask=mask)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """RSS vector (dBm, NaN), heard mask and the MLP embedding [N, d_model] of a batch."""
        rss, heard = fixed_vector(batch, self.vocab_size)
        h = self.norm(self.blocks(self.inp(fingerprint_features(rss, heard))))
        return rss, heard, h

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        _, _, h = self.encode(batch)
        out = self.position_head(h)
        mu = self.pos_centre + self.pos_scale * out[:, :2]
        sigma = self.pos_scale * F.softplus(out[:, 2:] - 1.0) + self.config.sigma_min
        return {"mu": mu, "sigma": sigma}

    def loss(self, batch: Batch, out: dict[str, torch.Tensor], *, stage: str = "joint"
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Position loss (``position_loss``), in units of the training spread (scale-free)."""
        s = self.pos_scale
        mu, sigma, truth = out["mu"] / s, out["sigma"] / s, batch.truth / s
        if self.config.position_loss == "nll":
            pos = gaussian_beta_nll(mu, sigma, truth, self.config.beta).mean()
            return pos, {"position": float(pos.detach())}
        dist = ((truth - mu) ** 2).sum(-1).add(1e-9).sqrt().mean()
        nll = gaussian_beta_nll(mu.detach(), sigma, truth, 0.0).mean()
        return dist + 0.1 * nll, {"position": float(dist.detach()), "sigma_nll": float(nll.detach())}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load weights; buffers sized by the training data (the fingerprint database) take the saved shape."""
        for name, buf in list(self.named_buffers(recurse=False)):
            saved = state_dict.get(name)
            if saved is not None and tuple(saved.shape) != tuple(buf.shape):
                setattr(self, name, torch.empty(tuple(saved.shape), dtype=buf.dtype, device=buf.device))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def nearest(query_dbm: torch.Tensor, db_dbm: torch.Tensor, k: int, *, not_heard_dbm: float,
            exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest database fingerprints of each query: distances (dB) and indices, [N, k] each.

    Parameters
    ----------
    query_dbm, db_dbm : [N, V], [M, V] RSS in dBm, NaN where not heard (set to ``not_heard_dbm``;
        stronger-than-floor values are kept, weaker ones raised to it).
    exclude : [N, M] bool, optional
        Pairs that may not be neighbours (leave-one-out in training).
    """
    # relative to the floor (the same distances): the |q|^2 + |db|^2 - 2 q.db form (cdist's for more than
    # 25 rows, written out: ONNX has no cdist) loses float32 digits on values near -130 dBm
    q = torch.nan_to_num(query_dbm, nan=not_heard_dbm).clamp_min(not_heard_dbm) - not_heard_dbm
    db = torch.nan_to_num(db_dbm, nan=not_heard_dbm).clamp_min(not_heard_dbm) - not_heard_dbm
    d2 = (q * q).sum(1, keepdim=True) + (db * db).sum(1).unsqueeze(0) - 2.0 * (q @ db.transpose(0, 1))
    d = d2.clamp_min(0.0).sqrt()
    if exclude is not None:
        d = d.masked_fill(exclude, float("inf"))
    k = min(k, db.shape[0])
    # ranked on distances rounded to 1e-3 dB: the last float32 bits of a matrix product differ between
    # backends (PyTorch, onnxruntime), and equal fingerprints must tie exactly to be ordered by index
    _, idx = index_ordered(torch.round(d * 1000.0) / 1000.0, largest=False).topk(k, dim=1, largest=False)
    return torch.gather(d, 1, idx), idx


def same_position(truth: torch.Tensor, db_pos: torch.Tensor) -> torch.Tensor:
    """[N, M] bool: database entries at exactly a sample's true position (the sample itself, exact duplicates)."""
    return (truth.unsqueeze(1) == db_pos.unsqueeze(0)).all(-1)


@register("fpnet_knn")
class FPNetKNN(FPNet):
    """Attention over the kNN neighbours of the fingerprint, plus a correction (``fpnet_knn``)."""

    config_cls = FPNetKNNConfig

    def __init__(self, config: FPNetKNNConfig, *, vocab_size: int = 0) -> None:
        super().__init__(config, vocab_size=vocab_size)
        d, v = config.d_model, max(vocab_size, 1)
        # per neighbour: RSS difference, heard difference, both heard (V each), relative position (2),
        # distance, log distance, log distance beyond the nearest, rank
        self.neighbour_mlp = nn.Sequential(nn.Linear(3 * v + 6 + d, 2 * d), nn.GELU(), nn.Dropout(config.dropout),
                                           nn.Linear(2 * d, d), nn.GELU())
        self.logit = nn.Linear(d, 1)
        self.position_head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 4))
        # the training fingerprints (dBm, NaN: not heard) and positions (normalized), set by prepare()
        self.register_buffer("db_rss", torch.zeros((0, v)))
        self.register_buffer("db_pos", torch.zeros((0, 2)))

    def prepare(self, train_in: Inputs, spec: FeatureSpec) -> None:
        """As :meth:`FPNet.prepare`, and keep the training fingerprints with a true position as the database."""
        super().prepare(train_in, spec)
        b = make_batch(train_in, spec)
        keep = torch.isfinite(b.truth).all(1)
        rss, _ = fixed_vector(b.index(keep), self.vocab_size)
        self.db_rss = rss.float()
        self.db_pos = b.truth[keep].float()

    def neighbours(self, rss: torch.Tensor, truth: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances and indices of the database neighbours; ``truth`` given: leave-location-out."""
        if self.db_rss.shape[0] == 0:
            msg = f"{self.name}: no fingerprint database (prepare() was not called with the training split)"
            raise InvalidInputError(msg)
        exclude = None if truth is None else same_position(truth, self.db_pos)
        c = self.config
        return nearest(rss, self.db_rss, c.neighbours, not_heard_dbm=c.not_heard_dbm, exclude=exclude)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        rss, heard, hq = self.encode(batch)
        dist, idx = self.neighbours(rss, batch.truth if self.training else None)
        n, k = idx.shape
        n_rss, n_pos = self.db_rss[idx], self.db_pos[idx]  # [N, k, V], [N, k, 2]
        n_heard = torch.isfinite(n_rss)
        lo, hi = FP_RSS_LO_DBM, FP_RSS_HI_DBM
        xq = ((torch.nan_to_num(rss, nan=lo) - lo) / (hi - lo)).clamp(0.0, 1.5) * heard
        xn = ((torch.nan_to_num(n_rss, nan=lo) - lo) / (hi - lo)).clamp(0.0, 1.5) * n_heard
        # positions relative to the inverse-distance kNN estimate, in units of the training spread
        bk = min(c.base_k, k)
        w0 = 1.0 / (dist[:, :bk] + 1e-3)
        base = (n_pos[:, :bk] * w0.unsqueeze(-1)).sum(1) / w0.sum(1, keepdim=True)
        rel = (n_pos - base.unsqueeze(1)) / self.pos_scale
        rank = (torch.arange(k, device=idx.device, dtype=rel.dtype) / k).expand(n, k)
        hq_f, nh_f = heard.to(rel.dtype).unsqueeze(1), n_heard.to(rel.dtype)
        feats = torch.cat([xq.unsqueeze(1) - xn, hq_f - nh_f, hq_f * nh_f, rel, dist.unsqueeze(-1) / 50.0,
                           torch.log1p(dist).unsqueeze(-1), torch.log1p(dist - dist[:, :1]).unsqueeze(-1),
                           rank.unsqueeze(-1), hq.unsqueeze(1).expand(-1, k, -1)], dim=-1)
        e = self.neighbour_mlp(feats)
        w = torch.softmax(self.logit(e)[..., 0], dim=1)
        pooled = (w.unsqueeze(-1) * e).sum(1)
        out = self.position_head(torch.cat([hq, pooled], dim=-1))
        mu = (w.unsqueeze(-1) * n_pos).sum(1) + 0.1 * self.pos_scale * out[:, :2]
        sigma = self.pos_scale * F.softplus(out[:, 2:] - 3.0) + c.sigma_min
        return {"mu": mu, "sigma": sigma, "weights": w}
