"""Tabular measurement import (CSV, TSV, Parquet): small hand-made tables, through the API and the CLI.

Every table is written by the test; the summary's counts are asserted exactly. The real Duke
CBRS drive test (``../shared/data/real/duke_cbrs``) is imported whole and fingerprinted with
kNN (skipped when the folder is absent).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rflocal_core.dataset import export_dataset, import_measurements, open_dataset
from rflocal_core.dataset.splits import block_splits
from rflocal_core.dataset.table_import import import_table
from rflocal_core.errors import InvalidInputError
from rflocal_core.geo import LocalFrame
from rflocal_core.measurements import MeasurementSet, load_measurements
from rflocal_core.measurements.columns import COLUMN_KEYS, guess_columns, guess_group_by, parse_columns
from rflocal_core.measurements.table import (
    MAX_TABLE_FILE_BYTES,
    WIDE_NODE,
    TableFormatError,
    read_nodes,
    read_table,
    read_table_header,
)
from tests.page_support import import_tab, import_with

DUKE_COLUMNS = {"node": "PCI", "lat": "latitude", "lon": "longitude", "rss_dbm": "rsrp"}
DUKE_GROUP = ("latitude", "longitude", "device")

# Long layout with sample ids, ISO times (UTC "Z", an offset, naive = UTC), nodes with positions in columns.
LONG = """sample,time,cell,cell_lat,cell_lon,cell_alt,tx,lat,lon,rsrp,ta
s1,2024-05-01T10:00:00Z,A,48.1000,11.5000,25,43,48.10100,11.50100,-80,3
s1,2024-05-01T10:00:00Z,B,48.1020,11.5030,30,40,48.10100,11.50100,-90,
s1,2024-05-01T10:00:01.5Z,A,48.1000,11.5000,25,43,48.10120,11.50120,-82,4
s2,2024-05-01T10:00:05+00:00,B,48.1020,11.5030,30,40,48.10300,11.50200,-70,
s2,2024-05-01T10:00:05+00:00,C,,,,,48.10300,11.50200,-95,
s3,2024-05-01 10:00:09,A,48.1000,11.5000,25,43,48.10500,11.50400,-100,7
s3,2024-05-01 10:00:09,C,,,,,48.10500,11.50400,-104,
"""
LONG_COLUMNS = {"sample": "sample", "time": "time", "node": "cell", "node_lat": "cell_lat", "node_lon": "cell_lon",
                "node_alt_m": "cell_alt", "tx_power_dbm": "tx", "lat": "lat", "lon": "lon", "rss_dbm": "rsrp",
                "ta": "ta"}

# Duke-like: no sample id, repeated rows, sentinels, an empty latitude.
GROUPED = """PCI,latitude,longitude,device,rsrp
A,36.00100,-78.93000,Pixel,-100
B,36.00100,-78.93000,Pixel,-110
A,36.00100,-78.93000,Pixel,-104
A,36.00100,-78.93000,Pixel,-101
A,36.00100,-78.93000,Samsung,-90
C,36.00200,-78.93100,Pixel,-120
C,36.00200,-78.93100,Pixel,-101
B,,-78.93100,Pixel,-99
D,36.00300,-78.93200,Pixel,-200
"""
GROUPED_TABLE = {
    "kind": "csv", "rows": 9, "rows_used": 5, "samples": 3, "reports": 4, "nodes": 3,
    "nodes_unknown_position": ["A", "B", "C"],
    "issues": {
        "missing_value": {"count": 3, "action": "value removed (not received)", "fault": False,
                          "detail": "measurement cells equal to a missing value (-101, -200)", "rows": [4, 7, 9]},
        "no_sample": {"count": 1, "action": "row dropped", "fault": True,
                      "detail": "rows with an empty group_by cell (latitude, longitude, device)", "rows": [8]},
        "not_received": {"count": 3, "action": "row dropped", "fault": False,
                         "detail": "rows whose every measurement is a missing value (not received)",
                         "rows": [4, 7, 9]},
        "duplicate_reports_merged": {
            "count": 1, "action": "rows merged", "fault": False,
            "detail": "rows repeating a node at the same time in a sample, merged into one report (the median of "
                      "each measurement; the circular mean of angles)", "rows": [3], "samples": ["row-1"]},
    },
}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _ok(proc: Any) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _fails(proc: Any, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- layouts


def test_sample_ids_iso_times_node_columns(tmp_path: Path) -> None:
    table = read_table(_write(tmp_path, "long.csv", LONG), columns=LONG_COLUMNS)
    ms = table.measurements
    assert table.report.to_dict() == {
        "kind": "csv", "rows": 7, "rows_used": 7, "samples": 3, "reports": 7, "nodes": 3,
        "nodes_unknown_position": ["C"],
        "issues": {"truth_varies": {"count": 1, "action": "the latest row's position is the truth", "fault": False,
                                    "detail": "samples whose rows give positions ('lat', 'lon') more than 1 m apart",
                                    "samples": ["s1"]}}}
    assert ms.mode == "ue" and [s.id for s in ms.samples] == ["s1", "s2", "s3"]
    a, b, c = ms.nodes
    assert (a.id, a.lat, a.lon, a.alt_m, a.tx_power_dbm) == ("A", 48.1, 11.5, 25.0, 43.0)
    assert (b.id, b.lat, b.lon, b.alt_m, b.tx_power_dbm) == ("B", 48.102, 11.503, 30.0, 40.0)
    assert c.id == "C" and not c.has_position
    s1 = ms.samples[0]
    assert [(r.node, r.t_s, r.rss_dbm, r.ta) for r in s1.reports] == [("A", 0.0, -80.0, 3), ("B", 0.0, -90.0, None),
                                                                       ("A", 1.5, -82.0, 4)]
    assert (s1.truth.lat, s1.truth.lon) == (48.1012, 11.5012)  # the latest row's position
    assert [(r.node, r.t_s) for r in ms.samples[2].reports] == [("A", 0.0), ("C", 0.0)]
    assert table.input_info["columns"] == LONG_COLUMNS and table.input_info["table"] == table.report.to_dict()


def test_import_export_round_trip(tmp_path: Path, workspace: Path, run_cli: Any) -> None:
    src = _write(tmp_path, "long.csv", LONG)
    summary = import_table(src, name="long", columns=LONG_COLUMNS, split_fractions=(0.34, 0.33, 0.33))
    assert (summary.samples, summary.nodes, summary.unknown_position_nodes) == (3, 3, 1)
    assert summary.splits == {"train": 1, "val": 1, "test": 1, "test_unseen": 0}
    assert summary.table.rows_used == 7 and summary.steps == 2
    assert list(summary.to_json())[-2:] == ["quality", "table"]  # no "split" key without split_block_m
    attrs = dict(open_dataset("long").attrs)
    assert attrs["input"]["kind"] == "csv" and attrs["input"]["table"]["samples"] == 3
    assert any("lat/lon of a row is the position of the device" in note for note in attrs["notes"])
    original = {s.id: s for s in read_table(src, columns=LONG_COLUMNS).measurements.samples}
    for split in ("train", "val", "test"):
        exported = export_dataset("long", split=split)
        for sample in exported.samples:
            want = original[sample.id]
            assert [(r.node, r.t_s, r.rss_dbm, r.ta) for r in sample.reports] == \
                   [(r.node, r.t_s, r.rss_dbm, r.ta) for r in want.reports]
            assert math.isclose(sample.truth.lat, want.truth.lat, abs_tol=1e-9)
    out = tmp_path / "out.json"
    done = _ok(run_cli(["data", "export", "--dataset", "long", "--split", "train", "--out", str(out)], workspace))
    assert done["samples"] == 1 and done["nodes"] == 3
    reread = load_measurements(out)
    assert [n.id for n in reread.unknown_position_nodes] == ["C"]


def test_group_by_duplicates_and_missing_values_via_cli(tmp_path: Path, workspace: Path, run_cli: Any) -> None:
    src = _write(tmp_path, "walk.csv", GROUPED)
    summary = _ok(run_cli(["data", "import", str(src), "--name", "walk",
                           "--columns", "node=PCI,lat=latitude,lon=longitude,rss_dbm=rsrp",
                           "--group-by", "latitude,longitude,device", "--missing", "-101", "--missing", "-200",
                           "--split-fractions", "0.34,0.33,0.33"], workspace))
    assert summary["table"] == GROUPED_TABLE
    assert (summary["samples"], summary["nodes"], summary["unknown_position_nodes"]) == (3, 3, 3)
    ms = read_table(src, columns=DUKE_COLUMNS, group_by=DUKE_GROUP, missing=["-101", -200.0]).measurements
    first = ms.samples[0]
    assert first.id == "row-1" and (first.truth.lat, first.truth.lon) == (36.001, -78.93)
    assert [(r.node, r.rss_dbm) for r in first.reports] == [("A", -102.0), ("B", -110.0)]  # median of -100, -104
    assert [s.id for s in ms.samples] == ["row-1", "row-5", "row-6"]


def test_table_faults_and_gps_sentinels_join_the_quality_report(tmp_path: Path, workspace: Path,
                                                                 run_cli: Any) -> None:
    """A table goes through the same quality checks as JSON: its own faults and a (0, 0) fix, counted once."""
    src = _write(tmp_path, "walk0.csv", GROUPED + "A,0,0,Pixel,-95\nB,0,0,Pixel,-97\n")
    args = ["data", "import", str(src), "--columns", "node=PCI,lat=latitude,lon=longitude,rss_dbm=rsrp",
            "--group-by", "latitude,longitude,device", "--missing", "-101,-200"]
    summary = _ok(run_cli([*args, "--name", "walk0", "--split-fractions", "0.34,0.33,0.33"], workspace))
    reasons = {k: (v["count"], v["unit"]) for k, v in summary["quality"]["reasons"].items()}
    assert reasons == {"table_no_sample": (1, "reports"), "truth_position_sentinel": (1, "truths")}
    assert (summary["samples"], summary["unlabeled"]) == (4, 1)  # the (0, 0) sample is kept, unlabeled
    frame = open_dataset("walk0").attrs["frame"]
    assert abs(frame["origin_lat"] - 36.002) < 0.01 and abs(frame["origin_lon"] + 78.931) < 0.01
    _fails(run_cli([*args, "--name", "walk0s", "--strict"], workspace), "row 8", "no_sample", "strict")
    clean_rows = src.read_text().replace("B,,-78.93100,Pixel,-99\n", "")  # only the (0, 0) fix is left
    src.write_text(clean_rows)
    _fails(run_cli([*args, "--name", "walk0s", "--strict"], workspace), "truth_position_sentinel")
    assert not (workspace / "datasets" / "walk0s").exists()


def test_node_positions_from_a_nodes_table(tmp_path: Path) -> None:
    text = "sample,cell,rss\n1,A,-80\n1,B,-90\n1,C,-95\n2,A,-85\n"
    src = _write(tmp_path, "t.csv", text)
    columns = {"sample": "sample", "node": "cell", "rss_dbm": "rss"}
    nodes_csv = _write(tmp_path, "nodes.csv", "Node_ID,Latitude,Longitude,height_m,tx_power_dbm\n"
                                              "A,48.1000,11.5000,25,43\nB,48.1020,11.5030,,\nZ,48.2,11.6,,\n")
    table = read_table(src, columns=columns, nodes=nodes_csv)
    a, b, c = table.measurements.nodes
    assert (a.lat, a.lon, a.alt_m, a.tx_power_dbm) == (48.1, 11.5, 25.0, 43.0)
    assert (b.lat, b.lon, b.alt_m) == (48.102, 11.503, None) and not c.has_position
    assert table.report.to_dict()["issues"] == {"nodes_not_in_nodes_table": {
        "count": 1, "action": "kept with an unknown position", "fault": False,
        "detail": "node ids of the table that the nodes table does not list", "values": ["C"]}}
    doc = {"nodes": [{"id": "A", "lat": 48.1, "lon": 11.5, "alt_m": 25, "tx_power_dbm": 43},
                     {"id": "B", "lat": 48.102, "lon": 11.503}, {"id": "C", "position": None}]}
    nodes_json = _write(tmp_path, "nodes.json", json.dumps(doc))
    table = read_table(src, columns=columns, nodes=nodes_json)
    assert [n.has_position for n in table.measurements.nodes] == [True, True, False]
    assert table.report.issues == () and table.report.nodes_unknown_position == ("C",)
    assert read_nodes(_write(tmp_path, "list.json", json.dumps(doc["nodes"])))[0].tx_power_dbm == 43.0
    without = read_table(src, columns=columns)
    assert without.report.nodes_unknown_position == ("A", "B", "C")


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("n.json", '[{"id": "A", "lat": "x", "lon": 11.5}]', "nodes[0].lat: expected a number in [-90, 90]"),
    ("n.json", '[{"id": "A", "lat": 48.1, "lon": 11.5, "height": 3}]', "nodes[0]: unknown key 'height'"),
    ("n.json", '[{"id": "A"}, {"id": "A"}]', "node 'A' is listed twice"),
    ("n.csv", "id,lat,lon\nA,48.1,\n", "row 1, column 'lon': expected a number in [-180, 180] together with lat"),
    ("n.csv", "id,lat,lon\nA,north,11.5\n", "row 1, column 'lat': expected a number, got 'north'"),
    ("n.csv", "name,x,y\nA,1,2\n", "found no lat, lon column among 'name', 'x', 'y'"),
])
def test_bad_nodes_tables(tmp_path: Path, name: str, text: str, needle: str) -> None:
    with pytest.raises(TableFormatError) as err:
        read_nodes(_write(tmp_path, name, text))
    assert needle in str(err.value)


def test_parquet_emitter_mobile_sensors(tmp_path: Path) -> None:
    t0 = pd.Timestamp("2024-05-01T10:00:00Z")
    frame = pd.DataFrame({
        "msg": [7, 7, 7, 8, 8],
        "when": [t0, t0 + pd.Timedelta(seconds=2), t0 + pd.Timedelta(seconds=2), t0, t0],
        "s_lat": [48.10, 48.11, 48.12, 48.13, 48.14],
        "s_lon": [11.50, 11.51, 11.52, 11.53, 11.54],
        "rssi": [-90.0, -95.0, np.nan, -100.0, -80.0],
        "src_lat": [48.2, 48.2, 48.21, np.nan, np.nan],
        "src_lon": [11.6, 11.6, 11.61, np.nan, np.nan],
    })
    src = tmp_path / "survey.parquet"
    frame.to_parquet(src)
    columns = {"sample": "msg", "time": "when", "lat": "s_lat", "lon": "s_lon", "rss_dbm": "rssi",
               "truth_lat": "src_lat", "truth_lon": "src_lon"}
    table = read_table(src, columns=columns, mode="emitter")
    ms = table.measurements
    assert ms.mode == "emitter" and ms.nodes == () and [s.id for s in ms.samples] == ["7", "8"]
    assert [(r.lat, r.t_s, r.rss_dbm) for r in ms.samples[0].reports] == [(48.10, 0.0, -90.0), (48.11, 2.0, -95.0)]
    assert (ms.samples[0].truth.lat, ms.samples[0].truth.lon) == (48.2, 11.6)  # the latest used row's
    assert ms.samples[1].truth is None
    assert table.report.to_dict()["issues"] == {"no_measurement": {
        "count": 1, "action": "row dropped", "fault": True,
        "detail": "rows without a valid measurement in rss_dbm ('rssi')", "rows": [3]}}
    ids = pd.DataFrame({"pci": [101, 101, 205], "lat": [1.0, 1.0, 1.1], "lon": [2.0, 2.0, 2.1],
                        "rsrp": [-80, -85, -90]})
    ids.to_parquet(tmp_path / "ids.parquet")
    ue = read_table(tmp_path / "ids.parquet", columns={"node": "pci", "lat": "lat", "lon": "lon", "rss_dbm": "rsrp"},
                    group_by=["lat", "lon"])
    assert [n.id for n in ue.measurements.nodes] == ["101", "205"]
    assert [r.rss_dbm for r in ue.measurements.samples[0].reports] == [-82.5]


def test_seconds_and_tsv(tmp_path: Path) -> None:
    text = "id\tt\tnode\tdbm\nx\t100.5\tn1\t-70\nx\t102\tn1\t-71\nx\t102\tn2\t-72\n"
    table = read_table(_write(tmp_path, "t.tsv", text),
                       columns={"sample": "id", "time": "t", "node": "node", "rss_dbm": "dbm"})
    assert [(r.node, r.t_s) for r in table.measurements.samples[0].reports] == [("n1", 0.0), ("n1", 1.5), ("n2", 1.5)]


# --------------------------------------------------------------------------- bad input


def _table(tmp_path: Path, text: str, **options: Any) -> Any:
    columns = options.pop("columns", {"sample": "id", "node": "node", "rss_dbm": "rss"})
    return read_table(_write(tmp_path, "bad.csv", text), columns=columns, **options)


def test_bad_cells_are_counted_and_strict_refuses_them(tmp_path: Path) -> None:
    text = "id,node,rss,toa\na,n1,-80,100\na,n2,abc,\nb,n1,-999,\nb,n2,-70,-5\nc,,-60,\n,n1,-60,\n"
    columns = {"sample": "id", "node": "node", "rss_dbm": "rss", "toa_ns": "toa"}
    report = _table(tmp_path, text, columns=columns).report.to_dict()
    assert (report["rows"], report["rows_used"], report["samples"], report["reports"]) == (6, 2, 2, 2)
    issues = {k: (v["count"], v["action"], v.get("rows"), v.get("values")) for k, v in report["issues"].items()}
    assert issues == {
        "rss_dbm_not_a_number": (1, "value removed", [2], ["abc"]),
        "rss_dbm_out_of_range": (1, "value removed", [3], ["-999"]),
        "toa_ns_out_of_range": (1, "value removed", [4], ["-5"]),
        "no_sample": (1, "row dropped", [6], None),
        "no_node": (1, "row dropped", [5], None),
        "no_measurement": (2, "row dropped", [2, 3], None),
    }
    with pytest.raises(TableFormatError) as err:
        _table(tmp_path, text, columns=columns, strict=True)
    assert str(err.value) == ("bad.csv row 2: rss_dbm (column 'rss'): expected a number, got 'abc' "
                              "(1 rss_dbm_not_a_number; refused because strict, otherwise: value removed)")


def test_conflicts_merges_and_times(tmp_path: Path) -> None:
    text = ("id,t,node,nlat,nlon,tx,rss,aoa\n"
            "a,0,n1,1.0,1.0,40,-80,350\n"   # merged with the next row: RSS median, angle circular mean
            "a,0,n1,1.0,1.0,40,-84,10\n"
            "a,1,n2,1.0,1.001,30,NA,20\n"   # NA: not received, the angle stays
            "b,0,n1,1.0,1.0,43,-70,\n"      # another power for n1: counted, kept
            "b,x,n1,1.0,1.0,40,-71,\n"      # no readable time: dropped
            "c,0,n1,2.0,2.0,40,-60,\n"      # n1 elsewhere: dropped
            "c,0,n2,1.0,1.001,30,-65,90\n")
    columns = {"sample": "id", "time": "t", "node": "node", "node_lat": "nlat", "node_lon": "nlon",
               "tx_power_dbm": "tx", "rss_dbm": "rss", "aoa_deg": "aoa"}
    table = read_table(_write(tmp_path, "c.csv", text), columns=columns, missing=["NA"])
    report = table.report.to_dict()
    assert (report["rows"], report["rows_used"], report["samples"], report["reports"]) == (7, 5, 3, 4)
    issues = {k: (v["count"], v["action"], v.get("rows"), v.get("values"), v.get("samples"))
              for k, v in report["issues"].items()}
    assert issues == {
        "time_not_a_time": (1, "value removed", [5], ["x"], None),
        "missing_value": (1, "value removed (not received)", [3], None, None),
        "no_time": (1, "row dropped", [5], None, None),
        "node_position_conflict": (1, "row dropped", [6], ["n1"], None),
        "tx_power_conflict": (1, "kept; the node's most frequent power is used", [4], ["43.0"], None),
        "duplicate_reports_merged": (1, "rows merged", [2], None, ["a"]),
    }
    n1, n2 = table.measurements.nodes
    assert (n1.lat, n1.lon, n1.tx_power_dbm, n2.lon, n2.tx_power_dbm) == (1.0, 1.0, 40.0, 1.001, 30.0)
    a, b, c = table.measurements.samples
    assert [(r.node, r.t_s, r.rss_dbm, r.aoa_deg) for r in a.reports] == [("n1", 0.0, -82.0, 0.0),
                                                                          ("n2", 1.0, None, 20.0)]
    assert [(r.node, r.rss_dbm) for r in b.reports] == [("n1", -70.0)]
    assert [(r.node, r.rss_dbm, r.aoa_deg) for r in c.reports] == [("n2", -65.0, 90.0)]
    with pytest.raises(TableFormatError, match="none of its 2 rows is usable: 2 missing_value"):
        _table(tmp_path, "id,node,rss\na,n1,NA\nb,n1,NA\n", missing=["NA"])


@pytest.mark.parametrize(("columns", "options", "needle"), [
    ({"sample": "id", "node": "node", "rss": "rss"}, {}, "columns: unknown key 'rss'; expected keys: sample, time,"),
    ({"sample": "id", "node": "node", "rss_dbm": "rsrp"}, {},
     "no column 'rss_dbm=rsrp' in the header; the columns are 'id', 'node', 'rss', 'dev'"),
    ({"node": "node", "rss_dbm": "rss"}, {"group_by": ["device"]}, "no column 'group_by device' in the header"),
    ({"node": "node", "rss_dbm": "rss"}, {}, "give either the key sample"),
    ({"sample": "id", "node": "node", "rss_dbm": "rss"}, {"group_by": ["dev"]}, "not both"),
    ({"sample": "id", "node": "node"}, {}, "map at least one measurement key"),
    ({"sample": "id", "node": "node", "rss_dbm": "rss", "lat": "dev"}, {}, "lat needs lon too"),
    ({"sample": "id", "rss_dbm": "rss"}, {}, "ue mode: map node"),
    ({"sample": "id", "node": "node", "rss_dbm": "rss", "lat": "rss", "lon": "rss", "truth_lat": "rss",
      "truth_lon": "rss"}, {}, "give either lat/lon or truth_lat/truth_lon"),
    ({"sample": "id", "node": "node", "rss_dbm": "rss", "tx_power_dbm": "rss"}, {"mode": "emitter"},
     "tx_power_dbm (a node's transmit power) does not apply"),
    ({"sample": "id", "node": "node", "rss_dbm": "rss"}, {"mode": "drone"}, "mode: expected one of ue, emitter"),
    ({"sample": "id", "node": "node", "rss_dbm": "dev"}, {},
     "column 'dev' (rss_dbm) holds no numbers (e.g. 'Pixel')"),
    ({"sample": "id", "node": "node", "time": "dev", "rss_dbm": "rss"}, {},
     "column 'dev' (time) holds neither numbers (seconds) nor ISO 8601 timestamps (e.g. 'Pixel')"),
])
def test_bad_mappings(tmp_path: Path, columns: dict[str, str], options: dict[str, Any], needle: str) -> None:
    with pytest.raises((InvalidInputError, TableFormatError)) as err:
        _table(tmp_path, "id,node,rss,dev\na,n1,-80,Pixel\n", columns=columns, **options)
    assert needle in str(err.value)


@pytest.mark.parametrize(("data", "options", "needle"), [
    (b"", {}, "bad.csv: expected a header line and rows, got an empty file"),
    (b"id,node,rss\n", {}, "expected at least one row under the header, got none"),
    (b"id,node,rss\na,n1,-80,7\n", {}, "none of its 1 rows is usable: 1 wrong_field_count (rows with another "
                                         "number of fields than the header's 3"),
    (b"id,node,rss\na,n1,-80\na,n" + b"x" * 140_000 + b",-80\n", {},
     "bad.csv line 3: not a readable CSV row: field larger than field limit"),
    (b"id,node,rss\na,n\xe9,-80\n", {}, "expected UTF-8 text, got byte 0xe9 at offset 15 (line 2)"),
    (b"id,node,rss\na,n1,-80\n", {"max_bytes": 10}, "bad.csv: 21 bytes (0.0 MiB) is too large; expected at most 10"),
    (b"id,node,rss\na,n1,-80\nb,n1,-81\n", {"max_rows": 1}, "more than 1 rows is more than the limit of 1 rows"),
    (b"id,node,rss\na,,-80\n", {}, "none of its 1 rows is usable: 1 no_node"),
    (b"id,node,rss,rss\na,n1,-80,-81\n", {}, "column 'rss' appears 2 times in the header"),
])
def test_bad_files(tmp_path: Path, data: bytes, options: dict[str, Any], needle: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(TableFormatError) as err:
        read_table(path, columns={"sample": "id", "node": "node", "rss_dbm": "rss"}, **options)
    assert needle in str(err.value)


def test_bad_kinds(tmp_path: Path) -> None:
    (tmp_path / "t.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(TableFormatError, match="t.parquet: not a readable Parquet file"):
        read_table(tmp_path / "t.parquet", columns={"sample": "id", "node": "node", "rss_dbm": "rss"})
    with pytest.raises(TableFormatError, match=r"expected a table file ending in \.csv, \.tsv, \.txt, \.parquet, "):
        read_table_header(_write(tmp_path, "t.xls", "x"))
    with pytest.raises(TableFormatError, match="t.xlsx: not a readable Excel workbook"):
        read_table_header(_write(tmp_path, "t.xlsx", "x"))
    with pytest.raises(TableFormatError, match="no such file"):
        read_table_header(tmp_path / "absent.csv")


def test_cli_refusals(tmp_path: Path, workspace: Path, run_cli: Any) -> None:
    src = _write(tmp_path, "walk.csv", GROUPED)
    base = ["data", "import", str(src), "--name", "w", "--group-by", "latitude,longitude,device"]
    _fails(run_cli([*base, "--columns", "node=PCI,rss=rsrp"], workspace), "unknown key 'rss'; expected keys:")
    _fails(run_cli([*base, "--columns", "node=PCI,rss_dbm=RSRP"], workspace),
           "walk.csv: no column 'rss_dbm=RSRP' in the header; the columns are 'PCI', 'latitude'")
    _fails(run_cli([*base, "--columns", "node=PCI,rss_dbm"], workspace), "expected KEY=COLUMN pairs")
    _fails(run_cli(base, workspace), "--columns: a table needs the column mapping")
    empty = _write(tmp_path, "empty.csv", "")
    _fails(run_cli(["data", "import", str(empty), "--name", "e", "--columns", "node=a,rss_dbm=b",
                    "--group-by", "a"], workspace), "empty.csv: expected a header line and rows, got an empty file")
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as fh:  # sparse: no disk space used; refused by its size before reading
        fh.truncate(MAX_TABLE_FILE_BYTES + 1)
    _fails(run_cli(["data", "import", str(huge), "--name", "h", "--columns", "node=a,rss_dbm=b", "--group-by", "a"],
                   workspace), "huge.csv: 209,715,201 bytes (200.0 MiB) is too large; expected at most 209,715,200")
    good_json = Path(__file__).resolve().parents[1] / "assets" / "example_survey.json"
    _fails(run_cli(["data", "import", str(good_json), "--name", "j", "--columns", "node=a"], workspace),
           "--columns: applies to tables (.csv, .tsv, .txt, .parquet, .xlsx)")
    _fails(run_cli(["data", "import", str(_write(tmp_path, "x.xls", "a")), "--name", "x"], workspace),
           "file: expected a .json measurement file or a table ending in .csv, .tsv, .txt, .parquet, .pq, .xlsx")
    assert not (workspace / "datasets").exists() or not any((workspace / "datasets").iterdir())


# --------------------------------------------------------------------------- mapping helpers, splits, models


def test_column_vocabulary_and_guesses() -> None:
    assert list(COLUMN_KEYS) == ["sample", "time", "sequence", "node", "node_lat", "node_lon", "node_alt_m", "lat",
                                 "lon", "alt_m", "rss_dbm", "toa_ns", "ta", "aoa_deg", "tx_power_dbm", "truth_lat",
                                 "truth_lon", "rsrq_db", "sinr_db", "cqi", "ri", "beam_id", "beam_rsrp_dbm",
                                 "doppler_hz", "serving", "neighbour_rank", "event_a3", "event_a5"]
    header = ["PCI", "latitude", "longitude", "device", "rsrp"]
    assert guess_columns(header) == DUKE_COLUMNS
    assert guess_group_by(header, DUKE_COLUMNS) == list(DUKE_GROUP)
    assert guess_columns(["Timestamp", "Cell_ID", "RSSI (dBm)", "Lat", "Lng"]) == {
        "time": "Timestamp", "node": "Cell_ID", "lat": "Lat", "lon": "Lng", "rss_dbm": "RSSI (dBm)"}
    assert parse_columns(["node=PCI, lat=latitude", "rss_dbm=rsrp"]) == {"node": "PCI", "lat": "latitude",
                                                                          "rss_dbm": "rsrp"}
    with pytest.raises(InvalidInputError, match="key 'node' is given twice"):
        parse_columns("node=a,node=b")


def _line_walk(n: int, *, unknown: tuple[str, ...] = ()) -> str:
    """A walk of ``n`` points along 2 km east, three cells with log-distance RSS (cells in ``unknown`` unplaced)."""
    cells = {"A": (36.000, -78.950), "B": (36.010, -78.940), "C": (35.995, -78.925)}
    lines = ["walk_id,cell,cell_lat,cell_lon,lat,lon,rsrp"]
    rng = np.random.default_rng(1)
    for i in range(n):
        lat, lon = 36.002, -78.950 + 0.022 * i / n
        for cell, (clat, clon) in cells.items():
            d = math.hypot((lat - clat) * 111_320, (lon - clon) * 90_000) + 10
            rss = round(-40 - 35 * math.log10(d) + rng.normal(0, 2), 1)
            place = "," if cell in unknown else f"{clat},{clon}"
            lines.append(f"w{i},{cell},{place},{lat:.6f},{lon:.6f},{rss}")
    return "\n".join(lines) + "\n"


WALK_COLUMNS = {"sample": "walk_id", "node": "cell", "node_lat": "cell_lat", "node_lon": "cell_lon", "lat": "lat",
                "lon": "lon", "rss_dbm": "rsrp"}


def test_models_and_nodes_of_unknown_position(tmp_path: Path, workspace: Path) -> None:
    from rflocal_core.train import train

    import_table(_write(tmp_path, "some.csv", _line_walk(60, unknown=("C",))), name="some", columns=WALK_COLUMNS)
    result = train("some", "weighted_centroid")
    assert result.warnings == ("1 nodes of 'some' have an unknown position (C): weighted_centroid cannot place "
                               "their reports (33.3% of the train split's reports); knn and heimdall use them",)
    import_table(_write(tmp_path, "none.csv", _line_walk(60, unknown=("A", "B", "C"))), name="none",
                 columns=WALK_COLUMNS)
    for model in ("strongest_site", "setnet"):
        with pytest.raises(InvalidInputError, match=f"model: {model} needs the position of each report's node, but "
                                                    r"no node reporting in the train split of 'none' has a known "
                                                    r"position \(A, B, C\); choose knn or heimdall"):
            train("none", model)
    fitted = train("none", "knn")
    # a guess anywhere on the 1.8 km walk is about 600 m off; kNN over the unplaced cells' RSS is not
    assert not fitted.warnings and "warnings" not in fitted.to_json() and fitted.summary.median_m < 200


def test_spatial_block_split(tmp_path: Path, workspace: Path) -> None:
    src = _write(tmp_path, "walk.csv", _line_walk(200))
    summary = import_table(src, name="blocks", columns=WALK_COLUMNS, split_block_m=250.0, seed=3)
    assert summary.split == {"kind": "spatial blocks", "block_m": 250.0, "blocks": {"train": 6, "val": 1, "test": 1}}
    assert sum(summary.splits.values()) == 200
    root = open_dataset("blocks")
    x = np.asarray(root["samples/pos_m"][...])[:, 0, 0]
    ms: MeasurementSet = read_table(src, columns=WALK_COLUMNS).measurements
    lat = np.array([s.truth.lat for s in ms.samples])
    lon = np.array([s.truth.lon for s in ms.samples])
    bx, _ = LocalFrame.at(float(lat.mean()), float(lon.mean())).to_xy(lat, lon)
    block = np.floor(np.asarray(bx) / 250.0)
    for split in ("train", "val", "test"):
        rows = np.asarray(root[f"splits/{split}"][...])
        other = np.setdiff1d(np.arange(200), rows)
        assert not set(block[rows]) & set(block[other]), split  # no block on two sides
    assert np.isfinite(x).all()
    with pytest.raises(InvalidInputError, match=r"block\(s\); expected at least 3 \(one per split\)"):
        block_splits(ms, block_m=50_000, fractions=(0.8, 0.1, 0.1))


def test_spatial_blocks_are_drawn_from_the_cleaned_truths(tmp_path: Path, workspace: Path) -> None:
    """A GPS no-fix (0, 0) and a NaN latitude make no square of their own, and no numpy warning."""
    text = _line_walk(200) + "z1,A,36.0,-78.95,0.0,0.0,-90\nz2,A,36.0,-78.95,nan,-78.94,-91\n"
    src = _write(tmp_path, "walk.csv", text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = import_table(src, name="blocks", columns=WALK_COLUMNS, split_block_m=250.0, seed=3)
    # the same squares as the clean walk's (test_spatial_block_split): before, the (0, 0) fix was a ninth square
    assert summary.split == {"kind": "spatial blocks", "block_m": 250.0, "blocks": {"train": 6, "val": 1, "test": 1}}
    assert sum(summary.splits.values()) == 200
    assert open_dataset("blocks").attrs["input"]["split"] == summary.split
    with pytest.raises(InvalidInputError, match="split_block_m: expected one of split_block_m, split_by_sequence"):
        import_measurements(read_table(src, columns=WALK_COLUMNS).measurements, name="both", split_block_m=250.0,
                            fixed_splits={"w0": "train"})


def test_json_import_splits_by_squares_on_the_command_line(tmp_path: Path, workspace: Path, run_cli: Any) -> None:
    """``--split-block-m`` applies to rflocal-measurements/1 JSON as to tables: the same squares."""
    from rflocal_core.measurements import dump_measurements

    ms = read_table(_write(tmp_path, "walk.csv", _line_walk(200)), columns=WALK_COLUMNS).measurements
    src = dump_measurements(ms, tmp_path / "walk.json")
    out = _ok(run_cli(["data", "import", str(src), "--name", "jw", "--split-block-m", "250", "--seed", "3"], workspace))
    assert out["split"] == {"kind": "spatial blocks", "block_m": 250.0, "blocks": {"train": 6, "val": 1, "test": 1}}
    assert open_dataset("jw").attrs["input"]["split"] == out["split"]
    _fails(run_cli(["data", "import", str(src), "--name", "jw2", "--split-block-m", "0.5"], workspace),
           "split_block_m: expected a number of metres in [1, 100000], got 0.5")


def test_predict_reads_a_table_with_the_mapping_of_the_import(tmp_path: Path, workspace: Path, run_cli: Any) -> None:
    """``predict --input new.csv --columns ...``: a user who imported a table predicts new rows of the same kind."""
    from rflocal_core.infer import predict_file
    from rflocal_core.train import train

    import_table(_write(tmp_path, "walk.csv", _line_walk(200)), name="walk", columns=WALK_COLUMNS)
    run = train("walk", "knn").run_id
    columns = ",".join(f"{k}={v}" for k, v in WALK_COLUMNS.items())
    new = _write(tmp_path, "new.csv", _line_walk(40) + "z1,A,36.0,-78.95,36.002,-78.94,-999\n")
    out = _ok(run_cli(["predict", "--run", run, "--input", str(new), "--columns", columns], workspace))
    # a guess anywhere on the 2 km walk is about 600 m off; measured 67 m
    assert len(out["predictions"]) == 40 and np.median([p["error_m"] for p in out["predictions"]]) < 150.0
    assert out["quality"]["reasons"]["table_rss_dbm_out_of_range"]["count"] == 1  # the -999, named by the table
    direct = predict_file(run, new, table={"columns": WALK_COLUMNS})
    assert [p.id for p in direct.runs[0].predictions] == [p["id"] for p in out["predictions"]]
    _fails(run_cli(["predict", "--run", run, "--input", str(new)], workspace),
           "--columns: a table needs the column mapping", "new.csv was not read")
    _fails(run_cli(["predict", "--run", run, "--input", str(new), "--columns", columns, "--track", "kalman"],
                   workspace), "sequence")
    # Live Inference: the same table uploaded and mapped as on the import tab, the same answers
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "views" / "live_inference.py"),
                           default_timeout=60)
    at.run()
    at.multiselect(key="li_runs").set_value([run])
    at.file_uploader(key="li_upload").set_value(("new.csv", new.read_bytes(), "text/csv"))
    at.run()
    for key, column in WALK_COLUMNS.items():
        at.selectbox(key=f"li_tab_{key}").set_value(column)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "table_rss_dbm_out_of_range 1" in at.warning[0].value
    first = direct.runs[0].predictions[0]
    assert at.metric[0].value == f"{first.lat:.6f}, {first.lon:.6f}"
    at.selectbox(key="li_tab_rss_dbm").set_value("(none)")
    at.run()
    assert not at.exception and "columns: map at least one measurement key" in at.error[0].value


def _antwerp_wide(shared_data: Path, folder: Path, rows: int) -> Path:
    """Antwerp's x_val.csv (BS 1 ... BS 72, -200 = not received) beside y_val.csv's positions, one wide table."""
    root = shared_data / "real" / "antwerp_lorawan"
    if not (root / "x_val.csv").is_file():
        pytest.skip(f"{root} is absent")
    x, y = pd.read_csv(root / "x_val.csv", nrows=rows), pd.read_csv(root / "y_val.csv", nrows=rows)
    path = folder / "antwerp_wide.csv"
    pd.concat([y, x], axis=1).to_csv(path, index=False)
    return path


def test_a_wide_table_reads_as_the_antwerp_converter(shared_data: Path, tmp_path: Path) -> None:
    """One row per message, one column per gateway: the same samples, RSS and truths as convert_antwerp."""
    from rflocal_core.measurements import convert_antwerp

    src = _antwerp_wide(shared_data, tmp_path, 1500)
    table = read_table(src, columns={"truth_lat": "Latitude", "truth_lon": "Longitude"}, mode="emitter",
                       node_columns=["BS *"], missing=["-200"])
    ref = convert_antwerp(shared_data / "real" / "antwerp_lorawan", split="val", limit=1500)
    ms = table.measurements
    assert len(ms.samples) == len(ref.samples) == 1500 and ms.samples[0].id == "row-1"
    for mine, theirs in zip(ms.samples, ref.samples):
        assert (mine.truth.lat, mine.truth.lon) == (theirs.truth.lat, theirs.truth.lon)
        assert sorted(r.rss_dbm for r in mine.reports) == sorted(r.rss_dbm for r in theirs.reports)
    report = table.report
    assert (report.rows, report.rows_used, report.reports) == (1500, 1500, sum(len(s.reports) for s in ref.samples))
    assert report.to_dict()["issues"]["missing_value"]["count"] == 1500 * 72 - report.reports  # cells
    assert table.input_info["node_columns"][:2] == ["BS 1", "BS 2"] and len(table.input_info["node_columns"]) == 72
    assert WIDE_NODE not in table.input_info["columns"].values()
    assert "wide: one column per node (72 node columns: BS 1, BS 2" in ms.notes[0] and "(row id)" not in ms.notes[0]
    with pytest.raises(InvalidInputError, match="columns: rss_dbm: in a wide table the node columns name the nodes"):
        read_table(src, columns={"rss_dbm": "BS 1"}, node_columns=["BS *"])
    with pytest.raises(InvalidInputError, match="map the emitter's true position as truth_lat/truth_lon"):
        read_table(src, columns={"lat": "Latitude", "lon": "Longitude"}, mode="emitter", node_columns=["BS *"])
    with pytest.raises(InvalidInputError, match="node_value: expected one of rss_dbm"):
        read_table(src, columns={}, node_columns=["BS *"], node_value="rsrq")
    with pytest.raises(TableFormatError, match=r"node_columns: no column matches 'WAP\*'"):
        read_table(src, columns={}, node_columns=["WAP*"])


def test_a_messy_wide_table_names_the_file_rows(shared_data: Path, tmp_path: Path) -> None:
    """A stray delimiter, a word, -999 dBm and a row heard by none, in real Antwerp rows: counted by file row."""
    lines = _antwerp_wide(shared_data, tmp_path, 30).read_text().splitlines()
    lines[5] += ",extra"  # data row 5
    lines[7] = lines[7].replace("-200", "abc", 1)
    lines[9] = lines[9].replace("-200", "-999", 1)
    lines[11] = ",".join(lines[11].split(",")[:2] + ["-200"] * 72)
    src = _write(tmp_path, "messy.csv", "\n".join(lines) + "\n")
    table = read_table(src, columns={"truth_lat": "Latitude", "truth_lon": "Longitude"}, mode="emitter",
                       node_columns=["BS *"], missing=["-200"])
    issues = table.report.to_dict()["issues"]
    assert {k: (v["count"], v["rows"]) for k, v in issues.items() if k != "missing_value"} == {
        "wrong_field_count": (1, [5]), "no_node_heard": (1, [11]), "rss_dbm_not_a_number": (1, [7]),
        "rss_dbm_out_of_range": (1, [9]), "no_measurement": (2, [7, 9])}
    assert (table.report.rows, table.report.rows_used, table.report.samples) == (30, 28, 28)
    with pytest.raises(TableFormatError, match="wrong_field_count"):
        read_table(src, columns={"truth_lat": "Latitude", "truth_lon": "Longitude"}, mode="emitter",
                   node_columns=["BS *"], missing=["-200"], strict=True)
    tiny = _write(tmp_path, "tiny.csv", "lat,lon,G1,G2\n51.2,4.4,-200,-90\n51.21,4.41,-80,\n51.22,4.42,-70,-75\n")
    small = read_table(tiny, columns={"lat": "lat", "lon": "lon"}, node_columns=["G*"], missing=["-200"])
    assert small.report.to_dict()["issues"]["missing_value"]["rows"] == [1]  # the row holding the -200 (empty: unheard)
    assert [len(s.reports) for s in small.measurements.samples] == [1, 1, 2]


def test_a_european_locale_export_reads_as_the_file_it_came_from(shared_data: Path, tmp_path: Path) -> None:
    """';' between fields and ',' as the decimal mark (a spreadsheet saved in a Belgian locale): real Antwerp
    and Duke rows read into the same samples; a comma-delimited file's quoted "1,5" stays a bad cell."""
    src = _antwerp_wide(shared_data, tmp_path, 300)
    euro = tmp_path / "antwerp_eu.csv"
    pd.read_csv(src).to_csv(euro, sep=";", decimal=",", index=False)
    assert "51,2" in euro.read_text()  # the latitudes are written with a decimal comma
    options = {"columns": {"truth_lat": "Latitude", "truth_lon": "Longitude"}, "mode": "emitter",
               "node_columns": ["BS *"], "missing": ["-200"]}
    ref, mine = read_table(src, **options), read_table(euro, **options)
    assert mine.report.to_dict() == ref.report.to_dict() and mine.report.to_dict()["issues"].keys() == {"missing_value"}
    assert [(s.truth.lat, s.truth.lon) for s in mine.measurements.samples] == \
        [(s.truth.lat, s.truth.lon) for s in ref.measurements.samples]
    duke = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not duke.is_file():
        pytest.skip(f"{duke} is absent")
    frame = pd.read_csv(duke, nrows=500)
    frame.assign(rsrp=frame.rsrp + 0.5).to_csv(tmp_path / "duke_eu.csv", sep=";", decimal=",", index=False)
    table = read_table(tmp_path / "duke_eu.csv", columns=DUKE_COLUMNS, group_by=DUKE_GROUP)
    assert not table.report.issues or [i.reason for i in table.report.issues] == ["duplicate_reports_merged"]
    assert table.measurements.samples[0].reports[0].rss_dbm == frame.rsrp[0] + 0.5  # -123.5: the half kept
    quoted = _write(tmp_path, "quoted.csv", 'sample,node,rss,lat,lon\ns1,A,"-87,5",51.2,4.4\ns1,B,-90,51.2,4.4\n')
    issues = read_table(quoted, columns={"sample": "sample", "node": "node", "rss_dbm": "rss", "lat": "lat",
                                         "lon": "lon"}).report.to_dict()["issues"]
    assert issues["rss_dbm_not_a_number"]["values"] == ["-87,5"]


