"""Generation units as Ray tasks (issue 16): same maps as the child processes, retries, cancel, bad addresses.

One local Ray cluster of 2 CPUs serves the module (starting one costs seconds); it is stopped after
the last test, so no Ray process outlives the tests.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rflocal_core import cluster
from rflocal_core.cluster import ExecutorConfig
from rflocal_core.errors import ClusterTaskError, ClusterUnavailableError, InvalidInputError

pytestmark = pytest.mark.raytrace

RAY2 = ExecutorConfig(executor="ray", ray_cpus=2)


@pytest.fixture(scope="module")
def ray_cluster(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, float]:
    """A local Ray cluster of 2 CPUs for the module, shut down afterwards."""
    monkeypatch_module.delenv(cluster.RAY_ADDRESS_ENV, raising=False)
    cluster.shutdown()
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests: send _sleep, _root
    try:
        yield cluster.connect(RAY2)
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def monkeypatch_module() -> pytest.MonkeyPatch:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_radio_maps_on_ray_match_the_child_processes_bit_for_bit(workspace, ray_cluster):
    """One Ray task per site (2 at a time) gives the map of one worker exactly (and so of 2 and 3 child
    processes: tests/test_raytrace.py holds those equal to one worker)."""
    from rflocal_core.raytrace import compute_radio_map
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="rep", procedural=ProceduralConfig(size_m=160, seed=5), sites=SiteConfig(count=3)))
    kwargs = {"cell_size_m": 4.0, "samples_per_tx": 300_000, "diffraction": True}
    one = compute_radio_map("rep", workers=1, **kwargs)
    seen = []
    ray = compute_radio_map("rep", executor=RAY2, on_site=lambda done, total: seen.append((done, total)), **kwargs)
    again = compute_radio_map("rep", executor=RAY2, **kwargs)  # workers keep the scene loaded: still the same
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert np.isfinite(ray.path_gain_db).mean() > 0.2
    for other in (one, again):
        assert np.array_equal(ray.path_gain_db, other.path_gain_db)
        assert np.array_equal(ray.x_m, other.x_m) and np.array_equal(ray.y_m, other.y_m)
    assert ray.site_ids == one.site_ids


def _root(x: float) -> float:
    return math.sqrt(x)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def test_a_process_joined_to_one_cluster_refuses_another(ray_cluster):
    with pytest.raises(InvalidInputError, match=r"ray_address: this process already runs its tasks on 'local', "
                                                 r"got '10.0.0.5:6379'; restart the workbench"):
        cluster.connect(ExecutorConfig(executor="ray", ray_address="10.0.0.5:6379"))


def test_a_failing_task_is_retried_then_fails_the_job_with_its_error(ray_cluster):
    with pytest.raises(ClusterTaskError, match=r"square root of -1 failed after 3 tries: ValueError: math domain"):
        cluster.run_tasks(_root, [(4.0,), (-1.0,)], config=RAY2, names=["square root of 4", "square root of -1"])
    assert cluster.run_tasks(_root, [(4.0,), (9.0,)], config=RAY2, names=["a", "b"]) == [2.0, 3.0]


def test_a_progress_callback_that_raises_cancels_the_pending_tasks(ray_cluster):
    """Cancel: the long tasks still running are cancelled, so both CPUs serve the next job at once."""
    seen = []

    def cancel(index: int, result: object) -> None:
        seen.append(index)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cluster.run_tasks(_sleep, [(0.0,), (3600.0,), (3600.0,)], config=RAY2, names=["a", "b", "c"],
                          on_done=cancel)
    assert seen == [0]
    import ray

    # Were the hour-long tasks still queued or running, they would hold both CPUs for an hour.
    follow = [ray.remote(_sleep).options(num_cpus=1).remote(0.0) for _ in range(2)]
    ready, _ = ray.wait(follow, num_returns=2, timeout=120)
    assert len(ready) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_address_is_refused_naming_it():
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ClusterUnavailableError, match=rf"ray_address: no Ray cluster answers at '{address}'"):
        cluster.probe(address, timeout_s=2.0)
    with pytest.raises(InvalidInputError, match=r"ray_address: expected HOST:PORT .*got 'nowhere'"):
        cluster.probe("nowhere")
    with pytest.raises(InvalidInputError, match=r"ray_address: applies with executor 'ray'"):
        ExecutorConfig(ray_address=address)
    with pytest.raises(InvalidInputError, match=r"executor: expected one of local, ray, got 'dask'"):
        ExecutorConfig(executor="dask")


def _same_delays(a: np.ndarray, b: np.ndarray) -> None:
    """Delays of two runs agree within the solver's repeatability: where both found a path, to 1e-3 ns
    (float32 of delays near 500 ns resolves 3e-5 ns); a marginal link (few rays) may be found by one
    run only (measured: 1 of 160 drone links)."""
    both = np.isfinite(a) & np.isfinite(b)
    assert np.isfinite(a).mean() > 0.5
    assert (np.isfinite(a) == np.isfinite(b)).mean() >= 0.97
    assert np.abs(a[both] - b[both]).max() < 1e-3


def _small_generation(name: str, **overrides):
    from rflocal_core.dataset import GenerationConfig

    return GenerationConfig(name=name, scenes=("gen",), samples_per_scene=150, cell_size_m=4.0,
                            map_samples_per_tx=100_000, paths_samples_per_src=10_000, min_sites=1, **overrides)


def test_a_generation_on_ray_equals_the_local_one_and_resumes_after_a_cancel(workspace, ray_cluster):
    """Maps bit for bit, exact paths within the solver's repeatability; a cancelled Ray run keeps its
    finished site maps and path batches in the partial store and the next run resumes after them."""
    import zarr

    from rflocal_core.dataset import generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="gen", procedural=ProceduralConfig(size_m=160, seed=3), sites=SiteConfig(count=3)))
    generate_dataset(_small_generation("here"))

    stages: list[str] = []

    def cancel_at(marker: str):
        def progress(stage: str, fraction: float) -> None:
            stages.append(stage)
            if marker in stage:
                raise KeyboardInterrupt
        return progress

    with pytest.raises(KeyboardInterrupt):  # after the first of 3 site maps
        generate_dataset(_small_generation("ray"), progress=cancel_at("1/3 sites"), executor=RAY2)
    kept = zarr.open_group(str(workspace / "datasets" / ".partial-ray"), mode="r")["scenes/gen/site_maps/done"]
    assert kept[...].tolist().count(True) == 1
    stages.clear()
    with pytest.raises(KeyboardInterrupt):  # after the first of 2 path batches
        generate_dataset(_small_generation("ray"), progress=cancel_at("on Ray) 1/"), executor=RAY2)
    assert [s for s in stages if s.endswith(" sites")] == ["gen: radio maps (Sionna RT) 2/3 sites",
                                                           "gen: radio maps (Sionna RT) 3/3 sites"]
    stages.clear()
    result = generate_dataset(_small_generation("ray"), executor=RAY2, progress=lambda s, f: stages.append(s))
    assert "gen: radio maps" in result["resumed"] and "gen: 1/2 path batches" in result["resumed"]
    assert "gen: synthesizing reports (on Ray)" in stages  # the scene's report synthesis is a Ray task too

    here = zarr.open_group(str(workspace / "datasets" / "here"), mode="r")
    ray = zarr.open_group(str(workspace / "datasets" / "ray"), mode="r")
    assert np.array_equal(here["scenes/gen/path_gain_db"][...], ray["scenes/gen/path_gain_db"][...])
    a, b = here["scenes/gen/paths/toa_ns"][...], ray["scenes/gen/paths/toa_ns"][...]
    _same_delays(a, b)
    assert np.array_equal(here["samples/pos_m"][...], ray["samples/pos_m"][...])
    assert np.array_equal(here["samples/rss_dbm"][...], ray["samples/rss_dbm"][...], equal_nan=True)


@pytest.fixture
def head_node(monkeypatch: pytest.MonkeyPatch):
    """A Ray head of 1 CPU started with ``ray start --head --block`` (a cluster to join); stopped by its pid."""
    cluster.shutdown()  # leave the module's local cluster: a process joins one cluster at a time
    port = _free_port()
    # The head takes this driver's token mode (Ray 2.60 turns tokens on in a process that started a local
    # cluster; a driver without RAY_AUTH_MODE has them off): a cluster the driver is allowed to join.
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--num-cpus", "1", "--port", str(port),
                             "--include-dashboard", "false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    try:
        for _ in range(120):
            try:
                cluster.probe(f"127.0.0.1:{port}", timeout_s=1.0)
                break
            except ClusterUnavailableError:
                time.sleep(0.5)
        monkeypatch.setenv(cluster.RAY_ADDRESS_ENV, f"127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        cluster.shutdown()
        os.killpg(head.pid, signal.SIGTERM)  # the head's own session: ray start, its GCS, raylet and workers
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:  # ray start --block takes 30 s to stop what it started
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def test_joining_a_running_cluster_through_ray_address_gives_the_same_maps(workspace, head_node):
    """$RAY_ADDRESS names a cluster of 1 CPU (this package shipped to its workers): the maps of here."""
    from rflocal_core.raytrace import compute_radio_map
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="rep", procedural=ProceduralConfig(size_m=160, seed=5), sites=SiteConfig(count=2)))
    kwargs = {"cell_size_m": 4.0, "samples_per_tx": 100_000, "diffraction": True}
    here = compute_radio_map("rep", workers=1, **kwargs)
    joined = compute_radio_map("rep", executor=ExecutorConfig(executor="ray"), **kwargs)
    import ray

    assert ray.cluster_resources()["CPU"] == 1.0  # the head started above, not a new local cluster
    assert np.array_equal(here.path_gain_db, joined.path_gain_db)


def test_data_generate_with_an_unreachable_ray_address_fails_naming_it(workspace, run_cli):
    """Exit status 2 within the probe's timeout, the address and how to start a cluster in the message."""
    address = f"127.0.0.1:{_free_port()}"
    proc = run_cli(["data", "generate", "--scene", "nowhere", "--name", "d", "--executor", "ray",
                    "--ray-address", address], workspace, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"ray_address: no Ray cluster answers at '{address}'" in proc.stderr
    assert "ray start --head --port" in proc.stderr


def test_ray_workers_write_their_own_chunks_to_a_file_url_as_the_driver_does_to_memory(workspace, ray_cluster,
                                                                                      tmp_path):
    """``out="file://..."``: every worker sees the store and writes its site map and path batch itself
    (the driver: the arrays, the ``done`` flags, the samples, the rename); ``out="memory://..."`` lives in
    the driver's process alone, so there the driver writes what the tasks return (as before). The same
    maps bit for bit, the same delays within the solver's repeatability, the same samples."""
    import fsspec
    import zarr

    from rflocal_core.dataset import generate_dataset
    from rflocal_core.dataset.location import open_group, worker_location
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="gen", procedural=ProceduralConfig(size_m=160, seed=3), sites=SiteConfig(count=3)))
    memory = generate_dataset(_small_generation("url"), executor=RAY2, out="memory://rflocal-test/ds")
    assert memory["path"] == "memory://rflocal-test/ds/url"
    assert fsspec.filesystem("memory").ls("/rflocal-test/ds", detail=False) == ["/rflocal-test/ds/url"]
    url = f"file://{tmp_path}/out"
    written = generate_dataset(_small_generation("url"), executor=RAY2, out=url)
    assert written["path"] == f"{url}/url" and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["url"]
    assert not (workspace / "datasets" / "url").exists()

    a, b = zarr.open_group(memory["path"], mode="r"), zarr.open_group(written["path"], mode="r")
    assert a.attrs["complete"] and b.attrs["complete"] and b["samples/rss_dbm"].shape[0] == 150
    assert np.array_equal(a["scenes/gen/path_gain_db"][...], b["scenes/gen/path_gain_db"][...])
    assert np.isfinite(b["scenes/gen/path_gain_db"][...]).mean() > 0.2
    _same_delays(a["scenes/gen/paths/toa_ns"][...], b["scenes/gen/paths/toa_ns"][...])
    assert b["scenes/gen/paths/done"][...].all()
    assert np.array_equal(a["samples/pos_m"][...], b["samples/pos_m"][...])
    # where a worker opens the store: the file URL of the group; none for the driver's memory
    group = open_group(f"{url}/url", mode="r")["scenes/gen/paths"]
    assert worker_location(group) == f"{url}/url/scenes/gen/paths"
    assert worker_location(zarr.open_group(memory["path"], mode="r")["scenes/gen"]) is None
    assert worker_location(zarr.open_group(str(tmp_path / "out" / "url"), mode="r")) == str(tmp_path / "out" / "url")


