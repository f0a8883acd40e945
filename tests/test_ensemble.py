"""The ``ensemble`` model: members fitted together, weights on val, a run that predicts alone (issue 15)."""

from __future__ import annotations


import numpy as np
import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.models import Ensemble, errors_m, load_inputs
from rflocal_core.models.ensemble import (
    HEDGE_GAP,
    HEDGE_MASSES,
    HEDGE_TEMPERATURES,
    bagged_weights,
    combine_positions,
    mixture_sigma,
    simplex_grid,
    snap_to_positions,
)

#: Antwerp messages imported (80/10/10): enough for the members to differ, small for the test budget.
MESSAGES = 1500

#: Small members: the test checks the machinery, bench/bench_real.py the accuracy.
MEMBER_SET = ("lgbm:num_leaves=15;lgbm:max_rounds=120;lgbm:sigma_folds=0;"
              "fpnet:d_model=32;fpnet:blocks=1;fpnet:rss_offset_db=0")


@pytest.fixture(scope="module")
def antwerp(import_antwerp, tmp_path_factory: pytest.TempPathFactory, workspace_env) -> dict:
    ws = tmp_path_factory.mktemp("ensemble") / "workspace"
    ws.mkdir()
    with workspace_env(ws):
        import_antwerp("antw", limit=MESSAGES)
    return {"ws": ws}


def test_ensemble_run_trains_members_chooses_weights_and_predicts_alone(antwerp: dict, workspace_env) -> None:
    from rflocal_core.infer import evaluate_run
    from rflocal_core.infer.run import load_run
    from rflocal_core.train import train

    cfg = {"members": "knn,nn1=knn,lgbm,fpnet", "member_set": MEMBER_SET + ";nn1:k=1", "max_minutes": 0.05,
           "epochs": 2, "combine": "median", "weight_step": 0.25,
           "member_train": "fpnet:batch_size=64;fpnet:select_on=mean"}  # e.g. what a network's search chose
    with workspace_env(antwerp["ws"]):
        result = train("antw", "ensemble", model_config=cfg)
        run = load_run(result.run_id)
        test = load_inputs("antw", "test")
        pred = run.predict(test)
        again = Ensemble.from_state(run.model.config, run.model.state_dict()).predict(test)
        evaluated = evaluate_run(result.run_id, "antw", split="test")
    assert isinstance(run.model, Ensemble)
    np.testing.assert_allclose(again.position_m, pred.position_m)  # the saved state predicts alone
    state = run.model.state_dict()
    w = np.asarray(state["weights"])
    assert state["members"] == ["knn", "nn1", "lgbm", "fpnet"] and state["models"] == ["knn", "knn", "lgbm", "fpnet"]
    assert state["kinds"] == ["baseline", "baseline", "baseline", "network"] and state["states"][1]["k"] == 1
    assert state["states"][3]["fit"]["epochs_run"] >= 1  # what the network member's epoch loop did
    assert state["states"][3]["fit"]["train_options"] == {"batch_size": 64, "select_on": "mean"}
    assert w.shape == (4,) and np.isclose(w.sum(), 1.0) and (w >= 0).all()
    search = state["search"]
    # the grid holds every member alone, so the chosen weights score at least as well on val as the best one
    assert search["chosen_m"] <= min(search["members_alone_m"].values()) + 1e-9
    # kNN's sigma is 0 where its neighbours coincide; the others' are positive
    assert np.isfinite(pred.position_m).all() and np.isfinite(pred.sigma_m).all() and (pred.sigma_m >= 0).all()
    err = errors_m(pred, test)
    print(f"ensemble weights {w.round(2)}, test median {np.median(err):.0f} m, val {search}")
    assert evaluated.summary.count > 0 and np.isfinite(evaluated.summary.median_m)


