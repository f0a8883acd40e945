"""bench/bench_any_city.py --timing-maps: another dataset, and the map-channel rows refused without it (no data)."""

from __future__ import annotations

import sys
from dataclasses import replace
from types import ModuleType

import numpy as np
import pytest

from rflocal_core.constants import C_M_PER_NS
from rflocal_core.dataset.rasters import Grid
from rflocal_core.models import Inputs
from rflocal_core.models.inputs import SceneMaps


@pytest.fixture(scope="module")
def bench(load_bench) -> ModuleType:
    """``bench/bench_any_city.py`` as a module."""
    return load_bench("bench_any_city")


def test_timing_maps_name_another_dataset(bench: ModuleType) -> None:
    """The dataset with ToA/AoA maps is never the one without (it is ray-traced again, with the maps)."""
    assert bench.dataset_name(500, 4.0, "etoile") == "ac-all-500-4m-etoile"
    assert bench.dataset_name(500, 4.0, "etoile", timing_maps=True) == "ac-all-500-4m-tm-etoile"
    assert bench.dataset_name(500, 4.0, "etoile", ("munich",), timing_maps=True) == "ac-all-500-4m-tm-etoile-x-munich"


def test_timing_map_factor_names_another_dataset(bench: ModuleType) -> None:
    """Brief A29: maps traced at another spacing than the dataset option's default are another dataset (the stored
    ``-tm`` one is never reused for them); the default keeps the stored name."""
    from rflocal_core.dataset import GenerationConfig

    assert bench.TIMING_MAP_FACTOR.default == GenerationConfig.__dataclass_fields__["timing_map_factor"].default
    assert bench.STORED_TIMING_MAP_FACTOR == 4
    assert bench.dataset_name(500, 4.0, "etoile", timing_maps=True, timing_map_factor=4) == "ac-all-500-4m-tm-etoile"
    assert bench.dataset_name(500, 4.0, "etoile", timing_maps=True, timing_map_factor=2) == "ac-all-500-4m-tm2-etoile"
    assert bench.dataset_name(500, 4.0, "etoile", ("munich",), timing_maps=True,
                              timing_map_factor=1) == "ac-all-500-4m-tm1-etoile-x-munich"


@pytest.mark.parametrize(("argv", "says"), [
    (["--timing-maps", "--timing-map-factor", "0"], "timing_map_factor: expected an integer in [1, 32], got 0"),
    (["--timing-map-factor", "2"], "--timing-map-factor without --timing-maps")])
def test_timing_map_factor_refused(bench: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    """A factor out of the dataset option's range, or one without the maps it would set: exit 2, one line."""
    monkeypatch.setattr(sys, "argv", ["bench_any_city.py", "--tiles", "etoile", "--models", "physics prior", *argv])
    assert bench.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]


def test_map_channel_rows_read_the_timing_maps(bench: ModuleType) -> None:
    """The map-channel rows are mapformer (window 4 m) with ``use_map_channels`` or ``prior_timing="line_or_maps"``
    and nothing else changed (its untrained row: the defaults but that; its window centre: the same but its prior)."""
    assert bench.MAP_CHANNEL_ROWS == ("physics prior (ToA/AoA maps)", "physics prior (line or maps)",
                                      "window centre (line or maps)", "physics prior (line or pooled maps)",
                                      "window centre (line or pooled maps)",
                                      "mapformer (untrained + line-or-maps prior)",
                                      "mapformer (untrained + line-or-pooled-maps prior)",
                                      "mapformer (window 4 m + map channels)",
                                      "mapformer (window 4 m + line-or-maps prior)",
                                      "mapformer (window 4 m + line-or-pooled-maps prior)", *bench.SELECT_ROWS)
    model, options = bench.NETWORKS["mapformer (window 4 m + line-or-pooled-maps prior)"]
    assert (model, options) == ("mapformer", {**bench.NETWORKS["mapformer (window 4 m)"][1],
                                              "prior_timing": "line_or_pooled_maps"})
    assert bench.PRIORS["physics prior (line or pooled maps)"] == {"timing": True, "either": True, "pool": 1}
    pooled = "mapformer (window 4 m + line-or-pooled-maps prior)"
    assert bench.fair_prior(pooled) == "physics prior (line or pooled maps)"
    window = bench.NETWORKS["mapformer (window 4 m)"][1]
    model, options = bench.NETWORKS["mapformer (window 4 m + map channels)"]
    assert (model, options) == ("mapformer", {**window, "use_map_channels": True})
    model, options = bench.NETWORKS["mapformer (window 4 m + line-or-maps prior)"]
    assert (model, options) == ("mapformer", {**window, "prior_timing": "line_or_maps"})
    assert bench.UNTRAINED_ROWS["mapformer (untrained + line-or-maps prior)"] == {"prior_timing": "line_or_maps"}
    assert bench.WINDOW_CENTRE_ROWS["window centre (line or maps)"] == ("prior", "line_or_maps")
    assert bench.WINDOW_CENTRE_ROWS["window centre"] == ("prior", "line")
    assert not [m for m in bench.ALL_MODELS if "," in m]  # --models is comma-separated


