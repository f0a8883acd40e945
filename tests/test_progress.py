"""Time left (issue 14, item 2): the estimator on progress sequences shaped like the real jobs.

The sequences are timed by hand (an explicit clock), so every estimate can be checked
against the true time left. The cases are the ones reported: data generation said "about
1099 s left" 27 s into a job that ended at 77 s, "106 s left" at 6/6 sites one second before
the stage ended, and training said "222 s left" under a 1-minute budget.
"""

from __future__ import annotations

import threading
import time

import pytest

from rflocal_core.jobs import JobRegistry
from rflocal_core.progress import (
    EtaEstimator,
    JobCancelled,
    Step,
    as_progress,
    eta_text,
    sub_progress,
    takes_step,
)


def _generation(t0: float, first_site_s: float, site_s: float, batch_s: float, *, scene: str = "city",
                part: int | None = None, parts: int | None = None) -> tuple[list[tuple], float]:
    """Updates of one scene as ``generate_dataset`` makes them: (time, stage text, Step), and its end time."""
    def step(key: str, done: int | None = None, total: int | None = None) -> Step:
        return Step(key, done, total, part=part, parts=parts)

    ev, t = [(t0, f"{scene}: radio maps (Sionna RT)", step("radio maps", 0, 6))], t0
    for k in range(1, 7):
        t += first_site_s if k == 1 else site_s
        ev.append((t, f"{scene}: radio maps (Sionna RT) {k}/6 sites", step("radio maps", k, 6)))
    ev.append((t + 1.0, f"{scene}: rasters", step("rasters")))
    t += 3.0
    ev.append((t, f"{scene}: sampling positions", step("sampling positions")))
    t += 1.0
    for b in range(8):
        ev.append((t, f"{scene}: exact paths (Sionna PathSolver) {(b + 1) * 100}/800", step("exact paths", b, 8)))
        t += batch_s + (2.0 if b == 0 else 0.0)  # the first batch loads the scene
    ev.append((t, f"{scene}: synthesizing reports", step("synthesizing reports")))
    return ev, t + 1.0


def _check(events: list[tuple], end_s: float, *, every_s: float = 0.5) -> list[tuple[float, object]]:
    """Feed the updates; at every instant, compare the estimate with the true time left of its scope."""
    est = EtaEstimator()
    seen = []
    stage_ends = [e[0] for e in events[1:]] + [end_s]
    i, t = 0, events[0][0]
    while t < end_s:
        while i < len(events) and events[i][0] <= t:
            est.update(events[i][1], events[i][2], events[i][0])
            i += 1
        eta = est.estimate(t)
        if eta is not None:
            key = events[i - 1][2].key if events[i - 1][2] else events[i - 1][1]
            j = i
            while j < len(events) and (events[j][2].key if events[j][2] else events[j][1]) == key:
                j += 1
            truth = (end_s if eta.scope == "job" else stage_ends[j - 1]) - t
            # sane: never more than double the truth (plus rounding), never less than half of it
            assert eta.high_s <= 2 * truth + 5, (t, eta, truth)
            assert eta.bound_only or eta.low_s >= 0.5 * truth - 5, (t, eta, truth)
            seen.append((t, eta))
        t += every_s
    return seen


@pytest.mark.parametrize(("site_s", "batch_s"), [(2.0, 3.0), (8.0, 6.0), (15.0, 1.0)], ids=["fast", "slow", "mixed"])
def test_generation_estimates_each_stage_from_its_own_rate(site_s, batch_s):
    events, end = _generation(0.0, 27.0, site_s, batch_s)
    seen = _check(events, end)
    # 27 s in, one site of six done (it carried the scene load): nothing is claimed yet
    est = EtaEstimator()
    for t, stage, step in events[:2]:
        est.update(stage, step, t)
    assert est.estimate(27.5) is None
    # a single scene: what follows the paths is untimed, so estimates are per stage
    assert seen and {eta.scope for _, eta in seen} == {"stage"}
    assert all(eta.text.endswith("left in this stage") for _, eta in seen)


def test_at_the_end_of_a_stage_nothing_is_claimed_for_an_untimed_rest():
    events, end = _generation(0.0, 27.0, 5.0, 3.0)
    est = EtaEstimator()
    for t, stage, step in events[:7]:  # up to "6/6 sites"
        est.update(stage, step, t)
    t_last = events[6][0]
    assert est.estimate(t_last + 0.5) is None
    # with three sites still to go it is the stage's rate: 3 x 5 s
    est = EtaEstimator()
    for t, stage, step in events[:4]:
        est.update(stage, step, t)
    eta = est.estimate(events[3][0])
    assert eta is not None and eta.scope == "stage" and eta.low_s <= 15.0 <= eta.high_s


