"""Radio-map channels beyond path gain (issue 18): SINR maps per cell, ToA/AoA maps per site."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rflocal_core import phy
from rflocal_core.constants import SPEED_OF_LIGHT_M_S
from rflocal_core.dataset.rasters import Grid, scene_grid
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


# --------------------------------------------------------------------------- ToA / AoA maps

def test_interpolation_is_exact_on_planes_and_wraps_angles():
    """Bilinear on a plane is exact; angles across north interpolate on the circle; no-path nodes mask."""
    from rflocal_core.dataset.timing_maps import coarse_grid, interpolate

    grid = Grid(0.0, 0.0, 2.0, 13, 9)
    coarse = coarse_grid(grid, 4)
    assert (coarse.nx, coarse.ny) == (4, 3) and coarse.x_m[-1] >= grid.x_m[-1] and coarse.y_m[-1] >= grid.y_m[-1]
    cx, cy = np.meshgrid(coarse.x_m, coarse.y_m)
    fx, fy = np.meshgrid(grid.x_m, grid.y_m)
    plane, mask = interpolate((3.0 * cx - 2.0 * cy + 1.0)[None], factor=4, shape=(grid.ny, grid.nx))
    assert mask.all()
    np.testing.assert_allclose(plane[0], 3.0 * fx - 2.0 * fy + 1.0, atol=1e-9)
    angles = np.where(cx < 10.0, 350.0, 10.0)  # west half at 350°, east half at 10°
    interp, _ = interpolate(angles[None], factor=4, shape=(grid.ny, grid.nx), circular=True)
    spread = np.minimum(interp, 360.0 - interp)  # distance from north
    assert spread.max() <= 10.0 + 1e-6  # never through 180° as a plain average would go
    holes = np.ones((coarse.ny, coarse.nx))
    holes[:, :2] = np.nan  # the west half has no path
    values, mask = interpolate(holes[None], factor=4, shape=(grid.ny, grid.nx))
    assert not mask[0, :, :6].any() and mask[0, :, 6:].all()  # nodes at fine x 4 (none) and 8: masked up to half-way
    np.testing.assert_allclose(values[0][mask[0]], 1.0)


LAT0, LON0 = 48.0, 11.0


def _hut(lat: float, lon: float, side_m: float = 4.0) -> dict[str, Any]:
    """A square 6 m building of ``side_m`` with its south-west corner at (lat, lon)."""
    dlat = side_m / 111_320.0
    dlon = side_m / (111_320.0 * math.cos(math.radians(lat)))
    ring = [[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]
    return {"type": "Feature", "properties": {"height": "6"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


@pytest.fixture(scope="module")
def open_ws(tmp_path_factory: pytest.TempPathFactory, workspace_env) -> Path:
    """A 120 m open scene (two huts in far corners: the scene's extent) with two 10 m masts."""
    from rflocal_core.scene import CustomSite, MaterialConfig, SceneConfig, SiteConfig, build_scene

    ws = tmp_path_factory.mktemp("timing_maps_ws")
    half_lat, hut = 60.0 / 111_320.0, 4.0 / 111_320.0
    half_lon = 60.0 / (111_320.0 * math.cos(math.radians(LAT0)))
    hut_lon = 4.0 / (111_320.0 * math.cos(math.radians(LAT0)))
    features = [_hut(LAT0 - half_lat, LON0 - half_lon), _hut(LAT0 + half_lat - hut, LON0 + half_lon - hut_lon)]
    path = ws / "huts.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    masts = (CustomSite(x_m=-20.0, y_m=10.0, height_m=10.0, mount="ground", id="a"),
             CustomSite(x_m=30.0, y_m=-25.0, height_m=10.0, mount="ground", id="b"))
    with workspace_env(ws):
        build_scene(SceneConfig(name="open", source="geojson_file", path=str(path),
                                sites=SiteConfig(placement="custom", custom=masts)))
        # the same place at 28 GHz: the ITU ground models stop at 10 GHz, concrete holds to 100 GHz
        build_scene(SceneConfig(name="open28", source="geojson_file", path=str(path),
                                materials=MaterialConfig(building="concrete", ground="concrete"),
                                sites=SiteConfig(placement="custom", custom=masts, freq_hz=28e9)))
    return ws