def test_snap_pulls_estimates_to_the_training_positions(antwerp: dict, workspace_env) -> None:
    ref = np.array([[0.0, 0.0], [10.0, 0.0], [100.0, 0.0]])
    np.testing.assert_allclose(snap_to_positions(np.array([[4.0, 3.0], [90.0, 0.0]]), ref, 2), [[5.0, 0.0], [55.0, 0.0]])
    with workspace_env(antwerp["ws"]):
        train, val, test = (load_inputs("antw", s) for s in ("train", "val", "test"))
    plain = Ensemble({"members": "knn,nn1=knn", "weight_step": 0.5}).fit(train, val)
    snapped = Ensemble({"members": "knn,nn1=knn", "weight_step": 0.5, "snap_k": 1}).fit(train, val)
    p, q = plain.predict(test), snapped.predict(test)
    known = {tuple(t) for t in train.truth_m.round(6)}
    assert all(tuple(t) in known for t in q.position_m.round(6))  # k = 1: every estimate is a training position
    assert not np.allclose(p.position_m, q.position_m)
    np.testing.assert_allclose(q.sigma_m, p.sigma_m)  # the snap moves the estimate, not its sigma
    again = Ensemble.from_state(snapped.config, snapped.state_dict()).predict(test)
    np.testing.assert_allclose(again.position_m, q.position_m)


def test_sigma_member_reports_that_members_own_sigma(antwerp: dict, workspace_env) -> None:
    """``sigma_member``: the answer is the combination's, the σ that member's own (brief B25: on Duke's area splits
    kNN's neighbour spread travels to an unseen area better than the members' spread)."""
    from rflocal_core.models import KNNFingerprint

    with workspace_env(antwerp["ws"]):
        train, val, test = (load_inputs("antw", s) for s in ("train", "val", "test"))
    cfg = {"members": "knn,nn1=knn", "weight_step": 0.5}
    plain = Ensemble(cfg).fit(train, val)
    own = Ensemble({**cfg, "member_set": "nn1:k=1", "sigma_member": "nn1"}).fit(train, val)
    p, q = plain.predict(test), own.predict(test)
    np.testing.assert_allclose(q.position_m, p.position_m)  # the answer does not change
    np.testing.assert_allclose(q.sigma_m, KNNFingerprint({"k": 1}).fit(train, val).predict(test).sigma_m)
    assert not np.allclose(q.sigma_m, p.sigma_m)
    again = Ensemble.from_state(own.config, own.state_dict()).predict(test)
    np.testing.assert_allclose(again.sigma_m, q.sigma_m)
    with pytest.raises(InvalidInputError, match="sigma_member: expected '' with a sigma_mass"):
        Ensemble({**cfg, "sigma_member": "knn", "posterior_member": "knn", "sigma_mass": 0.8}).fit(train, val)


def test_bagged_weights_average_the_choices_on_val_resamples(antwerp: dict, workspace_env) -> None:
    grid = simplex_grid(2, 0.5)  # [0, 1], [0.5, 0.5], [1, 0]
    err = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0]])
    np.testing.assert_allclose(bagged_weights(grid, err, "mean", bags=5, seed=0), grid[0])  # best on every resample
    err = np.array([[0.0, 0.0, 9.0, 9.0], [9.0, 9.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]])  # which wins depends on the draw
    w = bagged_weights(grid, err, "mean", bags=200, seed=1)
    assert np.isclose(w.sum(), 1.0) and 0.1 < w[0] < 0.9  # a mixture of the two winners' weights
    np.testing.assert_allclose(w, bagged_weights(grid, err, "mean", bags=200, seed=1))  # seeded
    with workspace_env(antwerp["ws"]):
        train, val = load_inputs("antw", "train"), load_inputs("antw", "val")
    model = Ensemble({"members": "knn,nn1=knn", "weight_step": 0.25, "weight_bags": 20}).fit(train, val)
    st = model.state_dict()
    assert st["search"]["bags"] == 20 and np.isclose(sum(st["weights"]), 1.0)


def test_combination_mean_median_and_mixture_sigma() -> None:
    grid = simplex_grid(3, 0.25)
    assert len(grid) == 15 and np.allclose(grid.sum(1), 1) and (grid >= 0).all()
    assert any(np.allclose(g, [1, 0, 0]) for g in grid)  # every member alone is a grid point
    pos = np.array([[[0.0, 0.0]], [[10.0, 0.0]], [[1000.0, 0.0]]])  # two agree, one is far off
    w = np.full(3, 1 / 3)
    mean = combine_positions(pos, w, "mean")
    median = combine_positions(pos, w, "median")
    assert mean[0, 0] == pytest.approx(1010 / 3)
    assert 0.0 <= median[0, 0] <= 10.0 + 1e-6  # the geometric median ignores the outlier
    gap = pos.copy()
    gap[0] = np.nan  # a member without a position there: the others decide
    np.testing.assert_allclose(combine_positions(gap, w, "mean"), [[505.0, 0.0]])
    assert np.isnan(combine_positions(gap, np.array([1.0, 0.0, 0.0]), "median")).all()
    sig = np.array([[[3.0, 3.0]], [[4.0, 4.0]], [[np.nan, np.nan]]])
    s = mixture_sigma(pos[:2], sig[:2], np.array([0.5, 0.5]), np.array([[5.0, 0.0]]))
    # spread 25 m^2 in x (0 in y) plus the mean variance (9 + 16) / 2
    np.testing.assert_allclose(s, [[np.sqrt(25 + 12.5), np.sqrt(12.5)]])
    s = mixture_sigma(pos, sig, np.array([0.5, 0.0, 0.5]), np.array([[500.0, 0.0]]))
    assert np.isfinite(s).all()  # a member without sigma adds its spread only


