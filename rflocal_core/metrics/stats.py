"""Error statistics of position estimates: summary, CDF, breakdowns, calibration, spatial error.

Plain numpy (no Streamlit). Positions are scene metres (x east, y north). The pieces, each a
typed result with ``to_json()``:

- :func:`error_summary` (mean, RMSE, percentiles, success rates: :class:`ErrorSummary`) and
  :func:`error_cdf` (:func:`cdf_points` thins it to a :class:`Cdf`);
- :func:`breakdowns`: errors by LoS/NLoS, number of reporting nodes, strongest RSS band,
  seen/unseen scene (:class:`Breakdowns` of :class:`BreakdownRow`);
- :func:`calibration`: the fraction of true positions inside the predicted 1-sigma and
  2-sigma ellipses, and a reliability curve (:class:`Calibration`);
- :func:`spatial_error_map`: median error per square cell over the true positions
  (:class:`SpatialErrorMap`).
- :func:`median_difference_se`: how sure a difference of median errors between models is (a
  bootstrap over squares of the positions; model selection reads it).

The Cramér-Rao bound is in :mod:`rflocal_core.metrics.crlb`; the evaluation of a run, which
puts all of them together, in :mod:`rflocal_core.infer.evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from rflocal_core.errors import InvalidInputError
from rflocal_core.results import JsonResult, json_field

if TYPE_CHECKING:
    from rflocal_core.models.inputs import Inputs

#: Success-rate thresholds, metres.
SUCCESS_THRESHOLDS_M = (5.0, 10.0, 20.0, 50.0, 100.0)

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

#: Points kept of a CDF by :func:`cdf_points` (an even subset of the exact steps).
CDF_MAX_POINTS = 2000

#: Cells per axis of the spatial map at most (the cell grows to fit).
SPATIAL_MAX_CELLS = 200


# --------------------------------------------------------------------------- summary, CDF


@dataclass(frozen=True)
class ErrorSummary(JsonResult):
    """Statistics of the finite errors of a set of estimates (see :func:`error_summary`).

    The figures are None when no error is finite.
    """

    count: int
    missing: int
    mean_m: float | None = None
    rmse_m: float | None = None
    median_m: float | None = None
    p67_m: float | None = None
    p80_m: float | None = None
    p95_m: float | None = None
    #: Fraction of errors at most each threshold, keyed ``"5m"``, ``"10m"``, ... (:data:`SUCCESS_THRESHOLDS_M`).
    success_rates: dict[str, float] = json_field(default_factory=dict)


def error_summary(errors_m: np.ndarray) -> ErrorSummary:
    """Mean, RMSE, median, P67, P80, P95 (m) and success rates of finite errors.

    Parameters
    ----------
    errors_m : ndarray [N]
        Euclidean position errors; NaN entries (no estimate or no truth) are counted
        in ``missing`` and left out of the statistics.
    """
    errors_m = np.asarray(errors_m, dtype=float)
    ok = errors_m[np.isfinite(errors_m)]
    if len(ok) == 0:
        return ErrorSummary(count=0, missing=int(len(errors_m)))
    p67, p80, p95 = np.percentile(ok, [67, 80, 95])
    return ErrorSummary(
        count=int(len(ok)),
        missing=int(len(errors_m) - len(ok)),
        mean_m=float(ok.mean()),
        rmse_m=float(np.sqrt(np.mean(ok**2))),
        median_m=float(np.median(ok)),
        p67_m=float(p67),
        p80_m=float(p80),
        p95_m=float(p95),
        success_rates={f"{t:g}m": float(np.mean(ok <= t)) for t in SUCCESS_THRESHOLDS_M},
    )


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


def median_difference_se(errors_m: np.ndarray, truth_m: np.ndarray, ref: int, *, square_m: float = 200.0,
                         draws: int = 1000, seed: int = 0) -> np.ndarray:
    """Standard error of each model's median error minus model ``ref``'s, over the squares of the positions.

    A paired bootstrap: each draw resamples the squares of ``square_m`` metres holding the true
    positions (with replacement, as many as there are) and takes every model's median over the
    samples of the drawn squares. Squares, not samples, are drawn because errors of neighbouring
    positions go together: a validation split of three walked areas is three observations, not
    thousands.

    Parameters
    ----------
    errors_m : ndarray [C, N]
        Errors of C models on the same N samples; NaN and inf count as the largest errors.
    truth_m : ndarray [N, 2]
        The samples' true positions (x, y), metres.
    ref : int
        The model the differences are taken to.

    Returns
    -------
    ndarray [C]
        The standard deviation of ``median_c - median_ref`` over the draws (0 for ``ref``, and
        for every model when all samples lie in one square). It is heavy-tailed when one square
        holds most samples (the draws without it swing far): take enough draws (on Duke's val
        splits 1,000 draws moved it by up to 2x from seed to seed, 2,000 by 1.3x).
    """
    errors_m = np.asarray(errors_m, dtype=float)
    truth_m = np.asarray(truth_m, dtype=float)[:, :2]
    if errors_m.ndim != 2 or len(truth_m) != errors_m.shape[1] or not 0 <= ref < len(errors_m):
        msg = (f"errors_m: expected [C, N] errors with N = {len(truth_m)} positions and ref in [0, C), got shape "
               f"{errors_m.shape} and ref {ref}")
        raise InvalidInputError(msg)
    if not np.isfinite(truth_m).all():
        msg = "truth_m: expected finite positions, got NaN or inf"
        raise InvalidInputError(msg)
    errors_m = np.where(np.isfinite(errors_m), errors_m, np.inf)
    _, square = np.unique(np.floor(truth_m / square_m), axis=0, return_inverse=True)
    square = square.ravel()
    n_squares = int(square.max()) + 1 if len(square) else 0
    order = np.argsort(errors_m, axis=1, kind="stable")
    rng = np.random.default_rng(seed)
    med = np.empty((draws, len(errors_m)))
    for b in range(draws):
        weight = np.bincount(rng.integers(0, n_squares, n_squares), minlength=n_squares)[square]
        cum = np.cumsum(weight[order], axis=1)  # each model's samples by error, counted as often as drawn
        at = (cum >= 0.5 * cum[:, -1:]).argmax(axis=1)
        med[b] = np.take_along_axis(errors_m, order[np.arange(len(order)), at][:, None], 1)[:, 0]
    diff = med - med[:, [ref]]
    with np.errstate(invalid="ignore"):
        se = np.nan_to_num(np.std(diff, axis=0), nan=0.0, posinf=0.0)
    return se


@dataclass(frozen=True)
class Cdf(JsonResult):
    """An empirical CDF as lists: the sorted values (m) and the fraction at or below each."""

    x_m: list[float] = json_field(default_factory=list)
    fraction: list[float] = json_field(default_factory=list)


def cdf_points(values: np.ndarray, max_points: int = CDF_MAX_POINTS) -> Cdf:
    """The CDF of the finite ``values``, thinned to an even subset of its exact steps (the last kept)."""
    x, frac = error_cdf(values)
    if len(x) > max_points:
        keep = np.unique(np.round(np.linspace(0, len(x) - 1, max_points)).astype(int))
        x, frac = x[keep], frac[keep]
    return Cdf(x.tolist(), frac.tolist())


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



@dataclass(frozen=True)
class BreakdownRow(JsonResult):
    """Error statistics of one group of samples (see :func:`breakdown`)."""

    group: str
    count: int
    missing: int
    mean_m: float | None
    median_m: float | None
    p95_m: float | None


def breakdown(errors_m: np.ndarray, labels: np.ndarray, order: Sequence[str]) -> list[BreakdownRow]:
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
    list of BreakdownRow
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
        rows.append(BreakdownRow(
            group=g, count=int(len(e)), missing=int(len(e) - len(ok)),
            mean_m=float(ok.mean()) if len(ok) else None,
            median_m=float(np.median(ok)) if len(ok) else None,
            p95_m=float(np.percentile(ok, 95)) if len(ok) else None,
        ))
    return rows


@dataclass(frozen=True)
class Breakdowns(JsonResult):
    """Error statistics by category (see :func:`group_labels` for the groups)."""

    los: tuple[BreakdownRow, ...] = ()
    nodes: tuple[BreakdownRow, ...] = ()
    rss_band: tuple[BreakdownRow, ...] = ()
    scene: tuple[BreakdownRow, ...] = ()

    #: Group order of each category.
    ORDERS: ClassVar[dict[str, tuple[str, ...]]] = {"los": LOS_GROUPS, "nodes": NODE_COUNT_GROUPS,
                                                    "rss_band": RSS_BAND_GROUPS, "scene": SCENE_GROUPS}

    def rows(self, category: str) -> tuple[BreakdownRow, ...]:
        """The rows of ``category`` (``los``, ``nodes``, ``rss_band`` or ``scene``)."""
        if category not in self.ORDERS:
            msg = f"category: expected one of {', '.join(self.ORDERS)}, got {category!r}"
            raise InvalidInputError(msg)
        return getattr(self, category)


def breakdowns(errors_m: np.ndarray, x: Inputs, *, training_scenes: Sequence[str] | None = None) -> Breakdowns:
    """Errors [N] (m) broken down by ``los``, ``nodes``, ``rss_band`` and ``scene``.

    See :func:`group_labels` for the groups and :func:`breakdown` for the rows.
    """
    labels = group_labels(x, training_scenes=training_scenes)
    return Breakdowns(**{key: tuple(breakdown(errors_m, labels[key], order))
                         for key, order in Breakdowns.ORDERS.items()})


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Reliability(JsonResult):
    """The reliability curve: ``observed`` fraction inside the ellipse of each ``nominal`` probability."""

    nominal: list[float] = json_field(default_factory=lambda: list(RELIABILITY_LEVELS))
    observed: list[float | None] = json_field(default_factory=lambda: [None] * len(RELIABILITY_LEVELS))


@dataclass(frozen=True)
class Calibration(JsonResult):
    """Uncertainty calibration of per-axis 1-sigma estimates (see :func:`calibration`)."""

    #: False when no sample has a sigma (the fractions are then None).
    available: bool
    count: int
    no_sigma: int
    expected_1sigma: float = EXPECTED_1SIGMA
    expected_2sigma: float = EXPECTED_2SIGMA
    inside_1sigma: float | None = None
    inside_2sigma: float | None = None
    median_sigma_m: float | None = None
    #: The 2σ ellipse over the 1σ one: 2 for a Gaussian; a run's fitted ratio with ``sigma_radii`` "quantile".
    ratio_2sigma: float = 2.0
    reliability: Reliability = json_field(default_factory=Reliability)


def ellipse_d2(error_xy_m: np.ndarray, sigma_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared Mahalanobis radius d² = (ex/σx)² + (ey/σy)² of each error with a sigma.

    Parameters
    ----------
    error_xy_m : ndarray [N, 2]
        Estimate minus truth, metres.
    sigma_m : ndarray [N, 2]
        Predicted 1-sigma per axis, metres.

    Returns
    -------
    d2 : ndarray [M]
        d² of the M rows in ``has_sigma`` (chi-square with 2 degrees of freedom when the
        sigmas are right).
    valid : ndarray [N] of bool
        Rows with a finite error.
    has_sigma : ndarray [N] of bool
        Valid rows with a finite positive sigma on both axes.

    Raises
    ------
    InvalidInputError
        The shapes are not both [N, 2].
    """
    e = np.asarray(error_xy_m, dtype=float)
    s = np.asarray(sigma_m, dtype=float)
    if e.ndim != 2 or e.shape[1] != 2 or s.shape != e.shape:
        msg = f"sigma_m: expected shape {e.shape} like error_xy_m [N, 2], got error {e.shape} and sigma {s.shape}"
        raise InvalidInputError(msg)
    valid = np.isfinite(e).all(1)
    with np.errstate(invalid="ignore"):
        has_sigma = valid & np.isfinite(s).all(1) & (s > 0).all(1)
    return ((e[has_sigma] / s[has_sigma]) ** 2).sum(1), valid, has_sigma