def test_a_wide_table_imports_trains_and_predicts_on_the_command_line(shared_data: Path, tmp_path: Path,
                                                                       workspace: Path, run_cli: Any) -> None:
    src = _antwerp_wide(shared_data, tmp_path, 2000)
    flags = ["--columns", "truth_lat=Latitude,truth_lon=Longitude", "--mode", "emitter", "--node-columns", "BS *",
             "--missing", "-200"]
    out = _ok(run_cli(["data", "import", str(src), "--name", "aw", *flags], workspace))
    assert out["samples"] == 2000 and out["table"]["rows_used"] == 2000
    run = _ok(run_cli(["train", "--dataset", "aw", "--model", "knn"], workspace))["run_id"]
    predicted = _ok(run_cli(["predict", "--run", run, "--input", str(src), *flags], workspace))
    errors = [p["error_m"] for p in predicted["predictions"]]
    # the training messages themselves: kNN finds their own fingerprints (a guess over the city is km off)
    assert len(errors) == 2000 and np.median(errors) < 100.0
    _fails(run_cli(["data", "import", str(src), "--name", "aw2", "--node-columns", "BS *", "--columns",
                    "rss_dbm=BS 1"], workspace), "columns: rss_dbm: in a wide table")


def test_page_imports_a_wide_table(shared_data: Path, tmp_path: Path, workspace: Path) -> None:
    """The mapping's "Node columns (wide table)": Antwerp's gateway columns by a glob, emitter mode, on the page."""
    src = _antwerp_wide(shared_data, tmp_path, 300)
    at = import_tab("antwerp_wide.csv", src.read_bytes(), "text/csv")
    at.radio(key="dg_tab_mode").set_value("emitter")
    at.text_input(key="dg_tab_wide").set_value("BS *")
    at.text_input(key="dg_tab_missing").set_value("-200")
    for key, column in {"lat": "(none)", "lon": "(none)", "truth_lat": "Latitude", "truth_lon": "Longitude"}.items():
        at.selectbox(key=f"dg_tab_{key}").set_value(column)
    at.text_input(key="dg_import_name").set_value("antwerp-wide")
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith("Imported **antwerp-wide**: 300 samples")
    assert open_dataset("antwerp-wide").attrs["input"]["node_columns"][0] == "BS 1"


