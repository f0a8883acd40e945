"""Error statistics of position estimates, and the evaluation of a run on a dataset split.

Plain numpy (no Streamlit). Positions are scene metres (x east, y north). The pieces:

- :func:`error_summary` (mean, RMSE, percentiles, success rates) and :func:`error_cdf`;
- :func:`breakdowns`: errors by LoS/NLoS, number of reporting nodes, strongest RSS band,
  seen/unseen scene;
- :func:`calibration`: the fraction of true positions inside the predicted 1-sigma and
  2-sigma ellipses, and a reliability curve;
- :func:`spatial_error_map`: median error per square cell over the true positions;
- the Cramér-Rao lower bound (:func:`crlb_fisher`, :func:`crlb_rmse_m`,
  :func:`bound_from_fisher`, :func:`crlb_for_inputs`) for RSS with log-normal shadowing,
  ToA ranging and AoA bearings (``/work/shared/notes/crlb.md``);
- :func:`evaluate_run`: all of the above for one run on one split, cached on disk with the
  run (``workspace/runs/<run_id>/eval/<dataset>__<split>.json``)::

      result = evaluate_run("knn-ds-...", "ds", split="test")
      result["median_m"], result["crlb"]["rms_m"], result["calibration"]["inside_1sigma"]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rflocal_core.errors import InvalidInputError, RFLocalInputError
from rflocal_core.workspace import jsonable

if TYPE_CHECKING:
    from rflocal_core.models.inputs import Inputs

#: Success-rate thresholds, metres.
SUCCESS_THRESHOLDS_M = (5.0, 10.0, 20.0, 50.0, 100.0)

#: Bump when the content of :func:`evaluate_run` changes: older caches are then recomputed.
METRICS_VERSION = 1

#: Speed of light in metres per nanosecond.
_C_M_PER_NS = 0.299792458

#: Expected fraction of a 2-D Gaussian inside its 1-sigma and 2-sigma ellipses.
EXPECTED_1SIGMA = 1.0 - math.exp(-0.5)
EXPECTED_2SIGMA = 1.0 - math.exp(-2.0)

#: Nominal levels of the reliability curve.
RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)

#: Group order of the breakdowns (empty groups are skipped).
NODE_COUNT_GROUPS = ("0", "1-2", "3", "4", "5", "6-7", "8+")
RSS_BAND_GROUPS = ("< -110", "-110..-100", "-100..-90", "-90..-80", "-80..-70", ">= -70", "no RSS")
LOS_GROUPS = ("LoS", "NLoS", "unknown")
SCENE_GROUPS = ("seen", "unseen", "unknown")

#: The caveat of the bound, to show wherever it is shown.
CRLB_CAVEAT = (
    "The Cramér-Rao bound is a local, non-Bayesian bound for unbiased estimators under the log-distance model: "
    "ray-traced city maps are not log-distance and learned models use priors, so a model can beat it on some "
    "samples (for the ray-traced maps the tighter reference is the MMSE posterior mean over the grid)."
)

#: Points kept of a CDF in :func:`evaluate_run` (an even subset of the exact steps).
CDF_MAX_POINTS = 2000

#: Cells per axis of the spatial map at most (the cell grows to fit).
SPATIAL_MAX_CELLS = 200

#: Floors of the noise (a noise-free feature would give infinite information).
_MIN_SIGMA_DB, _MIN_SIGMA_M, _MIN_SIGMA_RAD = 1e-3, 1e-3, 1e-6

#: Minimum node-target distance in the bound (m): the log-distance model starts at 1 m.
_MIN_DISTANCE_M = 1.0


# --------------------------------------------------------------------------- summary, CDF


def error_summary(errors_m: np.ndarray) -> dict[str, Any]:
    """Mean, RMSE, median, P67, P80, P95 (m) and success rates of finite errors.

    Parameters
    ----------
    errors_m : ndarray [N]
        Euclidean position errors; NaN entries (no estimate or no truth) are counted
        in ``missing`` and left out of the statistics.
    """
    errors_m = np.asarray(errors_m, dtype=float)
    ok = errors_m[np.isfinite(errors_m)]
    out: dict[str, Any] = {"count": int(len(ok)), "missing": int(len(errors_m) - len(ok))}
    if len(ok) == 0:
        return {**out, "mean_m": None, "rmse_m": None, "median_m": None, "p67_m": None, "p80_m": None, "p95_m": None,
                "success_rates": {}}
    p67, p80, p95 = np.percentile(ok, [67, 80, 95])
    return {
        **out,
        "mean_m": float(ok.mean()),
        "rmse_m": float(np.sqrt(np.mean(ok**2))),
        "median_m": float(np.median(ok)),
        "p67_m": float(p67),
        "p80_m": float(p80),
        "p95_m": float(p95),
        "success_rates": {f"{t:g}m": float(np.mean(ok <= t)) for t in SUCCESS_THRESHOLDS_M},
    }


def error_cdf(errors_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF of the finite errors.

    Parameters
    ----------
    errors_m : ndarray [N]
        Errors in metres; NaN and inf entries are left out.

    Returns
    -------
    x_m : ndarray [K]
        The finite errors, sorted ascending (K finite of N).
    fraction : ndarray [K]
        ``i / K`` at the i-th sorted error (1-based): the CDF steps up to it there.
    """
    errors_m = np.asarray(errors_m, dtype=float).ravel()
    x = np.sort(errors_m[np.isfinite(errors_m)])
    return x, np.arange(1, len(x) + 1, dtype=float) / max(len(x), 1)


