"""Forms remember (issue 14, item 5): each page's form keeps its values for the session and across a reload.

The values live in ``workspace/.forms.json`` (:mod:`rflocal_core.formstate`), checked against the
option metadata when read; the pages seed their widgets from it (``pages/views/widgets.py``).
A "reload" is a new AppTest session on the same workspace.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core import formstate, settings
from rflocal_core.dataset import GenerationConfig
from rflocal_core.formstate import load_form, read_forms, rule, save_form
from rflocal_core.options import option_of
from rflocal_core.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- core


def test_saved_values_come_back_checked_against_their_options(workspace: Path) -> None:
    epochs, minutes = option_of(TrainConfig, "epochs"), option_of(TrainConfig, "max_minutes")
    seq = option_of(GenerationConfig, "sequence_length")
    save_form("tm", {"tm_epochs": 5, "tm_minutes": None})
    save_form("tm", {"tm_model": "knn", "tm_seq": (2, 3)})  # merged, not replaced
    save_form("dg", {"dg_samples": 10})
    assert load_form("tm", {"tm_epochs": epochs, "tm_minutes": minutes, "tm_seq": seq,
                            "tm_model": rule("str", choices=("setnet", "knn"))}) == {
        "tm_epochs": 5, "tm_minutes": None, "tm_model": "knn", "tm_seq": (2, 3)}
    assert load_form("tm", {"tm_model": rule("str", choices=("setnet",))}) == {}  # no longer a choice
    assert load_form("dg", {"dg_samples": option_of(GenerationConfig, "samples_per_scene")}) == {"dg_samples": 10}
    assert json.loads((workspace / ".forms.json").read_text())["format"] == formstate.FORMAT
    assert [p.name for p in workspace.iterdir()] == [".forms.json"]  # atomic: no temporary file left


@pytest.mark.parametrize("key,value,check", [
    ("tm_epochs", 0, option_of(TrainConfig, "epochs")),            # below the range
    ("tm_epochs", 2.5, option_of(TrainConfig, "epochs")),          # not an integer
    ("tm_epochs", "5", option_of(TrainConfig, "epochs")),          # not a number
    ("tm_minutes", -1.0, option_of(TrainConfig, "max_minutes")),
    ("tm_schedule", "step", option_of(TrainConfig, "schedule")),   # not a choice
    ("tm_amp", 1, option_of(TrainConfig, "amp")),                   # not a bool
    ("tm_seq", [9, 2], option_of(GenerationConfig, "sequence_length")),
    ("dg_scenes", ["gone"], rule("other", choices=("demo",))),
    ("dg_name", 7, rule("str")),
    ("tm_list", "1,x", rule("list")),
])
def test_a_bad_saved_value_is_left_out(workspace: Path, key: str, value: object, check: object) -> None:
    save_form("f", {key: value})
    assert load_form("f", {key: check}) == {}


def test_a_missing_or_foreign_file_reads_as_empty(workspace: Path) -> None:
    assert read_forms() == {}
    (workspace / ".forms.json").write_text("{not json")
    assert read_forms() == {} and load_form("tm", {"tm_epochs": option_of(TrainConfig, "epochs")}) == {}
    (workspace / ".forms.json").write_text(json.dumps({"format": "other/1", "forms": {"tm": {"tm_epochs": 5}}}))
    assert read_forms() == {}
    save_form("tm", {"tm_epochs": 5})  # a broken file is replaced, not an error
    assert read_forms() == {"tm": {"tm_epochs": 5}}
    formstate.forget_form("tm")
    assert read_forms() == {}


# --------------------------------------------------------------------------- pages


@pytest.fixture
def page_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from rflocal_core.dataset import import_measurements
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(tmp_path))
    build_scene(SceneConfig(name="tiny", procedural=ProceduralConfig(size_m=160.0), sites=SiteConfig(count=3)))
    import_measurements(ROOT / "assets" / "example_measurements.json", name="ex")
    return tmp_path


def _page(name: str) -> AppTest:
    """A new session of a page (as after a browser reload)."""
    at = AppTest.from_file(str(ROOT / "pages" / "views" / name), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _form_open(at: AppTest, label: str) -> bool:
    return next(e for e in at.expander if e.label == label).proto.expanded


def test_training_monitor_keeps_its_form_through_a_model_change_and_a_reload(page_workspace: Path) -> None:
    """The report: after changing the model the form collapsed and came back with a 0-minute budget."""
    from rflocal_core.jobs import REGISTRY

    at = _page("training_monitor.py")
    assert _form_open(at, "Start a run")  # no runs yet: open
    at.selectbox(key="tm_dataset").set_value("ex")
    at.number_input(key="tm_epochs").set_value(5)
    at.number_input(key="tm_minutes").set_value(1.5)
    at.number_input(key="tm_opt_setnet_layers").set_value(2)
    at.text_input(key="tm_opt_setnet_node_dropout").set_value("0,0.2")
    at.run()
    at.selectbox(key="tm_model").set_value("knn").run()  # the network options are hidden ...
    at.number_input(key="tm_opt_knn_k").set_value(3)
    at.button(key="tm_start").click().run()  # ... a run appears ...
    assert not at.error, [e.value for e in at.error]
    job = next(j for j in REGISTRY.list(kind="train") if j.label == at.success[0].value.split("**")[1])
    assert job.wait(60) and job.state == "done", job.error
    at.selectbox(key="tm_model").set_value("setnet").run()  # ... and come back as they were
    assert not at.exception, at.exception
    assert _form_open(at, "Start a run")  # not collapsed by the run that appeared
    assert at.number_input(key="tm_minutes").value == 1.5 and at.number_input(key="tm_epochs").value == 5
    assert at.number_input(key="tm_opt_setnet_layers").value == 2
    assert at.text_input(key="tm_opt_setnet_node_dropout").value == "0,0.2"

    again = _page("training_monitor.py")  # a reload: a new session on the same workspace
    assert again.selectbox(key="tm_dataset").value == "ex" and again.selectbox(key="tm_model").value == "setnet"
    assert again.number_input(key="tm_minutes").value == 1.5 and again.number_input(key="tm_epochs").value == 5
    assert again.number_input(key="tm_opt_setnet_layers").value == 2
    again.selectbox(key="tm_model").set_value("knn").run()
    assert again.number_input(key="tm_opt_knn_k").value == 3


def test_data_generation_keeps_its_form_across_a_reload(page_workspace: Path) -> None:
    at = _page("data_generation.py")
    at.text_input(key="dg_name").set_value("mine")
    at.number_input(key="dg_samples").set_value(123)
    at.number_input(key="dg_cell").set_value(4.0)
    at.number_input(key="dg_pmax").set_value(25.0)
    at.selectbox(key="dg_mode").set_value("emitter")
    at.checkbox(key="dg_timing").uncheck()
    at.run()
    again = _page("data_generation.py")
    assert again.text_input(key="dg_name").value == "mine"
    assert (again.number_input(key="dg_samples").value, again.number_input(key="dg_cell").value) == (123, 4.0)
    assert again.number_input(key="dg_pmax").value == 25.0
    assert again.selectbox(key="dg_mode").value == "emitter" and again.checkbox(key="dg_timing").value is False
    assert again.multiselect(key="dg_scenes").value == ["tiny"]


def test_a_bad_saved_value_falls_back_to_the_field_default(page_workspace: Path) -> None:
    (page_workspace / ".forms.json").write_text(json.dumps({"format": formstate.FORMAT, "forms": {
        "dg": {"dg_samples": 0, "dg_cell": 100.0, "dg_mode": "drone", "dg_name": 5, "dg_scenes": ["gone"],
               "dg_seed": 3, "dg_nonsense": 1},
        "tm": {"tm_minutes": -2.0, "tm_epochs": 7, "tm_model": "teleport", "tm_opt_setnet_layers": 99,
               "tm_opt_setnet_node_dropout": "0,x"},
    }}))
    at = _page("data_generation.py")
    assert at.number_input(key="dg_samples").value == GenerationConfig(name="d", scenes=("s",)).samples_per_scene
    assert at.number_input(key="dg_cell").value == option_of(GenerationConfig, "cell_size_m").default
    assert at.selectbox(key="dg_mode").value == "scene's own" and at.text_input(key="dg_name").value == "dataset"
    assert at.multiselect(key="dg_scenes").value == ["tiny"]
    assert at.number_input(key="dg_seed").value == 3  # a good value next to bad ones is kept
    at = _page("training_monitor.py")
    assert at.number_input(key="tm_minutes").value == 0.0  # 0 = none: the field's default (no limit)
    assert at.number_input(key="tm_epochs").value == 7 and at.selectbox(key="tm_model").value == "setnet"
    assert at.number_input(key="tm_opt_setnet_layers").value == 3
    assert at.text_input(key="tm_opt_setnet_node_dropout").value == "0.0"


def test_scene_builder_and_ablations_keep_their_forms(page_workspace: Path) -> None:
    at = _page("scene_builder.py")
    at.text_input(key="sb_name").set_value("town")
    at.number_input(key="sb_size").set_value(300.0)
    at.number_input(key="sb_freq").set_value(2.4)  # GHz on the page, Hz in the file
    at.run()
    assert read_forms()["sb"]["sb_freq"] == 2.4e9
    again = _page("scene_builder.py")
    assert again.text_input(key="sb_name").value == "town"
    assert (again.number_input(key="sb_size").value, again.number_input(key="sb_freq").value) == (300.0, 2.4)

    at = _page("ablations.py")
    at.number_input(key="ab_seeds").set_value(2)
    at.number_input(key="ab_minutes").set_value(0.5)
    at.run()
    again = _page("ablations.py")
    assert (again.number_input(key="ab_seeds").value, again.number_input(key="ab_minutes").value) == (2, 0.5)