# --------------------------------------------------------------------------- the real Duke drive test


def test_duke_cbrs_import_and_knn(shared_data: Path, workspace: Path) -> None:
    from rflocal_core.infer import evaluate_run
    from rflocal_core.train import train

    src = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    summary = import_table(src, name="duke", columns=DUKE_COLUMNS, group_by=DUKE_GROUP)
    table = summary.table
    assert (table.rows, table.rows_used, table.samples, table.reports) == (46655, 46655, 12595, 25168)
    assert table.nodes_unknown_position == ("A", "B", "C", "D", "E", "F")
    assert [i.reason for i in table.issues] == ["duplicate_reports_merged"] and table.issues[0].count == 21487
    assert summary.splits == {"train": 10076, "val": 1260, "test": 1259, "test_unseen": 0}
    run = train("duke", "knn")
    figures = evaluate_run(run.run_id, "duke", split="test").summary
    assert figures.count == 1259
    assert 30.0 < figures.median_m < 70.0  # measured 48.0 m (random split, seed 0)
    with pytest.raises(InvalidInputError, match="no node reporting in the train split of 'duke' has a known position"):
        train("duke", "weighted_centroid")


# --------------------------------------------------------------------------- the Data Generation page


def test_page_imports_split_by_squares(tmp_path: Path, workspace: Path) -> None:
    """The import tab's "Split by squares" reaches both imports (table and JSON); a bad size is an st.error."""
    from rflocal_core.measurements import dumps_measurements

    text = _line_walk(200)
    at = import_tab("walk.csv", text.encode(), "text/csv")
    for key, column in {"sample": "walk_id", "node": "cell", "lat": "lat", "lon": "lon", "rss_dbm": "rsrp"}.items():
        at.selectbox(key=f"dg_tab_{key}").set_value(column)
    at.number_input(key="dg_import_block").set_value(250.0)
    at.text_input(key="dg_import_name").set_value("squares")
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    split = open_dataset("squares").attrs["input"]["split"]
    assert split["block_m"] == 250.0 and sum(split["blocks"].values()) == 8  # the walk's 2 km in 250 m squares
    blocks = split["blocks"]
    assert f"Split by squares of 250 m: {blocks['train']} to train, {blocks['val']} to val, {blocks['test']} to test" \
        in [c.value for c in at.caption]
    ms = read_table(text.encode(), kind="csv", columns=WALK_COLUMNS).measurements
    at.file_uploader(key="dg_import_file").set_value(("walk.json", dumps_measurements(ms).encode(), "application/json"))
    at.text_input(key="dg_import_name").set_value("squares-json")
    at.run()
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert open_dataset("squares-json").attrs["input"]["split"] == split  # same samples, squares and seed
    at.number_input(key="dg_import_block").set_value(0.5)
    at.text_input(key="dg_import_name").set_value("squares-bad")
    at.run()
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception
    assert "split_block_m: expected a number of metres in [1, 100000], got 0.5" in at.error[0].value


