"""One scene with several bands (issue 18): a cell per site and band, maps and paths traced at each carrier,
the carrier in the dataset, in measurement files and in the models' tokens."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.raytrace import friis_path_gain_db
from rflocal_core.scene.sites import CustomSite, SiteConfig

LAT0, LON0 = 48.0, 11.0
BANDS = (3.5e9, 28e9)
DS = "twoband"
FREE_SPACE_DB = 20 * math.log10(BANDS[1] / BANDS[0])  # 18.06 dB more loss at 28 GHz


def _hut(lat: float, lon: float, side_m: float = 4.0) -> dict:
    dlat = side_m / 111_320.0
    dlon = side_m / (111_320.0 * math.cos(math.radians(lat)))
    ring = [[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]
    return {"type": "Feature", "properties": {"height": "6"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


MASTS = (CustomSite(x_m=-20.0, y_m=10.0, height_m=10.0, mount="ground", id="a"),
         CustomSite(x_m=30.0, y_m=-25.0, height_m=10.0, mount="ground", id="b"))


@pytest.fixture(scope="module")
def bands_ws(tmp_path_factory: pytest.TempPathFactory, workspace_env) -> Path:
    """A 120 m open scene (two huts in far corners), two masts with a 3.5 and a 28 GHz cell each (concrete
    ground: the ITU ground models stop at 10 GHz), the same masts at 3.5 GHz only, and a small ue dataset of
    line-of-sight maps and paths (depth 0) over the two-band scene."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import MaterialConfig, SceneConfig, build_scene

    ws = tmp_path_factory.mktemp("bands_ws")
    half_lat, hut = 60.0 / 111_320.0, 4.0 / 111_320.0
    half_lon = 60.0 / (111_320.0 * math.cos(math.radians(LAT0)))
    hut_lon = 4.0 / (111_320.0 * math.cos(math.radians(LAT0)))
    path = ws / "huts.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _hut(LAT0 - half_lat, LON0 - half_lon), _hut(LAT0 + half_lat - hut, LON0 + half_lon - hut_lon)]}))
    concrete = MaterialConfig(building="concrete", ground="concrete")
    with workspace_env(ws):
        build_scene(SceneConfig(name="two", source="geojson_file", path=str(path), materials=concrete,
                                sites=SiteConfig(placement="custom", custom=MASTS, bands=BANDS)))
        out = generate_dataset(GenerationConfig(
            name=DS, scenes=("two",), samples_per_scene=40, mode="ue", cell_size_m=8.0, min_sites=1,
            map_samples_per_tx=20_000, map_max_depth=0, paths_samples_per_src=2_000, paths_max_depth=0))
    print(out["seconds"])
    return ws


def test_site_bands_are_checked_and_a_custom_site_may_carry_its_own() -> None:
    config = SiteConfig(placement="custom", custom=(MASTS[0], CustomSite(x_m=1.0, y_m=2.0, bands=(28e9,))),
                        bands="3.5e9, 28e9")
    assert config.bands == BANDS and config.multiband
    assert [config.site_bands(i) for i in range(2)] == [BANDS, (28e9,)] and config.carriers == BANDS
    assert CustomSite.from_dict({"x_m": 1, "y_m": 2, "bands": "3.5e9,28e9"}, index=0).bands == BANDS
    assert not SiteConfig().multiband and SiteConfig().carriers == (3.5e9,)
    from rflocal_core.cli import build_parser, command_config
    args = build_parser().parse_args(["scene", "build", "--procedural", "--name", "x", "--bands", "3.5e9,28e9"])
    assert command_config(args).sites.bands == BANDS
    with pytest.raises(InvalidInputError, match=re.escape(
            "sites.bands[1]: expected a number in [100000000.0, 100000000000.0] Hz, got 300000000000.0")):
        SiteConfig(bands=(3.5e9, 3e11))
    with pytest.raises(InvalidInputError, match=r"^sites.bands: expected distinct carriers"):
        SiteConfig(bands=(3.5e9, 3.5e9))


