"""Calibrating a run's uncertainty on its validation split: one scale for every predicted sigma.

A model's 1-sigma per axis is often too small or too large as a whole (a network trained on
its median error, kNN's neighbour spread). Temperature scaling fixes that with one number s
fitted on the validation split after training: the run predicts ``s * sigma``. Fitted at the end
of every training (baselines and networks) and kept in the run's ``config.json``
(``sigma_scale``, and ``sigma_calibration`` with the validation coverage before and after);
:class:`rflocal_core.infer.run.LoadedRun` applies it wherever a run predicts, so ``predict``,
Live Inference and Metrics all see the calibrated sigma::

    cal = fit_sigma_scale(pred.position_m - val.truth_m, pred.sigma_m)   # SigmaCalibration
    calibrated = scale_sigma(pred, cal.scale)

Runs written before have no scale and predict as before (scale 1); models without a sigma
(NaN) keep NaN.

One scale cannot fix a wrong shape. On real data (issue 15) the errors are heavy-tailed
against the sigma: after the best single scale, too many errors fall inside 1σ and too few
inside 2σ (Antwerp ensemble 46% / 75%). The default fit, ``"power"``, has a second parameter: an
exponent p on the size of each ellipse, σ' = s · σ · (g / g_ref)^(p − 1), with g the geometric
mean of the sample's two axis sigmas and g_ref their median on val (kept, so the map is fixed
after training). p > 1 widens the large ellipses more than the small ones, so the far-off
samples a model already flags fall inside 2σ; p = 1 is one scale. p is chosen on a grid, and
kept at 1 unless it brings the larger coverage gap down by at least :data:`POWER_MIN_GAIN`
(val holds a few hundred samples: a smaller gain is noise). Kept as ``sigma_power`` and
``sigma_ref_m`` next to ``sigma_scale`` in ``config.json``.

Where the map is fitted (``TrainConfig.calibration``): ``"val"`` (default) fits it on the
validation split. ``"blocks"`` (baselines) fits it on out-of-fold predictions over squares of
train + val (:func:`calibrate_blocks`; ``"auto"``: blocks of the split's squares for a dataset split
by area, else val, :func:`resolve_calibration`): the squares of ``calibration_block_m`` are dealt to
``calibration_folds`` folds, the model is fitted again without each fold's squares and predicts
them, and the map is the one whose worst fold is best (:func:`fit_sigma_folds`). Where the test area is unlike the
validation area (Duke CBRS: whole 200 m squares per split, and one val split's squares are
far easier than another's), the fit then sees the spread of errors in unseen squares over the
whole train + val area instead of one handful of val squares. The record says which:
``source`` (``"val"`` or ``"blocks"``), ``block_m`` and ``folds`` in ``sigma_calibration``.

The radii of the two ellipses (``TrainConfig.sigma_radii``): ``"gaussian"`` keeps the 2σ
ellipse at twice the 1σ one, as a Gaussian has it, and fits the map above. ``"quantile"``
(:func:`fit_sigma_quantiles`) fits the two radii apart on the same rows (val or the out-of-fold
blocks, pooled): the 1σ ellipse is scaled to hold 39.3% of them and the "2σ" ellipse, the one meant
to hold 86.5%, is ``ratio_2sigma`` = r times the 1σ one (the ratio of the two quantiles of the radius)
instead of the Gaussian's 2: a heavy-tailed radial law, P(d² ≤ t^γ) = 1 − exp(−t/2) with γ = log2 r, from
which :func:`rflocal_core.metrics.calibration` also reads its reliability levels. On Duke CBRS (issue 15,
brief D17) the errors are so heavy-tailed against every σ that no single scale puts both shares within
10 points of 39 / 86 in an unseen area, while each share alone has a wide enough window of scales;
with blocks and two radii the best model (``knn_lgbm``) is within the goal on all three test splits.
``"auto"`` (the default) fits the Gaussian radii and keeps them when both shares inside are within 10 points of
39.3% / 86.5% on the rows fitted (val), or with blocks on every fold (:func:`gaussian_holds`; each fold stands for
an unseen area, and the Gaussian fit there is the one whose worst fold is best), else fits the radii apart: a
Gaussian where the errors look like one, two radii where they are heavy-tailed (real Antwerp: the radio-map kNN's
Gaussian fit leaves 51% / 75% inside on val; Duke's kNN with blocks: 45% / 82% pooled, which the pooled check
kept, 53% / 81% on test, but one fold at 40% / 72%, so the radii are fitted apart: 40% / 85% on test). Kept as
``sigma_ratio_2`` in ``config.json`` (2 for runs written before); evaluation counts a sample
inside the 2σ ellipse when its radius is at most that ratio, and ``predict`` reports it with each sample.

Why the default fit matches coverage and not the likelihood: real errors are heavy-tailed (on
Antwerp LoRaWAN a few messages land kilometres off with a small kNN spread), and the Gaussian
maximum-likelihood scale, s² = mean(d²)/2, follows those few: it made kNN's ellipses 220 times
wider, 97% inside the 1-sigma one. ``"coverage"`` chooses s so that the fractions inside the
1-sigma and 2-sigma ellipses are both as close to 39.3% and 86.5% as one scale can bring them
(the largest of the two gaps is smallest), which is what the Metrics page checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core.errors import InvalidInputError
from rflocal_core.metrics import EXPECTED_1SIGMA, EXPECTED_2SIGMA, calibration, ellipse_d2
from rflocal_core.models.inputs import Inputs, Prediction
from rflocal_core.results import JsonResult
from rflocal_core.workspace import atomic_write_text

#: How the scale is fitted (see :func:`fit_sigma_scale`).
SIGMA_SCALE_METHODS = ("power", "coverage", "nll")
#: Exponents tried by the ``"power"`` fit (1: one scale).
POWER_GRID = tuple(round(0.1 * i, 1) for i in range(31))
#: Smallest drop of the larger coverage gap for which the ``"power"`` fit leaves p = 1.
POWER_MIN_GAIN = 0.01
#: Fewer samples than this: the ``"power"`` fit keeps p = 1 (one scale).
MIN_POWER_SAMPLES = 100

#: How the radii of the 1σ and 2σ ellipses are fitted (``TrainConfig.sigma_radii``; see the module docstring).
SIGMA_RADII = ("gaussian", "quantile", "auto")
#: ``sigma_radii`` "auto" keeps the Gaussian radii when both shares inside land within this of 39.3% and 86.5%
#: on the rows they were fitted on (the band of issue 15's uncertainty goal), else fits the radii apart.
GAUSSIAN_BAND = 0.10
#: The 2σ ellipse over the 1σ one for a Gaussian (and runs written before ``sigma_radii``).
GAUSSIAN_RATIO_2SIGMA = 2.0

#: Fewer validation samples with a sigma than this: no scale is fitted (1 is kept).
MIN_CALIBRATION_SAMPLES = 10


@dataclass(frozen=True)
class SigmaCalibration(JsonResult):
    """A fitted sigma scale and what it does on the samples it was fitted on (see :func:`fit_sigma_scale`).

    ``scale`` is None when the model gives no sigma, or fewer than
    :data:`MIN_CALIBRATION_SAMPLES` samples have one (the run then predicts unscaled).
    """

    scale: float | None
    method: str
    #: Samples with a finite error and a finite positive sigma, used for the fit.
    count: int
    inside_1sigma_before: float | None = None
    inside_2sigma_before: float | None = None
    inside_1sigma_after: float | None = None
    inside_2sigma_after: float | None = None
    #: Exponent p on the ellipse size (1: one scale; see the module docstring).
    power: float = 1.0
    #: g_ref, the median geometric-mean sigma on val (metres; None with p = 1).
    ref_m: float | None = None
    #: Fitted on: ``"val"`` (the validation split) or ``"blocks"`` (out-of-fold predictions over squares).
    source: str = "val"
    #: ``"blocks"``: the side of the squares (metres) and the number of folds (None for ``"val"``).
    block_m: float | None = None
    folds: int | None = None
    #: The 2σ ellipse (meant to hold 86.5%) over the 1σ one: 2 (Gaussian) unless ``sigma_radii`` is ``"quantile"``.
    ratio_2sigma: float = GAUSSIAN_RATIO_2SIGMA
    #: The ``sigma_radii`` asked for (None: a record written before it was kept); a recalibration asks the same.
    radii: str | None = None


def _coverage_scale(d2: np.ndarray) -> float:
    """The s minimising max(|inside 1σ − 39.3%|, |inside 2σ − 86.5%|) after scaling by s.

    The fractions only change where s² crosses some d² or d²/4, so those are the candidates
    (exact, no grid); ties go to the smallest sum of squared gaps, then the s closest to 1.
    """
    d2 = np.sort(d2)
    cand = np.unique(np.concatenate([d2, d2 / 4.0]))
    cand = cand[cand > 0]
    if len(cand) == 0:  # every error is zero: any scale is as good
        return 1.0
    # just above each crossing, the sample crossing is counted inside: that is the step's value
    s2 = np.concatenate([cand * (1 + 1e-9), [cand[0] * 0.5]])
    n = len(d2)
    gap1 = np.searchsorted(d2, s2, side="right") / n - EXPECTED_1SIGMA
    gap2 = np.searchsorted(d2, 4.0 * s2, side="right") / n - EXPECTED_2SIGMA
    worst = np.maximum(np.abs(gap1), np.abs(gap2))
    order = np.lexsort((np.abs(np.log(s2)), gap1**2 + gap2**2, np.round(worst, 12)))
    return float(math.sqrt(s2[order[0]]))


def _worst_gap(d2: np.ndarray) -> float:
    """The larger of |inside 1σ − 39.3%| and |inside 2σ − 86.5%| for squared radii ``d2``."""
    return max(abs(float(np.mean(d2 <= 1.0)) - EXPECTED_1SIGMA), abs(float(np.mean(d2 <= 4.0)) - EXPECTED_2SIGMA))


def size_factor(sigma_m: np.ndarray, power: float, ref_m: float | None) -> np.ndarray:
    """[N, 1] factor (g / ref)^(power − 1) of each sample's sigma, g = sqrt(σx σy) (1 where p = 1 or NaN)."""
    sigma_m = np.asarray(sigma_m, dtype=float)
    if power == 1.0 or ref_m is None:
        return np.ones((len(sigma_m), 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.sqrt(np.abs(sigma_m[:, 0] * sigma_m[:, 1]))
        return ((g / float(ref_m)) ** (float(power) - 1.0))[:, None]


def _power_fit(error_xy_m: np.ndarray, sigma_m: np.ndarray, has: np.ndarray) -> tuple[float, float, float | None]:
    """(scale, power, ref_m) of the ``"power"`` fit on the rows ``has`` (see the module docstring)."""
    e, s = error_xy_m[has], sigma_m[has]
    ref = float(np.median(np.sqrt(s[:, 0] * s[:, 1])))
    fits = []
    for p in POWER_GRID if len(e) >= MIN_POWER_SAMPLES else (1.0,):
        d2 = (((e / (s * size_factor(s, p, ref))) ** 2).sum(1))
        scale = _coverage_scale(d2)
        fits.append((_worst_gap(d2 / scale**2), abs(p - 1.0), p, scale))
    one = next(f for f in fits if f[2] == 1.0)
    best = min(fits)
    if best[0] > one[0] - POWER_MIN_GAIN:  # not worth a second parameter
        best = one
    return best[3], best[2], (ref if best[2] != 1.0 else None)


def fit_sigma_scale(error_xy_m: np.ndarray, sigma_m: np.ndarray, *, method: str = "power") -> SigmaCalibration:
    """Fit one scale s for the per-axis sigmas so that ``s * sigma`` is calibrated on these errors.

    Parameters
    ----------
    error_xy_m : ndarray [N, 2]
        Estimate minus truth on the validation split, metres (rows with NaN are left out).
    sigma_m : ndarray [N, 2]
        The model's 1-sigma per axis, metres; rows without a finite positive sigma are left out.
    method : str
        ``"coverage"``: s makes the fractions inside the 1σ and 2σ ellipses as close to 39.3%
        and 86.5% as one scale can (the larger gap is smallest); exact, over every step of the
        empirical coverage. ``"power"`` (default): the same with the exponent p of the module
        docstring chosen on :data:`POWER_GRID` (p = 1 unless it gains). ``"nll"``: the
        Gaussian maximum likelihood, s² = mean(d²) / 2 with d² = (ex/σx)² + (ey/σy)², closed
        form but led by outliers.

    Returns
    -------
    SigmaCalibration
        ``scale`` (None without enough samples with a sigma), ``method``, ``count``, the
        fractions inside the 1σ and 2σ ellipses before and after, ``power`` and ``ref_m``.
    """
    if method not in SIGMA_SCALE_METHODS:
        msg = f"method: expected one of {', '.join(SIGMA_SCALE_METHODS)}, got {method!r}"
        raise InvalidInputError(msg)
    d2, _, has_sigma = ellipse_d2(error_xy_m, sigma_m)
    count = int(has_sigma.sum())
    if count < MIN_CALIBRATION_SAMPLES:
        return SigmaCalibration(scale=None, method=method, count=count)
    power, ref = 1.0, None
    if method == "nll":
        scale = math.sqrt(max(float(np.mean(d2)) / 2.0, 1e-300))
    elif method == "power":
        e, s = np.asarray(error_xy_m, dtype=float), np.asarray(sigma_m, dtype=float)
        scale, power, ref = _power_fit(e, s, has_sigma)
    else:
        scale = _coverage_scale(d2)
    after = d2 / scale**2
    if power != 1.0:
        after = d2 / (scale * size_factor(np.asarray(sigma_m, dtype=float)[has_sigma], power, ref)[:, 0]) ** 2
    return SigmaCalibration(
        scale=scale, method=method, count=count, power=power, ref_m=ref,
        inside_1sigma_before=float(np.mean(d2 <= 1.0)), inside_2sigma_before=float(np.mean(d2 <= 4.0)),
        inside_1sigma_after=float(np.mean(after <= 1.0)), inside_2sigma_after=float(np.mean(after <= 4.0)),
    )


def fit_sigma_quantiles(error_xy_m: np.ndarray, sigma_m: np.ndarray) -> SigmaCalibration:
    """The two radii fitted apart: scale s and ratio r with 39.3% inside s·σ and 86.5% inside r·s·σ.

    Parameters
    ----------
    error_xy_m, sigma_m : ndarray [N, 2]
        Errors (estimate minus truth) and the model's own 1-sigma per axis, metres; rows without a
        finite error or a finite positive sigma are left out.

    Returns
    -------
    SigmaCalibration
        ``method`` ``"quantile"``, ``scale`` the 39.3% quantile of the Mahalanobis radius
        d = sqrt((ex/σx)² + (ey/σy)²), ``ratio_2sigma`` the 86.5% quantile over it (at least 1), power 1;
        ``inside_2sigma_after`` counts d ≤ ``ratio_2sigma`` · s. ``scale`` None (ratio 2) with fewer than
        :data:`MIN_CALIBRATION_SAMPLES` rows.
    """
    d2, _, has = ellipse_d2(error_xy_m, sigma_m)
    count = int(has.sum())
    if count < MIN_CALIBRATION_SAMPLES:
        return SigmaCalibration(scale=None, method="quantile", count=count)
    radius = np.sqrt(d2)
    # a zero quantile (half the errors exactly zero) would make a zero ellipse: keep a positive scale
    scale = max(float(np.quantile(radius, EXPECTED_1SIGMA)), 1e-9 * max(float(radius.max()), 1.0))
    ratio = max(float(np.quantile(radius, EXPECTED_2SIGMA)) / scale, 1.0)
    after = radius / scale
    return SigmaCalibration(
        scale=scale, method="quantile", count=count, ratio_2sigma=ratio,
        inside_1sigma_before=float(np.mean(d2 <= 1.0)), inside_2sigma_before=float(np.mean(d2 <= 4.0)),
        inside_1sigma_after=float(np.mean(after <= 1.0)), inside_2sigma_after=float(np.mean(after <= ratio)),
    )


def gaussian_holds(cal: SigmaCalibration, folds: list[tuple[float, float]] | None = None) -> bool:
    """Whether a Gaussian-radii fit puts both shares within :data:`GAUSSIAN_BAND` of 39.3% / 86.5% on its rows, or,
    given ``folds`` (the shares inside 1σ / 2σ of each fold, :func:`fold_shares`), on every fold (a fit without a
    scale, too few rows, counts as holding: the quantile fit has no more to go on)."""
    if cal.scale is None or cal.inside_1sigma_after is None or cal.inside_2sigma_after is None:
        return True
    shares = folds if folds is not None else [(cal.inside_1sigma_after, cal.inside_2sigma_after)]
    return all(abs(one - EXPECTED_1SIGMA) <= GAUSSIAN_BAND and abs(two - EXPECTED_2SIGMA) <= GAUSSIAN_BAND
               for one, two in shares)


def fold_shares(error_xy_m: np.ndarray, sigma_m: np.ndarray, fold: np.ndarray,
                cal: SigmaCalibration) -> list[tuple[float, float]]:
    """The shares (1σ, 2σ) of each fold's rows (``fold`` >= 0) inside the ellipses of the map ``cal``, as
    evaluation counts them (:func:`rflocal_core.metrics.calibration` of :func:`calibrated_sigma`; a fold without a
    row with a sigma is left out; none without a scale)."""
    if cal.scale is None:
        return []
    error, sigma, fold = np.asarray(error_xy_m, dtype=float), np.asarray(sigma_m, dtype=float), np.asarray(fold)
    out = []
    for f in np.unique(fold[fold >= 0]):
        rows = fold == f
        c = calibration(error[rows], calibrated_sigma(sigma[rows], cal.scale, power=cal.power, ref_m=cal.ref_m),
                        ratio_2sigma=cal.ratio_2sigma)
        if c.available:
            out.append((float(c.inside_1sigma), float(c.inside_2sigma)))
    return out


def fit_radii(error_xy_m: np.ndarray, sigma_m: np.ndarray, radii: str,
              gaussian: Callable[[], SigmaCalibration], fold: np.ndarray | None = None) -> SigmaCalibration:
    """The map ``radii`` asks for on these rows: ``gaussian()`` (the Gaussian-radii fit of the caller),
    :func:`fit_sigma_quantiles`, or ``"auto"``: the first unless it misses the band (:func:`gaussian_holds`) on the
    rows, or with ``fold`` [N] (out-of-fold rows: each fold an unseen area) on any one fold."""
    if check_sigma_radii(radii) == "quantile":
        return replace(fit_sigma_quantiles(error_xy_m, sigma_m), radii=radii)
    cal = gaussian()
    if radii != "auto":
        return replace(cal, radii=radii)
    folds = None if fold is None else fold_shares(error_xy_m, sigma_m, fold, cal)  # asked only for "auto"
    if not gaussian_holds(cal, folds):
        cal = fit_sigma_quantiles(error_xy_m, sigma_m)
    return replace(cal, radii=radii)


def check_sigma_radii(radii: str) -> str:
    """``radii`` if it is one of :data:`SIGMA_RADII`, else a clear error naming the field."""
    if radii not in SIGMA_RADII:
        msg = f"sigma_radii: expected one of {', '.join(SIGMA_RADII)}, got {radii!r}"
        raise InvalidInputError(msg)
    return radii


def calibrate_prediction(pred: Prediction, x: Inputs, *, method: str = "power",
                         radii: str = "gaussian") -> SigmaCalibration:
    """:func:`fit_sigma_scale` of a prediction of ``x`` (``radii`` ``"quantile"``: :func:`fit_sigma_quantiles`;
    ``"auto"``: the first unless it misses the band, :func:`gaussian_holds`)."""
    error = pred.position_m - x.truth_m
    return fit_radii(error, pred.sigma_m, radii, lambda: fit_sigma_scale(error, pred.sigma_m, method=method))


def scale_sigma(pred: Prediction, scale: float | None, *, power: float = 1.0, ref_m: float | None = None) -> Prediction:
    """``pred`` with its sigma times ``scale`` (and the size factor of ``power``, ``ref_m``; NaN stays NaN).

    None or 1 with ``power`` 1: ``pred`` itself.
    """
    if (scale is None or scale == 1.0) and (power == 1.0 or ref_m is None):
        return pred
    return replace(pred, sigma_m=calibrated_sigma(pred.sigma_m, scale, power=power, ref_m=ref_m))


def calibrated_sigma(sigma_m: np.ndarray, scale: float | None, *, power: float = 1.0,
                     ref_m: float | None = None) -> np.ndarray:
    """[N, 2] the model's sigma times ``scale`` and the size factor of ``power``, ``ref_m`` (NaN stays NaN)."""
    sigma = np.asarray(sigma_m, dtype=float)
    return sigma * (1.0 if scale is None else float(scale)) * size_factor(sigma, power, ref_m)


def unscale_sigma(sigma_m: np.ndarray, scale: float | None, *, power: float = 1.0,
                  ref_m: float | None = None) -> np.ndarray:
    """The model's own sigma [N, 2] from a calibrated one (the inverse of :func:`scale_sigma`)."""
    if ref_m is not None and not power > 0:
        # power 0 maps every sigma to one size: the model's own sigma cannot be recovered from it
        msg = f"sigma_power: the model's own sigma is recoverable for a power > 0, got {power!r}"
        raise ValueError(msg)
    sigma = np.asarray(sigma_m, dtype=float) / (1.0 if scale is None else float(scale))
    if power == 1.0 or ref_m is None:
        return sigma
    # g_after / s = ref · (g / ref)^p  =>  g = ref · (g_after / (s · ref))^(1/p); the aspect ratio is kept
    with np.errstate(invalid="ignore", divide="ignore"):
        g_after = np.sqrt(np.abs(sigma[:, 0] * sigma[:, 1]))
        g = float(ref_m) * (g_after / float(ref_m)) ** (1.0 / float(power))
        return sigma * (g / g_after)[:, None]


def sigma_map_of(config: dict[str, Any]) -> dict[str, Any]:
    """``{"scale", "power", "ref_m", "ratio_2sigma"}`` of a run's ``config.json`` (1, 1, None, 2 for older runs)."""
    power, ref = config.get("sigma_power", 1.0), config.get("sigma_ref_m")
    ok = isinstance(power, (int, float)) and math.isfinite(power) and power >= 0 and (
        ref is None or (isinstance(ref, (int, float)) and math.isfinite(ref) and ref > 0))
    if not ok:
        msg = (f"sigma_power, sigma_ref_m: expected a number >= 0 and a positive number (or null) in the run's "
               f"config.json, got {power!r}, {ref!r}")
        raise InvalidInputError(msg)
    ratio = config.get("sigma_ratio_2", GAUSSIAN_RATIO_2SIGMA)
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 1):
        msg = (f"sigma_ratio_2: expected a number >= 1 (the 2σ ellipse over the 1σ one) in the run's config.json, "
               f"got {ratio!r}")
        raise InvalidInputError(msg)
    return {"scale": sigma_scale_of(config), "power": float(power), "ref_m": None if ref is None else float(ref),
            "ratio_2sigma": float(ratio)}


def sigma_scale_of(config: dict[str, Any]) -> float:
    """The sigma scale of a run's ``config.json`` (1 for runs written before scales were kept)."""
    value = config.get("sigma_scale")
    if value is None:
        return 1.0
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        msg = f"sigma_scale: expected a positive number in the run's config.json, got {value!r}"
        raise InvalidInputError(msg)
    return scale


def store_calibration(path: Path, cal: SigmaCalibration) -> None:
    """Keep ``cal`` in the run folder's ``config.json`` (``sigma_scale`` and ``sigma_calibration``)."""
    file = Path(path) / "config.json"
    config = json.loads(file.read_text(encoding="utf-8"))
    config["sigma_scale"] = cal.scale
    config["sigma_power"] = cal.power
    config["sigma_ref_m"] = cal.ref_m
    config["sigma_ratio_2"] = cal.ratio_2sigma
    config["sigma_calibration"] = cal.to_json()
    atomic_write_text(file, json.dumps(config, indent=2))


def calibrate_run_folder(path: Path, pred: Prediction, val: Inputs, *, radii: str = "gaussian") -> SigmaCalibration:
    """Fit a run's sigma map (``radii``: see the module docstring) on its val prediction; keep it in its config.json."""
    cal = calibrate_prediction(pred, val, radii=radii)
    store_calibration(path, cal)
    return cal


#: Where a run's sigma map is fitted (``TrainConfig.calibration``; see the module docstring).
CALIBRATION_SOURCES = ("val", "blocks", "auto")


def resolve_calibration(calibration: str, block_m: float, split: dict[str, Any] | None) -> tuple[str, float]:
    """(``"val"`` or ``"blocks"``, square side in metres) for a run asking ``calibration``.

    ``"auto"`` calibrates as the dataset was split: on blocks of the split's own squares for a
    dataset split by area (``split`` = its ``input.split`` record, kind ``"spatial blocks"``), on
    val otherwise (a random split: val looks like test, and held-out squares would be harder
    than test; Antwerp: 64% inside 1σ on blocks; a split by track: val holds whole tracks, as
    test does). ``"val"`` and ``"blocks"`` are kept as asked.
    """
    if calibration != "auto":
        return calibration, float(block_m)
    if isinstance(split, dict) and split.get("kind") == "spatial blocks" and split.get("block_m"):
        return "blocks", float(split["block_m"])
    return "val", float(block_m)


def block_folds(pos_m: np.ndarray, *, block_m: float, folds: int, seed: int = 0) -> np.ndarray:
    """Fold [N] of each position: squares of ``block_m`` dealt at random (``seed``) to ``folds`` folds.

    The squares are shuffled and dealt in turn, so every fold holds about as many squares; a
    position without a finite value gets fold -1 (never held out). Fewer squares than ``folds``:
    one fold per square.

    Raises
    ------
    InvalidInputError
        ``block_m`` is not positive, ``folds`` is under 2, or the positions fall in fewer than 2 squares.
    """
    pos = np.asarray(pos_m, dtype=float)
    if not (math.isfinite(block_m) and block_m > 0) or int(folds) < 2:
        msg = f"calibration_block_m, calibration_folds: expected a positive size and at least 2 folds, got {block_m!r}, {folds!r}"
        raise InvalidInputError(msg)
    ok = np.isfinite(pos).all(1)
    cell = np.floor(pos[ok] / float(block_m)).astype(np.int64)
    squares, inv = np.unique(cell, axis=0, return_inverse=True)
    if len(squares) < 2:
        msg = (f"calibration_block_m: the positions fall in {len(squares)} square(s) of {block_m:g} m; out-of-fold "
               "calibration needs at least 2: choose smaller squares, or calibration 'val'")
        raise InvalidInputError(msg)
    deal = np.random.default_rng(seed).permutation(len(squares)) % min(int(folds), len(squares))
    out = np.full(len(pos), -1, dtype=np.int64)
    out[ok] = deal[np.asarray(inv).reshape(-1)]
    return out


def out_of_block(make_model: Callable[[], Any], train: Inputs, val: Inputs, *, block_m: float, folds: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold errors [N, 2], sigmas [N, 2] and folds [N] of the samples of ``train`` then ``val``.

    For each fold of :func:`block_folds` (over the positions of train and val together), a fresh
    model from ``make_model()`` is fitted on train and tuned on val without that fold's squares,
    and predicts the fold's samples of both (a fold that holds every val sample leaves val whole
    for the tuning). Rows never held out (no position) stay NaN.
    """
    fold = block_folds(np.concatenate([train.truth_m, val.truth_m]), block_m=block_m, folds=folds, seed=seed)
    f_tr, f_va = fold[: len(train)], fold[len(train):]
    err = np.full((len(fold), 2), np.nan)
    sig = np.full((len(fold), 2), np.nan)
    for f in range(int(fold.max()) + 1):
        held_tr, held_va = f_tr == f, f_va == f
        tune = val.subset(~held_va) if (~held_va).any() else val
        model = make_model().fit(train.subset(~held_tr), tune)
        for part, held, offset in ((train, held_tr, 0), (val, held_va, len(train))):
            if held.any():
                x = part.subset(held)
                pred = model.predict(x)
                rows = np.flatnonzero(held) + offset
                err[rows], sig[rows] = pred.position_m - x.truth_m, pred.sigma_m
    return err, sig, fold


#: Scales tried by the fold-robust fit (:func:`fit_sigma_folds`), as multiples of the median radius.
FOLD_SCALE_GRID = tuple(float(v) for v in np.exp(np.linspace(np.log(0.05), np.log(20.0), 241)))


def _fold_worst_gaps(d2: np.ndarray, fold: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """[len(scales)] the largest over the folds of each fold's worse coverage gap after scaling by each scale."""
    worst = np.zeros(len(scales))
    s2 = np.asarray(scales) ** 2
    for f in np.unique(fold):
        df = np.sort(d2[fold == f])
        inside1 = np.searchsorted(df, s2, side="right") / len(df)
        inside2 = np.searchsorted(df, 4.0 * s2, side="right") / len(df)
        worst = np.maximum(worst, np.maximum(np.abs(inside1 - EXPECTED_1SIGMA), np.abs(inside2 - EXPECTED_2SIGMA)))
    return worst


def fit_sigma_folds(error_xy_m: np.ndarray, sigma_m: np.ndarray, fold: np.ndarray) -> SigmaCalibration:
    """The power map (scale s, exponent p) whose worst fold is best: min over (s, p) of max over folds of the gap.

    Each fold of squares stands for an unseen area; one pooled fit lets the many easy squares
    outvote the few hard ones, and a test area like those is then far off (Duke CBRS). Here the
    chosen map keeps every fold's larger coverage gap (|inside 1σ − 39.3%|, |inside 2σ − 86.5%|)
    as small as it can. p stays 1 unless it lowers that worst gap by :data:`POWER_MIN_GAIN`; with
    under :data:`MIN_POWER_SAMPLES` samples only the scale is fitted. The ``inside_*`` fields are
    pooled over every fold.
    """
    d2_all, _, has = ellipse_d2(error_xy_m, sigma_m)
    count = int(has.sum())
    if count < MIN_CALIBRATION_SAMPLES:
        return SigmaCalibration(scale=None, method="power", count=count)
    e, s, f = np.asarray(error_xy_m, dtype=float)[has], np.asarray(sigma_m, dtype=float)[has], np.asarray(fold)[has]
    ref = float(np.median(np.sqrt(s[:, 0] * s[:, 1])))
    fits = []
    for p in POWER_GRID if count >= MIN_POWER_SAMPLES else (1.0,):
        d2 = ((e / (s * size_factor(s, p, ref))) ** 2).sum(1)
        scales = math.sqrt(max(float(np.median(d2)), 1e-12)) * np.asarray(FOLD_SCALE_GRID)
        worst = _fold_worst_gaps(d2, f, scales)
        i = int(np.argmin(worst))  # first of equals: the smallest scale
        fits.append((float(worst[i]), abs(p - 1.0), p, float(scales[i])))
    one = next(fit for fit in fits if fit[2] == 1.0)
    best = min(fits)
    if best[0] > one[0] - POWER_MIN_GAIN:
        best = one
    scale, power = best[3], best[2]
    ref_m = ref if power != 1.0 else None
    after = d2_all / (scale * size_factor(np.asarray(sigma_m, dtype=float)[has], power, ref_m)[:, 0]) ** 2
    return SigmaCalibration(
        scale=scale, method="power", count=count, power=power, ref_m=ref_m,
        inside_1sigma_before=float(np.mean(d2_all <= 1.0)), inside_2sigma_before=float(np.mean(d2_all <= 4.0)),
        inside_1sigma_after=float(np.mean(after <= 1.0)), inside_2sigma_after=float(np.mean(after <= 4.0)),
    )


def calibrate_blocks(make_model: Callable[[], Any], train: Inputs, val: Inputs, *, block_m: float, folds: int,
                     seed: int = 0, radii: str = "gaussian") -> SigmaCalibration:
    """:func:`fit_sigma_folds` (``radii`` ``"quantile"``: :func:`fit_sigma_quantiles`, pooled; ``"auto"``: the first
    unless it misses the band on any one fold, :func:`fit_radii`) on the out-of-fold predictions of
    :func:`out_of_block` (``source`` ``"blocks"``)."""
    check_sigma_radii(radii)  # before the folds are fitted
    err, sig, fold = out_of_block(make_model, train, val, block_m=block_m, folds=folds, seed=seed)
    cal = fit_radii(err, sig, radii, lambda: fit_sigma_folds(err, sig, fold), fold)
    return replace(cal, source="blocks", block_m=float(block_m), folds=int(folds))