def test_page_maps_previews_and_imports_a_table(workspace: Path) -> None:
    at = import_tab("walk.csv", GROUPED.encode(), "text/csv")
    assert not at.exception and not at.error, [e.value for e in at.error]
    guessed = {key: at.selectbox(key=f"dg_tab_{key}").value for key in ("sample", "node", "lat", "lon", "rss_dbm")}
    assert guessed == {"sample": "(none)", **DUKE_COLUMNS}
    assert at.multiselect(key="dg_tab_group").value == list(DUKE_GROUP)
    at.text_input(key="dg_tab_missing").set_value("-101, -200")
    at.button(key="dg_tab_preview").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # by its columns: jobs of other tests in this process may add their summary tables to the page
    (preview,) = [d.value for d in at.dataframe if "reports" in d.value.columns]
    assert list(preview["sample"]) == ["row-1", "row-5", "row-6"] and list(preview["reports"]) == [2, 1, 1]
    assert "3 samples from 5 of 9 rows" in [c.value for c in at.caption]
    at.text_input(key="dg_import_name").set_value("walk")
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith("Imported **walk**: 3 samples, 3 nodes")
    assert open_dataset("walk").attrs["input"]["table"]["rows_used"] == 5
    at.selectbox(key="dg_tab_rss_dbm").set_value("(none)")
    at.button(key="dg_tab_preview").click()
    at.run()
    assert not at.exception
    assert "columns: map at least one measurement key" in at.error[0].value
    at.file_uploader(key="dg_import_file").set_value(("empty.csv", b"", "text/csv"))
    at.run()
    assert not at.exception
    assert "expected a header line and rows, got an empty file" in at.error[0].value


