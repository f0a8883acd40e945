"""Data Generation storage: the Zarr layout, determinism, resuming, splits, loaders and the CLI.

Everything runs on two small procedural cities (200 m, four rooftop sites) with coarse
cells and few rays; ``main`` is generated once per module and shared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
import torch
import zarr

from rflocal_core import settings
from rflocal_core.dataset import (
    DatasetExistsError,
    DatasetNotFoundError,
    GenerationConfig,
    delete_dataset,
    generate_dataset,
    list_datasets,
    open_dataset,
)
from rflocal_core.dataset import generate as generate_mod
from rflocal_core.dataset.rasters import Grid, load_footprints_m
from rflocal_core.dataset.store import FORMAT, dataset_path, partial_path
from rflocal_core.dataset.synth import noise_floor_dbm
from rflocal_core.dataset.torch_data import REPORT_FIELDS, ZarrSamples
from rflocal_core.errors import InvalidInputError, SceneNotFoundError
from rflocal_core.geo import LocalFrame
from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene, load_scene_meta

pytestmark = pytest.mark.raytrace

CITY, TOWN = "city", "town"
BASE: dict[str, Any] = {
    "scenes": (CITY,), "samples_per_scene": 150, "cell_size_m": 4.0, "map_samples_per_tx": 2_000_000,
    "paths_samples_per_src": 10_000,
}
MAIN = GenerationConfig(name="main", **BASE)
#: Cheap settings for datasets where timing and map quality are not the point.
CHEAP: dict[str, Any] = {"cell_size_m": 4.0, "map_samples_per_tx": 1_000_000, "timing": False}

#: Features from Sionna's PathSolver, which is not bit-reproducible on several CPU threads
#: (measured, 200 receivers x 4 sites, identical calls: ToA within 2e-5 ns, delay spread within
#: 0.2 ns, path power within 0.08 dB). Everything else must be bit-identical, radio maps included.
PATH_FEATURES = ("toa_ns", "delay_spread_ns", "aoa_deg", "ta")
#: PHY fields from the paths' channel (rflocal_core.phy): the same jitter, compared within a tolerance each.
PHY_PATH_TOLERANCE = {"beam_gain": 0.05, "eig": 0.05, "arrival_dir": 1e-3, "beam_rsrp_dbm": 1.0,
                      "beam_top_rsrp_dbm": 1.0, "doppler_hz": 1.0}
#: PHY integers from the paths' channel: equal but for a rare flip (best beam, rank).
PHY_PATH_INTEGERS = ("beam_id", "beam_top_ids", "ri")


@pytest.fixture(scope="module")
def store_ws(tmp_path_factory: pytest.TempPathFactory, workspace_env) -> Path:
    """A workspace with the cities ``city`` and ``town`` and the dataset ``main``."""
    ws = tmp_path_factory.mktemp("store_ws")
    with workspace_env(ws):
        build_scene(SceneConfig(name=CITY, procedural=ProceduralConfig(size_m=200.0), sites=SiteConfig(count=4)))
        build_scene(SceneConfig(name=TOWN, procedural=ProceduralConfig(size_m=200.0, seed=11),
                                sites=SiteConfig(count=4, seed=3)))
        generate_dataset(MAIN)
    return ws


@pytest.fixture
def ws(store_ws: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(store_ws))
    return store_ws


def _arrays(group: zarr.Group, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, member in group.members():
        if isinstance(member, zarr.Array):
            out[prefix + key] = np.asarray(member[...])
        else:
            out.update(_arrays(member, f"{prefix}{key}/"))
    return out


def assert_same_data(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Same arrays, shapes and dtypes; bit-identical except the PathSolver features (see PATH_FEATURES)."""
    assert sorted(a) == sorted(b)
    for key in a:
        x, y = a[key], b[key]
        assert x.shape == y.shape and x.dtype == y.dtype, key
        leaf = key.rsplit("/", 1)[-1]
        if leaf in PHY_PATH_TOLERANCE or leaf in PHY_PATH_INTEGERS:
            _assert_close_phy(leaf, x, y)
            continue
        if leaf not in PATH_FEATURES:
            np.testing.assert_array_equal(x, y, err_msg=key)
            continue
        missing_x = np.isnan(x) if x.dtype.kind == "f" else x < 0
        missing_y = np.isnan(y) if y.dtype.kind == "f" else y < 0
        np.testing.assert_array_equal(missing_x, missing_y, err_msg=key)
        x, y = x[~missing_x].astype(np.float64), y[~missing_y].astype(np.float64)
        if leaf == "toa_ns":
            np.testing.assert_allclose(x, y, atol=1e-3, rtol=0, err_msg=key)
        elif leaf == "delay_spread_ns":
            np.testing.assert_allclose(x, y, atol=0.5, rtol=0.01, err_msg=key)
        else:  # whole degrees / timing-advance steps: equal but for a rare flip of the strongest path
            assert np.mean(x != y) <= 0.01, f"{key}: {np.sum(x != y)} of {x.size} differ"


