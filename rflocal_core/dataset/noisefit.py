"""The measurement model of a dataset, fitted from its reports: what the generator assumes, measured.

From a dataset whose node positions and true positions are known (a real import such as the
Antwerp LoRaWAN set, or a generated one), :func:`fit_noise` fits

- the log-distance path loss ``RSS = P0 - 10 n log10(d / 1 m)``: one exponent ``n`` and one
  intercept per node (the per-node RSS offsets are those intercepts less their mean; in
  ``emitter`` mode the unknown transmit power is part of the intercept), and a free
  ``(P0, n)`` per node as well;
- the shadowing: the empirical semivariogram of the residuals (pairs of reports of the same
  node, binned by the distance between the two true positions), fitted with the exponential
  model ``γ(h) = c0 + σ² (1 - exp(-h / d_corr))`` by weighted least squares (Cressie's
  weights); ``σ`` is the shadowing sigma, ``d_corr`` its correlation distance (Gudmundson's
  model, as :mod:`rflocal_core.dataset.shadowing` draws it) and the nugget ``sqrt(c0)`` the
  per-report noise that does not correlate in space;
- the RSS floor (lowest report), the sensitivity (median over nodes of each node's 1st percentile,
  the censoring level of the fit) and the quantization step (the common spacing of the values);
- the fraction of (sample, node) pairs in which the node was not heard, binned by distance.

Confidence intervals are percentile intervals of a spatial block bootstrap (fixed seed): each
round reweights squares of samples (default side: 5 fitted correlation distances, since nearby
samples share their shadowing) and refits the path loss and the variogram on the same pairs.
:func:`generation_fields` turns a fit into the options of a
:class:`~rflocal_core.dataset.config.GenerationConfig` ("generate like this dataset").

The path loss is a censored (Tobit) maximum-likelihood fit: a link that was not heard counts
as "below its node's floor". Least squares on the heard links alone is biased where most far
links are lost (on Antwerp it gives an exponent of 1.1 instead of 2.8). The variogram uses only
the heard reports whose fitted mean lies 2 σ above their node's floor, chosen by position, so
the censoring does not shrink their spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import least_squares, minimize
from scipy.spatial import cKDTree
from scipy.special import log_ndtr

from rflocal_core.dataset.config import GenerationConfig
from rflocal_core.dataset.store import SPLITS, open_dataset
from rflocal_core.errors import InvalidInputError
from rflocal_core.options import check_options, option, option_of, seed_option
from rflocal_core.results import JsonResult, json_field

#: Central interval of the bootstrap estimates.
CONFIDENCE = 0.95
#: A node needs this many reports for a fit of its own (exponent and intercept).
MIN_NODE_REPORTS = 20
#: A variogram bin needs this many pairs to be fitted.
MIN_BIN_PAIRS = 30
#: Default bootstrap block side, in fitted correlation distances.
BLOCK_CORRS = 5.0
#: Shortest distance used in the path loss (m): the model is undefined at 0.
MIN_DISTANCE_M = 1.0
#: The variogram uses the heard reports whose fitted mean lies this many σ above their node's floor
#: (3 σ was tried: no less bias on synthetic sets, a third of the reports, more scatter).
SAFE_SIGMAS = 2.0


@dataclass(frozen=True)
class NoiseFitConfig:
    """Options of :func:`fit_noise`.

    Parameters
    ----------
    split : str
        ``all`` (every sample with a truth) or one split.
    bootstrap : int
        Bootstrap rounds for the confidence intervals (0: none).
    block_m : float or None
        Side of the squares of samples resampled together (spatial block bootstrap: nearby samples
        share their shadowing); None: ``BLOCK_CORRS`` fitted correlation distances; 0: single samples.
    seed : int
        Seed of the bootstrap and of the pair sampling.
    neighbours : int
        Nearest reports of the same node paired with each report (the short lags of the variogram).
    random_pairs : int
        Random pairs of reports per node (the long lags).
    lag_bins : int
        Variogram bins (geometric in lag).
    """

    split: str = option("all", choices=("all", *SPLITS), label="Split", help="samples to fit: all or one split")
    bootstrap: int = option(30, lo=0, hi=2000, label="Bootstrap rounds",
                            help="bootstrap rounds over samples for the confidence intervals (0: none)")
    block_m: float | None = option(None, lo=0.0, hi=1e6, unit="m", none_means=f"{BLOCK_CORRS:g} x the correlation distance",
                                   label="Bootstrap block (m)",
                                   help="side of the squares resampled together by the bootstrap (0: single samples)")
    seed: int = seed_option(0, help="seed of the bootstrap and of the pair sampling")
    neighbours: int = option(12, lo=1, hi=200, label="Neighbour pairs per report",
                             help="nearest reports of the same node paired with each report (short lags)")
    random_pairs: int = option(20_000, lo=0, hi=2_000_000, label="Random pairs per node",
                               help="random pairs of reports of each node (long lags)")
    lag_bins: int = option(24, lo=5, hi=200, label="Variogram bins", help="variogram lag bins (geometric)")

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class Estimate(JsonResult):
    """A fitted value with its bootstrap interval (``lo``, ``hi`` NaN without bootstrap)."""

    value: float
    lo: float = math.nan
    hi: float = math.nan

    def text(self, unit: str = "", digits: int = 2) -> str:
        """``"3.20 [3.05, 3.41] dB"``."""
        ci = "" if math.isnan(self.lo) else f" [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"
        return f"{self.value:.{digits}f}{ci}{' ' + unit if unit else ''}"


@dataclass(frozen=True)
class NodeFit(JsonResult):
    """One node: its reports, its intercept and offset under the common exponent, and its own free fit."""

    node: str
    reports: int
    offset_db: float
    intercept_db: float
    floor_dbm: float
    own_intercept_db: float | None = json_field(default=None)
    own_exponent: float | None = json_field(default=None)
    residual_sigma_db: float = math.nan


@dataclass(frozen=True)
class Variogram(JsonResult):
    """The binned empirical semivariogram and the fitted exponential model at the same lags."""

    lag_m: tuple[float, ...]
    semivariance_db2: tuple[float, ...]
    pairs: tuple[int, ...]
    model_db2: tuple[float, ...]


@dataclass(frozen=True)
class DistanceBin(JsonResult):
    """Links from ``lo_m`` to ``hi_m``: how many (sample, node) pairs, and the fraction not heard."""

    lo_m: float
    hi_m: float
    links: int
    not_heard: float


@dataclass(frozen=True)
class NoiseFit(JsonResult):
    """The measurement model of a dataset (see the module docstring).

    ``sigma_db``, ``corr_m`` and ``nugget_db`` come from the variogram; ``residual_sigma_db`` is
    the spread of all residuals (about ``sqrt(sigma² + nugget²)``). ``residuals_db`` (not in the
    JSON) holds the residual of every report, for a histogram.
    """

    dataset: str
    split: str
    mode: str
    samples: int
    reports: int
    nodes_used: int
    exponent: Estimate
    intercept_db: Estimate
    sigma_db: Estimate
    corr_m: Estimate
    nugget_db: Estimate
    residual_sigma_db: Estimate
    floor_dbm: float
    sensitivity_dbm: float
    quantization_db: float
    variogram_reports: int
    bootstrap: int
    block_m: float
    seed: int
    nodes: tuple[NodeFit, ...]
    variogram: Variogram
    not_heard: tuple[DistanceBin, ...]
    residual_histogram: dict[str, list[float]]
    nodes_skipped: tuple[str, ...] = json_field(default=(), omit_empty=True)
    warnings: tuple[str, ...] = json_field(default=(), omit_empty=True)
    residuals_db: np.ndarray | None = json_field(default=None, json=False)  # noqa: RUF009

    def summary_lines(self) -> list[str]:
        """The main figures, one per line, with their intervals (for the command line's stderr)."""
        unit = f"{self.block_m:.0f} m blocks" if self.block_m else "samples"
        pct = f"{CONFIDENCE:.0%} bootstrap interval over {unit}, B={self.bootstrap}"
        return [
            (f"{self.dataset} ({self.split}, {self.mode}): {self.samples:,} samples, {self.reports:,} reports, "
             f"{self.nodes_used} nodes; values [{pct}]"),
            f"path-loss exponent n      {self.exponent.text()}",
            f"intercept P0 at 1 m       {self.intercept_db.text('dB')}",
            f"shadowing sigma           {self.sigma_db.text('dB')}",
            f"correlation distance      {self.corr_m.text('m', 0)}",
            f"nugget (per-report noise) {self.nugget_db.text('dB')}",
            f"residual sigma            {self.residual_sigma_db.text('dB')}",
            (f"RSS floor {self.floor_dbm:.1f} dBm (lowest report), sensitivity {self.sensitivity_dbm:.1f} dBm (median "
             f"of the nodes' 1st percentiles), quantization step {self.quantization_db:g} dB"),
        ]


# --------------------------------------------------------------------------- reading the dataset


@dataclass
class Links:
    """Every (sample, step, node) with a truth and a known node position, flattened.

    ``heard`` marks the links with an RSS; the arrays ``rss``, ``dist_m``, ``node``, ``sample``,
    ``xy`` are over all links (``rss`` NaN where not heard). ``node`` indexes ``node_names``.
    """

    rss: np.ndarray
    dist_m: np.ndarray
    node: np.ndarray
    sample: np.ndarray
    xy: np.ndarray
    node_names: list[str]
    samples: int
    mode: str
    skipped: list[str] = field(default_factory=list)

    @property
    def heard(self) -> np.ndarray:
        return np.isfinite(self.rss)


def _rows(root: Any, split: str) -> np.ndarray:
    if split == "all":
        return np.arange(root["samples/pos_m"].shape[0])
    return np.sort(np.asarray(root[f"splits/{split}"][...], dtype=np.int64))


def _fixed_slots(name: str, root: Any, attrs: dict[str, Any], slots: int) -> tuple[int, list[str] | None]:
    """How many node slots are fixed nodes (the same node in every sample), and their ids for an import."""
    if attrs.get("source") == "import":
        ids = [str(i) for i in attrs.get("node_ids") or []]
        return len(ids), ids
    if (attrs.get("config") or {}).get("survey") == "drone":
        msg = (f"survey: dataset {name!r} is a drone survey; its measuring points move with each sample, so no "
               "node has reports from many places to fit a path loss against")
        raise InvalidInputError(msg)
    return slots, None


def _node_names(ids: list[str] | None, scenes: list[str], scene_idx: np.ndarray, slot: np.ndarray) -> list[str]:
    if ids is not None:
        return [ids[s] for s in slot.tolist()]
    return [f"{scenes[k] if k < len(scenes) else k}:site{s}" for k, s in zip(scene_idx.tolist(), slot.tolist())]


def load_links(name: str, split: str = "all") -> Links:
    """The links of a dataset's samples (see :class:`Links`).

    Raises
    ------
    InvalidInputError
        The dataset has no truths (``pos_m``) or no node of known position (``node_pos_m``).
    """
    root = open_dataset(name)
    attrs = dict(root.attrs)
    g = root["samples"]
    rows = _rows(root, split)
    fixed, ids = _fixed_slots(name, root, attrs, g["rss_dbm"].shape[2])
    pos = np.asarray(g["pos_m"].oindex[rows], dtype=np.float64)  # [N, T, 3]
    if not np.isfinite(pos[..., :2]).any():
        msg = (f"pos_m: dataset {name!r} ({split}) has no true positions; fitting the measurement model needs "
               "samples with a truth")
        raise InvalidInputError(msg)
    node_pos = np.asarray(g["node_pos_m"].oindex[rows], dtype=np.float64)[:, :fixed]  # [N, S, 3]
    known = np.isfinite(node_pos[..., :2]).all(-1) & np.asarray(g["node_mask"].oindex[rows], dtype=bool)[:, :fixed]
    if "node_pos_known" in g:
        known &= np.asarray(g["node_pos_known"].oindex[rows], dtype=bool)[:, :fixed]
    if not known.any():
        msg = (f"node_pos_m: dataset {name!r} has no node of known position (node_pos_known is False for all "
               f"{fixed} nodes); the path loss and the shadowing are fitted against the distance to each node")
        raise InvalidInputError(msg)
    rss = np.asarray(g["rss_dbm"].oindex[rows], dtype=np.float64)[:, :, :fixed]  # [N, T, S]
    step = np.asarray(g["step_mask"].oindex[rows], dtype=bool)
    scene_idx = np.asarray(g["scene_idx"].oindex[rows], dtype=np.int64) if "scene_idx" in g else np.zeros(len(rows),
                                                                                                          np.int64)
    ok = step[..., None] & np.isfinite(pos[..., :2]).all(-1)[..., None] & known[:, None, :]
    n_idx, t_idx, s_idx = np.nonzero(ok)
    return _links(name, attrs, rss[n_idx, t_idx, s_idx], pos[n_idx, t_idx], node_pos[n_idx, s_idx],
                  n_idx, scene_idx[n_idx] * fixed + s_idx, ids, known, len(rows))


def _links(name: str, attrs: dict[str, Any], rss: np.ndarray, pos: np.ndarray, node_pos: np.ndarray,
           sample: np.ndarray, node_key: np.ndarray, ids: list[str] | None, known: np.ndarray, n: int) -> Links:
    """Distances (3-D where both heights are known) and compact node indices of the selected links."""
    delta = pos - node_pos
    has_z = np.isfinite(delta[:, 2])
    dist = np.where(has_z, np.linalg.norm(np.nan_to_num(delta), axis=1), np.hypot(delta[:, 0], delta[:, 1]))
    keys, node = np.unique(node_key, return_inverse=True)
    fixed = known.shape[1]
    scenes = list((attrs.get("config") or {}).get("scenes") or [])
    names = _node_names(ids, scenes, keys // max(fixed, 1), keys % max(fixed, 1))
    skipped = [] if ids is None else [ids[s] for s in range(fixed) if not known[:, s].any()]
    if not np.isfinite(rss).any():
        msg = f"rss_dbm: dataset {name!r} has no RSS report from a node of known position at a known truth"
        raise InvalidInputError(msg)
    return Links(rss=rss, dist_m=np.maximum(dist, MIN_DISTANCE_M), node=node.astype(np.int64), sample=sample,
                 xy=pos[:, :2].copy(), node_names=names, samples=n, mode=str(attrs.get("mode", "ue")), skipped=skipped)


# --------------------------------------------------------------------------- path loss


def fit_path_loss(y: np.ndarray, dist_m: np.ndarray, node: np.ndarray, nodes: int,
                  weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Weighted least squares of ``y = P0[node] - 10 n log10(d)``: returns (P0 per node, n).

    A node without (weighted) reports gets a NaN intercept.
    """
    w = np.ones_like(y) if weights is None else weights
    x = np.zeros((len(y), nodes + 1))
    x[np.arange(len(y)), node] = 1.0
    x[:, nodes] = -10.0 * np.log10(dist_m)
    used = np.bincount(node, weights=w, minlength=nodes) > 0
    cols = np.concatenate([used, [True]])
    sw = np.sqrt(w)
    beta, *_ = np.linalg.lstsq(x[:, cols] * sw[:, None], y * sw, rcond=None)
    p0 = np.full(nodes, np.nan)
    p0[used] = beta[:-1]
    return p0, float(beta[-1])


def _censored_terms(theta: np.ndarray, y: np.ndarray, heard: np.ndarray, c: np.ndarray, x: np.ndarray,
                    node: np.ndarray, nodes: int) -> tuple[np.ndarray, ...]:
    """Per link of the Tobit likelihood in ``μ`` and ``s = log σ``: the negative log-likelihood and
    its first and second derivatives (``μ = a[node] - 10 n x``, ``x`` the centred log distance)."""
    sigma = math.exp(theta[nodes + 1])
    mu = theta[:nodes][node] - 10.0 * theta[nodes] * x
    z = np.where(heard, y - mu, c - mu) / sigma
    log_cdf = np.where(heard, 0.0, log_ndtr(np.where(heard, 0.0, z)))
    lam = np.where(heard, 0.0, np.exp(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - log_cdf))  # φ(z) / Φ(z)
    nll = np.where(heard, 0.5 * z**2 + theta[nodes + 1], -log_cdf)
    g_mu = np.where(heard, -z, lam) / sigma
    g_s = np.where(heard, 1.0 - z**2, lam * z)
    h_mumu = np.where(heard, 1.0, lam * (z + lam)) / sigma**2
    h_mus = np.where(heard, 2.0 * z, lam * (z + lam) * z - lam) / sigma
    h_ss = np.where(heard, 2.0 * z**2, lam * z * (z * (z + lam) - 1.0))
    return nll, g_mu, g_s, h_mumu, h_mus, h_ss


def _censored_nll(theta: np.ndarray, *args: Any) -> tuple[float, np.ndarray]:
    """Weighted negative log-likelihood of the Tobit path loss and its gradient in ``(a..., n, log σ)``."""
    y, heard, c, x, node, nodes, w = args
    nll, g_mu, g_s, *_ = _censored_terms(theta, y, heard, c, x, node, nodes)
    g_mu = g_mu * w
    grad = np.concatenate([np.bincount(node, weights=g_mu, minlength=nodes), [np.sum(g_mu * -10.0 * x)],
                           [np.sum(w * g_s)]])
    return float(np.sum(w * nll)), grad


def _censored_hess(theta: np.ndarray, *args: Any) -> np.ndarray:
    """The Hessian of :func:`_censored_nll` (block structure of the one-hot intercepts)."""
    y, heard, c, x, node, nodes, w = args
    _, _, _, h_mumu, h_mus, h_ss = _censored_terms(theta, y, heard, c, x, node, nodes)
    h = np.zeros((nodes + 2, nodes + 2))
    h[np.arange(nodes), np.arange(nodes)] = np.bincount(node, weights=w * h_mumu, minlength=nodes)
    h[:nodes, nodes] = h[nodes, :nodes] = np.bincount(node, weights=w * h_mumu * -10.0 * x, minlength=nodes)
    h[:nodes, nodes + 1] = h[nodes + 1, :nodes] = np.bincount(node, weights=w * h_mus, minlength=nodes)
    h[nodes, nodes] = np.sum(w * h_mumu * 100.0 * x**2)
    h[nodes, nodes + 1] = h[nodes + 1, nodes] = np.sum(w * h_mus * -10.0 * x)
    h[nodes + 1, nodes + 1] = np.sum(w * h_ss)
    return h


def fit_censored_path_loss(links: Links, floor_dbm: np.ndarray, weights: np.ndarray | None = None,
                           start: np.ndarray | None = None) -> np.ndarray:
    """Maximum likelihood of ``RSS = P0[node] - 10 n log10(d) + N(0, σ²)`` where a link below its node's
    floor ``floor_dbm[node]`` is not heard (a Tobit model): returns ``(P0..., n, σ)``.

    The links that were not heard say how weak the signal was there; leaving them out (least
    squares on the heard ones) lowers the exponent where most far links are lost. The distance
    is centred on its mean for the optimizer (the intercept at 1 m and the exponent are
    otherwise almost collinear and L-BFGS crawls).
    """
    nodes = len(links.node_names)
    heard = links.heard
    w = np.ones(len(heard)) if weights is None else weights
    logd = np.log10(links.dist_m)
    centre = float(np.sum(w * logd) / np.sum(w))
    if start is None:
        p0, n = fit_path_loss(links.rss[heard], links.dist_m[heard], links.node[heard], nodes)
        spread = float(np.nanstd(links.rss[heard] - (p0[links.node[heard]] - 10 * n * logd[heard])))
        start = np.concatenate([np.nan_to_num(p0, nan=float(np.nanmean(p0))), [n, max(spread, 0.5)]])
    x0 = np.concatenate([start[:-2] - 10.0 * start[-2] * centre, [start[-2], math.log(start[-1])]])
    args = (np.nan_to_num(links.rss), heard, floor_dbm[links.node], logd - centre, links.node, nodes,
            w / np.sum(w))
    res = minimize(_censored_nll, x0, args=args, jac=True, hess=_censored_hess, method="trust-exact",
                   options={"maxiter": 200, "gtol": 1e-7})
    n = float(res.x[-2])
    return np.concatenate([res.x[:-2] + 10.0 * n * centre, [n, math.exp(res.x[-1])]])


def _own_fit(links: Links, weights: np.ndarray, k: int, floor_dbm: float) -> tuple[float | None, float | None]:
    """Node ``k``'s own censored (P0, n), when it has enough reports over enough spread of distance."""
    mine = links.node == k
    heard = mine & links.heard
    logd = np.log10(links.dist_m[heard])
    if heard.sum() < MIN_NODE_REPORTS or np.ptp(logd) < 0.3:  # under a factor of 2 in distance: n is not defined
        return None, None
    one = Links(rss=links.rss[mine], dist_m=links.dist_m[mine], node=np.zeros(int(mine.sum()), np.int64),
                sample=links.sample[mine], xy=links.xy[mine], node_names=[links.node_names[k]], samples=links.samples,
                mode=links.mode)
    theta = fit_censored_path_loss(one, np.array([floor_dbm]), weights[mine])
    return float(theta[0]), float(theta[1])


def _node_fits(links: Links, weights: np.ndarray, floors: np.ndarray, theta: np.ndarray) -> tuple[NodeFit, ...]:
    residual = _residuals(links, theta)
    p0 = theta[:-2]
    mean_p0 = float(np.nanmean(p0))
    out = []
    for k, name in enumerate(links.node_names):
        mine = (links.node == k) & links.heard
        if not mine.any():
            continue
        own_p0, own_n = _own_fit(links, weights, k, float(floors[k]))
        out.append(NodeFit(node=name, reports=int(mine.sum()), offset_db=float(p0[k] - mean_p0),
                           intercept_db=float(p0[k]), floor_dbm=float(floors[k]), own_intercept_db=own_p0,
                           own_exponent=own_n, residual_sigma_db=float(np.std(residual[mine]))))
    return tuple(out)


# --------------------------------------------------------------------------- variogram


@dataclass
class Pairs:
    """Pairs of heard reports of the same node: indices into the heard reports, lag and lag bin."""

    i: np.ndarray
    j: np.ndarray
    lag_m: np.ndarray
    bin: np.ndarray
    edges: np.ndarray


def _node_pairs(xy: np.ndarray, rng: np.random.Generator, neighbours: int, random_pairs: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs within one node's reports: (each with its nearest ones, uniform random pairs)."""
    n = len(xy)
    if n < 2:
        return np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)
    k = min(neighbours + 1, n)
    _, nn = cKDTree(xy).query(xy, k=k)
    near = np.column_stack([np.repeat(np.arange(n), k - 1), nn[:, 1:].ravel()])
    far = rng.integers(0, n, size=(random_pairs, 2))
    out = []
    for p in (near, far):
        p = np.sort(p[p[:, 0] != p[:, 1]], axis=1)
        key = np.unique(p[:, 0] * n + p[:, 1])  # a pair found twice (both neighbours) counts once
        out.append(np.column_stack([key // n, key % n]))
    return out[0], out[1]


def make_pairs(xy: np.ndarray, node: np.ndarray, config: NoiseFitConfig) -> Pairs:
    """The variogram pairs of the reports at ``xy`` of the nodes ``node``, and their lag bins.

    Bins: the first holds the co-located pairs (lag under 1/1000 of the largest, e.g. repeated
    messages from one place: they pin the nugget), the second runs up to the 1st percentile of
    the other lags, then geometric bins up to the median lag of the random pairs (beyond it, few
    pairs and edge effects).
    """
    rng = np.random.default_rng(config.seed)
    near, far = [np.zeros((0, 2), np.int64)], [np.zeros((0, 2), np.int64)]
    for k in np.unique(node):
        idx = np.flatnonzero(node == k)
        a, b = _node_pairs(xy[idx], rng, config.neighbours, config.random_pairs)
        near.append(idx[a])
        far.append(idx[b])
    far_pairs = np.concatenate(far)
    pairs = np.concatenate([np.concatenate(near), far_pairs])
    if len(pairs) < MIN_BIN_PAIRS:
        msg = f"reports: only {len(pairs)} pairs of reports of the same node; the variogram needs more samples"
        raise InvalidInputError(msg)
    lag = np.hypot(*(xy[pairs[:, 0]] - xy[pairs[:, 1]]).T)
    hi = max(float(np.median(lag[len(pairs) - len(far_pairs):])) if len(far_pairs) else float(lag.max()), 1e-3)
    same = 1e-3 * hi  # closer than this: the same place (GPS jitter), the nugget's own bin
    positive = lag[lag > same]
    lo = max(float(np.percentile(positive, 1)) if len(positive) else same, same * 1.01)
    hi = max(hi, lo * 10)
    edges = np.concatenate([[0.0, same], np.geomspace(lo, hi, config.lag_bins)])
    keep = lag <= hi
    pairs, lag = pairs[keep], lag[keep]
    return Pairs(i=pairs[:, 0], j=pairs[:, 1], lag_m=lag, bin=np.searchsorted(edges, lag, side="right") - 1,
                 edges=edges)


def semivariogram(residual: np.ndarray, pairs: Pairs, weights: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binned semivariance ``0.5 E[(r_i - r_j)²]``: (mean lag, semivariance, pairs) of the bins with enough pairs."""
    w = np.ones(len(pairs.i)) if weights is None else weights[pairs.i] * weights[pairs.j]
    nb = len(pairs.edges) - 1
    count = np.bincount(pairs.bin, minlength=nb)[:nb]
    wsum = np.bincount(pairs.bin, weights=w, minlength=nb)[:nb]
    half_sq = 0.5 * (residual[pairs.i] - residual[pairs.j]) ** 2
    gamma = np.bincount(pairs.bin, weights=w * half_sq, minlength=nb)[:nb]
    lag = np.bincount(pairs.bin, weights=w * pairs.lag_m, minlength=nb)[:nb]
    ok = (count >= MIN_BIN_PAIRS) & (wsum > 0)
    return lag[ok] / wsum[ok], gamma[ok] / wsum[ok], count[ok]


def exponential_model(lag_m: np.ndarray, nugget: float, sill: float, corr_m: float) -> np.ndarray:
    """``γ(h) = nugget + sill (1 - exp(-h / corr_m))`` (nugget, sill in dB²)."""
    return nugget + sill * (1.0 - np.exp(-lag_m / corr_m))


def fit_variogram(lag_m: np.ndarray, gamma: np.ndarray, pairs: np.ndarray) -> tuple[float, float, float]:
    """Weighted least squares (Cressie: ``N_h / γ_model²``) of the exponential model: (nugget, sill, corr_m)."""
    if len(lag_m) < 3:
        return math.nan, math.nan, math.nan
    top = float(np.max(gamma))
    c0 = float(min(gamma[0], top))
    reach = np.flatnonzero(gamma >= c0 + 0.63 * (top - c0))
    a0 = float(lag_m[reach[0]]) if len(reach) else float(np.median(lag_m))
    span = (float(lag_m.min()) / 10 + 1e-6, float(lag_m.max()) * 10)
    x0 = np.array([c0, max(top - c0, 1e-3), min(max(a0, span[0] * 1.01), span[1] * 0.99)])

    def resid(p: np.ndarray) -> np.ndarray:
        model = exponential_model(lag_m, *p)
        return np.sqrt(pairs) * (gamma / np.maximum(model, 1e-9) - 1.0)

    fit = least_squares(resid, x0, bounds=([0.0, 0.0, span[0]], [np.inf, np.inf, span[1]]), x_scale="jac")
    return float(fit.x[0]), float(fit.x[1]), float(fit.x[2])


# --------------------------------------------------------------------------- floor, quantization, not heard


def quantization_step(values: np.ndarray) -> float:
    """The step of the values' grid (the most common spacing of the distinct values), 0 if they are on none."""
    u = np.unique(np.round(values[np.isfinite(values)], 4))
    if len(u) < 3:
        return 0.0
    gaps = np.round(np.diff(u), 3)
    gaps = gaps[gaps > 0]
    vals, counts = np.unique(gaps, return_counts=True)
    step = float(vals[np.argmax(counts)])
    on_grid = np.abs((u - u[0]) / step - np.round((u - u[0]) / step)) < 0.02
    return step if on_grid.mean() > 0.99 else 0.0


def not_heard_by_distance(links: Links, bins: int = 12) -> tuple[DistanceBin, ...]:
    """Fraction of (sample, node) links without a report, in geometric distance bins."""
    d = links.dist_m
    edges = np.geomspace(max(float(d.min()), MIN_DISTANCE_M), float(d.max()) * 1.0001, bins + 1)
    which = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, bins - 1)
    total = np.bincount(which, minlength=bins)
    missing = np.bincount(which, weights=~links.heard, minlength=bins)
    return tuple(DistanceBin(lo_m=float(edges[k]), hi_m=float(edges[k + 1]), links=int(total[k]),
                             not_heard=float(missing[k] / total[k])) for k in range(bins) if total[k])


# --------------------------------------------------------------------------- the fit


@dataclass
class _Point:
    """One fit of the main figures (the point estimate or a bootstrap round); ``theta`` is (P0..., n, σ)."""

    theta: np.ndarray
    nugget: float
    sill: float
    corr_m: float

    @property
    def exponent(self) -> float:
        return float(self.theta[-2])

    @property
    def intercept_db(self) -> float:
        return float(np.nanmean(self.theta[:-2]))

    @property
    def residual_sigma_db(self) -> float:
        return float(self.theta[-1])


@dataclass
class _Fit:
    """What every round shares: the links the Tobit fit sees, the node floors, the variogram pairs."""

    links: Links
    weights: np.ndarray
    floor_dbm: np.ndarray
    reports: np.ndarray
    pairs: Pairs


def _node_floors(links: Links) -> np.ndarray:
    """Each node's floor: the 1st percentile of its reports (its single lowest is often an outlier)."""
    heard = links.heard
    floors = np.full(len(links.node_names), np.nan)
    for k in range(len(floors)):
        mine = links.rss[heard & (links.node == k)]
        if len(mine):
            floors[k] = np.percentile(mine, 1)
    return np.where(np.isfinite(floors), floors, np.nanmin(floors))


def _subsample(links: Links, rng: np.random.Generator, ratio: float = 2.0) -> tuple[Links, np.ndarray]:
    """All heard links and at most ``ratio`` times as many not-heard ones, weighted back to their count."""
    heard = links.heard
    silent = np.flatnonzero(~heard)
    cap = int(ratio * heard.sum())
    if len(silent) <= cap:
        return links, np.ones(len(heard))
    keep = np.sort(np.concatenate([np.flatnonzero(heard), rng.choice(silent, cap, replace=False)]))
    w = np.where(heard[keep], 1.0, len(silent) / cap)
    sub = Links(rss=links.rss[keep], dist_m=links.dist_m[keep], node=links.node[keep], sample=links.sample[keep],
                xy=links.xy[keep], node_names=links.node_names, samples=links.samples, mode=links.mode)
    return sub, w


def _residuals(links: Links, theta: np.ndarray) -> np.ndarray:
    """RSS less the fitted path loss, for every link (NaN where not heard)."""
    return links.rss - (theta[:-2][links.node] - 10.0 * theta[-2] * np.log10(links.dist_m))


def _prepare(links: Links, config: NoiseFitConfig) -> tuple[_Fit, np.ndarray, list[str]]:
    """The Tobit fit, then the reports for the variogram: heard links whose fitted mean is 2 σ above the
    node's floor (chosen by position only, so the censoring does not shrink their spread)."""
    rng = np.random.default_rng(config.seed)
    sub, w = _subsample(links, rng)
    floors = _node_floors(links)
    theta = fit_censored_path_loss(sub, floors, w)
    mu = theta[:-2][sub.node] - 10.0 * theta[-2] * np.log10(sub.dist_m)
    safe = sub.heard & (mu >= floors[sub.node] + SAFE_SIGMAS * theta[-1])
    notes = []
    if safe.sum() < 200:
        notes.append(f"only {int(safe.sum())} reports lie {SAFE_SIGMAS:g} sigma above their node's floor: the variogram uses all "
                     f"{int(sub.heard.sum())} heard reports, and the censoring lowers its sill")
        safe = sub.heard
    reports = np.flatnonzero(safe)
    pairs = make_pairs(sub.xy[reports], sub.node[reports], config)
    return _Fit(sub, w, floors, reports, pairs), theta, notes


def _fit_round(fit: _Fit, weights: np.ndarray | None, start: np.ndarray | None) -> tuple[_Point, np.ndarray]:
    """One fit: the censored path loss (from ``start``), then the variogram of the selected reports."""
    w = fit.weights if weights is None else fit.weights * weights
    theta = start if weights is None else fit_censored_path_loss(fit.links, fit.floor_dbm, w, start)
    residual = _residuals(fit.links, theta)[fit.reports]
    lag, gamma, count = semivariogram(residual, fit.pairs, None if weights is None else weights[fit.reports])
    c0, c1, a = fit_variogram(lag, gamma, count)
    return _Point(theta, c0, c1, a), residual


def _blocks(fit: _Fit, point: _Point, config: NoiseFitConfig) -> tuple[np.ndarray, float]:
    """Each link's bootstrap unit: its square of ``block_m`` (default: ``BLOCK_CORRS`` fitted correlation
    distances), or its sample when the block size is 0 or there is no correlation distance."""
    size = config.block_m if config.block_m is not None else BLOCK_CORRS * point.corr_m
    if not np.isfinite(size) or size <= 0:
        return np.unique(fit.links.sample, return_inverse=True)[1], 0.0
    cells = np.floor(fit.links.xy / size).astype(np.int64)
    return np.unique(cells, axis=0, return_inverse=True)[1].ravel(), float(size)


def _bootstrap(fit: _Fit, point: _Point, config: NoiseFitConfig) -> tuple[list[_Point], float]:
    """Refit with the blocks (or samples) reweighted by multinomial counts: a spatial block bootstrap,
    since nearby samples share their shadowing. Returns the rounds and the block size (0: samples)."""
    rng = np.random.default_rng(config.seed + 1)
    unit, size = _blocks(fit, point, config)
    units = int(unit.max()) + 1
    out = []
    for _ in range(config.bootstrap):
        counts = rng.multinomial(units, np.full(units, 1.0 / units)).astype(np.float64)
        out.append(_fit_round(fit, counts[unit], point.theta)[0])
    return out, size


def _estimate(value: float, rounds: list[float]) -> Estimate:
    finite = np.asarray([r for r in rounds if np.isfinite(r)])
    if len(finite) < 2:
        return Estimate(value)
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return Estimate(value, float(lo), float(hi))


def _estimates(point: _Point, rounds: list[_Point]) -> dict[str, Estimate]:
    def sq(v: float) -> float:
        return math.sqrt(v) if np.isfinite(v) else math.nan

    return {
        "exponent": _estimate(point.exponent, [r.exponent for r in rounds]),
        "intercept_db": _estimate(point.intercept_db, [r.intercept_db for r in rounds]),
        "sigma_db": _estimate(sq(point.sill), [sq(r.sill) for r in rounds]),
        "corr_m": _estimate(point.corr_m, [r.corr_m for r in rounds]),
        "nugget_db": _estimate(sq(point.nugget), [sq(r.nugget) for r in rounds]),
        "residual_sigma_db": _estimate(point.residual_sigma_db, [r.residual_sigma_db for r in rounds]),
    }


def _warnings(links: Links, point: _Point, pairs: Pairs) -> list[str]:
    out = []
    if links.skipped:
        out.append(f"{len(links.skipped)} nodes have no known position and are not fitted: {', '.join(links.skipped)}")
    if np.isfinite(point.corr_m) and point.corr_m > 0.5 * pairs.edges[-1]:
        out.append(f"the correlation distance {point.corr_m:.0f} m is over half the largest lag fitted "
                   f"({pairs.edges[-1]:.0f} m): the variogram barely levels off, the value is uncertain")
    if not 1.0 <= point.exponent <= 6.0 or point.residual_sigma_db > 15.0:
        out.append(f"the log-distance model fits poorly (exponent {point.exponent:.1f}, residual sigma "
                   f"{point.residual_sigma_db:.1f} dB): line-of-sight and blocked links, or coverage holes counted as "
                   "below the floor, do not follow one log-normal law; the generation options are of limited use")
    if not np.isfinite(point.sill):
        out.append("too few variogram bins with enough pairs: sigma, correlation distance and nugget are not fitted")
    return out


def fit_noise(dataset: str, config: NoiseFitConfig | None = None) -> NoiseFit:
    """Fit the measurement model of ``dataset`` (see the module docstring).

    Raises
    ------
    InvalidInputError
        The dataset has no truths (``pos_m``), no node of known position (``node_pos_m``), no
        RSS, or too few reports for a variogram.
    """
    config = config or NoiseFitConfig()
    links = load_links(dataset, config.split)
    fit, theta, notes = _prepare(links, config)
    point, residual = _fit_round(fit, None, theta)
    rounds, block_m = _bootstrap(fit, point, config)
    lag, gamma, count = semivariogram(residual, fit.pairs)
    model = exponential_model(lag, point.nugget, point.sill, point.corr_m)
    heard = links.heard
    all_residuals = _residuals(links, theta)[heard]
    hist, edges = np.histogram(all_residuals, bins=60)
    return NoiseFit(
        dataset=dataset, split=config.split, mode=links.mode, samples=len(np.unique(links.sample[heard])),
        reports=int(heard.sum()), nodes_used=len(np.unique(links.node[heard])), **_estimates(point, rounds),
        floor_dbm=float(np.min(links.rss[heard])), sensitivity_dbm=float(np.median(fit.floor_dbm)),
        quantization_db=quantization_step(links.rss[heard]),
        variogram_reports=len(fit.reports), bootstrap=config.bootstrap, block_m=block_m, seed=config.seed,
        nodes=_node_fits(fit.links, fit.weights, fit.floor_dbm, theta),
        variogram=Variogram(tuple(lag.tolist()), tuple(gamma.tolist()), tuple(int(c) for c in count),
                            tuple(model.tolist())),
        not_heard=not_heard_by_distance(links), residual_histogram={"edges_db": edges.tolist(),
                                                                    "counts": hist.tolist()},
        nodes_skipped=tuple(links.skipped), warnings=tuple(notes + _warnings(links, point, fit.pairs)),
        residuals_db=all_residuals,
    )


# --------------------------------------------------------------------------- generate like this dataset

#: GenerationConfig options a fit sets.
PRESET_FIELDS = ("shadowing_sigma_db", "shadowing_corr_m", "rss_noise_db", "rss_quantization_db", "sensitivity_dbm")


def _clamp(name: str, value: float, notes: list[str]) -> float:
    opt = option_of(GenerationConfig, name)
    lo = -math.inf if opt.lo is None else opt.lo
    hi = math.inf if opt.hi is None else opt.hi
    out = float(min(max(value, lo), hi))
    if out != value:
        notes.append(f"{name}: fitted {value:.3g}, set to {out:g} (the generator's range is [{lo:g}, {hi:g}])")
    return out


def generation_fields(fit: NoiseFit) -> tuple[dict[str, float], list[str]]:
    """The :class:`GenerationConfig` options that make generated reports look like ``fit``'s dataset.

    Returns the options (``PRESET_FIELDS``) and notes on what was clamped to the generator's
    range or left at its default. The quantization noise (step²/12) is taken out of the nugget:
    the generator adds it when it rounds. The path-loss exponent has no option: the generator's
    path gain comes from ray tracing the scene.
    """
    notes: list[str] = []
    values: dict[str, float] = {}
    step = fit.quantization_db
    nugget = fit.nugget_db.value
    candidates = {
        "shadowing_sigma_db": fit.sigma_db.value,
        "shadowing_corr_m": fit.corr_m.value,
        "rss_noise_db": math.sqrt(max(nugget**2 - step**2 / 12.0, 0.0)) if np.isfinite(nugget) else math.nan,
        "rss_quantization_db": step,
        "sensitivity_dbm": fit.sensitivity_dbm,
    }
    for name, value in candidates.items():
        if not np.isfinite(value):
            notes.append(f"{name}: not fitted (too few variogram bins); the generator's default is kept")
            continue
        values[name] = round(_clamp(name, float(value), notes), 3)
    return values, notes


def generation_config_like(fit: NoiseFit, *, name: str, scenes: tuple[str, ...], **overrides: Any) -> GenerationConfig:
    """A generation config with ``fit``'s measurement model; ``overrides`` (other options) win."""
    values, _ = generation_fields(fit)
    return GenerationConfig(name=name, scenes=scenes, **{**values, **overrides})
