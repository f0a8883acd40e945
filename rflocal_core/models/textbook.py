"""Textbook position solvers: the references the geometric baselines are measured against (issue 19).

Each is the plain least-squares fix a reader would write from a textbook, with scipy's defaults
and nothing learned, so that "within 1.2x of a textbook solver on the same samples" compares a
baseline with an independent solution of the same equations::

    rows, fixes = textbook_fixes(x, "toa")          # samples with >= 3 ToA reports, their fixes [R, 2]
    textbook_toa(nodes_xyz, ranges_m)               # one sample: soft-L1 ranges from the nearest node

- ToA: soft-L1 range residuals (scale 1 m), 3-D from each node's height to a 1.5 m device,
  started at the node with the shortest range (plus 0.5 m, off the node's singular point).
- AoA: soft-L1 wrapped bearing residuals (degrees), started at the mean of the nodes.
- Log-distance: least squares of ``rss - tx = g0 - 10 n log10(d)`` with a given law, started at
  the strongest node.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from rflocal_core.constants import C_M_PER_NS
from rflocal_core.errors import InvalidInputError
from rflocal_core.models.inputs import Inputs

#: Device height (m) of the textbook ToA and log-distance solvers.
DEVICE_Z_M = 1.5
#: Least reports per sample each solver needs.
LEAST_REPORTS = {"toa": 3, "aoa": 2, "rss": 2}
#: Off the start node by this much (m): the range residual's gradient is undefined at a node.
START_OFFSET_M = 0.5


def textbook_toa(nodes: np.ndarray, ranges_m: np.ndarray, *, device_z_m: float = DEVICE_Z_M) -> np.ndarray:
    """Soft-L1 range least squares from the nearest node. ``nodes`` [K, 3] (m), ``ranges_m`` [K]; returns [2]."""
    def res(p: np.ndarray) -> np.ndarray:
        return np.sqrt(((p - nodes[:, :2]) ** 2).sum(1) + (nodes[:, 2] - device_z_m) ** 2) - ranges_m

    return least_squares(res, nodes[np.argmin(ranges_m), :2] + START_OFFSET_M, loss="soft_l1").x


def textbook_aoa(nodes: np.ndarray, bearings_deg: np.ndarray) -> np.ndarray:
    """Soft-L1 least squares of the wrapped bearing residuals (degrees, clockwise from north) from the node mean."""
    def res(p: np.ndarray) -> np.ndarray:
        pred = np.degrees(np.arctan2(p[0] - nodes[:, 0], p[1] - nodes[:, 1]))
        return (pred - bearings_deg + 180) % 360 - 180

    return least_squares(res, nodes[:, :2].mean(0) + START_OFFSET_M, loss="soft_l1").x


def textbook_log_distance(nodes: np.ndarray, gain_db: np.ndarray, *, g0_db: float, n: float,
                          device_z_m: float = DEVICE_Z_M) -> np.ndarray:
    """Least squares of ``gain_db = g0_db - 10 n log10(d)`` (``gain_db`` = RSS - tx power) from the strongest node."""
    def res(p: np.ndarray) -> np.ndarray:
        d = np.sqrt(((p - nodes[:, :2]) ** 2).sum(1) + (nodes[:, 2] - device_z_m) ** 2)
        return gain_db - (g0_db - 10 * n * np.log10(np.maximum(d, 1.0)))

    return least_squares(res, nodes[np.argmax(gain_db), :2] + START_OFFSET_M).x


def textbook_fixes(x: Inputs, kind: str, *, device_z_m: float = DEVICE_Z_M, g0_db: float | None = None,
                   n: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The samples of ``x`` with enough reports of ``kind`` and their textbook fixes.

    Parameters
    ----------
    kind : str
        ``toa`` (>= 3 ToA reports), ``aoa`` (>= 2 bearings) or ``rss`` (>= 2 RSS reports; needs
        ``g0_db`` and ``n``, the path-loss law to solve with), each from nodes of known position.

    Returns
    -------
    rows : ndarray [R] int
        Rows of ``x`` solved.
    fixes : ndarray [R, 2]
        Positions (m) in ``x``'s scene coordinates.
    """
    if kind not in LEAST_REPORTS:
        msg = f"kind: expected one of {', '.join(LEAST_REPORTS)}, got {kind!r}"
        raise InvalidInputError(msg)
    if kind == "rss" and (g0_db is None or n is None):
        msg = f"g0_db, n: the rss solver needs a path-loss law, got g0_db={g0_db!r}, n={n!r}"
        raise InvalidInputError(msg)
    values = {"toa": x.toa_ns, "aoa": x.aoa_deg, "rss": x.rss_dbm}[kind]
    ok = np.isfinite(values) & x.known_nodes
    rows = np.flatnonzero(ok.sum(1) >= LEAST_REPORTS[kind])
    fixes = np.zeros((len(rows), 2))
    for j, i in enumerate(rows):
        nodes, v = x.node_pos_m[i, ok[i]], values[i, ok[i]]
        if kind == "toa":
            fixes[j] = textbook_toa(nodes, v * C_M_PER_NS, device_z_m=device_z_m)
        elif kind == "aoa":
            fixes[j] = textbook_aoa(nodes, v)
        else:
            fixes[j] = textbook_log_distance(nodes, v - x.tx_power_dbm[i, ok[i]], g0_db=float(g0_db),
                                             n=float(n), device_z_m=device_z_m)
    return rows, fixes
