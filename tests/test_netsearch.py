"""A network's hyperparameter search on its validation split (``--search-trials``, issue 15).

On 1,500 messages of Antwerp's published test file imported 80/10/10 (skipped when ``../shared/data`` is
absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rflocal_core.errors import InvalidInputError


@pytest.fixture(scope="module")
def antwerp_ds(import_antwerp, tmp_path_factory: pytest.TempPathFactory, workspace_env):
    ws = tmp_path_factory.mktemp("netsearch") / "workspace"
    ws.mkdir()
    with workspace_env(ws):
        yield import_antwerp("ants", limit=1500)


def test_every_network_has_a_valid_search_space_over_its_own_options() -> None:
    import dataclasses

    from rflocal_core.models.registry import NETWORKS
    from rflocal_core.train import TrainConfig
    from rflocal_core.train.netsearch import TRAIN_SPACE, search_space

    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    for model, cls in NETWORKS.items():
        space = search_space(model)
        fields = {f.name for f in dataclasses.fields(cls.config_cls)}
        assert set(TRAIN_SPACE) <= set(space) and set(TRAIN_SPACE) <= train_keys
        assert set(space) - set(TRAIN_SPACE) <= fields, model  # the rest: options of the network itself
    assert {"d_model", "blocks", "gateway_drop", "neighbours", "base_k"} <= set(search_space("fpnet_knn"))
    with pytest.raises(InvalidInputError, match="knn"):
        search_space("knn")


@pytest.fixture(scope="module")
def searched(antwerp_ds: str) -> dict:
    from rflocal_core.train import train

    stages: list[str] = []
    result = train(antwerp_ds, "fpnet", seed=0, progress=lambda stage, fraction: stages.append(stage),
                   model_config={"d_model": 32},
                   train_config={"epochs": 3, "search_trials": 4, "search_minutes": 2, "select_on": "mean"})
    return {"run_id": result.run_id, "stages": stages}


def test_search_trains_the_run_with_the_best_trial_and_records_every_trial(searched: dict) -> None:
    from rflocal_core.infer import load_run
    from rflocal_core.train.runs import run_dir

    run_id, stages = searched["run_id"], searched["stages"]
    config = json.loads((run_dir(run_id) / "config.json").read_text(encoding="utf-8"))
    search = config["search"]
    done = [t for t in search["trials"] if t["state"] == "complete"]
    assert len(search["trials"]) == 4 and len(done) >= 2  # the budget may end the search early, never before 2
    assert search["select_on"] == "mean" and search["trial_minutes"] == pytest.approx(0.5)
    # the score of a trial is its val mean; the best is the least, and the run trains with its options
    assert all(t["value"] == pytest.approx(t["mean_m"]) for t in done)
    best = min(done, key=lambda t: t["value"])
    assert search["best_value"] == pytest.approx(best["value"])
    for key in ("blocks", "gateway_drop", "dropout"):
        assert config["model_config"][key] == best[key]
    # the user's own option stays fixed: not searched
    assert "d_model" not in search["space"] and config["model_config"]["d_model"] == 32
    for key in ("lr", "weight_decay", "batch_size"):
        assert config["train_config"][key] == best[key]
    # the options differ between trials (TPE starts at random), and the run's model loads with the chosen ones
    assert len({(t["blocks"], round(t["lr"], 9)) for t in search["trials"]}) > 1
    assert load_run(run_id).model.net.config.blocks == best["blocks"]
    assert any(s.startswith("search trial 1/4: ") for s in stages) and any("search" not in s for s in stages[-3:])


def test_search_is_refused_where_it_cannot_run(antwerp_ds: str) -> None:
    from rflocal_core.train import train

    with pytest.raises(InvalidInputError, match="search_trials.*streamed"):
        train(antwerp_ds, "setnet", train_config={"epochs": 1, "search_trials": 2, "data_loading": "stream"})
    with pytest.raises(InvalidInputError, match="search_trials"):
        train(antwerp_ds, "fpnet", train_config={"search_trials": -1})
    with pytest.raises(InvalidInputError, match="search_trials: .* knn is a baseline"):  # not silently ignored
        train(antwerp_ds, "knn", train_config={"search_trials": 3})


def test_training_monitor_offers_the_search_and_shows_its_trials(searched: dict) -> None:
    from streamlit.testing.v1 import AppTest

    from rflocal_core.options import option_of
    from rflocal_core.train import TrainConfig

    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "pages" / "views" / "training_monitor.py"), default_timeout=120)
    at.run()
    at.selectbox(key="tm_model").set_value("fpnet_knn")
    at.run()
    for key, name in (("tm_search_trials", "search_trials"), ("tm_search_minutes", "search_minutes")):
        widget, opt = at.number_input(key=key), option_of(TrainConfig, name)
        assert (widget.value, widget.max, widget.help) == (opt.default, opt.hi, opt.help)
    at.selectbox(key="tm_selected").set_value(searched["run_id"])
    at.run()
    assert not at.exception
    assert any(m.value.startswith("**Options chosen by a search on val:** ") and "least val mean" in m.value
               for m in at.markdown), [m.value for m in at.markdown]
    trials = at.dataframe[1].value
    assert len(trials) == 4 and {"val mean (score)", "mean_m", "blocks", "lr"} <= set(trials.columns)
