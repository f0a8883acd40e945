"""``train --refit`` (issue 15): a baseline chooses on val, then is fitted again on train + val with those choices.

On Antwerp's published test file imported 80/10/10 (skipped when ``../shared/data`` is absent).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from rflocal_core.errors import InvalidInputError


@pytest.fixture(scope="module")
def antwerp_ds(import_antwerp, tmp_path_factory: pytest.TempPathFactory, workspace_env):
    ws = tmp_path_factory.mktemp("refit") / "workspace"
    ws.mkdir()
    with workspace_env(ws):
        yield import_antwerp("antr")


def test_join_inputs(antwerp_ds: str) -> None:
    from rflocal_core.models import load_inputs
    from rflocal_core.models.inputs import join_inputs

    tr, va = load_inputs(antwerp_ds, "train"), load_inputs(antwerp_ds, "val")
    both = join_inputs(tr, va)
    assert len(both) == len(tr) + len(va) and both.split == "train+val" and both.fixed_slots == tr.fixed_slots
    np.testing.assert_array_equal(both.rss_dbm[len(tr):], va.rss_dbm)
    np.testing.assert_array_equal(both.truth_m[: len(tr)], tr.truth_m)
    other = replace(va, scenes=("elsewhere",), dataset=tr.dataset)  # b's scenes are matched by name
    mixed = join_inputs(tr, other)
    assert mixed.scenes == (*tr.scenes, "elsewhere") and (mixed.scene_idx[len(tr):] == len(tr.scenes)).all()
    with pytest.raises(InvalidInputError, match="slots"):
        join_inputs(tr, va.slots(slice(0, 5)))


def test_knn_refit_keeps_val_choices_and_grows_the_pool(antwerp_ds: str) -> None:
    from rflocal_core.infer import load_run
    from rflocal_core.models import load_inputs
    from rflocal_core.train import train
    from rflocal_core.train.runs import run_dir

    tr, va = load_inputs(antwerp_ds, "train"), load_inputs(antwerp_ds, "val")
    cfg = {"floor_dbm": -120.0, "k_choices": [1, 5, 15]}
    plain = train(antwerp_ds, "knn", model_config=cfg, seed=0)
    refit = train(antwerp_ds, "knn", model_config=cfg, train_config={"refit": True}, seed=0)
    # val figures and the sigma map are the fit on train's (val is not in-sample); the model is the refit
    assert refit.summary.median_m == pytest.approx(plain.summary.median_m)
    assert refit.sigma_scale == pytest.approx(plain.sigma_scale)
    config = json.loads((run_dir(refit.run_id) / "config.json").read_text(encoding="utf-8"))
    chosen = load_run(plain.run_id).model.state_dict()["k"]
    assert config["refit"]["samples"] == len(tr) + len(va) and config["refit"]["train_samples"] == len(tr)
    assert config["refit"]["model_config"]["k"] == chosen  # the val choice, fixed
    model = load_run(refit.run_id).model
    assert model.config.k == chosen and model.state_dict()["k"] == chosen
    (pool,) = model.state_dict()["fingerprints"].values()
    assert len(pool["pos_m"]) == len(tr) + len(va)
    # each val message now finds its own fingerprint: the nearest neighbour is itself
    near = model.neighbours(va.subset(slice(0, 50)))[0][:, 0]
    assert np.median(np.hypot(*(near - va.truth_m[:50]).T)) < 1.0
    # runs calibrate on a refit run: its choices fitted on train alone predict val, as in training
    from rflocal_core.infer import calibrate_run

    assert calibrate_run(refit.run_id).scale == pytest.approx(plain.sigma_scale)
    # scored on val, the refit run is in-sample (flagged), the train-only run is not; test is neither
    from rflocal_core.infer import evaluate_run

    on_val = evaluate_run(refit.run_id, antwerp_ds, split="val")
    assert on_val.in_sample and on_val.to_json()["in_sample"] is True and on_val.summary.median_m < 1.0
    assert not evaluate_run(plain.run_id, antwerp_ds, split="val").in_sample
    assert not evaluate_run(refit.run_id, antwerp_ds, split="test").in_sample
    with pytest.raises(InvalidInputError, match="refit: weighted_centroid cannot.*knn.*lgbm"):
        train(antwerp_ds, "weighted_centroid", train_config={"refit": True})
    with pytest.raises(InvalidInputError, match="schedule: a refit of fpnet replays the cosine"):
        train(antwerp_ds, "fpnet", train_config={"refit": True, "schedule": "plateau"})
    from rflocal_core.train.auto import auto_train

    with pytest.raises(InvalidInputError, match="refit: auto"):
        auto_train(antwerp_ds, train_config={"refit": True})


def test_ensemble_refits_its_knn_and_lgbm_members(antwerp_ds: str) -> None:
    from rflocal_core.models import Ensemble, load_inputs
    from rflocal_core.models.inputs import join_inputs

    tr, va = load_inputs(antwerp_ds, "train"), load_inputs(antwerp_ds, "val")
    cfg = {"members": "knn,nn1=knn,lgbm", "member_set": "knn:floor_dbm=-120;nn1:k=1;nn1:floor_dbm=-120;lgbm:max_rounds=30",
           "snap_k": 5}
    ens = Ensemble(cfg).fit(tr, va)
    again = ens.refit(join_inputs(tr, va))
    old, new = ens.state_dict(), again.state_dict()
    assert new["refitted"] == ["knn", "nn1", "lgbm"] and new["weights"] == old["weights"]
    # lgbm: fitted again with the trees val stopped it at, times (train + val) / train; its sigma booster kept
    scale = (len(tr) + len(va)) / len(tr)
    assert new["states"][2]["rounds"] == [round(r * scale) for r in old["states"][2]["rounds"]]
    assert new["states"][2]["boosters"]["sigma"] == old["states"][2]["boosters"]["sigma"]
    assert new["configs"]["knn"]["k"] == old["states"][0]["k"]  # the k knn chose on val, fixed
    for i in (0, 1):
        (pool,) = new["states"][i]["fingerprints"].values()
        assert len(pool["pos_m"]) == len(tr) + len(va)
    (snap,) = new["snap_positions"].values()
    assert len(snap) == len(tr) + len(va)
    te = load_inputs(antwerp_ds, "test").subset(slice(0, 100))
    assert np.isfinite(again.predict(te).position_m).all()


def test_refit_plan_replays_the_val_chosen_steps() -> None:
    from rflocal_core.train.engine import TrainConfig, refit_plan

    cfg = TrainConfig(batch_size=128)
    # 100 steps to the chosen epoch at half the schedule; train + val 1,100 samples = 9 steps an epoch
    plan = refit_plan(100, 0.5, cfg, train_samples=1000, refit_samples=1100)
    assert plan.scale == pytest.approx(1.1) and plan.epochs == round(110 / 9) == 12
    assert plan.plan_epochs == pytest.approx(24.0)  # the schedule ends where the chosen epoch stood
    twice = replace(cfg, refit_steps_scale=2.0)
    assert refit_plan(100, 0.5, twice, train_samples=1000, refit_samples=1100).epochs == 22
    assert refit_plan(3, 0.1, cfg, train_samples=1000, refit_samples=1100).epochs == 1  # at least one epoch
    assert refit_plan(0, 0.0, cfg, train_samples=1000, refit_samples=1100).epochs == 0  # the untrained network won
    with pytest.raises(InvalidInputError, match="refit: the fit does not record"):
        refit_plan(None, None, cfg, train_samples=1000, refit_samples=1100)
    with pytest.raises(InvalidInputError, match="refit_steps_scale"):
        TrainConfig(refit_steps_scale=0.01)


def test_network_refit_trains_the_val_chosen_steps_on_train_and_val(antwerp_ds: str) -> None:
    import math

    from rflocal_core.infer import calibrate_run, evaluate_run, load_run
    from rflocal_core.models import load_inputs
    from rflocal_core.train import train
    from rflocal_core.train.runs import run_dir

    tr, va = load_inputs(antwerp_ds, "train"), load_inputs(antwerp_ds, "val")
    tc = {"epochs": 3, "batch_size": 512, "initial_validation": False}
    plain = train(antwerp_ds, "fpnet_knn", train_config=tc, seed=1)
    refit = train(antwerp_ds, "fpnet_knn", train_config={**tc, "refit": True}, seed=1)
    # the val figures and the sigma map are the fit on train's (the same seed: the same run up to the refit)
    assert refit.summary.median_m == pytest.approx(plain.summary.median_m) and refit.best_epoch == plain.best_epoch
    assert refit.sigma_scale == pytest.approx(plain.sigma_scale)
    config = json.loads((run_dir(refit.run_id) / "config.json").read_text(encoding="utf-8"))
    rec = config["refit"]
    assert rec["samples"] == len(tr) + len(va) and rec["train_samples"] == len(tr) and config["train_config"]["refit"]
    per_epoch = math.ceil((len(tr) + len(va)) / 512)
    steps_on_train = plain.best_epoch * math.ceil(len(tr) / 512)
    assert rec["steps_on_val"] == steps_on_train and rec["epochs"] == round(steps_on_train * rec["scale"] / per_epoch)
    assert rec["scale"] == pytest.approx((len(tr) + len(va)) / len(tr))
    assert rec["fit"]["steps"] == rec["epochs"] * per_epoch  # exactly that many epochs over train + val
    assert rec["fit"]["progress"] == pytest.approx(rec["progress_on_val"])  # ends where the chosen epoch stood
    a, b = load_run(plain.run_id).model.net, load_run(refit.run_id).model.net
    assert len(a.db_pos) == len(tr) and len(b.db_pos) == len(tr) + len(va)  # the fingerprints of val joined
    assert not np.allclose(a.position_head[0].weight.detach().numpy(), b.position_head[0].weight.detach().numpy())
    assert evaluate_run(refit.run_id, antwerp_ds, split="val").in_sample
    assert np.isfinite(evaluate_run(refit.run_id, antwerp_ds, split="test").summary.mean_m)
    with pytest.raises(InvalidInputError, match="refitted on train \\+ val"):
        calibrate_run(refit.run_id)


def test_ensemble_refits_its_networks_when_asked(antwerp_ds: str) -> None:
    from rflocal_core.models import Ensemble, load_inputs
    from rflocal_core.models.inputs import join_inputs

    tr, va = load_inputs(antwerp_ds, "train"), load_inputs(antwerp_ds, "val")
    both = join_inputs(tr, va)
    cfg = {"members": "knn,fpnet_knn", "member_set": "knn:floor_dbm=-120", "epochs": 2, "max_minutes": 5}
    ens = Ensemble(cfg).fit(tr, va)
    kept = ens.refit(both).state_dict()
    assert kept["refitted"] == ["knn"] and kept["states"][1]["state"] is ens.state_dict()["states"][1]["state"]
    again = Ensemble.from_state({**cfg, "refit_networks": True}, ens.state_dict()).refit(both)
    old, new = ens.state_dict()["states"][1], again.state_dict()["states"][1]
    assert again.state_dict()["refitted"] == ["knn", "fpnet_knn"]
    rec = new["fit"]["refit"]
    assert rec["steps_on_val"] == old["fit"]["best_step"] > 0 and rec["steps"] == rec["epochs"] * math_ceil(len(both))
    assert len(new["state"]["db_pos"]) == len(both) and len(old["state"]["db_pos"]) == len(tr)
    assert not np.allclose(new["state"]["position_head.0.weight"], old["state"]["position_head.0.weight"])
    te = load_inputs(antwerp_ds, "test").subset(slice(0, 100))
    assert np.isfinite(again.predict(te).position_m).all()


def math_ceil(samples: int, batch: int = 128) -> int:
    """Steps of one epoch over ``samples`` at ``batch``."""
    return -(-samples // batch)


def test_fitted_on_split_names_the_samples_a_model_was_fitted_on() -> None:
    from rflocal_core.infer.evaluate import fitted_on_split

    plain, refit = {"dataset": "ds"}, {"dataset": "ds", "refit": {"samples": 10}}
    assert fitted_on_split(plain, "ds", "train") and fitted_on_split(refit, "ds", "train")
    assert fitted_on_split(refit, "ds", "val") and not fitted_on_split(plain, "ds", "val")
    assert not any(fitted_on_split(c, "ds", "test") for c in (plain, refit))
    assert not fitted_on_split(refit, "other", "val") and not fitted_on_split(refit, "other", "train")
