"""Error statistics of position estimates."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Success-rate thresholds, metres.
SUCCESS_THRESHOLDS_M = (5.0, 10.0, 20.0, 50.0, 100.0)


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
