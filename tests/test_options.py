"""One definition per option: the command line, the API and the pages agree on every default and range.

Each option is declared once on its config field (``rflocal_core.options.option``); these tests
check what is derived from it: the checks and their messages, the command-line flags and their
defaults, and the page widgets' ranges, defaults and choices.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core import settings
from rflocal_core.cli import build_parser, command_config, main
from rflocal_core.dataset import GenerationConfig
from rflocal_core.dataset.noisefit import NoiseFitConfig
from rflocal_core.errors import InvalidInputError
from rflocal_core.models.baselines import KNNConfig, LogDistanceConfig, MapMatchingConfig, WeightedCentroidConfig
from rflocal_core.models.locheatmap import LocHeatmapConfig
from rflocal_core.models.mapformer import MapFormerConfig
from rflocal_core.models.nets import HeimdallConfig, NetConfig, SetNetConfig
from rflocal_core.models.onnx_export import PredictOptions
from rflocal_core.models.trees import KNNLGBMConfig, LGBMConfig
from rflocal_core.options import check_value, flag_values, option_of, option_paths, options
from rflocal_core.scene import MaterialConfig, ProceduralConfig, SceneConfig, SiteConfig
from rflocal_core.scene.importer import SceneImportConfig
from rflocal_core.tracking import TrackConfig
from rflocal_core.train import TrainConfig
from rflocal_core.train.distributed import LaunchConfig

ROOT = Path(__file__).resolve().parents[1]

#: Every config with options: how to build one (required fields) and the prefix of its messages.
CONFIGS: dict[type, tuple[dict[str, Any], str]] = {
    ProceduralConfig: ({}, "procedural."),
    SiteConfig: ({}, "sites."),
    MaterialConfig: ({}, "materials."),
    SceneConfig: ({"name": "x"}, ""),
    SceneImportConfig: ({"name": "x", "path": "scene.xml"}, ""),
    GenerationConfig: ({"name": "d", "scenes": ("s",), "mode": "emitter", "survey": "drone"}, ""),
    TrainConfig: ({}, ""),
    LaunchConfig: ({}, ""),
    NetConfig: ({}, ""),
    SetNetConfig: ({}, ""),
    HeimdallConfig: ({}, ""),
    MapFormerConfig: ({}, ""),
    LocHeatmapConfig: ({}, ""),
    WeightedCentroidConfig: ({}, ""),
    LogDistanceConfig: ({}, ""),
    KNNConfig: ({}, ""),
    MapMatchingConfig: ({}, ""),
    LGBMConfig: ({}, ""),
    KNNLGBMConfig: ({}, ""),
    NoiseFitConfig: ({}, ""),
    TrackConfig: ({}, ""),
    PredictOptions: ({}, ""),
}


# --------------------------------------------------------------------------- checks


def _outside(opt: Any) -> Any:
    """A value the option must refuse."""
    if opt.kind == "str":
        return "nonsense"
    if opt.kind == "bool":
        return "yes"
    if opt.hi is not None:
        return opt.hi + 1 if opt.kind == "int" else opt.hi * 2 + 1
    return opt.lo - 1 if opt.kind == "int" else float("nan")


@pytest.mark.parametrize("cls", list(CONFIGS), ids=lambda c: c.__name__)
def test_every_option_is_checked_against_its_own_range(cls: type) -> None:
    required, prefix = CONFIGS[cls]
    assert options(cls), f"{cls.__name__} declares no options"
    cls(**required)  # the defaults lie in their ranges
    for name, opt in options(cls).items():
        assert opt.help, f"{cls.__name__}.{name} has no help"
        check_value(name, opt.default, opt)
        if not opt.check or opt.kind not in ("int", "float", "str", "bool"):
            continue
        if opt.kind == "str" and not opt.choices:
            continue
        bad = _outside(opt)
        with pytest.raises(InvalidInputError) as info:
            cls(**{**required, name: bad})
        assert str(info.value) == f"{prefix}{name}: expected {'None or ' if opt.nullable else ''}" \
                                  f"{opt.range_text()}, got {bad!r}"


#: Messages as they were before the options were declared once (and must stay).
MESSAGES = [
    (GenerationConfig, {"cell_size_m": 0.1}, "cell_size_m: expected a number in [0.5, 20.0] m, got 0.1"),
    (GenerationConfig, {"samples_per_scene": 0}, "samples_per_scene: expected an integer in [1, 1000000], got 0"),
    (GenerationConfig, {"sequence_length": (5, 2)}, "sequence_length[1]: expected an integer in [5, 100], got 2"),
    (GenerationConfig, {"emitter_power_dbm": (90.0, 95.0)},
     "emitter_power_dbm[0]: expected a number in [-50.0, 80.0] dBm, got 90.0"),
    (GenerationConfig, {"motion": "teleport"}, "motion: expected one of stationary, pedestrian, vehicular, got 'teleport'"),
    (GenerationConfig, {"mode": "drone"}, "mode: expected 'ue', 'emitter' or None (the scene's mode), got 'drone'"),
    (GenerationConfig, {"survey": "drone", "mode": "emitter", "drone_points": 0},
     "drone_points: expected an integer in [1, 256], got 0"),
    (SiteConfig, {"count": 0}, "sites.count: expected an integer in [1, 64], got 0"),
    (SiteConfig, {"pattern": "dipole"}, "sites.pattern: expected one of iso, tr38901, got 'dipole'"),
    (SiteConfig, {"freq_hz": 1e12}, "sites.freq_hz: expected a number in [100000000.0, 100000000000.0] Hz, got 1000000000000.0"),
    (SceneImportConfig, {"raster_cell_m": 0.1}, "raster_cell_m: expected a number in [0.25, 10.0] m, got 0.1"),
    (MaterialConfig, {"building": "plastic"},
     "materials.building: unknown material 'plastic'; expected one of brick, concrete, glass, metal, wood"),
    (TrainConfig, {"epochs": 0}, "epochs: expected an integer in [1, 100000], got 0"),
    (TrainConfig, {"schedule": "step"}, "schedule: expected one of cosine, plateau, got 'step'"),
    (TrainConfig, {"amp": 1}, "amp: expected true or false, got 1"),
    (SetNetConfig, {"layers": 0}, "layers: expected an integer in [1, 12], got 0"),
    (HeimdallConfig, {"rss_noise_db": -1}, "rss_noise_db: expected a number in [0.0, 20.0] dB, got -1"),
    (MapFormerConfig, {"map_rotation_deg": 90}, "map_rotation_deg: expected a number in [0.0, 45.0] deg, got 90"),
    (LocHeatmapConfig, {"aoa_sigma_deg": 0}, "aoa_sigma_deg: expected a number in [0.1, 90.0] deg, got 0"),
    (KNNConfig, {"k": 0}, "k: expected None or an integer >= 1, got 0"),
    (KNNConfig, {"floor_dbm": 5}, "floor_dbm: expected None or a number in [-300, 0] dBm, got 5"),
    (MapMatchingConfig, {"sigma_db": 0}, "sigma_db: expected None or a number in (0, 50] dB, got 0"),
    (MapMatchingConfig, {"batch_size": 0}, "batch_size: expected an integer in [1, 4096], got 0"),
    (WeightedCentroidConfig, {"offset_db": 0}, "offset_db: expected a number in (0, 100] dB, got 0"),
    (LogDistanceConfig, {"min_distance_m": 0}, "min_distance_m: expected a number in (0, 100] m, got 0"),
]


@pytest.mark.parametrize("cls,bad,message", MESSAGES, ids=[m[2].split(":")[0] for m in MESSAGES])
def test_messages_are_unchanged(cls: type, bad: dict[str, Any], message: str) -> None:
    required = {k: v for k, v in CONFIGS[cls][0].items() if k not in ("mode", "survey")}
    with pytest.raises(InvalidInputError) as info:
        cls(**{**required, **bad})
    assert str(info.value) == message


def test_a_subclass_default_keeps_the_base_range() -> None:
    assert HeimdallConfig().rss_noise_db == 3.0 and NetConfig().rss_noise_db == 0.0
    base, sub = option_of(NetConfig, "rss_noise_db"), option_of(HeimdallConfig, "rss_noise_db")
    assert (sub.lo, sub.hi, sub.unit, sub.help) == (base.lo, base.hi, base.unit, base.help)
    assert option_of(MapFormerConfig, "layers").hi == option_of(SetNetConfig, "layers").hi == 12


# --------------------------------------------------------------------------- command line


def parse(*argv: str) -> Any:
    return build_parser().parse_args(list(argv))


def test_scene_build_defaults_are_the_api_defaults() -> None:
    assert command_config(parse("scene", "build", "--procedural", "--name", "x")) == SceneConfig(name="x")
    assert command_config(parse("scene", "build", "--osm-file", "a.osm", "--name", "x")) == SceneConfig(
        name="x", source="osm_file", path="a.osm")
    # the seed drift of issue 13: one default for the city, the materials and the sites, as make demo-scene
    config = SceneConfig(name="x")
    assert config.seed == config.procedural.seed == config.sites.seed == settings.scene_seed == 7
    assert SceneImportConfig(name="x", path="a.xml").seed == settings.scene_seed


def test_make_demo_scene_builds_the_scene_of_the_shipped_demo_runs(workspace: Path) -> None:
    """``make demo-scene`` and ``demo_scene_config()`` agree, and place the sites the shipped runs know."""
    import json
    import shlex

    from rflocal_core import demo
    from rflocal_core.scene import build_scene, load_scene_meta

    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if "scene build" in ln)
    argv = shlex.split(line.split("-m rflocal_core", 1)[1])
    assert command_config(parse(*argv)) == demo.demo_scene_config()
    build_scene(demo.demo_scene_config())
    sites = [(s["id"], round(s["x_m"], 2), round(s["y_m"], 2)) for s in load_scene_meta(demo.DEMO_SCENE)["sites"]]
    for run_id in demo.DEMO_RUNS:
        reference = json.loads((demo.DEMO_DIR / "runs" / run_id / "reference.json").read_text())
        shipped = [(n["id"], round(n["x_m"], 2), round(n["y_m"], 2)) for n in reference["nodes"][demo.DEMO_SCENE]]
        assert shipped == sites, run_id


def test_scene_build_flags_reach_every_config() -> None:
    config = command_config(parse("scene", "build", "--procedural", "--name", "x", "--seed", "3", "--site-seed", "4"))
    assert config.seed == config.procedural.seed == 3 and config.sites.seed == 4
    config = command_config(parse("scene", "build", "--procedural", "--name", "x", "--seed", "3", "--size-m", "300",
                                  "--open-squares", "0.2", "--material", "glass", "--no-osm-material-tags",
                                  "--sites", "4", "--site-height-m", "7", "--azimuth-deg", "90", "--storey-height-m",
                                  "3.5"))
    assert config.seed == config.procedural.seed == config.sites.seed == 3
    assert (config.procedural.size_m, config.procedural.open_square_fraction) == (300.0, 0.2)
    assert (config.materials.building, config.materials.use_osm_tags) == ("glass", False)
    assert (config.sites.count, config.sites.height_m, config.sites.azimuth_deg) == (4, 7.0, 90.0)
    assert config.storey_height_m == 3.5


def test_scene_import_defaults_are_the_api_defaults() -> None:
    assert command_config(parse("scene", "import", "a.xml", "--name", "x")) == SceneImportConfig(name="x", path="a.xml")
    config = command_config(parse("scene", "import", "a.xml", "--name", "x", "--seed", "5", "--raster-cell-m", "2"))
    assert config.seed == config.sites.seed == 5 and config.raster_cell_m == 2.0


def test_data_generate_defaults_are_the_api_defaults() -> None:
    assert command_config(parse("data", "generate", "--scene", "s", "--name", "d")) == GenerationConfig(
        name="d", scenes=("s",))
    config = command_config(parse("data", "generate", "--scene", "s", "--scene", "t", "--name", "d", "--unseen", "t",
                                  "--no-diffraction", "--no-timing", "--sequence", "2,3", "--emitter-power-dbm",
                                  "-5,20", "--samples", "10", "--sigma-db", "4", "--map-max-depth", "2"))
    assert (config.map_diffraction, config.paths_diffraction, config.timing) == (False, False, False)
    assert config.sequence_length == (2, 3) and config.emitter_power_dbm == (-5.0, 20.0)
    assert (config.samples_per_scene, config.shadowing_sigma_db, config.map_max_depth) == (10, 4.0, 2)
    assert config.unseen_scenes == ("t",)


def test_train_flags_default_to_the_train_config_and_override_the_json() -> None:
    assert flag_values(parse("train", "--dataset", "d", "--model", "setnet"), TrainConfig) == {}
    given = flag_values(parse("train", "--dataset", "d", "--model", "setnet", "--epochs", "5", "--max-minutes", "2",
                              "--batch-size", "64", "--lr", "0.01", "--schedule", "plateau", "--no-amp"), TrainConfig)
    assert given == {"epochs": 5, "max_minutes": 2.0, "batch_size": 64, "lr": 0.01, "schedule": "plateau",
                     "amp": False}
    assert TrainConfig.from_dict(given) == TrainConfig(**given)


def _default(fn: Any, name: str) -> Any:
    return inspect.signature(fn).parameters[name].default


def test_flags_of_functions_default_as_the_functions() -> None:
    from rflocal_core import demo
    from rflocal_core.ablate import run_study
    from rflocal_core.dataset import import_measurements
    from rflocal_core.train import resume, train

    args = parse("train", "--dataset", "d", "--model", "knn")
    assert args.seed == _default(train, "seed")
    args = parse("data", "import", "f.json", "--name", "d")
    assert args.seed == _default(import_measurements, "seed")
    args = parse("ablate", "--study", "features", "--dataset", "d")
    assert (args.seeds, args.epochs, args.max_minutes_per_variant) == (
        _default(run_study, "seeds"), _default(run_study, "epochs"), _default(run_study, "max_minutes_per_variant"))
    args = parse("demo", "build")
    assert (args.samples, args.epochs, args.max_minutes) == (
        _default(demo.build_demo, "samples"), _default(demo.build_demo, "epochs"), _default(demo.build_demo, "max_minutes"))
    assert parse("runs", "resume", "r").max_minutes == _default(resume, "max_minutes")


def test_a_bad_pair_is_refused_naming_the_flag(capsys: pytest.CaptureFixture[str], workspace: Path) -> None:
    assert main(["data", "generate", "--scene", "s", "--name", "d", "--sequence", "2"]) == 2
    assert capsys.readouterr().err == "error: sequence: expected MIN,MAX, got '2'\n"


COMMANDS = [[], ["scene"], ["scene", "build"], ["scene", "import"], ["scene", "list"], ["data"], ["data", "generate"],
            ["data", "import"], ["data", "export"], ["data", "fit-noise"], ["train"], ["evaluate"], ["predict"], ["ablate"], ["demo", "build"],
            ["runs"], ["runs", "resume"], ["doctor"], ["models"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "rflocal")
def test_help_works(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: rflocal")


@pytest.mark.parametrize("command,classes", [
    (["scene", "build"], (SceneConfig, ProceduralConfig, MaterialConfig, SiteConfig)),
    (["scene", "import"], (SceneImportConfig, SiteConfig)),
    (["data", "generate"], (GenerationConfig,)),
    (["data", "fit-noise"], (NoiseFitConfig,)),
    (["train"], (TrainConfig, LaunchConfig)),
    (["predict"], (TrackConfig,)),
], ids=lambda c: " ".join(c) if isinstance(c, list) else "")
def test_help_shows_every_flag_with_its_default(command: list[str], classes: tuple[type, ...],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for cls in classes:
        for name, opt in options(cls).items():
            if opt.flag_name is None:
                continue
            assert opt.flag_name in out, (cls.__name__, name)
            if opt.kind not in ("bool", "other") and opt.default is not None:
                assert f"default {opt.default if not isinstance(opt.default, tuple) else ''}" in out, name


# --------------------------------------------------------------------------- model options (train --set, models)


def _models() -> list[str]:
    from rflocal_core.train import models

    return models()


def _a_changed_value(opt: Any) -> Any:
    """A value in ``opt``'s range other than its default (None where no scalar change fits)."""
    if opt.kind == "bool":
        return not opt.default
    if opt.choices:
        return next((c for c in opt.choices if c != opt.default), None)  # one choice: nothing to change
    if opt.kind == "list":
        return tuple(opt.default[:-1]) if len(opt.default) > 2 else (*opt.default, opt.default[-1])
    if opt.kind not in ("int", "float"):
        return None
    if opt.default is None:
        return opt.lo + (1 if opt.lo_open else 0)
    # ints doubled (d_model stays divisible by heads, map_res by patch_size), floats halfway to the top
    value = (opt.default * 2 or 1) if opt.kind == "int" else opt.default * 0.5 + (opt.hi or opt.default + 1) * 0.5
    if opt.hi is not None and (value > opt.hi or value == opt.default):  # at the top: go down
        value = opt.default - 1 if opt.kind == "int" else (opt.default + opt.lo) / 2
    return value


