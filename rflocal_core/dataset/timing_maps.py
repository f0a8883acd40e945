"""ToA and AoA maps per site: ``PathSolver`` on a coarser grid, interpolated to the radio-map grid.

Sionna's ``RadioMapSolver`` gives path gain only. The time of arrival (first path) and the
angle of arrival at the site (the strongest path's compass bearing, as a report's ``aoa_deg``)
come from exact paths (:func:`rflocal_core.raytrace.compute_paths`), traced from every site to
the nodes of a grid ``factor`` times coarser than the map's, at the measurement-plane height.
The coarse nodes start at the map's first cell centre and reach past its last, so every map
cell lies between four nodes: bilinear interpolation, NaN-aware (the corners without a path
drop out and the others are re-weighted), with the angle interpolated on the circle (the mean
of unit vectors). A map cell is masked (no path) when corners with a path carry less than half
of its interpolation weight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from rflocal_core.dataset.rasters import Grid


@dataclass
class TimingMaps:
    """ToA and AoA maps of every site on the radio-map grid.

    Attributes
    ----------
    toa_ns : ndarray [S, ny, nx] float32
        First-path delay from the site, ns; NaN where masked.
    aoa_deg : ndarray [S, ny, nx] float32
        Compass bearing at the site of the strongest path, degrees in [0, 360); NaN where masked.
    mask : ndarray [S, ny, nx] bool
        True where the maps hold a value (a path reached the nearby coarse nodes).
    coarse : Grid
        The grid the paths were traced on.
    seconds : float
        Wall time of the path tracing.
    """

    toa_ns: np.ndarray
    aoa_deg: np.ndarray
    mask: np.ndarray
    coarse: Grid
    seconds: float


def coarse_grid(grid: Grid, factor: int) -> Grid:
    """Nodes every ``factor`` cells of ``grid`` from its first cell centre, reaching at least its last one."""
    nx = -(-(grid.nx - 1) // factor) + 1
    ny = -(-(grid.ny - 1) // factor) + 1
    return Grid(grid.x0_m, grid.y0_m, grid.cell_m * factor, nx, ny)


def _axis_weights(n_fine: int, n_coarse: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower coarse node and the weight of the upper one, per fine index along one axis."""
    pos = np.arange(n_fine) / factor
    lower = np.minimum(np.floor(pos).astype(np.int64), max(n_coarse - 2, 0))
    return lower, np.clip(pos - lower, 0.0, 1.0) if n_coarse > 1 else np.zeros(n_fine)


def interpolate(coarse_values: np.ndarray, *, factor: int, shape: tuple[int, int],
                circular: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation of [..., cy, cx] node values (NaN: no value) to a ``factor`` times finer grid.

    Parameters
    ----------
    coarse_values : ndarray [..., cy, cx]
        Values at the nodes of :func:`coarse_grid`.
    factor : int
    shape : (ny, nx)
        The fine grid's shape.
    circular : bool
        Values are angles in degrees: interpolate their unit vectors, return the angle in [0, 360).

    Returns
    -------
    values : ndarray [..., ny, nx]
        NaN where masked.
    mask : ndarray [..., ny, nx] bool
        Corners with a value carry at least half of the weight.
    """
    ny, nx = shape
    cy, cx = coarse_values.shape[-2:]
    y0, ty = _axis_weights(ny, cy, factor)
    x0, tx = _axis_weights(nx, cx, factor)
    y1, x1 = np.minimum(y0 + 1, cy - 1), np.minimum(x0 + 1, cx - 1)
    ok = np.isfinite(coarse_values)
    if circular:
        rad = np.radians(np.where(ok, coarse_values, 0.0))
        parts = [np.sin(rad), np.cos(rad)]
    else:
        parts = [np.where(ok, coarse_values, 0.0)]
    weight = np.zeros((*coarse_values.shape[:-2], ny, nx))
    sums = [np.zeros_like(weight) for _ in parts]
    for yi, wy in ((y0, 1.0 - ty), (y1, ty)):
        for xi, wx in ((x0, 1.0 - tx), (x1, tx)):
            w = wy[:, None] * wx[None, :] * ok[..., yi[:, None], xi[None, :]]
            weight += w
            for total, part in zip(sums, parts):
                total += w * part[..., yi[:, None], xi[None, :]]
    mask = weight >= 0.5 - 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        if circular:
            values = np.mod(np.degrees(np.arctan2(sums[0], sums[1])), 360.0)
        else:
            values = sums[0] / weight
    return np.where(mask, values, np.nan), mask


def timing_maps(scene: str, sites: list[dict[str, Any]], grid: Grid, *, factor: int, plane_height_m: float,
                max_depth: int, samples_per_src: int, seed: int, diffraction: bool,
                batch_size: int = 100) -> TimingMaps:
    """ToA and AoA maps of ``sites`` of ``scene`` on ``grid``, traced every ``factor`` cells (Sionna ``PathSolver``).

    Parameters
    ----------
    scene : str
        Scene name in the workspace.
    sites : list of dict
        Site records (``scene.json``'s), the transmitters.
    grid : Grid
        The radio-map grid.
    factor : int
        Coarsening: one traced node every ``factor`` map cells per axis (``factor``² fewer positions).
    plane_height_m : float
        Height of the nodes (the measurement plane).
    max_depth, samples_per_src, seed, diffraction
        ``PathSolver`` settings (those of the report paths).
    batch_size : int
        Nodes per solver call (bounds memory).
    """
    from rflocal_core.raytrace import band_scenes, compute_band_paths

    coarse = coarse_grid(grid, factor)
    gx, gy = np.meshgrid(coarse.x_m, coarse.y_m)
    nodes = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, float(plane_height_m))])
    t0 = time.perf_counter()
    feats = compute_band_paths(band_scenes(scene, sites=sites), nodes, max_depth=max_depth,  # each band at its carrier
                               samples_per_src=samples_per_src, batch_size=batch_size, seed=seed,
                               diffraction=diffraction)
    seconds = time.perf_counter() - t0
    shape = (len(sites), coarse.ny, coarse.nx)
    toa, toa_ok = interpolate(feats.toa_ns.T.reshape(shape), factor=factor, shape=(grid.ny, grid.nx))
    aoa, _ = interpolate(feats.aoa_deg.T.reshape(shape), factor=factor, shape=(grid.ny, grid.nx), circular=True)
    return TimingMaps(toa.astype(np.float32), np.where(toa_ok, aoa, np.nan).astype(np.float32), toa_ok, coarse,
                      seconds)
