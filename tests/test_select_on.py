"""``TrainConfig.select_on``: the validation figure that chooses the epoch a network run keeps (brief A27).

The median cannot see a tail: samples a prior gets far off that training fixes lie above it (README, Any city,
brief A25). The chooser is tested on hand-made validation errors where the median and the mean disagree, then in
the training loop itself: the run keeps the epoch the chooser picks from its own validation rows.
"""

from __future__ import annotations

import json
import math

import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.metrics import ErrorSummary, error_summary
from rflocal_core.train.engine import SELECT_ON, TrainConfig, _upgrade_state, choose_epoch, fit_network, selection_score
from tests.test_nets import _model, synthetic_inputs

#: Validation errors (m) of three epochs: epoch 1 has the best median but one sample 100 m off (a wrong mode);
#: epoch 2 is a little worse in the middle and has no tail.
EPOCH_ERRORS_M = ([3.0, 4.0, 5.0, 6.0, 9.0], [1.0, 2.0, 3.0, 4.0, 100.0], [2.0, 3.0, 4.0, 5.0, 8.0])


def test_median_and_tail_figures_choose_different_epochs():
    summaries = [error_summary(e) for e in EPOCH_ERRORS_M]
    chosen = {s: choose_epoch([selection_score(u, s) for u in summaries]) for s in SELECT_ON}
    assert chosen == {"median": 1, "mean": 2, "over_10m": 0, "p95": 2}  # over_10m: a tie keeps the earlier
    assert selection_score(summaries[1], "over_10m") == pytest.approx(0.2)
    assert TrainConfig().select_on == "median"  # the default keeps today's choice


def test_the_chooser_keeps_the_earlier_of_ties_and_skips_nan():
    assert choose_epoch([5.0, 5.0, 4.0, math.nan, 4.0]) == 2
    assert choose_epoch([math.nan, math.nan]) == -1
    assert math.isnan(selection_score(ErrorSummary(count=0, missing=3), "mean"))


def test_a_bad_select_on_names_the_field():
    with pytest.raises(InvalidInputError, match="select_on: expected one of median, mean, over_10m, p95, got 'last'"):
        TrainConfig(select_on="last")


def test_an_old_resume_state_carries_its_median_as_the_score():
    state = {"best_score": math.inf}
    _upgrade_state(state, {"best_median": 2.5, "progress": 0.3}, TrainConfig(), steps_per_epoch=4)
    assert state["best_score"] == 2.5 and "best_median" not in state


def _fit(path, select_on: str):
    path.mkdir()
    x, v = synthetic_inputs(48, seed=1), synthetic_inputs(40, seed=50, split="val")
    cfg = TrainConfig(epochs=8, batch_size=16, patience=0, select_on=select_on)
    out = fit_network(path, _model("setnet", x), cfg, x, v, seed=0, progress=lambda stage, fraction: None)
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    summaries = [out.initial, *(ErrorSummary.from_json(r["val"]) for r in rows)]  # epoch 0 first
    return out, summaries


def test_the_training_loop_keeps_the_epoch_of_its_select_on(tmp_path):
    """Seeded so that the median and the mean of the same run's val rows choose different epochs."""
    out, summaries = _fit(tmp_path / "mean", "mean")
    by = {s: choose_epoch([selection_score(u, s) for u in summaries]) for s in ("median", "mean")}
    assert by["median"] != by["mean"]  # else this run could not tell the two apart
    assert out.best_epoch == by["mean"]
    assert out.best == summaries[by["mean"]]
    default, same = _fit(tmp_path / "median", "median")
    assert [u.median_m for u in same] == [u.median_m for u in summaries]  # the same run, the option aside
    assert default.best_epoch == by["median"]
