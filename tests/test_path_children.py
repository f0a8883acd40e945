"""Exact paths traced in child processes (one Dr.Jit thread each) equal those traced here, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest


def test_path_workers_use_the_cores_only_for_enough_batches(monkeypatch: pytest.MonkeyPatch):
    from rflocal_core.dataset import generate

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    per = generate.PATH_BATCHES_PER_WORKER
    assert generate.path_workers(0) == 1
    assert generate.path_workers(2 * per - 1) == 1  # a child costs seconds to start: few batches run here
    assert generate.path_workers(2 * per) == 2
    assert generate.path_workers(100 * per) == 4  # at most one a core


def test_paths_in_child_processes_equal_the_paths_traced_here(workspace, monkeypatch: pytest.MonkeyPatch):
    import zarr

    from rflocal_core.dataset import GenerationConfig, generate, generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="gen", procedural=ProceduralConfig(size_m=160, seed=3), sites=SiteConfig(count=3)))

    def config(name: str) -> GenerationConfig:
        return GenerationConfig(name=name, scenes=("gen",), samples_per_scene=150, cell_size_m=4.0,
                                map_samples_per_tx=100_000, paths_samples_per_src=10_000, min_sites=1)

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    generate_dataset(config("here"))  # 2 batches: under 2 x PATH_BATCHES_PER_WORKER, traced in this process
    monkeypatch.setattr(generate, "PATH_BATCHES_PER_WORKER", 1)
    stages: list[str] = []
    generate_dataset(config("children"), progress=lambda stage, fraction: stages.append(stage))
    assert any("exact paths (Sionna PathSolver, 2 processes) 2/2 batches" in s for s in stages), stages

    here = zarr.open_group(str(workspace / "datasets" / "here"), mode="r")
    children = zarr.open_group(str(workspace / "datasets" / "children"), mode="r")
    keys = ("toa_ns", "aoa_deg", "path_gain_db")
    found = [k for k in keys if f"scenes/gen/paths/{k}" in here]
    assert "toa_ns" in found, list(here["scenes/gen/paths"].array_keys())
    for key in found:
        a, b = here[f"scenes/gen/paths/{key}"][...], children[f"scenes/gen/paths/{key}"][...]
        assert np.isfinite(a).mean() > 0.5
        assert np.array_equal(a, b, equal_nan=True), key
    assert np.array_equal(here["samples/rss_dbm"][...], children["samples/rss_dbm"][...], equal_nan=True)
