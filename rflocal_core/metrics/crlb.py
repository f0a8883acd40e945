"""The Cramér-Rao lower bound on the position error, for RSS, ToA and AoA measurements.

The bound for one geometry (:func:`crlb_fisher`, :func:`bound_from_fisher`,
:func:`crlb_rmse_m`) and per sample of a split (:func:`crlb_for_inputs`), for RSS with
log-normal shadowing, ToA ranging and AoA bearings (``/work/shared/notes/crlb.md``), and
:func:`crlb_summary`: the bound of a split with the noise of its dataset and a fitted
path-loss exponent (:class:`CrlbSummary`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rflocal_core.constants import C_M_PER_NS
from rflocal_core.errors import InvalidInputError
from rflocal_core.metrics.stats import Cdf, cdf_points
from rflocal_core.results import JsonResult, json_field

if TYPE_CHECKING:
    from rflocal_core.models.inputs import Inputs


#: The caveat of the bound, to show wherever it is shown.
CRLB_CAVEAT = (
    "The Cramér-Rao bound is a local, non-Bayesian bound for unbiased estimators under the log-distance model: "
    "ray-traced city maps are not log-distance and learned models use priors, so a model can beat it on some "
    "samples (for the ray-traced maps the tighter reference is the MMSE posterior mean over the grid)."
)

#: Floors of the noise (a noise-free feature would give infinite information).
_MIN_SIGMA_DB, _MIN_SIGMA_M, _MIN_SIGMA_RAD = 1e-3, 1e-3, 1e-6

#: Minimum node-target distance in the bound (m): the log-distance model starts at 1 m.
_MIN_DISTANCE_M = 1.0


# --------------------------------------------------------------------------- Cramér-Rao bound


def _mask(value: Any, m: int, name: str) -> np.ndarray:
    """A feature selection: None/False (none), True (all M nodes) or a bool mask [M]."""
    if value is None or value is False:
        return np.zeros(m, dtype=bool)
    if value is True:
        return np.ones(m, dtype=bool)
    arr = np.asarray(value)
    if arr.shape != (m,):
        msg = f"{name}: expected True/False or a bool mask of the {m} nodes, got shape {arr.shape}"
        raise InvalidInputError(msg)
    return arr.astype(bool)


def _sigma(value: float | None, name: str, floor: float, needed: bool) -> float:
    if not needed:
        return float("nan")
    if value is None or not math.isfinite(float(value)) or float(value) < 0:
        msg = f"{name}: expected a finite noise level >= 0 for the nodes that use it, got {value!r}"
        raise InvalidInputError(msg)
    return max(float(value), floor)


def _fisher_batch(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, rss: np.ndarray, toa: np.ndarray,
                  aoa: np.ndarray, *, sigma_rss_db: float, path_loss_exponent: float, sigma_toa_m: float,
                  sigma_aoa_rad: float, unknown_power: bool | np.ndarray) -> np.ndarray:
    """Fisher information [N, 3, 3] of (x, y, P0) from node offsets [N, M] and feature masks [N, M].

    The P0 row and column are zero where the power is known (or no RSS is used).
    """
    dh2 = np.maximum(dx**2 + dy**2, _MIN_DISTANCE_M**2)
    d2 = np.maximum(dx**2 + dy**2 + dz**2, _MIN_DISTANCE_M**2)
    n = dx.shape[0]
    f = np.zeros((n, 3, 3))
    if rss.any():
        k = 10.0 * path_loss_exponent / math.log(10.0)
        w = rss / sigma_rss_db**2
        g = np.stack([-k * dx / d2, -k * dy / d2, np.ones_like(dx)], axis=-1)  # [N, M, 3]
        f += np.einsum("nm,nmi,nmj->nij", w, g, g)
        known = ~np.broadcast_to(np.asarray(unknown_power, dtype=bool), (n,))
        f[known, 2, :] = 0.0
        f[known, :, 2] = 0.0
    if toa.any():
        w = toa / (sigma_toa_m**2 * d2)
        f[:, 0, 0] += (w * dx * dx).sum(1)
        f[:, 0, 1] += (w * dx * dy).sum(1)
        f[:, 1, 1] += (w * dy * dy).sum(1)
    if aoa.any():
        w = aoa / (sigma_aoa_rad**2 * dh2**2)
        f[:, 0, 0] += (w * dy * dy).sum(1)
        f[:, 0, 1] -= (w * dx * dy).sum(1)
        f[:, 1, 1] += (w * dx * dx).sum(1)
    f[:, 1, 0] = f[:, 0, 1]
    return f


def crlb_fisher(
    target_xy: np.ndarray, nodes_xy: np.ndarray, *, rss: Any = None, toa: Any = None, aoa: Any = None,
    sigma_rss_db: float | None = None, path_loss_exponent: float | None = None, sigma_toa_m: float | None = None,
    sigma_aoa_rad: float | None = None, unknown_power: bool = False, dz_m: Any = None,
) -> np.ndarray:
    """Fisher information of a single target position from RSS, ToA and AoA measurements.

    Independent measurement types add their information (Patwari et al., IEEE TSP 2003):

    - RSS with log-normal shadowing: mean RSS = P0 - 10 n_p log10(d);
      gᵢ = [-(10 n_p/ln 10) Δxᵢ/dᵢ², -(10 n_p/ln 10) Δyᵢ/dᵢ², 1], F = σ_dB⁻² Σ gᵢgᵢᵀ
      (the P0 row and column only with ``unknown_power``);
    - ToA ranging, range ~ N(dᵢ, σ_d²): F = σ_d⁻² Σ [Δxᵢ, Δyᵢ]ᵀ[Δxᵢ, Δyᵢ] / dᵢ²;
    - AoA bearing ~ N(θᵢ, σ_a²): F = σ_a⁻² Σ [[Δyᵢ², -ΔxᵢΔyᵢ], [-ΔxᵢΔyᵢ, Δxᵢ²]] / hᵢ⁴.

    Δ = target - node; d is the 3-D distance when ``dz_m`` is given (else the horizontal
    distance h); the bearing is horizontal. Distances below 1 m count as 1 m.

    Parameters
    ----------
    target_xy : ndarray [2]
        Target position, metres.
    nodes_xy : ndarray [M, 2]
        Node positions, metres.
    rss, toa, aoa : bool or ndarray [M] bool, optional
        Which nodes measured each feature (True: all; None/False: none).
    sigma_rss_db : float
        Shadowing (plus measurement) standard deviation of RSS, dB (needed with ``rss``).
    path_loss_exponent : float
        n_p of the log-distance model (needed with ``rss``).
    sigma_toa_m : float
        Ranging standard deviation, metres (needed with ``toa``).
    sigma_aoa_rad : float
        Bearing standard deviation, radians (needed with ``aoa``).
    unknown_power : bool
        Estimate the transmit power P0 jointly (emitter mode).
    dz_m : float or ndarray [M], optional
        Height of the target minus the height of each node, metres (3-D ranges).

    Returns
    -------
    ndarray [2, 2], or [3, 3] with ``unknown_power`` (order x, y, P0; the ToA and AoA
    blocks are zero in the P0 row and column).
    """
    target = np.asarray(target_xy, dtype=float)
    nodes = np.asarray(nodes_xy, dtype=float)
    if target.shape != (2,) or not np.isfinite(target).all():
        msg = f"target_xy: expected a finite [x, y] in metres, got {target_xy!r}"
        raise InvalidInputError(msg)
    if nodes.ndim != 2 or nodes.shape[1] != 2 or not np.isfinite(nodes).all():
        msg = f"nodes_xy: expected finite node positions of shape [M, 2] in metres, got shape {nodes.shape}"
        raise InvalidInputError(msg)
    m = len(nodes)
    r, t, a = _mask(rss, m, "rss"), _mask(toa, m, "toa"), _mask(aoa, m, "aoa")
    s_rss = _sigma(sigma_rss_db, "sigma_rss_db", _MIN_SIGMA_DB, bool(r.any()))
    if r.any() and (path_loss_exponent is None or not math.isfinite(path_loss_exponent) or path_loss_exponent <= 0):
        msg = f"path_loss_exponent: expected a positive number for the RSS bound, got {path_loss_exponent!r}"
        raise InvalidInputError(msg)
    s_toa = _sigma(sigma_toa_m, "sigma_toa_m", _MIN_SIGMA_M, bool(t.any()))
    s_aoa = _sigma(sigma_aoa_rad, "sigma_aoa_rad", _MIN_SIGMA_RAD, bool(a.any()))
    dz = np.zeros(m) if dz_m is None else np.broadcast_to(np.asarray(dz_m, dtype=float), (m,))
    d = target - nodes
    f = _fisher_batch(d[None, :, 0], d[None, :, 1], np.nan_to_num(dz)[None], r[None], t[None], a[None],
                      sigma_rss_db=s_rss, path_loss_exponent=float(path_loss_exponent or 0.0), sigma_toa_m=s_toa,
                      sigma_aoa_rad=s_aoa, unknown_power=bool(unknown_power))[0]
    return f if unknown_power else f[:2, :2]


def bound_from_fisher(fisher: np.ndarray) -> np.ndarray | float:
    """√tr of the position block of F⁻¹ (metres): the bound on the position RMSE.

    Parameters
    ----------
    fisher : ndarray [..., 2, 2] or [..., 3, 3]
        Fisher information of (x, y) or (x, y, P0). With a P0 entry, its information is
        removed through the Schur complement (the position block of F⁻¹ is its inverse);
        a zero P0 diagonal (no RSS) leaves the position block as it is.

    Returns
    -------
    float or ndarray [...]
        inf where the position is not identifiable (singular information).
    """
    f = np.asarray(fisher, dtype=float)
    if f.ndim < 2 or f.shape[-1] != f.shape[-2] or f.shape[-1] not in (2, 3):
        msg = f"fisher: expected a [..., 2, 2] or [..., 3, 3] Fisher matrix, got shape {f.shape}"
        raise InvalidInputError(msg)
    j = f[..., :2, :2].copy()
    if f.shape[-1] == 3:
        f22 = f[..., 2, 2]
        has = f22 > 0
        c = f[..., :2, 2]
        safe = np.where(has, f22, 1.0)
        j -= np.where(has[..., None, None], c[..., :, None] * c[..., None, :] / safe[..., None, None], 0.0)
    det = j[..., 0, 0] * j[..., 1, 1] - j[..., 0, 1] * j[..., 1, 0]
    tr = j[..., 0, 0] + j[..., 1, 1]
    scale = np.maximum(j[..., 0, 0] * j[..., 1, 1], 1e-300)
    ok = (det > 1e-9 * scale) & (tr > 0) & np.isfinite(det)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ok, np.sqrt(np.abs(tr / np.where(ok, det, 1.0))), np.inf)
    return float(out) if out.ndim == 0 else out


def crlb_rmse_m(target_xy: np.ndarray, nodes_xy: np.ndarray, **kwargs: Any) -> float:
    """√tr of the position block of F⁻¹ for one geometry (metres; inf when singular).

    Takes the arguments of :func:`crlb_fisher`.
    """
    return float(bound_from_fisher(crlb_fisher(target_xy, nodes_xy, **kwargs)))


def _offsets(x: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Target minus node [N, S] in x, y and z (z 0 where a height is unknown), and 3-D distances."""
    dx = x.truth_m[:, None, 0] - x.node_pos_m[..., 0]
    dy = x.truth_m[:, None, 1] - x.node_pos_m[..., 1]
    dz = x.truth_z_m[:, None] - x.node_pos_m[..., 2]
    dz = np.where(np.isfinite(dz), dz, 0.0)
    return dx, dy, dz, np.sqrt(dx**2 + dy**2 + dz**2)