def _cdf_points(values: np.ndarray, max_points: int = CDF_MAX_POINTS) -> dict[str, list[float]]:
    """The CDF as JSON lists, thinned to an even subset of its exact steps (the last kept)."""
    x, frac = error_cdf(values)
    if len(x) > max_points:
        keep = np.unique(np.round(np.linspace(0, len(x) - 1, max_points)).astype(int))
        x, frac = x[keep], frac[keep]
    return {"x_m": x.tolist(), "fraction": frac.tolist()}


# --------------------------------------------------------------------------- breakdowns


def _strongest_slot(x: Inputs) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the slot of the strongest RSS report [N] int and its RSS [N] (NaN: no RSS)."""
    rss = np.where(x.node_mask, x.rss_dbm, np.nan)
    has = np.isfinite(rss).any(1)
    slot = np.argmax(np.where(np.isfinite(rss), rss, -np.inf), axis=1) if rss.shape[1] else np.zeros(len(rss), int)
    best = np.where(has, rss[np.arange(len(rss)), slot] if rss.shape[1] else np.nan, np.nan)
    return slot, best


def reporting_nodes(x: Inputs) -> np.ndarray:
    """Number of reporting nodes per sample [N]: slots with any of RSS, ToA or AoA finite."""
    reported = np.isfinite(x.rss_dbm) | np.isfinite(x.toa_ns) | np.isfinite(x.aoa_deg)
    return (reported & x.node_mask).sum(1)


def group_labels(x: Inputs, *, training_scenes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The breakdown group of every sample, per category.

    Parameters
    ----------
    x : Inputs
        The evaluated split.
    training_scenes : sequence of str, optional
        Scenes of the model's training data; None: every sample is ``"unknown"`` in ``scene``.

    Returns
    -------
    dict of str to ndarray [N] of str
        ``los`` (the LoS flag of the strongest reporting node's link: ``LoS``, ``NLoS``,
        ``unknown``), ``nodes`` (number of reporting nodes, :data:`NODE_COUNT_GROUPS`),
        ``rss_band`` (strongest RSS, dBm, :data:`RSS_BAND_GROUPS`) and ``scene`` (``seen``
        or ``unseen`` in training).
    """
    n = len(x.indices)
    slot, best = _strongest_slot(x)
    flag = x.los[np.arange(n), slot] if x.los.shape[1] else np.full(n, -1)
    flag = np.where(np.isfinite(best), flag, -1)
    los = np.where(flag == 1, "LoS", np.where(flag == 0, "NLoS", "unknown"))

    count = reporting_nodes(x)
    nodes = np.select([count == 0, count <= 2, count == 3, count == 4, count == 5, count <= 7],
                      list(NODE_COUNT_GROUPS[:6]), default="8+")

    with np.errstate(invalid="ignore"):
        band = np.select([~np.isfinite(best), best < -110, best < -100, best < -90, best < -80, best < -70],
                         ["no RSS", *RSS_BAND_GROUPS[:5]], default=">= -70")

    if training_scenes is None:
        scene = np.full(n, "unknown")
    else:
        seen = {str(s) for s in training_scenes}
        names = np.array([str(s) for s in x.scenes] or [""], dtype=object)
        own = names[np.clip(np.asarray(x.scene_idx, dtype=int), 0, len(names) - 1)]
        scene = np.where([s in seen for s in own], "seen", "unseen") if n else np.array([], dtype=str)
    return {"los": los, "nodes": nodes, "rss_band": band, "scene": np.asarray(scene)}