def _at_path(config: Any, path: str) -> Any:
    for part in path.split("."):
        config = getattr(config, part)
    return config


def _as_text(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value).lower() \
        if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("model", _models())
def test_models_lists_the_options_of_every_model_with_the_api_defaults(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from rflocal_core.cli import train_configs
    from rflocal_core.models.registry import config_class

    cls = config_class(model)
    assert main(["models", model]) == 0
    out = json.loads(capsys.readouterr().out)
    paths = option_paths(cls)
    assert [row["name"] for row in out["options"]] == [path for path, _, _ in paths]
    for row, (path, owner, name) in zip(out["options"], paths, strict=True):
        opt = option_of(owner, name)
        default = _at_path(cls(), path)  # the dataclass's own default, nested configs included
        assert row["default"] == (list(default) if isinstance(default, tuple) else default), path
        assert (row["lo"], row["hi"], row["unit"], row["help"]) == (opt.lo, opt.hi, opt.unit, opt.help), row["name"]
        free = opt.kind == "other" or (opt.kind == "str" and not opt.choices)  # a free text: describe() says nothing
        assert row["choices"] == list(opt.choices) and row["allowed"].endswith("" if free else opt.range_text())
    # no --set, no --config: the model's own defaults
    config, train_config = train_configs(parse("train", "--dataset", "d", "--model", model))
    assert (config, train_config) == ({}, {})
    assert main(["models"]) == 0
    listed = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(_models()) and listed[model]["config"] == (cls.__name__ if paths else None)


def test_train_help_names_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(model in out for model in _models()) and "--set KEY=VALUE" in out


@pytest.mark.parametrize("model", [m for m in _models() if m != "strongest_site"])
def test_set_reaches_every_option_of_the_model_config(model: str) -> None:
    from rflocal_core.cli import train_configs
    from rflocal_core.models.registry import config_class

    cls = config_class(model)
    for path, owner, name in option_paths(cls):
        opt = option_of(owner, name)
        value = _a_changed_value(opt)
        if value is None:
            continue
        config, _ = train_configs(parse("train", "--dataset", "d", "--model", model, "--set", f"{path}={_as_text(value)}"))
        assert _at_path(cls(**config), path) == value != opt.default, (path, value)


def test_set_overrides_the_json_config_and_none_means_none() -> None:
    from rflocal_core.cli import train_configs

    config, _ = train_configs(parse("train", "--dataset", "d", "--model", "knn", "--config", '{"k": 3, "floor_dbm": -120}',
                                    "--set", "k=none"))
    assert config == {"k": None, "floor_dbm": -120}
    config, _ = train_configs(parse("train", "--dataset", "d", "--model", "heimdall", "--set", "node_dropout=0,0.3",
                                    "--set", "geometry=false", "--epochs", "3"))
    assert config == {"node_dropout": (0.0, 0.3), "geometry": False}
    assert HeimdallConfig(**config).node_dropout == (0.0, 0.3)


BAD_SETS = [
    ("knn", "k=0", "k: expected None or an integer >= 1, got 0"),
    ("knn", "k=three", "k: expected None or an integer >= 1, got 'three'"),
    ("knn", "floor_dbm=5", "floor_dbm: expected None or a number in [-300, 0] dBm, got 5.0"),
    ("knn", "kk=1", ("set: knn has no option 'kk'; expected one of k, k_choices, floor_dbm, floor_choices, metric, "
                     "weighting, softmin_scale, softmin_min_db, select_by, estimate, estimate_temperature, "
                     "radio_map_m, radio_map_weight, radio_map_sigma_db, radio_map_spread, radio_map_adaptive_k, "
                     "radio_map_max_m, radio_map_heard_prior")),
    ("knn", "k", "set: expected KEY=VALUE, got 'k'"),
    ("weighted_centroid", "weighting=cubic", "weighting: expected one of db, power, got 'cubic'"),
    ("setnet", "layers=13", "layers: expected an integer in [1, 12], got 13"),
    ("setnet", "d_model=64.5", "d_model: expected an integer in [8, 1024], got '64.5'"),
    ("mapformer", "physics_prior=maybe", "physics_prior: expected true or false, got 'maybe'"),
    ("heimdall", "node_dropout=0,1.5", "node_dropout: expected a non-empty list of fractions in [0, 0.9], got (0.0, 1.5)"),
    ("strongest_site", "k=3", "set: strongest_site has no option 'k'; expected one of (none)"),
    ("log_distance", "centroid.offset_db=0", "centroid.offset_db: expected a number in (0, 100] dB, got 0.0"),
]


@pytest.mark.parametrize("model,item,message", BAD_SETS, ids=[b[1] for b in BAD_SETS])
def test_a_bad_set_exits_2_naming_the_field_the_value_and_the_range(
        model: str, item: str, message: str, capsys: pytest.CaptureFixture[str], workspace: Path) -> None:
    assert main(["train", "--dataset", "nowhere", "--model", model, "--set", item]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"
    assert not (workspace / "runs").exists() or not list((workspace / "runs").iterdir())


def test_set_reaches_the_saved_run_config(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from rflocal_core.dataset import import_measurements

    import_measurements(ROOT / "assets" / "example_measurements.json", name="ex")
    capsys.readouterr()
    assert main(["train", "--dataset", "ex", "--model", "knn", "--config", '{"floor_dbm": -110}',
                 "--set", "k=3", "--set", "k_choices=1,3"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    saved = json.loads((workspace / "runs" / run_id / "config.json").read_text())["model_config"]
    assert {key: saved[key] for key in ("k", "k_choices", "floor_dbm")} == {"k": 3, "k_choices": [1, 3], "floor_dbm": -110.0}


def test_module_help_in_a_fresh_process() -> None:
    proc = subprocess.run([sys.executable, "-m", "rflocal_core", "scene", "build", "--help"], check=False, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and "--seed SEED" in proc.stdout and "default 7" in proc.stdout


# --------------------------------------------------------------------------- pages

#: Widget key -> (config, option, widget units per field unit, value meaning None, pair end).
SCENE_WIDGETS = {
    "sb_seed": (ProceduralConfig, "seed"), "sb_size": (ProceduralConfig, "size_m"),
    "sb_block": (ProceduralConfig, "block_m"), "sb_street": (ProceduralConfig, "street_width_m"),
    "sb_squares": (ProceduralConfig, "open_square_fraction"), "sb_height": (ProceduralConfig, "mean_height_m"),
    "sb_default_h": (SceneConfig, "default_height_m"), "sb_storey": (SceneConfig, "storey_height_m"),
    "sb_material": (MaterialConfig, "building"), "sb_ground": (MaterialConfig, "ground"),
    "sb_rand": (MaterialConfig, "randomize"),
    "sb_mode": (SiteConfig, "mode"), "sb_placement": (SiteConfig, "placement"), "sb_count": (SiteConfig, "count"),
    "sb_mount": (SiteConfig, "mount"), "sb_site_h": (SiteConfig, "height_m"),
    "sb_freq": (SiteConfig, "freq_hz", {"scale": 1e9}), "sb_power": (SiteConfig, "tx_power_dbm"),
    "sb_pattern": (SiteConfig, "pattern"), "sb_az": (SiteConfig, "azimuth_deg", {"none_value": -1.0}),
    "sb_tilt": (SiteConfig, "downtilt_deg"),
}
IMPORT_WIDGETS = {"sb_raster_cell": (SceneImportConfig, "raster_cell_m"),
                  "sb_min_height": (SceneImportConfig, "min_building_height_m")}
DATA_WIDGETS = {
    "dg_samples": (GenerationConfig, "samples_per_scene"), "dg_mode": (GenerationConfig, "mode"),
    "dg_seed": (GenerationConfig, "seed"), "dg_cell": (GenerationConfig, "cell_size_m"),
    "dg_plane": (GenerationConfig, "plane_height_m"), "dg_rays": (GenerationConfig, "map_samples_per_tx"),
    "dg_diff": (GenerationConfig, "map_diffraction"), "dg_sens": (GenerationConfig, "sensitivity_dbm"),
    "dg_min_sites": (GenerationConfig, "min_sites"), "dg_sampling": (GenerationConfig, "sampling"),
    "dg_timing": (GenerationConfig, "timing"), "dg_sigma": (GenerationConfig, "shadowing_sigma_db"),
    "dg_corr": (GenerationConfig, "shadowing_corr_m"), "dg_toa": (GenerationConfig, "toa_noise_ns"),
    "dg_aoa": (GenerationConfig, "aoa_noise_deg"), "dg_bias": (GenerationConfig, "nlos_bias_mean_ns"),
    "dg_topk": (GenerationConfig, "top_k"), "dg_dropout": (GenerationConfig, "dropout"),
    "dg_rss_noise": (GenerationConfig, "rss_noise_db"),
    "dg_seq_min": (GenerationConfig, "sequence_length", {"index": 0}),
    "dg_seq_max": (GenerationConfig, "sequence_length", {"index": 1}), "dg_motion": (GenerationConfig, "motion"),
    "dg_pmin": (GenerationConfig, "emitter_power_dbm", {"index": 0}),
    "dg_pmax": (GenerationConfig, "emitter_power_dbm", {"index": 1}), "dg_survey": (GenerationConfig, "survey"),
    "dg_drone_alt": (GenerationConfig, "drone_altitude_m"), "dg_drone_spacing": (GenerationConfig, "drone_spacing_m"),
    "dg_drone_points": (GenerationConfig, "drone_points"),
    "dg_iq": (GenerationConfig, "iq"), "dg_iq_waveform": (GenerationConfig, "iq_waveform"),
    "dg_iq_bw": (GenerationConfig, "iq_bandwidth_hz"),
    "dg_rss_step": (GenerationConfig, "rss_quantization_db"),
    "dg_fit_split": (NoiseFitConfig, "split"), "dg_fit_boot": (NoiseFitConfig, "bootstrap"),
    "dg_phy": (GenerationConfig, "phy"), "dg_phy_scs": (GenerationConfig, "phy_scs_khz"),
    "dg_phy_rb": (GenerationConfig, "phy_n_rb"), "dg_phy_beams": (GenerationConfig, "phy_beams"),
    "dg_phy_load_min": (GenerationConfig, "phy_load", {"index": 0}),
    "dg_phy_load_max": (GenerationConfig, "phy_load", {"index": 1}),
    "dg_phy_gnb": (GenerationConfig, "phy_gnb_antennas"), "dg_phy_ue": (GenerationConfig, "phy_ue_antennas"),
    "dg_phy_rrc": (GenerationConfig, "phy_rrc_period"),
    "dg_timing_maps": (GenerationConfig, "timing_maps"), "dg_timing_factor": (GenerationConfig, "timing_map_factor"),
}
TRAIN_WIDGETS = {
    "tm_epochs": (TrainConfig, "epochs"), "tm_batch": (TrainConfig, "batch_size"), "tm_lr": (TrainConfig, "lr"),
    "tm_minutes": (TrainConfig, "max_minutes", {"none_value": 0.0}), "tm_schedule": (TrainConfig, "schedule"),
    "tm_warmup": (TrainConfig, "warmup_epochs"), "tm_patience": (TrainConfig, "patience"),
    "tm_device": (TrainConfig, "device"), "tm_initial_val": (TrainConfig, "initial_validation"),
    "tm_sigma_radii_net": (TrainConfig, "sigma_radii"), "tm_select_on": (TrainConfig, "select_on"),
    "tm_refit_net": (TrainConfig, "refit"), "tm_refit_scale": (TrainConfig, "refit_steps_scale", {"none_value": 0.0}),
}
BASELINE_TRAIN_WIDGETS = {
    "tm_calibration": (TrainConfig, "calibration"), "tm_cal_block": (TrainConfig, "calibration_block_m"),
    "tm_cal_folds": (TrainConfig, "calibration_folds"), "tm_sigma_radii": (TrainConfig, "sigma_radii"),
}


def _check_widgets(at: AppTest, widgets: dict[str, tuple[Any, ...]]) -> None:
    numbers = {w.key: w for w in at.number_input}
    selects = {w.key: w for w in at.selectbox}
    boxes = {w.key: w for w in at.checkbox}
    for key, (cls, name, *extra) in widgets.items():
        how = extra[0] if extra else {}
        opt = option_of(cls, name)
        default = opt.default if "index" not in how else opt.default[how["index"]]
        if opt.kind == "bool":
            assert boxes[key].value is default, key
        elif opt.choices:
            box = selects[key]
            assert list(box.options) == [*(["scene's own"] if opt.nullable else []), *opt.choices], key
            assert box.value == ("scene's own" if default is None else default), key
        else:
            widget, scale = numbers[key], how.get("scale", 1.0)
            lo = how.get("none_value", opt.lo / scale if opt.lo is not None else None)
            assert (widget.min, widget.max) == (lo, opt.hi / scale), key
            assert widget.value == (how["none_value"] if default is None else default / scale), key
            assert widget.help == opt.help, key
            if opt.step is not None:
                assert widget.step == opt.step / scale, key


@pytest.fixture
def page_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from rflocal_core.dataset import import_measurements
    from rflocal_core.scene import build_scene

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(tmp_path))
    build_scene(SceneConfig(name="tiny", procedural=ProceduralConfig(size_m=160.0), sites=SiteConfig(count=3)))
    import_measurements(ROOT / "assets" / "example_measurements.json", name="ex")
    return tmp_path


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "views" / name), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def test_scene_builder_widgets_are_the_options(page_workspace: Path) -> None:
    at = _page("scene_builder.py")
    _check_widgets(at, SCENE_WIDGETS)
    at.radio(key="sb_source").set_value("Sionna / Mitsuba scene").run()
    assert not at.exception, at.exception
    _check_widgets(at, IMPORT_WIDGETS)


def test_data_generation_widgets_are_the_options(page_workspace: Path) -> None:
    _check_widgets(_page("data_generation.py"), DATA_WIDGETS)


def test_training_monitor_widgets_are_the_options(page_workspace: Path) -> None:
    at = _page("training_monitor.py")
    assert at.selectbox(key="tm_model").value == "setnet"  # a network: its training options are shown
    _check_widgets(at, TRAIN_WIDGETS)
    at.selectbox(key="tm_model").set_value("knn").run()  # a baseline: where its sigma is calibrated
    assert not at.exception, at.exception
    _check_widgets(at, BASELINE_TRAIN_WIDGETS)


def test_a_page_widget_value_reaches_the_config_in_field_units(page_workspace: Path) -> None:
    """The Scene Builder's GHz and "-1 = towards centre" become Hz and None in the built scene."""
    import json

    at = _page("scene_builder.py")
    at.text_input(key="sb_name").set_value("units")
    at.number_input(key="sb_size").set_value(160.0)
    at.number_input(key="sb_count").set_value(2)
    at.number_input(key="sb_freq").set_value(2.4)
    at.button(key="sb_build").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    meta = json.loads((page_workspace / "scenes" / "units" / "scene.json").read_text())
    assert meta["site_config"]["freq_hz"] == 2.4e9 and meta["site_config"]["azimuth_deg"] is None
    assert meta["seed"] == meta["site_config"]["seed"] == settings.scene_seed


def test_every_widget_table_names_real_options() -> None:
    for table in (SCENE_WIDGETS, IMPORT_WIDGETS, DATA_WIDGETS, TRAIN_WIDGETS, BASELINE_TRAIN_WIDGETS):
        for cls, name, *_ in table.values():
            assert dataclasses.is_dataclass(cls) and name in options(cls)


def _check_model_widgets(at: AppTest, model: str) -> int:
    """Assert every option widget of ``model`` on the Training Monitor has the field's range, default and help."""
    from pages.views.widgets import none_value
    from rflocal_core.models.registry import config_class

    cls = config_class(model)
    numbers, selects = {w.key: w for w in at.number_input}, {w.key: w for w in at.selectbox}
    boxes, texts = {w.key: w for w in at.checkbox}, {w.key: w for w in at.text_input}
    for path, owner, name in option_paths(cls):
        opt = option_of(owner, name)
        key = f"tm_opt_{model}_{path}"
        if opt.kind == "bool":
            assert boxes[key].value is opt.default and boxes[key].help == opt.help, key
        elif opt.choices:
            assert list(selects[key].options) == list(opt.choices) and selects[key].value == opt.default, key
        elif opt.kind in ("int", "float"):
            widget = numbers[key]
            lo = none_value(opt) if opt.nullable else opt.lo
            assert (widget.min, widget.max) == (lo, opt.hi), key
            assert widget.value == (lo if opt.default is None else opt.default), key
            assert widget.help == opt.help, key
        elif opt.kind == "str":  # a free text (ensemble's members)
            assert texts[key].value == opt.default, key
        else:
            assert texts[key].value == ",".join(str(v) for v in opt.default), key
    return len(option_paths(cls))


def test_training_monitor_model_option_widgets_are_the_options(page_workspace: Path) -> None:
    from rflocal_core.train import models

    at = _page("training_monitor.py")
    checked = 0
    for model in models():
        at.selectbox(key="tm_model").set_value(model).run()
        assert not at.exception, at.exception
        checked += _check_model_widgets(at, model)
        if model == "strongest_site":
            assert any(c.value == "strongest_site has no options." for c in at.caption)
    assert checked > 80  # every model's options were there


def _wait_for_run(at: AppTest) -> str:
    from rflocal_core.jobs import REGISTRY

    assert not at.exception and not at.error, [e.value for e in at.error]
    run_id = at.success[0].value.split("**")[1]
    job = next(j for j in REGISTRY.list(kind="train") if j.label == run_id)
    assert job.wait(120) and job.state == "done", job.error
    return run_id


def test_a_changed_model_option_reaches_the_saved_run_config(page_workspace: Path) -> None:
    import json

    at = _page("training_monitor.py")
    at.selectbox(key="tm_dataset").set_value("ex")
    at.selectbox(key="tm_model").set_value("knn").run()
    at.number_input(key="tm_opt_knn_k").set_value(3)
    at.number_input(key="tm_opt_knn_floor_dbm").set_value(-110.0)
    at.text_input(key="tm_opt_knn_k_choices").set_value("1,3")
    at.button(key="tm_start").click().run()
    run_id = _wait_for_run(at)
    saved = json.loads((page_workspace / "runs" / run_id / "config.json").read_text())["model_config"]
    assert {key: saved[key] for key in ("k", "k_choices", "floor_dbm")} == {"k": 3, "k_choices": [1, 3], "floor_dbm": -110.0}

    at.selectbox(key="tm_model").set_value("log_distance").run()  # a nested config's options: dotted
    at.selectbox(key="tm_opt_log_distance_centroid.weighting").set_value("power")
    at.button(key="tm_start").click().run()
    saved = json.loads((page_workspace / "runs" / _wait_for_run(at) / "config.json").read_text())["model_config"]
    assert saved["centroid"] == {"weighting": "power", "offset_db": 5.0}

    at.selectbox(key="tm_model").set_value("knn").run()
    at.number_input(key="tm_opt_knn_k").set_value(0)  # the widget's "0 = chosen on the validation split"
    at.text_input(key="tm_opt_knn_k_choices").set_value("1,x")
    at.button(key="tm_start").click().run()
    assert [e.value for e in at.error] == ["k_choices: expected a comma-separated list of integers, got '1,x'"]


def test_the_epoch_choice_set_on_the_page_reaches_the_run(page_workspace: Path) -> None:
    """``select_on`` (the validation figure that keeps an epoch) chosen on the page is the one the run trained with."""
    import json

    at = _page("training_monitor.py")
    at.selectbox(key="tm_dataset").set_value("ex")
    at.selectbox(key="tm_model").set_value("setnet").run()
    at.number_input(key="tm_epochs").set_value(1)
    at.selectbox(key="tm_select_on").set_value("over_10m")
    at.button(key="tm_start").click().run()
    config = json.loads((page_workspace / "runs" / _wait_for_run(at) / "config.json").read_text(encoding="utf-8"))
    assert config["train_config"]["select_on"] == "over_10m"


def test_a_baseline_started_on_the_page_is_calibrated_where_the_page_says(page_workspace: Path) -> None:
    import json

    from rflocal_core.jobs import REGISTRY

    at = _page("training_monitor.py")
    at.selectbox(key="tm_dataset").set_value("ex")
    at.selectbox(key="tm_model").set_value("knn").run()
    at.selectbox(key="tm_calibration").set_value("blocks")
    at.number_input(key="tm_cal_block").set_value(40.0)
    at.number_input(key="tm_cal_folds").set_value(3)
    at.button(key="tm_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_id = at.success[0].value.split("**")[1]
    job = next(j for j in REGISTRY.list(kind="train") if j.label == run_id)
    assert job.wait(60) and job.state == "done", job.error
    config = json.loads((page_workspace / "runs" / run_id / "config.json").read_text(encoding="utf-8"))
    record = config["sigma_calibration"]
    assert (record["source"], record["block_m"], record["folds"]) == ("blocks", 40.0, 3), record