@dataclass(frozen=True)
class PathLossFit(JsonResult):
    """The path-loss exponent fitted to a split (see :func:`fit_path_loss_exponent`)."""

    #: Clipped to [1.5, 6]; None when fewer than 10 usable reports.
    path_loss_exponent: float | None
    #: The unclipped fit.
    raw: float | None
    #: RMS residual, dB.
    residual_db: float | None
    reports: int


def fit_path_loss_exponent(x: Inputs) -> PathLossFit:
    """Least-squares fit of RSS against -10 log10(distance) on samples with known truth.

    With known transmit powers (``ue``) the fit is RSS - P_tx = A - n_p · 10 log10(d)
    with one intercept; otherwise (``emitter``, or unknown powers) each sample gets its
    own intercept (its unknown power). Distances are 3-D where heights are known.

    Returns
    -------
    PathLossFit
        ``path_loss_exponent`` (clipped to [1.5, 6]; None when fewer than 10 usable
        reports), ``raw`` (the unclipped fit), ``residual_db`` (RMS residual, dB), ``reports``.
    """
    dx, dy, dz, d = _offsets(x)
    use = x.known_nodes & np.isfinite(x.rss_dbm) & np.isfinite(x.truth_m).all(1)[:, None] & np.isfinite(d)
    lg = 10.0 * np.log10(np.maximum(d, _MIN_DISTANCE_M))
    tx = x.tx_power_dbm
    pooled = x.mode != "emitter" and bool(np.isfinite(tx[use]).all())
    y = x.rss_dbm - (np.nan_to_num(tx) if pooled else 0.0)
    if pooled:
        yv, lv = y[use], lg[use]
        yc = yv - (yv.mean() if len(yv) else 0.0)
        lc = lv - (lv.mean() if len(lv) else 0.0)
    else:
        per = use.sum(1)
        use &= (per >= 2)[:, None]
        cnt = np.maximum(use.sum(1, keepdims=True), 1)
        ym = np.where(use, y, 0.0).sum(1, keepdims=True) / cnt
        lm = np.where(use, lg, 0.0).sum(1, keepdims=True) / cnt
        yc, lc = (y - ym)[use], (lg - lm)[use]
    reports = int(use.sum())
    denom = float((lc**2).sum())
    if reports < 10 or denom <= 1e-9:
        return PathLossFit(None, None, None, reports)
    slope = float((lc * yc).sum() / denom)
    raw = -slope
    resid = yc - slope * lc
    return PathLossFit(float(np.clip(raw, 1.5, 6.0)), raw, float(np.sqrt(np.mean(resid**2))), reports)


