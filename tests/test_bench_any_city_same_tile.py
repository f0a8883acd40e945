"""bench/bench_any_city.py's same-tile measurement helpers: sample positions and the table (no training, no data)."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

@pytest.fixture(scope="module")
def bench(load_bench) -> ModuleType:
    """``bench/bench_any_city.py`` as a module."""
    return load_bench("bench_any_city")


def test_positions_of_finds_each_wanted_sample_in_its_order(bench: ModuleType) -> None:
    """A held-out split lists the whole tile, unsorted; the tile's test samples are found where they are."""
    whole = np.array([40, 7, 12, 99, 3, 58])
    wanted = np.array([99, 3, 40])
    pos = bench.positions_of(whole, wanted)
    assert pos.tolist() == [3, 4, 0]
    assert np.array_equal(whole[pos], wanted)
    assert bench.positions_of(whole, np.array([], dtype=int)).tolist() == []


def test_positions_of_names_missing_samples(bench: ModuleType) -> None:
    """A test sample that is not in the held-out split is an error, not a silently shorter comparison."""
    with pytest.raises(ValueError, match=r"1 sample\(s\) not in the split, e.g. \[5\]"):
        bench.positions_of(np.array([1, 2, 3, 100]), np.array([2, 5]))
    with pytest.raises(ValueError, match="not in the split"):
        bench.positions_of(np.array([], dtype=int), np.array([2]))


def test_same_tile_table_puts_both_ratios_side_by_side(bench: ModuleType) -> None:
    """The same-tile ratio (identical samples) next to the ratio against the other tiles' test split."""
    row = {"held_out": {"n": 52, "median_m": 10.0, "p95_m": 150.0},
           "same_tile_seen": {"n": 52, "median_m": 5.0, "p95_m": 90.0},
           "held_out_whole_tile": {"n": 500, "median_m": 11.0, "p95_m": 140.0},
           "ratio": bench.median_ratio({"n": 52, "median_m": 10.0}, {"n": 52, "median_m": 5.0}),
           "held_out_fit": {"epochs_run": 4, "best_epoch": 0}, "seen_fit": {"epochs_run": 3, "best_epoch": 2}}
    results = {"tiles": {"etoile": {"models": {"mapformer (window 4 m)": {
        "unseen": {"n": 500, "median_m": 10.0, "p95_m": 150.0}, "seen": {"n": 159, "median_m": 1.6, "p95_m": 5.0}}},
        "same_tile": {"mapformer (window 4 m)": row}}}}
    assert row["ratio"] == 2.0
    line = bench.same_tile_table(results).splitlines()[2]
    assert line == ("| etoile | mapformer (window 4 m) | 10 / 150 | 5.0 / 90 | 2.0x | 11 / 140 | 6.2x "
                    "| 4 (best 0); 3 (best 2) |")
    assert "10 vs 5 m (2.0x, n=52)" in bench.table(results)
    assert bench.median_ratio({"n": 0}, {"n": 52, "median_m": 5.0}) is None
