"""Ablations: data views (features, sites, steps, dropout, map corruption), the runner, its CLI and page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core import ablate
from rflocal_core.errors import InvalidInputError
from rflocal_core.models import load_inputs
from rflocal_core.models.transforms import InputTransform, apply_transform, corrupt_maps, load_transformed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ws(tmp_path_factory, workspace_env, tiny_dataset):
    path = tmp_path_factory.mktemp("ablate") / "workspace"
    path.mkdir()
    with workspace_env(path):
        tiny_dataset("ab", "abds", samples=240)
        tiny_dataset("abseq", "abseqds", samples=120, timing=False, sequence_length=(6, 6), motion="pedestrian")
        yield path


@pytest.fixture
def env(ws, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(ws))
    return ws


def test_transforms_remove_what_they_say(env):
    x = load_inputs("abds", "test")
    only_rss = apply_transform(x, InputTransform(features=("rss",)))
    assert np.isnan(only_rss.toa_ns).all() and np.isnan(only_rss.aoa_deg).all()
    np.testing.assert_array_equal(only_rss.rss_dbm, x.rss_dbm)
    three = apply_transform(x, InputTransform(max_sites=3))
    kept = np.isfinite(three.rss_dbm)
    assert (kept.sum(1) <= 3).all() and (kept.sum(1) == np.minimum(3, np.isfinite(x.rss_dbm).sum(1))).all()
    for i in range(len(x)):  # the ones kept are the strongest
        r = x.rss_dbm[i][np.isfinite(x.rss_dbm[i])]
        if len(r) > 3:
            assert three.rss_dbm[i][kept[i]].min() >= np.sort(r)[-3]
    dropped = apply_transform(x, InputTransform(feature_dropout=0.5, seed=1))
    frac = 1 - np.isfinite(dropped.rss_dbm).sum() / np.isfinite(x.rss_dbm).sum()
    assert 0.4 < frac < 0.6
    again = apply_transform(x, InputTransform(feature_dropout=0.5, seed=1))
    np.testing.assert_array_equal(np.isfinite(again.rss_dbm), np.isfinite(dropped.rss_dbm))  # seeded


def test_max_steps_keeps_the_last_reports_of_a_sequence(env):
    full = load_inputs("abseqds", "test", with_maps=False)
    one = load_transformed("abseqds", "test", InputTransform(max_steps=1), with_maps=False)
    from rflocal_core.dataset import open_dataset

    root = open_dataset("abseqds")
    idx = np.asarray(root["splits/test"][...])
    rss = np.asarray(root["samples/rss_dbm"][...])[idx]  # [N, T, S]
    np.testing.assert_allclose(one.rss_dbm, rss[:, -1, :].astype(np.float64), equal_nan=True)
    assert not np.allclose(np.nan_to_num(one.rss_dbm), np.nan_to_num(full.rss_dbm))  # the mean of 6 differs


def test_map_corruptions(env):
    maps = load_inputs("abds", "test").maps["ab"]
    rng = np.random.default_rng(0)
    missing = corrupt_maps(maps, "maps_missing", rng)
    assert np.isneginf(missing.path_gain_db[1]).all() and np.array_equal(missing.path_gain_db[0], maps.path_gain_db[0])
    removed = corrupt_maps(maps, "buildings_removed", rng)
    assert 0 < removed.rasters["footprint"].sum() < maps.rasters["footprint"].sum()
    assert removed.outdoor.sum() > maps.outdoor.sum()
    added = corrupt_maps(maps, "buildings_added", rng)
    assert added.rasters["footprint"].sum() > maps.rasters["footprint"].sum()
    assert maps.rasters["footprint"].sum() == (~maps.outdoor).sum()  # the original is untouched


def test_bad_studies_are_named(env):
    with pytest.raises(InvalidInputError, match="study: expected one of features"):
        ablate.run_study("nope", "abds")
    with pytest.raises(InvalidInputError, match=r"variants: \['x'\] are not variants of 'features'"):
        ablate.run_study("features", "abds", variants=["x"])
    with pytest.raises(InvalidInputError, match=r"seeds: expected an integer in \[1, 10\], got 0"):
        ablate.run_study("features", "abds", seeds=0)
    other = ablate.Study("x", "a study of a model that does not exist", "warpnet", (ablate.Variant("a"),))
    with pytest.raises(InvalidInputError, match="needs the model\\(s\\) warpnet"):
        ablate.run_study(other, "abds")
    with pytest.raises(InvalidInputError, match="features: expected a non-empty list"):
        ablate.run_study(ablate.Study("y", "", "knn", (ablate.Variant("a", train_transform={"features": []}),)),
                         "abds")


def test_two_variants_through_the_command_line(env, run_cli):
    proc = run_cli(["ablate", "--study", "features", "--dataset", "abds", "--epochs", "1", "--variants", "rss,all",
                    "--name", "cli-features"], env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["study"] == "features" and out["state"] == "done"
    assert [r["variant"] for r in out["rows"]] == ["rss", "all"]
    for r in out["rows"]:
        assert r["median_m"] > 0 and r["p95_m"] >= r["median_m"] and r["mean_m"] > 0 and r["parameters"] > 0
    saved = ablate.load_ablation("cli-features")
    assert saved["rows"] == out["rows"] and set(saved["cdfs"]) == {"rss#0", "all#0"}
    csv_lines = (env / "ablations" / "cli-features" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("variant,seed,model,median_m")
    # the variant's run carries its view of the data
    cfg = json.loads((env / "runs" / out["rows"][0]["run_id"] / "config.json").read_text())
    assert cfg["input_transform"]["features"] == ["rss"]
    assert cfg["tags"] == ["ablation"]  # run pickers leave it out by default
    bad = run_cli(["ablate", "--study", "features", "--dataset", "abds", "--seeds", "0"], env)
    assert bad.returncode == 2 and "seeds: expected an integer in [1, 10], got 0" in bad.stderr


def test_baseline_study_over_two_seeds_has_error_bars(env):
    study = ablate.Study("mm", "map matching with and without maps", "map_matching",
                         (ablate.Variant("clean"), ablate.Variant("missing", test_transform={"map_corruption": "maps_missing"})))
    out = ablate.run_study(study, "abds", seeds=2, name="mm-two-seeds")
    assert len(out["rows"]) == 4 and [s["seeds"] for s in out["summary"]] == [2, 2]
    clean, missing = out["summary"]
    assert missing["median_m"] > clean["median_m"]  # losing half the maps hurts map matching


def test_the_page_runs_a_study_and_shows_its_table(env):
    at = AppTest.from_file(str(ROOT / "pages" / "views" / "ablations.py"), default_timeout=120)
    at.run()
    assert not at.exception
    at.selectbox(key="ab_study").set_value("features")
    at.selectbox(key="ab_dataset").set_value("abds")
    at.run()
    at.multiselect(key="ab_variants_features").set_value(["rss", "rss+toa"])
    at.number_input(key="ab_epochs").set_value(1)
    at.text_input(key="ab_name").set_value("page-features")
    at.button(key="ab_start").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    from rflocal_core.jobs import REGISTRY

    job = next(j for j in REGISTRY.list(kind="ablation") if j.label == "page-features")
    assert job.wait(300) and job.state == "done", job.error
    at.run()  # the study just started is the one opened
    assert not at.exception and at.selectbox(key="ab_open").value == "page-features"
    table = at.dataframe[-1].value
    assert list(table["variant"]) == ["rss", "rss+toa"] and table["median m"].notna().all()
    assert table["test in 1σ"].str.fullmatch(r"\d+% → \d+%").all()  # σ coverage before → after temperature scaling
    assert len(at.get("plotly_chart")) == 2


def test_test_time_variants_share_one_training(env):
    out = ablate.run_study("map-corruption", "abds", epochs=1, name="corrupt",
                           variants=["mapformer: none", "mapformer: maps missing", "map matching: maps missing"])
    rows = {r["variant"]: r for r in out["rows"]}
    assert rows["mapformer: none"]["run_id"] == rows["mapformer: maps missing"]["run_id"]
    assert rows["mapformer: none"]["median_m"] != rows["mapformer: maps missing"]["median_m"]
    assert rows["map matching: maps missing"]["model"] == "map_matching"
