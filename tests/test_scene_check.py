"""A run scored on another place is flagged (core, CLI exit 2, red on the Metrics page); the demo runs are scored
on their shipped test split; ablation runs stay out of the run pickers by default; the Overview counts the demo."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Error, Subheader

from rflocal_core import demo, settings
from rflocal_core.errors import OtherSceneError
from rflocal_core.infer import check_scene, evaluate_run

ROOT = Path(__file__).resolve().parents[1]
USER_DS = "user-demo"

pytestmark = pytest.mark.skipif(not demo.demo_available(), reason="the demo runs are not shipped in assets/demo")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, workspace_env, tiny_dataset):
    """The shipped demo installed, plus a user's own scene also called ``demo`` (another city: other buildings and
    sites) with a dataset on it, a kNN run on that dataset, and two ablation runs (one tagged, one older)."""
    from rflocal_core.train import train

    path = tmp_path_factory.mktemp("scene_check") / "workspace"
    path.mkdir()
    with workspace_env(path):
        assert set(demo.install_demo()) == set(demo.DEMO_RUNS)
        tiny_dataset("demo", USER_DS, samples=200)
        own = train(USER_DS, "knn").run_id
        tagged = train(USER_DS, "weighted_centroid", tags=("ablation",)).run_id
        legacy = train(USER_DS, "strongest_site").run_id  # trained before runs were tagged: named in a study
        study = path / "ablations" / "old-study"
        study.mkdir(parents=True)
        (study / "results.json").write_text(json.dumps({"state": "done", "rows": [{"run_id": legacy}]}))
        yield {"path": path, "own": own, "tagged": tagged, "legacy": legacy}


def test_check_scene_tells_a_scene_of_the_same_name_apart(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(ws["path"]))
    other = check_scene("demo-setnet", USER_DS)
    assert other.status == "other" and other.other_scene
    assert other.run_scenes == other.dataset_scenes == ("demo",)  # the same name: only the content tells them apart
    assert any(p.startswith("scene digest:") for p in other.problems)
    assert any(p.startswith("nodes:") and "from its training position" in p for p in other.problems)
    same = check_scene("demo-setnet", demo.DEMO_TEST_DATASET)
    assert same.status == "same" and same.problems == () and not same.other_scene
    assert check_scene(ws["own"], USER_DS).status == "same"  # a run on its own dataset

    with pytest.raises(OtherSceneError, match="allow-other-scene") as err:
        evaluate_run("demo-setnet", USER_DS)
    assert "scene digest" in str(err.value) and USER_DS in str(err.value)
    forced = evaluate_run("demo-setnet", USER_DS, allow_other_scene=True)
    assert forced.scene_check.other_scene and forced.summary.count > 0
    assert forced.to_json()["scene_check"]["status"] == "other" and forced.scene_check.differing == ("demo",)
    # its samples are not "seen in training" although the scene names match (the run's dataset is not here)
    assert forced.training_scenes == () and [r.group for r in forced.breakdowns.scene] == ["unseen"]
    assert evaluate_run("demo-setnet", demo.DEMO_TEST_DATASET).training_scenes == ("demo",)
    # a cached result is checked again, not taken on trust
    with pytest.raises(OtherSceneError):
        evaluate_run("demo-setnet", USER_DS)


def test_a_run_whose_training_data_is_unknown_is_flagged_unknown_not_refused(ws, monkeypatch) -> None:
    import shutil

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(ws["path"]))
    old = ws["path"] / "runs" / "old-knn"  # a run from before reference.json, its dataset gone
    if not old.exists():
        shutil.copytree(ws["path"] / "runs" / "demo-knn", old, ignore=shutil.ignore_patterns("reference.json", "eval"))
    check = check_scene("old-knn", demo.DEMO_TEST_DATASET)
    assert check.status == "unknown" and "no reference.json" in check.notes[0]
    out = evaluate_run("old-knn", demo.DEMO_TEST_DATASET)
    assert out.scene_check.status == "unknown" and out.training_scenes is None
    at = _page("pages/views/metrics.py")
    at.selectbox(key="mx_dataset").set_value(demo.DEMO_TEST_DATASET)
    at.run()
    at.multiselect(key="mx_runs").set_value(["old-knn"])
    at.run()
    assert not at.error and any("is unknown" in w.value for w in at.warning)


def test_imported_measurements_are_checked_by_frame_digest_and_nodes(workspace: Path) -> None:
    """The demo's test split as a measurement file: imported on the demo scene it is the run's place (the import
    records the scene's digest); imported in a frame of its own (the centroid of its positions) it is not."""
    from rflocal_core.dataset import export_dataset, import_measurements
    from rflocal_core.scene import build_scene

    demo.install_demo()
    build_scene(demo.demo_scene_config())
    ms = export_dataset(demo.DEMO_TEST_DATASET, split="test", limit=60)
    import_measurements(ms, name="on-scene", scene="demo", split_fractions=(0.0, 0.0, 1.0))
    on_scene = check_scene("demo-setnet", "on-scene")
    assert on_scene.status == "same" and on_scene.notes == (), on_scene  # digests compared, frames, nodes
    scored = evaluate_run("demo-setnet", "on-scene")
    assert scored.summary.count == 60 and scored.summary.median_m < 20

    import_measurements(dataclasses.replace(ms, scene=None), name="own-frame", split_fractions=(0.0, 0.0, 1.0))
    own_frame = check_scene("demo-setnet", "own-frame")
    assert own_frame.status == "other"
    assert any(p.startswith("frame:") and "from the training origin" in p for p in own_frame.problems)
    with pytest.raises(OtherSceneError, match="frame"):
        evaluate_run("demo-setnet", "own-frame")


def test_demo_runs_score_on_the_shipped_split_as_the_manifest_says(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(ws["path"]))
    manifest = json.loads(demo.MANIFEST.read_text())["test_split"]
    for run_id in demo.DEMO_RUNS:
        out = evaluate_run(run_id, demo.DEMO_TEST_DATASET)
        assert out.scene_check.status == "same"
        assert out.summary.count == manifest[run_id]["count"]
        assert out.summary.median_m == pytest.approx(manifest[run_id]["median_m"], abs=0.01)
        assert out.summary.p95_m == pytest.approx(manifest[run_id]["p95_m"], abs=0.01)
        assert out.crlb.available  # the split keeps the dataset's noise settings


def test_cli_evaluate_refuses_another_scene_unless_allowed(ws, run_cli) -> None:
    args = ["evaluate", "--run", "demo-setnet", "--dataset", USER_DS]
    refused = run_cli(args, ws["path"])
    assert refused.returncode == 2, refused.stderr
    assert refused.stdout == ""
    assert "scene digest" in refused.stderr and "--allow-other-scene" in refused.stderr
    forced = run_cli([*args, "--allow-other-scene"], ws["path"])
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["scene_check"]["status"] == "other"
    own = run_cli(["evaluate", "--run", "demo-knn", "--dataset", demo.DEMO_TEST_DATASET], ws["path"])
    assert own.returncode == 0, own.stderr
    assert json.loads(own.stdout)["scene_check"] == {"status": "same", "run_scenes": ["demo"],
                                                     "dataset_scenes": ["demo"], "problems": [], "notes": [], "differing": []}


def _page(path: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(path)
    at.run()
    assert not at.exception, at.exception
    return at


def test_metrics_page_warns_in_red_above_the_results_for_another_scene(ws, monkeypatch) -> None:
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(ws["path"]))
    at = _page("pages/views/metrics.py")
    at.selectbox(key="mx_dataset").set_value(USER_DS)
    at.run()
    at.multiselect(key="mx_runs").set_value(["demo-setnet", ws["own"]])
    at.run()
    assert not at.exception, at.exception
    assert len(at.error) == 1, [e.value for e in at.error]  # the demo run only; the user's own run is fine
    assert "demo-setnet is scored on another scene" in at.error[0].value and "scene digest" in at.error[0].value
    main = list(at.main)  # depth first, in page order
    first_error = next(i for i, el in enumerate(main) if isinstance(el, Error) and "another scene" in el.value)
    first_subheader = next(i for i, el in enumerate(main) if isinstance(el, Subheader))
    assert first_error < first_subheader  # above the results
    assert at.dataframe  # the figures are still shown, under the warning

    at.selectbox(key="mx_dataset").set_value(demo.DEMO_TEST_DATASET)
    at.run()
    at.multiselect(key="mx_runs").set_value(list(demo.DEMO_RUNS))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_metrics_page_warns_above_in_sample_figures(ws, monkeypatch) -> None:
    """A run scored on samples it was fitted on (val of a ``--refit`` run) is flagged above its figures."""
    from rflocal_core.train import train
    from rflocal_core.train.runs import delete_run

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(ws["path"]))
    refit = train(USER_DS, "knn", train_config={"refit": True}).run_id
    try:
        at = _page("pages/views/metrics.py")
        at.selectbox(key="mx_dataset").set_value(USER_DS)
        at.selectbox(key="mx_split").set_value("val")
        at.run()
        at.multiselect(key="mx_runs").set_value([refit, ws["own"]])
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        flagged = [w.value for w in at.warning if "in-sample" in w.value]
        assert len(flagged) == 1 and refit in flagged[0] and "val split" in flagged[0]  # the plain run is not
        at.selectbox(key="mx_split").set_value("test")
        at.run()
        assert not [w.value for w in at.warning if "in-sample" in w.value]
    finally:  # the other tests of the module count this workspace's runs
        delete_run(refit)