@pytest.mark.raytrace
def test_two_bands_give_a_cell_per_site_and_band_traced_at_its_carrier(bands_ws: Path, workspace_env) -> None:
    """Two nodes per mast; in line of sight the 28 GHz map is 20·log10(8) = 18.1 dB below the 3.5 GHz one cell by
    cell, and exact paths are Friis at each cell's own carrier."""
    from rflocal_core.dataset import open_dataset
    from rflocal_core.raytrace import band_scenes, compute_band_paths
    from rflocal_core.scene import load_scene_meta

    with workspace_env(bands_ws):
        sites = load_scene_meta("two")["sites"]
        root = open_dataset(DS)
        pg = np.asarray(root["scenes/two/path_gain_db"])
        node_carrier = np.asarray(root["samples/node_carrier_hz"])
        carrier = np.asarray(root["samples/carrier_hz"])
        rsrq = np.asarray(root["samples/rsrq_db"])
        scenes = band_scenes("two")
        probe = np.array([[0.0, 0.0, 1.5], [40.0, 30.0, 1.5], [-35.0, -20.0, 1.5]])
        paths = compute_band_paths(scenes, probe, max_depth=0, samples_per_src=2_000)
    assert [(s["id"], s["mast"], s["freq_hz"]) for s in sites] == [
        ("a/3.5G", "a", 3.5e9), ("a/28G", "a", 28e9), ("b/3.5G", "b", 3.5e9), ("b/28G", "b", 28e9)]
    assert [(b.freq_hz, b.columns.tolist()) for b in scenes] == [(3.5e9, [0, 2]), (28e9, [1, 3])]
    for low, high in ((0, 1), (2, 3)):  # the same mast: rays alike, gain ∝ λ²
        both = np.isfinite(pg[low]) & np.isfinite(pg[high])
        assert both.mean() > 0.9
        np.testing.assert_allclose(pg[low][both] - pg[high][both], FREE_SPACE_DB, atol=0.01)
    xyz = np.array([[s["x_m"], s["y_m"], s["z_m"]] for s in sites])
    d = np.linalg.norm(probe[:, None] - xyz[None], axis=-1)
    friis = np.stack([friis_path_gain_db(d[:, k], s["freq_hz"]) for k, s in enumerate(sites)], -1)
    np.testing.assert_allclose(paths.path_gain_db, friis, atol=0.01)
    np.testing.assert_allclose(paths.toa_ns[:, 0], paths.toa_ns[:, 1], atol=1e-3)  # same mast, same delay
    assert (paths.los == 1).all()
    np.testing.assert_array_equal(node_carrier, np.broadcast_to([3.5e9, 28e9, 3.5e9, 28e9], node_carrier.shape))
    assert np.isnan(carrier).all()  # the sample's band is no longer one: the nodes say
    # each band has its own RSSI: the best 28 GHz cell's RSRQ is at least 1/(2 cells · 12 REs) = -13.8 dB, not
    # buried under the 18 dB stronger 3.5 GHz cells (about -29 dB if they shared one RSSI)
    best28 = np.nanmax(np.where(np.isfinite(rsrq[..., [1, 3]]), rsrq[..., [1, 3]], -np.inf), -1)
    assert np.isfinite(best28).mean() > 0.5 and best28[np.isfinite(best28)].min() >= -14.1


def test_a_single_band_scene_is_unchanged() -> None:
    """Without bands a site is one node: the site's id, its carrier, no mast (scenes before bands read alike)."""
    from rflocal_core.geo import LocalFrame
    from rflocal_core.scene.sites import place_sites

    frame, extent = LocalFrame.at(LAT0, LON0), (-60.0, -60.0, 60.0, 60.0)
    one = place_sites(SiteConfig(placement="custom", custom=MASTS), [], extent, frame)
    two = place_sites(SiteConfig(placement="custom", custom=MASTS, bands=BANDS), [], extent, frame)
    assert [(s["id"], s["freq_hz"]) for s in one] == [("a", 3.5e9), ("b", 3.5e9)]
    assert not any("mast" in s for s in one)
    for k, site in enumerate(one):  # each cell is its mast's record, but for its id, mast and carrier
        for cell, freq in zip(two[2 * k: 2 * k + 2], BANDS):
            assert {**cell, "id": site["id"], "freq_hz": 3.5e9} == {**site, "mast": site["id"]}
            assert cell["freq_hz"] == freq


