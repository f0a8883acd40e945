"""Metrics: CDF and percentiles, the Cramér-Rao bound, calibration, breakdowns, evaluate_run, CLI and page."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError
from rflocal_core.infer import EvaluationResult, evaluate_run, evaluation_cache_path
from rflocal_core.metrics import (
    EXPECTED_1SIGMA,
    EXPECTED_2SIGMA,
    bound_from_fisher,
    breakdowns,
    calibration,
    crlb_fisher,
    crlb_for_inputs,
    crlb_rmse_m,
    crlb_summary,
    error_cdf,
    error_summary,
    fit_path_loss_exponent,
    median_difference_se,
    group_labels,
    spatial_error_map,
)

ROOT = Path(__file__).resolve().parents[1]
DS = "mxds"
KEYS = ("run_id", "model", "dataset", "split", "count", "missing", "mean_m", "rmse_m", "median_m", "p67_m", "p80_m",
        "p95_m", "success_rates", "breakdowns", "calibration", "sigma_scale", "sigma_power", "crlb", "cdf", "spatial", "inference_ms_per_sample",
        "cached")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, workspace_env, tiny_dataset):
    """A workspace with one small scene, one ue dataset (RSS + ToA + AoA) and two fitted baselines."""
    from rflocal_core.train import train

    path = tmp_path_factory.mktemp("mx") / "workspace"
    path.mkdir()
    with workspace_env(path):
        tiny_dataset("mx", DS, samples=300)
        runs = {m: train(DS, m).run_id for m in ("weighted_centroid", "knn")}
        yield {"path": path, "runs": runs}


@pytest.fixture(scope="module")
def test_split(ws):
    from rflocal_core.models import load_inputs

    return load_inputs(DS, "test", with_maps=False)


# --------------------------------------------------------------------------- CDF and percentiles


def test_cdf_and_percentiles_hand_computed() -> None:
    errors = np.array([4.0, 1.0, np.nan, 5.0, 2.0, 3.0, np.inf])
    x, frac = error_cdf(errors)
    assert x.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert frac.tolist() == [0.2, 0.4, 0.6, 0.8, 1.0]
    s = error_summary(errors)
    assert s.count == 5 and s.missing == 2
    assert s.mean_m == pytest.approx(3.0)
    assert s.rmse_m == pytest.approx(math.sqrt(55 / 5))
    assert s.median_m == pytest.approx(3.0)
    # linear interpolation between order statistics: rank q * (n - 1)
    assert s.p67_m == pytest.approx(3.68)
    assert s.p80_m == pytest.approx(4.2)
    assert s.p95_m == pytest.approx(4.8)
    assert s.success_rates == {"5m": 1.0, "10m": 1.0, "20m": 1.0, "50m": 1.0, "100m": 1.0}
    assert error_summary(np.array([0.5, 7.0, 30.0, 60.0])).success_rates == {
        "5m": 0.25, "10m": 0.5, "20m": 0.5, "50m": 0.75, "100m": 1.0}
    assert list(s.to_json()) == ["count", "missing", "mean_m", "rmse_m", "median_m", "p67_m", "p80_m", "p95_m",
                                 "success_rates"]
    none = error_summary(np.array([np.nan]))
    assert none.count == 0 and none.missing == 1 and none.median_m is None and none.success_rates == {}
    x, frac = error_cdf(np.array([np.nan]))
    assert len(x) == 0 and len(frac) == 0


# --------------------------------------------------------------------------- Cramér-Rao bound


SQUARE = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])
CENTRE = np.array([50.0, 50.0])


def test_crlb_worked_check_of_the_notes() -> None:
    # σ_dB / n_p = 2 (e.g. σ 6 dB, n_p 3): the bound depends only on the ratio
    assert crlb_rmse_m(CENTRE, SQUARE, rss=True, sigma_rss_db=6.0, path_loss_exponent=3.0) == pytest.approx(32.6, abs=0.1)
    assert crlb_rmse_m(CENTRE, SQUARE, rss=True, sigma_rss_db=2.0, path_loss_exponent=1.0) == pytest.approx(
        crlb_rmse_m(CENTRE, SQUARE, rss=True, sigma_rss_db=6.0, path_loss_exponent=3.0), rel=1e-12)
    assert crlb_rmse_m(CENTRE, SQUARE, toa=True, sigma_toa_m=3.0) == pytest.approx(3.0, abs=0.1)
    assert crlb_rmse_m(CENTRE, SQUARE, aoa=True, sigma_aoa_rad=math.radians(5.0)) == pytest.approx(6.2, abs=0.1)


@pytest.mark.parametrize("n_anchors", [3, 4, 7, 12])
def test_crlb_closed_form_on_a_circle(n_anchors: int) -> None:
    r, sigma_db, n_p, sigma_d = 80.0, 6.0, 3.2, 4.0
    target = np.array([12.0, -30.0])
    angles = 2 * np.pi * np.arange(n_anchors) / n_anchors + 0.3
    nodes = target + r * np.column_stack([np.cos(angles), np.sin(angles)])
    # RSS, known power: F = b (N/2) I with b = (10 n_p / (σ ln 10))² / r², so tr(F⁻¹) = 2 · 2 / (N b)
    b = (10 * n_p / (sigma_db * math.log(10))) ** 2 / r**2
    expected = math.sqrt(4.0 / (n_anchors * b))
    f = crlb_fisher(target, nodes, rss=True, sigma_rss_db=sigma_db, path_loss_exponent=n_p)
    np.testing.assert_allclose(f, b * n_anchors / 2 * np.eye(2), rtol=1e-9, atol=1e-12 * b)
    known = crlb_rmse_m(target, nodes, rss=True, sigma_rss_db=sigma_db, path_loss_exponent=n_p)
    assert known == pytest.approx(expected, rel=1e-9)
    # unknown power: Σ gᵢ over the position entries vanishes by symmetry, so P0 decouples
    f3 = crlb_fisher(target, nodes, rss=True, sigma_rss_db=sigma_db, path_loss_exponent=n_p, unknown_power=True)
    assert f3.shape == (3, 3)
    assert np.abs(f3[:2, 2]).max() < 1e-9 * f3[2, 2]
    unknown = crlb_rmse_m(target, nodes, rss=True, sigma_rss_db=sigma_db, path_loss_exponent=n_p, unknown_power=True)
    assert unknown == pytest.approx(known, rel=1e-9)
    # ToA: F = (N / 2σ²) I, √tr(F⁻¹) = σ √(4/N)
    toa = crlb_rmse_m(target, nodes, toa=True, sigma_toa_m=sigma_d)
    assert toa == pytest.approx(sigma_d * math.sqrt(4.0 / n_anchors), rel=1e-9)
    # independent types add their information
    both = crlb_fisher(target, nodes, rss=True, toa=True, sigma_rss_db=sigma_db, path_loss_exponent=n_p,
                       sigma_toa_m=sigma_d)
    np.testing.assert_allclose(both, f + crlb_fisher(target, nodes, toa=True, sigma_toa_m=sigma_d), rtol=1e-12)


def test_crlb_singular_unknown_power_and_errors() -> None:
    one = SQUARE[:1]
    assert math.isinf(crlb_rmse_m(CENTRE, one, rss=True, sigma_rss_db=6.0, path_loss_exponent=3.0))
    assert math.isinf(crlb_rmse_m(CENTRE, SQUARE, rss=False))
    # off-centre, an unknown power costs information (never less than the known-power bound)
    target = np.array([20.0, 70.0])
    kw = dict(rss=True, sigma_rss_db=6.0, path_loss_exponent=3.0)
    assert crlb_rmse_m(target, SQUARE, **kw, unknown_power=True) > crlb_rmse_m(target, SQUARE, **kw) * 1.001
    # two nodes with unknown power cannot locate (3 unknowns, 2 measurements)
    assert math.isinf(crlb_rmse_m(target, SQUARE[:2], **kw, unknown_power=True))
    # ToA / AoA rows are padded with zeros in the P0 column; without RSS, P0 does not matter
    f3 = crlb_fisher(target, SQUARE, toa=True, sigma_toa_m=3.0, unknown_power=True)
    assert f3.shape == (3, 3) and not f3[2].any() and not f3[:, 2].any()
    assert bound_from_fisher(f3) == pytest.approx(crlb_rmse_m(target, SQUARE, toa=True, sigma_toa_m=3.0))
    # a height difference lowers the ranging information
    assert crlb_rmse_m(CENTRE, SQUARE, toa=True, sigma_toa_m=3.0, dz_m=-30.0) > 3.0
    with pytest.raises(InvalidInputError, match="sigma_toa_m"):
        crlb_fisher(CENTRE, SQUARE, toa=True)
    with pytest.raises(InvalidInputError, match="rss: expected"):
        crlb_fisher(CENTRE, SQUARE, rss=[True, False], sigma_rss_db=6.0, path_loss_exponent=3.0)
    with pytest.raises(InvalidInputError, match="nodes_xy"):
        crlb_fisher(CENTRE, np.zeros((3, 3)), toa=True, sigma_toa_m=1.0)


# --------------------------------------------------------------------------- calibration, spatial


def test_calibration_on_synthetic_gaussian_errors() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    sigma = rng.uniform(2.0, 30.0, (n, 2))
    err = rng.normal(0.0, 1.0, (n, 2)) * sigma
    c = calibration(err, sigma)
    assert c.available and c.count == n and c.no_sigma == 0
    assert c.inside_1sigma == pytest.approx(EXPECTED_1SIGMA, abs=0.015)
    assert c.inside_2sigma == pytest.approx(EXPECTED_2SIGMA, abs=0.015)
    assert EXPECTED_1SIGMA == pytest.approx(0.3935, abs=1e-4) and EXPECTED_2SIGMA == pytest.approx(0.8647, abs=1e-4)
    np.testing.assert_allclose(c.reliability.observed, c.reliability.nominal, atol=0.015)
    over = calibration(err, sigma / 2)  # overconfident
    assert over.inside_1sigma < 0.15 and over.inside_2sigma < 0.45
    # samples without a finite positive sigma are counted and left out
    s2 = sigma.copy()
    s2[:100, 0] = np.nan
    s2[100:150, 1] = 0.0
    err2 = err.copy()
    err2[150:160] = np.nan
    c2 = calibration(err2, s2)
    assert c2.no_sigma == 150 and c2.count == n - 160
    none = calibration(err, np.full_like(sigma, np.nan))
    assert none.available is False and none.no_sigma == n and none.inside_1sigma is None
    assert none.to_json()["reliability"] == {"nominal": list(none.reliability.nominal), "observed": [None] * 11}


def test_spatial_error_map_cells() -> None:
    truth = np.array([[1.0, 1.0], [2.0, 3.0], [40.0, 1.0], [40.0, 70.0], [np.nan, 0.0]])
    err = np.array([1.0, 3.0, 10.0, 5.0, 1.0])
    s = spatial_error_map(truth, err, cell_m=32.0)
    assert s.x_m == [16.0, 48.0] and s.y_m == [16.0, 48.0, 80.0]
    assert s.count == [[2, 1], [0, 0], [0, 1]]
    assert s.median_m[0] == [2.0, 10.0] and math.isnan(s.median_m[1][0]) and s.median_m[2][1] == 5.0
    assert s.to_json()["median_m"][1][0] is None  # NaN in the JSON is None
    with pytest.raises(InvalidInputError, match="cell_m"):
        spatial_error_map(truth, err, cell_m=0)


# --------------------------------------------------------------------------- on the generated dataset


def test_breakdowns_partition_the_samples(ws, test_split) -> None:
    x = test_split
    rng = np.random.default_rng(1)
    err = rng.uniform(0, 100, len(x))
    err[:3] = np.nan
    out = breakdowns(err, x, training_scenes=["mx"])
    assert list(out.to_json()) == ["los", "nodes", "rss_band", "scene"]
    for key in ("los", "nodes", "rss_band", "scene"):
        rows = out.rows(key)
        assert sum(r.count for r in rows) == len(x), key
        assert sum(r.missing for r in rows) == 3, key
        assert all(r.count > 0 for r in rows)
    assert {r.group for r in out.los} <= {"LoS", "NLoS", "unknown"}
    assert {r.group for r in out.los} & {"LoS", "NLoS"}
    assert [r.group for r in out.scene] == ["seen"]
    assert [r.group for r in breakdowns(err, x, training_scenes=["other"]).scene] == ["unseen"]
    with pytest.raises(InvalidInputError, match="category"):
        out.rows("weather")
    labels = group_labels(x)
    assert set(labels["scene"]) == {"unknown"}
    order = ["1-2", "3", "4", "5", "6-7", "8+"]
    groups = [r.group for r in out.nodes]
    assert groups == sorted(groups, key=order.index)
    row = out.nodes[0]
    sel = err[labels["nodes"] == row.group]
    assert row.median_m == pytest.approx(np.nanmedian(sel))


def test_crlb_for_inputs_matches_the_single_geometry(ws, test_split) -> None:
    x = test_split
    fit = fit_path_loss_exponent(x)
    assert 1.5 <= fit.path_loss_exponent <= 6.0 and fit.reports > 50
    kw = dict(path_loss_exponent=fit.path_loss_exponent, sigma_rss_db=6.3, sigma_toa_m=3.0, sigma_aoa_deg=5.0)
    bound = crlb_for_inputs(x, **kw)
    assert bound.shape == (len(x),) and np.isfinite(bound).mean() > 0.9
    for i in np.flatnonzero(np.isfinite(bound))[:5]:
        known = x.known_nodes[i]
        nodes = x.node_pos_m[i, known]
        one = crlb_rmse_m(
            x.truth_m[i], nodes[:, :2], rss=np.isfinite(x.rss_dbm[i, known]), toa=np.isfinite(x.toa_ns[i, known]),
            aoa=np.isfinite(x.aoa_deg[i, known]), sigma_rss_db=6.3, path_loss_exponent=fit.path_loss_exponent,
            sigma_toa_m=3.0, sigma_aoa_rad=math.radians(5.0), dz_m=x.truth_z_m[i] - nodes[:, 2])
        assert bound[i] == pytest.approx(one, rel=1e-9)
    # fewer features, larger bound; unknown power never helps
    rss_only = crlb_for_inputs(x, path_loss_exponent=fit.path_loss_exponent, sigma_rss_db=6.3, sigma_toa_m=None,
                               sigma_aoa_deg=None)
    ok = np.isfinite(rss_only)
    assert np.all(rss_only[ok] >= bound[ok] - 1e-9)
    em = dataclasses.replace(x, mode="emitter", tx_power_dbm=np.full_like(x.tx_power_dbm, np.nan))
    em_rss = crlb_for_inputs(em, path_loss_exponent=fit.path_loss_exponent, sigma_rss_db=6.3, sigma_toa_m=None,
                             sigma_aoa_deg=None)
    assert np.all(em_rss[ok] >= rss_only[ok] * (1 - 1e-9))
    # the per-sample-intercept fit (unknown power) finds a similar exponent
    assert fit_path_loss_exponent(em).path_loss_exponent == pytest.approx(fit.path_loss_exponent, abs=1.0)


def test_crlb_without_known_noise_says_so(ws, test_split) -> None:
    x = dataclasses.replace(test_split, shadowing_sigma_db=float("nan"), rss_noise_db=float("nan"))
    out = crlb_summary(x, np.ones(len(x)), {})  # an imported dataset: no noise recorded
    assert out.available is False and out.features == () and out.rms_m is None
    assert out.to_json()["features"] == [] and out.to_json()["cdf"] == {"x_m": [], "fraction": []}
    assert all(f"{f} left out" in out.note for f in ("RSS", "ToA", "AoA"))
    part = crlb_summary(x, np.ones(len(x)), {"toa_noise_ns": 10.0})
    assert part.available and part.features == ("toa",) and "RSS left out" in part.note
    assert part.ratio_rmse_to_crlb == pytest.approx(1.0 / part.rms_m, rel=1e-9)


def test_evaluate_run_keys_json_and_cache(ws) -> None:
    run_id = ws["runs"]["knn"]
    first = evaluate_run(run_id, DS, split="test", use_cache=True)
    assert isinstance(first, EvaluationResult)
    plain = first.to_json()
    assert list(plain) == [*KEYS[:-1], "training_scenes", "scene_check", "in_sample", "cached"]
    assert plain["in_sample"] is False  # test samples: never fitted on
    assert first.scene_check.status == "same" and first.scene_check.problems == ()  # its own data
    json.dumps(plain, allow_nan=False)
    assert first.run_id == run_id and first.model == "knn" and first.summary.count > 0
    assert first.training_scenes == ("mx",)
    c = first.crlb
    assert c.available and set(c.features) == {"rss", "toa", "aoa"}
    assert c.sigma_rss_db == pytest.approx(math.sqrt(6**2 + 2**2 + 1 / 12))
    assert c.sigma_toa_m == pytest.approx(10 * 0.299792458)
    assert c.sigma_aoa_deg == pytest.approx(math.sqrt(25 + 1 / 12))
    assert 1.5 <= c.path_loss_exponent <= 6.0 and c.rms_m > 0
    assert c.ratio_rmse_to_crlb > 0 and "non-Bayesian" in c.caveat
    assert c.cdf.fraction[-1] == 1.0
    assert sum(r.count for r in first.breakdowns.los) == first.summary.count + first.summary.missing
    assert first.cdf.fraction[-1] == 1.0 and len(first.cdf.x_m) == first.summary.count
    assert first.calibration.available in (True, False)
    path = evaluation_cache_path(run_id, DS, "test")
    assert path == ws["path"] / "runs" / run_id / "eval" / f"{DS}__test.json" and path.is_file()
    assert first.cached is False

    second = evaluate_run(run_id, DS, split="test")
    assert second.cached is True
    assert dataclasses.replace(second, cached=False) == first  # the cache gives back the very same result

    model = ws["path"] / "runs" / run_id / "model.pt"
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third = evaluate_run(run_id, DS, split="test")
    assert third.cached is False and third.summary.median_m == first.summary.median_m
    assert evaluate_run(run_id, DS, split="test", use_cache=False).cached is False

    wc = evaluate_run(ws["runs"]["weighted_centroid"], DS, split="val")
    json.dumps(wc.to_json(), allow_nan=False)
    assert wc.split == "val" and wc.crlb.rms_m > 0
    with pytest.raises(InvalidInputError, match="split"):
        evaluate_run(run_id, DS, split="nope")
    with pytest.raises(InvalidInputError, match="no samples"):
        evaluate_run(run_id, DS, split="test_unseen")


def test_cli_evaluate_prints_the_same_numbers(ws, run_cli) -> None:
    run_id = ws["runs"]["weighted_centroid"]
    core = evaluate_run(run_id, DS, split="test")
    proc = run_cli(["evaluate", "--run", run_id, "--dataset", DS, "--split", "test"], ws["path"])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {**core.to_json(), "cached": True}  # the CLI prints the core's JSON (here from the cache)
    bad = run_cli(["evaluate", "--run", run_id, "--dataset", "missing-ds"], ws["path"])
    assert bad.returncode == 2 and "missing-ds" in bad.stderr


# --------------------------------------------------------------------------- page


def _metrics_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/views/metrics.py")
    at.run()
    return at


def test_metrics_page_shows_cdf_and_table(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(ws["path"]))
    at = _metrics_page()
    assert not at.exception, at.exception
    # the workspace's own runs are newer than the shipped demo runs: the page opens on their dataset
    assert at.selectbox(key="mx_dataset").value == DS
    at.selectbox(key="mx_dataset").set_value(DS)
    at.run()
    at.multiselect(key="mx_runs").set_value(list(ws["runs"].values()))
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # CDF, breakdown bars, reliability or not, spatial
    cdf = json.loads(charts[0].proto.spec)
    names = [trace.get("name") for trace in cdf["data"]]
    assert set(ws["runs"].values()) <= set(names) and "CRLB (per sample)" in names
    errors, success = at.dataframe[0].value, at.dataframe[1].value  # two narrow tables, units in the headers
    assert list(errors["run"]) == list(success["run"]) == list(ws["runs"].values())
    assert {"median (m)", "P95 (m)", "RMSE (m)"} <= set(errors.columns)
    assert {"≤ 5 m (%)", "RMSE / √CRLB", "inference (ms/sample)"} <= set(success.columns)
    assert len(errors.columns) <= 9 and len(success.columns) <= 9
    cal = next(d.value for d in at.dataframe if "σ scale" in d.value.columns)  # the run's fitted sigma scale
    assert list(cal["run"]) == list(ws["runs"].values())
    assert cal["σ scale"].isna().iloc[0] and cal["σ power"].isna().iloc[0]  # weighted_centroid gives no sigma: no scale
    assert any("non-Bayesian" in c.value for c in at.caption)
    at.selectbox(key="mx_split").set_value("test_unseen")
    at.run()
    assert not at.exception and at.error  # the empty split is a known failure, shown as a message


def test_metrics_page_empty_workspace_scores_the_demo_on_its_test_split(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of the box the shipped demo runs are scored on the shipped test split, with no scene warning."""
    from rflocal_core import demo

    if not demo.demo_available():
        pytest.skip("the demo runs are not shipped in assets/demo")
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(tmp_path / "empty"))
    at = _metrics_page()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Metrics"]
    assert at.selectbox(key="mx_dataset").value == demo.DEMO_TEST_DATASET
    assert set(at.multiselect(key="mx_runs").value) == set(demo.DEMO_RUNS)
    assert not at.error and not at.warning, [e.value for e in [*at.error, *at.warning]]
    errors = at.dataframe[0].value
    manifest = json.loads(demo.MANIFEST.read_text())["test_split"]
    for row in errors.to_dict("records"):
        assert row["samples"] == manifest[row["run"]]["count"]
        assert row["median (m)"] == pytest.approx(manifest[row["run"]]["median_m"], abs=0.01)