@pytest.mark.raytrace
def test_los_toa_map_is_distance_over_c_and_aoa_map_is_the_bearing(open_ws: Path, workspace_env) -> None:
    """Line of sight everywhere: ToA map = 3-D distance / c within a map cell, AoA map = bearing from the site."""
    from rflocal_core.dataset.timing_maps import timing_maps
    from rflocal_core.scene import load_scene_meta

    with workspace_env(open_ws):
        meta = load_scene_meta("open")
        grid = scene_grid(meta, 4.0)
        t0 = time.perf_counter()
        maps = timing_maps("open", meta["sites"], grid, factor=4, plane_height_m=1.5, max_depth=0,
                           samples_per_src=10_000, seed=1, diffraction=False)
        print(f"timing maps: {maps.coarse.nx}x{maps.coarse.ny} nodes x {len(meta['sites'])} sites, "
              f"{maps.seconds:.2f} s paths, {time.perf_counter() - t0:.2f} s in all")
    assert maps.toa_ns.shape == (2, grid.ny, grid.nx)
    # the first node lies inside the south-west hut (no direct path there): masked, with its neighbourhood only
    assert not maps.mask[:, 0, 0].any() and maps.mask.mean() > 0.95
    np.testing.assert_array_equal(np.isfinite(maps.toa_ns), maps.mask)
    np.testing.assert_array_equal(np.isfinite(maps.aoa_deg), maps.mask)
    fx, fy = np.meshgrid(grid.x_m, grid.y_m)
    for k, site in enumerate(meta["sites"]):
        dx, dy = fx - site["x_m"], fy - site["y_m"]
        horizontal = np.hypot(dx, dy)
        # the cone's tip is not bilinear: leave the nodes around it out
        far = (horizontal >= 2 * maps.coarse.cell_m) & maps.mask[k]
        # next to a node without a path the map takes the nodes with one (up to half a coarse cell away)
        unmasked = ~maps.mask[k]
        near_hole = np.hypot(fx - fx[unmasked].max(), fy - fy[unmasked].max()) <= maps.coarse.cell_m
        distance = np.hypot(horizontal, site["z_m"] - 1.5)
        toa_err = np.abs(maps.toa_ns[k] * 1e-9 * SPEED_OF_LIGHT_M_S - distance)
        assert toa_err[far & ~near_hole].max() <= grid.cell_m
        assert toa_err[far].max() <= maps.coarse.cell_m / 2
        bearing = np.mod(np.degrees(np.arctan2(dx, dy)), 360.0)
        err = np.abs((maps.aoa_deg[k] - bearing + 180.0) % 360.0 - 180.0)
        assert err[far & ~near_hole].max() < 3.0, err[far & ~near_hole].max()
        assert np.median(err[far]) < 1.0


# --------------------------------------------------------------------------- generated, read, fed to mapformer

TM_DS = "tmds"


@pytest.fixture(scope="module")
def timing_ds(open_ws: Path, workspace_env) -> Path:
    """A small ue dataset on the open scene at 3.5 and at 28 GHz with ToA/AoA maps (8 m maps, traced every 2 cells)."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset

    with workspace_env(open_ws):
        generate_dataset(GenerationConfig(
            name=TM_DS, scenes=("open", "open28"), samples_per_scene=60, mode="ue", cell_size_m=8.0, min_sites=1,
            map_samples_per_tx=100_000, map_max_depth=1, paths_samples_per_src=10_000, paths_max_depth=1,
            timing_maps=True, timing_map_factor=2))
    return open_ws


@pytest.mark.raytrace
def test_generated_maps_are_stored_read_and_the_toa_stream_peaks_at_the_truth(timing_ds: Path, workspace_env):
    """Zarr holds ToA/AoA maps with their mask; mapformer's map-channel stream matches the reports best near the truth."""
    import torch

    from rflocal_core.dataset import open_dataset
    from rflocal_core.models.features import FeatureSpec, make_batch
    from rflocal_core.models.inputs import load_inputs
    from rflocal_core.models.mapformer import CHANNEL_STREAM, channel_stream
    from rflocal_core.models.maps import MAP_CHANNELS, MapSource, lookup

    with workspace_env(timing_ds):
        g = open_dataset(TM_DS)["scenes/open"]
        toa, mask = np.asarray(g["toa_ns"]), np.asarray(g["mask_timing"])
        assert toa.shape == np.asarray(g["path_gain_db"]).shape == np.asarray(g["sinr_db"]).shape
        np.testing.assert_array_equal(np.isfinite(toa), mask)
        assert mask.mean() > 0.9 and g.attrs["timing_grid"]["cell_m"] == 16.0
        train, x = load_inputs(TM_DS, "train"), load_inputs(TM_DS, "train")
    assert set(x.maps["open"].channels) == {"sinr_db", "toa_ns", "aoa_deg"}
    spec = FeatureSpec.fit(train)
    src = MapSource.from_inputs(x, spec, res=32, channels=True)
    mb = src.batch(make_batch(x, spec), np.arange(len(x)))
    assert mb.site_channels.shape == (len(x), x.node_mask.shape[1], len(MAP_CHANNELS), 32, 32)
    stream = channel_stream(mb)
    assert stream.shape == (len(x), len(CHANNEL_STREAM), 32, 32)
    truth = torch.from_numpy(spec.to_unit(x.truth_m)).float()
    at_truth = lookup(stream, truth).numpy()  # [N, 5]
    toa_match, aoa_match = at_truth[:, 0], at_truth[:, 2]
    assert np.median(toa_match) > 0.8 and np.median(aoa_match) > 0.95
    # the truth's cell beats most cells of its own map: the ToA/AoA maps locate the device
    rank = (stream[:, 0] * stream[:, 2] > torch.from_numpy(toa_match * aoa_match)[:, None, None]).float().mean((1, 2))
    assert np.median(rank.numpy()) < 0.05
    assert MapSource.from_inputs(x, spec, res=32).batch(make_batch(x, spec), np.arange(2)).site_channels is None
    # the window frame cuts the same channels around each sample (16 cells of 8 m)
    window = FeatureSpec.fit(train, frame="window", window=(8.0, 16))
    wb = MapSource.from_inputs(x, window, res=16, channels=True).batch(make_batch(x, window), np.arange(len(x)))
    assert wb.site_channels.shape == (len(x), x.node_mask.shape[1], len(MAP_CHANNELS), 16, 16)
    at_truth = lookup(channel_stream(wb), wb.base.truth.float()).numpy()  # the truth in its own window
    assert np.median(at_truth[:, 0]) > 0.8 and np.median(at_truth[:, 2]) > 0.95


