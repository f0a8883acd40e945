"""The measurement-model fit (``data fit-noise``): known parameters come back from a set synthesized
with them, the real Antwerp set gives plausible figures, and data it cannot fit is refused by name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rflocal_core.dataset import GenerationConfig, import_measurements
from rflocal_core.dataset.noisefit import (
    NoiseFit,
    NoiseFitConfig,
    fit_noise,
    generation_config_like,
    generation_fields,
    quantization_step,
)
from rflocal_core.dataset.shadowing import gudmundson_field
from rflocal_core.dataset.synth import synthesize
from rflocal_core.errors import InvalidInputError, RFLocalInputError
from rflocal_core.measurements import MeasurementSet, Node, Position, Report, Sample

#: What the synthetic set is made with.
TRUE = {"exponent": 3.0, "p0_db": -30.0, "sigma_db": 8.0, "corr_m": 60.0, "noise_db": 2.0, "step_db": 1.0,
        "sensitivity_dbm": -125.0}
AREA_M, CELL_M, NODES, SAMPLES = 2000.0, 5.0, 12, 4000
LAT0, LON0 = 51.2, 4.4
M_PER_DEG_LAT = 111_320.0


def _latlon(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local metres to WGS84 near (LAT0, LON0); the import projects them back (UTM: scale error < 0.1%)."""
    return LAT0 + xy[:, 1] / M_PER_DEG_LAT, LON0 + xy[:, 0] / (M_PER_DEG_LAT * math.cos(math.radians(LAT0)))