def _assert_close_phy(leaf: str, x: np.ndarray, y: np.ndarray) -> None:
    """PHY fields derived from PathSolver's paths: within the tolerance, or integers equal but for rare flips."""
    if leaf in PHY_PATH_INTEGERS:
        assert np.mean(x != y) <= 0.02, f"{leaf}: {np.sum(x != y)} of {x.size} differ"
        return
    # a link on the edge of having a path may flip between NaN and a value: rare
    assert np.mean(np.isnan(x) != np.isnan(y)) <= 0.01, leaf
    both = ~np.isnan(x) & ~np.isnan(y)
    close = np.isclose(x[both], y[both], rtol=PHY_PATH_TOLERANCE[leaf], atol=PHY_PATH_TOLERANCE[leaf])
    assert close.mean() >= 0.99, f"{leaf}: {np.sum(~close)} of {close.size} differ"


# --------------------------------------------------------------------------- layout


def test_layout_shapes_and_attributes(ws: Path) -> None:
    import mitsuba
    import sionna.rt

    g = open_dataset("main")
    attrs = dict(g.attrs)
    assert attrs["format"] == FORMAT and attrs["complete"] is True
    assert attrs["config"] == MAIN.to_dict()
    assert GenerationConfig.from_dict(attrs["config"]) == MAIN
    assert attrs["digest"] == MAIN.digest()
    assert attrs["mode"] == "ue"
    assert attrs["versions"]["sionna_rt"] == sionna.rt.__version__
    assert attrs["versions"]["mitsuba"] == mitsuba.__version__
    meta = load_scene_meta(CITY)
    assert attrs["scene_hashes"] == {CITY: meta["content_sha256"]}
    assert set(attrs["seconds"]) >= {"radio_maps", "rasters", "sampling", "paths", "reports", "write"}
    assert attrs["counts"]["samples"] == 150 and attrs["counts"]["sites_max"] == 4 and attrs["counts"]["steps_max"] == 1

    # Per scene, on the scene's own grid.
    sc = g[f"scenes/{CITY}"]
    grid = Grid.from_dict(sc.attrs["grid"])
    assert grid.cell_m == 4.0 and (grid.ny, grid.nx) == (50, 50)  # 200 m / 4 m
    assert sc.attrs["site_ids"] == [s["id"] for s in meta["sites"]]
    assert sc.attrs["frame"] == meta["frame"] and sc.attrs["mode"] == "ue"
    S = 4
    for key in ("path_gain_db", "rss_dbm", "sinr_db", "shadowing_db"):
        assert sc[key].shape == (S, grid.ny, grid.nx), key
        assert sc[key].dtype == np.float32, key
    for key in ("building_height_m", "footprint", "material", "roads"):
        assert sc[key].shape == (grid.ny, grid.nx), key
    site_pos = np.array([[s["x_m"], s["y_m"], s["z_m"]] for s in meta["sites"]], dtype=np.float32)
    np.testing.assert_array_equal(sc["site_pos_m"][...], site_pos)
    tx = np.array([s["tx_power_dbm"] for s in meta["sites"]], dtype=np.float32)
    np.testing.assert_array_equal(sc["rss_dbm"][...], sc["path_gain_db"][...] + tx[:, None, None])
    footprint = sc["footprint"][...]
    assert 0 < footprint.mean() < 1 and set(np.unique(footprint)) <= {0, 1}
    np.testing.assert_array_equal(footprint, sc["building_height_m"][...] > 0)
    assert sc["roads"][...].any()

    # Samples: N rows, T = 1 report time, S = 4 node slots.
    s = g["samples"]
    N, T = 150, 1
    shapes = {
        "scene_idx": (N,), "pos_m": (N, T, 3), "latlon": (N, T, 2), "t_s": (N, T), "step_mask": (N, T),
        "node_pos_m": (N, S, 3), "node_mask": (N, S), "tx_power_dbm": (N,), "carrier_hz": (N,),
        "node_carrier_hz": (N, S),
        **{k: (N, T, S) for k in ("rss_dbm", "snr_db", "toa_ns", "aoa_deg", "delay_spread_ns", "pg_true_db",
                                  "ta", "los")},
        **{f"mask_{k}": (N, T, S) for k in ("rss_dbm", "toa_ns", "ta", "aoa_deg", "snr_db")},
        # PHY/MAC reports (ue mode with timing): per report, the device's RSSI per step, the top 4 beams
        **{k: (N, T, S) for k in ("rsrp_dbm", "rsrq_db", "sinr_db", "cqi", "ri", "beam_id", "beam_rsrp_dbm",
                                  "doppler_hz", "serving", "neighbour_rank", "event_a3", "event_a5", "phy_mask")},
        **{f"mask_{k}": (N, T, S) for k in ("rsrq_db", "sinr_db", "cqi", "ri", "beam_id", "beam_rsrp_dbm",
                                            "doppler_hz", "serving", "neighbour_rank", "event_a3", "event_a5")},
        "rssi_dbm": (N, T), "beam_top_ids": (N, T, S, 4), "beam_top_rsrp_dbm": (N, T, S, 4),
    }
    assert {k: s[k].shape for k in shapes} == shapes
    assert set(dict(s.members())) == set(shapes)
    assert s["los"].dtype == np.int8 and s["ta"].dtype.kind == "i" and s["step_mask"].dtype == bool
    assert set(np.unique(s["los"][...])) <= {-1, 0, 1}
    np.testing.assert_array_equal(s["node_pos_m"][...], np.broadcast_to(site_pos, (N, S, 3)))
    assert s["node_mask"][...].all() and s["step_mask"][...].all()
    assert np.all(s["scene_idx"][...] == 0)
    assert np.isnan(s["tx_power_dbm"][...]).all()  # ue mode: the sites' powers are known, no emitter power
    # Features present together: ToA/AoA only where RSS is reported (no dropout here).
    rss, toa = s["rss_dbm"][...], s["toa_ns"][...]
    assert np.isfinite(rss).mean() > 0.5
    assert not (np.isfinite(toa) & ~np.isfinite(rss)).any()
    np.testing.assert_allclose(s["snr_db"][...], rss - noise_floor_dbm(MAIN.bandwidth_hz, MAIN.noise_figure_db),
                               atol=1e-4)
    # latlon is pos_m in the scene's frame.
    frame = LocalFrame.from_dict(meta["frame"])
    latlon = s["latlon"][...]
    x, y = frame.to_xy(latlon[..., 0], latlon[..., 1])
    pos = s["pos_m"][...]
    np.testing.assert_allclose(x, pos[..., 0], atol=0.01)
    np.testing.assert_allclose(y, pos[..., 1], atol=0.01)


