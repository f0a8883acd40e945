"""Tracking a moving device over a sequence of per-report position estimates (numpy only).

Any model's predictions of one sequence (positions, their σ, report times) go in; a filtered
track comes out:

    cfg = TrackConfig(method="kalman", motion="pedestrian")
    out = track(t_s, z_m, sigma_m, cfg)              # Track: xy [T, 2], sigma [T, 2]
    out = track(t_s, z_m, sigma_m, TrackConfig(method="particle"), mask=OutdoorMask(grid, outdoor))

- :func:`kalman_track`: constant-velocity Kalman filter (white-noise acceleration of
  :data:`MOTION_PRESETS`), each report's σ as its measurement noise, the time step from the report
  times; an innovation gate inflates the noise of outliers; optional Rauch–Tung–Striebel smoother.
- :func:`particle_track`: the same motion as a particle filter whose particles live in outdoor
  cells only (:class:`OutdoorMask`): a particle that moves into or through a building is killed,
  and the estimate is always an outdoor position.
- Both floor each report's σ (:func:`floored_sigma`: ``sigma_floor`` × the median σ of the recent
  reports, in quadrature): a model's σ is often far too small where it is confidently wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rflocal_core.dataset.rasters import Grid
from rflocal_core.errors import InvalidInputError
from rflocal_core.options import check_options, option, seed_option

#: The filters ``--track`` offers.
TRACK_METHODS = ("kalman", "particle")


@dataclass(frozen=True)
class MotionPreset:
    """Constant-velocity motion: the white-noise acceleration's spectral density and the speed prior."""

    #: Spectral density q of the acceleration (m²/s³): the velocity's variance grows by q·dt per step.
    accel_psd_m2_s3: float
    #: 1σ of each velocity component before the first reports (m/s).
    speed_sigma_m_s: float


#: Process-noise presets: a walker (about 1 m/s, gentle turns) and a vehicle (about 10 m/s, turns at
#: junctions); q as in Bar-Shalom's continuous white-noise acceleration model. The vehicle's: 10 m/s in an
#: unknown direction is 10/√2 ≈ 7 m/s per axis; its heading wandering by about 0.35 rad a second changes
#: the velocity by about 3.5 m/s a second across the track, q ≈ 3.5²/2 ≈ 6 m²/s³ per axis.
MOTION_PRESETS: dict[str, MotionPreset] = {
    "pedestrian": MotionPreset(accel_psd_m2_s3=0.5, speed_sigma_m_s=1.5),
    "vehicular": MotionPreset(accel_psd_m2_s3=6.0, speed_sigma_m_s=7.0),
}

#: Squared Mahalanobis distance of an innovation beyond which its noise is inflated (χ² 2 dof, 99%).
GATE_D2 = 9.21
#: Degrees of freedom of the particle filter's Student-t likelihood (heavy tails: outliers weigh little).
STUDENT_NU = 4.0
#: Default σ floor, in medians of the recent reports' σ (see :func:`floored_sigma`); chosen on the validation split
#: of the tracking benchmark's datasets (bench/bench_tracking.py), not on its test split.
SIGMA_FLOOR = 2.0
#: How many recent reports the σ floor's median runs over (causal: a report never sees later ones).
SIGMA_FLOOR_WINDOW = 32


@dataclass(frozen=True)
class TrackConfig:
    """How a sequence's predictions are tracked (``predict --track``, Live Inference)."""

    method: str | None = option(None, choices=TRACK_METHODS, none_means="no tracking", flag="track",
                                label="Tracking", check=False,
                                help="filter each sequence's per-report predictions over time: kalman (constant "
                                     "velocity) or particle (constrained to outdoor cells)")
    motion: str = option("pedestrian", choices=tuple(MOTION_PRESETS), flag="track-motion", label="Motion model",
                         help="process-noise preset of the tracker")
    smooth: bool = option(False, flag="track-smooth", label="Smooth (RTS)",
                          help="Kalman only: Rauch-Tung-Striebel smoother (each position also uses later reports)")
    particles: int = option(2000, lo=100, hi=100_000, flag="track-particles", label="Particles",
                            help="particle filter: number of particles")
    default_sigma_m: float = option(25.0, lo=0.1, hi=1e5, unit="m", flag="track-sigma-m",
                                    label="σ where the model gives none (m)",
                                    help="measurement σ for predictions without an uncertainty")
    sigma_floor: float = option(SIGMA_FLOOR, lo=0.0, hi=100.0, flag="track-sigma-floor",
                                label="σ floor (× median σ of recent reports)",
                                help="each report's σ gets this many times the median σ of the last 32 reports added "
                                     "in quadrature (a model's σ is too small where it is confidently wrong); 0: "
                                     "the σ as given")
    seed: int = seed_option(0, help="seed of the particle filter", flag="track-seed")

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in TRACK_METHODS:
            msg = f"track: expected one of {', '.join(TRACK_METHODS)} or None, got {self.method!r}"
            raise InvalidInputError(msg)
        check_options(self)