@pytest.mark.raytrace
def test_a_cell_map_does_not_depend_on_the_band_traced_before(bands_ws: Path, workspace_env) -> None:
    """Maps of several bands in one scene set the carrier per cell: the 3.5 GHz cell's map traced after a 28 GHz
    cell is the map it has alone, bit for bit; a scene of one band is one :class:`BandScene` of every site."""
    from rflocal_core.raytrace import band_scenes, compute_radio_map
    from rflocal_core.scene import load_scene_meta

    with workspace_env(bands_ws):
        two = load_scene_meta("two")["sites"]
        (only,) = band_scenes("two", sites=[two[0], two[2]])
        kwargs = {"cell_size_m": 8.0, "samples_per_tx": 20_000, "max_depth": 0, "workers": 1}
        alone = compute_radio_map("two", sites=[two[0]], **kwargs)
        after = compute_radio_map("two", sites=[two[1], two[0]], **kwargs)  # 28 GHz first: the carrier changes
    assert only.freq_hz == 3.5e9 and only.columns.tolist() == [0, 1] and only.num_sites == 2
    np.testing.assert_array_equal(alone.path_gain_db[0], after.path_gain_db[1])
    assert np.nanmax(after.path_gain_db[0]) < np.nanmax(after.path_gain_db[1]) - 17.0


def test_measurement_files_carry_each_node_carrier(workspace: Path) -> None:
    """A node's ``carrier_hz`` is read, written and imported as the node slots' carrier; a wrong one is refused."""
    from rflocal_core.dataset.exchange import import_measurements
    from rflocal_core.measurements import (
        MeasurementFormatError,
        MeasurementSet,
        Node,
        Position,
        Report,
        Sample,
        dump_measurements,
        load_measurements,
    )
    from rflocal_core.models.inputs import load_inputs
    from rflocal_core.reference import file_carriers

    nodes = (Node("a/3.5G", lat=51.0, lon=4.0, tx_power_dbm=43.0, carrier_hz=3.5e9),
             Node("a/28G", lat=51.0, lon=4.0, tx_power_dbm=43.0, carrier_hz=28e9), Node("c", lat=51.001, lon=4.0))
    samples = tuple(Sample(f"s{i}", (Report("a/3.5G", rss_dbm=-70.0 - i), Report("a/28G", rss_dbm=-90.0 - i),
                                     Report("c", rss_dbm=-80.0)), Position(lat=51.0 + 1e-4 * i, lon=4.0001))
                    for i in range(6))
    ms = MeasurementSet("ue", None, nodes=nodes, samples=samples)
    path = workspace / "m.json"
    dump_measurements(ms, path)
    doc = json.loads(path.read_text())
    assert [n.get("carrier_hz") for n in doc["nodes"]] == [3.5e9, 28e9, None]
    assert load_measurements(path).nodes == nodes
    import_measurements(path, name="imp")
    x = load_inputs("imp", "train", with_maps=False)
    np.testing.assert_array_equal(x.node_carrier_hz[:, :2], np.broadcast_to([3.5e9, 28e9], (len(x), 2)))
    assert np.isnan(x.node_carrier_hz[:, 2]).all()
    # predicting from a file: the file nodes' carriers go to their training slots
    carriers = file_carriers(ms, {"a/3.5G": 1, "a/28G": 0, "c": None}, (2, 3))
    np.testing.assert_array_equal(carriers, [[28e9, 3.5e9, np.nan]] * 2)
    only_c = MeasurementSet("ue", None, nodes=nodes[2:], samples=(Sample("z", (Report("c", rss_dbm=-80.0),)),))
    assert file_carriers(only_c, {"c": 0}, (1, 1)) is None  # no node says: unknown, as before
    from rflocal_core.measurements.table import read_nodes
    table = b"id,lat,lon,carrier_hz\na/3.5G,51.0,4.0,3.5e9\na/28G,51.0,4.0,28e9\nc,51.001,4.0,\n"
    assert [n.carrier_hz for n in read_nodes(table, kind="csv")] == [3.5e9, 28e9, None]  # a nodes CSV says it too
    doc["nodes"][0]["carrier_hz"] = 5.0
    path.write_text(json.dumps(doc))
    with pytest.raises(MeasurementFormatError, match=r"nodes\[0\]\.carrier_hz"):
        load_measurements(path)


