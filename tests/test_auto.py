"""Model selection (``train --model auto``): every model that fits, within the budget, chosen on validation."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core.cli import main
from rflocal_core.errors import InvalidInputError, RFLocalInputError
from rflocal_core.infer import evaluate_run, load_run
from rflocal_core.jobs import REGISTRY
from rflocal_core.models import errors_m, load_inputs
from rflocal_core.models.baselines import Baseline
from rflocal_core.models.inputs import Inputs, Prediction
from rflocal_core.models.registry import BASELINES, NETWORKS, config_class, describe_model, model_variants, register
from rflocal_core.options import option_of
from rflocal_core.progress import JobCancelled
from rflocal_core.train import list_runs
from rflocal_core.train.auto import (
    AUTO_TAG,
    CRITERIA,
    AutoConfig,
    DatasetTraits,
    auto_table,
    auto_train,
    candidate_names,
    plan,
    unfit_reason,
)
from rflocal_core.train.runs import AUTO_CANDIDATE_TAG

pytestmark = pytest.mark.raytrace

ROOT = Path(__file__).resolve().parents[1]
ANTWERP = ROOT.parent / "shared" / "data" / "real" / "antwerp_lorawan"


@pytest.fixture(scope="module")
def ws(tmp_path_factory, workspace_env, tiny_dataset):
    path = tmp_path_factory.mktemp("auto") / "workspace"
    path.mkdir()
    with workspace_env(path):
        tiny_dataset("acity", "ads", samples=240)
        yield path


@pytest.fixture
def env(ws, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(ws))
    return ws


def _run_folders(ws: Path) -> set[str]:
    folder = ws / "runs"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _one_se_choice(trained: list) -> object:
    """The candidate select one_se chooses: the first in the table whose val median is within its SE of the lowest."""
    lowest = min(c.val_median_m for c in trained)
    assert all(c.val_se_m is not None and c.val_se_m >= 0 for c in trained)
    return next(c for c in trained if c.val_median_m - lowest <= c.val_se_m + 1e-6)


def test_auto_chooses_the_val_best_within_the_budget_and_writes_one_ordinary_run(env):
    before = _run_folders(env)
    budget = 0.4
    result = auto_train("ads", config={"max_minutes": budget, "candidates": ("strongest_site", "weighted_centroid",
                                                                              "knn", "setnet", "heimdall")})
    rows = {c.model: c for c in result.candidates}
    assert [c.model for c in result.candidates] == ["strongest_site", "weighted_centroid", "knn", "setnet", "heimdall"]
    trained = [c for c in result.candidates if c.status == "trained"]
    assert {"strongest_site", "weighted_centroid", "knn", "setnet"} <= {c.model for c in trained}
    # chosen on validation (select one_se): the first in the table's order whose median is within its standard
    # error of the lowest; every one before it is further off
    best = _one_se_choice(trained)
    assert result.model == best.model and [c.model for c in result.candidates if c.chosen] == [best.model]
    assert result.summary.median_m == best.val_median_m and result.summary.mean_m == best.val_mean_m
    # the budget: networks share what the baselines left, each stopped by its share; the whole roughly on time
    nets = [c for c in trained if c.kind == "network"]
    assert nets and all(c.max_minutes is not None and c.max_minutes < budget for c in nets)
    # the first network gets at most an equal share; time a network leaves unused goes to the later ones
    assert nets[0].max_minutes <= budget / len([c for c in result.candidates if c.kind == "network"])
    assert all(c.stopped.startswith(("time budget reached", "early stop", "all epochs")) for c in nets)
    # wall time on a shared machine: the shares are the contract; loading and scoring runs add a little
    assert result.seconds <= 60 * budget + 30, result.seconds
    assert rows["knn"].max_minutes is None

    # one ordinary run: the chosen candidate's, renamed, with the table; the others are gone
    assert _run_folders(env) - before == {result.run_id}
    assert result.run_id.startswith("auto-ads-")
    config = json.loads((env / "runs" / result.run_id / "config.json").read_text())
    assert config["run_id"] == result.run_id and config["model"] == best.model
    assert AUTO_TAG in config["tags"] and AUTO_CANDIDATE_TAG not in config["tags"]
    assert config["auto"]["chosen"] == best.model and config["auto"]["criterion"] == CRITERIA["one_se"]
    assert config["auto"]["candidates"] == [c.to_json() for c in result.candidates] == auto_table(result.run_id)[
        "candidates"]
    listed = next(r for r in list_runs(include_ablation=False) if r["run_id"] == result.run_id)
    assert listed["state"] == "done" and listed["model"] == best.model and listed["median_m"] == best.val_median_m

    # it predicts and evaluates like any run
    run = load_run(result.run_id)
    x = load_inputs("ads", "val", with_maps=run.needs_maps)
    assert float(np.nanmedian(errors_m(run.predict(x), x))) == pytest.approx(best.val_median_m, rel=1e-6)
    evaluated = evaluate_run(result.run_id, "ads", split="test")
    assert evaluated.summary.count > 0
    assert evaluated.sigma_scale == result.sigma_scale  # the chosen run's sigma calibration moved with it


def test_networks_without_time_left_are_skipped_and_kept_candidates_are_hidden(env):
    result = auto_train("ads", config={"max_minutes": 0.1, "candidates": ("knn", "strongest_site", "setnet"),
                                       "keep_candidates": True})
    rows = {c.model: c for c in result.candidates}
    assert rows["setnet"].status == "skipped" and rows["setnet"].reason.startswith("no time left")
    assert rows["knn"].status == rows["strongest_site"].status == "trained"
    loser = next(c for c in result.candidates if c.status == "trained" and not c.chosen)
    assert loser.run_id and loser.run_id != result.run_id
    hidden = {r["run_id"] for r in list_runs()} - {r["run_id"] for r in list_runs(include_ablation=False)}
    assert loser.run_id in hidden and result.run_id not in hidden
    assert json.loads((env / "runs" / loser.run_id / "config.json").read_text())["tags"] == [AUTO_CANDIDATE_TAG]


def test_unfit_models_are_named_with_their_reason():
    bare = DatasetTraits(has_maps=False, positioned_nodes=False, fixed_slots=0)
    full = DatasetTraits(has_maps=True, positioned_nodes=True, fixed_slots=5)
    for model in [*BASELINES, *NETWORKS]:
        assert unfit_reason(model, "d", full) is None, model
    assert "radio maps" in unfit_reason("map_matching", "d", bare)
    assert "radio maps" in unfit_reason("mapformer", "d", bare)
    assert "known position" in unfit_reason("weighted_centroid", "d", bare)
    assert "known position" in unfit_reason("setnet", "d", bare)
    assert "fixed node slots" in unfit_reason("knn", "d", bare)
    assert unfit_reason("heimdall", "d", bare) is None  # tells nodes apart by their ids


def test_bad_options_are_refused_by_name(env):
    with pytest.raises(InvalidInputError, match="max_minutes: expected a number in"):
        AutoConfig(max_minutes=0)
    with pytest.raises(InvalidInputError, match="candidates: expected names among .* got nope"):
        AutoConfig.from_dict({"candidates": "knn,nope"})
    assert AutoConfig.from_dict({"candidates": "knn, setnet"}).candidates == ("knn", "setnet")
    with pytest.raises(RFLocalInputError, match="no dataset named 'missing'"):
        auto_train("missing", config={"max_minutes": 0.1})


def test_every_option_set_is_valid_options_of_its_model_and_a_candidate() -> None:
    sets = {m: model_variants(m) for m in [*BASELINES, *NETWORKS]}
    assert "radio_map" in sets["knn"]
    for model, variants in sets.items():
        for name, options in variants.items():
            built = config_class(model)(**options).to_dict()  # valid options, each kept as given
            assert built | options == built, (model, name)
            assert f"{model}:{name}" in candidate_names()
    names = candidate_names()
    assert names.index("knn:radio_map") == names.index("knn") + 1  # right after the model's defaults
    assert describe_model("knn")["auto_variants"] == sets["knn"]  # what `models knn` prints
    assert AutoConfig.from_dict({"candidates": "knn, knn:radio_map"}).candidates == ("knn", "knn:radio_map")
    with pytest.raises(InvalidInputError, match="candidates: expected names among .* got knn:nope"):
        AutoConfig.from_dict({"candidates": "knn:nope"})


def test_an_option_set_is_trained_with_its_options_and_named_in_the_table(env):
    rows = plan("ads")
    assert [(r.model, r.variant) for r in rows if r.model == "knn"] == [("knn", None), ("knn", "radio_map")]
    assert [r.name for r in plan("ads", ("knn:radio_map",))] == ["knn:radio_map"]  # the defaults not asked for
    result = auto_train("ads", config={"max_minutes": 0.3, "candidates": ("knn", "knn:radio_map"),
                                       "keep_candidates": True})
    table = {c.name: c for c in result.candidates}
    assert set(table) == {"knn", "knn:radio_map"} and all(c.status == "trained" for c in table.values())
    assert table["knn:radio_map"].options == model_variants("knn")["radio_map"] and table["knn"].options is None
    for name, row in table.items():
        config = json.loads((env / "runs" / row.run_id / "config.json").read_text())["model_config"]
        assert (config["radio_map_adaptive_k"] == 10) is (name == "knn:radio_map"), config
    best = _one_se_choice(list(table.values()))
    assert (result.model, result.variant) == (best.model, best.variant)
    assert auto_table(result.run_id)["chosen"] == best.name
    # select lowest: the lowest val median, whatever the noise (and the table says so)
    lowest = auto_train("ads", config={"max_minutes": 0.3, "candidates": ("knn", "knn:radio_map"), "select": "lowest"})
    rows = [c for c in lowest.candidates if c.status == "trained"]
    chosen = min(rows, key=lambda c: (c.val_median_m, c.val_mean_m))
    assert (lowest.model, lowest.variant) == (chosen.model, chosen.variant)
    assert all(c.val_se_m is None for c in rows)
    assert auto_table(lowest.run_id)["criterion"] == CRITERIA["lowest"]


class _TrainMean(Baseline):
    """Every sample at the mean training position (a model registered after the selection was written)."""

    def _fit(self, train: Inputs, val: Inputs | None) -> dict:
        return {"mean_m": np.nanmean(train.truth_m, axis=0)}

    def _predict(self, x: Inputs) -> Prediction:
        pos = np.tile(self._state["mean_m"], (len(x), 1))
        return Prediction(pos, np.full_like(pos, np.nan), {})


class _Diverges(Baseline):
    """A model whose fit fails: the selection goes on without it."""

    def _fit(self, train: Inputs, val: Inputs | None) -> dict:
        msg = "the solver diverged"
        raise FloatingPointError(msg)

    def _predict(self, x: Inputs) -> Prediction:
        raise NotImplementedError


def test_models_registered_later_join_and_a_failing_one_is_a_row(env):
    before = _run_folders(env)
    register("train_mean_t")(_TrainMean)
    register("diverges_t")(_Diverges)
    try:
        assert {"train_mean_t", "diverges_t"} <= {c.model for c in plan("ads")}
        result = auto_train("ads", config={"max_minutes": 0.2, "candidates": ("train_mean_t", "diverges_t",
                                                                               "strongest_site")})
    finally:
        BASELINES.pop("train_mean_t", None)
        BASELINES.pop("diverges_t", None)
    rows = {c.model: c for c in result.candidates}
    assert rows["train_mean_t"].status == "trained" and math.isfinite(rows["train_mean_t"].val_median_m)
    assert rows["diverges_t"].status == "failed" and "FloatingPointError: the solver diverged" in rows[
        "diverges_t"].reason
    assert result.model == min((rows["train_mean_t"], rows["strongest_site"]), key=lambda c: c.val_median_m).model
    assert _run_folders(env) - before == {result.run_id}  # the failed candidate's run is gone too


def test_cancelling_leaves_no_run(env):
    before = _run_folders(env)
    stages: list[str] = []

    def progress(stage: str, fraction: float) -> None:
        stages.append(stage)
        if stage.startswith("2/"):
            raise JobCancelled("test")

    with pytest.raises(JobCancelled):
        auto_train("ads", config={"max_minutes": 0.2, "candidates": ("strongest_site", "knn")}, progress=progress)
    assert any(s.startswith("1/2 strongest_site: ") for s in stages)
    assert _run_folders(env) == before


def test_cli_train_model_auto(env, run_cli, capsys):
    proc = run_cli(["train", "--dataset", "ads", "--model", "auto", "--max-minutes", "0.3",
                    "--candidates", "knn,weighted_centroid,setnet", "--epochs", "1"], env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] in ("knn", "weighted_centroid", "setnet") and out["max_minutes"] == 0.3
    assert [c["model"] for c in out["candidates"]] == ["weighted_centroid", "knn", "setnet"]
    setnet = out["candidates"][2]  # the training flags reach the networks; the budget is its share
    assert setnet["stopped"] == "all epochs done (1/1)" and 0 < setnet["max_minutes"] < 0.3
    assert "3/3 setnet: " in proc.stderr  # progress on stderr, JSON alone on stdout
    assert out["run_id"] in {r["run_id"] for r in json.loads(run_cli(["runs", "list"], env).stdout)}
    # refusals, in this process (the command line's main): exit 2 and the field named
    assert main(["train", "--dataset", "ads", "--model", "auto", "--set", "k=3"]) == 2
    assert "--config and --set are options of one model" in capsys.readouterr().err
    assert main(["train", "--dataset", "ads", "--model", "auto", "--candidates", "nope"]) == 2
    assert "candidates: expected names among" in capsys.readouterr().err
    assert main(["train", "--dataset", "ads", "--model", "auto", "--max-minutes", "0.05"]) == 2
    assert "max_minutes: expected a number in [0.1, 43200" in capsys.readouterr().err


def test_unfit_models_are_skipped_on_real_antwerp_and_the_result_evaluates(env):
    if not ANTWERP.is_dir():
        pytest.skip(f"real Antwerp LoRaWAN data not found at {ANTWERP}")
    from rflocal_core.dataset import import_measurements, list_datasets
    from rflocal_core.measurements import convert_antwerp

    if "antw-auto" not in {d["name"] for d in list_datasets()}:
        ms = convert_antwerp(ANTWERP, split="all", limit=600)
        fixed = {s.id: "test" for s in ms.samples if s.id.startswith("test-")}
        import_measurements(ms, name="antw-auto", split_fractions=(0.9, 0.1, 0.0), fixed_splits=fixed)
    rows = {c.model: c for c in plan("antw-auto")}
    for model in ("map_matching", "mapformer", "locheatmap"):
        assert rows[model].status == "skipped" and "radio maps" in rows[model].reason
    assert rows["knn"].status == rows["weighted_centroid"].status == "planned"
    for model, kind in (("aoa_triangulation", "angle-of-arrival"), ("toa_multilateration", "time-of-arrival")):
        assert rows[model].status == "skipped" and rows[model].reason.startswith(f"locates from {kind} reports")
    result = auto_train("antw-auto", config={"max_minutes": 0.2, "candidates": ("knn", "map_matching",
                                                                                 "weighted_centroid")})
    table = {c.name: c for c in result.candidates}
    assert table["map_matching"].status == "skipped" and table["map_matching"].seconds is None
    assert result.model == min((table["knn"], table["weighted_centroid"]), key=lambda c: c.val_median_m).model
    out = evaluate_run(result.run_id, "antw-auto", split="test").summary
    assert out.count == 600 and out.missing == 0

    # nothing fits: refused on the page, naming each candidate's reason, and no job starts
    at = AppTest.from_file(str(ROOT / "pages" / "views" / "training_monitor.py"), default_timeout=120)
    at.run()
    at.selectbox(key="tm_dataset").set_value("antw-auto")
    at.selectbox(key="tm_model").set_value("auto")
    at.run()
    at.multiselect(key="tm_auto_candidates").set_value(["map_matching"])
    at.button(key="tm_start").click()
    at.run()
    assert not at.exception and not at.success
    assert [e.value for e in at.error] == [("model: auto found no model that fits dataset 'antw-auto' (map_matching: "
                                            "reads radio maps and scene rasters; 'antw-auto' has none (imported "
                                            "measurements))")]


def test_the_radio_map_option_set_wins_on_real_fingerprints(env, import_antwerp):
    """1,500 real Antwerp messages (80/10/10 at random): the option set a user would not know to set is chosen,
    well ahead of the defaults (README "Model selection": on all of x_val 83 / 242 m on x_test against 191 / 314)."""
    import_antwerp("antv", limit=1500)
    result = auto_train("antv", config={"max_minutes": 0.3, "candidates": ("knn", "knn:radio_map")},
                        train_config={"sigma_radii": "quantile", "epochs": 3})  # a baseline reads the first only
    table = {c.name: c for c in result.candidates}
    assert table["knn:radio_map"].val_median_m < 0.8 * table["knn"].val_median_m, table
    assert (result.model, result.variant) == ("knn", "radio_map") and table["knn:radio_map"].chosen
    assert auto_table(result.run_id)["chosen"] == "knn:radio_map"
    run = load_run(result.run_id)
    assert run.config["model_config"]["radio_map_adaptive_k"] == 10
    cal = run.config["sigma_calibration"]
    assert cal["method"] == "quantile", cal  # the training options of the selection reached the baseline
    test = evaluate_run(result.run_id, "antv", split="test").summary
    assert test.count == 150 and test.median_m < 150, test


def test_training_monitor_starts_auto_and_shows_the_table(env):
    at = AppTest.from_file(str(ROOT / "pages" / "views" / "training_monitor.py"), default_timeout=120)
    at.run()
    at.selectbox(key="tm_dataset").set_value("ads")
    at.selectbox(key="tm_model").set_value("auto")
    at.run()
    assert not at.exception
    minutes, opt = at.number_input(key="tm_auto_minutes"), option_of(AutoConfig, "max_minutes")
    assert (minutes.min, minutes.max, minutes.value, minutes.help) == (opt.lo, opt.hi, opt.default, opt.help)
    assert at.checkbox(key="tm_auto_keep").value is False
    assert "auto" not in at.multiselect(key="tm_auto_candidates").options
    assert at.multiselect(key="tm_auto_candidates").options == candidate_names()  # the option sets too
    minutes.set_value(0.2)  # setnet gets what strongest_site leaves of 12 s: over 10 s, so it trains
    at.multiselect(key="tm_auto_candidates").set_value(["strongest_site", "setnet"])
    at.button(key="tm_start").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_id = at.success[0].value.split("**")[1]
    assert run_id.startswith("auto-ads-")
    job = next(j for j in REGISTRY.list(kind="train") if j.label == run_id)
    while "setnet" not in job.snapshot()["stage"] and not job.finished:
        time.sleep(0.2)
    at.run()
    assert not job.finished, job.snapshot()  # setnet trains for seconds
    assert any(i.value.startswith(f"{run_id} is choosing a model") and "2/2 setnet: " in i.value for i in at.info), (
        [i.value for i in at.info], at.selectbox(key="tm_selected").value)
    assert any("2/2 setnet: " in p.proto.text for p in at.get("progress"))
    assert job.wait(120) and job.state == "done", job.error
    at.run()
    table = at.dataframe[0].value
    chosen = table.loc[table["run"] == run_id, "model"].item()
    assert chosen in ("strongest_site", "setnet")
    assert any(m.value.startswith(f"**Chosen by auto:** {chosen} (") for m in at.markdown)
    candidates = at.dataframe[1].value
    assert list(candidates["model"]) == ["strongest_site", "setnet"]
    assert list(candidates["status"]) == ["trained", "trained"]
    assert candidates.loc[candidates["chosen"], "model"].item() == chosen