def crlb_for_inputs(
    x: Inputs, *, path_loss_exponent: float | None, sigma_rss_db: float | None, sigma_toa_m: float | None,
    sigma_aoa_deg: float | None,
) -> np.ndarray:
    """Per-sample Cramér-Rao bound (m) at the true position, for each sample's own geometry.

    Per sample, each feature counts at the nodes with a known position that reported it
    (RSS / ToA / AoA finite in that slot). The transmit power is unknown (estimated
    jointly) when ``x.mode == "emitter"``. Ranges use 3-D distances where the target and
    node heights are known.

    Parameters
    ----------
    x : Inputs
        The split (with ``truth_m``).
    path_loss_exponent : float or None
        n_p of the RSS model; None leaves RSS out.
    sigma_rss_db, sigma_toa_m, sigma_aoa_deg : float or None
        Noise of each feature (dB, metres, degrees); None leaves the feature out.

    Returns
    -------
    ndarray [N]
        √tr of the position block of F⁻¹, metres; inf where the reports do not determine
        the position, NaN where the sample has no truth.
    """
    dx, dy, dz, _ = _offsets(x)
    known = x.known_nodes
    truth = np.isfinite(x.truth_m).all(1)
    use_rss = path_loss_exponent is not None and sigma_rss_db is not None
    use_toa = sigma_toa_m is not None
    use_aoa = sigma_aoa_deg is not None
    rss = known & np.isfinite(x.rss_dbm) if use_rss else np.zeros_like(known)
    toa = known & np.isfinite(x.toa_ns) if use_toa else np.zeros_like(known)
    aoa = known & np.isfinite(x.aoa_deg) if use_aoa else np.zeros_like(known)
    rss, toa, aoa = (m & truth[:, None] for m in (rss, toa, aoa))
    z = np.zeros_like(dx)
    dx, dy, dz = (np.where(known & truth[:, None], v, z) for v in (dx, dy, dz))
    f = _fisher_batch(
        dx, dy, dz, rss, toa, aoa,
        sigma_rss_db=_sigma(sigma_rss_db, "sigma_rss_db", _MIN_SIGMA_DB, use_rss),
        path_loss_exponent=float(path_loss_exponent or 0.0),
        sigma_toa_m=_sigma(sigma_toa_m, "sigma_toa_m", _MIN_SIGMA_M, use_toa),
        sigma_aoa_rad=math.radians(_sigma(sigma_aoa_deg, "sigma_aoa_deg", _MIN_SIGMA_RAD, use_aoa)),
        unknown_power=x.mode == "emitter",
    )
    out = np.asarray(bound_from_fisher(f), dtype=float).reshape(len(dx))
    return np.where(truth, out, np.nan)