def test_median_difference_se_draws_squares_and_pairs_the_models():
    rng = np.random.default_rng(5)
    truth = np.c_[rng.uniform(0, 1000, 300), rng.uniform(0, 600, 300)]  # 5 x 3 squares of 200 m
    base = rng.gamma(2.0, 40.0, 300)
    square = (truth[:, 0] // 200).astype(int)
    # b: 30 m worse everywhere (a sure difference); c: better in some squares, worse in others (no sure one)
    swing = np.where(square % 2 == 0, -60.0, 60.0)
    errors = np.stack([base, base + 30.0, np.maximum(base + swing, 0.0)])
    se = median_difference_se(errors, truth, 0, draws=400, seed=1)
    assert se[0] == 0.0 and se[1] == pytest.approx(0.0, abs=1e-9) and se[2] > 15.0
    # the reference: every draw's squares concatenated, the lower median of each model
    _, sq = np.unique(np.floor(truth / 200.0), axis=0, return_inverse=True)
    sq = sq.ravel()
    draws = np.random.default_rng(1)
    meds = []
    for _ in range(400):
        idx = np.concatenate([np.flatnonzero(sq == g) for g in draws.integers(0, sq.max() + 1, sq.max() + 1)])
        srt = np.sort(errors[:, idx], axis=1)
        meds.append(srt[:, (idx.size - 1) // 2])
    meds = np.array(meds)
    assert np.allclose(se, (meds - meds[:, [0]]).std(0))
    # one square: nothing to resample; NaN counts as the largest error; bad shapes are refused naming the field
    assert np.allclose(median_difference_se(errors, np.zeros((300, 2)), 1), 0.0, atol=1e-9)
    with_nan = errors.copy()
    with_nan[1, :200] = np.nan
    assert np.isfinite(median_difference_se(with_nan, truth, 0, draws=50)).all()
    with pytest.raises(InvalidInputError, match="errors_m"):
        median_difference_se(errors[:, :10], truth, 0)
