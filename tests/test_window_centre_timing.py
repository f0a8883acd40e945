"""The window centring with mapformer's ``prior_timing="line_or_maps"`` (issue 19): the window goes on the argmax of
the same prior as the network's, ToA/AoA maps and all, exactly; with ``"line"`` it is the straight-line one as before."""

from __future__ import annotations

import numpy as np
import pytest

from rflocal_core.constants import C_M_PER_NS
from rflocal_core.dataset.rasters import Grid
from rflocal_core.models import Inputs
from rflocal_core.models.features import FeatureSpec
from rflocal_core.models.inputs import SceneMaps
from rflocal_core.models.mapformer import MapFormerConfig
from rflocal_core.models.window import (PRIOR_SPREADS, block_bound, map_position, pooled_timing_at, scene_blocks,
                                        search_loglik, timing_at)

NODES = np.array([[-280.0, -270.0, 25.0], [275.0, -285.0, 31.0], [285.0, 270.0, 18.0], [-270.0, 280.0, 40.0]])
#: Excess path (m) of each node's first path everywhere: in its ToA map and in the ranges it reports.
BIAS_M = np.array([140.0, 60.0, 100.0, 80.0])
#: Targets on the 4 m lattice whose straight-line prior argmax is over 128 m off, its 256 m window missing them.
TRUTH = np.array([[34.0, -6.0], [30.0, -54.0], [-30.0, 10.0]])


def _excess_path_scene(aoa: bool = False) -> Inputs:
    """A 600 m square of 4 m cells, four rooftop nodes, free-space path gain; ToA maps and ToA-only reports (``aoa``:
    also bearings, 25 deg off the truth) the straight line node -> target (device at 1.5 m) plus :data:`BIAS_M`,
    AoA maps the bearing node -> point."""
    half, cell = 300.0, 4.0
    k = round(2 * half / cell)
    grid = Grid(-half + cell / 2, -half + cell / 2, cell, k, k)
    gx, gy = np.meshgrid(grid.x_m, grid.y_m)
    dx, dy = gx[None] - NODES[:, 0, None, None], gy[None] - NODES[:, 1, None, None]
    dist = np.sqrt(dx**2 + dy**2 + (NODES[:, 2, None, None] - 1.5) ** 2)
    pg = -(32.4 + 20 * np.log10(3.5) + 20 * np.log10(dist))
    channels = {"toa_ns": ((dist + BIAS_M[:, None, None]) / C_M_PER_NS).astype(np.float32),
                "aoa_deg": (np.degrees(np.arctan2(dx, dy)) % 360).astype(np.float32)}
    maps = SceneMaps("hand", grid, pg.astype(np.float32), np.ones((k, k), bool), NODES.copy(), np.full(4, 20.0),
                     channels=channels)
    n = len(TRUTH)
    d = TRUTH[:, None, :] - NODES[None, :, :2]
    true = np.sqrt((d**2).sum(-1) + (NODES[None, :, 2] - 1.5) ** 2)
    bearing = (np.degrees(np.arctan2(d[..., 0], d[..., 1])) + 25.0) % 360 if aoa else np.full((n, 4), np.nan)
    return Inputs("hand", "test", "ue", np.arange(n), np.full((n, 4), np.nan), (true + BIAS_M) / C_M_PER_NS, bearing,
                  np.ones((n, 4), np.int8), np.broadcast_to(NODES, (n, 4, 3)).copy(), np.ones((n, 4), bool),
                  np.full((n, 4), 20.0), np.broadcast_to(np.arange(4), (n, 4)).copy(), TRUTH.copy(), np.full(n, 1.5),
                  np.zeros(n, np.int64), ("hand",), {"hand": maps}, 4)


def _brute_force(x: Inputs, timing: bool) -> np.ndarray:
    """[N, 2] argmax of the prior (mapformer's spreads) over every point of the scene's 4 m lattice."""
    maps = x.maps["hand"]
    px, py = np.meshgrid(maps.grid.x_m, maps.grid.y_m)  # the 4 m map cells: the window lattice itself
    px, py = px.ravel(), py.ravel()
    pg = maps.path_gain_db.reshape(len(NODES), -1).astype(np.float64)
    ll = search_loglik(x, np.arange(len(x.indices)), pg, px, py, PRIOR_SPREADS,
                       timing_at(maps, px, py) if timing else None)
    best = ll.argmax(1)
    return np.stack([px[best], py[best]], 1)