def test_report_fields_have_presence_masks(ws: Path) -> None:
    s = open_dataset("main")["samples"]
    for key in ("rss_dbm", "toa_ns", "aoa_deg", "snr_db"):
        values = np.asarray(s[key][...])
        mask = np.asarray(s[f"mask_{key}"][...])
        assert mask.dtype == bool and mask.shape == values.shape
        assert np.array_equal(mask, np.isfinite(values)) and mask.any(), key
    assert np.array_equal(np.asarray(s["mask_ta"][...]), np.asarray(s["ta"][...]) >= 0)


def test_phy_reports_stored_with_masks(ws: Path) -> None:
    """ue mode with timing: PHY/MAC fields per report, masked where there is no report."""
    s = open_dataset("main")["samples"]
    rss = np.asarray(s["rss_dbm"][...])
    made = np.asarray(s["phy_mask"][...])
    assert made.shape == rss.shape and np.array_equal(made, np.isfinite(rss))  # no dropout: every report
    for key in ("rsrq_db", "sinr_db", "cqi", "serving"):
        assert np.array_equal(np.asarray(s[f"mask_{key}"][...]), made), key
    rsrq = np.asarray(s["rsrq_db"][...])[made]
    assert rsrq.min() >= -43.0 and rsrq.max() <= -3.0 and np.all(rsrq % 0.5 == 0)  # -3 dB: one cell, RS only
    cqi = np.asarray(s["cqi"][...])[made]
    sinr = np.asarray(s["sinr_db"][...])[made]
    order = np.lexsort((cqi, sinr))  # reports of the same (rounded) SINR may straddle a CQI threshold
    assert np.all(np.diff(cqi[order].astype(int)) >= 0)  # CQI monotone in SINR across the dataset
    # one serving cell per report step, the strongest RSRP
    serving = np.asarray(s["serving"][...])
    some = made.any(-1)
    assert np.all((serving == 1).sum(-1)[some] == 1)
    rsrp = np.where(made, np.asarray(s["rsrp_dbm"][...]), -np.inf)
    best = np.take_along_axis(rsrp, np.argmax(serving == 1, -1)[..., None], -1)[..., 0]
    assert np.all(best[some] >= rsrp.max(-1)[some] - 1.0)  # ties within the 1 dB step
    ri = np.asarray(s["ri"][...])[made]
    assert set(np.unique(ri[ri >= 0])) <= {1, 2} and (ri == 1).any()
    beam = np.asarray(s["beam_id"][...])[made]
    assert beam.max() < 24 and (beam >= 0).mean() > 0.5
    # a stationary target has no Doppler
    assert np.all(np.asarray(s["doppler_hz"][...])[made & np.isfinite(np.asarray(s["doppler_hz"][...]))] == 0)


