"""What each feature is worth (issue 18): the feature-layer study, permutation importance (core, CLI, page),
and the L1 / RRC reporting periods of the PHY/MAC reports along a sequence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core import ablate, phy
from rflocal_core.cli import main
from rflocal_core.errors import InvalidInputError
from rflocal_core.importance import load_importance, permutation_importance, shuffle_feature
from rflocal_core.measurements import MeasurementSet, Node, Position, Report, Sample
from rflocal_core.models import load_inputs
from rflocal_core.models.inputs import PHY_INPUT_FIELDS
from rflocal_core.models.transforms import PHY_LAYERS, InputTransform, apply_transform

ROOT = Path(__file__).resolve().parents[1]
NODES = [(0.0, 0.0), (400.0, 0.0), (0.0, 400.0), (400.0, 400.0), (200.0, -50.0), (200.0, 450.0)]


def _latlon(x: float, y: float) -> dict[str, float]:
    """x east, y north (m) near 48° N, 11° E (a file without a scene gives lat/lon)."""
    return {"lat": 48.0 + y / 111_320.0, "lon": 11.0 + x / (111_320.0 * np.cos(np.radians(48.0)))}


def _report(node: int, d: float, bearing: float, rss: np.ndarray, rank: int, rng: np.random.Generator) -> Report:
    """One cell's report: RSS and ToA from the distance; PHY/MAC fields from the RSS order and bearing."""
    others = np.delete(rss, node)
    sinr = float(np.clip(np.round(2 * (rss[node] - 10 * np.log10(np.sum(10 ** (others / 10))))) / 2, -23, 40))
    return Report(node=f"c{node}", rss_dbm=float(rss[node]), toa_ns=round(d / 0.299792458 + rng.normal(0, 20), 1),
                  rsrq_db=float(np.clip(np.round(2 * (-10.8 + 0.2 * sinr)) / 2, -43, 20)), sinr_db=sinr,
                  cqi=int(np.clip(sinr / 2 + 7, 0, 15)), ri=1 + int(sinr > 15), serving=int(rank == 0),
                  neighbour_rank=rank, event_a3=0, event_a5=0, beam_id=int(bearing // 45) % 8,
                  beam_rsrp_dbm=float(rss[node] + 9))


def _measurements(n: int = 240, *, phy: bool = True) -> MeasurementSet:
    """A ue-mode measurement file with PHY/MAC fields on every report (log-distance RSS, 2 dB noise)."""
    rng = np.random.default_rng(5)
    nodes = tuple(Node(f"c{k}", **_latlon(x, y), tx_power_dbm=30.0) for k, (x, y) in enumerate(NODES))
    xy = np.asarray(NODES)
    samples = []
    for i in range(n):
        p = rng.uniform(0, 400, 2)
        d = np.maximum(np.hypot(*(xy - p).T), 1.0)
        rss = np.round(-30.0 - 30.0 * np.log10(d) + rng.normal(0, 2, len(d)))
        order = np.argsort(-rss, kind="stable")
        bearing = np.degrees(np.arctan2(p[0] - xy[:, 0], p[1] - xy[:, 1])) % 360
        reports = tuple(_report(int(k), float(d[k]), float(bearing[k]), rss, r, rng) for r, k in enumerate(order[:5]))
        if not phy:
            reports = tuple(Report(node=r.node, rss_dbm=r.rss_dbm, toa_ns=r.toa_ns) for r in reports)
        samples.append(Sample(f"s{i}", reports, Position(**_latlon(float(p[0]), float(p[1])))))
    return MeasurementSet(mode="ue", scene=None, nodes=nodes, samples=tuple(samples))


@pytest.fixture(scope="module")
def ws(tmp_path_factory, workspace_env):
    from rflocal_core.dataset import import_measurements
    from rflocal_core.train import train

    path = tmp_path_factory.mktemp("importance") / "workspace"
    path.mkdir()
    with workspace_env(path):
        import_measurements(_measurements(), name="phyfile")
        import_measurements(_measurements(40, phy=False), name="plainfile")
        runs = {"wc": train("phyfile", "weighted_centroid").run_id,
                "setnet": train("phyfile", "setnet", model_config={"phy_features": True, "d_model": 32, "layers": 1},
                                train_config={"epochs": 3, "batch_size": 32}, seed=1).run_id}
        yield path, runs


@pytest.fixture
def env(ws, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(ws[0]))
    return ws


def test_imported_phy_fields_and_the_layer_transform(env):
    x = load_inputs("phyfile", "test", with_maps=False)
    assert x.phy is not None and x.phy.shape[-1] == len(PHY_INPUT_FIELDS)
    col = {f: np.isfinite(x.phy[..., k]) for k, f in enumerate(PHY_INPUT_FIELDS)}
    reporting = np.isfinite(x.rss_dbm)
    assert np.array_equal(col["neighbour_rank"], reporting) and np.array_equal(col["beam_id"], reporting)
    assert not col["doppler_hz"].any()  # the file has none
    kept = PHY_LAYERS["phy"] + PHY_LAYERS["beams"]
    y = apply_transform(x, InputTransform(phy_fields=kept))
    for k, f in enumerate(PHY_INPUT_FIELDS):
        if f in kept:
            np.testing.assert_array_equal(y.phy[..., k], x.phy[..., k])
        else:
            assert np.isnan(y.phy[..., k]).all(), f
    np.testing.assert_array_equal(y.rss_dbm, x.rss_dbm)
    with pytest.raises(InvalidInputError, match="phy_fields: expected a list of rsrq_db"):
        InputTransform(phy_fields=["rsrp"])
    assert "phy_fields" not in InputTransform().to_dict()  # runs from before read the same


def test_shuffle_moves_present_values_within_each_slot(env):
    x = load_inputs("phyfile", "test", with_maps=False)
    rng = np.random.default_rng(0)
    for feature, values in (("rss", lambda z: z.rss_dbm), ("beam_id", lambda z: z.phy[..., 7])):
        y = shuffle_feature(x, feature, rng)
        a, b = values(x), values(y)
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))  # absent stays absent
        for j in range(a.shape[1]):
            np.testing.assert_array_equal(np.sort(a[:, j][np.isfinite(a[:, j])]), np.sort(b[:, j][np.isfinite(b[:, j])]))
        assert not np.array_equal(np.nan_to_num(a), np.nan_to_num(b))
    np.testing.assert_array_equal(shuffle_feature(x, "rss", rng).phy, x.phy)  # nothing else moves


