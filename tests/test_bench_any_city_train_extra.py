"""bench/bench_any_city.py --train-extra: training-only tiles and the splits they leave to the other tiles (no data)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import zarr

from rflocal_core.dataset import store
from rflocal_core.settings import use_workspace


@pytest.fixture(scope="module")
def bench(load_bench) -> ModuleType:
    """``bench/bench_any_city.py`` as a module."""
    return load_bench("bench_any_city")


def _dataset(path: Path, pos_m: np.ndarray, scene_idx: np.ndarray, splits: dict[str, list[int]]) -> zarr.Group:
    """A dataset store with just the arrays the split helpers read."""
    root = zarr.open_group(str(path), mode="w")
    store.write_array(root.require_group("samples"), "pos_m", pos_m, chunk_rows=len(pos_m))
    store.write_array(root["samples"], "scene_idx", scene_idx, chunk_rows=len(scene_idx))
    for key, idx in splits.items():
        store.write_array(root.require_group("splits"), key, np.asarray(idx, dtype=np.int64), chunk_rows=8)
    return root


def test_move_to_train_puts_every_sample_of_the_extra_tiles_in_train(bench: ModuleType) -> None:
    """Scene 2's val and test samples go to train; the other scenes' splits are untouched."""
    scene_idx = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    splits = {"train": np.array([0, 2, 4]), "val": np.array([1, 5]), "test": np.array([3, 6, 7])}
    out = bench.move_to_train(splits, scene_idx, [2])
    assert out["train"].tolist() == [0, 2, 4, 5, 6]
    assert out["val"].tolist() == [1]
    assert out["test"].tolist() == [3, 7]
    assert bench.move_to_train(splits, scene_idx, [])["train"].tolist() == [0, 2, 4]
    kept = bench.move_to_train(splits, scene_idx, [2], keep_val=True)  # --extra-val: scene 2's val stays in val
    assert kept["train"].tolist() == [0, 2, 4, 6] and kept["val"].tolist() == [1, 5] and kept["test"].tolist() == [3, 7]


def test_splits_like_reuses_the_smaller_datasets_splits(bench: ModuleType, tmp_path: Path) -> None:
    """The first samples (the same tiles, same positions) get the splits of the dataset without the extra tile;
    the extra tile's samples keep theirs; other positions are refused naming the dataset."""
    pos = np.arange(18, dtype=float).reshape(6, 3)
    with use_workspace(tmp_path):
        _dataset(store.dataset_path("small"), pos[:4], np.array([0, 0, 1, 1]),
                 {"train": [0, 3], "val": [1], "test": [2]})
        big = _dataset(tmp_path / "big", pos, np.array([0, 0, 1, 1, 2, 2]),
                       {"train": [1, 2, 4, 5], "val": [3], "test": [0]})
        own = {k: np.asarray(big["splits"][k][...]) for k in ("train", "val", "test")}
        out = bench.splits_like(big, "small", own)
        assert {k: v.tolist() for k, v in out.items()} == {"train": [0, 3, 4, 5], "val": [1], "test": [2]}
        other = _dataset(tmp_path / "other", pos + 1.0, np.array([0, 0, 1, 1, 2, 2]), {"train": [0]})
        with pytest.raises(ValueError, match="'small' are not the first 4"):
            bench.splits_like(other, "small", {"train": np.array([0])})


