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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core.errors import InvalidInputError
from rflocal_core.metrics import EXPECTED_1SIGMA, EXPECTED_2SIGMA, ellipse_d2
from rflocal_core.models.inputs import Inputs, Prediction
from rflocal_core.results import JsonResult
from rflocal_core.workspace import atomic_write_text

#: How the scale is fitted (see :func:`fit_sigma_scale`).
SIGMA_SCALE_METHODS = ("coverage", "nll")

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


def fit_sigma_scale(error_xy_m: np.ndarray, sigma_m: np.ndarray, *, method: str = "coverage") -> SigmaCalibration:
    """Fit one scale s for the per-axis sigmas so that ``s * sigma`` is calibrated on these errors.

    Parameters
    ----------
    error_xy_m : ndarray [N, 2]
        Estimate minus truth on the validation split, metres (rows with NaN are left out).
    sigma_m : ndarray [N, 2]
        The model's 1-sigma per axis, metres; rows without a finite positive sigma are left out.
    method : str
        ``"coverage"`` (default): s makes the fractions inside the 1σ and 2σ ellipses as close
        to 39.3% and 86.5% as one scale can (the larger gap is smallest); exact, over every
        step of the empirical coverage. ``"nll"``: the Gaussian maximum likelihood,
        s² = mean(d²) / 2 with d² = (ex/σx)² + (ey/σy)², closed form but led by outliers.

    Returns
    -------
    SigmaCalibration
        ``scale`` (None without enough samples with a sigma), ``method``, ``count``, and the
        fractions inside the 1σ and 2σ ellipses before and after scaling.
    """
    if method not in SIGMA_SCALE_METHODS:
        msg = f"method: expected one of {', '.join(SIGMA_SCALE_METHODS)}, got {method!r}"
        raise InvalidInputError(msg)
    d2, _, has_sigma = ellipse_d2(error_xy_m, sigma_m)
    count = int(has_sigma.sum())
    if count < MIN_CALIBRATION_SAMPLES:
        return SigmaCalibration(scale=None, method=method, count=count)
    if method == "nll":
        scale = math.sqrt(max(float(np.mean(d2)) / 2.0, 1e-300))
    else:
        scale = _coverage_scale(d2)
    after = d2 / scale**2
    return SigmaCalibration(
        scale=scale, method=method, count=count,
        inside_1sigma_before=float(np.mean(d2 <= 1.0)), inside_2sigma_before=float(np.mean(d2 <= 4.0)),
        inside_1sigma_after=float(np.mean(after <= 1.0)), inside_2sigma_after=float(np.mean(after <= 4.0)),
    )


def calibrate_prediction(pred: Prediction, x: Inputs, *, method: str = "coverage") -> SigmaCalibration:
    """:func:`fit_sigma_scale` of a prediction of ``x`` (its truths)."""
    return fit_sigma_scale(pred.position_m - x.truth_m, pred.sigma_m, method=method)


def scale_sigma(pred: Prediction, scale: float | None) -> Prediction:
    """``pred`` with its sigma multiplied by ``scale`` (None or 1: ``pred`` itself; NaN stays NaN)."""
    if scale is None or scale == 1.0:
        return pred
    return replace(pred, sigma_m=np.asarray(pred.sigma_m, dtype=float) * float(scale))


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
    config["sigma_calibration"] = cal.to_json()
    atomic_write_text(file, json.dumps(config, indent=2))


def calibrate_run_folder(path: Path, pred: Prediction, val: Inputs) -> SigmaCalibration:
    """Fit the sigma scale of a run on its validation prediction and keep it in ``path/config.json``."""
    cal = calibrate_prediction(pred, val)
    store_calibration(path, cal)
    return cal