def test_a_url_whose_scheme_has_no_installed_implementation_names_the_package():
    from rflocal_core.dataset.location import store_location

    with pytest.raises(InvalidInputError, match=r"out: the scheme 's3' of 's3://bucket/x' needs the package s3fs"):
        store_location("d", "s3://bucket/x")
    with pytest.raises(InvalidInputError, match=r"out: no fsspec implementation knows the scheme 'nosuch'"):
        store_location("d", "nosuch://bucket/x")
    assert store_location("d", "file:///tmp/somewhere/").final == "file:///tmp/somewhere/d"


def test_a_drone_survey_on_ray_equals_the_local_one(workspace, ray_cluster):
    """Waypoint maps and one path task per waypoint: the same maps, delays within the solver's repeatability."""
    import zarr

    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="dr", procedural=ProceduralConfig(size_m=160, seed=3), sites=SiteConfig(count=3)))
    drone = {"scenes": ("dr",), "samples_per_scene": 40, "mode": "emitter", "survey": "drone",
             "drone_spacing_m": 80.0, "drone_points": 4, "cell_size_m": 4.0, "drone_map_samples_per_tx": 100_000,
             "paths_samples_per_src": 10_000, "min_sites": 1}
    generate_dataset(GenerationConfig(name="here", **drone))
    generate_dataset(GenerationConfig(name="ray", **drone), executor=RAY2)
    here = zarr.open_group(str(workspace / "datasets" / "here"), mode="r")
    ray = zarr.open_group(str(workspace / "datasets" / "ray"), mode="r")
    assert np.array_equal(here["scenes/dr/path_gain_db"][...], ray["scenes/dr/path_gain_db"][...])
    a, b = here["scenes/dr/paths/toa_ns"][...], ray["scenes/dr/paths/toa_ns"][...]
    _same_delays(a, b)


def test_a_region_the_driver_reads_differently_from_its_worker_fails_naming_the_store(tmp_path):
    """A worker's receipt (the SHA-256 of its map as it reads it back) is checked against the driver's view:
    a worker writing to a folder the driver does not see (no shared mount) fails the job, not a hole."""
    import zarr

    from rflocal_core.dataset.partial import check_site_map, site_map_store, write_site_map

    shared, elsewhere = (site_map_store(zarr.open_group(str(tmp_path / d), mode="w"), 2, (3, 4)) for d in "ab")
    gain, centres = np.arange(12.0).reshape(3, 4), np.zeros((3, 4, 3), np.float32)
    check_site_map(shared, 1, write_site_map(str(tmp_path / "a" / "site_maps"), 1, gain, centres))
    assert np.array_equal(shared["gain"][1], gain)
    receipt = write_site_map(str(tmp_path / "b" / "site_maps"), 0, gain, centres)  # the worker's own disk
    with pytest.raises(InvalidInputError, match=r"out: a Ray worker wrote the radio map of site 0 into '.*/a', but "
                                                r"this process reads other data there; .* every node sees"):
        check_site_map(shared, 0, receipt)
    check_site_map(elsewhere, 0, receipt)
