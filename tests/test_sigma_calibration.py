"""Sigma calibration (temperature scaling on the validation split): the fit, the run hook, real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError
from rflocal_core.metrics import EXPECTED_1SIGMA, EXPECTED_2SIGMA, calibration
from rflocal_core.models.inputs import Prediction
from rflocal_core.train.calibrate import fit_sigma_scale, scale_sigma, sigma_map_of, sigma_scale_of, unscale_sigma

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ANTWERP = SHARED_DATA / "real" / "antwerp_lorawan"


def _gaussian_errors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Errors [n, 2] drawn with a per-sample, per-axis true sigma [n, 2] (metres)."""
    rng = np.random.default_rng(seed)
    true_sigma = rng.uniform(5.0, 60.0, size=(n, 2))
    return rng.normal(size=(n, 2)) * true_sigma, true_sigma


@pytest.mark.parametrize("method", ["coverage", "nll"])
@pytest.mark.parametrize("factor", [0.4, 2.5])
def test_known_factor_is_recovered(method: str, factor: float) -> None:
    err, true_sigma = _gaussian_errors(6000, seed=1)
    cal = fit_sigma_scale(err, true_sigma * factor, method=method)  # sigma off by a known factor
    assert cal.scale == pytest.approx(1.0 / factor, rel=0.05)
    assert cal.count == 6000
    # before: far off the targets; after: on them
    assert abs(cal.inside_1sigma_before - EXPECTED_1SIGMA) > 0.15
    assert cal.inside_1sigma_after == pytest.approx(EXPECTED_1SIGMA, abs=0.02)
    assert cal.inside_2sigma_after == pytest.approx(EXPECTED_2SIGMA, abs=0.02)
    # applied to a Prediction, the metrics see the calibrated ellipses
    pred = scale_sigma(Prediction(err, true_sigma * factor), cal.scale)
    c = calibration(pred.position_m, pred.sigma_m)
    assert c.inside_1sigma == pytest.approx(cal.inside_1sigma_after)


def test_heavy_tails_coverage_beats_likelihood() -> None:
    """A few gross outliers (a fingerprint matched in the wrong street) inflate the Gaussian likelihood's
    scale; the coverage fit keeps both ellipses near their targets."""
    err, sigma = _gaussian_errors(4000, seed=2)
    err[:200] *= 40.0  # 5% outliers
    cov = fit_sigma_scale(err, sigma)
    nll = fit_sigma_scale(err, sigma, method="nll")
    assert nll.scale > 4 * cov.scale
    assert abs(cov.inside_1sigma_after - EXPECTED_1SIGMA) < 0.1
    assert abs(cov.inside_2sigma_after - EXPECTED_2SIGMA) < 0.1
    assert nll.inside_1sigma_after > EXPECTED_1SIGMA + 0.3  # far too wide


def test_no_sigma_stays_nan() -> None:
    err, _ = _gaussian_errors(50, seed=3)
    cal = fit_sigma_scale(err, np.full_like(err, np.nan))
    assert cal.scale is None and cal.count == 0 and cal.inside_1sigma_after is None
    pred = Prediction(err, np.full_like(err, np.nan))
    assert scale_sigma(pred, cal.scale) is pred
    assert np.isnan(scale_sigma(pred, 3.0).sigma_m).all()
    few = fit_sigma_scale(err[:5], np.ones((5, 2)))  # too few to fit
    assert few.scale is None and few.count == 5
    with pytest.raises(InvalidInputError, match="method"):
        fit_sigma_scale(err, np.ones_like(err), method="median")
    with pytest.raises(InvalidInputError, match="sigma_m"):
        fit_sigma_scale(err, np.ones((3, 2)))