def test_select_rows_train_the_same_network_choosing_the_epoch_on_their_figure(bench: ModuleType) -> None:
    """Brief A27: a ``select on`` row is its row's model and options with ``TrainConfig.select_on``; the other rows
    keep the default (the validation median)."""
    from rflocal_core.train import TrainConfig

    base = "mapformer (window 4 m + line-or-maps prior)"
    row = f"{base[:-1]}; select on mean)"
    assert bench.SELECT_ROWS[row] == (base, "mean") and bench.NETWORKS[row] == bench.NETWORKS[base]
    assert bench.network_train_config(row, 2.5) == {"epochs": 1000, "max_minutes": 2.5, "select_on": "mean"}
    assert TrainConfig.from_dict(bench.network_train_config(base, 2.5)).select_on == "median"
    assert bench.fair_prior(row) == "physics prior (line or maps)"


def test_map_channel_row_refused_without_timing_maps(bench: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Without --timing-maps the dataset has no ToA/AoA maps (the stream would read zeros): exit 2, one line."""
    monkeypatch.setattr(sys, "argv", ["bench_any_city.py", "--tiles", "etoile", "--models",
                                      "physics prior,mapformer (window 4 m + map channels)"])
    assert bench.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mapformer (window 4 m + map channels) without --timing-maps" in err[0]


def test_mode_figures_count_the_priors_wrong_modes_fixed_and_broken(load_bench) -> None:
    """bench_any_city_modes.py: of the prior's 3 wrong modes (> 10 m) the model fixes 2; of its 2 good samples it
    breaks 1; a sample without an error in both is left out."""
    modes = load_bench("bench_any_city_modes")
    prior = np.array([50.0, 12.0, 30.0, 2.0, 9.0, np.nan])
    model = np.array([3.0, 10.0, 40.0, 20.0, 1.0, 1.0])
    out = modes.mode_figures(prior, model, 10.0)
    assert (out["n"], out["wrong_mode"], out["fixed"], out["broken"], out["better"]) == (5, 3, 0.667, 0.5, 0.6)
    assert out["wrong_mode_median_m"] == {"prior": 30.0, "model": 10.0}


def _free_space_scene(bias_m: np.ndarray) -> Inputs:
    """A 400 m square, four rooftop nodes, free-space path gain; ToA maps and reports the straight line node ->
    target (device at 1.5 m) plus ``bias_m`` [4] per node (an excess path everywhere), AoA maps and reports the
    bearing node -> target. Six targets at cell centres."""
    nodes = np.array([[-190.0, -185.0, 25.0], [185.0, -190.0, 31.0], [190.0, 185.0, 18.0], [-185.0, 190.0, 40.0]])
    half, cell = 200.0, 10.0
    k = round(2 * half / cell)
    grid = Grid(-half + cell / 2, -half + cell / 2, cell, k, k)
    gx, gy = np.meshgrid(grid.x_m, grid.y_m)
    dx, dy = gx[None] - nodes[:, 0, None, None], gy[None] - nodes[:, 1, None, None]
    dist = np.sqrt(dx**2 + dy**2 + (nodes[:, 2, None, None] - 1.5) ** 2)
    pg = -(32.4 + 20 * np.log10(3.5) + 20 * np.log10(dist))
    channels = {"toa_ns": ((dist + bias_m[:, None, None]) / C_M_PER_NS).astype(np.float32),
                "aoa_deg": (np.degrees(np.arctan2(dx, dy)) % 360).astype(np.float32)}
    maps = SceneMaps("hand", grid, pg.astype(np.float32), np.ones((k, k), bool), nodes.copy(), np.full(4, 20.0),
                     channels=channels)
    truth = np.array([[-105.0, 45.0], [55.0, -135.0], [125.0, 115.0], [5.0, 5.0], [-155.0, -65.0], [95.0, 25.0]])
    n = len(truth)
    d = truth[:, None, :] - nodes[None, :, :2]
    true = np.sqrt((d**2).sum(-1) + (nodes[None, :, 2] - 1.5) ** 2)
    aoa = np.degrees(np.arctan2(d[..., 0], d[..., 1])) % 360
    node = np.broadcast_to(nodes, (n, 4, 3)).copy()
    return Inputs("hand", "test", "ue", np.arange(n), 20.0 - (32.4 + 20 * np.log10(3.5) + 20 * np.log10(true)),
                  (true + bias_m) / C_M_PER_NS, aoa, np.ones((n, 4), np.int8), node, np.ones((n, 4), bool),
                  np.full((n, 4), 20.0), np.broadcast_to(np.arange(4), (n, 4)).copy(), truth, np.full(n, 1.5),
                  np.zeros(n, np.int64), ("hand",), {"hand": maps}, 4)


def test_the_toa_aoa_map_prior_is_the_straight_line_one_in_free_space_and_follows_an_excess_path(bench) -> None:
    """``physics prior (ToA/AoA maps)``: where the maps are the straight lines both priors find every target on its
    cell; where ToA-only reports and the maps carry an excess path (60-140 m, per node), the straight-line prior
    misses and the ones reading the maps (alone, or as one of two explanations) do not."""
    exact = _free_space_scene(np.zeros(4))
    for timing in (False, True):
        assert np.abs(bench.physics_prior(exact, 10.0, timing=timing) - exact.truth_m).max() < 1.0
    biased = _free_space_scene(np.array([140.0, 60.0, 100.0, 80.0]))
    biased = replace(biased, rss_dbm=np.full_like(biased.rss_dbm, np.nan), aoa_deg=np.full_like(biased.aoa_deg, np.nan))
    line = np.hypot(*(bench.physics_prior(biased, 10.0) - biased.truth_m).T)
    maps = np.hypot(*(bench.physics_prior(biased, 10.0, timing=True) - biased.truth_m).T)
    assert maps.max() < 1.0 and np.median(line) > 20.0, (maps, line)
    either = np.hypot(*(bench.physics_prior(biased, 10.0, timing=True, either=True) - biased.truth_m).T)
    assert either.max() < 1.0, either  # ``physics prior (line or maps)``: the maps explain the ranges, the line not


def test_the_default_models_leave_the_map_rows_out_without_timing_maps(bench: ModuleType,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A run of every model without --timing-maps is not refused for the map rows (an unknown tile still is)."""
    monkeypatch.setattr(sys, "argv", ["bench_any_city.py", "--tiles", "nowhere"])
    assert bench.main() == 2
    err = capsys.readouterr().err
    assert "['nowhere']" in err and "without --timing-maps" not in err


def test_mapformer_line_or_maps_prior_follows_an_excess_path_and_line_is_unchanged(bench: ModuleType) -> None:
    """mapformer's ``prior_timing="line_or_maps"`` (window frame, untrained: its prior through its own head): where
    ToA-only reports and the maps carry a 60-140 m excess path it answers near the truth and ``"line"`` misses; with
    ``"line"`` the maps change nothing (its outputs with and without the map channels are the same)."""
    import torch

    from rflocal_core.models.features import make_batch
    from rflocal_core.models.maps import MapSource

    biased = _free_space_scene(np.array([140.0, 60.0, 100.0, 80.0]))
    biased = replace(biased, rss_dbm=np.full_like(biased.rss_dbm, np.nan), aoa_deg=np.full_like(biased.aoa_deg, np.nan))
    err = {}
    for timing in ("line", "line_or_maps"):
        model = bench.untrained_mapformer(biased, {"prior_timing": timing})
        err[timing] = np.hypot(*(model.predict(biased).position_m - biased.truth_m).T)
    assert err["line_or_maps"].max() < 5.0 and np.median(err["line"]) > 20.0, err
    line = bench.untrained_mapformer(biased, {"prior_timing": "line"})
    batch = make_batch(biased, line.spec)
    source = MapSource.from_inputs(biased, line.spec, res=line.map_res, channels=True)
    with_maps = source.batch(batch, np.arange(len(biased)))
    assert with_maps.site_channels is not None
    with torch.no_grad():
        a, b = line.net(with_maps), line.net(replace(with_maps, site_channels=None))
    for key in ("mu", "sigma", "coarse_logits"):
        assert torch.equal(a[key], b[key]), key


def test_a_network_row_is_compared_with_the_prior_it_starts_from(bench: ModuleType) -> None:
    """``vs_prior`` of ``prior_timing="line_or_maps"`` rows is against ``physics prior (line or maps)`` (the prior
    that follows a 60-140 m excess path), of the straight-line rows against the straight-line ``physics prior``."""
    assert bench.fair_prior("mapformer (window 4 m + line-or-maps prior)") == "physics prior (line or maps)"
    assert bench.fair_prior("mapformer (window 4 m)") == "physics prior"
    assert bench.fair_prior("mapformer (window 4 m + map channels)") == "physics prior"
    assert set(bench.PRIORS) <= set(bench.REFERENCES)
    biased = _free_space_scene(np.array([140.0, 60.0, 100.0, 80.0]))
    biased = replace(biased, rss_dbm=np.full_like(biased.rss_dbm, np.nan), aoa_deg=np.full_like(biased.aoa_deg, np.nan))
    err = {name: np.hypot(*(bench.physics_prior(biased, 10.0, **bench.PRIORS[bench.fair_prior(name)])
                            - biased.truth_m).T)
           for name in ("mapformer (window 4 m + line-or-maps prior)", "mapformer (window 4 m)")}
    assert err["mapformer (window 4 m + line-or-maps prior)"].max() < 1.0
    assert np.median(err["mapformer (window 4 m)"]) > 20.0, err