def dataset_noise(x: Inputs, dataset_config: dict[str, Any]) -> dict[str, Any]:
    """Noise of each feature of a dataset, for the bound.

    RSS: σ = √(shadowing² + measurement noise² + q²/12) (dB, from ``x``); ToA:
    ``toa_noise_ns`` · c (m; the NLoS bias is not part of the Gaussian model); AoA:
    √(``aoa_noise_deg``² + 1/12) (degrees, with the 1-degree bins). A value is None when
    the dataset does not say (imported measurements).
    """
    q = x.rss_quantization_db if math.isfinite(x.rss_quantization_db) else 0.0
    rss = math.sqrt(x.shadowing_sigma_db**2 + x.rss_noise_db**2 + q**2 / 12.0)
    toa = dataset_config.get("toa_noise_ns")
    aoa = dataset_config.get("aoa_noise_deg")
    return {
        "sigma_rss_db": rss if math.isfinite(rss) else None,
        "sigma_toa_m": float(toa) * C_M_PER_NS if isinstance(toa, (int, float)) else None,
        "sigma_aoa_deg": math.sqrt(float(aoa) ** 2 + 1.0 / 12.0) if isinstance(aoa, (int, float)) else None,
    }


@dataclass(frozen=True)
class CrlbSummary(JsonResult):
    """The Cramér-Rao bound of a split (see :func:`crlb_summary`)."""

    #: The fitted path-loss exponent (None: not fitted, RSS left out).
    path_loss_exponent: float | None
    fit: PathLossFit
    sigma_rss_db: float | None
    sigma_toa_m: float | None
    sigma_aoa_deg: float | None
    #: The features in the bound, of ``rss``, ``toa``, ``aoa``.
    features: tuple[str, ...]
    #: Features left out, and why (None: none).
    note: str | None
    caveat: str
    #: Whether any sample has a finite bound.
    available: bool
    #: Samples with a finite bound.
    count: int
    #: Samples whose reports do not determine a position.
    unbounded: int
    median_m: float | None
    #: √ of the mean per-sample bound², over the bounded samples.
    rms_m: float | None
    #: The model's RMSE on the bounded samples over the bound's RMS there.
    ratio_rmse_to_crlb: float | None
    #: CDF of the per-sample bound.
    cdf: Cdf = json_field(default_factory=Cdf)


