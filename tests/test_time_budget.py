"""A time budget ends the learning-rate schedule: a capped run warms up, decays and stops at the floor rate;
a resumed run continues its schedule; model selection skips the angle and range methods on data without them."""

from __future__ import annotations

import pytest

from rflocal_core.train import read_metrics, resume, train
from rflocal_core.train.auto import DatasetTraits, dataset_traits, plan, unfit_reason
from rflocal_core.train.engine import LR_FLOOR_FRACTION, TrainConfig, cosine_rate

pytestmark = pytest.mark.raytrace

LR = TrainConfig().lr


@pytest.fixture(scope="module")
def ws(tmp_path_factory, workspace_env, tiny_dataset):
    path = tmp_path_factory.mktemp("budget") / "workspace"
    path.mkdir()
    with workspace_env(path):
        tiny_dataset("bcity", "bds", samples=240)
        yield path


@pytest.fixture
def env(ws, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(ws))
    return ws


def _decays(rows: list[dict]) -> bool:
    """Whether the rate never rises again once it has peaked."""
    lrs = [r["lr"] for r in rows]
    top = lrs.index(max(lrs))
    return all(b <= a * (1 + 1e-9) for a, b in zip(lrs[top:], lrs[top + 1:], strict=False))


def _crash_at(epoch: int):
    def crash(stage: str, fraction: float) -> None:
        if stage.startswith(f"epoch {epoch}/"):
            raise RuntimeError("power cut")

    return crash


def test_the_cosine_schedule_follows_progress_with_a_bounded_warm_up():
    # a run planned for 100 000 steps whose budget ends after 400: progress is the time fraction
    rates, end = [], None
    for step in range(400):
        p = max(step / 100_000, (step + 1) / 400)
        rate, end = cosine_rate(LR, step=step, warmup_steps=2_000, progress=p, warmup_end=end)
        rates.append(rate)
    peak = rates.index(max(rates))
    assert rates[peak] == pytest.approx(LR) and peak == 39  # warm-up: 10% of the reachable steps, not 2000
    assert end == pytest.approx(0.1)
    assert all(b < a for a, b in zip(rates[peak:], rates[peak + 1:], strict=False))
    assert rates[-1] == pytest.approx(LR_FLOOR_FRACTION * LR)  # the floor at the deadline
    # without a budget the warm-up is its steps when they are under 10% of the plan, and the end is the floor
    assert cosine_rate(LR, step=0, warmup_steps=4, progress=0.0, warmup_end=None) == (LR / 4, None)
    rate, end = cosine_rate(LR, step=3, warmup_steps=4, progress=3 / 100, warmup_end=None)
    assert rate == pytest.approx(LR) and end == pytest.approx(0.03)
    assert cosine_rate(LR, step=99, warmup_steps=4, progress=1.0, warmup_end=0.03)[0] == pytest.approx(0.01 * LR)
    assert cosine_rate(LR, step=0, warmup_steps=0, progress=0.0, warmup_end=None) == (LR, 0.0)


def test_a_capped_run_ends_at_a_low_rate_not_at_its_peak(env):
    # 1000 epochs cannot run in 6 s: the schedule follows the budget (before: the rate stayed near its peak)
    fractions: list[float] = []
    result = train("bds", "setnet", train_config={"epochs": 1000, "max_minutes": 0.1, "batch_size": 64, "patience": 0,
                                                 "warmup_epochs": 0}, seed=1,
                   progress=lambda stage, fraction: fractions.append(fraction))
    rows = read_metrics(result.run_id)
    # the progress bar follows the budget too, not the 1000 epochs
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert result.stop_reason == "time limit" and 1 <= len(rows) < 1000
    assert rows[-1]["progress"] == 1.0
    # its last step started before the deadline (each takes a second or two on a busy machine)
    assert rows[-1]["lr"] < 0.15 * LR, [r["lr"] for r in rows]
    assert _decays(rows) and [r["progress"] for r in rows] == sorted(r["progress"] for r in rows)
    assert 1 <= result.best_epoch <= len(rows) and result.summary.median_m > 0


