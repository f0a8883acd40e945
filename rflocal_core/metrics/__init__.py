"""Error statistics of position estimates (:mod:`~rflocal_core.metrics.stats`) and the
Cramér-Rao bound (:mod:`~rflocal_core.metrics.crlb`).

Plain numpy, no Streamlit, nothing of the models or runs: the evaluation of a run, which
puts these together, is :func:`rflocal_core.infer.evaluate_run`.
"""

from __future__ import annotations

from rflocal_core.metrics.crlb import (
    CRLB_CAVEAT,
    CrlbSummary,
    PathLossFit,
    bound_from_fisher,
    crlb_fisher,
    crlb_for_inputs,
    crlb_rmse_m,
    crlb_summary,
    dataset_noise,
    fit_path_loss_exponent,
)
from rflocal_core.metrics.stats import (
    EXPECTED_1SIGMA,
    EXPECTED_2SIGMA,
    SUCCESS_THRESHOLDS_M,
    BreakdownRow,
    Breakdowns,
    Calibration,
    Cdf,
    ErrorSummary,
    Reliability,
    SpatialErrorMap,
    breakdown,
    breakdowns,
    calibration,
    cdf_points,
    ellipse_d2,
    error_cdf,
    error_summary,
    group_labels,
    median_difference_se,
    reporting_nodes,
    spatial_error_map,
)

__all__ = [
    "CRLB_CAVEAT", "EXPECTED_1SIGMA", "EXPECTED_2SIGMA", "SUCCESS_THRESHOLDS_M", "BreakdownRow", "Breakdowns",
    "Calibration", "Cdf", "CrlbSummary", "ErrorSummary", "PathLossFit", "Reliability", "SpatialErrorMap",
    "bound_from_fisher", "breakdown", "breakdowns", "calibration", "cdf_points", "crlb_fisher", "crlb_for_inputs",
    "crlb_rmse_m", "crlb_summary", "dataset_noise", "ellipse_d2", "error_cdf", "error_summary", "fit_path_loss_exponent",
    "group_labels", "median_difference_se", "reporting_nodes", "spatial_error_map",
]