def crlb_summary(x: Inputs, errors_m: np.ndarray, dataset_config: dict[str, Any]) -> CrlbSummary:
    """The bound for a split: noise, fitted path-loss exponent, per-sample bound statistics.

    Parameters
    ----------
    x : Inputs
        The split, with truth.
    errors_m : ndarray [N]
        The model's errors (m), for ``ratio_rmse_to_crlb``.
    dataset_config : dict
        ``attrs["config"]`` of the dataset (``toa_noise_ns``, ``aoa_noise_deg``).

    Returns
    -------
    CrlbSummary
        ``available``, ``path_loss_exponent`` (fitted), ``fit`` (:func:`fit_path_loss_exponent`),
        ``sigma_rss_db``, ``sigma_toa_m``, ``sigma_aoa_deg``, ``features`` (those in the
        bound), ``note`` (features left out, and why), ``count`` (samples with a finite
        bound), ``unbounded`` (samples whose reports do not determine a position),
        ``median_m``, ``rms_m`` (√ of the mean per-sample bound², over the bounded samples),
        ``ratio_rmse_to_crlb`` (the model's RMSE on the same samples / ``rms_m``), ``cdf``
        (of the per-sample bound) and ``caveat``.
    """
    noise = dataset_noise(x, dataset_config)
    fit = fit_path_loss_exponent(x)
    features, note = _bound_features(x, noise, fit)
    base: dict[str, Any] = {"path_loss_exponent": fit.path_loss_exponent, "fit": fit, **noise,
                            "features": tuple(features), "note": note, "caveat": CRLB_CAVEAT}
    if not features:
        return CrlbSummary(**base, available=False, count=0, unbounded=0, median_m=None, rms_m=None,
                           ratio_rmse_to_crlb=None)
    bound = crlb_for_inputs(
        x, path_loss_exponent=fit.path_loss_exponent if "rss" in features else None,
        sigma_rss_db=noise["sigma_rss_db"] if "rss" in features else None,
        sigma_toa_m=noise["sigma_toa_m"] if "toa" in features else None,
        sigma_aoa_deg=noise["sigma_aoa_deg"] if "aoa" in features else None,
    )
    finite = np.isfinite(bound)
    errors_m = np.asarray(errors_m, dtype=float)
    both = finite & np.isfinite(errors_m)
    rms = float(np.sqrt(np.mean(bound[finite] ** 2))) if finite.any() else None
    rms_same = float(np.sqrt(np.mean(bound[both] ** 2))) if both.any() else None
    rmse = float(np.sqrt(np.mean(errors_m[both] ** 2))) if both.any() else None
    return CrlbSummary(
        **base, available=bool(finite.any()), count=int(finite.sum()),
        unbounded=int((np.isinf(bound)).sum()),
        median_m=float(np.median(bound[finite])) if finite.any() else None, rms_m=rms,
        ratio_rmse_to_crlb=rmse / rms_same if rmse is not None and rms_same else None,
        cdf=cdf_points(bound),
    )


def _bound_features(x: Inputs, noise: dict[str, Any], fit: PathLossFit) -> tuple[list[str], str | None]:
    """The features the bound can use (present, with a known noise, RSS with a fitted exponent), and a note
    on those left out (None: none)."""
    present = {"rss": bool(np.isfinite(x.rss_dbm).any()), "toa": bool(np.isfinite(x.toa_ns).any()),
               "aoa": bool(np.isfinite(x.aoa_deg).any())}
    sig = {"rss": noise["sigma_rss_db"], "toa": noise["sigma_toa_m"], "aoa": noise["sigma_aoa_deg"]}
    notes = []
    for feat, label in (("rss", "RSS"), ("toa", "ToA"), ("aoa", "AoA")):
        if present[feat] and sig[feat] is None:
            notes.append(f"{label} left out: the dataset does not record its noise (imported measurements)")
    if present["rss"] and sig["rss"] is not None and fit.path_loss_exponent is None:
        notes.append("RSS left out: too few reports with known truth to fit the path-loss exponent")
    features = [f for f in ("rss", "toa", "aoa") if present[f] and sig[f] is not None
                and (f != "rss" or fit.path_loss_exponent is not None)]
    return features, "; ".join(notes) or None