def test_times_as_epoch_milliseconds_and_in_a_given_format(shared_data: Path, tmp_path: Path, workspace: Path,
                                                          run_cli: Any) -> None:
    """Real Duke rows with times as ISO 8601, epoch milliseconds and G-NetTrack's 2019.07.16_10.45.21: the same
    reports at the same times (the last to the second it keeps); a format that reads nothing is refused."""
    src = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    frame = pd.read_csv(src, nrows=300).assign(sample=lambda f: np.arange(len(f)) // 6)
    stamps = pd.Timestamp("2019-07-16 10:45:21", tz="UTC") + pd.to_timedelta(np.arange(300) // 3 * 2.0, unit="s")
    columns = {"sample": "sample", "time": "time", "node": "PCI", "lat": "latitude", "lon": "longitude",
               "rss_dbm": "rsrp"}
    tables = {}
    for name, cells, fmt in (("iso", stamps.strftime("%Y-%m-%dT%H:%M:%S"), None),
                             ("ms", (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1), None),
                             ("gnet", stamps.strftime("%Y.%m.%d_%H.%M.%S"), "%Y.%m.%d_%H.%M.%S")):
        frame.assign(time=cells).to_csv(tmp_path / f"{name}.csv", index=False)
        tables[name] = read_table(tmp_path / f"{name}.csv", columns=columns, time_format=fmt)
    times = {name: [[(r.node, r.t_s) for r in s.reports] for s in t.measurements.samples] for name, t in tables.items()}
    assert times["iso"] == times["ms"] == times["gnet"] and {t for s in times["iso"] for _, t in s} == {0.0, 2.0}
    unit = tables["ms"].report.to_dict()["issues"]["time_unit"]
    assert unit["count"] == 300 and unit["action"] == "read as milliseconds" and not unit["fault"]
    assert "time_unit" not in tables["iso"].report.to_dict()["issues"]
    with pytest.raises(TableFormatError, match="nor ISO 8601 timestamps .*give time_format"):
        read_table(tmp_path / "gnet.csv", columns=columns)
    with pytest.raises(TableFormatError, match="holds no timestamp in the format '%d/%m/%Y %H:%M:%S'"):
        read_table(tmp_path / "iso.csv", columns=columns, time_format="%d/%m/%Y %H:%M:%S")
    with pytest.raises(InvalidInputError, match="time_format: expected a strftime format"):
        read_table(tmp_path / "iso.csv", columns=columns, time_format="YYYY-MM-DD")
    flags = ["--columns", ",".join(f"{k}={v}" for k, v in columns.items())]
    out = _ok(run_cli(["data", "import", str(tmp_path / "gnet.csv"), "--name", "gnet", *flags,
                       "--time-format", "%Y.%m.%d_%H.%M.%S"], workspace))
    assert out["samples"] == 50 and open_dataset("gnet").attrs["input"]["time_format"] == "%Y.%m.%d_%H.%M.%S"
    _fails(run_cli(["data", "import", str(tmp_path / "gnet.csv"), "--name", "gnet2", *flags, "--time-format", "%Q"],
                   workspace), "time_format: expected a strftime format")


def test_trailing_delimiters_and_a_unicode_minus_are_no_fault(shared_data: Path, tmp_path: Path) -> None:
    """Writers that end every line with a delimiter (rows, or the header only) and write -87 as U+2212 -87: real
    Duke rows read as the original; a stray delimiter inside a row, or a trailing one with a value, is still one."""
    src = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    lines = src.read_text().splitlines()[:201]
    ref = read_table(_write(tmp_path, "duke.csv", "\n".join(lines) + "\n"), columns=DUKE_COLUMNS, group_by=DUKE_GROUP)
    rows_comma = [lines[0], *(line + "," for line in lines[1:])]
    header_comma = [lines[0] + ",", *lines[1:]]
    minus = [lines[0], *(line.replace(",-", ",\u2212") for line in lines[1:])]
    for name, variant in (("rows", rows_comma), ("header", header_comma), ("minus", minus)):
        table = read_table(_write(tmp_path, f"{name}.csv", "\n".join(variant) + "\n"), columns=DUKE_COLUMNS,
                           group_by=DUKE_GROUP)
        assert table.report.to_dict() == ref.report.to_dict(), name
        assert [[r.rss_dbm for r in s.reports] for s in table.measurements.samples] == \
            [[r.rss_dbm for r in s.reports] for s in ref.measurements.samples], name
    assert "\u2212124" in minus[1]
    messy = [*rows_comma[:3], lines[3] + ",x", lines[4].replace(",", ",,", 1), *rows_comma[5:]]
    issues = read_table(_write(tmp_path, "messy.csv", "\n".join(messy) + "\n"), columns=DUKE_COLUMNS,
                        group_by=DUKE_GROUP).report.to_dict()["issues"]
    assert issues["wrong_field_count"]["rows"] == [3, 4]


def test_an_excel_workbook_reads_as_the_csv_it_was_saved_from(shared_data: Path, tmp_path: Path, workspace: Path,
                                                              run_cli: Any) -> None:
    """Real Duke rows saved as .xlsx (numbers, a text cell, dates as Excel dates): the same samples as the CSV;
    a damaged workbook and an XML entity bomb are refused; data import reads it."""
    import zipfile

    src = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    frame = pd.read_csv(src, nrows=1500)
    frame["time"] = pd.Timestamp("2019-07-16 10:45:21") + pd.to_timedelta(np.arange(1500) // 4, unit="s")
    frame["rsrp"] = frame["rsrp"].astype(object)
    frame.loc[3, "rsrp"] = "weak"  # one text cell; the others stay numbers in the workbook
    frame.to_csv(tmp_path / "duke.csv", index=False)
    frame.to_excel(tmp_path / "duke.xlsx", index=False, sheet_name="walk")
    options = {"columns": {**DUKE_COLUMNS, "time": "time"}, "group_by": DUKE_GROUP}
    ref, mine = read_table(tmp_path / "duke.csv", **options), read_table(tmp_path / "duke.xlsx", **options)
    assert mine.report.to_dict() == {**ref.report.to_dict(), "kind": "xlsx"}
    assert mine.report.to_dict()["issues"]["rss_dbm_not_a_number"]["rows"] == [4]
    assert [[(r.node, r.rss_dbm, r.t_s) for r in s.reports] for s in mine.measurements.samples] == \
        [[(r.node, r.rss_dbm, r.t_s) for r in s.reports] for s in ref.measurements.samples]
    assert read_table_header(tmp_path / "duke.xlsx").columns == ("PCI", "latitude", "longitude", "device", "rsrp",
                                                                 "time")
    bomb = tmp_path / "bomb.xlsx"  # the sheet's XML declares entities that expand (billion laughs): never expanded
    with zipfile.ZipFile(tmp_path / "duke.xlsx") as zin, zipfile.ZipFile(bomb, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                entities = '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                data = entities.encode() + data
            zout.writestr(item, data)
    with pytest.raises(TableFormatError, match=r"bomb.xlsx: not a readable Excel workbook \(.xlsx\): EntitiesForbidden"):
        read_table(bomb, **options)
    at = import_tab("duke.xlsx", (tmp_path / "duke.xlsx").read_bytes(),
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    assert not at.exception and any(c.value.startswith("XLSX table: 1,500 rows, columns PCI, latitude")
                                    for c in at.caption)
    at.text_input(key="dg_import_name").set_value("duke-xlsx")
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception and at.success[0].value.startswith("Imported **duke-xlsx**"), [e.value for e in at.error]
    out = _ok(run_cli(["data", "import", str(tmp_path / "duke.xlsx"), "--name", "dx", "--columns",
                       "node=PCI,lat=latitude,lon=longitude,rss_dbm=rsrp,time=time", "--group-by",
                       "latitude,longitude,device"], workspace))
    assert out["samples"] == ref.report.samples and out["table"]["kind"] == "xlsx"


def test_the_sheet_of_a_workbook_is_chosen_by_name_or_number(shared_data: Path, tmp_path: Path, workspace: Path,
                                                             run_cli: Any) -> None:
    """A drive-test workbook with a cover sheet first: --sheet / sheet= / the page's "Sheet" read the data sheet."""
    src = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    frame = pd.read_csv(src, nrows=800)
    frame.to_csv(tmp_path / "duke.csv", index=False)
    with pd.ExcelWriter(tmp_path / "book.xlsx") as book:
        pd.DataFrame({"Drive test": ["Duke campus", "phones: Pixel, Samsung"]}).to_excel(book, sheet_name="Notes",
                                                                                         index=False)
        frame.to_excel(book, sheet_name="Walk 1", index=False)
    options = {"columns": DUKE_COLUMNS, "group_by": DUKE_GROUP}
    ref = read_table(tmp_path / "duke.csv", **options)
    for sheet in ("Walk 1", "2"):
        mine = read_table(tmp_path / "book.xlsx", sheet=sheet, **options)
        assert mine.report.to_dict() == {**ref.report.to_dict(), "kind": "xlsx"}, sheet
        assert mine.input_info["sheet"] == sheet
    header = read_table_header(tmp_path / "book.xlsx", sheet="Walk 1")
    assert header.sheets == ("Notes", "Walk 1") and header.columns[:2] == ("PCI", "latitude")
    with pytest.raises(TableFormatError, match=r"the columns are 'Drive test' \(sheet 'Notes' read; the workbook's "
                                               r"sheets are 'Notes', 'Walk 1': choose one with sheet\)"):
        read_table(tmp_path / "book.xlsx", **options)  # the first sheet: the cover
    with pytest.raises(TableFormatError, match="sheet: no sheet named or numbered '3'; the sheets are 'Notes', "):
        read_table(tmp_path / "book.xlsx", sheet="3", **options)
    with pytest.raises(InvalidInputError, match="sheet: applies to Excel workbooks"):
        read_table(tmp_path / "duke.csv", sheet="Walk 1", **options)
    flags = ["--columns", "node=PCI,lat=latitude,lon=longitude,rss_dbm=rsrp", "--group-by", ",".join(DUKE_GROUP)]
    out = _ok(run_cli(["data", "import", str(tmp_path / "book.xlsx"), "--name", "wb", "--sheet", "Walk 1", *flags],
                      workspace))
    assert out["samples"] == ref.report.samples
    _fails(run_cli(["data", "import", str(tmp_path / "duke.csv"), "--name", "wb2", "--sheet", "2", *flags], workspace),
           "sheet: applies to Excel workbooks (.xlsx); duke.csv is a CSV table")
    at = import_tab("book.xlsx", (tmp_path / "book.xlsx").read_bytes(),
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    at.selectbox(key="dg_tab_sheet").set_value("Walk 1")
    at.run()
    assert any(c.value.startswith("XLSX table: 800 rows, columns PCI, latitude") for c in at.caption)
    import_with(at, dg_import_name="duke-sheet")
    assert at.success[0].value.startswith(f"Imported **duke-sheet**: {ref.report.samples:,} samples")
