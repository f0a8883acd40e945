"""Where a map network's window goes: a coarse first position of each sample, from its own reports.

The ``window`` frame (issue 19) feeds ``mapformer`` and ``locheatmap`` a window of fixed metres
(``cells`` x ``cell_m``) cut from the scene's maps around each sample, so a cell is the same
size in every scene, whatever its extent. The window is centred on a first estimate that needs
nothing learned and nothing of the training scenes, only the sample's reports and its nodes'
positions (so it is the same in a scene never seen):

1. ToA (three or more ranges from nodes of known position): robust range least squares (soft-L1
   IRLS, Gauss-Newton with Levenberg damping) from the RSS-weighted centroid and from the node
   with the shortest range, the lower cost wins. Node heights against a
   :data:`DEVICE_Z_M` device: ranges are 3D.
2. Else AoA (two or more bearings): the least-squares crossing of the bearing lines.
3. Else the RSS-weighted centroid of the reporting nodes (amplitude weights, the strongest
   node dominates), or their plain centroid without RSS.

A fix further than :data:`MAX_FIX_DISTANCE_FACTOR` times the nodes' spread (plus
:data:`MAX_FIX_SLACK_M`) from the centroid is dropped for the centroid (a diverged solve)::

    xy, ok = coarse_position(x)      # [N, 2] m, [N] bool (False: no reporting node of known position)
"""

from __future__ import annotations

import numpy as np

from rflocal_core.constants import C_M_PER_NS
from rflocal_core.models.inputs import Inputs

#: Device height (m) the ToA ranges are flattened with (a handset; the geometric baselines' default).
DEVICE_Z_M = 1.5
#: Soft-L1 scale (m) of the range residuals: NLoS excess beyond it counts linearly.
TOA_SCALE_M = 20.0
#: Gauss-Newton iterations of the range solve.
TOA_ITERATIONS = 30
#: A fix is kept when within this times the nodes' spread (plus MAX_FIX_SLACK_M) of their centroid.
MAX_FIX_DISTANCE_FACTOR, MAX_FIX_SLACK_M = 2.0, 300.0


def _weighted_centroid(xy: np.ndarray, use: np.ndarray, rss: np.ndarray) -> np.ndarray:
    """[N, 2] RSS amplitude-weighted centroid of the used nodes (plain centroid without RSS)."""
    has_rss = use & np.isfinite(rss)
    top = np.where(has_rss, rss, -np.inf).max(1, initial=-np.inf)
    w = np.where(has_rss, 10.0 ** ((np.nan_to_num(rss) - np.where(np.isfinite(top), top, 0.0)[:, None]) / 20.0), 0.0)
    w = np.where(has_rss.any(1)[:, None], w, use.astype(float))
    return (w[..., None] * xy).sum(1) / np.maximum(w.sum(1), 1e-12)[:, None]


def _range_cost(p: np.ndarray, xy: np.ndarray, rh: np.ndarray, on: np.ndarray) -> np.ndarray:
    r = np.hypot(*(p[:, None] - xy).transpose(2, 0, 1)) - rh
    return np.where(on, 2 * TOA_SCALE_M**2 * (np.sqrt(1 + (r / TOA_SCALE_M) ** 2) - 1), 0.0).sum(1)


def _range_solve(p: np.ndarray, xy: np.ndarray, rh: np.ndarray, on: np.ndarray) -> np.ndarray:
    """IRLS Gauss-Newton of the soft-L1 horizontal range residuals, from ``p`` [N, 2]; damped steps."""
    lam = np.full(len(p), 1e-3)
    cost = _range_cost(p, xy, rh, on)
    for _ in range(TOA_ITERATIONS):
        d = p[:, None] - xy  # [N, S, 2]
        dist = np.maximum(np.hypot(d[..., 0], d[..., 1]), 1e-3)
        r = dist - rh
        w = np.where(on, 1.0 / np.sqrt(1 + (r / TOA_SCALE_M) ** 2), 0.0)  # soft-L1 IRLS weights
        jac = d / dist[..., None]
        a = np.einsum("ns,nsi,nsj->nij", w, jac, jac) + lam[:, None, None] * np.eye(2)
        g = np.einsum("ns,nsi,ns->ni", w, jac, r)
        det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
        det = np.where(np.abs(det) > 1e-12, det, 1e-12)
        step = np.stack([a[:, 1, 1] * g[:, 0] - a[:, 0, 1] * g[:, 1], a[:, 0, 0] * g[:, 1] - a[:, 1, 0] * g[:, 0]], 1)
        trial = p - step / det[:, None]
        new = _range_cost(trial, xy, rh, on)
        better = np.isfinite(new) & (new <= cost)
        p = np.where(better[:, None], trial, p)
        cost = np.where(better, new, cost)
        lam = np.where(better, lam * 0.3, lam * 10.0)
    return p


