"""Job quotas (issue 20): at most N jobs at once and M per owner, a queue with positions and a
limit, cancelling queued jobs; and the audit log the registry writes."""

from __future__ import annotations

import os
import threading
import time

import pytest

from rflocal_core import settings
from rflocal_core.audit import read_audit
from rflocal_core.errors import InvalidInputError, JobLimitError
from rflocal_core.jobs import JobRegistry, ordinal, queue_text


def _gated(gate: threading.Event, ran: list[str], name: str):
    """A quick job that holds its slot until ``gate`` is set."""
    def work(ctx):
        ran.append(name)
        while not gate.wait(0.01):
            ctx.check_cancelled()
        return name
    return work


def _until(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.time() + timeout_s
    while not predicate() and time.time() < deadline:
        time.sleep(0.01)
    return predicate()


def test_ordinals_and_queue_text():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
    assert queue_text(1) == "queued, next in line" and queue_text(2) == "queued, 2nd in line"


def test_n_plus_one_jobs_at_once_the_last_waits_then_runs(workspace):
    n = 3
    registry = JobRegistry(max_running=n, max_queued=5)
    gate, ran = threading.Event(), []
    jobs = [registry.submit("test", f"quick-{i}", _gated(gate, ran, f"quick-{i}")) for i in range(n + 1)]
    assert _until(lambda: len(ran) == n)
    time.sleep(0.1)  # the last one must not start however long we wait
    assert [j.state for j in jobs] == ["running"] * n + ["queued"]
    assert ran == [f"quick-{i}" for i in range(n)]
    snap = jobs[-1].snapshot()
    assert snap["position"] == 1 and snap["stage"] == "queued, next in line" and snap["elapsed_s"] is None
    assert jobs[0].snapshot()["position"] is None
    gate.set()
    assert all(j.wait(5) for j in jobs)
    assert [j.state for j in jobs] == ["done"] * (n + 1) and ran[-1] == f"quick-{n}"
    starts = read_audit(action="start")
    assert [e["details"]["state"] for e in starts] == ["running"] * n + ["queued"]
    assert starts[-1]["details"]["position"] == 1 and starts[-1]["actor"] == "local"


def test_n_plus_one_jobs_at_once_the_last_is_refused_when_nothing_may_queue(workspace):
    registry = JobRegistry(max_running=2, max_queued=0)
    gate, ran = threading.Event(), []
    jobs = [registry.submit("test", f"quick-{i}", _gated(gate, ran, f"quick-{i}")) for i in range(2)]
    with pytest.raises(JobLimitError, match=r"job 'quick-2': not started: 2 jobs running, the limit "
                                            r"\(RFLOCAL_MAX_JOBS=2\), and 0 jobs already waiting.*RFLOCAL_MAX_QUEUED_JOBS=0"):
        registry.submit("test", "quick-2", _gated(gate, ran, "quick-2"), owner="ana")
    assert len(registry.list()) == 2  # the refused job is not listed
    gate.set()
    assert all(j.wait(5) for j in jobs) and sorted(ran) == ["quick-0", "quick-1"]
    refused = read_audit(action="refuse")
    assert len(refused) == 1 and refused[0]["actor"] == "ana" and refused[0]["details"]["label"] == "quick-2"


def test_queue_positions_and_the_queue_limit(workspace):
    registry = JobRegistry(max_running=1, max_queued=2)
    gate, ran = threading.Event(), []
    first = registry.submit("test", "a", _gated(gate, ran, "a"))
    second = registry.submit("test", "b", _gated(gate, ran, "b"))
    third = registry.submit("test", "c", _gated(gate, ran, "c"))
    assert (second.position(), third.position()) == (1, 2)
    assert third.snapshot()["stage"] == "queued, 2nd in line"
    with pytest.raises(JobLimitError, match=r"2 jobs already waiting"):
        registry.submit("test", "d", _gated(gate, ran, "d"))
    gate.set()
    assert all(j.wait(5) for j in (first, second, third)) and ran == ["a", "b", "c"]


def test_the_per_owner_limit_queues_one_owner_and_lets_others_pass(workspace):
    registry = JobRegistry(max_running=3, max_per_owner=1, max_queued=5)
    gate, ran = threading.Event(), []
    ana1 = registry.submit("test", "ana-1", _gated(gate, ran, "ana-1"), owner="ana")
    ana2 = registry.submit("test", "ana-2", _gated(gate, ran, "ana-2"), owner="ana")
    bo1 = registry.submit("test", "bo-1", _gated(gate, ran, "bo-1"), owner="bo")
    assert _until(lambda: len(ran) == 2)
    assert (ana1.state, ana2.state, bo1.state) == ("running", "queued", "running")
    assert ana2.snapshot()["owner"] == "ana" and ana2.position() == 1
    gate.set()
    assert all(j.wait(5) for j in (ana1, ana2, bo1)) and ana2.state == "done"


def test_refusal_for_the_per_owner_limit_names_it(workspace):
    registry = JobRegistry(max_running=4, max_per_owner=1, max_queued=0)
    gate, ran = threading.Event(), []
    job = registry.submit("test", "ana-1", _gated(gate, ran, "ana-1"), owner="ana")
    with pytest.raises(JobLimitError, match=r"ana already runs 1 job, the limit per user \(RFLOCAL_MAX_JOBS_PER_OWNER=1\)"):
        registry.submit("test", "ana-2", _gated(gate, ran, "ana-2"), owner="ana")
    gate.set()
    assert job.wait(5)


def test_a_queued_job_can_be_cancelled_and_never_runs(workspace):
    registry = JobRegistry(max_running=1, max_queued=5)
    gate, ran = threading.Event(), []
    first = registry.submit("test", "a", _gated(gate, ran, "a"))
    second = registry.submit("test", "b", _gated(gate, ran, "b"))
    third = registry.submit("test", "c", _gated(gate, ran, "c"))
    second.cancel(actor="bo")
    assert second.state == "cancelled" and second.wait(0) and second.snapshot()["position"] is None
    assert third.position() == 1  # moved up
    gate.set()
    assert first.wait(5) and third.wait(5)
    assert ran == ["a", "c"] and third.state == "done"
    cancels = read_audit(action="cancel")
    assert [(e["actor"], e["target"], e["details"]["state"]) for e in cancels] == [("bo", f"job:{second.id}", "queued")]
    second.cancel()  # already ended: nothing more is recorded
    assert len(read_audit(action="cancel")) == 1


def test_quotas_come_from_settings_and_their_environment(workspace, monkeypatch):
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "1")
    monkeypatch.delenv(settings.MAX_JOBS_PER_OWNER_ENV, raising=False)
    monkeypatch.setenv(settings.MAX_QUEUED_JOBS_ENV, "0")
    assert JobRegistry().limits() == (1, 1, 0)
    registry = JobRegistry()
    gate, ran = threading.Event(), []
    job = registry.submit("test", "a", _gated(gate, ran, "a"))
    with pytest.raises(JobLimitError, match="RFLOCAL_MAX_JOBS=1"):
        registry.submit("test", "b", _gated(gate, ran, "b"))
    gate.set()
    assert job.wait(5)
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "two")
    with pytest.raises(InvalidInputError, match=r"RFLOCAL_MAX_JOBS: expected a whole number >= 1, got 'two'"):
        settings.max_running_jobs()
    monkeypatch.delenv(settings.MAX_JOBS_ENV)
    monkeypatch.delenv(settings.MAX_QUEUED_JOBS_ENV)
    assert settings.max_running_jobs() == (os.cpu_count() or 1)
    assert settings.max_jobs_per_owner() == settings.max_running_jobs()
    assert settings.max_queued_jobs() == settings.max_queued_jobs_default