def test_train_extra_refuses_the_held_out_scene(bench: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The held-out Sionna scene cannot also be a training-only tile: exit 2, one line naming it."""
    monkeypatch.setattr(sys, "argv", ["bench_any_city.py", "--bundled", "etoile", "--train-extra", "etoile"])
    assert bench.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "['etoile']" in err[0] and "--train-extra" in err[0]


def test_procedural_training_tiles_are_named_by_preset_seed_and_index(bench: ModuleType) -> None:
    """``pd1-p02`` is tile 2 of seed 1 drawn from preset ``pd``'s ranges; other names are not procedural tiles."""
    from rflocal_core.scene.tiles import draw_procedural

    config = bench.procedural_extra("pd1-p02")
    assert (config.prefix, config.seed, config.count, config.unseen) == ("pd", 1, 3, 0)
    preset = bench.PROCEDURAL_EXTRA["pd"]
    drawn = draw_procedural(config, 2)
    assert preset["size_m"][0] <= drawn.size_m <= preset["size_m"][1]
    assert preset["street_width_m"][0] <= drawn.street_width_m <= preset["street_width_m"][1]
    assert preset["mean_height_m"][0] <= drawn.mean_height_m <= preset["mean_height_m"][1]
    assert drawn != draw_procedural(config, 1)
    for name in ("munich", "zz1-p00", "pd1-p2", "pd-p02", "pd1-p02x"):
        assert bench.procedural_extra(name) is None, name


def test_train_extra_refuses_an_unknown_procedural_preset(bench: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown preset is refused before anything is built: exit 2, one line naming it and the presets."""
    monkeypatch.setattr(sys, "argv", ["bench_any_city.py", "--train-extra", "pd1-p00,zz1-p00"])
    assert bench.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "['zz1-p00']" in err[0] and "pd, pm" in err[0]


def test_long_dataset_names_are_cut_and_kept_apart(bench: ModuleType) -> None:
    """Many training-only tiles give a name over 64 characters: cut to 64, different tiles a different name."""
    short = bench.dataset_name(500, 4.0, "etoile", ("pd1-p00",))
    assert short == "ac-all-500-4m-etoile-x-pd1-p00"
    many = bench.dataset_name(500, 4.0, "etoile", ("pd1-p00", "pd1-p01", "pd1-p02", "pm1-p00", "pm1-p01"))
    other = bench.dataset_name(500, 4.0, "etoile", ("pd1-p00", "pd1-p01", "pd1-p02", "pm1-p00", "pm1-p02"))
    assert len(many) == len(other) == 64 and many != other


def test_versus_prior_counts_the_priors_wrong_mode_samples_a_model_fixes(bench: ModuleType) -> None:
    """Of the two samples the prior has > 10 m off the model fixes one; it breaks one of the three others."""
    prior = np.array([2.0, 3.0, 4.0, 40.0, 80.0])
    model = np.array([2.0, 12.0, 1.0, 5.0, 90.0])
    out = bench.versus_prior(model, prior)
    assert out["prior_far"] == 2 and out["fixed"] == 0.5 and out["broken"] == 0.333
    assert out["prior_far_median_m"] == 60.0 and out["model_on_prior_far_median_m"] == 47.5
    assert out["better_1m"] == 0.4 and out["worse_1m"] == 0.4


def test_the_prior_tiles_candidates_are_training_tiles_bench_any_city_takes(load_bench) -> None:
    """Every candidate of ``bench/bench_prior_tiles.py`` is a tile ``--train-extra`` accepts; the table marks a
    candidate Paris-like by the share of samples the prior has > 10 m off, and the bench's own tiles not at all."""
    tiles = load_bench("bench_prior_tiles")
    ac = load_bench("bench_any_city")
    assert all(c in ac.BUNDLED or ac.procedural_extra(c) is not None for c in tiles.CANDIDATES)
    row = {"prior_median_m": 10.4, "prior_p95_m": 76.7, "share_over_10m": 0.514, "share_over_50m": 0.104,
           "toa_per_sample": 1.95, "los_toa_per_sample": 0.13, "nlos_share_of_toa": 0.936}
    out = tiles.table({"tiles": {"pm1-p00": {"role": "candidate", **row},
                                 "sf": {"role": "candidate", **row, "share_over_10m": 0.26},
                                 "etoile": {"role": "bench tile", **row}}}).splitlines()
    assert out[2] == "| pm1-p00 | candidate | 10.4 / 76.7 | 51% | 10% | 1.95 / 0.13 | 94% | yes |"
    assert out[3].endswith("| no |") and out[4].endswith("| - |")


def test_extra_val_only_keeps_only_the_extra_tiles_val_and_train_unchanged(bench: ModuleType) -> None:
    """--extra-val-only: val is scene 2's val samples alone; scene 0's val sample is in no split; train and test are
    those of --extra-val."""
    scene_idx = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    splits = {"train": np.array([0, 2, 4]), "val": np.array([1, 5]), "test": np.array([3, 6, 7])}
    kept = bench.move_to_train(splits, scene_idx, [2], keep_val=True)
    out = bench.val_only_of(kept, scene_idx, [2])
    assert out["val"].tolist() == [5]
    assert out["train"].tolist() == kept["train"].tolist() and out["test"].tolist() == kept["test"].tolist()
    assert 1 not in np.concatenate(list(out.values()))


def test_extra_val_only_refused_without_extra_val(bench: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--extra-val-only alone would silently change nothing: exit 2, one line naming it."""
    monkeypatch.setattr(sys, "argv", ["bench_any_city.py", "--train-extra", "pm1-p00", "--extra-val-only"])
    assert bench.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--extra-val-only without --extra-val" in err[0]