def test_splits_partition_the_samples(ws: Path) -> None:
    g = open_dataset("main")
    splits = {k: np.asarray(g[f"splits/{k}"][...]) for k in ("train", "val", "test", "test_unseen")}
    assert {k: len(v) for k, v in splits.items()} == {"train": 120, "val": 15, "test": 15, "test_unseen": 0}
    assert g.attrs["counts"]["splits"] == {k: len(v) for k, v in splits.items()}
    joined = np.concatenate(list(splits.values()))
    np.testing.assert_array_equal(np.sort(joined), np.arange(150))  # disjoint and complete
    for v in splits.values():
        assert np.all(np.diff(v) > 0)  # sorted indices
    # Shuffled, not blocks: the validation samples are spread over the index range.
    assert splits["val"].max() - splits["val"].min() > 75


def test_positions_outdoors_and_covered(ws: Path) -> None:
    """Every target is outside every footprint, inside the scene, and heard by >= min_sites sites in the map."""
    g = open_dataset("main")
    meta = load_scene_meta(CITY)
    pos = np.asarray(g["samples/pos_m"][...], dtype=np.float64)[:, 0]
    buildings = shapely.unary_union(load_footprints_m(CITY, meta)[0])
    assert not shapely.contains_xy(buildings, pos[:, 0], pos[:, 1]).any()
    ext = meta["extent_m"]
    assert np.all((pos[:, 0] >= ext["x_min"]) & (pos[:, 0] <= ext["x_max"]))
    assert np.all((pos[:, 1] >= ext["y_min"]) & (pos[:, 1] <= ext["y_max"]))
    np.testing.assert_allclose(pos[:, 2], MAIN.plane_height_m)
    sc = g[f"scenes/{CITY}"]
    grid = Grid.from_dict(sc.attrs["grid"])
    iy, ix = grid.cell_of(pos[:, 0], pos[:, 1])
    assert not sc["footprint"][...][iy, ix].any()
    heard = (np.asarray(sc["rss_dbm"][...])[:, iy, ix] >= MAIN.sensitivity_dbm).sum(0)
    assert heard.min() >= MAIN.min_sites
    # Not all in one corner: targets spread over the city.
    assert np.ptp(pos[:, 0]) > 100 and np.ptp(pos[:, 1]) > 100


def test_same_config_other_name_gives_the_same_data(ws: Path) -> None:
    result = generate_dataset(GenerationConfig(name="main-again", **BASE))
    assert result["samples"] == 150 and result["resumed"] == []
    a, b = open_dataset("main"), open_dataset("main-again")
    assert_same_data(_arrays(a), _arrays(b))
    assert a.attrs["digest"] == b.attrs["digest"]
    assert a.attrs["counts"] == b.attrs["counts"]


# --------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_with_two_workers_reads_every_sample_once(ws: Path, context: str) -> None:
    data = ZarrSamples("main", "train")
    assert len(data) == 120
    loader = torch.utils.data.DataLoader(data, batch_size=16, num_workers=2, multiprocessing_context=context)
    g = open_dataset("main")["samples"]
    direct = {k: np.asarray(g[k][...]) for k in ("pos_m", "t_s", "step_mask", "node_pos_m", "node_mask",
                                                    "scene_idx", *REPORT_FIELDS)}
    seen = []
    for batch in loader:
        idx = batch["index"].numpy()
        seen.append(idx)
        assert batch["rss_dbm"].shape == (len(idx), 1, 4)
        np.testing.assert_array_equal(batch["scene_idx"].numpy(), direct["scene_idx"][idx])
        np.testing.assert_array_equal(batch["target_m"].numpy(), direct["pos_m"][idx, -1])
        for key in ("pos_m", "t_s", "step_mask", "node_pos_m", "node_mask"):
            np.testing.assert_array_equal(batch[key].numpy(), direct[key][idx], err_msg=key)
        for field in REPORT_FIELDS:
            np.testing.assert_array_equal(batch[field].numpy(), direct[field][idx], err_msg=field)
            np.testing.assert_array_equal(batch[f"mask_{field}"].numpy(), np.isfinite(direct[field][idx]))
    seen = np.concatenate(seen)
    np.testing.assert_array_equal(seen, open_dataset("main")["splits/train"][...])  # each once, in order