def breakdown(errors_m: np.ndarray, labels: np.ndarray, order: Sequence[str]) -> list[dict[str, Any]]:
    """Error statistics per group.

    Parameters
    ----------
    errors_m : ndarray [N]
        Errors in metres (NaN: no estimate or no truth; counted, not averaged).
    labels : ndarray [N] of str
        The group of each sample.
    order : sequence of str
        Group order of the rows; groups not listed follow in sorted order.

    Returns
    -------
    list of dict
        One row per non-empty group: ``group``, ``count`` (samples in the group, so the
        counts of all rows sum to N), ``missing`` (of those, without a finite error),
        ``mean_m``, ``median_m``, ``p95_m`` (None when no error is finite).
    """
    errors_m = np.asarray(errors_m, dtype=float)
    labels = np.asarray(labels).astype(str)
    if errors_m.shape != labels.shape:
        msg = f"labels: expected one label per error ({errors_m.shape}), got shape {labels.shape}"
        raise InvalidInputError(msg)
    groups = [g for g in order if g in set(labels)] + sorted(set(labels) - set(order))
    rows = []
    for g in groups:
        e = errors_m[labels == g]
        ok = e[np.isfinite(e)]
        rows.append({
            "group": g, "count": int(len(e)), "missing": int(len(e) - len(ok)),
            "mean_m": float(ok.mean()) if len(ok) else None,
            "median_m": float(np.median(ok)) if len(ok) else None,
            "p95_m": float(np.percentile(ok, 95)) if len(ok) else None,
        })
    return rows


def breakdowns(errors_m: np.ndarray, x: Inputs, *, training_scenes: Sequence[str] | None = None,
               ) -> dict[str, list[dict[str, Any]]]:
    """Errors [N] (m) broken down by ``los``, ``nodes``, ``rss_band`` and ``scene``.

    See :func:`group_labels` for the groups and :func:`breakdown` for the rows.
    """
    orders = {"los": LOS_GROUPS, "nodes": NODE_COUNT_GROUPS, "rss_band": RSS_BAND_GROUPS, "scene": SCENE_GROUPS}
    labels = group_labels(x, training_scenes=training_scenes)
    return {key: breakdown(errors_m, labels[key], orders[key]) for key in orders}


# --------------------------------------------------------------------------- calibration


def calibration(error_xy_m: np.ndarray, sigma_m: np.ndarray) -> dict[str, Any]:
    """Uncertainty calibration of per-axis 1-sigma estimates.

    x and y are treated as independent Gaussians: d² = (ex/σx)² + (ey/σy)² follows a
    chi-square law with 2 degrees of freedom when the sigmas are right, so
    P(d² ≤ t) = 1 - exp(-t/2).

    Parameters
    ----------
    error_xy_m : ndarray [N, 2]
        Estimate minus truth, metres (rows with NaN are left out).
    sigma_m : ndarray [N, 2]
        Predicted 1-sigma per axis, metres; rows without a finite positive sigma on both
        axes are counted in ``no_sigma`` and left out.

    Returns
    -------
    dict
        ``available`` (False when no sample has a sigma), ``count`` (samples used),
        ``no_sigma``, ``inside_1sigma`` (fraction with d² ≤ 1; expected
        ``expected_1sigma`` ≈ 0.393), ``inside_2sigma`` (d² ≤ 4; expected ≈ 0.865),
        ``median_sigma_m`` (median of the per-sample RMS sigma), and ``reliability``:
        ``nominal`` levels p and the ``observed`` fraction with d² ≤ -2 ln(1 - p).
    """
    e = np.asarray(error_xy_m, dtype=float)
    s = np.asarray(sigma_m, dtype=float)
    if e.ndim != 2 or e.shape[1] != 2 or s.shape != e.shape:
        msg = f"sigma_m: expected shape {e.shape} like error_xy_m [N, 2], got error {e.shape} and sigma {s.shape}"
        raise InvalidInputError(msg)
    valid = np.isfinite(e).all(1)
    has_sigma = valid & np.isfinite(s).all(1) & (s > 0).all(1)
    out: dict[str, Any] = {"available": bool(has_sigma.any()), "count": int(has_sigma.sum()),
                           "no_sigma": int((valid & ~has_sigma).sum()),
                           "expected_1sigma": EXPECTED_1SIGMA, "expected_2sigma": EXPECTED_2SIGMA}
    if not has_sigma.any():
        return {**out, "inside_1sigma": None, "inside_2sigma": None, "median_sigma_m": None,
                "reliability": {"nominal": list(RELIABILITY_LEVELS), "observed": [None] * len(RELIABILITY_LEVELS)}}
    d2 = ((e[has_sigma] / s[has_sigma]) ** 2).sum(1)
    thresholds = -2.0 * np.log1p(-np.asarray(RELIABILITY_LEVELS))
    return {
        **out,
        "inside_1sigma": float(np.mean(d2 <= 1.0)),
        "inside_2sigma": float(np.mean(d2 <= 4.0)),
        "median_sigma_m": float(np.median(np.sqrt((s[has_sigma] ** 2).mean(1)))),
        "reliability": {"nominal": list(RELIABILITY_LEVELS),
                        "observed": [float(np.mean(d2 <= t)) for t in thresholds]},
    }