def test_auto_radii_keep_a_gaussian_and_fit_heavy_tails_apart() -> None:
    """``sigma_radii`` "auto": Gaussian errors keep the Gaussian radii; errors with a heavy tail (30% of them
    eight times wider than their σ says, as real fingerprints' far misses) leave the Gaussian fit more than 10
    points off the band, and the radii are then fitted apart, both shares on target."""
    from types import SimpleNamespace

    from rflocal_core.train.calibrate import GAUSSIAN_BAND, calibrate_prediction, gaussian_holds

    err, true_sigma = _gaussian_errors(4000, seed=5)
    truth = SimpleNamespace(truth_m=np.zeros_like(err))  # calibrate_prediction reads the truth only
    plain = calibrate_prediction(Prediction(err, true_sigma * 3.0), truth, radii="auto")
    assert gaussian_holds(plain) and plain.method == "power" and plain.ratio_2sigma == 2.0 and plain.radii == "auto"
    tail = err * np.where(np.random.default_rng(6).random(len(err)) < 0.3, 8.0, 1.0)[:, None]
    gauss = calibrate_prediction(Prediction(tail, true_sigma), truth, radii="gaussian")
    assert not gaussian_holds(gauss)  # no single scale holds both shares: what "auto" reacts to
    assert max(abs(gauss.inside_1sigma_after - EXPECTED_1SIGMA),
               abs(gauss.inside_2sigma_after - EXPECTED_2SIGMA)) > GAUSSIAN_BAND
    auto = calibrate_prediction(Prediction(tail, true_sigma), truth, radii="auto")
    assert (auto.method, auto.radii) == ("quantile", "auto") and auto.ratio_2sigma > 2.0
    assert auto.inside_1sigma_after == pytest.approx(EXPECTED_1SIGMA, abs=0.01)
    assert auto.inside_2sigma_after == pytest.approx(EXPECTED_2SIGMA, abs=0.01)
    with pytest.raises(InvalidInputError, match="sigma_radii: expected one of gaussian, quantile, auto, got 'x'"):
        calibrate_prediction(Prediction(err, true_sigma), truth, radii="x")


def test_auto_radii_on_blocks_ask_every_fold() -> None:
    """With out-of-fold rows (``--calibration blocks``: each fold an unseen area), "auto" keeps the Gaussian radii
    only if every fold is within the band: one area 1.6 times harder than the four others leaves the pooled rows in
    the band (what a pooled check would keep) but that fold far out, so the radii are fitted apart."""
    from rflocal_core.train.calibrate import fit_radii, fit_sigma_folds, fold_shares, gaussian_holds

    rng = np.random.default_rng(7)
    sigma = rng.uniform(5.0, 60.0, (5000, 2))
    fold = np.arange(5000) % 5
    for harder, kept in ((1.0, True), (1.6, False)):
        err = rng.normal(size=(5000, 2)) * sigma * np.where(fold == 4, harder, 1.0)[:, None]
        gauss = fit_sigma_folds(err, sigma, fold)
        shares = fold_shares(err, sigma, fold, gauss)
        assert len(shares) == 5 and gaussian_holds(gauss)  # pooled: within 10 points both times
        assert gaussian_holds(gauss, shares) is kept
        if not kept:
            assert shares[4][0] < EXPECTED_1SIGMA - 0.1  # the hard area: its 1σ share far under 39.3%
        cal = fit_radii(err, sigma, "auto", lambda g=gauss: g, fold)
        assert (cal.method, cal.radii) == (("power", "auto") if kept else ("quantile", "auto"))
        assert fit_radii(err, sigma, "auto", lambda g=gauss: g).method == "power"  # no folds: the pooled check


def test_scale_of_a_run_config() -> None:
    assert sigma_scale_of({}) == 1.0  # runs written before scales were kept
    assert sigma_scale_of({"sigma_scale": None}) == 1.0  # a model without sigma
    assert sigma_scale_of({"sigma_scale": 1.7}) == 1.7
    for bad in (0, -1.0, "x", float("nan")):
        with pytest.raises(InvalidInputError, match="sigma_scale"):
            sigma_scale_of({"sigma_scale": bad})