# --------------------------------------------------------------------------- resume


class Interrupted(Exception):
    pass


def _interrupt_after_first_path_batch() -> Any:
    calls: list[str] = []

    def progress(stage: str, fraction: float) -> None:
        if "exact paths" in stage:
            calls.append(stage)
            if len(calls) == 2:  # the first batch is stored; the second is about to start
                raise Interrupted(stage)

    return progress


def test_interrupted_generation_resumes_to_the_same_data(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate_mod, "PATH_BATCH", 50)  # 150 targets: three PathSolver batches
    config = GenerationConfig(name="resumed", **BASE)
    with pytest.raises(Interrupted):
        generate_dataset(config, progress=_interrupt_after_first_path_batch())
    assert not dataset_path("resumed").exists()
    assert partial_path("resumed").is_dir()
    rows = {r["name"]: r for r in list_datasets()}
    assert rows["resumed"]["state"] == "partial (resumable)"
    assert rows["main"]["state"] == "complete"
    with pytest.raises(DatasetNotFoundError, match="no dataset named 'resumed'"):
        open_dataset("resumed")
    partial = zarr.open_group(str(partial_path("resumed")), mode="r")
    assert partial.attrs["complete"] is False
    np.testing.assert_array_equal(partial[f"scenes/{CITY}/paths/done"][...], [True, False, False])

    # Another configuration under this name is refused while the partial run exists.
    other = GenerationConfig(name="resumed", **{**BASE, "samples_per_scene": 140})
    with pytest.raises(InvalidInputError, match="another configuration.*restart"):
        generate_dataset(other)
    assert partial_path("resumed").is_dir()

    stages: list[str] = []
    result = generate_dataset(config, progress=lambda stage, fraction: stages.append(stage))
    assert result["resumed"] == [f"{CITY}: radio maps", f"{CITY}: 1/3 path batches"]
    # Only the two unfinished batches are traced again, and no radio map.
    traced = [st for st in stages if "exact paths" in st]
    assert len(traced) == 2 and traced[0].endswith("100/150") and traced[1].endswith("150/150"), traced
    assert not any("radio maps" in st for st in stages), stages
    assert not partial_path("resumed").exists()
    assert open_dataset("resumed").attrs["complete"] is True

    reference = generate_dataset(GenerationConfig(name="uninterrupted", **BASE))
    assert reference["resumed"] == []
    assert_same_data(_arrays(open_dataset("resumed")), _arrays(open_dataset("uninterrupted")))


def test_restart_discards_a_partial_run_of_another_config(ws: Path) -> None:
    first = GenerationConfig(name="restarted", scenes=(CITY,), samples_per_scene=30, **CHEAP)

    def stop_at_sampling(stage: str, fraction: float) -> None:
        if "sampling positions" in stage:
            raise Interrupted(stage)

    with pytest.raises(Interrupted):
        generate_dataset(first, progress=stop_at_sampling)
    assert partial_path("restarted").is_dir()
    second = GenerationConfig(name="restarted", scenes=(CITY,), samples_per_scene=40, **CHEAP)
    with pytest.raises(InvalidInputError, match="interrupted generation of 'restarted' with another configuration"):
        generate_dataset(second)
    result = generate_dataset(second, restart=True)
    assert result["resumed"] == [] and result["samples"] == 40
    assert open_dataset("restarted").attrs["config"] == second.to_dict()


# --------------------------------------------------------------------------- scenes held out


