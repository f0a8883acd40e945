"""Radio-map channels beyond path gain (issue 18): SINR maps per cell, ToA/AoA maps per site."""

from __future__ import annotations

import numpy as np

from rflocal_core import phy
from rflocal_core.dataset.rasters import Grid
from rflocal_core.raytrace import friis_path_gain_db

NUM = phy.Numerology(scs_khz=30, n_rb=51)
NF_DB = 7.0


def _friis_maps(grid: Grid, sites_xyz: np.ndarray, freq_hz: float = 3.5e9) -> np.ndarray:
    """Free-space path gain [S, ny, nx] of sites over ``grid`` at 1.5 m, with a hole (no ray) per site."""
    x, y = np.meshgrid(grid.x_m, grid.y_m)
    d = np.sqrt((x[None] - sites_xyz[:, 0, None, None]) ** 2 + (y[None] - sites_xyz[:, 1, None, None]) ** 2
                + (1.5 - sites_xyz[:, 2, None, None]) ** 2)
    pg = friis_path_gain_db(d, freq_hz) - 0.02 * d  # some extra loss with distance, as in a city
    for s in range(len(sites_xyz)):
        pg[s, s * 5: s * 5 + 4, 3:9] = -np.inf  # shadowed cells: that cell neither serves nor interferes
    return pg


def test_sinr_map_equals_the_report_sinr_at_grid_points():
    grid = Grid(0.0, 0.0, 4.0, 40, 30)
    sites = np.array([[10.0, 20.0, 25.0], [150.0, 30.0, 30.0], [80.0, 110.0, 20.0]])
    pg = _friis_maps(grid, sites)
    tx = np.array([43.0, 40.0, 46.0])
    load = np.array([0.3, 0.7, 0.5])
    sinr_map = phy.sinr_map_db(pg, tx, load, numerology=NUM, noise_figure_db=NF_DB)
    assert sinr_map.shape == pg.shape

    # A device at some grid points reports (phy_reports, no shadowing): its SINR is the map's within 0.25 dB.
    rng = np.random.default_rng(1)
    iy, ix = rng.integers(0, grid.ny, 200), rng.integers(0, grid.nx, 200)
    rx = (pg[:, iy, ix] + tx[:, None]).T[:, None, :]  # [n, T=1, S]
    n, s = len(iy), len(tx)
    channel = phy.LinkChannel(np.full((n, 1, s, 8), np.nan), np.full((n, 1, s, 2), np.nan),
                              np.full((n, 1, s, 3), np.nan))
    reps = phy.phy_reports(rx_power_dbm=np.where(np.isfinite(rx), rx, np.nan), load=np.tile(load, (n, 1)),
                           channel=channel, velocity_m_s=np.zeros((n, 1, 3)), present=np.ones((n, 1, s), bool),
                           numerology=NUM, noise_figure_db=NF_DB, setup=phy.ArraySetup(), freq_hz=3.5e9)
    from_map = sinr_map[:, iy, ix].T
    reported = reps.sinr_db[:, 0, :]
    heard = np.isfinite(from_map)
    assert (~heard).sum() > 0 and heard.sum() > 400  # the holes are there, and most links are heard
    np.testing.assert_array_equal(np.isfinite(reported), heard)
    clipped = np.clip(from_map[heard], *phy.SINR_RANGE_DB)  # reports are clamped to SS-SINR's range
    assert np.abs(reported[heard] - clipped).max() <= phy.RATIO_STEP_DB / 2 + 1e-4


def test_sinr_map_falls_where_a_neighbour_s_load_rises():
    grid = Grid(0.0, 0.0, 4.0, 40, 30)
    sites = np.array([[10.0, 20.0, 25.0], [150.0, 30.0, 30.0], [80.0, 110.0, 20.0]])
    pg = _friis_maps(grid, sites)
    tx = np.array([43.0, 43.0, 43.0])
    low = phy.sinr_map_db(pg, tx, np.array([0.5, 0.1, 0.5]), numerology=NUM, noise_figure_db=NF_DB)
    high = phy.sinr_map_db(pg, tx, np.array([0.5, 0.9, 0.5]), numerology=NUM, noise_figure_db=NF_DB)
    # Cell 0's SINR falls wherever cell 1 is heard; cell 1's own SINR does not change (its load is not its
    # interference).
    both = np.isfinite(pg[0]) & np.isfinite(pg[1])
    assert np.all(high[0][both] < low[0][both])
    assert np.median(low[0][both] - high[0][both]) > 1.0
    np.testing.assert_allclose(high[1], low[1])