def test_ablation_runs_are_left_out_of_run_pickers_by_default(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    from rflocal_core.train import list_runs

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(ws["path"]))
    ablation = {ws["tagged"], ws["legacy"]}
    rows = {r["run_id"]: r for r in list_runs()}
    assert {r for r, row in rows.items() if row["ablation"]} == ablation
    assert rows[ws["tagged"]]["tags"] == ["ablation"]
    assert not ablation & {r["run_id"] for r in list_runs(include_ablation=False)}

    for page, picker, toggle in (("pages/views/metrics.py", "mx_runs", "mx_show_ablation"),
                                 ("pages/views/live_inference.py", "li_runs", "li_show_ablation")):
        at = _page(page)
        assert ws["own"] in at.multiselect(key=picker).options
        assert not ablation & set(at.multiselect(key=picker).options), page
        if picker == "li_runs":  # the user's own run is chosen, not the demo runs of the demo's scene
            assert at.multiselect(key=picker).value == [ws["own"]]
        at.checkbox(key=toggle).check()
        at.run()
        assert ablation <= set(at.multiselect(key=picker).options), page
    at = _page("pages/views/training_monitor.py")
    assert ws["own"] in at.selectbox(key="tm_selected").options
    assert not ablation & set(at.selectbox(key="tm_selected").options)
    at.checkbox(key="tm_show_ablation").check()
    at.run()
    assert ablation <= set(at.selectbox(key="tm_selected").options)


def test_overview_counts_the_demo_runs_that_ship(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(tmp_path / "fresh"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    counts = {m.label: m.value for m in at.metric}
    assert counts["Runs"] == str(len(demo.DEMO_RUNS)) and counts["Datasets"] == "1"
    assert any("demo run(s)" in c.value for c in at.caption)
    # once installed they are counted as workspace runs, not twice
    with settings.use_workspace(tmp_path / "fresh"):
        demo.install_demo()
    at.run()
    assert {m.label: m.value for m in at.metric}["Runs"] == str(len(demo.DEMO_RUNS))
    assert not any("demo run(s)" in c.value for c in at.caption)