@pytest.mark.parametrize(("cfg", "match"), [
    ({"members": "knn"}, "members: expected 2 to 6"),
    ({"members": "knn,ensemble"}, "ensemble not allowed"),
    ({"members": "knn,nosuch"}, "nosuch not allowed"),
    ({"members": "knn,lgbm", "member_set": "fpnet:d_model=32"}, "member_set: expected NAME:KEY=VALUE"),
    ({"members": "knn,knn"}, "members: expected 2 to 6 different names"),
    ({"members": "knn,nn1=knn", "member_set": "nn1:k=0"}, "k: expected"),
    ({"members": "knn,lgbm", "member_set": "lgbm:num_leaves=1"}, "num_leaves"),
    ({"combine": "mode"}, "combine"),
    ({"snap_k": -1}, "snap_k"),
    ({"weight_bags": -1}, "weight_bags"),
    ({"members": "knn,nn1=knn", "sigma_member": "lgbm"}, "sigma_member: expected '' or a member's name \\(knn, nn1\\)"),
    ({"members": "knn,lgbm"}, "member_set: expected NAME:KEY=VALUE with NAME among the members"),  # nn1:k=1 left
    ({"members": "knn,fpnet", "member_set": "", "member_train": "knn:lr=0.01"},
     "member_train: expected NAME:KEY=VALUE with NAME among the network members \\(fpnet\\)"),
    ({"members": "knn,fpnet", "member_set": "", "member_train": "fpnet:max_minutes=3"}, "set by the ensemble itself"),
    ({"members": "knn,fpnet", "member_set": "", "member_train": "fpnet:lr=2"}, "lr: expected a number in"),
    ({"members": "knn,fpnet", "member_set": "", "member_train": "fpnet:select_on=x"}, "select_on: expected one of"),
])
def test_bad_options_are_refused_naming_the_field(cfg: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        Ensemble(cfg)


def test_hedged_answer_and_credible_radius() -> None:
    from rflocal_core.models.ensemble import credible_radius, hedged_answer

    # one other member at the origin (weight 0.5); the posterior member (weight 0.5): 0.9 at x = 0, 0.1 at x = 1000
    pos = np.zeros((1, 1, 2))
    post_pos = np.array([[[0.0, 0.0], [1000.0, 0.0]]])
    post_w = np.array([[0.9, 0.1]])
    sharp, s1 = hedged_answer(pos, np.array([0.5]), post_pos, post_w, temperature=1.0, how="mean")
    flat, _ = hedged_answer(pos, np.array([0.5]), post_pos, post_w, temperature=100.0, how="mean")
    assert sharp[0, 0] == pytest.approx(50.0)  # 0.5 x 0.1 x 1000
    assert 240.0 < flat[0, 0] < 250.0  # tempered towards 0.5 / 0.5 within the member: 0.5 x ~0.49 x 1000
    # sigma: RMS around the answer under the untempered weights (0.5 + 0.45 at 0, 0.05 at 1000)
    assert s1[0, 0] == pytest.approx(np.sqrt(0.95 * 50.0**2 + 0.05 * 950.0**2))
    # the radius around the origin holding 0.8 of the weight: 0 (floored to 1 m); 0.95: the far candidate
    assert credible_radius(post_pos, post_w, np.zeros((1, 2)), 0.8)[0] == pytest.approx(1.0)
    assert credible_radius(post_pos, post_w, np.zeros((1, 2)), 0.95)[0] == pytest.approx(np.hypot(1000.0, 1.0))


def test_posterior_member_hedges_the_answer_and_gives_the_radius_sigma(antwerp: dict, workspace_env) -> None:
    with workspace_env(antwerp["ws"]):
        train, val, test = (load_inputs("antw", s) for s in ("train", "val", "test"))
    base = {"members": "knn,kmap=knn", "member_set": "kmap:k=10;kmap:radio_map_m=35;kmap:floor_dbm=-120",
            "weight_step": 0.5}
    plain = Ensemble(base).fit(train, val)
    hedged = Ensemble.from_state({**base, "posterior_member": "kmap", "posterior_k": 200, "sigma_mass": 0.8},
                                 plain.state_dict())
    p, q = plain.predict(test), hedged.predict(test)
    assert np.isfinite(q.position_m).all() and not np.allclose(p.position_m, q.position_m)
    np.testing.assert_allclose(q.sigma_m[:, 0], q.sigma_m[:, 1])  # a radius: the same on both axes
    assert (q.sigma_m >= 0.5).all()  # at least the 1 m floor over 2
    again = Ensemble.from_state(hedged.config, hedged.state_dict()).predict(test)
    np.testing.assert_allclose(again.position_m, q.position_m)
    with pytest.raises(InvalidInputError, match="posterior_member: expected '' or the name of a knn member"):
        Ensemble({**base, "posterior_member": "knn2"})
    with pytest.raises(InvalidInputError, match="sigma_mass: expected 0 without a posterior_member"):
        Ensemble({**base, "sigma_mass": 0.8}).fit(train, val)


def test_hedge_search_chooses_temperature_and_mass_on_val_by_the_rule(antwerp: dict, workspace_env) -> None:
    with workspace_env(antwerp["ws"]):
        train, val, test = (load_inputs("antw", s) for s in ("train", "val", "test"))
    base = {"members": "knn,kmap=knn", "member_set": "kmap:k=10;kmap:radio_map_m=35;kmap:floor_dbm=-120",
            "weight_step": 0.5, "posterior_member": "kmap", "posterior_k": 200, "sigma_mass": 0.8}
    model = Ensemble({**base, "hedge": "search"}).fit(train, val)
    chosen = model.state_dict()["hedge"]
    rows = chosen["candidates"]
    assert len(rows) == len(HEDGE_TEMPERATURES) * len(HEDGE_MASSES)
    qualified = [r for r in rows if r["gap"] <= HEDGE_GAP]
    pick = min(qualified, key=lambda r: r["val_mean_m"]) if qualified else min(rows, key=lambda r: r["gap"])
    assert (chosen["temperature"], chosen["sigma_mass"]) == (pick["temperature"], pick["sigma_mass"])
    assert model.hedge_params() == (pick["temperature"], pick["sigma_mass"])
    # it predicts as the fixed hedge with the chosen pair, and the choice survives the state and a refit
    fixed = Ensemble.from_state({**base, "posterior_temperature": pick["temperature"],
                                 "sigma_mass": pick["sigma_mass"]}, model.state_dict())
    p, q = model.predict(test), fixed.predict(test)
    np.testing.assert_allclose(p.position_m, q.position_m)
    np.testing.assert_allclose(p.sigma_m, q.sigma_m)
    assert model.refit(val).hedge_params() == model.hedge_params()
    # a bound on the val median no candidate meets: the least coverage gap, said so
    capped = Ensemble.from_state({**base, "hedge": "search", "hedge_median_m": 1e-3}, model.state_dict())
    hedge = capped._search_hedge(val, np.stack([m.predict(val).position_m for m in capped._members()]),  # noqa: SLF001
                                 np.asarray(model.state_dict()["weights"]))
    assert hedge["rule"].startswith("none within the rule")
    assert hedge["temperature"] == min(rows, key=lambda r: r["gap"])["temperature"]
    with pytest.raises(InvalidInputError, match="hedge: expected 'fixed' without a posterior_member"):
        Ensemble({"members": "knn,kmap=knn", "member_set": "", "hedge": "search"}).fit(train, val)
    with pytest.raises(InvalidInputError, match="hedge: 'search' needs a fit that searched"):
        unsearched = {k: v for k, v in model.state_dict().items() if k != "hedge"}
        Ensemble.from_state({**base, "hedge": "search"}, unsearched).predict(test)