def test_importance_of_an_rss_baseline(env):
    out = permutation_importance(env[1]["wc"], repeats=2)
    rows = {r.feature: r for r in out.features}
    assert set(rows) == {"rss", "toa"} and out.count == len(load_inputs("phyfile", "test", with_maps=False))
    assert rows["rss"].delta_median_m > 5.0 and rows["rss"].layer == "rt"  # weighted centroid weighs by RSS
    assert rows["toa"].delta_median_m == 0.0 == rows["toa"].delta_mean_m  # a feature it does not read
    assert rows["rss"].delta_median_std_m is not None and rows["rss"].present == 1.0
    assert out.features[0].feature == "rss"  # the largest first


def test_importance_of_a_phy_network_cli_and_page(env, capsys):
    run_id = env[1]["setnet"]
    assert main(["ablate", "importance", "--run", run_id, "--repeats", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    layers = {r["feature"]: r["layer"] for r in printed["features"]}
    assert layers["beam_id"] == "beams" and layers["neighbour_rank"] == "mac" and layers["cqi"] == "phy"
    assert "doppler_hz" not in layers  # absent from the split: not shuffled
    saved = load_importance(run_id)
    assert saved is not None and saved.to_json() == printed and saved.repeats == 1
    assert all(r.delta_median_std_m is None for r in saved.features)  # one repeat: no spread
    assert main(["ablate", "importance", "--run", run_id, "--features", "doppler"]) == 2
    assert "features: ['doppler'] are not read by run" in capsys.readouterr().err
    assert main(["ablate", "importance"]) == 2 and "run: 'ablate importance' needs --run" in capsys.readouterr().err
    assert main(["ablate", "--dataset", "phyfile"]) == 2 and "study: --study is required" in capsys.readouterr().err
    at = AppTest.from_file(str(ROOT / "pages" / "views" / "ablations.py"), default_timeout=60)
    at.run()
    at.selectbox(key="imp_run").set_value(run_id)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[-1].value
    assert set(table["feature"]) == set(layers) and len(at.get("plotly_chart")) == 1


def test_feature_layer_study_adds_each_layer(env):
    study = ablate.STUDIES["feature-layers"]
    variants = {v.name: v for v in study.variants}
    assert [v.name for v in study.variants][:4] == ["setnet: RT only", "setnet: + PHY", "setnet: + MAC",
                                                    "setnet: + beams"]
    assert variants["heimdall: + MAC"].train_transform["phy_fields"] == [*PHY_LAYERS["phy"], *PHY_LAYERS["mac"]]
    assert not variants["heimdall: RT only"].model_config and variants["heimdall: RT only"].model == "heimdall"
    out = ablate.run_study("feature-layers", "phyfile", epochs=1, variants=["setnet: RT only", "setnet: + beams"],
                           name="layers")
    rows = {r["variant"]: r for r in out["rows"]}
    cfg = json.loads((env[0] / "runs" / rows["setnet: + beams"]["run_id"] / "config.json").read_text())
    assert cfg["features"]["phy"] is True and cfg["input_transform"]["phy_fields"][-1] == "beam_rsrp_dbm"
    assert rows["setnet: RT only"]["parameters"] < rows["setnet: + beams"]["parameters"]  # wider tokens
    with pytest.raises(InvalidInputError, match=r"dataset: 'plainfile' has no PHY/MAC reports, which the variants "
                                                r"\['setnet: \+ PHY'\] read"):
        ablate.check_study("feature-layers", "plainfile", variants=["setnet: RT only", "setnet: + PHY"])
    ablate.check_study("feature-layers", "plainfile", variants=["setnet: RT only"])  # the RT variant runs anywhere


def _sequence_reports(period: int) -> phy.PhyReports:
    """Eight reports of three cells with the power and the beam gains changing at every report."""
    n, t, s, w = 1, 8, 3, 8
    rng = np.random.default_rng(2)
    rx = -70.0 + rng.normal(0, 6, (n, t, s))
    present = np.ones((n, t, s), bool)
    present[0, 5] = False  # no report at step 5: it does not count
    gains = rng.uniform(0.1, 4.0, (n, t, s, w))
    channel = phy.LinkChannel(beam_gain=gains, eig=rng.uniform(0.1, 1.0, (n, t, s, 2)),
                              arrival_dir=np.broadcast_to([1.0, 0.0, 0.0], (n, t, s, 3)))
    return phy.phy_reports(rx_power_dbm=rx, load=np.full((n, s), 0.5), channel=channel, velocity_m_s=np.zeros((n, t, 3)),
                           present=present, numerology=phy.Numerology(scs_khz=30, n_rb=51), noise_figure_db=7.0,
                           setup=phy.ArraySetup(), freq_hz=3.5e9, rrc_period=period)


def test_rrc_fields_are_held_between_reports_and_l1_fields_are_not():
    fresh, held = _sequence_reports(1), _sequence_reports(3)
    # reports are at steps 0 1 2 3 4 6 7 (5 has none): RRC reports at the 1st and 4th and 7th -> steps 0, 3, 7
    assert phy.rrc_source_steps(np.array([[1, 1, 1, 1, 1, 0, 1, 1]], bool), 3).tolist() == [[0, 0, 0, 3, 3, 3, 3, 7]]
    for key in phy.RRC_FIELDS:
        h, f = getattr(held, key)[0], getattr(fresh, key)[0]
        for step, source in ((1, 0), (2, 0), (4, 3), (6, 3)):
            np.testing.assert_array_equal(h[step], f[source])  # held: the last RRC report's values repeat
        for step in (0, 3, 7):
            np.testing.assert_array_equal(h[step], f[step])
        assert np.isnan(h[5]).all() if h.dtype.kind == "f" else (h[5] == -1).all()  # no report, nothing held
    assert not np.array_equal(fresh.rsrp_dbm[0, 1], fresh.rsrp_dbm[0, 0])  # so the repeats are the hold's
    for key in ("beam_rsrp_dbm", "cqi", "ri", "beam_id", "sinr_db"):
        np.testing.assert_array_equal(getattr(held, key), getattr(fresh, key))  # L1: every report
    assert not np.array_equal(held.beam_rsrp_dbm[0, 1], held.beam_rsrp_dbm[0, 0])
    assert (np.diff(held.cqi[0, [0, 1, 2, 3, 4]], axis=0) != 0).any()
