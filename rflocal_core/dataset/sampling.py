"""Target positions and their motion: outdoors, within coverage, along free paths."""

from __future__ import annotations

import numpy as np
import shapely

from rflocal_core.dataset.config import MOTION_SPEED_M_S, GenerationConfig
from rflocal_core.dataset.rasters import Grid
from rflocal_core.errors import InvalidInputError


def candidate_cells(
    covered_count: np.ndarray, footprint: np.ndarray, grid: Grid, site_xy: np.ndarray, config: GenerationConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of usable cells and their sampling weights.

    A cell is usable if it is outdoors, covered by at least ``min_sites`` sites and
    within the optional distance bounds to the nearest site.
    """
    ok = (footprint == 0) & (covered_count >= config.min_sites)
    if config.min_distance_m is not None or config.max_distance_m is not None:
        gx, gy = np.meshgrid(grid.x_m, grid.y_m)
        nearest = np.min(np.hypot(gx[None] - site_xy[:, 0, None, None], gy[None] - site_xy[:, 1, None, None]), axis=0)
        if config.min_distance_m is not None:
            ok &= nearest >= config.min_distance_m
        if config.max_distance_m is not None:
            ok &= nearest <= config.max_distance_m
    cells = np.flatnonzero(ok)
    weights = covered_count.ravel()[cells].astype(float) if config.sampling == "coverage" else np.ones(len(cells))
    return cells, weights / max(weights.sum(), 1e-12)


def sample_positions(
    n: int, cells: np.ndarray, weights: np.ndarray, grid: Grid, buildings: list, rng: np.random.Generator,
    *, scene: str = "",
) -> np.ndarray:
    """Draw ``n`` outdoor points [n, 2]: a cell by weight, then uniformly inside it."""
    if len(cells) == 0:
        msg = (
            f"scene {scene!r}: no outdoor position is covered by enough sites; lower min_sites or "
            "sensitivity_dbm, relax the distance bounds, or add sites"
        )
        raise InvalidInputError(msg)
    union = shapely.unary_union(buildings) if buildings else None
    out = np.empty((0, 2))
    for _ in range(100):
        need = n - len(out)
        if need <= 0:
            break
        pick = rng.choice(cells, size=2 * need + 8, p=weights)
        iy, ix = np.unravel_index(pick, (grid.ny, grid.nx))
        x = grid.x_m[ix] + rng.uniform(-0.5, 0.5, len(pick)) * grid.cell_m
        y = grid.y_m[iy] + rng.uniform(-0.5, 0.5, len(pick)) * grid.cell_m
        if union is not None:
            keep = ~shapely.contains_xy(union, x, y)
            x, y = x[keep], y[keep]
        out = np.concatenate([out, np.column_stack([x, y])[:need]])
    return out[:n]


def trajectories(
    start_xy: np.ndarray, config: GenerationConfig, grid: Grid, footprint: np.ndarray, buildings: list,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move each target from its start along outdoor paths.

    Returns
    -------
    xy : ndarray [n, T, 2]
        Positions per step (T = ``config.max_steps``; padded steps repeat the last).
    t_s : ndarray [n, T]
        Report times (0 at the first report).
    step_mask : ndarray [n, T] bool
        Which steps exist (each sample has 5-20 or as configured).
    """
    n, steps = len(start_xy), config.max_steps
    lo, hi = config.sequence_length
    lengths = rng.integers(lo, hi + 1, size=n)
    dt = rng.uniform(*config.interval_s, size=(n, steps))
    dt[:, 0] = 0.0
    t_s = np.cumsum(dt, axis=1)
    step_mask = np.arange(steps)[None, :] < lengths[:, None]
    xy = np.repeat(start_xy[:, None, :], steps, axis=1).astype(np.float64)
    speed = MOTION_SPEED_M_S[config.motion]
    if speed == 0 or steps == 1:
        return xy, np.where(step_mask, t_s, 0.0), step_mask
    union = shapely.unary_union(buildings) if buildings else None
    x_lo, x_hi = grid.x_m[0] - grid.cell_m / 2, grid.x_m[-1] + grid.cell_m / 2
    y_lo, y_hi = grid.y_m[0] - grid.cell_m / 2, grid.y_m[-1] + grid.cell_m / 2
    heading = rng.uniform(0, 2 * np.pi, size=n)
    for k in range(1, steps):
        step = speed * dt[:, k]
        pos = xy[:, k - 1].copy()
        moved = np.zeros(n, dtype=bool)
        for attempt in range(8):
            # Persistent heading with small turns; after a blocked attempt, any direction.
            turn = rng.normal(0.0, 0.35, n) if attempt == 0 else rng.uniform(-np.pi, np.pi, n)
            trial_heading = np.where(moved, heading, heading + turn)
            cand = pos + step[:, None] * np.column_stack([np.cos(trial_heading), np.sin(trial_heading)])
            inside = (cand[:, 0] > x_lo) & (cand[:, 0] < x_hi) & (cand[:, 1] > y_lo) & (cand[:, 1] < y_hi)
            free = inside.copy()
            if union is not None and inside.any():
                free[inside] = ~shapely.contains_xy(union, cand[inside, 0], cand[inside, 1])
            accept = free & ~moved
            xy[accept, k] = cand[accept]
            heading = np.where(accept, trial_heading, heading)
            moved |= accept
            if moved.all():
                break
        xy[~moved, k] = pos[~moved]  # boxed in: stand still this step
    last = xy[np.arange(n), lengths - 1]
    xy = np.where(step_mask[..., None], xy, last[:, None, :])  # padded steps repeat the last report
    return xy, np.where(step_mask, t_s, 0.0), step_mask