def synthetic_set(seed: int = 3) -> MeasurementSet:
    """Emitters at random places (each twice), ``NODES`` fixed receivers: log-distance path loss, Gudmundson shadowing
    (the generator's own field, one per node) and the generator's own report synthesis (noise,
    quantization, sensitivity): the generator's measurement model without the ray tracing."""
    rng = np.random.default_rng(seed)
    n_cells = int(AREA_M / CELL_M)
    fields = gudmundson_field(n_cells, n_cells, CELL_M, sigma_db=TRUE["sigma_db"], corr_m=TRUE["corr_m"], rng=rng,
                              count=NODES)
    nodes_xy = rng.uniform(0.2 * AREA_M, 0.8 * AREA_M, (NODES, 2))
    # (column, row) of each emitter; every place is measured twice (same shadowing, new noise), as
    # real surveys repeat places: the pairs at lag 0 pin the nugget
    cell = np.tile(rng.integers(0, n_cells, (SAMPLES // 2, 2)), (2, 1))
    xy = (cell + 0.5) * CELL_M
    dist = np.maximum(np.linalg.norm(xy[:, None, :] - nodes_xy[None], axis=-1), 1.0)
    pg = (-10.0 * TRUE["exponent"] * np.log10(dist))[:, None, :]
    shadow = np.stack([fields[k][cell[:, 1], cell[:, 0]] for k in range(NODES)], axis=-1)[:, None, :]
    config = GenerationConfig(name="synthetic", scenes=("none",), rss_noise_db=TRUE["noise_db"],
                              rss_quantization_db=TRUE["step_db"], sensitivity_dbm=TRUE["sensitivity_dbm"], top_k=0)
    reports = synthesize(pg_db=pg, shadow_db=shadow.astype(np.float64), tx_power_dbm=np.float64(TRUE["p0_db"]),
                         toa_true_ns=None, aoa_true_deg=None, los=None, delay_spread_ns=None,
                         step_mask=np.ones((SAMPLES, 1), bool), config=config, rng=rng)
    lat, lon = _latlon(xy)
    nlat, nlon = _latlon(nodes_xy)
    nodes = tuple(Node(id=f"n{k}", lat=float(nlat[k]), lon=float(nlon[k])) for k in range(NODES))
    samples = []
    for i in range(SAMPLES):
        heard = [Report(node=f"n{k}", rss_dbm=float(reports.rss_dbm[i, 0, k])) for k in range(NODES)
                 if np.isfinite(reports.rss_dbm[i, 0, k])]
        if heard:
            samples.append(Sample(id=f"s{i}", reports=tuple(heard), truth=Position(lat=float(lat[i]), lon=float(lon[i]))))
    return MeasurementSet(mode="emitter", nodes=nodes, samples=tuple(samples))


@pytest.fixture(scope="module")
def synthetic_ws(tmp_path_factory: pytest.TempPathFactory, workspace_env) -> Path:
    """A workspace holding the synthetic set as the imported dataset ``synthetic`` (read-only)."""
    ws = tmp_path_factory.mktemp("noisefit_ws")
    with workspace_env(ws):
        import_measurements(synthetic_set(), name="synthetic", split_fractions=(0.8, 0.1, 0.1))
    return ws


@pytest.fixture(scope="module")
def synthetic_fit(synthetic_ws: Path, workspace_env) -> NoiseFit:
    with workspace_env(synthetic_ws):
        return fit_noise("synthetic", NoiseFitConfig(bootstrap=20))


def test_recovers_the_parameters_it_was_made_with(synthetic_fit: NoiseFit) -> None:
    fit = synthetic_fit
    assert fit.nodes_used == NODES
    assert abs(fit.sigma_db.value - TRUE["sigma_db"]) <= 0.10 * TRUE["sigma_db"], fit.sigma_db
    assert abs(fit.corr_m.value - TRUE["corr_m"]) <= 0.25 * TRUE["corr_m"], fit.corr_m
    assert abs(fit.exponent.value - TRUE["exponent"]) <= 0.1, fit.exponent
    assert abs(fit.intercept_db.value - TRUE["p0_db"]) <= 2.0, fit.intercept_db
    # the nugget holds the report noise and the rounding (step² / 12)
    assert abs(fit.nugget_db.value - math.sqrt(TRUE["noise_db"] ** 2 + 1 / 12)) <= 0.6, fit.nugget_db
    expected_total = math.hypot(TRUE["sigma_db"], TRUE["noise_db"])
    assert abs(fit.residual_sigma_db.value - expected_total) <= 0.1 * expected_total, fit.residual_sigma_db
    assert fit.quantization_db == TRUE["step_db"]
    assert TRUE["sensitivity_dbm"] <= fit.floor_dbm <= TRUE["sensitivity_dbm"] + 1
    assert abs(fit.sensitivity_dbm - TRUE["sensitivity_dbm"]) <= 1.5
    assert fit.warnings == (), fit.warnings


def independent_set(seed: int = 2, places: int = 2000, area_m: float = 1500.0) -> MeasurementSet:
    """The same model simulated without the generator's code: shadowing drawn exactly at continuous
    positions by a Cholesky factor of ``σ² exp(-r / d)``, numpy noise, rounding and floor."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, area_m, (places, 2))
    r = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    factor = np.linalg.cholesky(np.exp(-r / TRUE["corr_m"]) + 1e-9 * np.eye(places))
    shadow = TRUE["sigma_db"] * (factor @ rng.standard_normal((places, NODES)))
    nodes_xy = rng.uniform(0.2 * area_m, 0.8 * area_m, (NODES, 2))
    dist = np.maximum(np.linalg.norm(xy[:, None] - nodes_xy[None], axis=-1), 1.0)
    mean = np.tile(TRUE["p0_db"] - 10 * TRUE["exponent"] * np.log10(dist) + shadow, (2, 1))  # each place twice
    rss = np.round((mean + rng.normal(0, TRUE["noise_db"], mean.shape)) / TRUE["step_db"]) * TRUE["step_db"]
    lat, lon = _latlon(np.tile(xy, (2, 1)))
    nlat, nlon = _latlon(nodes_xy)
    samples = []
    for i in range(len(rss)):
        heard = tuple(Report(node=f"n{k}", rss_dbm=float(rss[i, k])) for k in range(NODES)
                      if rss[i, k] >= TRUE["sensitivity_dbm"])
        if heard:
            samples.append(Sample(id=f"s{i}", reports=heard, truth=Position(lat=float(lat[i]), lon=float(lon[i]))))
    nodes = tuple(Node(id=f"n{k}", lat=float(nlat[k]), lon=float(nlon[k])) for k in range(NODES))
    return MeasurementSet(mode="emitter", nodes=nodes, samples=tuple(samples))


def test_recovers_an_independent_simulation(workspace: Path) -> None:
    """An independent check of the shadowing field and the fit together (seeds 1-6 measured: σ 7.6-8.3 dB,
    53-63 m, nugget 1.97-2.02 dB, n 2.91-3.10)."""
    _import(independent_set(), "independent")
    fit = fit_noise("independent", NoiseFitConfig(bootstrap=0))
    assert abs(fit.sigma_db.value - TRUE["sigma_db"]) <= 0.10 * TRUE["sigma_db"], fit.sigma_db
    assert abs(fit.corr_m.value - TRUE["corr_m"]) <= 0.25 * TRUE["corr_m"], fit.corr_m
    assert abs(fit.nugget_db.value - math.sqrt(TRUE["noise_db"] ** 2 + 1 / 12)) <= 0.3, fit.nugget_db
    assert abs(fit.exponent.value - TRUE["exponent"]) <= 0.15, fit.exponent


def test_intervals_and_per_node_figures(synthetic_fit: NoiseFit, synthetic_ws: Path, workspace_env) -> None:
    fit = synthetic_fit
    for est in (fit.exponent, fit.sigma_db, fit.corr_m, fit.nugget_db):
        assert est.lo <= est.hi and est.hi - est.lo < 0.5 * abs(est.value), est
    # squares of 5 correlation distances are resampled together: nearby samples share their shadowing,
    # and resampling single samples gives intervals that are too narrow
    assert fit.block_m == pytest.approx(5 * fit.corr_m.value)
    assert fit.exponent.lo <= TRUE["exponent"] <= fit.exponent.hi, fit.exponent
    with workspace_env(synthetic_ws):
        single = fit_noise("synthetic", NoiseFitConfig(bootstrap=20, block_m=0.0))
    assert single.block_m == 0.0 and single.sigma_db.value == fit.sigma_db.value
    for name in ("exponent", "intercept_db"):
        wide, narrow = getattr(fit, name), getattr(single, name)
        assert wide.hi - wide.lo > 1.5 * (narrow.hi - narrow.lo), (name, wide, narrow)
    assert len(fit.nodes) == NODES
    assert abs(sum(n.offset_db for n in fit.nodes)) < 1e-6  # offsets are relative to the mean intercept
    own = [n.own_exponent for n in fit.nodes if n.own_exponent is not None]
    assert len(own) >= NODES - 1 and abs(np.median(own) - TRUE["exponent"]) < 0.3, own
    # not heard rises with distance (the sensitivity cuts the far links)
    bins = [b for b in fit.not_heard if b.links >= 100]
    assert bins[0].not_heard < 0.05 and bins[-1].not_heard > 0.3, bins
    assert len(fit.variogram.lag_m) >= 10 and fit.variogram.model_db2[-1] > fit.variogram.model_db2[0]


def test_generation_options_from_the_fit(synthetic_fit: NoiseFit) -> None:
    values, notes = generation_fields(synthetic_fit)
    assert set(values) == {"shadowing_sigma_db", "shadowing_corr_m", "rss_noise_db", "rss_quantization_db",
                           "sensitivity_dbm"}
    assert notes == []
    # the generator adds the rounding itself: its share is taken out of the nugget
    assert abs(values["rss_noise_db"] - TRUE["noise_db"]) <= 0.6
    config = generation_config_like(synthetic_fit, name="like", scenes=("demo",), samples_per_scene=10)
    assert config.shadowing_sigma_db == values["shadowing_sigma_db"] and config.samples_per_scene == 10
    wide = NoiseFit.from_json({**synthetic_fit.to_json(), "corr_m": {"value": 5000.0}})
    values, notes = generation_fields(wide)
    assert values["shadowing_corr_m"] == 1000.0 and "shadowing_corr_m" in notes[0]


def test_generate_like_on_the_command_line(synthetic_ws: Path, synthetic_fit: NoiseFit,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``data generate --like DS`` takes the fitted options; a flag given on the command line wins."""
    from rflocal_core import settings
    from rflocal_core.cli import build_parser, command_config

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(synthetic_ws))
    argv = ["data", "generate", "--scene", "demo", "--name", "like", "--like", "synthetic", "--sigma-db", "4"]
    config = command_config(build_parser().parse_args(argv))
    values, _ = generation_fields(synthetic_fit)
    assert config.shadowing_sigma_db == 4.0
    assert config.shadowing_corr_m == values["shadowing_corr_m"] and config.rss_quantization_db == 1.0
    assert config.sensitivity_dbm == values["sensitivity_dbm"] and config.rss_noise_db == values["rss_noise_db"]
    argv[argv.index("synthetic")] = "nosuch"
    with pytest.raises(RFLocalInputError, match="nosuch"):
        command_config(build_parser().parse_args(argv))


def test_quantization_step() -> None:
    assert quantization_step(np.array([-100.0, -99.0, -97.0, -90.0])) == 1.0
    assert quantization_step(np.array([-100.0, -99.5, -97.0, -90.5])) == 0.5
    assert quantization_step(np.random.default_rng(0).normal(-90, 5, 500)) == 0.0


def _import(ms: MeasurementSet, name: str) -> None:
    import_measurements(ms, name=name, split_fractions=(1.0, 0.0, 0.0))


def test_refuses_nodes_without_position(workspace: Path) -> None:
    samples = tuple(Sample(id=f"s{i}", reports=(Report(node="a", rss_dbm=-90.0 - i),),
                           truth=Position(lat=LAT0 + i * 1e-4, lon=LON0)) for i in range(5))
    _import(MeasurementSet(mode="ue", nodes=(Node(id="a"),), samples=samples), "nopos")
    with pytest.raises(InvalidInputError, match=r"^node_pos_m: .*'nopos'.*no node of known position"):
        fit_noise("nopos")


def test_refuses_samples_without_truth(workspace: Path) -> None:
    samples = tuple(Sample(id=f"s{i}", reports=(Report(node="a", rss_dbm=-90.0 - i),)) for i in range(5))
    _import(MeasurementSet(mode="emitter", nodes=(Node(id="a", lat=LAT0, lon=LON0),), samples=samples), "notruth")
    with pytest.raises(InvalidInputError, match=r"^pos_m: .*'notruth'.*no true positions"):
        fit_noise("notruth")


def test_antwerp_is_plausible(shared_data: Path, tmp_path_factory: pytest.TempPathFactory, workspace_env,
                              run_cli) -> None:
    """The real Antwerp LoRaWAN test file, through the command line."""
    from rflocal_core.measurements import convert_antwerp

    folder = shared_data / "real" / "antwerp_lorawan"
    if not folder.is_dir():
        pytest.skip(f"real Antwerp LoRaWAN data not found at {folder}")
    ws = tmp_path_factory.mktemp("noisefit_antwerp")
    with workspace_env(ws):
        _import(convert_antwerp(folder, split="test"), "antwerp")
    out = ws / "fit"
    proc = run_cli(["data", "fit-noise", "--dataset", "antwerp", "--bootstrap", "5", "--out", str(out)], ws)
    assert proc.returncode == 0, proc.stderr
    fit = json.loads(proc.stdout)
    assert 2.0 <= fit["exponent"]["value"] <= 5.0, fit["exponent"]
    assert 3.0 <= fit["sigma_db"]["value"] <= 15.0, fit["sigma_db"]
    assert 3.0 <= fit["residual_sigma_db"]["value"] <= 15.0
    assert fit["quantization_db"] == 1.0 and -140 <= fit["floor_dbm"] <= -110
    assert fit["nodes_used"] == 37 and len(fit["nodes_skipped"]) == 5
    assert "shadowing sigma" in proc.stderr and "[" in proc.stderr  # the figures with their intervals
    assert "fits poorly" not in proc.stderr
    saved = json.loads((out / "noise_fit.json").read_text(encoding="utf-8"))
    assert saved["generation_options"]["rss_quantization_db"] == 1.0


def test_cli_refusal_names_the_field(workspace: Path, run_cli) -> None:
    _import(MeasurementSet(mode="ue", nodes=(Node(id="a"),), samples=(
        Sample(id="s", reports=(Report(node="a", rss_dbm=-90.0),), truth=Position(lat=LAT0, lon=LON0)),)), "nopos")
    proc = run_cli(["data", "fit-noise", "--dataset", "nopos"], workspace)
    assert proc.returncode == 2 and proc.stderr.startswith("error: node_pos_m:"), proc.stderr


# --------------------------------------------------------------------------- the Data Generation page


def test_page_fits_plots_and_fills_the_generate_form(synthetic_ws: Path, synthetic_fit: NoiseFit, workspace: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Datasets tab: fit the open dataset, see the figures and plots, "Generate like this dataset" fills the
    Generate tab's options; a dataset without node positions is refused naming the field."""
    import shutil

    from streamlit.testing.v1 import AppTest

    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    shutil.copytree(synthetic_ws / "datasets" / "synthetic", workspace / "datasets" / "synthetic")
    build_scene(SceneConfig(name="tiny", procedural=ProceduralConfig(size_m=160.0), sites=SiteConfig(count=3)))
    _import(MeasurementSet(mode="ue", nodes=(Node(id="a"),), samples=(
        Sample(id="s", reports=(Report(node="a", rss_dbm=-90.0),), truth=Position(lat=LAT0, lon=LON0)),)), "nopos")
    at = AppTest.from_file(str(Path(__file__).parents[1] / "pages" / "views" / "data_generation.py"),
                           default_timeout=120)
    at.run()
    at.selectbox(key="dg_open").set_value("synthetic").run()
    at.number_input(key="dg_fit_boot").set_value(0)
    at.button(key="dg_fit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    figures = next(d.value for d in at.dataframe if "figure" in d.value.columns).set_index("figure")
    assert figures.loc["shadowing σ", "value"] == round(synthetic_fit.sigma_db.value, 2), figures
    layouts = [json.loads(c.proto.spec)["layout"] for c in at.get("plotly_chart")]
    charts = [layout["title"]["text"] for layout in layouts if "title" in layout]
    assert {"Variogram of the residuals", "Residuals of the heard reports", "Not heard against distance"} <= set(charts)
    at.button(key="dg_fit_like").click().run()
    assert not at.exception
    values, _ = generation_fields(synthetic_fit)
    for key, name in (("dg_sigma", "shadowing_sigma_db"), ("dg_corr", "shadowing_corr_m"),
                      ("dg_rss_noise", "rss_noise_db"), ("dg_rss_step", "rss_quantization_db"),
                      ("dg_sens", "sensitivity_dbm")):
        assert at.number_input(key=key).value == pytest.approx(values[name]), key
    assert "now hold" in at.success[-1].value
    at.selectbox(key="dg_open").set_value("nopos").run()
    at.button(key="dg_fit").click().run()
    assert not at.exception
    assert at.error and at.error[0].value.startswith("node_pos_m: dataset 'nopos'"), [e.value for e in at.error]
