"""The LightGBM fingerprint models (lgbm, knn_lgbm) on real Antwerp data, and the Optuna search helper."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.models import KNNFingerprint, KNNLightGBM, LightGBMFingerprint, WeightedCentroid, errors_m
from rflocal_core.models.trees import LGBMConfig, fingerprint_features
from rflocal_core.tuning import search
from tests.test_knn_fingerprint import antwerp_subset

#: Small boosters: the tests check behaviour, the benchmark the accuracy.
SMALL = {"num_leaves": 15, "max_rounds": 150, "early_stopping_rounds": 20, "sigma_folds": 2, "learning_rate": 0.15}


@pytest.fixture(scope="module")
def antwerp(import_antwerp, tmp_path_factory: pytest.TempPathFactory, workspace_env) -> dict:
    ws = tmp_path_factory.mktemp("trees") / "workspace"
    ws.mkdir()
    with workspace_env(ws):
        splits = antwerp_subset(import_antwerp, "antw")
    return {"ws": ws, **splits}


@pytest.fixture(scope="module")
def lgbm(antwerp: dict) -> tuple[LightGBMFingerprint, np.ndarray, np.ndarray]:
    model = LightGBMFingerprint(SMALL).fit(antwerp["train"], antwerp["val"])
    pred = model.predict(antwerp["test"])
    return model, pred, errors_m(pred, antwerp["test"])


def test_lgbm_beats_the_weighted_centroid_with_a_per_sample_sigma(antwerp: dict, lgbm) -> None:
    model, pred, err = lgbm
    wc = errors_m(WeightedCentroid().fit(antwerp["train"]).predict(antwerp["test"]), antwerp["test"])
    print(f"lgbm {np.median(err):.0f}/{err.mean():.0f} m, weighted centroid {np.median(wc):.0f}/{wc.mean():.0f} m")
    assert np.median(err) < 0.8 * np.median(wc) and err.mean() < wc.mean()
    sig = pred.sigma_m[:, 0]
    assert np.isfinite(pred.sigma_m).all() and (sig > 0).all()
    assert np.std(sig) > 0.1 * np.mean(sig)  # per sample, not a constant
    # honest: samples it calls hard (sigma above its median) have the larger errors
    hard = sig > np.median(sig)
    assert np.median(err[hard]) > 1.2 * np.median(err[~hard])
    st = model.state_dict()
    assert set(st["boosters"]) == {"x", "y", "sigma"} and all(isinstance(v, str) for v in st["boosters"].values())
    assert st["search"] == [] and len(st["rounds"]) == 2


def test_lgbm_state_round_trip(antwerp: dict, lgbm) -> None:
    model, pred, _ = lgbm
    again = LightGBMFingerprint.from_state(model.config.to_dict(), model.state_dict())
    other = again.predict(antwerp["test"])
    np.testing.assert_array_equal(other.position_m, pred.position_m)
    np.testing.assert_array_equal(other.sigma_m, pred.sigma_m)


def test_lgbm_refit_fits_train_plus_val_with_the_val_stopped_trees(antwerp: dict, lgbm) -> None:
    from rflocal_core.models.inputs import join_inputs

    model, pred, _ = lgbm
    st = model.state_dict()
    tr, va = antwerp["train"], antwerp["val"]
    assert st["train_samples"] == len(tr)
    # on the same samples with the same trees the refit is the fitted model: same options, rounds and origins
    same = LightGBMFingerprint.from_state({**model.config.to_dict(), "refit_rounds_scale": 1.0}, st).refit(tr)
    np.testing.assert_allclose(same.predict(antwerp["test"]).position_m, pred.position_m, rtol=0, atol=1e-6)
    both = join_inputs(tr, va)
    again = model.refit(both)  # refit_rounds_scale None: the val-stopped trees times (train + val) / train
    new = again.state_dict()
    assert new["rounds"] == [round(r * len(both) / len(tr)) for r in st["rounds"]] != st["rounds"]
    assert new["refit"] == {"rounds_on_val": st["rounds"], "scale": len(both) / len(tr)}
    assert new["boosters"]["sigma"] == st["boosters"]["sigma"] and new["boosters"]["x"] != st["boosters"]["x"]
    assert new["train_samples"] == len(both) and again.config.search_trials == 0
    # it has learnt val's fingerprints (in sample now): val errors drop well below the fit on train's
    before, after = errors_m(model.predict(va), va), errors_m(again.predict(va), va)
    print(f"val in sample after the refit {np.median(after):.0f}/{after.mean():.0f} m, "
          f"held out before {np.median(before):.0f}/{before.mean():.0f} m")
    assert np.median(after) < 0.8 * np.median(before)


def test_features_nan_for_not_heard_and_refuse_without_fixed_slots(antwerp: dict) -> None:
    te = antwerp["test"]
    f = fingerprint_features(te, geometry=True)
    s = te.fixed_slots
    assert f.shape == (len(te), 2 * s + 6)  # RSS, count, max, relative RSS, centroid, strongest node
    np.testing.assert_array_equal(np.isnan(f[:, :s]), ~np.isfinite(te.rss_dbm[:, :s]))
    np.testing.assert_array_equal(f[:, s], np.isfinite(te.rss_dbm[:, :s]).sum(1))
    shuffled = te.slots(np.arange(te.rss_dbm.shape[1])[::-1])  # slots no longer name the same node
    assert shuffled.fixed_slots == 0
    with pytest.raises(InvalidInputError, match="fixed node slots"):
        LightGBMFingerprint(SMALL).fit(shuffled, shuffled)


def test_random_forest_mode_and_bad_options(antwerp: dict) -> None:
    tr = antwerp["train"].subset(slice(0, 1200))
    model = LightGBMFingerprint({**SMALL, "boosting": "rf", "max_rounds": 40, "sigma_folds": 0}).fit(tr, antwerp["val"])
    pred = model.predict(antwerp["test"])
    assert np.isfinite(pred.position_m).all() and np.isnan(pred.sigma_m).all()
    # squared loss in rf mode: with huber's clipped gradients the forest stayed near the mean (1.8 km)
    assert np.median(errors_m(pred, antwerp["test"])) < 500
    with pytest.raises(InvalidInputError, match="bagging_fraction"):
        LGBMConfig(boosting="rf", bagging_fraction=1.0)
    with pytest.raises(InvalidInputError, match="sigma_folds"):
        LGBMConfig(sigma_folds=1)
    with pytest.raises(InvalidInputError, match="num_threads"):
        LGBMConfig(num_threads=8)
    with pytest.raises(InvalidInputError, match="val"):
        LightGBMFingerprint(SMALL).fit(tr)


def test_search_records_its_trials(antwerp: dict) -> None:
    tr = antwerp["train"].subset(slice(0, 1000))
    cfg = {**SMALL, "max_rounds": 30, "sigma_folds": 0, "search_trials": 3}
    st = LightGBMFingerprint(cfg).fit(tr, antwerp["val"]).state_dict()
    assert [r["number"] for r in st["search"]] == [0, 1, 2]
    assert all(r["state"] == "complete" and r["value"] > 0 and "num_leaves" in r for r in st["search"])
    best = min(st["search"], key=lambda r: r["value"])
    assert st["params"] == {k: best[k] for k in st["params"]} and "huber_delta_m" in st["params"]


def test_knn_lgbm_refines_knn(antwerp: dict) -> None:
    model = KNNLightGBM({**SMALL, "knn": {"k_choices": (3, 7), "floor_choices": (-125.0,)}})
    model.fit(antwerp["train"], antwerp["val"])
    err = errors_m(model.predict(antwerp["test"]), antwerp["test"])
    st = model.state_dict()
    assert st["knn"]["k"] in (3, 7) and st["knn"]["floor_dbm"] == -125.0
    knn = errors_m(KNNFingerprint.from_state(model.config.knn, st["knn"]).predict(antwerp["test"]), antwerp["test"])
    print(f"knn_lgbm {np.median(err):.0f}/{err.mean():.0f} m, its kNN {np.median(knn):.0f}/{knn.mean():.0f} m")
    assert err.mean() < knn.mean()
    from rflocal_core.models.inputs import join_inputs

    again = model.refit(join_inputs(antwerp["train"], antwerp["val"])).state_dict()  # its kNN too, k and floor fixed
    assert again["knn"]["k"] == st["knn"]["k"] and again["knn"]["floor_dbm"] == -125.0
    (pool,) = again["knn"]["fingerprints"].values()
    assert len(pool["pos_m"]) == len(antwerp["train"]) + len(antwerp["val"])


def test_search_helper_finds_the_minimum_and_repeats() -> None:
    space = {"a": ("float", -4.0, 4.0), "n": ("int", 1, 64, "log"), "c": ("choice", ("x", "y"))}

    def f(p: dict) -> float:
        return (p["a"] - 1.0) ** 2 + abs(np.log2(p["n"]) - 3) + (p["c"] == "y")

    one = search(f, space, n_trials=40, seed=3)
    two = search(f, space, n_trials=40, seed=3)
    assert one.trials == [{**t, "seconds": one.trials[i]["seconds"]} for i, t in enumerate(two.trials)]
    assert one.best_value < 1.0 and one.best_params["c"] == "x"
    assert len(one.trials) == 40 and json.dumps(one.to_dict())
    with pytest.raises(InvalidInputError, match="space"):
        search(f, {"a": ("float", 2.0, 1.0)}, n_trials=2)
    with pytest.raises(InvalidInputError, match="n_trials"):
        search(f, space, n_trials=0)
    quick = search(f, space, n_trials=10_000, max_seconds=0.5)
    assert 1 <= len(quick.trials) < 10_000


def test_lgbm_run_trains_evaluates_and_predicts_from_the_command_line(antwerp: dict, monkeypatch, run_cli,
                                                                       tmp_path: Path, shared_data: Path) -> None:
    from rflocal_core import settings
    from rflocal_core.infer import evaluate_run
    from rflocal_core.measurements import convert_antwerp, dumps_measurements
    from rflocal_core.train import train

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(antwerp["ws"]))
    result = train("antw", "lgbm", model_config=SMALL)
    test = evaluate_run(result.run_id, "antw", split="test").summary
    assert 50 < test.median_m < 600 and np.isfinite(test.mean_m)
    ms = convert_antwerp(shared_data / "real" / "antwerp_lorawan", split="test")
    path = tmp_path / "ten.json"
    path.write_text(dumps_measurements(replace(ms, samples=ms.samples[:10])))
    proc = run_cli(["predict", "--run", result.run_id, "--input", str(path)], antwerp["ws"])
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["predictions"]
    assert len(rows) == 10 and all(r["sigma_x_m"] > 0 and r["error_m"] < 5000 for r in rows)