def test_power_fixes_a_wrong_shape() -> None:
    """The model's ellipses are right on average but their sizes too alike (σ_model = sqrt(σ_true · 30 m)):
    no single scale brings both the 1σ and 2σ coverage to target; the exponent (p ≈ 2) does, and
    the map round-trips through a run's config."""
    rng = np.random.default_rng(4)
    true_sigma = np.exp(rng.uniform(np.log(2.0), np.log(500.0), size=(4000, 1))) * rng.uniform(0.5, 1.0, size=(4000, 2))
    err = rng.normal(size=(4000, 2)) * true_sigma
    g = np.sqrt(true_sigma.prod(1))[:, None]
    model_sigma = true_sigma / g * np.sqrt(g * 30.0)  # same aspect ratio, sizes compressed
    one = fit_sigma_scale(err, model_sigma, method="coverage")
    pw = fit_sigma_scale(err, model_sigma)
    assert pw.method == "power" and pw.power == pytest.approx(2.0, abs=0.3) and pw.ref_m > 0
    worst = lambda c: max(abs(c.inside_1sigma_after - EXPECTED_1SIGMA), abs(c.inside_2sigma_after - EXPECTED_2SIGMA))
    assert worst(one) > 0.03 and worst(pw) < 0.015
    pred = scale_sigma(Prediction(err, model_sigma), pw.scale, power=pw.power, ref_m=pw.ref_m)
    c = calibration(pred.position_m, pred.sigma_m)  # applied: what the fit reported
    assert c.inside_1sigma == pytest.approx(pw.inside_1sigma_after) and c.inside_2sigma == pytest.approx(pw.inside_2sigma_after)
    np.testing.assert_allclose(pred.sigma_m[:, 0] / pred.sigma_m[:, 1], model_sigma[:, 0] / model_sigma[:, 1])
    back = unscale_sigma(pred.sigma_m, pw.scale, power=pw.power, ref_m=pw.ref_m)
    np.testing.assert_allclose(back, model_sigma, rtol=1e-9)
    with pytest.raises(ValueError, match="sigma_power"):  # power 0: one size for all, nothing to invert
        unscale_sigma(pred.sigma_m, pw.scale, power=0.0, ref_m=pw.ref_m)
    # Gaussian errors with the right shape keep p = 1 (a second parameter must earn its place)
    assert fit_sigma_scale(err, true_sigma * 2.0).power == 1.0
    assert sigma_map_of({}) == {"scale": 1.0, "power": 1.0, "ref_m": None, "ratio_2sigma": 2.0}  # runs written before
    assert sigma_map_of({"sigma_scale": 2.0, "sigma_power": 1.5, "sigma_ref_m": 40.0})["power"] == 1.5
    with pytest.raises(InvalidInputError, match="sigma_power"):
        sigma_map_of({"sigma_power": -1.0})


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def calib_ws(tmp_path_factory: pytest.TempPathFactory, tiny_dataset, workspace_env) -> Path:
    path = tmp_path_factory.mktemp("calib") / "workspace"
    path.mkdir()
    with workspace_env(path):
        tiny_dataset("cal", "calds", samples=300)
    return path


def test_baseline_run_stores_and_applies_its_scale(calib_ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rflocal_core.access import User
    from rflocal_core.errors import AccessDeniedError
    from rflocal_core.infer import calibrate_run, evaluate_run, load_run
    from rflocal_core.models.transforms import InputTransform, load_transformed
    from rflocal_core.train import train

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(calib_ws))
    result = train("calds", "knn", model_config={"k": 5}, seed=0)
    config = json.loads((calib_ws / "runs" / result.run_id / "config.json").read_text(encoding="utf-8"))
    scale = config["sigma_scale"]
    assert scale is not None and scale > 0 and result.sigma_scale == scale
    assert config["sigma_calibration"]["method"] == "power" and config["sigma_calibration"]["count"] > 0
    assert config["sigma_calibration"]["radii"] == "auto"  # the default asked, kept: its Gaussian fit held
    assert config["sigma_power"] == 1.0  # under 100 val samples: one scale

    run = load_run(result.run_id)
    assert run.sigma_scale == scale
    test = load_transformed("calds", "test", InputTransform(), with_maps=False)
    raw = run.model.predict(test)
    np.testing.assert_allclose(run.predict(test).sigma_m, raw.sigma_m * scale)

    ev = evaluate_run(result.run_id, "calds", split="test")
    assert ev.sigma_scale == pytest.approx(scale)
    expected = calibration(raw.position_m - test.truth_m, raw.sigma_m * scale)
    assert ev.calibration.inside_1sigma == pytest.approx(expected.inside_1sigma)
    assert ev.calibration.inside_2sigma == pytest.approx(expected.inside_2sigma)
    assert ev.to_json()["sigma_scale"] == pytest.approx(scale)

    # a run written before scales were kept predicts its model's sigma as it is
    del config["sigma_scale"], config["sigma_calibration"]
    (calib_ws / "runs" / result.run_id / "config.json").write_text(json.dumps(config), encoding="utf-8")
    old = evaluate_run(result.run_id, "calds", split="test")  # the cache key holds the scale: recomputed
    assert not old.cached and old.sigma_scale == 1.0
    unscaled = calibration(raw.position_m - test.truth_m, raw.sigma_m)
    assert old.calibration.inside_1sigma == pytest.approx(unscaled.inside_1sigma)

    # a run whose config holds a power: predict applies it (the cache key holds it too)
    config.update({"sigma_scale": 1.5, "sigma_power": 2.0, "sigma_ref_m": 10.0})
    (calib_ws / "runs" / result.run_id / "config.json").write_text(json.dumps(config), encoding="utf-8")
    g = np.sqrt(raw.sigma_m.prod(1))[:, None]
    np.testing.assert_allclose(load_run(result.run_id).predict(test).sigma_m, raw.sigma_m * 1.5 * g / 10.0)
    powered = evaluate_run(result.run_id, "calds", split="test")
    assert not powered.cached
    expected = calibration(raw.position_m - test.truth_m, raw.sigma_m * 1.5 * g / 10.0)
    assert powered.calibration.inside_2sigma == pytest.approx(expected.inside_2sigma)

    # `runs calibrate` fits it again from the model's own sigma: the same scale as training fitted
    again = calibrate_run(result.run_id)
    assert again.scale == pytest.approx(scale) and again.radii == "gaussian"  # no record left: the fit it had
    assert load_run(result.run_id).sigma_scale == pytest.approx(scale)
    assert evaluate_run(result.run_id, "calds", split="test").sigma_scale == pytest.approx(scale)
    with pytest.raises(AccessDeniedError):
        calibrate_run(result.run_id, user=User("guest", "viewer"))
    kept = train("calds", "knn", model_config={"k": 5}, seed=0)
    assert calibrate_run(kept.run_id).radii == "auto"  # asks again what training asked