def test_unseen_scene_is_the_test_unseen_split(ws: Path) -> None:
    config = GenerationConfig(name="two-cities", scenes=(CITY, TOWN), samples_per_scene=60, unseen_scenes=(TOWN,),
                              **CHEAP)
    result = generate_dataset(config)
    assert result["splits"]["test_unseen"] == 60
    assert sum(result["splits"][k] for k in ("train", "val", "test")) == 60
    g = open_dataset("two-cities")
    scene_idx = np.asarray(g["samples/scene_idx"][...])
    np.testing.assert_array_equal(scene_idx, np.repeat([0, 1], 60))
    np.testing.assert_array_equal(g["splits/test_unseen"][...], np.flatnonzero(scene_idx == 1))
    seen = np.concatenate([g[f"splits/{k}"][...] for k in ("train", "val", "test")])
    np.testing.assert_array_equal(np.sort(seen), np.flatnonzero(scene_idx == 0))
    # Each scene keeps its own sites and maps.
    town_sites = np.array([[s["x_m"], s["y_m"], s["z_m"]] for s in load_scene_meta(TOWN)["sites"]], dtype=np.float32)
    np.testing.assert_array_equal(g["samples/node_pos_m"][60], town_sites)
    assert set(dict(g["scenes"].members())) == {CITY, TOWN}
    assert g.attrs["scene_hashes"][TOWN] == load_scene_meta(TOWN)["content_sha256"]
    # And the loader serves the held-out split.
    data = ZarrSamples("two-cities", "test_unseen")
    assert len(data) == 60 and int(data[0]["scene_idx"]) == 1


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_give_clear_messages(ws: Path) -> None:
    before = sorted(p.name for p in (ws / "datasets").iterdir())
    with pytest.raises(SceneNotFoundError, match=r"scene: no scene named 'atlantis'.*existing scenes: city, town"):
        generate_dataset(GenerationConfig(name="lost", scenes=("atlantis",), **CHEAP))
    with pytest.raises(DatasetExistsError, match="a dataset named 'main' already exists"):
        generate_dataset(MAIN)
    assert sorted(p.name for p in (ws / "datasets").iterdir()) == before  # nothing left behind

    cases = [
        ({"dropout": 2}, r"dropout: expected a number in \[0.0, 0.9\], got 2"),
        ({"sequence_length": (5, 2)}, r"sequence_length\[1\]: expected an integer in \[5, 100\], got 2"),
        ({"unseen_scenes": (TOWN,)}, r"unseen_scenes: 'town' is not one of the dataset's scenes \['city'\]"),
        ({"scenes": (CITY, TOWN), "unseen_scenes": (CITY, TOWN)}, "at least one scene must remain"),
        ({"samples_per_scene": 0}, r"samples_per_scene: expected an integer in \[1, 1000000\], got 0"),
        ({"cell_size_m": 0.1}, r"cell_size_m: expected a number in \[0.5, 20.0\] m, got 0.1"),
        ({"split": (0.5, 0.5, 0.5)}, "split: expected three fractions"),
        ({"motion": "teleport"}, "motion: expected one of stationary, pedestrian, vehicular, got 'teleport'"),
        ({"mode": "both"}, "mode: expected 'ue', 'emitter'"),
        ({"scenes": ()}, "scenes: expected at least one scene name"),
        ({"name": "../escape"}, "name: expected 1-64 characters"),
    ]
    for change, message in cases:
        kwargs = {"name": "bad", "scenes": (CITY,), **change}
        with pytest.raises(InvalidInputError, match=message):
            GenerationConfig(**kwargs)
    with pytest.raises(InvalidInputError, match="split: expected one of train, val, test, test_unseen"):
        ZarrSamples("main", "everything")
    with pytest.raises(DatasetNotFoundError, match="no dataset named 'nothing' in .*; existing datasets: main"):
        open_dataset("nothing")
    with pytest.raises(DatasetNotFoundError, match="nothing to delete"):
        delete_dataset("nothing")


def test_no_covered_position_is_a_clear_error(ws: Path) -> None:
    config = GenerationConfig(name="deaf", scenes=(CITY,), samples_per_scene=10, sensitivity_dbm=-1.0, **CHEAP)
    with pytest.raises(InvalidInputError, match="no outdoor position is covered by enough sites"):
        generate_dataset(config)


# --------------------------------------------------------------------------- sequences