# --------------------------------------------------------------------------- spatial map


def spatial_error_map(truth_m: np.ndarray, errors_m: np.ndarray, *, cell_m: float = 32.0) -> dict[str, Any]:
    """Median error per square cell over the true positions.

    Parameters
    ----------
    truth_m : ndarray [N, 2]
        True positions, scene metres (rows with NaN are left out).
    errors_m : ndarray [N]
        Errors, metres (NaN left out).
    cell_m : float
        Cell size, metres; grown when the area would need more than
        :data:`SPATIAL_MAX_CELLS` cells per axis (the used size is returned).

    Returns
    -------
    dict
        ``cell_m``; ``x_m`` [nx] and ``y_m`` [ny] cell centres; ``count`` [ny][nx];
        ``median_m`` [ny][nx] (NaN in empty cells; None after JSON conversion).
        Empty lists when no sample has both a truth and an error.
    """
    if not (isinstance(cell_m, (int, float)) and math.isfinite(cell_m) and cell_m > 0):
        msg = f"cell_m: expected a positive cell size in metres, got {cell_m!r}"
        raise InvalidInputError(msg)
    truth = np.asarray(truth_m, dtype=float).reshape(-1, 2)
    err = np.asarray(errors_m, dtype=float).ravel()
    if len(truth) != len(err):
        msg = f"errors_m: expected one error per true position ({len(truth)}), got {len(err)}"
        raise InvalidInputError(msg)
    ok = np.isfinite(truth).all(1) & np.isfinite(err)
    if not ok.any():
        return {"cell_m": float(cell_m), "x_m": [], "y_m": [], "count": [], "median_m": []}
    t, e = truth[ok], err[ok]
    lo = t.min(0)
    cell = float(max(cell_m, float((t.max(0) - lo).max()) / SPATIAL_MAX_CELLS))
    origin = np.floor(lo / cell) * cell
    ij = np.floor((t - origin) / cell).astype(int)
    nx, ny = int(ij[:, 0].max()) + 1, int(ij[:, 1].max()) + 1
    flat = ij[:, 1] * nx + ij[:, 0]
    count = np.bincount(flat, minlength=nx * ny)
    median = np.full(nx * ny, np.nan)
    order = np.argsort(flat, kind="stable")
    cells, starts = np.unique(flat[order], return_index=True)
    for c, chunk in zip(cells, np.split(e[order], starts[1:])):
        median[c] = float(np.median(chunk))
    return {"cell_m": cell, "x_m": (origin[0] + cell * (np.arange(nx) + 0.5)).tolist(),
            "y_m": (origin[1] + cell * (np.arange(ny) + 0.5)).tolist(),
            "count": count.reshape(ny, nx).tolist(), "median_m": median.reshape(ny, nx).tolist()}


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


