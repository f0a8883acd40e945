"""Block cross-validated sigma calibration (issue 15): out-of-fold predictions over squares of train + val.

The fit itself is :func:`rflocal_core.train.calibrate.fit_sigma_scale` (tests/test_sigma_calibration.py);
here: how squares are dealt to folds, that the predictions are out of fold, and that training
records where the map was fitted. On a slice of the real Duke CBRS drive test (skipped when
``../shared/data`` is absent).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.metrics import EXPECTED_1SIGMA, EXPECTED_2SIGMA
from rflocal_core.train.calibrate import (
    block_folds,
    fit_sigma_folds,
    fit_sigma_scale,
    resolve_calibration,
    size_factor,
)

DUKE_COLUMNS = {"node": "PCI", "lat": "latitude", "lon": "longitude", "rss_dbm": "rsrp"}


def test_block_folds_deal_whole_squares() -> None:
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 1000, size=(2000, 2))
    pos[5] = np.nan
    fold = block_folds(pos, block_m=100.0, folds=4, seed=1)
    assert fold[5] == -1 and set(np.unique(fold)) == {-1, 0, 1, 2, 3}
    square = [tuple(s) for s in np.floor(pos[np.isfinite(pos).all(1)] / 100.0).astype(int)]
    owner: dict[tuple[int, ...], int] = {}
    for s, f in zip(square, fold[fold >= 0], strict=True):
        assert owner.setdefault(s, int(f)) == f  # a square never on two folds
    counts = np.bincount(list(owner.values()))
    assert counts.min() == 25 and counts.max() == 25  # 100 squares dealt in turn
    assert not np.array_equal(fold, block_folds(pos, block_m=100.0, folds=4, seed=2))  # the seed shuffles
    with pytest.raises(InvalidInputError, match="calibration_block_m"):
        block_folds(pos, block_m=1e5, folds=4)
    with pytest.raises(InvalidInputError, match="calibration_folds"):
        block_folds(pos, block_m=100.0, folds=1)


def test_auto_calibrates_as_the_dataset_was_split() -> None:
    area = {"kind": "spatial blocks", "block_m": 150.0, "blocks": {"train": 9, "val": 2, "test": 2}}
    assert resolve_calibration("auto", 200.0, area) == ("blocks", 150.0)
    assert resolve_calibration("auto", 200.0, {"kind": "random"}) == ("val", 200.0)
    assert resolve_calibration("auto", 200.0, None) == ("val", 200.0)
    assert resolve_calibration("blocks", 80.0, None) == ("blocks", 80.0)  # as asked
    assert resolve_calibration("val", 200.0, area) == ("val", 200.0)


def _worst_fold_gap(err: np.ndarray, sigma: np.ndarray, fold: np.ndarray) -> float:
    d2 = ((err / sigma) ** 2).sum(1)
    return max(max(abs(np.mean(d2[fold == f] <= 1) - EXPECTED_1SIGMA), abs(np.mean(d2[fold == f] <= 4) - EXPECTED_2SIGMA))
               for f in np.unique(fold))


def test_fold_robust_fit_serves_the_hard_fold() -> None:
    """Nine easy folds and one whose errors are three times larger (an unlike area): the pooled fit
    follows the easy ones; the fold-robust fit balances the worst fold."""
    rng = np.random.default_rng(4)
    fold = np.repeat(np.arange(10), 300)
    sigma = rng.uniform(5.0, 50.0, size=(3000, 2))
    err = rng.normal(size=(3000, 2)) * sigma * np.where(fold == 9, 3.0, 1.0)[:, None]
    pooled, robust = fit_sigma_scale(err, sigma), fit_sigma_folds(err, sigma, fold)

    def applied(cal):
        return sigma * cal.scale * size_factor(sigma, cal.power, cal.ref_m)

    assert _worst_fold_gap(err, applied(robust), fold) < _worst_fold_gap(err, applied(pooled), fold) - 0.1
    assert robust.scale > pooled.scale and robust.count == 3000
    assert fit_sigma_folds(err[:5], sigma[:5], fold[:5]).scale is None  # too few samples: no map


@pytest.fixture
def duke_slice(shared_data: Path, workspace: Path, tmp_path: Path) -> str:
    """The west part of the Duke drive test (3,057 samples), split by 100 m squares."""
    from rflocal_core.dataset.table_import import import_table

    src = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    with src.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if float(r["longitude"]) < -78.94]
    out = tmp_path / "duke_west.csv"
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import_table(out, name="dw", columns=DUKE_COLUMNS, group_by=["latitude", "longitude", "device"],
                 split_fractions=(0.8, 0.1, 0.1), split_block_m=100.0, seed=0)
    return "dw"


def test_knn_run_calibrated_on_blocks(duke_slice: str) -> None:
    from rflocal_core.models import KNNFingerprint, load_inputs
    from rflocal_core.train import train
    from rflocal_core.train.calibrate import out_of_block
    from rflocal_core.train.runs import run_dir

    tc = {"calibration": "auto", "calibration_folds": 4}  # the slice is split by 100 m squares: blocks of 100 m
    run = train(duke_slice, "knn", model_config={"k": 7, "floor_dbm": -140.0}, train_config=tc, seed=3)
    config = json.loads((run_dir(run.run_id) / "config.json").read_text(encoding="utf-8"))
    rec = config["sigma_calibration"]
    tr, va = load_inputs(duke_slice, "train"), load_inputs(duke_slice, "val")
    assert (rec["source"], rec["block_m"], rec["folds"]) == ("blocks", 100.0, 4)
    assert rec["count"] > len(va) and config["sigma_scale"] == rec["scale"] == run.sigma_scale
    # the same out-of-fold predictions again: same folds (the run's seed), and out of fold indeed:
    # worse than the full model on its own training rows (where each sample finds itself)
    make = lambda: KNNFingerprint({"k": 7, "floor_dbm": -140.0})
    err, _, fold = out_of_block(make, tr, va, block_m=100.0, folds=4, seed=3)
    assert np.isfinite(err).all() and len(err) == len(tr) + len(va) and set(np.unique(fold)) == {0, 1, 2, 3}
    own = make().fit(tr).predict(tr)
    assert np.median(np.linalg.norm(err, axis=1)) > 2 * np.median(np.linalg.norm(own.position_m - tr.truth_m, axis=1))
    # runs calibrate fits a blocks run on blocks again: the same folds, the same map
    from rflocal_core.infer import calibrate_run

    again = calibrate_run(run.run_id)
    assert (again.source, again.folds) == ("blocks", 4) and again.scale == pytest.approx(rec["scale"])
    # the default stays val; networks are trained once, so they refuse blocks; a bad value is refused
    val_run = train(duke_slice, "knn", model_config={"k": 7, "floor_dbm": -140.0}, seed=3)
    val_rec = json.loads((run_dir(val_run.run_id) / "config.json").read_text(encoding="utf-8"))["sigma_calibration"]
    assert val_rec["source"] == "val" and val_rec["count"] == len(va) and val_rec["folds"] is None
    with pytest.raises(InvalidInputError, match="calibration: 'blocks'.*network"):
        train(duke_slice, "heimdall", train_config={"calibration": "blocks"})
    with pytest.raises(InvalidInputError, match="calibration"):
        train(duke_slice, "knn", train_config={"calibration": "folds"})


def test_quantile_radii_fit_the_heavy_tail(duke_slice: str) -> None:
    """``sigma_radii`` "quantile" (brief D17): the 1σ and 2σ radii fitted apart on the out-of-fold rows.

    Duke's errors are heavier-tailed than a Gaussian against kNN's σ, so the fitted 2σ ellipse is more
    than twice the 1σ one; evaluation, ``runs calibrate`` and ``predict``'s ellipses use that ratio.
    """
    from rflocal_core.infer import PredictedSample, calibrate_run, ellipse_k, evaluate_run, load_run
    from rflocal_core.models import load_inputs
    from rflocal_core.train import train
    from rflocal_core.train.runs import run_dir

    tc = {"calibration": "auto", "calibration_folds": 4, "sigma_radii": "quantile"}
    run = train(duke_slice, "knn", model_config={"k": 7, "floor_dbm": -140.0}, train_config=tc, seed=3)
    config = json.loads((run_dir(run.run_id) / "config.json").read_text(encoding="utf-8"))
    rec, ratio = config["sigma_calibration"], config["sigma_ratio_2"]
    assert (rec["method"], rec["source"], rec["ratio_2sigma"]) == ("quantile", "blocks", ratio)
    assert config["sigma_power"] == 1.0
    assert ratio > 2.5  # heavy-tailed: a Gaussian's 2σ ellipse would hold far fewer than 86.5%
    assert abs(rec["inside_1sigma_after"] - EXPECTED_1SIGMA) < 0.01
    assert abs(rec["inside_2sigma_after"] - EXPECTED_2SIGMA) < 0.01
    # evaluation counts the 2σ share inside the fitted radius, on the run's calibrated sigma
    test = evaluate_run(run.run_id, duke_slice, split="test")
    x = load_inputs(duke_slice, "test")
    pred = load_run(run.run_id).predict(x)
    d = np.sqrt((((pred.position_m - x.truth_m) / pred.sigma_m) ** 2).sum(1))
    assert test.calibration.ratio_2sigma == ratio
    assert test.calibration.inside_2sigma == pytest.approx(float(np.mean(d <= ratio)))
    assert test.calibration.inside_1sigma == pytest.approx(float(np.mean(d <= 1.0)))
    level = test.calibration.reliability.nominal.index(0.5)  # the run's radial law: d² <= (-2 ln 0.5)^log2(ratio)
    expected = float(np.mean(d**2 <= (-2 * np.log(0.5)) ** np.log2(ratio)))
    assert test.calibration.reliability.observed[level] == pytest.approx(expected)
    # runs calibrate fits the radii apart again, the same way; a map's drawn 2σ ellipse is ratio × 1σ
    again = calibrate_run(run.run_id)
    assert (again.method, again.source) == ("quantile", "blocks") and again.ratio_2sigma == pytest.approx(ratio)
    row = PredictedSample(id="s", x_m=0.0, y_m=0.0, lat=None, lon=None, sigma_x_m=1.0, sigma_y_m=1.0, truth=None,
                          error_m=None, flags=(), ratio_2sigma=ratio)
    assert ellipse_k(row, 1) == 1.0 and ellipse_k(row, 2) == ratio
    with pytest.raises(InvalidInputError, match="sigma_radii"):
        train(duke_slice, "knn", train_config={"sigma_radii": "student"})


def test_auto_calibrates_its_baselines_on_blocks_of_an_area_split(duke_slice: str) -> None:
    """Model selection on data split by area: the chosen baseline's sigma is fitted on out-of-fold squares."""
    from rflocal_core.train.auto import auto_train
    from rflocal_core.train.runs import run_dir

    def source(train_config: dict | None) -> tuple[str, list]:
        result = auto_train(duke_slice, config={"max_minutes": 2, "candidates": ("knn", "lgbm")},
                            train_config=train_config, seed=3)
        rec = json.loads((run_dir(result.run_id) / "config.json").read_text(encoding="utf-8"))["sigma_calibration"]
        return rec["source"], [c.val_se_m for c in result.candidates]

    src, se = source(None)
    assert src == "blocks" and all(s is not None and s >= 0 for s in se)
    assert source({"calibration": "val"})[0] == "val"  # what the user asks for wins