def _toa_fix(x: Inputs, xy: np.ndarray, use: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, 2] range fix and [N] where there is one (three or more ranges)."""
    on = use & np.isfinite(x.toa_ns)
    ok = on.sum(1) >= 3
    if not ok.any():
        return start, ok
    z = np.nan_to_num(x.node_pos_m[..., 2], nan=DEVICE_Z_M)
    rng = np.nan_to_num(x.toa_ns) * C_M_PER_NS
    rh = np.sqrt(np.maximum(rng**2 - (z - DEVICE_Z_M) ** 2, 1.0))
    sub = (ok,)
    nearest = np.take_along_axis(xy, np.where(on, rh, np.inf).argmin(1)[:, None, None], 1)[:, 0]
    toward = start - nearest
    nearest = nearest + toward / np.maximum(np.hypot(*toward.T), 1e-9)[:, None]  # 1 m off the node: a gradient
    fixes = [_range_solve(p[sub], xy[sub], rh[sub], on[sub]) for p in (start, nearest)]
    costs = [_range_cost(f, xy[sub], rh[sub], on[sub]) for f in fixes]
    out = start.copy()
    out[sub] = np.where((costs[0] <= costs[1])[:, None], fixes[0], fixes[1])
    return out, ok


def _aoa_fix(x: Inputs, xy: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, 2] least-squares crossing of the bearing lines and [N] where it is well posed."""
    on = use & np.isfinite(x.aoa_deg)
    theta = np.deg2rad(np.nan_to_num(x.aoa_deg))
    normal = np.stack([np.cos(theta), -np.sin(theta)], -1) * on[..., None]  # across the compass bearing
    a = np.einsum("nsi,nsj->nij", normal, normal)
    b = np.einsum("nsi,nsj,nsj->ni", normal, normal, xy)
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    ok = (on.sum(1) >= 2) & (det > 1e-3)  # crossing lines (not parallel)
    safe = np.where(ok, det, 1.0)
    p = np.stack([a[:, 1, 1] * b[:, 0] - a[:, 0, 1] * b[:, 1], a[:, 0, 0] * b[:, 1] - a[:, 1, 0] * b[:, 0]], 1)
    return p / safe[:, None], ok


def coarse_position(x: Inputs) -> tuple[np.ndarray, np.ndarray]:
    """A first position [N, 2] (m) of each sample from its reports (see the module doc), and [N] where it has one.

    Samples without a reporting node of known position get NaN and False.
    """
    heard = np.isfinite(x.rss_dbm) | np.isfinite(x.toa_ns) | np.isfinite(x.aoa_deg)
    use = x.node_mask & x.known_nodes & heard
    has = use.any(1)
    xy = np.where(use[..., None], np.nan_to_num(x.node_pos_m[..., :2]), 0.0)
    centroid = _weighted_centroid(xy, use, x.rss_dbm)
    plain = xy.sum(1) / np.maximum(use.sum(1), 1)[:, None]
    spread = np.where(use, np.hypot(*(xy - plain[:, None]).transpose(2, 0, 1)), 0.0).max(1, initial=0.0)
    toa, toa_ok = _toa_fix(x, xy, use, centroid)
    aoa, aoa_ok = _aoa_fix(x, xy, use)
    fix = np.where(toa_ok[:, None], toa, np.where(aoa_ok[:, None], aoa, centroid))
    far = np.hypot(*(fix - plain).T) > MAX_FIX_DISTANCE_FACTOR * spread + MAX_FIX_SLACK_M
    fix = np.where((far | ~np.isfinite(fix).all(1))[:, None], centroid, fix)
    return np.where(has[:, None], fix, np.nan), has