def test_model_without_sigma_keeps_none(calib_ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rflocal_core.infer import evaluate_run
    from rflocal_core.train import train

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(calib_ws))
    result = train("calds", "knn", model_config={"k": 1}, seed=0)  # one neighbour: no spread, no sigma
    assert result.sigma_scale is None
    config = json.loads((calib_ws / "runs" / result.run_id / "config.json").read_text(encoding="utf-8"))
    assert config["sigma_scale"] is None
    ev = evaluate_run(result.run_id, "calds", split="test")
    assert ev.sigma_scale is None and not ev.calibration.available


def test_network_run_calibrates_its_best_epoch(calib_ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rflocal_core.infer import load_run
    from rflocal_core.models.transforms import InputTransform, load_transformed
    from rflocal_core.train import train

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(calib_ws))
    result = train("calds", "setnet", train_config={"epochs": 3, "batch_size": 32}, seed=0)
    assert result.sigma_scale is not None and result.sigma_scale > 0
    run = load_run(result.run_id)
    assert run.sigma_scale == pytest.approx(result.sigma_scale)
    val = load_transformed("calds", "val", InputTransform(), with_maps=False)
    raw = run.model.predict(val)  # the checkpoint (best epoch) is what was calibrated
    refit = fit_sigma_scale(raw.position_m - val.truth_m, raw.sigma_m)
    assert refit.scale == pytest.approx(result.sigma_scale, rel=1e-6)


# --------------------------------------------------------------------------- real data


def test_antwerp_knn_coverage_after_scaling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real LoRaWAN messages: kNN's neighbour spread is overconfident; scaled on val, the 1σ and 2σ
    coverage of the test split lands within 10 points of 39.3% and 86.5%."""
    if not ANTWERP.is_dir():
        pytest.skip(f"real Antwerp LoRaWAN data not found at {ANTWERP}")
    from rflocal_core.dataset import import_measurements
    from rflocal_core.infer import evaluate_run
    from rflocal_core.measurements import convert_antwerp
    from rflocal_core.train import train

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(tmp_path))
    import_measurements(convert_antwerp(ANTWERP, split="test", limit=4000), name="antc",
                        split_fractions=(0.6, 0.2, 0.2))
    result = train("antc", "knn", model_config={"k": 5}, seed=0)
    ev = evaluate_run(result.run_id, "antc", split="test")
    c = ev.calibration
    print(f"antwerp knn k=5: scale {result.sigma_scale:.3f}, test inside 1σ {c.inside_1sigma:.3f}, "
          f"2σ {c.inside_2sigma:.3f}")
    assert abs(c.inside_1sigma - EXPECTED_1SIGMA) <= 0.10
    assert abs(c.inside_2sigma - EXPECTED_2SIGMA) <= 0.10
    # and unscaled it was not: the scale did the work
    config = json.loads((tmp_path / "runs" / result.run_id / "config.json").read_text(encoding="utf-8"))
    assert config["sigma_calibration"]["inside_2sigma_before"] < EXPECTED_2SIGMA - 0.10