@pytest.mark.raytrace
def test_mapformer_reads_the_stream_trains_on_it_and_keeps_it_consistent_under_rotation(timing_ds: Path,
                                                                                          workspace_env):
    """With ``use_map_channels`` the stream reaches the loss's gradient; rotating the batch turns the AoA maps with
    the reported bearings (the AoA match at the moved truth is unchanged); the ablation study has both arms."""
    import torch

    from rflocal_core.ablate import STUDIES
    from rflocal_core.models.features import FeatureSpec, make_batch
    from rflocal_core.models.inputs import load_inputs
    from rflocal_core.models.mapformer import MapFormer, MapFormerConfig, channel_stream
    from rflocal_core.models.maps import MapSource, lookup

    with workspace_env(timing_ds):
        x = load_inputs(TM_DS, "train")
    spec = FeatureSpec.fit(x)
    rows = np.arange(16)
    mb = MapSource.from_inputs(x, spec, res=32, channels=True).batch(make_batch(x, spec).index(rows), rows)
    torch.manual_seed(0)
    # no physics prior: it starts the heads at zero, and no gradient would reach the map encoder at first
    config = {"d_model": 32, "heads": 2, "layers": 1, "map_res": 32, "grid_cells": 8, "physics_prior": False}
    with_stream = MapFormer(MapFormerConfig.from_dict({**config, "use_map_channels": True}), vocab_size=4)
    without = MapFormer(MapFormerConfig.from_dict(config), vocab_size=4)
    assert with_stream.map_channels == without.map_channels + 5
    out = with_stream(mb)
    loss, _ = with_stream.loss(mb, out)
    loss.backward()
    first = with_stream.map_encoder.parameters().__next__()  # the embedding over the input channels
    assert first.grad is not None and float(first.grad[:, -5:].abs().sum()) > 0  # the last 5 inputs: the stream

    rotate = MapFormer(MapFormerConfig.from_dict({**config, "use_map_channels": True, "map_rotation_deg": 30.0,
                                                  "map_scale": 0.0, "feature_dropout": 0.0,
                                                  "node_dropout": [0.0], "rss_noise_db": 0.0,
                                                  "position_jitter_m": 0.0}), vocab_size=4)
    moved = rotate.augment(mb, epoch_fraction=1.0, extent_m=spec.extent_m, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(moved.site_channels, mb.site_channels)
    before = lookup(channel_stream(mb), mb.base.truth.float())[:, 2]
    after = lookup(channel_stream(moved), moved.base.truth.float())[:, 2]
    assert float((before - after).abs().median()) < 0.02
    arms = {v.name: v.model_config for v in STUDIES["map-channels"].variants}
    assert arms == {"path gain + scene": {}, "+ SINR/ToA/AoA maps": {"use_map_channels": True}}


@pytest.mark.raytrace
def test_a_dataset_mixes_two_bands_of_one_place(timing_ds: Path, workspace_env):
    """Each sample carries its scene's band; at 28 GHz the maps lose 20·log10(8) = 18.1 dB against 3.5 GHz in line
    of sight, and the ToA maps do not depend on the band."""
    from rflocal_core.dataset import open_dataset

    with workspace_env(timing_ds):
        root = open_dataset(TM_DS)
        carrier = np.asarray(root["samples/carrier_hz"])
        scene = np.asarray(root["samples/scene_idx"])
        low, high = root["scenes/open"], root["scenes/open28"]
        pg_low, pg_high = np.asarray(low["path_gain_db"]), np.asarray(high["path_gain_db"])
        toa_low, toa_high = np.asarray(low["toa_ns"]), np.asarray(high["toa_ns"])
    np.testing.assert_array_equal(carrier, np.where(scene == 0, 3.5e9, 28e9))
    both = np.isfinite(pg_low) & np.isfinite(pg_high)
    assert both.mean() > 0.9
    assert np.median((pg_high - pg_low)[both]) == pytest.approx(-20 * np.log10(8.0), abs=1.5)
    timed = np.isfinite(toa_low) & np.isfinite(toa_high)
    assert timed.mean() > 0.9 and np.abs(toa_high - toa_low)[timed].max() < 1.0


@pytest.mark.raytrace
def test_band_token_feature_trains_and_travels_in_the_checkpoint(timing_ds: Path, workspace_env):
    """``band_feature``: each sample's band (3.5 GHz: 0, 28 GHz: 1) is a token column, read by setnet and heimdall."""
    from dataclasses import replace

    from rflocal_core.ablate import STUDIES
    from rflocal_core.infer import load_run
    from rflocal_core.models.features import BAND_COLUMNS, FeatureSpec, make_batch, token_width
    from rflocal_core.models.inputs import load_inputs
    from rflocal_core.models.nets import build_network
    from rflocal_core.train import train

    with workspace_env(timing_ds):
        result = train(TM_DS, "setnet", model_config={"band_feature": True, "d_model": 32, "layers": 1},
                       train_config={"epochs": 1, "batch_size": 32}, seed=1)
        loaded = load_run(result.run_id)
        x = load_inputs(TM_DS, "val", with_maps=False)
    spec = loaded.model.spec
    assert spec.band is True and FeatureSpec.from_dict(spec.to_dict()).band is True
    np.testing.assert_array_equal(x.carrier_hz, np.where(x.scene_idx == 0, 3.5e9, 28e9))
    batch = make_batch(x, spec)
    width = token_width(spec.frame, band=True)
    assert batch.feats.shape[-1] == width
    band, ok = batch.feats[..., width - len(BAND_COLUMNS)].numpy(), batch.feats[..., width - 1].numpy() > 0
    np.testing.assert_array_equal(ok, x.node_mask)
    np.testing.assert_allclose(band[ok], np.where(x.scene_idx == 0, 0.0, 1.0)[:, None].repeat(ok.shape[1], 1)[ok])
    a = loaded.predict(x)
    unknown = replace(x, carrier_hz=None, node_carrier_hz=None)
    assert not np.allclose(a.position_m, loaded.predict(unknown).position_m)  # it is read
    heimdall = build_network("heimdall", {"band_feature": True}, vocab_size=len(spec.node_keys))
    assert heimdall(batch.index(slice(0, 8)))["mu"].shape == (8, 2)
    arms = {v.name: v.model_config for v in STUDIES["band-feature"].variants}
    assert arms == {"no band feature": {}, "band feature": {"band_feature": True}}


@pytest.mark.raytrace
def test_line_or_maps_prior_is_refused_on_data_without_timing_maps(timing_ds: Path, workspace_env) -> None:
    """``prior_timing="line_or_maps"`` trains only where the dataset has ToA/AoA maps (it would silently be the
    straight line elsewhere); ``line`` is never refused."""
    from dataclasses import replace

    from rflocal_core.errors import InvalidInputError
    from rflocal_core.models.inputs import load_inputs
    from rflocal_core.models.mapformer import MapFormerConfig
    from rflocal_core.models.neural import check_timing_maps

    with workspace_env(timing_ds):
        x = load_inputs(TM_DS, "val")
    maps_prior = MapFormerConfig.from_dict({"prior_timing": "line_or_maps"})
    check_timing_maps(maps_prior, x)  # this dataset has them
    bare = replace(x, maps={name: replace(m, channels={}) for name, m in x.maps.items()})
    with pytest.raises(InvalidInputError, match=r"prior_timing: 'line_or_maps' .* has none; expected 'line'"):
        check_timing_maps(maps_prior, bare)
    check_timing_maps(MapFormerConfig(), bare)
