"""The tiny datasets of the tests share their expensive generation stages (``tests/conftest.py``:
:func:`build_tiny_dataset` with a stage cache): a dataset resumed from a kept stage must be the
bytes of a fresh build, but for the stage times and the date."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import build_tiny_dataset

#: Coarse maps and few rays: the check is about the copying, not the physics (the suite's tiny
#: datasets use 4 m maps and more rays; the stages are the same).
SMALL = {"cell_size_m": 8.0, "map_samples_per_tx": 20_000, "paths_samples_per_src": 1000}

#: Root attributes a build writes from the clock.
TIMED = ("created_utc", "seconds")


def store_files(path: Path) -> dict[str, bytes]:
    """Every file of a Zarr store by its path inside, the root's timed attributes left out."""
    files = {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    root = json.loads(files.pop("zarr.json"))
    for key in TIMED:
        root["attributes"].pop(key)
    files["zarr.json"] = json.dumps(root, sort_keys=True).encode()
    return files


def test_a_dataset_resumed_from_kept_stages_is_the_fresh_build(tmp_path: Path, workspace_env) -> None:
    cache = tmp_path / "cache"
    builds = {}
    for ws, scene, samples, kept in (("fresh", "x", 30, None), ("other", "y", 20, cache), ("maps", "x", 30, cache),
                                     ("paths", "x", 30, cache)):
        (tmp_path / ws).mkdir()
        with workspace_env(tmp_path / ws):
            builds[ws] = build_tiny_dataset(scene, f"{scene}ds", samples=samples, cache=kept, **SMALL)
    # another scene name and sample count filled the cache; x resumed after its maps, then after its paths
    assert builds == {"fresh": None, "other": None, "maps": "maps", "paths": "paths"}
    assert len(list(cache.iterdir())) == 3  # the maps, the paths of 20 and of 30 samples
    fresh = store_files(tmp_path / "fresh" / "datasets" / "xds")
    assert any(name.startswith("scenes/x/paths/") for name in fresh)
    for ws in ("maps", "paths"):
        resumed = store_files(tmp_path / ws / "datasets" / "xds")
        assert sorted(resumed) == sorted(fresh)
        assert [name for name in fresh if resumed[name] != fresh[name]] == []
