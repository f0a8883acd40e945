"""The Antwerp LoRaWAN converter: the real test split, plus small synthetic folders for the error paths."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.measurements import (
    MeasurementFormatError,
    MeasurementSet,
    convert_antwerp,
    dumps_measurements,
    load_measurements,
)

UNPOSITIONED = {"004A05D4", "004A0DA4", "C0000209", "004A0D9C", "C000028C"}


@pytest.fixture(scope="module")
def test_split(antwerp_dir: Path) -> tuple[MeasurementSet, float]:
    """The converted test split and the CPU seconds the conversion took (not wall seconds: on a loaded
    machine those measure the load)."""
    start = time.process_time()
    ms = convert_antwerp(antwerp_dir, split="test")
    return ms, time.process_time() - start


def test_test_split_counts(test_split: tuple[MeasurementSet, float]) -> None:
    ms, _ = test_split
    assert ms.mode == "emitter"
    assert len(ms.samples) == 8307
    assert ms.errors == ()
    assert len({s.id for s in ms.samples}) == 8307
    assert len(ms.nodes) == 44


def test_reports_truth_and_rss(test_split: tuple[MeasurementSet, float]) -> None:
    ms, _ = test_split
    for sample in ms.samples:
        assert 3 <= len(sample.reports) <= 10, sample.id
        assert sample.truth is not None
        assert 51.0 < sample.truth.lat < 51.4 and 4.2 < sample.truth.lon < 4.7, sample.id
        for report in sample.reports:
            assert report.node in ms.nodes_by_id
            assert -140.0 <= report.rss_dbm <= -30.0, (sample.id, report)
            assert report.toa_ns is None and report.aoa_deg is None


def test_first_row_matches_csv(test_split: tuple[MeasurementSet, float]) -> None:
    ms, _ = test_split
    first = ms.samples[0]
    assert first.id == "test-0"
    # x_test.csv line 2: BS 4 -115, BS 5 -113, BS 9 -109, BS 14 -109, BS 22 -116, BS 32 -114
    got = {(r.node, r.rss_dbm) for r in first.reports}
    assert got == {("080E0149", -115.0), ("FF010560", -113.0), ("FF01085B", -109.0), ("FF0107C9", -109.0),
                   ("FF010628", -116.0), ("FF0108A3", -114.0)}
    assert (first.truth.lat, first.truth.lon) == (51.2306060791016, 4.41328954696655)


def test_five_gateways_without_position(test_split: tuple[MeasurementSet, float]) -> None:
    ms, _ = test_split
    assert {node.id for node in ms.unknown_position_nodes} == UNPOSITIONED
    note = next(n for n in ms.notes if "no published coordinates" in n)
    assert all(gateway in note for gateway in UNPOSITIONED)
    # their RSSI is kept (fingerprinting can use it)
    assert any(r.node in UNPOSITIONED for s in ms.samples for r in s.reports)
    assert ms.nodes_by_id["FF010714"].lat == 51.188213


def test_conversion_is_fast(test_split: tuple[MeasurementSet, float]) -> None:
    _, seconds = test_split
    print(f"convert_antwerp(split='test'): {seconds:.2f} CPU s")
    assert seconds < 10.0, f"converting 8307 messages took {seconds:.1f} CPU s; expected a few seconds at most"


def test_converted_set_is_a_valid_file(test_split: tuple[MeasurementSet, float]) -> None:
    ms, _ = test_split
    text = dumps_measurements(ms)
    assert '"position": null' in text
    again = load_measurements(text.encode("utf-8"))
    assert again == ms


def test_val_split_and_limit(antwerp_dir: Path) -> None:
    ms = convert_antwerp(antwerp_dir, split="val", limit=50)
    assert len(ms.samples) == 50
    assert ms.samples[-1].id == "val-49"
    assert all(s.truth is not None for s in ms.samples)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="split: expected one of test, val or all, got 'train'"):
        convert_antwerp(tmp_path, split="train")
    with pytest.raises(InvalidInputError, match="limit: expected a positive integer"):
        convert_antwerp(tmp_path, limit=0)
    with pytest.raises(InvalidInputError, match="no such folder"):
        convert_antwerp(tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="x_test.csv, y_test.csv, bs_to_gateway"):
        convert_antwerp(tmp_path)


def _write_folder(folder: Path, x_rows: list[str], y_rows: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "bs_to_gateway_crosswalk_from_anantarj.csv").write_text(
        "bs,gateway_id,catalogue_latitude,catalogue_longitude\n1,GW1,51.2,4.4\n2,GW2,,\n", encoding="utf-8"
    )
    (folder / "x_test.csv").write_text("BS 1,BS 2,BS 3\n" + "".join(r + "\n" for r in x_rows), encoding="utf-8")
    (folder / "y_test.csv").write_text("Latitude,Longitude\n" + "".join(r + "\n" for r in y_rows), encoding="utf-8")
    return folder


def test_synthetic_folder(tmp_path: Path) -> None:
    folder = _write_folder(
        tmp_path / "a",
        ["-100,-200,-110", "-200,-200,-200", "-200,-90,-200"],
        ["51.21,4.41", "51.22,4.42", "51.23,4.43"],
    )
    ms = convert_antwerp(folder)
    assert [s.id for s in ms.samples] == ["test-0", "test-2"]
    assert [(e.index, e.id) for e in ms.errors] == [(1, "test-1")]
    assert "line 3" in ms.errors[0].message
    # column BS 3 is not in the crosswalk: kept as a node with unknown position, and said so
    assert [n.id for n in ms.nodes] == ["GW1", "GW2", "BS 3"]
    assert {n.id for n in ms.unknown_position_nodes} == {"GW2", "BS 3"}
    assert any("BS 3" in note for note in ms.notes)
    assert [(r.node, r.rss_dbm) for r in ms.samples[0].reports] == [("GW1", -100.0), ("BS 3", -110.0)]


@pytest.mark.parametrize(
    ("x_rows", "y_rows", "path", "expected"),
    [
        (["-100,-200,-110", "-100,abc,-110"], ["51.21,4.41"] * 2, 'x_test.csv line 3, "BS 2"',
         "expected an RSSI in dBm (-200 = not received), got 'abc'"),
        (["-100,-200,-110", "-100,-200"], ["51.21,4.41"] * 2, "x_test.csv line 3",
         "expected 3 values per line (one per header column), got 2"),
        (["-100,45,-110"], ["51.21,4.41"], 'x_test.csv line 2, "BS 2"', "expected a number in [-200, 30]"),
        (["-100,nan,-110"], ["51.21,4.41"], 'x_test.csv line 2, "BS 2"', "expected an RSSI in dBm"),
        (["-100,-200,-110"], ["95,4.41"], "y_test.csv line 2, Latitude", "expected a number in [-90, 90], got 95"),
        (["-100,-200,-110"], ["51.2,"], "y_test.csv line 2, Longitude", "expected a number of degrees, got ''"),
        (["-100,-200,-110", "-100,-200,-110"], ["51.21,4.41"], "y_test.csv", "expected as many positions"),
    ],
)
def test_synthetic_malformed(tmp_path: Path, x_rows: list[str], y_rows: list[str], path: str, expected: str) -> None:
    folder = _write_folder(tmp_path / "b", x_rows, y_rows)
    with pytest.raises(MeasurementFormatError) as info:
        convert_antwerp(folder)
    assert info.value.path == path
    assert expected in str(info.value), str(info.value)