def _windows(x: Inputs, options: dict[str, str]) -> tuple[np.ndarray, np.ndarray, FeatureSpec]:
    """Origins [N, 2] and sides [N] of mapformer's windows (window frame, 4 m x 64) with ``options``; its spec."""
    spec = FeatureSpec.fit(x, frame="window", window=MapFormerConfig.from_dict({"cell_m": 4.0, **options}).window())
    origin, side = spec.frames(x)
    return origin, side, spec


def test_line_or_maps_centres_the_window_on_the_target_where_the_line_prior_misses_it() -> None:
    """Ranges and ToA maps 60-140 m longer than the straight lines: the straight-line prior's argmax is over 128 m
    off and its window misses the target; ``prior_timing="line_or_maps"`` centres the window on the mixed prior's
    exact argmax (brute force over the lattice), the truth, well inside."""
    x = _excess_path_scene()
    line_origin, side, line_spec = _windows(x, {"prior_timing": "line"})
    maps_origin, _, maps_spec = _windows(x, {"prior_timing": "line_or_maps"})
    assert (line_spec.centre_timing, maps_spec.centre_timing) == ("line", "line_or_maps")
    line_centre, _ = map_position(x, fine_m=4.0)
    maps_centre, _ = map_position(x, fine_m=4.0, prior_timing="line_or_maps")
    np.testing.assert_array_equal(maps_centre, _brute_force(x, timing=True))
    assert np.hypot(*(maps_centre - TRUTH).T).max() < 1e-9, maps_centre
    assert np.hypot(*(line_centre - TRUTH).T).min() > 128.0, line_centre
    inside = ((TRUTH >= maps_origin + 16.0) & (TRUTH < maps_origin + side[:, None] - 16.0)).all(1)
    missed = ((TRUTH < line_origin) | (TRUTH >= line_origin + side[:, None])).any(1)
    assert inside.all() and missed.all(), (maps_origin, line_origin)


def test_line_centre_is_the_straight_line_argmax_as_before_the_option() -> None:
    """With ``"line"`` the centre is the straight-line prior's exact argmax, and the windows are those of a spec
    saved before ``centre_timing`` existed (old checkpoints load with straight lines)."""
    x = _excess_path_scene()
    np.testing.assert_array_equal(map_position(x, fine_m=4.0)[0], _brute_force(x, timing=False))
    origin, side, spec = _windows(x, {})
    old = {k: v for k, v in spec.to_dict().items() if k != "centre_timing"}
    np.testing.assert_array_equal(FeatureSpec.from_dict(old).frames(x)[0], origin)
    assert MapFormerConfig().window() == (4.0, 64, "prior", "line")