def test_the_generation_panel_shows_a_queued_job_with_its_place_and_cancels_it(workspace, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from rflocal_core.jobs import REGISTRY

    monkeypatch.setenv(settings.MAX_JOBS_ENV, "1")
    monkeypatch.setenv(settings.MAX_QUEUED_JOBS_ENV, "5")
    gate, ran = threading.Event(), []
    first = REGISTRY.submit("generate", "holds-the-slot", _gated(gate, ran, "first"), owner="ana")
    second = REGISTRY.submit("generate", "waits-its-turn", _gated(gate, ran, "second"))
    try:
        assert second.state == "queued"
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
        at.run()
        at.switch_page("pages/views/data_generation.py")
        at.run()
        assert not at.exception
        texts = [p.proto.text for p in at.get("progress")]
        assert f"**waits-its-turn** — {second.snapshot()['stage']}" in texts
        assert second.snapshot()["stage"].startswith("queued, ")
        assert any(t.startswith("**holds-the-slot** [ana] — ") for t in texts)  # another user's job names its owner
        at.button(key=f"cancel-{second.id}").click().run()
        assert second.state == "cancelled" and second.wait(0) and "second" not in ran
        assert read_audit(action="cancel")[-1]["target"] == f"job:{second.id}"
    finally:  # cancelled, not released: a "generate" job that ends done must carry a generation's result
        first.cancel()
        second.cancel()
        assert first.wait(10) and first.state == "cancelled"


def test_a_generation_asking_for_more_samples_than_the_cap_is_refused_naming_it(workspace, monkeypatch):
    from rflocal_core.dataset import GenerationConfig, generate_dataset

    monkeypatch.setenv(settings.MAX_DATASET_SAMPLES_ENV, "100")
    at_cap = GenerationConfig(name="fits", scenes=("a", "b"), samples_per_scene=50)
    assert at_cap.requested_samples == 100
    at_cap.check_size()  # exactly the cap is allowed
    config = GenerationConfig(name="toobig", scenes=("a", "b"), samples_per_scene=60)
    with pytest.raises(InvalidInputError, match=r"samples_per_scene: 60 samples per scene x 2 scene\(s\) = 120 samples, "
                                                r"more than the 100 samples one job may request \(the cap "
                                                r"RFLOCAL_MAX_DATASET_SAMPLES=100\)"):
        generate_dataset(config)  # refused before the scenes are even looked up
    assert not (workspace / "datasets").exists() or not any((workspace / "datasets").iterdir())
    monkeypatch.delenv(settings.MAX_DATASET_SAMPLES_ENV)
    assert settings.max_dataset_samples() == settings.max_dataset_samples_default
    GenerationConfig(name="big", scenes=("a",), samples_per_scene=1_000_000).check_size()  # the default cap


def _scene_workspace(demo_scene, workspace):
    """A workspace of its own holding a copy of the demo scene (the shared one is read-only, and the
    registry writes the audit log into the workspace)."""
    import shutil

    shutil.copytree(demo_scene["_workspace"] / "scenes", workspace / "scenes")
    return workspace


def test_data_generate_on_the_command_line_is_refused_over_the_cap(workspace, run_cli):
    proc = run_cli(["data", "generate", "--scene", "a", "--scene", "b", "--name", "toobig", "--samples", "600"],
                   workspace, env={settings.MAX_DATASET_SAMPLES_ENV: "1000"})
    assert proc.returncode == 2
    assert "error: samples_per_scene: 600 samples per scene x 2 scene(s) = 1,200 samples, more than the 1,000" in proc.stderr


def test_the_generate_button_refuses_a_request_over_the_cap_on_the_page(demo_scene, workspace, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from rflocal_core.jobs import REGISTRY

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(_scene_workspace(demo_scene, workspace)))
    monkeypatch.setenv(settings.MAX_DATASET_SAMPLES_ENV, "500")
    before = len(REGISTRY.list(kind="generate"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/views/data_generation.py")
    at.run()
    at.number_input(key="dg_samples").set_value(501)
    at.button(key="dg_start").click().run()
    assert not at.exception
    expected = ("samples_per_scene: 501 samples per scene x 1 scene(s) = 501 samples, more than the 500 samples one "
                "job may request (the cap RFLOCAL_MAX_DATASET_SAMPLES=500); ask for fewer samples per scene or fewer scenes")
    assert [e.value for e in at.error] == [expected]
    assert len(REGISTRY.list(kind="generate")) == before  # no job was started


def test_the_generate_button_queues_or_is_refused_when_the_slots_are_taken(demo_scene, workspace, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from rflocal_core.jobs import REGISTRY

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(_scene_workspace(demo_scene, workspace)))
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "1")
    monkeypatch.setenv(settings.MAX_QUEUED_JOBS_ENV, "0")
    gate, ran = threading.Event(), []
    holder = REGISTRY.submit("test", "holds-the-slot", _gated(gate, ran, "holder"))
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
        at.run()
        at.switch_page("pages/views/data_generation.py")
        at.run()
        at.text_input(key="dg_name").set_value("quota-refused")
        at.button(key="dg_start").click().run()
        assert not at.exception and not at.success
        assert len(at.error) == 1 and at.error[0].value.startswith("job 'quota-refused': not started: ")
        assert "RFLOCAL_MAX_QUEUED_JOBS=0" in at.error[0].value
        assert not [j for j in REGISTRY.list(kind="generate") if j.label == "quota-refused"]

        monkeypatch.setenv(settings.MAX_QUEUED_JOBS_ENV, "5")
        at.text_input(key="dg_name").set_value("quota-queued")
        at.button(key="dg_start").click().run()
        assert not at.exception and not at.error
        job = next(j for j in REGISTRY.list(kind="generate") if j.label == "quota-queued")
        assert job.state == "queued"
        assert at.success[0].value == f"Queued **quota-queued**: {job.snapshot()['stage']}."
        job.cancel()  # before it ever runs: nothing is ray-traced
        assert job.state == "cancelled" and not (workspace / "datasets" / ".partial-quota-queued").exists()
        assert [e["action"] for e in read_audit() if "quota" in e["details"].get("label", "")] == [
            "refuse", "start", "cancel"]
    finally:
        holder.cancel()
        assert holder.wait(10)


def test_waiting_jobs_still_start_when_a_quota_variable_turns_unreadable(workspace, monkeypatch):
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "1")
    registry = JobRegistry(max_queued=5)
    gate, ran = threading.Event(), []
    first = registry.submit("test", "a", _gated(gate, ran, "a"))
    second = registry.submit("test", "b", _gated(gate, ran, "b"))
    assert second.state == "queued"
    monkeypatch.setenv(settings.MAX_JOBS_ENV, "many")
    with pytest.raises(InvalidInputError, match="RFLOCAL_MAX_JOBS"):
        registry.submit("test", "c", _gated(gate, ran, "c"))
    gate.set()
    assert first.wait(5) and second.wait(5) and ran == ["a", "b"]