def fit_path_loss_exponent(x: Inputs) -> dict[str, Any]:
    """Least-squares fit of RSS against -10 log10(distance) on samples with known truth.

    With known transmit powers (``ue``) the fit is RSS - P_tx = A - n_p · 10 log10(d)
    with one intercept; otherwise (``emitter``, or unknown powers) each sample gets its
    own intercept (its unknown power). Distances are 3-D where heights are known.

    Returns
    -------
    dict
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
        return {"path_loss_exponent": None, "raw": None, "residual_db": None, "reports": reports}
    slope = float((lc * yc).sum() / denom)
    raw = -slope
    resid = yc - slope * lc
    return {"path_loss_exponent": float(np.clip(raw, 1.5, 6.0)), "raw": raw,
            "residual_db": float(np.sqrt(np.mean(resid**2))), "reports": reports}


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
        "sigma_toa_m": float(toa) * _C_M_PER_NS if isinstance(toa, (int, float)) else None,
        "sigma_aoa_deg": math.sqrt(float(aoa) ** 2 + 1.0 / 12.0) if isinstance(aoa, (int, float)) else None,
    }


def crlb_summary(x: Inputs, errors_m: np.ndarray, dataset_config: dict[str, Any]) -> dict[str, Any]:
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
    dict
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
    present = {"rss": bool(np.isfinite(x.rss_dbm).any()), "toa": bool(np.isfinite(x.toa_ns).any()),
               "aoa": bool(np.isfinite(x.aoa_deg).any())}
    sig = {"rss": noise["sigma_rss_db"], "toa": noise["sigma_toa_m"], "aoa": noise["sigma_aoa_deg"]}
    notes = []
    for feat, label in (("rss", "RSS"), ("toa", "ToA"), ("aoa", "AoA")):
        if present[feat] and sig[feat] is None:
            notes.append(f"{label} left out: the dataset does not record its noise (imported measurements)")
    if present["rss"] and sig["rss"] is not None and fit["path_loss_exponent"] is None:
        notes.append("RSS left out: too few reports with known truth to fit the path-loss exponent")
    features = [f for f in ("rss", "toa", "aoa") if present[f] and sig[f] is not None
                and (f != "rss" or fit["path_loss_exponent"] is not None)]
    base: dict[str, Any] = {
        "path_loss_exponent": fit["path_loss_exponent"], "fit": fit, **noise, "features": features,
        "note": "; ".join(notes) or None, "caveat": CRLB_CAVEAT,
    }
    if not features:
        return {**base, "available": False, "count": 0, "unbounded": 0, "median_m": None, "rms_m": None,
                "ratio_rmse_to_crlb": None, "cdf": {"x_m": [], "fraction": []}}
    bound = crlb_for_inputs(
        x, path_loss_exponent=fit["path_loss_exponent"] if "rss" in features else None,
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
    return {
        **base, "available": bool(finite.any()), "count": int(finite.sum()),
        "unbounded": int((np.isinf(bound)).sum()),
        "median_m": float(np.median(bound[finite])) if finite.any() else None, "rms_m": rms,
        "ratio_rmse_to_crlb": rmse / rms_same if rmse is not None and rms_same else None,
        "cdf": _cdf_points(bound),
    }


# --------------------------------------------------------------------------- evaluation of a run



def _training_scenes(train_dataset: str | None) -> list[str] | None:
    """Scenes the run was trained on: its dataset's scenes less the held-out ones (None: unknown)."""
    from rflocal_core.dataset.store import open_dataset

    if not train_dataset:
        return None
    try:
        attrs = dict(open_dataset(train_dataset).attrs)
    except RFLocalInputError:
        return None
    config = attrs.get("config") or {}
    unseen = set(config.get("unseen_scenes") or ())
    scenes = [str(s) for s in (config.get("scenes") or ()) if s not in unseen]
    return scenes or [str(attrs.get("scene") or train_dataset)]


def _cache_key(run_path: Path, dataset_zarr: Path) -> dict[str, Any]:
    model = (run_path / "model.pt").stat()
    return {"version": METRICS_VERSION, "model_mtime_ns": model.st_mtime_ns, "model_size": model.st_size,
            "dataset_mtime_ns": dataset_zarr.stat().st_mtime_ns}


def evaluation_cache_path(run_id: str, dataset: str, split: str) -> Path:
    """Where :func:`evaluate_run` caches its result: ``runs/<run_id>/eval/<dataset>__<split>.json``."""
    from rflocal_core.train.runs import run_dir
    from rflocal_core.workspace import validate_name

    return run_dir(run_id) / "eval" / f"{validate_name(dataset, field='dataset')}__{split}.json"