def test_block_bounds_hold_every_point_of_their_block_with_the_maps() -> None:
    """The exact search's bound of a block (ToA and AoA map terms over the block's first-path interval and arc of
    bearings, mixed with the straight line's) is at least the prior at each of its points, and it prunes: of the 361
    blocks, a handful could beat the prior's best point."""
    x = _excess_path_scene(aoa=True)
    maps = x.maps["hand"]
    blocks = scene_blocks(maps, 4.0, 8, timing=True)
    assert blocks.timing is not None
    px, py = np.meshgrid(maps.grid.x_m, maps.grid.y_m)
    px, py = px.ravel(), py.ravel()
    rows = np.arange(len(x.indices))
    ll = search_loglik(x, rows, maps.path_gain_db.reshape(len(NODES), -1).astype(np.float64), px, py, PRIOR_SPREADS,
                       timing_at(maps, px, py))
    corner = blocks.centres_m.min(0) - blocks.half_m - 2.0  # the south-west corner of the blocks
    block = ((py - corner[1]) // 32).astype(int) * len(np.unique(blocks.centres_m[:, 0])) + ((px - corner[0]) // 32)
    per_block = block_bound(x, rows, blocks, PRIOR_SPREADS)
    assert (ll <= per_block[:, block.astype(int)] + 1e-9).all()  # never short of a point
    assert per_block.shape[1] == 361 and ((per_block > ll.max(1, keepdims=True)).sum(1) <= 4).all()


def test_unknown_prior_timing_is_refused() -> None:
    """A centring asked for with a prior the search does not know: a clear error naming the field."""
    from rflocal_core.errors import InvalidInputError

    expected = r"prior_timing: expected one of line, line_or_maps, line_or_pooled_maps, got 'maps'"
    with pytest.raises(InvalidInputError, match=expected):
        map_position(_excess_path_scene(), fine_m=4.0, prior_timing="maps")


def _rough_maps_scene() -> Inputs:
    """:func:`_excess_path_scene` with bearings, its ToA maps off by up to 12 m from cell to cell (seeded): a map
    whose first path changes faster than its cells, where pooling its terms moves the prior."""
    x = _excess_path_scene(aoa=True)
    maps = x.maps["hand"]
    rough = np.random.default_rng(7).uniform(-12.0, 12.0, maps.channels["toa_ns"].shape) / C_M_PER_NS
    channels = {**maps.channels, "toa_ns": (maps.channels["toa_ns"] + rough).astype(np.float32)}
    from dataclasses import replace
    return replace(x, maps={"hand": replace(maps, channels=channels)})


def test_line_or_pooled_maps_centre_is_the_exact_argmax_of_the_pooled_prior_and_its_bounds_hold() -> None:
    """``prior_timing="line_or_pooled_maps"`` (brief A26): the window centre is the argmax over the whole lattice of
    the prior whose map terms are each slot's even mixture over the 3x3 lattice points around (brute force), which
    is not the unpooled prior's here, and every block bound holds each of its points under it."""
    x = _rough_maps_scene()
    maps = x.maps["hand"]
    px, py = np.meshgrid(maps.grid.x_m, maps.grid.y_m)
    px, py = px.ravel(), py.ravel()
    rows = np.arange(len(x.indices))
    pg = maps.path_gain_db.reshape(len(NODES), -1).astype(np.float64)
    pooled = search_loglik(x, rows, pg, px, py, PRIOR_SPREADS, pooled_timing_at(maps, px, py, 4.0, 1))
    plain = search_loglik(x, rows, pg, px, py, PRIOR_SPREADS, timing_at(maps, px, py))
    brute = np.stack([px[pooled.argmax(1)], py[pooled.argmax(1)]], 1)
    centre, ok = map_position(x, fine_m=4.0, prior_timing="line_or_pooled_maps")
    assert ok.all()
    np.testing.assert_array_equal(centre, brute)
    assert not np.allclose(pooled, plain)
    blocks = scene_blocks(maps, 4.0, 8, timing=True, reach=1)
    corner = blocks.centres_m.min(0) - blocks.half_m - 2.0
    block = ((py - corner[1]) // 32).astype(int) * len(np.unique(blocks.centres_m[:, 0])) + ((px - corner[0]) // 32)
    per_block = block_bound(x, rows, blocks, PRIOR_SPREADS)
    assert (pooled <= per_block[:, block.astype(int)] + 1e-9).all()


def test_pooled_map_term_is_the_log_mean_over_the_neighbours_in_torch_as_in_the_search() -> None:
    """mapformer's :func:`pool_map_cells` (the prior on its raster) is the log of the mean likelihood over the 3x3
    cells around each cell, the raster's edge cells repeated: the window search's mixture over its shifts."""
    import torch

    from rflocal_core.models.mapformer import pool_map_cells

    term = torch.from_numpy(np.random.default_rng(3).normal(-3.0, 2.0, (2, 3, 5, 6)))
    pooled = pool_map_cells(term, 1).numpy()
    pad = np.pad(term.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    shifts = np.stack([pad[:, :, dy:dy + 5, dx:dx + 6] for dy in range(3) for dx in range(3)])
    np.testing.assert_allclose(pooled, np.log(np.exp(shifts).mean(0)), rtol=1e-12)
    assert torch.equal(pool_map_cells(term, 0), term)
