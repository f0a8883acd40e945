"""Issue 19, training data that looks like the world: ``scene tiles`` builds many tiles of different
morphology in one command (procedural cities drawn per tile, OSM extracts, Sionna's scenes) and a
dataset over them with whole tiles held out as ``test_unseen``. Tiny tiles, coarse grids, few rays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rflocal_core.cli import build_parser, command_config, main
from rflocal_core.errors import InvalidInputError
from rflocal_core.options import check_value, options
from rflocal_core.scene import CustomSite, SiteConfig, list_scenes, load_scene_meta
from rflocal_core.scene.tiles import TilesConfig, build_tiles, draw_procedural, generate_command, pick_unseen

#: Two tiny procedural tiles: 150-220 m, small blocks, 2-3 sites each.
TINY = {"count": 2, "seed": 3, "size_m": (150.0, 220.0), "block_m": (30.0, 45.0), "street_width_m": (4.0, 8.0),
        "site_count": (2, 3), "unseen": 1}
TINY_FLAGS = ["--count", "2", "--seed", "3", "--size-m", "150,220", "--block-m", "30,45", "--street-width-m", "4,8",
              "--site-count", "2,3", "--unseen", "1"]


def test_two_tiny_tiles_of_different_morphology(workspace: Path) -> None:
    config = TilesConfig(**TINY)
    result = build_tiles(config)
    assert result.scenes == ("tile3-p00", "tile3-p01") and len(result.unseen) == 1
    assert set(result.unseen) < set(result.scenes)
    assert sorted(s["name"] for s in list_scenes()) == list(result.scenes)
    drawn = [t.source for t in result.tiles]
    assert drawn[0] != drawn[1]  # each tile draws its own city
    for tile, name in zip(result.tiles, result.scenes):
        meta = load_scene_meta(name)
        src = meta["source"]
        assert tile.built and tile.unseen == (name in result.unseen)
        assert 150 <= src["size_m"] <= 220 and 30 <= src["block_m"] <= 45 and 4 <= src["street_width_m"] <= 8
        assert 6 <= src["mean_height_m"] <= 45 and 0 <= src["open_square_fraction"] <= 0.3
        assert 2 <= len(meta["sites"]) <= 3
        assert tile.extent_m == (src["size_m"], src["size_m"]) and tile.buildings == meta["buildings"]["count"] > 3
    assert result.generate_command == ("python -m rflocal_core data generate --name DATASET --scene tile3-p00 "
                                       f"--scene tile3-p01 --unseen {result.unseen[0]}")
    again = build_tiles(config)  # a repeated command keeps what is there
    assert not any(t.built for t in again.tiles) and again.scenes == result.scenes and again.unseen == result.unseen
    # the same names asked with other options: refused, not silently kept
    with pytest.raises(InvalidInputError, match="^tile 'tile3-p00': a scene of that name is in the workspace with "
                                                "other options \\(size_m"):
        build_tiles(TilesConfig(**{**TINY, "size_m": (300.0, 400.0)}))
    with pytest.raises(InvalidInputError, match="sites.mode 'ue' \\(asked 'emitter'\\)"):
        build_tiles(TilesConfig(**TINY, sites=SiteConfig(mode="emitter")))


def test_a_tile_draw_does_not_depend_on_the_count_and_covers_the_ranges() -> None:
    one, many = TilesConfig(count=1, seed=9), TilesConfig(count=40, seed=9)
    assert draw_procedural(one, 0) == draw_procedural(many, 0)
    cities = [draw_procedural(many, k) for k in range(40)]
    sizes = np.array([c.size_m for c in cities])
    assert 256 <= sizes.min() < 500 and 1200 < sizes.max() <= 2000  # small towns and 2 km cities
    for c in cities:
        assert 40 <= c.block_m <= min(160, max(40, c.size_m / 3)) and c.street_width_m < c.block_m / 2
        assert 6 <= c.mean_height_m <= 45
    assert len({c.seed for c in cities}) == 40
    assert draw_procedural(TilesConfig(count=1, seed=10), 0) != cities[0]


def test_real_tiles_are_held_out_first(workspace: Path, osm_dir: Path) -> None:
    config = TilesConfig(count=1, seed=2, size_m=(150.0, 200.0), block_m=(30.0, 40.0), street_width_m=(4.0, 6.0),
                         site_count=(2, 3), osm=(str(osm_dir / "bavaria_village_48.135_10.068.osm"),), unseen=1)
    result = build_tiles(config)
    assert result.scenes == ("tile2-p00", "tile2-osm-bavaria-village-48-135-1")
    assert result.unseen == ("tile2-osm-bavaria-village-48-135-1",)
    osm = result.tiles[1]
    assert osm.kind == "osm" and osm.buildings >= 20 and 2 <= osm.sites <= 3
    assert load_scene_meta(osm.name)["source"]["kind"] != "procedural"


def test_a_bundled_sionna_scene_is_a_tile(workspace: Path) -> None:
    from rflocal_core.scene import bundled_scenes

    if "simple_street_canyon" not in bundled_scenes():
        pytest.skip("Sionna RT with its bundled scenes is not installed")
    config = TilesConfig(count=0, seed=1, bundled=("simple_street_canyon",), unseen=0, site_count=(9, 9))
    tile = build_tiles(config).tiles[0]
    # the canyon has 6 buildings: the site count drawn (9) is lowered until its roofs hold them
    assert tile.name == "tile1-sionna-simple-street-canyon" and tile.kind == "bundled" and tile.sites <= tile.buildings


@pytest.mark.parametrize(("fields", "message"), [
    ({"count": 2, "unseen": 2}, "unseen: 2 held-out tile(s) of 2 leave none to train on; expected at most 1"),
    ({"count": 0, "unseen": 0}, "count: expected at least one tile"),
    ({"osm": ("/nonexistent/x.osm",)}, "osm: '/nonexistent/x.osm' is neither an .osm file nor a folder of them"),
    ({"bundled": ("atlantis",)}, "bundled: Sionna RT ships no scene 'atlantis'"),
])
def test_bad_sets_are_refused_before_anything_is_built(workspace: Path, fields: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        build_tiles(TilesConfig(**fields))
    assert list_scenes() == []


def test_every_option_is_checked_and_the_flags_default_to_the_api() -> None:
    TilesConfig()
    for name, opt in options(TilesConfig).items():
        assert opt.help, name
        check_value(name, opt.default, opt)
    with pytest.raises(InvalidInputError, match=r"^size_m\[0\]: expected a number in \[100.0, 2000.0\] m, got 50.0"):
        TilesConfig(size_m=(50.0, 300.0))
    with pytest.raises(InvalidInputError, match=r"^site_count\[1\]: expected an integer in \[5, 64\], got 2"):
        TilesConfig(site_count=(5, 2))
    with pytest.raises(InvalidInputError, match="^prefix: expected 1-64 characters"):
        TilesConfig(prefix="../x")
    with pytest.raises(InvalidInputError, match="^sites.placement: 'custom' sites belong to one scene"):
        TilesConfig(sites=SiteConfig(placement="custom", custom=(CustomSite(x_m=0.0, y_m=0.0),)))
    parse = build_parser().parse_args
    assert command_config(parse(["scene", "tiles"])) == TilesConfig()
    config = command_config(parse(["scene", "tiles", *TINY_FLAGS, "--osm", "a.osm", "--osm", "dir", "--bundled",
                                   "munich", "--mode", "emitter", "--site-height-m", "5"]))
    assert config == TilesConfig(**TINY, osm=("a.osm", "dir"), bundled=("munich",),
                                 sites=SiteConfig(mode="emitter", height_m=5.0))


def test_set_without_generate_is_refused(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scene", "tiles", *TINY_FLAGS, "--set", "cell_size_m=4"]) == 2
    assert "--set: dataset options apply with --generate DATASET" in capsys.readouterr().err
    assert main(["scene", "tiles", *TINY_FLAGS, "--generate", "d", "--set", "cell_size=4"]) == 2
    assert "set: GenerationConfig has no option 'cell_size'" in capsys.readouterr().err
    assert list_scenes() == []  # refused before any tile was built


def test_one_command_builds_the_tiles_and_a_dataset_with_a_whole_tile_unseen(workspace: Path, run_cli) -> None:
    """``scene tiles ... --generate DS``: every tile in the dataset, the held-out one only in test_unseen."""
    from rflocal_core.models import load_inputs

    proc = run_cli(["scene", "tiles", *TINY_FLAGS, "--generate", "world", "--set", "samples_per_scene=40",
                    "--set", "cell_size_m=10", "--set", "map_samples_per_tx=100000",
                    "--set", "paths_samples_per_src=2000", "--set", "min_sites=1"], workspace)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    scenes, unseen = out["scenes"], out["unseen"]
    assert len(scenes) == 2 and len(unseen) == 1 and out["dataset"]
    seen = [s for s in scenes if s not in unseen]
    test_unseen = load_inputs("world", "test_unseen", with_maps=False)
    assert {test_unseen.scenes[i] for i in np.unique(test_unseen.scene_idx)} == set(unseen) and len(test_unseen) > 0
    for split in ("train", "val", "test"):
        x = load_inputs("world", split, with_maps=False)
        assert {x.scenes[i] for i in np.unique(x.scene_idx)} <= set(seen), split
    # the printed one-liner is the same dataset: these scenes, that one held out
    assert out["generate_command"].replace("DATASET", "world") == generate_command(tuple(scenes), tuple(unseen), "world")
    _predict_the_held_out_tile_from_a_file(workspace, unseen[0])


def _predict_the_held_out_tile_from_a_file(workspace: Path, tile: str) -> None:
    """A file of the held-out tile: a geometric run predicts it as a new scene; kNN refuses (no fingerprints)."""
    from rflocal_core.dataset import export_dataset
    from rflocal_core.errors import InferenceInputError
    from rflocal_core.infer import evaluate_run, predict_file
    from rflocal_core.measurements import dumps_measurements
    from rflocal_core.train import train

    path = workspace / "unseen.json"
    path.write_text(dumps_measurements(export_dataset("world", split="test_unseen")))
    toa = train("world", "toa_multilateration").run_id
    out = predict_file(toa, path).runs[0]
    assert out.scene == tile and out.new_scene and len(out.predictions) > 0
    # the same samples, the same answers as scoring the split
    errors = np.array([p.error_m for p in out.predictions])
    assert np.median(errors) == pytest.approx(evaluate_run(toa, "world", split="test_unseen").summary.median_m, abs=0.01)
    knn = train("world", "knn").run_id
    with pytest.raises(InferenceInputError, match=f"scene '{tile}', which dataset 'world' held out of training"):
        predict_file(knn, path)


def test_pick_unseen_is_reproducible() -> None:
    plan = [(f"p{k}", "procedural", None) for k in range(5)] + [("osm-a", "osm", None), ("osm-b", "osm", None)]
    config = TilesConfig(seed=4, unseen=3)
    first = pick_unseen(config, plan)
    assert first == pick_unseen(config, plan) and {"osm-a", "osm-b"} < set(first) and len(first) == 3


def test_help_shows_every_tiles_flag_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["scene", "tiles", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, opt in options(TilesConfig).items():
        assert opt.flag_name in out, name
        shown = ",".join(str(v) for v in opt.default) if isinstance(opt.default, tuple) else str(opt.default)
        assert f"default {shown}" in out, name
    for flag in ("--osm", "--bundled", "--generate", "--set", "--mode", "--site-height-m"):
        assert flag in out
    assert "--site-seed" not in out and "--sites " not in out  # drawn per tile


def test_an_osm_folder_gives_one_tile_per_file(osm_dir: Path, tmp_path: Path) -> None:
    from rflocal_core.scene.tiles import osm_files

    found = osm_files((str(osm_dir),))
    assert [p.name for p in found] == sorted(p.name for p in osm_dir.glob("*.osm")) and len(found) == 3
    with pytest.raises(InvalidInputError, match="holds no .osm file"):
        osm_files((str(tmp_path),))