def calibration(error_xy_m: np.ndarray, sigma_m: np.ndarray, *, ratio_2sigma: float = 2.0) -> Calibration:
    """Uncertainty calibration of per-axis 1-sigma estimates.

    x and y are treated as independent Gaussians: d² = (ex/σx)² + (ey/σy)² follows a
    chi-square law with 2 degrees of freedom when the sigmas are right, so
    P(d² ≤ t) = 1 - exp(-t/2). A run whose 2σ radius was fitted apart from its 1σ one
    (``sigma_radii`` "quantile", heavy-tailed errors) passes its ``ratio_2sigma`` = r: its law is
    then P(d² ≤ t^γ) = 1 - exp(-t/2) with γ = log2(r) (d^(2/γ) chi-square; γ = 1 the Gaussian), whose
    39.3% radius is 1 and 86.5% radius is r, so the 2σ ellipse is d ≤ r and the reliability levels
    use the same law.

    Parameters
    ----------
    error_xy_m : ndarray [N, 2]
        Estimate minus truth, metres (rows with NaN are left out).
    sigma_m : ndarray [N, 2]
        Predicted 1-sigma per axis, metres; rows without a finite positive sigma on both
        axes are counted in ``no_sigma`` and left out.

    Returns
    -------
    Calibration
        ``available`` (False when no sample has a sigma), ``count`` (samples used),
        ``no_sigma``, ``inside_1sigma`` (fraction with d² ≤ 1; expected
        ``expected_1sigma`` ≈ 0.393), ``inside_2sigma`` (d² ≤ ratio_2sigma², 4 by default; expected ≈ 0.865),
        ``median_sigma_m`` (median of the per-sample RMS sigma), and ``reliability``:
        ``nominal`` levels p and the ``observed`` fraction with d² ≤ (-2 ln(1 - p))^γ (γ = 1 by default).
    """
    d2, valid, has_sigma = ellipse_d2(error_xy_m, sigma_m)
    s = np.asarray(sigma_m, dtype=float)
    counts = {"available": bool(has_sigma.any()), "count": int(has_sigma.sum()),
              "no_sigma": int((valid & ~has_sigma).sum())}
    if not has_sigma.any():
        return Calibration(**counts)
    # the run's radial law: d² ≤ t^γ holds the level p with t = -2 ln(1 - p) (γ = 1: the Gaussian's chi-square)
    gamma = math.log2(float(ratio_2sigma))
    thresholds = (-2.0 * np.log1p(-np.asarray(RELIABILITY_LEVELS))) ** gamma
    return Calibration(
        **counts,
        inside_1sigma=float(np.mean(d2 <= 1.0)),
        inside_2sigma=float(np.mean(d2 <= float(ratio_2sigma) ** 2)),
        ratio_2sigma=float(ratio_2sigma),
        median_sigma_m=float(np.median(np.sqrt((s[has_sigma] ** 2).mean(1)))),
        reliability=Reliability(list(RELIABILITY_LEVELS), [float(np.mean(d2 <= t)) for t in thresholds]),
    )


# --------------------------------------------------------------------------- spatial map


@dataclass(frozen=True)
class SpatialErrorMap(JsonResult):
    """Median error per square cell (see :func:`spatial_error_map`); empty lists without data."""

    cell_m: float
    #: Cell centres [nx] and [ny], metres.
    x_m: list[float] = json_field(default_factory=list)
    y_m: list[float] = json_field(default_factory=list)
    #: Samples [ny][nx] per cell.
    count: list[list[int]] = json_field(default_factory=list)
    #: Median error [ny][nx] per cell (NaN in empty cells; None after JSON conversion).
    median_m: list[list[float | None]] = json_field(default_factory=list)


def spatial_error_map(truth_m: np.ndarray, errors_m: np.ndarray, *, cell_m: float = 32.0) -> SpatialErrorMap:
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
    SpatialErrorMap
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
        return SpatialErrorMap(float(cell_m))
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
    return SpatialErrorMap(cell, (origin[0] + cell * (np.arange(nx) + 0.5)).tolist(),
                           (origin[1] + cell * (np.arange(ny) + 0.5)).tolist(),
                           count.reshape(ny, nx).tolist(), median.reshape(ny, nx).tolist())