def test_an_uncapped_short_run_warms_up_briefly_and_ends_near_the_floor(env):
    result = train("bds", "setnet", train_config={"epochs": 4, "batch_size": 64, "warmup_epochs": 2}, seed=1)
    rows = read_metrics(result.run_id)
    assert [r["progress"] for r in rows] == [0.25, 0.5, 0.75, 1.0]
    # warm-up is cut to 10% of the 4 epochs (not 2 of them): epoch 1 ends at the peak (before: at half of it)
    assert rows[0]["lr"] > 0.9 * LR
    assert _decays(rows) and rows[-1]["lr"] < 0.05 * LR


def test_plateau_schedule_keeps_its_warm_up_in_epochs(env):
    result = train("bds", "setnet", train_config={"epochs": 3, "schedule": "plateau", "warmup_epochs": 2,
                                                 "batch_size": 64, "max_minutes": 5.0}, seed=1)
    rows = read_metrics(result.run_id)
    assert rows[0]["lr"] == pytest.approx(0.5 * LR) and rows[-1]["lr"] == pytest.approx(LR)


def test_a_resumed_run_continues_its_schedule(env):
    cfg = {"epochs": 4, "batch_size": 64}
    whole = read_metrics(train("bds", "setnet", train_config=cfg, seed=2).run_id)
    with pytest.raises(RuntimeError, match="power cut"):
        train("bds", "setnet", train_config=cfg, seed=2, progress=_crash_at(3), run_id="cut")
    resume("cut")
    parts = read_metrics("cut")
    assert [r["epoch"] for r in parts] == [1, 2, 3, 4]
    # the same steps under the same plan: the rate of every epoch is the uninterrupted run's
    assert [r["lr"] for r in parts] == pytest.approx([r["lr"] for r in whole], rel=1e-9)
    assert [r["progress"] for r in parts] == [r["progress"] for r in whole]


def test_a_capped_run_resumed_with_a_longer_budget_does_not_climb_back_up(env):
    # no early stop: the budget ends it; the first run's budget costs nothing (the crash ends it at epoch 2)
    cfg = {"epochs": 1000, "max_minutes": 0.15, "batch_size": 64, "warmup_epochs": 0, "patience": 0}
    with pytest.raises(RuntimeError, match="power cut"):
        train("bds", "setnet", train_config=cfg, seed=3, progress=_crash_at(2), run_id="cut-capped")
    before = read_metrics("cut-capped")
    out = resume("cut-capped", max_minutes=0.25)
    rows = read_metrics("cut-capped")
    assert out.stop_reason == "time limit" and len(rows) > len(before) == 1
    progress = [r["progress"] for r in rows]
    assert progress == sorted(progress) and progress[-1] == 1.0
    # the rest of the schedule is spread over the rest of the budget: the rate only falls, to a low one
    assert _decays(rows) and rows[-1]["lr"] < 0.15 * LR, [r["lr"] for r in rows]


def test_angle_and_range_methods_are_skipped_without_such_reports(env):
    rss_only = DatasetTraits(has_maps=False, positioned_nodes=True, fixed_slots=5, measurements=frozenset({"rss_dbm"}))
    assert "angle-of-arrival reports" in unfit_reason("aoa_triangulation", "d", rss_only)
    assert "time-of-arrival reports" in unfit_reason("toa_multilateration", "d", rss_only)
    assert "fall back to the weighted centroid" in unfit_reason("aoa_triangulation", "d", rss_only)
    for model in ("weighted_centroid", "knn", "setnet", "log_distance"):
        assert unfit_reason(model, "d", rss_only) is None, model
    # a simulated dataset reports all three: nothing is skipped for it
    assert dataset_traits("bds").measurements == {"rss_dbm", "toa_ns", "aoa_deg"}
    rows = {r.model: r for r in plan("bds", ("aoa_triangulation", "toa_multilateration"))}
    assert rows["aoa_triangulation"].status == rows["toa_multilateration"].status == "planned"