@pytest.mark.raytrace
def test_one_band_view_and_the_band_token_of_mapformer(bands_ws: Path, workspace_env) -> None:
    """The ``bands`` study's one-band arm hears only that band's cells; mapformer reads each token's carrier."""
    from dataclasses import replace

    import torch

    from rflocal_core.ablate import STUDIES
    from rflocal_core.models.features import BAND_COLUMNS, FeatureSpec, make_batch
    from rflocal_core.models.maps import MapSource
    from rflocal_core.models.nets import build_network
    from rflocal_core.models.transforms import InputTransform, load_transformed

    with workspace_env(bands_ws):
        both = load_transformed(DS, "train", None, with_maps=True)
        low = load_transformed(DS, "train", InputTransform(bands=(3.5e9,)), with_maps=False)
    heard = np.isfinite(both.rss_dbm)
    assert heard[:, [1, 3]].any() and heard[:, [0, 2]].any()
    assert not np.isfinite(low.rss_dbm[:, [1, 3]]).any()
    np.testing.assert_array_equal(low.rss_dbm[:, [0, 2]], both.rss_dbm[:, [0, 2]])
    assert InputTransform.from_dict(InputTransform(bands=(3.5e9,)).to_dict()).bands == (3.5e9,)
    assert "bands" not in InputTransform().to_dict()  # runs from before it read the same
    with pytest.raises(InvalidInputError, match=r"^bands\[0\]: expected a number in"):
        InputTransform(bands=(5.0,))
    arms = {v.name: (v.train_transform, v.model_config) for v in STUDIES["bands"].variants}
    assert arms == {"3.5 GHz cells": ({"bands": [3.5e9]}, {}), "28 GHz cells": ({"bands": [28e9]}, {}),
                    "both bands": ({}, {}), "both bands + band feature": ({}, {"band_feature": True})}

    spec = FeatureSpec.fit(both, band=True)
    batch = make_batch(both, spec)
    band = batch.feats[..., -len(BAND_COLUMNS)].numpy()
    np.testing.assert_allclose(band[:, [0, 2]], 0.0)
    np.testing.assert_allclose(band[:, [1, 3]], 1.0)  # log2(28 / 3.5) / 3
    torch.manual_seed(0)
    net = build_network("mapformer", {"band_feature": True, "d_model": 16, "heads": 2, "layers": 1, "map_layers": 0,
                                      "map_res": 16, "grid_cells": 4, "top_k": 0, "physics_prior": False},
                        vocab_size=len(spec.node_keys))
    net.eval()
    src = MapSource.from_inputs(both, spec, res=16)
    rows = np.arange(4)
    with torch.no_grad():
        out = net(src.batch(make_batch(both, spec).index(rows), rows))
        swapped = replace(both, node_carrier_hz=both.node_carrier_hz[:, [1, 0, 3, 2]])
        moved = net(src.batch(make_batch(swapped, spec).index(rows), rows))
    assert out["mu"].shape == (4, 2)
    assert not torch.allclose(out["coarse_logits"], moved["coarse_logits"])  # the band is read


def test_cells_of_another_band_neither_add_to_rssi_nor_interfere() -> None:
    """RSSI, RSRQ and SINR within each band: a cell alone on its band has the lone cell's RSRQ and no interference."""
    from rflocal_core import phy

    rsrp = np.array([[-80.0, -85.0, -100.0]])  # two 3.5 GHz cells, one 28 GHz cell
    load = np.array([1.0, 1.0, 1.0])
    freqs = np.array([3.5e9, 3.5e9, 28e9])
    noise = -np.inf  # no noise: ratios of cells only
    rssi, sinr = phy.band_levels(rsrp, load, freqs, noise_per_re_dbm=noise, n_rb=51)
    one_rssi, one_sinr = phy.band_levels(rsrp, load, np.full(3, 3.5e9), noise_per_re_dbm=noise, n_rb=51)
    np.testing.assert_allclose(one_rssi, phy.rssi_dbm(rsrp, load, noise_per_re_dbm=noise, n_rb=51)[:, None]
                               * np.ones(3))
    np.testing.assert_allclose(one_sinr, phy.sinr_db(rsrp, load, noise_per_re_dbm=noise))
    rsrq = phy.rsrq_db(rsrp, rssi, n_rb=51)
    assert rsrq[0, 2] == pytest.approx(-10 * np.log10(12.0))  # alone on 28 GHz at full load: -10.8 dB
    assert np.isinf(sinr[0, 2])  # nothing else on its band, no noise
    np.testing.assert_allclose(sinr[0, :2], [5.0, -5.0])  # the two 3.5 GHz cells interfere only with each other