def test_later_scenes_are_timed_by_the_first_and_give_the_whole_job():
    first, t = _generation(0.0, 27.0, 5.0, 3.0, scene="a", part=0, parts=3)
    second, t = _generation(t, 20.0, 6.0, 3.5, scene="b", part=1, parts=3)
    third, end = _generation(t, 22.0, 5.5, 3.2, scene="c", part=2, parts=3)
    events = first + second + third
    seen = _check(events, end)
    jobs = [(t, eta) for t, eta in seen if eta.scope == "job"]
    assert jobs and min(t for t, _ in jobs) >= second[0][0]  # only once a scene was timed
    # at 6/6 sites of the second scene, the job's end is known from the first scene
    est = EtaEstimator()
    stop = len(first) + 7
    for t, stage, step in events[:stop]:
        est.update(stage, step, t)
    eta = est.estimate(events[stop - 1][0] + 0.5)
    assert eta is not None and eta.scope == "job"
    truth = end - (events[stop - 1][0] + 0.5)
    assert 0.5 * truth <= eta.high_s and eta.low_s <= 1.5 * truth


def _training(t0: float, epochs: int, epoch_s: float, budget_s: float | None) -> tuple[list[tuple], float]:
    """Updates as ``fit_network`` makes them: every 0.25 s inside an epoch, once after validation."""
    ev, t = [(t0, "loading data", None)], t0 + 2.0
    start = t
    for e in range(epochs):
        for b in range(1, int(epoch_s / 0.25)):
            now = t + 0.25 * b
            limit = None if budget_s is None else budget_s - (now - start)
            if limit is not None and limit < 0:
                return ev, now + 0.3  # the epoch that runs out is cut short and validated
            ev.append((now, f"epoch {e + 1}/{epochs}",
                       Step("epochs", e + 0.25 * b / epoch_s, epochs, limit_s=limit, last=True)))
        t += epoch_s
        limit = None if budget_s is None else budget_s - (t - start)
        ev.append((t, f"epoch {e + 1}/{epochs} val median 12.00 m", Step("epochs", e + 1, epochs, limit_s=limit,
                                                                        last=True)))
    return ev, t + 0.1


def test_a_one_minute_budget_caps_the_time_left():
    events, end = _training(0.0, 60, 3.7, 60.0)  # 60 epochs would take 222 s
    seen = _check(events, end)
    start = 2.0
    assert seen[0][0] < 3.0  # the budget bounds it from the first epoch on
    for t, eta in seen:
        assert eta.scope == "job" and eta.high_s <= max(60.0 - (t - start), 0.0) + 0.25 + 1e-9, (t, eta)
    early = [eta for t, eta in seen if t < start + 3 * 3.7]
    assert early and all(eta.bound_only and eta.text.startswith("at most") for eta in early)
    assert all(not eta.bound_only for t, eta in seen if t > start + 4 * 3.7)


def test_training_without_a_budget_is_epochs_left_times_epoch_time():
    events, end = _training(0.0, 20, 1.5, None)
    seen = _check(events, end)
    assert seen and all(eta.scope == "job" and not eta.bound_only for _, eta in seen)
    t, eta = seen[0]
    assert t >= 2.0 + 3 * 1.5  # three epochs timed (the first one is left out)


def test_ablation_variants_are_parts_of_the_study():
    events, t = [], 0.0
    for k, epoch_s in enumerate((1.0, 1.2, 0.9, 1.1)):
        part, _ = _training(t, 8, epoch_s, None)
        events += [(ts, f"v{k}: {s}", Step(s, part=k, parts=4) if st is None else
                    Step(st.key, st.done, st.total, st.limit_s, st.last, part=k, parts=4)) for ts, s, st in part]
        t = part[-1][0] + 0.5  # evaluation on the test split
    seen = _check(events, t)
    jobs = [ts for ts, eta in seen if eta.scope == "job"]
    assert jobs and all(ts > events[0][0] + 8 for ts in jobs)


@pytest.mark.parametrize(("low", "high", "kw", "text"), [
    (23, 27, {}, "about 20–30 s left"),
    (25, 25, {}, "about 25 s left"),
    (150, 170, {}, "about 2–3 min left"),
    (3, 8, {}, "a few seconds left"),
    (4, 12, {}, "under 15 s left"),
    (40, 52, {"scope": "stage"}, "about 40–55 s left in this stage"),
    (0, 44, {"bound_only": True}, "at most 45 s left"),
    (0, 4, {"bound_only": True}, "a few seconds left"),
    (0, 600, {"bound_only": True, "scope": "stage"}, "at most 10 min left in this stage"),
    (7000, 9000, {}, "about 1.5–2.5 h left"),
])
def test_eta_text(low, high, kw, text):
    assert eta_text(low, high, **kw) == text