@dataclass(frozen=True)
class OutdoorMask:
    """Where a device can be: ``outdoor`` [ny, nx] (True: open) on ``grid``; beyond the grid is open."""

    grid: Grid
    outdoor: np.ndarray

    def is_outdoor(self, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        """Whether each point lies in an open cell (points beyond the grid are open)."""
        g = self.grid
        ix = np.floor((np.asarray(x_m, float) - g.x0_m) / g.cell_m + 0.5)
        iy = np.floor((np.asarray(y_m, float) - g.y0_m) / g.cell_m + 0.5)
        inside = (ix >= 0) & (ix < g.nx) & (iy >= 0) & (iy < g.ny)
        out = np.ones(np.shape(ix), dtype=bool)
        out[inside] = self.outdoor[iy[inside].astype(np.int64), ix[inside].astype(np.int64)]
        return out


def outdoor_mask(buildings: list[tuple[np.ndarray, np.ndarray]], extent_m: tuple[float, float, float, float], *,
                 cell_m: float = 1.0) -> OutdoorMask:
    """The :class:`OutdoorMask` of building footprint rings ``(xs, ys)`` over ``extent_m`` (x0, x1, y0, y1).

    A cell is closed when its centre lies in a footprint; ``cell_m`` (1 m by default) sets how
    finely walls are drawn.
    """
    import shapely  # only here: the filters themselves are numpy

    x0, x1, y0, y1 = (float(v) for v in extent_m)
    nx, ny = max(1, int(np.ceil((x1 - x0) / cell_m)) + 1), max(1, int(np.ceil((y1 - y0) / cell_m)) + 1)
    grid = Grid(x0, y0, float(cell_m), nx, ny)
    gx, gy = np.meshgrid(grid.x_m, grid.y_m)
    closed = np.zeros((ny, nx), dtype=bool)
    polygons = [shapely.Polygon(np.column_stack([xs, ys])) for xs, ys in buildings if len(xs) >= 3]
    if polygons:
        closed = shapely.contains_xy(shapely.unary_union([p.buffer(0) for p in polygons]), gx, gy)
    return OutdoorMask(grid, ~closed)


@dataclass(frozen=True)
class Track:
    """A filtered track: positions ``xy`` [T, 2] and their 1σ ``sigma`` [T, 2] (scene metres)."""

    xy: np.ndarray
    sigma: np.ndarray


# --------------------------------------------------------------------------- inputs


def _checked(t_s: np.ndarray, z_m: np.ndarray, sigma_m: np.ndarray | None, default_sigma_m: float,
             sigma_floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times [T], positions [T, 2] (NaN: no position) and σ [T, 2] (floored; the default where missing)."""
    t = np.asarray(t_s, float).reshape(-1)
    z = np.asarray(z_m, float).reshape(len(t), 2)
    if len(t) == 0:
        msg = "t_s: expected at least one report time, got none"
        raise InvalidInputError(msg)
    if not np.isfinite(t).all() or (np.diff(t) < 0).any():
        msg = f"t_s: expected finite report times in increasing order, got {t.tolist()[:8]}"
        raise InvalidInputError(msg)
    s = np.full((len(t), 2), np.nan) if sigma_m is None else np.asarray(sigma_m, float).reshape(len(t), 2)
    given = np.isfinite(s) & (s > 0)
    # the floor is for a model's own σ; the default stands in as the user set it
    s = np.where(given, floored_sigma(z, np.where(given, s, np.nan), sigma_floor), float(default_sigma_m))
    return t, z, s


def floored_sigma(z_m: np.ndarray, sigma_m: np.ndarray, factor: float, *,
                  window: int = SIGMA_FLOOR_WINDOW) -> np.ndarray:
    """Each report's σ [T, 2] with ``factor`` × the median σ of the last ``window`` reports added in quadrature.

    Why: a model's σ says how much its candidates disagree, not how far it can be off. kNN's
    neighbours often agree on a wrong street (σ of a few metres, error of tens): the filter then
    follows that report and discards the good ones after it as outliers. The floor is relative (a
    scene of metres or kilometres alike) and causal (the median of the reports up to this one,
    those with a position only), so live tracking gets what the benchmark measures.

    Parameters
    ----------
    z_m : ndarray [T, 2]
        Positions; NaN rows (no position) do not count towards the median.
    sigma_m : ndarray [T, 2]
        1σ per axis; NaN (no σ) counts towards no median and stays NaN.
    factor : float
        Floor in medians of σ; 0 returns ``sigma_m`` unchanged.
    """
    s = np.asarray(sigma_m, float)
    if factor <= 0:
        return s
    seen = np.where(np.isfinite(z_m).all(axis=1, keepdims=True) & np.isfinite(s), s, np.nan)
    padded = np.concatenate([np.full((window - 1, 2), np.nan), seen])
    recent = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # [T, 2, window]
    flat = recent.reshape(len(s), -1)
    has = np.isfinite(flat).any(axis=1)
    median = np.full(len(s), np.nan)
    median[has] = np.nanmedian(flat[has], axis=1)
    # a row with a position and a σ is in its own window; the others (before any) keep their σ
    return np.sqrt(s**2 + (factor * np.nan_to_num(median)[:, None]) ** 2)


def _transition(dt: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    """State transition F and process noise Q of the constant-velocity model over ``dt`` (state x, y, vx, vy)."""
    f = np.eye(4)
    f[0, 2] = f[1, 3] = dt
    q3, q2, q1 = q * dt**3 / 3, q * dt**2 / 2, q * dt
    qm = np.array([[q3, 0, q2, 0], [0, q3, 0, q2], [q2, 0, q1, 0], [0, q2, 0, q1]])
    return f, qm


# --------------------------------------------------------------------------- Kalman


def kalman_track(t_s: np.ndarray, z_m: np.ndarray, sigma_m: np.ndarray | None = None, *,
                 motion: str = "pedestrian", smooth: bool = False, default_sigma_m: float = 25.0,
                 sigma_floor: float = SIGMA_FLOOR) -> Track:
    """Constant-velocity Kalman filter over one sequence.

    Parameters
    ----------
    t_s : ndarray [T]
        Report times, increasing (equal times: two updates at one instant).
    z_m : ndarray [T, 2]
        Per-report positions; a NaN row (no position) is a prediction step only.
    sigma_m : ndarray [T, 2], optional
        Per-report 1σ in x and y: the measurement noise (``default_sigma_m`` where missing).
    motion : {"pedestrian", "vehicular"}
        Process-noise preset (:data:`MOTION_PRESETS`).
    smooth : bool
        Run the Rauch–Tung–Striebel smoother backwards (each estimate also uses later reports).
    sigma_floor : float
        σ floor in medians of the recent reports' σ (:func:`floored_sigma`; 0: the σ as given).

    Returns
    -------
    Track
        Filtered (or smoothed) positions and their 1σ.
    """
    preset = _preset(motion)
    t, z, s = _checked(t_s, z_m, sigma_m, default_sigma_m, sigma_floor)
    n = len(t)
    means, covs, pred_means, pred_covs, fs = (np.zeros((n, 4)), np.zeros((n, 4, 4)), np.zeros((n, 4)),
                                              np.zeros((n, 4, 4)), np.zeros((n, 4, 4)))
    first = int(np.argmax(np.isfinite(z).all(axis=1))) if np.isfinite(z).all(axis=1).any() else 0
    x = np.array([*np.nan_to_num(z[first]), 0.0, 0.0])
    # an uninformative position prior at the first report (its update then counts that report once)
    p = np.diag([(100 * s[first, 0]) ** 2, (100 * s[first, 1]) ** 2, preset.speed_sigma_m_s**2,
                 preset.speed_sigma_m_s**2])
    for k in range(n):
        f, q = _transition(t[k] - t[k - 1] if k else 0.0, preset.accel_psd_m2_s3)
        x, p = f @ x, f @ p @ f.T + q
        pred_means[k], pred_covs[k], fs[k] = x, p, f
        if np.isfinite(z[k]).all():
            x, p = _update(x, p, z[k], np.diag(s[k] ** 2))
        means[k], covs[k] = x, p
    if smooth:
        means, covs = _rts(means, covs, pred_means, pred_covs, fs)
    return Track(means[:, :2].copy(), np.sqrt(np.stack([covs[:, 0, 0], covs[:, 1, 1]], axis=1)))


def _update(x: np.ndarray, p: np.ndarray, z: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Kalman update with a position measurement; an innovation beyond the gate gets its noise inflated."""
    h = np.zeros((2, 4))
    h[0, 0] = h[1, 1] = 1.0
    innovation = z - h @ x
    s = h @ p @ h.T + r
    d2 = float(innovation @ np.linalg.solve(s, innovation))
    if d2 > GATE_D2:  # an outlier (multipath, a wrong mode): trust it as much as its distance says
        r = r * (d2 / GATE_D2)
        s = h @ p @ h.T + r
    gain = p @ h.T @ np.linalg.inv(s)
    x = x + gain @ innovation
    i_kh = np.eye(4) - gain @ h
    p = i_kh @ p @ i_kh.T + gain @ r @ gain.T  # Joseph form: stays symmetric positive definite
    return x, p


def _rts(means: np.ndarray, covs: np.ndarray, pred_means: np.ndarray, pred_covs: np.ndarray,
         fs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rauch–Tung–Striebel smoothing of a filtered sequence (``fs[k]``: the transition into step k)."""
    ms, ps = means.copy(), covs.copy()
    for k in range(len(means) - 2, -1, -1):
        c = covs[k] @ fs[k + 1].T @ np.linalg.pinv(pred_covs[k + 1])
        ms[k] = means[k] + c @ (ms[k + 1] - pred_means[k + 1])
        ps[k] = covs[k] + c @ (ps[k + 1] - pred_covs[k + 1]) @ c.T
    return ms, ps


def _preset(motion: str) -> MotionPreset:
    if motion not in MOTION_PRESETS:
        msg = f"motion: expected one of {', '.join(MOTION_PRESETS)}, got {motion!r}"
        raise InvalidInputError(msg)
    return MOTION_PRESETS[motion]


# --------------------------------------------------------------------------- particles


def particle_track(t_s: np.ndarray, z_m: np.ndarray, sigma_m: np.ndarray | None = None, *,
                   mask: OutdoorMask | None = None, motion: str = "pedestrian", particles: int = 2000,
                   seed: int = 0, default_sigma_m: float = 25.0, sigma_floor: float = SIGMA_FLOOR) -> Track:
    """A particle filter over one sequence whose particles stay in outdoor cells.

    Constant-velocity motion with the white-noise acceleration of ``motion``; a particle whose
    move ends in a building, or crosses one, is killed (weight 0); the survivors are weighted by
    a Student-t likelihood of the report (σ from the prediction: heavy tails, so an outlier
    cannot wipe the cloud out) and resampled when the effective sample size halves. The estimate
    is the weighted mean, or, should that fall inside a building (a cloud split around one), the
    particle nearest to it: never inside a building. Parameters as :func:`kalman_track`, plus
    ``mask`` (None: no buildings), ``particles`` and ``seed``.
    """
    preset = _preset(motion)
    t, z, s = _checked(t_s, z_m, sigma_m, default_sigma_m, sigma_floor)
    mask = mask if mask is not None else OutdoorMask(Grid(0.0, 0.0, 1.0, 1, 1), np.ones((1, 1), bool))
    rng = np.random.default_rng(seed)
    state: np.ndarray | None = None
    weights = np.full(particles, 1.0 / particles)
    xy, sig = np.zeros((len(t), 2)), np.zeros((len(t), 2))
    for k in range(len(t)):
        seen = bool(np.isfinite(z[k]).all())
        if state is None:
            if not seen:  # nothing to start from yet
                xy[k], sig[k] = np.nan, np.nan
                continue
            state, weights = _spawn(z[k], s[k], preset, mask, particles, rng), np.full(particles, 1.0 / particles)
        else:
            alive = _move(state, t[k] - t[k - 1], preset, mask, rng)
            weights = np.where(alive, weights, 0.0)
        if seen:
            weights = weights * _likelihood(state[:, :2], z[k], s[k])
        if not np.isfinite(weights.sum()) or weights.sum() <= 0:  # every particle walled in or refuted: restart
            if not seen:
                xy[k], sig[k] = xy[k - 1], sig[k - 1]
                continue
            state, weights = _spawn(z[k], s[k], preset, mask, particles, rng), np.full(particles, 1.0 / particles)
        weights = weights / weights.sum()
        xy[k], sig[k] = _estimate(state[:, :2], weights, mask)
        if 1.0 / float(np.sum(weights**2)) < particles / 2:
            state, weights = state[_systematic(weights, rng)], np.full(particles, 1.0 / particles)
    return Track(xy, sig)


def _spawn(z: np.ndarray, s: np.ndarray, preset: MotionPreset, mask: OutdoorMask, n: int,
           rng: np.random.Generator) -> np.ndarray:
    """``n`` particles [n, 4] around a report, in outdoor cells only, with velocities from the speed prior."""
    pos = np.empty((0, 2))
    for _ in range(20):
        draw = z + rng.normal(size=(2 * n, 2)) * s
        pos = np.concatenate([pos, draw[mask.is_outdoor(draw[:, 0], draw[:, 1])]])[:n]
        if len(pos) == n:
            break
    if len(pos) < n:  # the report sits deep inside a building: the open cells nearest to it
        pos = _nearest_open(z, mask, n - len(pos), rng, pos)
    vel = rng.normal(0.0, preset.speed_sigma_m_s, size=(n, 2))
    return np.concatenate([pos, vel], axis=1)


def _nearest_open(z: np.ndarray, mask: OutdoorMask, need: int, rng: np.random.Generator,
                  have: np.ndarray) -> np.ndarray:
    g = mask.grid
    iy, ix = np.nonzero(mask.outdoor)
    if len(iy) == 0:
        msg = "mask: the outdoor mask has no open cell; a particle filter needs somewhere to be"
        raise InvalidInputError(msg)
    cx, cy = g.x0_m + ix * g.cell_m, g.y0_m + iy * g.cell_m
    order = np.argsort(np.hypot(cx - z[0], cy - z[1]))[:max(need, 16)]
    pick = rng.choice(order, size=need)
    # within a cell, but no further than a third of it from the centre: the cell stays the open one
    jitter = rng.uniform(-0.3, 0.3, size=(need, 2)) * g.cell_m
    return np.concatenate([have, np.column_stack([cx[pick], cy[pick]]) + jitter])


def _move(state: np.ndarray, dt: float, preset: MotionPreset, mask: OutdoorMask,
          rng: np.random.Generator) -> np.ndarray:
    """Move the particles in place over ``dt``; whether each stayed in the open all the way."""
    start = state[:, :2].copy()
    if dt > 0:
        accel = rng.normal(size=(len(state), 2)) * np.sqrt(preset.accel_psd_m2_s3 / dt)
        state[:, :2] += state[:, 2:] * dt + 0.5 * accel * dt**2
        state[:, 2:] += accel * dt
    alive = mask.is_outdoor(state[:, 0], state[:, 1])
    step = np.hypot(*(state[:, :2] - start).T)
    checks = int(min(np.ceil(step.max(initial=0.0) / max(mask.grid.cell_m, 1e-6)), 64))
    for j in range(1, checks):  # a move longer than a cell must not jump through a wall
        p = start + (state[:, :2] - start) * (j / checks)
        alive &= mask.is_outdoor(p[:, 0], p[:, 1])
    return alive


def _likelihood(pos: np.ndarray, z: np.ndarray, s: np.ndarray) -> np.ndarray:
    d2 = np.sum(((pos - z) / s) ** 2, axis=1)
    return (1.0 + d2 / STUDENT_NU) ** (-(STUDENT_NU + 2) / 2)


def _estimate(pos: np.ndarray, w: np.ndarray, mask: OutdoorMask) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and 1σ; a mean inside a building moves to the nearest live particle (always open)."""
    mean = w @ pos
    sigma = np.sqrt(np.maximum(w @ (pos - mean) ** 2, 0.0))
    if not mask.is_outdoor(mean[:1], mean[1:])[0]:
        live = np.flatnonzero(w > 0)
        mean = pos[live[np.argmin(np.hypot(*(pos[live] - mean).T))]].copy()
    return mean, sigma


def _systematic(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling: indices of the particles kept."""
    n = len(w)
    edges = np.cumsum(w)
    edges[-1] = 1.0
    return np.searchsorted(edges, (rng.uniform() + np.arange(n)) / n)


# --------------------------------------------------------------------------- either


def track(t_s: np.ndarray, z_m: np.ndarray, sigma_m: np.ndarray | None, config: TrackConfig,
          mask: OutdoorMask | None = None) -> Track:
    """Track one sequence with ``config.method`` (``kalman`` or ``particle``; ``mask`` for the latter)."""
    if config.method == "kalman":
        return kalman_track(t_s, z_m, sigma_m, motion=config.motion, smooth=config.smooth,
                            default_sigma_m=config.default_sigma_m, sigma_floor=config.sigma_floor)
    if config.method == "particle":
        return particle_track(t_s, z_m, sigma_m, mask=mask, motion=config.motion, particles=config.particles,
                              seed=config.seed, default_sigma_m=config.default_sigma_m, sigma_floor=config.sigma_floor)
    msg = f"track: expected one of {', '.join(TRACK_METHODS)}, got {config.method!r}"
    raise InvalidInputError(msg)