def test_scene_builder_sites_table_names_each_node_band(bands_ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Scenes tab's sites table: a row per cell with its mast, band and carrier (the core's site_table)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(bands_ws))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "views" / "scene_builder.py"),
                           default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "band" in d.value.columns)
    assert list(table.columns[:4]) == ["id", "mast", "band", "freq_hz"]
    assert table["band"].tolist() == ["3.5G", "28G"] * 2 and table["mast"].tolist() == ["a", "a", "b", "b"]
    np.testing.assert_allclose(table["freq_hz"], [*BANDS, *BANDS])


def test_drone_waypoints_fly_every_band_at_its_own_wavelength(bands_ws: Path, workspace_env) -> None:
    """A drone survey of a two-band scene: each waypoint is a node per band on that band's carrier (its maps and
    paths traced there), and each point of a flight line is measured on both bands."""
    from rflocal_core.constants import SPEED_OF_LIGHT_M_S
    from rflocal_core.dataset.config import GenerationConfig
    from rflocal_core.dataset.generate import drone_waypoints, flight_slots, site_freqs
    from rflocal_core.scene.store import load_scene_meta

    with workspace_env(bands_ws):
        meta = load_scene_meta("two")
    config = GenerationConfig(name="d", scenes=("two",), mode="emitter", survey="drone", drone_spacing_m=40.0,
                              drone_points=4)
    waypoints = drone_waypoints(meta, config)
    assert len(waypoints) == 3 * 3 * 2  # a 120 m scene, 40 m spacing, two bands
    assert [w["freq_hz"] for w in waypoints[:4]] == [*BANDS, *BANDS]
    assert [w["id"] for w in waypoints[:2]] == ["wp-0-0/3.5G", "wp-0-0/28G"]
    slots = flight_slots(6, waypoints, config, np.random.default_rng(0))
    assert slots.shape == (6, 8)
    carrier = site_freqs(waypoints)[slots]
    np.testing.assert_allclose(SPEED_OF_LIGHT_M_S / carrier[:, ::2], SPEED_OF_LIGHT_M_S / 3.5e9)  # 8.6 cm
    np.testing.assert_allclose(SPEED_OF_LIGHT_M_S / carrier[:, 1::2], SPEED_OF_LIGHT_M_S / 28e9)  # 1.1 cm
    xy = np.array([[w["x_m"], w["y_m"]] for w in waypoints])[slots]
    np.testing.assert_array_equal(xy[:, ::2], xy[:, 1::2])  # both bands at each point of the line
    one = {**meta, "sites": [s for s in meta["sites"] if s["freq_hz"] == BANDS[0]]}
    assert [w["id"] for w in drone_waypoints(one, config)[:2]] == ["wp-0-0", "wp-0-1"]  # one band: as before


def test_iq_captures_shift_by_each_receiver_carrier_doppler() -> None:
    """An emitter at 10 m/s along +x, both paths leaving along +x, receiver 0 on 3.5 GHz and receiver 1 on
    28 GHz: against a still emitter (same draws), the estimated frequency offsets move by v/λ of each carrier."""
    from rflocal_core.constants import SPEED_OF_LIGHT_M_S
    from rflocal_core.dataset.config import GenerationConfig
    from rflocal_core.dataset.iqgen import synthesize_iq

    config = GenerationConfig(name="x", scenes=("a",), mode="emitter", iq=True)
    taps = {"gain_re": np.full((1, 2, 2, 1), 1e-3), "gain_im": np.zeros((1, 2, 2, 1)),
            "delay_ns": np.array([[[[400.0], [700.0]]] * 2]), "direction": np.array([[[[[1.0, 0.0, 0.0]]] * 2] * 2])}
    out = {}
    for name, dx in (("still", 0.0), ("moving", 5.0)):
        out[name] = synthesize_iq(pos=np.array([[[0.0, 0.0, 1.5], [dx, 0.0, 1.5]]]), t_s=np.array([[0.0, 0.5]]),
                                  present=np.ones((1, 2, 2), bool), taps=taps, gain_db=np.full((1, 2, 2), 20.0),
                                  carrier_hz=np.array([list(BANDS)]), config=config, rng=np.random.default_rng(3))
    shift = out["moving"]["iq_freq_offset_hz"] - out["still"]["iq_freq_offset_hz"]  # [1, T, S]
    expected = 10.0 * np.asarray(BANDS) / SPEED_OF_LIGHT_M_S  # 116.7 and 934 Hz
    np.testing.assert_allclose(shift[0], np.broadcast_to(expected, (2, 2)), rtol=0.03, atol=5.0)