def test_plain_and_step_callbacks_both_work():
    seen = []
    plain = as_progress(lambda stage, fraction: seen.append((stage, fraction)))
    plain("maps", 0.5, step=Step("maps", 1, 2))
    assert seen == [("maps", 0.5)]
    rich_calls = []

    def rich(stage, fraction, *, step=None):
        rich_calls.append(step)

    assert takes_step(rich) and not takes_step(lambda s, f: None) and as_progress(rich) is rich
    sub = sub_progress(as_progress(rich), prefix="a: ", span=(0.5, 1.0), part=1, parts=2)
    sub("maps", 0.5, step=Step("maps", 1, 2))
    sub("rasters", 1.0)
    assert rich_calls == [Step("maps", 1, 2, part=1, parts=2), Step("rasters", part=1, parts=2)]
    flat = sub_progress(as_progress(rich), prefix="x: ", span=(0.0, 0.5))
    flat("epoch 1/2", 0.5, step=Step("epochs", 0.5, 2, last=True))
    assert rich_calls[-1] == Step("x: epochs", 0.5, 2, last=False)
    as_progress(None)("anything", 0.1, step=None)


def test_a_job_shows_the_range_once_its_stage_is_timed():
    registry = JobRegistry()
    gate = threading.Event()

    def work(ctx):
        ctx.progress("loading", 0.0)
        for k in range(13):
            ctx.progress(f"item {k}/20", k / 20, step=Step("items", k, 20))
            time.sleep(0.3)
        gate.wait(10)
        return "ok"

    job = registry.submit("test", "timed", work)
    snap = job.snapshot()
    assert snap["eta"] is None and snap["eta_text"] == ""
    deadline = time.time() + 10
    while not gate.is_set() and time.time() < deadline:
        snap = job.snapshot()
        if snap["stage"].startswith("item 12"):
            break
        time.sleep(0.05)
    eta = snap["eta"]
    assert eta is not None and eta.scope == "stage", snap
    assert 0.5 * 8 * 0.3 <= eta.high_s and eta.low_s <= 2 * 8 * 0.3
    assert snap["eta_text"] == eta.text and snap["eta_s"] == eta.high_s
    gate.set()
    assert job.wait(10) and job.snapshot()["eta"] is None


def test_job_cancelled_is_still_importable_from_jobs():
    from rflocal_core import jobs

    assert jobs.JobCancelled is JobCancelled


@pytest.mark.raytrace
def test_a_real_two_scene_generation_reports_its_stages_and_sane_estimates(workspace):
    """Sionna RT on two small cities: each scene is a part, maps count sites, paths count batches,
    and every estimate made while it ran is checked against when the stage and the job really ended."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    for name, seed in (("p0", 3), ("p1", 4)):
        build_scene(SceneConfig(name=name, procedural=ProceduralConfig(size_m=160, seed=seed),
                                sites=SiteConfig(count=3)))
    est, calls = EtaEstimator(), []

    def watch(stage, fraction, *, step=None):
        now = time.monotonic()
        est.update(stage, step, now)
        calls.append((now, stage, step, est.estimate(now)))

    generate_dataset(GenerationConfig(name="parts", scenes=("p0", "p1"), samples_per_scene=250, cell_size_m=4.0,
                                      map_samples_per_tx=200_000, paths_samples_per_src=5_000, min_sites=1),
                     progress=watch)
    end = time.monotonic()
    maps = [(s.part, s.done, s.total) for _, _, s, _ in calls if s is not None and s.key == "radio maps"]
    assert maps == [(p, k, 3) for p in (0, 1) for k in range(4)]
    paths = [(s.part, s.done, s.total) for _, _, s, _ in calls if s is not None and s.key == "exact paths"]
    assert [d for p, d, _ in paths if p == 0] == list(range(3)) and {t for _, _, t in paths} == {3}
    assert all(s.parts == 2 for _, _, s, _ in calls if s is not None)
    assert calls[-1][1] == "done" and calls[-1][2] is None
    keys = [s.key if s is not None else stage for _, stage, s, _ in calls]
    for i, (t, _, _, eta) in enumerate(calls):
        if eta is None:
            continue
        j = next((j for j in range(i + 1, len(calls)) if keys[j] != keys[i]), len(calls) - 1)
        truth = (end if eta.scope == "job" else calls[j][0]) - t
        assert eta.high_s <= 3 * truth + 5 and (eta.bound_only or eta.low_s >= truth / 3 - 5), (calls[i], truth)