def test_pedestrian_sequences(ws: Path) -> None:
    config = GenerationConfig(name="walks", scenes=(CITY,), samples_per_scene=80, sequence_length=(5, 10),
                              motion="pedestrian", **CHEAP)
    generate_dataset(config)
    s = open_dataset("walks")["samples"]
    mask = np.asarray(s["step_mask"][...])
    t = np.asarray(s["t_s"][...], dtype=np.float64)
    pos = np.asarray(s["pos_m"][...], dtype=np.float64)
    assert mask.shape == (80, 10)
    lengths = mask.sum(1)
    assert lengths.min() >= 5 and lengths.max() <= 10 and len(np.unique(lengths)) >= 4
    np.testing.assert_array_equal(mask, np.arange(10)[None, :] < lengths[:, None])  # reports first, padding after
    assert np.all(t[:, 0] == 0)
    both = mask[:, 1:] & mask[:, :-1]
    dt = np.diff(t, axis=1)[both]
    assert dt.min() >= 0.1 - 1e-5 and dt.max() <= 0.5 + 1e-5
    step = np.linalg.norm(np.diff(pos[..., :2], axis=1), axis=-1)[both]
    moving = step > 1e-3
    np.testing.assert_allclose(step[moving], 1.0 * dt[moving], rtol=1e-3, atol=1e-4)  # 1 m/s
    assert moving.mean() > 0.9  # boxed in (standing still) only now and then
    # All report positions outdoors, on the measurement plane.
    meta = load_scene_meta(CITY)
    buildings = shapely.unary_union(load_footprints_m(CITY, meta)[0])
    assert not shapely.contains_xy(buildings, pos[mask][:, 0], pos[mask][:, 1]).any()
    np.testing.assert_allclose(pos[..., 2], config.plane_height_m)
    # Padding: no report, time 0, the position of the last report repeated.
    assert np.all(t[~mask] == 0)
    last = pos[np.arange(80), lengths - 1]
    np.testing.assert_array_equal(np.where(mask[..., None], pos, last[:, None, :]), pos)
    for key in ("rss_dbm", "snr_db", "pg_true_db"):
        assert not np.isfinite(np.asarray(s[key][...])[~mask]).any(), key
    assert np.isfinite(np.asarray(s["rss_dbm"][...])[mask]).any(-1).mean() > 0.9
    # The loader's target is the position at the last report.
    item = ZarrSamples("walks", "train")[0]
    k = int(item["index"])
    np.testing.assert_array_equal(item["target_m"].numpy(), pos[k, lengths[k] - 1].astype(np.float32))


