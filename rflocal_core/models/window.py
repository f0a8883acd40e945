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

Where the sample's scene has radio maps (always, for the map networks), :func:`map_position` is
used instead: physics map matching with every measured quantity over the whole scene at a coarse
cell, which NLoS ToA misleads far less (ray-traced 768 m city never seen: median 22 m against
138 m, 2% against 24% of first estimates more than 256 m off; bench_any_city_networks.py --raytraced).
With ``fine_m`` (the window frame's default ``window_centre="prior"``) a second stage searches the best
coarse cells again on the window's own ``fine_m`` lattice (:func:`lattice_phase`) with mapformer's
physics prior, so the window is centred on that prior's argmax::

    xy, ok = map_position(x, fine_m=4.0)   # [N, 2] m on the 4 m lattice, [N] bool (False: no maps)

With mapformer's ``prior_timing="line_or_maps"`` that prior's ToA and AoA terms are each the even mixture of the
straight lines and the scene's ray-traced ToA/AoA maps, and so are the search's (``prior_timing=``; the block bounds
too, :class:`BlockTiming`), so the window is centred on the argmax of the prior the network reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rflocal_core.constants import C_M_PER_NS
from rflocal_core.errors import InvalidInputError
from rflocal_core.models.inputs import Inputs

#: mapformer's ``prior_timing`` (its option's choices, and the window centring's): the ToA/AoA terms of the prior
#: against straight lines node -> point, or each the even mixture of that and the ray-traced ToA/AoA maps.
#: ``line_or_pooled_maps``: as ``line_or_maps``, each slot's map terms mixed over the map cells within
#: :data:`MAP_POOL_CELLS` of the point (the maps are traced every 16 m and interpolated: on Paris a report is more
#: than 8 m shorter than the map's first path at its true 4 m cell for 10% of the reports, 3% at the best of the 3x3
#: cells around it; brief A26, README "Any city").
PRIOR_TIMINGS = ("line", "line_or_maps", "line_or_pooled_maps")
#: Cells (of the lattice the prior is evaluated on) each side over which ``line_or_pooled_maps`` mixes a map term.
MAP_POOL_CELLS = 1
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


#: Cell (m) of the scene-wide physics search of :func:`map_position`.
MAP_SEARCH_CELL_M = 16.0
#: Samples per chunk of the search (memory: chunk x slots x cells).
SEARCH_CHUNK = 64
#: Coarse cells of the first stage kept as candidates for the fine stage of :func:`map_position` (``fine_m``).
SEARCH_CANDIDATES = 24
#: Side (m) of the blocks of the exact search (:func:`_exact_search`, the default ``exact``): the bound over
#: every block against the point-by-point search of the best few. On 64 held-out samples of Aguascalientes
#: (1.7 km, bench_any_city.py's workspace, 4 m lattice) 16 m blocks took 8-10 s (the bound over 9,720 blocks),
#: 32 m 0.7-1.2 s, 64 m 3.8 s (24 blocks of 256 points searched), all with one round.
EXACT_BLOCK_M = 32.0


@dataclass(frozen=True)
class Spreads:
    """Spreads of the terms of the physics search: RSS against the maps (dB), line-of-sight ToA (m), AoA
    inliers (deg); NLoS ToA excess scale (m); no ray where a node reports (nats); probability of an AoA
    inlier; a cell inside a building footprint (nats, 0: no such term)."""

    rss_db: float
    toa_m: float
    aoa_deg: float
    nlos_m: float = 40.0
    no_ray_nats: float = 8.0
    aoa_inlier: float = 0.6
    indoor_nats: float = 0.0


#: The coarse search's spreads: wide enough for a 16 m cell (a target up to 11 m from its centre).
SEARCH = Spreads(8.0, 10.0, 10.0)
#: mapformer's physics prior (its default spreads and footprint penalty, ``models.mapformer``): the fine
#: stage, whose argmax is then the prior's own argmax on the window lattice.
PRIOR_SPREADS = Spreads(6.5, 4.0, 7.0, indoor_nats=3.0)


def toa_term(e: np.ndarray, sp: Spreads) -> np.ndarray:
    """The ToA term of one report at a range excess ``e`` (m; reported range less the node's distance, or less the
    map's first path): line of sight ``N(0, toa_m)`` or an NLoS excess (exponential, ``nlos_m``), even odds, as
    mapformer's :func:`~rflocal_core.models.mapformer.toa_loglik_at`. Unimodal, at its best at ``e = 0``."""
    los = np.log(0.5) - 0.5 * (e / sp.toa_m) ** 2 - np.log(sp.toa_m * np.sqrt(2 * np.pi))
    nlos = np.log(0.5 / sp.nlos_m) - np.maximum(e, 0) / sp.nlos_m - 0.5 * (np.minimum(e, 0) / sp.toa_m) ** 2
    return np.logaddexp(los, nlos)


def aoa_term(cos_d: np.ndarray, sp: Spreads) -> np.ndarray:
    """The AoA term of one bearing at the cosine ``cos_d`` of its angle off the node's bearing to the point (or off
    the map's bearing there): von Mises inlier or uniform, as mapformer's
    :func:`~rflocal_core.models.maps.aoa_loglik_at`. Increasing in ``cos_d``."""
    kappa = 1.0 / np.deg2rad(sp.aoa_deg) ** 2
    inlier = np.log(sp.aoa_inlier) + kappa * (cos_d - 1) + 0.5 * np.log(kappa / (2 * np.pi))
    return np.logaddexp(inlier, np.log((1 - sp.aoa_inlier) / (2 * np.pi)))


def map_pool_cells(prior_timing: str) -> int:
    """Cells each side over which the prior's map terms are mixed (:data:`MAP_POOL_CELLS` for
    ``"line_or_pooled_maps"``, else 0): one definition for mapformer's prior and the window search."""
    return MAP_POOL_CELLS if prior_timing == "line_or_pooled_maps" else 0


def mix_line_or_maps(line: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """A term summed over the slots against straight lines and against the ToA/AoA maps, mixed evenly (the sample's
    ranges or bearings follow one or the other): mapformer's ``prior_timing="line_or_maps"``
    (:func:`~rflocal_core.models.mapformer.mix_timing_maps`). Increasing in both, so it also mixes upper bounds."""
    return np.logaddexp(line, maps) - np.log(2.0)


def _line_terms(dx: np.ndarray, dy: np.ndarray, rng: np.ndarray, dz2: np.ndarray, theta: np.ndarray, sp: Spreads
                ) -> tuple[np.ndarray, np.ndarray]:
    """[n, S, C] ToA and AoA terms of each slot against the straight line node -> point (``dx``, ``dy``: point -
    node, m; ``rng``: reported range, m; ``dz2``: squared height difference; ``theta``: reported bearing, rad)."""
    return (toa_term(rng - np.sqrt(dx**2 + dy**2 + dz2), sp),
            aoa_term((np.sin(theta) * dx + np.cos(theta) * dy) / np.maximum(np.hypot(dx, dy), 1e-6), sp))


def _map_slot_terms(tm: tuple[np.ndarray, ...], site: np.ndarray, n: int, rng: np.ndarray, dz2: np.ndarray,
                    theta: np.ndarray, line: tuple[np.ndarray, np.ndarray], sp: Spreads
                    ) -> tuple[np.ndarray, np.ndarray]:
    """[n, S, C] ToA and AoA map terms of each slot with the maps ``tm`` (:func:`timing_at`) at the points, the
    straight-line terms ``line`` where the slot's map has no value."""
    dist, sin, cos, ok = (t if t.ndim == 3 else t[None] for t in tm)
    at = (np.arange(n)[:, None] % len(dist), np.clip(site, 0, max(len(dist[0]) - 1, 0)))
    ok = ok[at] & (site >= 0)[..., None] & (site < dist.shape[1])[..., None]  # [n, S, C]: the slot's map has a value
    return (np.where(ok, toa_term(rng - np.sqrt(np.maximum(dist[at] ** 2, dz2)), sp), line[0]),
            np.where(ok, aoa_term(np.sin(theta) * sin[at] + np.cos(theta) * cos[at], sp), line[1]))


def search_loglik(x: Inputs, rows: np.ndarray, pg: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                  sp: Spreads = SEARCH, timing: tuple[np.ndarray, ...] | list | None = None) -> np.ndarray:
    """[n, C] log-likelihood of samples ``rows`` at points ``cx, cy`` ([C] shared, or [n, C] per sample);
    ``pg`` [K, C] or [n, K, C] dB (NaN: no ray). ``timing``: the ToA/AoA maps at the points (:func:`timing_at`,
    each [K, C] or [n, K, C]): the ToA and AoA terms are then each the even mixture of the straight line and the
    maps (:func:`mix_line_or_maps`; per slot the straight line where its map has no value); a list of ``((dx_m, dy_m),
    timing)``: the maps at the points shifted so, each slot's map terms mixed evenly over them (``line_or_pooled_maps``,
    :func:`pooled_timing_at`; mapformer's :func:`~rflocal_core.models.mapformer.pool_map_cells`)."""
    n = len(rows)
    site = x.slot_site[rows]
    use = x.node_mask[rows] & x.known_nodes[rows]
    pg = pg if pg.ndim == 3 else pg[None]
    k = pg.shape[1]
    has_map = (site >= 0) & (site < k)
    cx, cy = np.atleast_2d(cx)[:, None, :], np.atleast_2d(cy)[:, None, :]  # [n or 1, 1, C]
    g = pg[np.arange(n)[:, None] % len(pg), np.clip(site, 0, k - 1)] if k else np.full((*site.shape, cx.shape[-1]), np.nan)
    rss_on = (x.node_mask[rows] & np.isfinite(x.rss_dbm[rows]) & has_map)[..., None]
    ray = np.isfinite(g)
    tx = x.tx_power_dbm[rows][..., None]
    r = np.where(rss_on & ray, x.rss_dbm[rows][..., None] - np.nan_to_num(tx) - np.nan_to_num(g), 0.0)
    unknown = rss_on & ray & ~np.isfinite(tx)  # emitter mode: the transmit power profiled out
    offset = (r * unknown).sum(1, keepdims=True) / np.maximum(unknown.sum(1, keepdims=True), 1)
    r = np.where(unknown, r - offset, r)
    ll = -(r**2).sum(1) / (2 * sp.rss_db**2) - sp.no_ray_nats * (rss_on & ~ray).sum(1)
    xy, z = x.node_pos_m[rows][..., :2], x.node_pos_m[rows][..., 2]
    dx, dy = cx - np.nan_to_num(xy[..., 0:1]), cy - np.nan_to_num(xy[..., 1:2])  # [n, S, C]
    toa_on = (use & np.isfinite(x.toa_ns[rows]))[..., None]
    rng = np.nan_to_num(x.toa_ns[rows])[..., None] * C_M_PER_NS
    dz2 = (np.nan_to_num(z, nan=DEVICE_Z_M)[..., None] - DEVICE_Z_M) ** 2
    aoa_on = (use & np.isfinite(x.aoa_deg[rows]))[..., None]
    theta = np.deg2rad(np.nan_to_num(x.aoa_deg[rows]))[..., None]
    toa, aoa = _line_terms(dx, dy, rng, dz2, theta, sp)
    if timing is None:
        return ll + np.where(toa_on, toa, 0.0).sum(1) + np.where(aoa_on, aoa, 0.0).sum(1)
    shifts = timing if isinstance(timing, list) else [((0.0, 0.0), timing)]
    pairs = []
    for (ox, oy), tm in shifts:  # pooled (line_or_pooled_maps): the map terms at each neighbour, mixed evenly
        line = (toa, aoa) if ox == oy == 0 else _line_terms(dx + ox, dy + oy, rng, dz2, theta, sp)
        pairs.append(_map_slot_terms(tm, site, n, rng, dz2, theta, line, sp))
    toa_map, aoa_map = (np.logaddexp.reduce(np.stack([p[j] for p in pairs]), 0) - np.log(len(pairs)) for j in (0, 1))
    toa, toa_map, aoa, aoa_map = (np.where(on, t, 0.0).sum(1) for on, t in
                                  ((toa_on, toa), (toa_on, toa_map), (aoa_on, aoa), (aoa_on, aoa_map)))
    return ll + mix_line_or_maps(toa, toa_map) + mix_line_or_maps(aoa, aoa_map)


def lattice_phase(x: Inputs, cell_m: float) -> np.ndarray:
    """[N, 2] offset (m, in [0, cell_m)) of the window lattice of each sample's scene: its cells' centres lie at
    ``phase + (k + 1/2) cell_m``, on the centres of the scene's own map cells where those are ``cell_m`` (or a
    divisor of it) wide, so a window copies the maps instead of interpolating between cells. 0 without maps."""
    out = np.zeros((len(x.indices), 2))
    for g, name in enumerate(x.scenes):
        maps = (x.maps or {}).get(name)
        if maps is not None:
            grid = maps.grid
            out[x.scene_idx == g] = np.mod(np.array([grid.x0_m, grid.y0_m]) - cell_m / 2, cell_m)
    return out


def _map_at(maps: object, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Path gain [K, *P] dB (NaN: no ray, bilinear where over half the weight has one) and the indoor
    mask [*P] of a scene's maps at points ``px, py`` [*P] (as the window lattice resamples them)."""
    raw = maps.path_gain_db.astype(np.float64)
    ok = np.isfinite(raw)
    shape = px.shape
    ray = maps.grid.bilinear(ok.astype(float), px.ravel(), py.ravel()) > 0.5
    pg = np.where(ray, maps.grid.bilinear(np.where(ok, raw, -170.0), px.ravel(), py.ravel()), np.nan)
    iy, ix = maps.grid.cell_of(px, py)
    return pg.reshape(len(raw), *shape), ~np.asarray(maps.outdoor, bool)[iy, ix]


def has_timing_maps(maps: object) -> bool:
    """Whether a scene's maps hold ray-traced ToA and AoA maps (a dataset generated with ``timing_maps``)."""
    ch = getattr(maps, "channels", None) or {}
    return "toa_ns" in ch and "aoa_deg" in ch


def timing_at(maps: object, px: np.ndarray, py: np.ndarray, inside: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """A scene's ToA and AoA maps at points ``px, py`` [*P] (m), as the window lattice resamples them: ``(toa_m,
    aoa_sin, aoa_cos, ok)`` each [K, *P], the first path's length (c x ToA, m) and the unit vector (east, north) of
    the bearing at the site, where ``ok`` (over half of the bilinear weight has a value; and ``inside``), 0 elsewhere.
    None where the scene has no such maps. One definition for the window search and
    :func:`~rflocal_core.models.maps.resample_channels`."""
    if not has_timing_maps(maps):
        return None
    toa, aoa = (np.asarray(maps.channels[k], dtype=np.float64) for k in ("toa_ns", "aoa_deg"))
    ok = np.isfinite(toa) & np.isfinite(aoa)
    shape = px.shape
    weight = maps.grid.bilinear(ok.astype(np.float64), px.ravel(), py.ravel()).reshape(-1, *shape)
    good = weight > 0.5 if inside is None else (weight > 0.5) & inside

    def interp(field: np.ndarray) -> np.ndarray:
        num = maps.grid.bilinear(np.where(ok, field, 0.0), px.ravel(), py.ravel()).reshape(-1, *shape)
        return np.where(good, num / np.maximum(weight, 1e-9), 0.0)

    rad = np.radians(np.where(ok, aoa, 0.0))
    sin, cos = interp(np.sin(rad)), interp(np.cos(rad))
    norm = np.maximum(np.hypot(sin, cos), 1e-9)
    return interp(toa * C_M_PER_NS), np.where(good, sin / norm, 0.0), np.where(good, cos / norm, 0.0), good


def pooled_timing_at(maps: object, px: np.ndarray, py: np.ndarray, step_m: float, reach: int) -> list | None:
    """``[((dx_m, dy_m), timing_at(maps, px + dx_m, py + dy_m)), ...]`` for the ``(2 reach + 1)^2`` shifts by
    ``step_m`` (the lattice's cell), the shifted points held inside the scene's map cells (its edge cells repeated,
    as :func:`~rflocal_core.models.mapformer.pool_map_cells` pads): what :func:`search_loglik` mixes each slot's
    map terms over (``line_or_pooled_maps``). None where the scene has no ToA/AoA maps."""
    if not has_timing_maps(maps):
        return None
    if reach <= 0:  # the points themselves, as they are
        return [((0.0, 0.0), timing_at(maps, px, py))]
    g = maps.grid
    out = []
    for oy in range(-reach, reach + 1):
        for ox in range(-reach, reach + 1):
            qx = np.clip(px + ox * step_m, g.x0_m, g.x0_m + (g.nx - 1) * g.cell_m)
            qy = np.clip(py + oy * step_m, g.y0_m, g.y0_m + (g.ny - 1) * g.cell_m)
            out.append(((ox * step_m, oy * step_m), timing_at(maps, qx, qy)))
    return out


def _candidate_cells(top: np.ndarray, nx: int, ny: int) -> np.ndarray:
    """[n, U] coarse cells (``iy * nx + ix``) within one cell of the candidates ``top`` [n, M], each once (rows
    padded with their best candidate): the union of their 3 x 3 neighbourhoods, which mostly overlap."""
    d = np.arange(-1, 2)
    iy = np.clip(top[..., None, None] // nx + d[:, None], 0, ny - 1)
    ix = np.clip(top[..., None, None] % nx + d[None, :], 0, nx - 1)
    cells = np.sort((iy * nx + ix).reshape(len(top), -1), axis=1)
    dup = np.zeros(cells.shape, bool)
    dup[:, 1:] = cells[:, 1:] == cells[:, :-1]
    order = np.argsort(dup, axis=1, kind="stable")  # the distinct cells first
    cells = np.take_along_axis(cells, order, 1)[:, :int((~dup).sum(1).max())]
    filler = np.take_along_axis(dup, order, 1)[:, :cells.shape[1]]
    return np.where(filler, top[:, :1], cells)


def _fine_search(x: Inputs, part: np.ndarray, maps: object, centres: np.ndarray, coarse_m: float, fine_m: float,
                 sp: Spreads, timing: bool = False, reach: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[n, 2] best point of the ``fine_m`` window lattice (:func:`lattice_phase`) inside the coarse cells of
    centres [n, U, 2], under spreads ``sp``, and [n] its log-likelihood; ``timing``: ToA and AoA each the mixture
    of straight lines and the scene's ToA/AoA maps (:func:`search_loglik`), where it has them; ``reach``: the map
    terms mixed over the lattice points within ``reach`` cells (:func:`pooled_timing_at`)."""
    phase = np.mod(np.array([maps.grid.x0_m, maps.grid.y0_m]) - fine_m / 2, fine_m)
    lo = np.ceil((centres - coarse_m / 2 - phase) / fine_m - 0.5 - 1e-9)  # [n, U, 2] first fine cell in each
    step = np.arange(int(np.ceil(coarse_m / fine_m - 1e-9)))
    px = (lo[..., 0, None, None] + step[None, None, None, :] + 0.5) * fine_m + phase[0]  # [n, U, 1, m]
    py = (lo[..., 1, None, None] + step[None, None, :, None] + 0.5) * fine_m + phase[1]  # [n, U, m, 1]
    px, py = np.broadcast_arrays(px, py)
    px, py = px.reshape(len(part), -1), py.reshape(len(part), -1)  # [n, P]
    pg, indoor = _map_at(maps, px, py)  # [K, n, P], [n, P]
    tm = pooled_timing_at(maps, px, py, fine_m, reach) if timing else None
    tm = None if tm is None else [(o, tuple(t.transpose(1, 0, 2) for t in m)) for o, m in tm]
    ll = search_loglik(x, part, pg.transpose(1, 0, 2), px, py, sp, tm) - sp.indoor_nats * indoor
    x0, y0, x1, y1 = maps.grid.extent_m
    ll = np.where((px < x0) | (px > x1) | (py < y0) | (py > y1), -np.inf, ll)  # off the scene's maps
    best, at = ll.argmax(1), np.arange(len(part))
    return np.stack([px[at, best], py[at, best]], 1), ll[at, best]


@dataclass(frozen=True)
class BlockTiming:
    """What bounds the ToA/AoA map terms over each block of :class:`Blocks` (``[K, C]`` each): ``toa_lo_m`` /
    ``toa_hi_m`` the shortest / longest first path of each site's ToA map over the block's points with a value (0
    where none), ``aoa_mid_rad`` / ``aoa_half_rad`` the centre and half width of an arc of compass bearings holding
    every bearing of its AoA map there, ``any`` whether any point has a value, ``all`` whether every point has one."""

    toa_lo_m: np.ndarray
    toa_hi_m: np.ndarray
    aoa_mid_rad: np.ndarray
    aoa_half_rad: np.ndarray
    any: np.ndarray
    all: np.ndarray


@dataclass(frozen=True)
class Blocks:
    """A scene's ``fine_m`` window lattice cut into square blocks of ``side`` x ``side`` lattice points (the
    coarse cells of the exact search, :func:`map_position`), with what bounds the prior over each block:
    ``centres_m`` [C, 2] (m), ``half_m`` (m, half the side of the square through the block's point centres),
    ``pg_lo_db`` / ``pg_hi_db`` [K, C] the least / greatest path gain of each site over the block's points with
    a ray (0 where none), ``ray`` [K, C] whether any point has one, ``ray_all`` [K, C] whether every point has
    one, ``indoor`` [C] whether every point is in a footprint; ``timing`` those of the ToA/AoA maps
    (:class:`BlockTiming`; None: not asked for, or the scene has none); ``reach_m``: how far beyond a point the
    pooled map terms (``line_or_pooled_maps``) look, 0 without."""

    centres_m: np.ndarray
    half_m: float
    pg_lo_db: np.ndarray
    pg_hi_db: np.ndarray
    ray: np.ndarray
    ray_all: np.ndarray
    indoor: np.ndarray
    timing: BlockTiming | None = None
    reach_m: float = 0.0


def _block_timing(maps: object, px: np.ndarray, py: np.ndarray, side: int, pad: tuple, reach: int = 0
                  ) -> BlockTiming | None:
    """:class:`BlockTiming` of a scene's ToA/AoA maps on its lattice points ``px`` [nx], ``py`` [ny] (m), cut into
    blocks of ``side`` points as :func:`scene_blocks` pads them (``pad``); None without such maps. ``reach``: over
    the maps at each point's shifts too (:func:`pooled_timing_at`, ``line_or_pooled_maps``)."""
    step = float(px[1] - px[0]) if len(px) > 1 else float(maps.grid.cell_m)
    shifts = pooled_timing_at(maps, *np.meshgrid(px, py), step, reach)
    if shifts is None or not len(shifts[0][1][0]):
        return None
    k, (nby, nbx), r = len(shifts[0][1][0]), (-(-len(py) // side), -(-len(px) // side)), len(shifts)
    dist, sin, cos, ok = (np.stack([np.pad(tm[j], ((0, 0), *pad)) for _, tm in shifts], 1).reshape(
        k, r, nby, side, nbx, side) for j in range(4))
    lattice = np.pad(np.ones((len(py), len(px)), bool), pad).reshape(1, 1, nby, side, nbx, side)
    axes = (1, 3, 5)
    lo = np.where(ok, dist, np.inf).min(axes).reshape(k, -1)
    hi = np.where(ok, dist, -np.inf).max(axes).reshape(k, -1)
    mid = np.arctan2(*(np.where(ok, v, 0.0).sum(axes, keepdims=True) for v in (sin, cos)))  # the mean bearing
    off = np.abs(np.arctan2(sin * np.cos(mid) - cos * np.sin(mid), cos * np.cos(mid) + sin * np.sin(mid)))
    half = np.where(ok, off, 0.0).max(axes).reshape(k, -1) + 1e-9  # rounding: a bound, never short
    any_ok = ok.any(axes).reshape(k, -1)
    return BlockTiming(np.where(any_ok, lo, 0.0), np.where(any_ok, hi, 0.0), mid.reshape(k, -1), half, any_ok,
                       (ok | ~lattice).all(axes).reshape(k, -1))


def scene_blocks(maps: object, fine_m: float, side: int, timing: bool = False, reach: int = 0) -> Blocks:
    """:class:`Blocks` of a scene's maps: its ``fine_m`` lattice (:func:`lattice_phase`) inside its extent, in
    blocks of ``side`` points a side from its south-west point (the last ones padded: no ray, indoor);
    ``timing``: with the bounds of its ToA/AoA maps where it has them (``reach``: over the ``reach`` lattice points
    around each too, ``line_or_pooled_maps``)."""
    phase = np.mod(np.array([maps.grid.x0_m, maps.grid.y0_m]) - fine_m / 2, fine_m)
    x0, y0, x1, y1 = maps.grid.extent_m
    kx = np.arange(np.ceil((x0 - phase[0]) / fine_m - 0.5 - 1e-9), np.floor((x1 - phase[0]) / fine_m - 0.5 + 1e-9) + 1)
    ky = np.arange(np.ceil((y0 - phase[1]) / fine_m - 0.5 - 1e-9), np.floor((y1 - phase[1]) / fine_m - 0.5 + 1e-9) + 1)
    px, py = (kx + 0.5) * fine_m + phase[0], (ky + 0.5) * fine_m + phase[1]
    pg, indoor = _map_at(maps, *np.meshgrid(px, py))  # [K, ny, nx], [ny, nx]
    nby, nbx = -(-len(py) // side), -(-len(px) // side)
    pad = ((0, nby * side - len(py)), (0, nbx * side - len(px)))
    pg = np.pad(pg, ((0, 0), *pad), constant_values=np.nan).reshape(len(pg), nby, side, nbx, side)
    indoor = np.pad(indoor, pad, constant_values=True).reshape(nby, side, nbx, side)
    lattice = np.pad(np.ones((len(py), len(px)), bool), pad).reshape(nby, side, nbx, side)  # padding: no point
    ray = np.isfinite(pg)
    ray_all = (ray | ~lattice).all((2, 4)).reshape(len(pg), -1)
    lo = np.where(ray, pg, np.inf).min((2, 4)).reshape(len(pg), -1)
    hi = np.where(ray, pg, -np.inf).max((2, 4)).reshape(len(pg), -1)
    any_ray = ray.any((2, 4)).reshape(len(pg), -1)
    half = (side - 1) * fine_m / 2
    cx, cy = np.meshgrid(px[0] + half + side * fine_m * np.arange(nbx), py[0] + half + side * fine_m * np.arange(nby))
    return Blocks(np.stack([cx.ravel(), cy.ravel()], 1), float(half), np.where(any_ray, lo, 0.0),
                  np.where(any_ray, hi, 0.0), any_ray, ray_all, indoor.all((1, 3)).ravel(),
                  _block_timing(maps, px, py, side, pad, reach) if timing else None, reach * fine_m)


def _rss_bound(x: Inputs, rows: np.ndarray, bl: Blocks, sp: Spreads) -> np.ndarray:
    """[n, C] upper bound of the RSS term of :func:`search_loglik` over each block (see :func:`block_bound`)."""
    site, k = x.slot_site[rows], len(bl.ray)
    s = np.clip(site, 0, max(k - 1, 0))
    has_map = (site >= 0) & (site < k)
    rss_on = (x.node_mask[rows] & np.isfinite(x.rss_dbm[rows]) & has_map)[..., None]
    if not k:
        return np.zeros((len(rows), len(bl.centres_m)))
    ray = bl.ray[s]  # [n, S, C]
    need = (x.rss_dbm[rows] - x.tx_power_dbm[rows])[..., None]  # NaN where tx is profiled out: bound 0
    r = np.maximum(0.0, np.maximum(need - bl.pg_hi_db[s], bl.pg_lo_db[s] - need))
    ll = -np.where(rss_on & ray & np.isfinite(need), r, 0.0) ** 2 / (2 * sp.rss_db**2)
    # a block's points without a ray pay no_ray_nats, which can be less than the residual of those with one
    ll = np.where(rss_on & ray & ~bl.ray_all[s], np.maximum(ll, -sp.no_ray_nats), ll)
    return ll.sum(1) - sp.no_ray_nats * (rss_on & ~ray).sum(1)


def _line_bounds(x: Inputs, rows: np.ndarray, bl: Blocks, sp: Spreads, grow_m: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """[n, S, C] upper bounds of the straight-line ToA and AoA terms of each slot over each block (AoA: None where no
    slot reports a bearing): at the 3D distance and bearing of the block's square closest to the report (AoA: of
    the circle round it), both terms being unimodal at a zero residual. ``grow_m``: over the block grown so much."""
    dx = bl.centres_m[:, 0] - np.nan_to_num(x.node_pos_m[rows][..., 0:1])  # [n, S, C]
    dy = bl.centres_m[:, 1] - np.nan_to_num(x.node_pos_m[rows][..., 1:2])
    h = bl.half_m + grow_m
    dz2 = (np.nan_to_num(x.node_pos_m[rows][..., 2:3], nan=DEVICE_Z_M) - DEVICE_Z_M) ** 2
    near = np.hypot(np.maximum(np.abs(dx) - h, 0.0), np.maximum(np.abs(dy) - h, 0.0))
    far = np.hypot(np.abs(dx) + h, np.abs(dy) + h)
    rng = np.nan_to_num(x.toa_ns[rows])[..., None] * C_M_PER_NS
    toa = toa_term(np.minimum(np.maximum(0.0, rng - np.sqrt(far**2 + dz2)), rng - np.sqrt(near**2 + dz2)), sp)
    if not np.isfinite(x.aoa_deg[rows]).any():
        return toa, None
    dist = np.maximum(np.hypot(dx, dy), 1e-6)  # the bearing's angle off the circle round the block's square
    theta = np.deg2rad(np.nan_to_num(x.aoa_deg[rows]))[..., None]
    off = np.arccos(np.clip((np.sin(theta) * dx + np.cos(theta) * dy) / dist, -1.0, 1.0))
    reach = np.sqrt(2) * h / dist  # the circle's angular radius; >= 1: it holds the node, every bearing
    off = np.where(reach >= 1.0, 0.0, np.maximum(off - np.arcsin(np.minimum(reach, 1.0)), 0.0))
    return toa, aoa_term(np.cos(off), sp)


def _map_bounds(x: Inputs, rows: np.ndarray, bt: BlockTiming, sp: Spreads, toa: np.ndarray,
                aoa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n, S, C] upper bounds of the ToA and AoA map terms of each slot over each block (the straight line's ``toa``,
    ``aoa`` where the slot's map has no value at some point of it): the range excess against the block's interval
    of first paths, the bearing's angle off the block's arc of map bearings."""
    site, k = x.slot_site[rows], len(bt.any)
    s = np.clip(site, 0, k - 1)
    has = ((site >= 0) & (site < k))[..., None]
    dz2 = (np.nan_to_num(x.node_pos_m[rows][..., 2:3], nan=DEVICE_Z_M) - DEVICE_Z_M) ** 2
    rng = np.nan_to_num(x.toa_ns[rows])[..., None] * C_M_PER_NS
    near, far = np.sqrt(np.maximum(bt.toa_lo_m[s] ** 2, dz2)), np.sqrt(np.maximum(bt.toa_hi_m[s] ** 2, dz2))
    toa_map = toa_term(np.minimum(np.maximum(0.0, rng - far), rng - near), sp)
    theta = np.deg2rad(np.nan_to_num(x.aoa_deg[rows]))[..., None]
    off = np.abs(np.angle(np.exp(1j * (theta - bt.aoa_mid_rad[s]))))
    aoa_map = aoa_term(np.cos(np.maximum(off - bt.aoa_half_rad[s], 0.0)), sp)
    some, every = has & bt.any[s], has & bt.all[s]
    pairs = ((toa_map, toa), (aoa_map, aoa))
    return tuple(np.where(every, m, np.where(some, np.maximum(m, line), line)) for m, line in pairs)


def block_bound(x: Inputs, rows: np.ndarray, bl: Blocks, sp: Spreads) -> np.ndarray:
    """[n, C] upper bound of :func:`search_loglik` (spreads ``sp``, less the footprint term; with ``bl.timing``, its
    ToA and AoA terms each the mixture of straight lines and the ToA/AoA maps) of samples ``rows`` over every point
    of each block: each term at its best over the block (RSS residual against the block's path-gain interval, 0
    where the transmit power is profiled out; ToA and AoA: :func:`_line_bounds`, :func:`_map_bounds`; the
    mixture, increasing in both, of the two bounds)."""
    use = x.node_mask[rows] & x.known_nodes[rows]
    toa_on = (use & np.isfinite(x.toa_ns[rows]))[..., None]
    aoa_on = (use & np.isfinite(x.aoa_deg[rows]))[..., None]
    ll = _rss_bound(x, rows, bl, sp)
    toa, aoa = _line_bounds(x, rows, bl, sp)
    if bl.timing is None:
        ll = ll + np.where(toa_on, toa, 0.0).sum(1)
        return ll if aoa is None or not aoa_on.any() else ll + np.where(aoa_on, aoa, 0.0).sum(1)
    aoa = np.zeros_like(toa) if aoa is None else aoa
    fallback = (toa, aoa)  # pooled: a neighbour without a map value falls back on the line at the neighbour
    if bl.reach_m > 0:
        grown = _line_bounds(x, rows, bl, sp, bl.reach_m)
        fallback = (grown[0], np.zeros_like(toa) if grown[1] is None else grown[1])
    toa_map, aoa_map = _map_bounds(x, rows, bl.timing, sp, *fallback)
    toa, toa_map, aoa, aoa_map = (np.where(on, t, 0.0).sum(1) for on, t in
                                  ((toa_on, toa), (toa_on, toa_map), (aoa_on, aoa), (aoa_on, aoa_map)))
    return ll + mix_line_or_maps(toa, toa_map) + mix_line_or_maps(aoa, aoa_map)


def _exact_search(x: Inputs, part: np.ndarray, maps: object, bl: Blocks, fine_m: float, sp: Spreads) -> np.ndarray:
    """[n, 2] argmax of :func:`search_loglik` (spreads ``sp``, footprints included) over the whole ``fine_m``
    lattice of the scene, by branch and bound: blocks searched point by point in the order of their
    :func:`block_bound`, :data:`SEARCH_CANDIDATES` first, then four times more each round, until the best
    block left unsearched cannot beat the best point found (nothing left to chance; cost: the bound over
    every block plus the few blocks searched)."""
    bound = block_bound(x, part, bl, sp) - sp.indoor_nats * bl.indoor
    order = np.argsort(-bound, axis=1, kind="stable")
    out, best = np.full((len(part), 2), np.nan), np.full(len(part), -np.inf)
    todo, done, step = np.arange(len(part)), 0, SEARCH_CANDIDATES
    side_m = 2 * bl.half_m + fine_m
    while len(todo) and done < bound.shape[1]:
        cells = order[todo, done:done + step]
        xy, ll = _fine_search(x, part[todo], maps, bl.centres_m[cells], side_m, fine_m, sp, bl.timing is not None,
                              round(bl.reach_m / fine_m))
        better = (ll > best[todo]) | np.isnan(out[todo, 0])  # a point even where every one is -inf
        out[todo[better]], best[todo[better]] = xy[better], ll[better]
        done, step = done + step, step * 4
        nxt = bound[todo, order[todo, done]] if done < bound.shape[1] else np.full(len(todo), -np.inf)
        todo = todo[nxt > best[todo]]
    return out


def map_position(x: Inputs, *, fine_m: float | None = None, spreads: Spreads = PRIOR_SPREADS,
                 cell_m: float = MAP_SEARCH_CELL_M, exact: bool = True,
                 prior_timing: str = "line") -> tuple[np.ndarray, np.ndarray]:
    """A first position [N, 2] from the scene's own maps, and [N] where there is one (the scene has maps).

    Physics map matching over the whole scene at ``cell_m`` (the RSS against each reporting node's
    path-gain map, tx profiled out where unknown; ToA as a line-of-sight / NLoS mixture; AoA as a
    von Mises / uniform mixture; :data:`SEARCH` spreads): the best cell's centre. Nothing learned.
    With ``fine_m`` (finer than ``cell_m``), a second stage: the :data:`SEARCH_CANDIDATES` best coarse
    cells and their neighbours searched again on the ``fine_m`` lattice of the window frame
    (:func:`lattice_phase`) with ``spreads`` (default mapformer's physics prior,
    footprints included): the best fine cell's centre, the prior's own argmax where it lies in a
    candidate's reach, at a small part of the cost of a fine search over the whole scene. With ``exact``
    (default) the candidates are :data:`EXACT_BLOCK_M` blocks of the ``fine_m`` lattice ranked by an upper bound of the
    prior over each block, searched until no block left can beat the best point found
    (:func:`_exact_search`): the prior's argmax over the whole scene's lattice, always (issue 19: on Paris the
    24 best cells of the 16 m search missed it for 5% of the targets, which then fell outside their window).
    ``prior_timing`` (:data:`PRIOR_TIMINGS`, mapformer's option of that name): with ``"line_or_maps"`` the ``fine_m``
    stage's ToA and AoA terms are each the even mixture of the straight lines and the scene's ray-traced ToA/AoA maps
    (:func:`search_loglik`), where the scene has them, so the window is centred on the argmax of the same prior as the
    network's (exact: :func:`block_bound` bounds the map terms too); the 16 m stage keeps the straight lines.
    """
    if prior_timing not in PRIOR_TIMINGS:
        msg = f"prior_timing: expected one of {', '.join(PRIOR_TIMINGS)}, got {prior_timing!r}"
        raise InvalidInputError(msg)
    out = np.full((len(x.indices), 2), np.nan)
    ok = np.zeros(len(x.indices), bool)
    fine = fine_m is not None and 0 < fine_m < cell_m
    for g, name in enumerate(x.scenes):
        maps = (x.maps or {}).get(name)
        rows = np.flatnonzero(x.scene_idx == g)
        if maps is None or not len(rows):
            continue
        x0, y0, x1, y1 = maps.grid.extent_m
        gx, gy = np.meshgrid(np.arange(x0 + cell_m / 2, x1, cell_m), np.arange(y0 + cell_m / 2, y1, cell_m))
        (ny, nx), cx, cy = gx.shape, gx.ravel(), gy.ravel()
        pg, _ = _map_at(maps, cx, cy)
        timing = prior_timing != "line" and has_timing_maps(maps)
        reach = map_pool_cells(prior_timing) if timing else 0
        blocks = (scene_blocks(maps, fine_m, max(1, round(EXACT_BLOCK_M / fine_m)), timing, reach)
                  if fine and exact else None)
        for start in range(0, len(rows), SEARCH_CHUNK):
            part = rows[start:start + SEARCH_CHUNK]
            if blocks is not None:
                out[part] = _exact_search(x, part, maps, blocks, fine_m, spreads)
            elif fine:
                ll = search_loglik(x, part, pg, cx, cy)
                top = _candidate_cells(np.argsort(-ll, axis=1, kind="stable")[:, :SEARCH_CANDIDATES], nx, ny)
                out[part] = _fine_search(x, part, maps, np.stack([cx[top], cy[top]], -1), cell_m, fine_m, spreads,
                                         timing, reach)[0]
            else:
                best = search_loglik(x, part, pg, cx, cy).argmax(1)
                out[part] = np.stack([cx[best], cy[best]], 1)
            heard = np.isfinite(x.rss_dbm[part]) | np.isfinite(x.toa_ns[part]) | np.isfinite(x.aoa_deg[part])
            ok[part] = (x.node_mask[part] & heard & (x.known_nodes[part] | (x.slot_site[part] >= 0))).any(1)
    return out, ok