def evaluate_run(run_id: str, dataset: str, *, split: str = "test", use_cache: bool = True) -> dict[str, Any]:
    """Evaluate a run on a dataset split: every figure of the Metrics page, as one JSON-ready dict.

    Parameters
    ----------
    run_id : str
        A finished run (``workspace/runs/<run_id>``).
    dataset : str
        Dataset name (any dataset, not only the run's own).
    split : str
        ``train``, ``val``, ``test`` or ``test_unseen``.
    use_cache : bool
        Reuse ``runs/<run_id>/eval/<dataset>__<split>.json`` while it matches the
        checkpoint (``model.pt`` mtime and size) and the dataset (``zarr.json`` mtime).

    Returns
    -------
    dict
        ``run_id``, ``model``, ``dataset``, ``split``, everything of :func:`error_summary`
        (``count``, ``missing``, ``mean_m``, ``rmse_m``, ``median_m``, ``p67_m``, ``p80_m``,
        ``p95_m``, ``success_rates``), ``breakdowns`` (:func:`breakdowns`), ``calibration``
        (:func:`calibration`), ``crlb`` (:func:`crlb_summary`), ``cdf`` (``x_m``,
        ``fraction``), ``spatial`` (:func:`spatial_error_map`), ``inference_ms_per_sample``,
        ``training_scenes``, ``cached`` (True when read from the cache). NaN and inf are None.

    Raises
    ------
    RFLocalInputError
        Unknown run or dataset, bad split, a run without checkpoint, an empty split.
    """
    from rflocal_core.dataset.store import SPLITS, dataset_path, open_dataset
    from rflocal_core.infer import load_run
    from rflocal_core.models.inputs import errors_m
    from rflocal_core.models.transforms import InputTransform, load_transformed
    from rflocal_core.train.runs import run_dir
    from rflocal_core.workspace import atomic_write_text

    path = run_dir(run_id)
    if split not in SPLITS:
        msg = f"split: expected one of {', '.join(SPLITS)}, got {split!r}"
        raise InvalidInputError(msg)
    attrs = dict(open_dataset(dataset).attrs)
    if not (path / "model.pt").is_file():
        load_run(run_id)  # raises the checkpoint error that names the run
    cache = evaluation_cache_path(run_id, dataset, split)
    key = _cache_key(path, dataset_path(dataset) / "zarr.json")
    if use_cache and cache.is_file():
        try:
            stored = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            stored = None
        if isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("result"), dict):
            return {**stored["result"], "cached": True}

    run = load_run(run_id)
    # the run's own view of the data (features, sites, steps it was trained with)
    x = load_transformed(dataset, split, InputTransform.from_dict(run.config.get("input_transform")),
                         with_maps=run.needs_maps)
    if len(x) == 0:
        msg = f"split: {split!r} of dataset {dataset!r} holds no samples; choose another split"
        raise InvalidInputError(msg)
    t0 = time.perf_counter()
    pred = run.predict(x)
    seconds = time.perf_counter() - t0
    err = errors_m(pred, x)
    training = _training_scenes(run.config.get("dataset"))
    result = {
        "run_id": run_id, "model": run.config.get("model"), "dataset": dataset, "split": split,
        **error_summary(err),
        "breakdowns": breakdowns(err, x, training_scenes=training),
        "calibration": calibration(pred.position_m - x.truth_m, pred.sigma_m),
        "crlb": crlb_summary(x, err, attrs.get("config") or {}),
        "cdf": _cdf_points(err),
        "spatial": spatial_error_map(x.truth_m, err),
        "inference_ms_per_sample": round(1000 * seconds / max(len(x), 1), 4),
        "training_scenes": training,
    }
    result = jsonable(result)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps({"key": key, "result": result}, allow_nan=False))
    return {**result, "cached": False}


__all__ = [
    "CRLB_CAVEAT", "EXPECTED_1SIGMA", "EXPECTED_2SIGMA", "SUCCESS_THRESHOLDS_M", "bound_from_fisher", "breakdown",
    "breakdowns", "calibration", "crlb_fisher", "crlb_for_inputs", "crlb_rmse_m", "crlb_summary", "dataset_noise",
    "error_cdf", "error_summary", "evaluate_run", "evaluation_cache_path", "fit_path_loss_exponent", "group_labels",
    "reporting_nodes", "spatial_error_map",
]