def test_vehicular_phy_doppler(ws: Path) -> None:
    """Moving at 10 m/s: Doppler within ±v/λ and mostly non-zero."""
    base = {"scenes": (CITY,), "samples_per_scene": 20, "cell_size_m": 4.0, "map_samples_per_tx": 1_000_000,
            "paths_samples_per_src": 10_000, "sequence_length": (3, 4), "motion": "vehicular"}
    generate_dataset(GenerationConfig(name="drive", **base))
    s = open_dataset("drive")["samples"]
    made = np.asarray(s["phy_mask"][...])
    doppler = np.asarray(s["doppler_hz"][...])[made]
    doppler = doppler[np.isfinite(doppler)]
    freq = load_scene_meta(CITY)["sites"][0]["freq_hz"]
    limit = 10.0 * freq / 299_792_458.0
    assert len(doppler) > 30 and np.abs(doppler).max() <= limit + 0.5  # 1 Hz steps
    assert np.mean(np.abs(doppler) >= 1.0) > 0.8
    # at most one serving cell per report step; it changes at a step where an A3/A5 event fires for the
    # new cell, or where the old one is no longer heard (not reported)
    serving = np.asarray(s["serving"][...]) == 1
    assert (serving.sum(-1) <= 1).all()
    events = (np.asarray(s["event_a3"][...]) == 1) | (np.asarray(s["event_a5"][...]) == 1)
    rsrp = np.asarray(s["rsrp_dbm"][...])
    cell = np.where(serving.any(-1), serving.argmax(-1), -1)
    both = (cell[:, 1:] >= 0) & (cell[:, :-1] >= 0)
    changed = both & (cell[:, 1:] != cell[:, :-1])
    fired = events[:, 1:][changed, cell[:, 1:][changed]]
    old_gone = np.isnan(rsrp[:, 1:][changed, cell[:, :-1][changed]])
    assert np.all(fired | old_gone)
    # reporting periods (phy_rrc_period 4): along these 3-4 report sequences RSRP (RRC) is held from the
    # first report, the best beam's L1-RSRP is fresh at every report
    both_made = made[:, 0] & made[:, 1]
    assert both_made.sum() > 20 and np.array_equal(rsrp[:, 1][both_made], rsrp[:, 0][both_made])
    beam = np.asarray(s["beam_rsrp_dbm"][...])
    fresh = both_made & np.isfinite(beam[:, 0]) & np.isfinite(beam[:, 1])
    assert np.mean(beam[:, 1][fresh] != beam[:, 0][fresh]) > 0.3
    # the loader keeps every report time's fields; with hist_phy they follow RSS and age in the history
    # (mapformer's earlier-report tokens), masked where a report lacks them
    from rflocal_core.models.features import HIST_COLUMNS, PHY_COLUMNS, FeatureSpec, make_batch
    from rflocal_core.models.inputs import load_inputs

    x = load_inputs("drive", "train", with_maps=False)
    steps = np.asarray(s["step_mask"][...])[x.indices]
    assert x.phy_steps is not None and x.phy_steps.shape == (len(x), 4, *x.phy.shape[1:])
    last = steps.shape[1] - 1 - np.argmax(steps[:, ::-1], axis=1)
    np.testing.assert_array_equal(x.phy_steps[np.arange(len(x)), last], x.phy.astype(np.float32))
    assert np.isnan(x.phy_steps[~steps]).all()
    b = make_batch(x, FeatureSpec.fit(x, phy=True, hist_phy=True))
    assert b.hist.shape[-1] == len(HIST_COLUMNS) + len(PHY_COLUMNS)
    ok = b.hist[..., len(HIST_COLUMNS) + 1::2].numpy() > 0
    np.testing.assert_array_equal(ok, np.isfinite(x.phy_steps) & b.hist_mask.numpy()[..., None])
    assert ok[..., PHY_COLUMNS.index("doppler_hz") // 2].sum() > 10
    assert make_batch(x, FeatureSpec.fit(x, phy=True)).hist.shape[-1] == len(HIST_COLUMNS)


# --------------------------------------------------------------------------- command line


def test_cli_generate_list_show_delete(workspace: Path, run_cli) -> None:
    build_scene(SceneConfig(name="cli-city", procedural=ProceduralConfig(size_m=200.0), sites=SiteConfig(count=4)))
    gen = run_cli(["data", "generate", "--scene", "cli-city", "--name", "cli-ds", "--samples", "50",
                   "--map-samples", "1000000", "--no-timing", "--no-phy", "--phy-scs-khz", "15",
                   "--cell-size-m", "4"], workspace, timeout=300)
    assert gen.returncode == 0, gen.stderr
    out = json.loads(gen.stdout)
    assert out["name"] == "cli-ds" and out["samples"] == 50
    assert out["splits"] == {"train": 40, "val": 5, "test": 5, "test_unseen": 0}
    assert set(out["seconds"]) == {"radio_maps", "rasters", "sampling", "reports", "write"}  # no paths: --no-timing
    assert all(v >= 0 for v in out["seconds"].values())
    assert "done" in gen.stderr  # progress goes to stderr, JSON alone on stdout

    rows = json.loads(run_cli(["data", "list"], workspace).stdout)
    assert [(r["name"], r["state"], r["samples"]) for r in rows] == [("cli-ds", "complete", 50)]
    show = run_cli(["data", "show", "cli-ds"], workspace)
    assert show.returncode == 0
    attrs = json.loads(show.stdout)
    assert attrs["complete"] is True and attrs["config"]["samples_per_scene"] == 50
    assert attrs["config"]["timing"] is False and attrs["config"]["scenes"] == ["cli-city"]
    assert attrs["config"]["phy"] is False and attrs["config"]["phy_scs_khz"] == 15

    deleted = run_cli(["data", "delete", "cli-ds"], workspace)
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {"deleted": "cli-ds"}
    assert not (workspace / "datasets" / "cli-ds").exists()
    assert json.loads(run_cli(["data", "list"], workspace).stdout) == []

    bad = run_cli(["data", "generate", "--scene", "nowhere", "--name", "x", "--samples", "5"], workspace)
    assert bad.returncode == 2 and bad.stdout == ""
    assert "error: scene: no scene named 'nowhere'" in bad.stderr
    bad_seq = run_cli(["data", "generate", "--scene", "cli-city", "--name", "x", "--sequence", "5,2"], workspace)
    assert bad_seq.returncode == 2 and "sequence_length[1]" in bad_seq.stderr
    bad_scs = run_cli(["data", "generate", "--scene", "cli-city", "--name", "x", "--phy-scs-khz", "25"], workspace)
    assert bad_scs.returncode == 2 and "phy_scs_khz: expected one of 15, 30, 60, 120 kHz, got 25" in bad_scs.stderr
    missing = run_cli(["data", "show", "cli-ds"], workspace)
    assert missing.returncode == 2 and "no dataset named 'cli-ds'" in missing.stderr
