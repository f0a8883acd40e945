"""The process-wide job registry: background work with progress, ETA, cancel and failure."""

from __future__ import annotations

import threading
import time

import pytest

from rflocal_core.jobs import JobRegistry


def test_job_reports_progress_and_result(workspace):
    registry = JobRegistry()
    gate = threading.Event()

    def work(ctx):
        ctx.progress("first half", 0.5)
        gate.wait(5)
        ctx.progress("second half", 0.9)
        return {"answer": 42}

    job = registry.submit("test", "demo", work)
    deadline = time.time() + 5
    while job.snapshot()["stage"] != "first half" and time.time() < deadline:
        time.sleep(0.01)
    snap = job.snapshot()
    assert snap["state"] == "running" and snap["fraction"] == 0.5
    # one update of a stage without counted work: the time left is not known, so none is claimed
    assert snap["eta"] is None and snap["eta_s"] is None and snap["eta_text"] == ""
    gate.set()
    assert job.wait(5)
    snap = job.snapshot()
    assert snap["state"] == "done" and snap["result"] == {"answer": 42} and snap["fraction"] == 1.0
    assert registry.get(job.id) is job and registry.list(kind="test") == [job]


def test_cancel_stops_the_worker_at_its_next_check(workspace):
    registry = JobRegistry()
    started = threading.Event()
    steps = []

    def work(ctx):
        started.set()
        for i in range(1000):
            steps.append(i)
            ctx.progress("looping", i / 1000)
            time.sleep(0.01)
        return "finished"

    job = registry.submit("test", "long", work)
    started.wait(5)
    job.cancel()
    assert job.wait(5)
    assert job.snapshot()["state"] == "cancelled"
    assert len(steps) < 1000


def test_a_failing_worker_is_marked_failed_with_its_error(workspace):
    registry = JobRegistry()

    def work(ctx):
        ctx.progress("about to fail", 0.1)
        msg = "scene: no scene named 'nope'"
        raise ValueError(msg)

    job = registry.submit("test", "bad", work)
    assert job.wait(5)
    snap = job.snapshot()
    assert snap["state"] == "failed"
    assert snap["error"] == "ValueError: scene: no scene named 'nope'"
    assert any("Traceback" in line for line in snap["log"])


def test_unknown_job_id_is_a_clear_error():
    with pytest.raises(KeyError, match="no job 'x'"):
        JobRegistry().get("x")


@pytest.mark.raytrace
def test_cancelled_generation_leaves_a_resumable_partial_dataset(tmp_path, monkeypatch):
    from rflocal_core.dataset import GenerationConfig, generate_dataset, list_datasets
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path))
    build_scene(SceneConfig(name="c", procedural=ProceduralConfig(size_m=160, seed=3), sites=SiteConfig(count=3)))
    config = GenerationConfig(name="cancelme", scenes=("c",), samples_per_scene=30, cell_size_m=4.0,
                              map_samples_per_tx=200_000, timing=False, min_sites=1)
    registry = JobRegistry()

    def work(ctx):
        def progress(stage, fraction):
            ctx.progress(stage, fraction)
            if "sampling" in stage:
                job.cancel()  # as a user clicking Cancel once the maps are done
                ctx.check_cancelled()
        return generate_dataset(config, progress=progress, owner="ana")

    job = registry.submit("generate", "cancelme", work, owner="ana")
    assert job.wait(120)
    assert job.snapshot()["state"] == "cancelled"
    rows = {r["name"]: r for r in list_datasets()}
    assert rows["cancelme"]["state"] == "partial (resumable)"
    assert not (tmp_path / "datasets" / "cancelme").exists()
    resumed = generate_dataset(config)
    assert resumed["resumed"] == ["c: radio maps"]
    assert (tmp_path / "datasets" / "cancelme" / "zarr.json").is_file()
    assert {r["name"]: r["owner"] for r in list_datasets()} == {"cancelme": "ana"}  # resumed: the first owner stays


def test_forget_finished_drops_finished_jobs_and_keeps_running_ones(workspace) -> None:
    import threading

    from rflocal_core.jobs import JobRegistry

    registry = JobRegistry(max_running=2, max_per_owner=2, max_queued=2)
    release = threading.Event()
    done = registry.submit("t", "quick", lambda ctx: 1)
    assert done.wait(10)
    running = registry.submit("t", "slow", lambda ctx: release.wait(10))
    assert registry.forget_finished() == 1
    assert [j.label for j in registry.list()] == ["slow"]
    release.set()
    assert running.wait(10) and registry.forget_finished() == 1 and registry.list() == []
