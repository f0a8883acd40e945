"""The measurement exchange format ``rflocal-measurements/1``: validation messages, round trip, survey, lenient mode."""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rflocal_core.errors import InvalidInputError, RFLocalInputError
from rflocal_core.geo import LocalFrame
from rflocal_core.measurements import (
    FORMAT_ID,
    MAX_MEASUREMENT_FILE_BYTES,
    MeasurementFormatError,
    MeasurementSet,
    Node,
    Position,
    Report,
    Sample,
    SampleError,
    dump_measurements,
    dumps_measurements,
    load_measurements,
    parse_measurements,
    to_json_dict,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "assets" / "example_measurements_format.json"
EXAMPLE_SURVEY = REPO_ROOT / "assets" / "example_survey.json"

#: Stands for a JSON literal (NaN, Infinity, -Infinity) that json.dumps cannot write.
LITERAL = "__LITERAL__"


def base_doc() -> dict[str, Any]:
    """A small valid document; each malformed case changes one thing."""
    return {
        "format": FORMAT_ID,
        "mode": "ue",
        "scene": "demo",
        "nodes": [
            {"id": "site-0", "lat": 48.1371, "lon": 11.5754, "alt_m": 25.0, "tx_power_dbm": 43.0},
            {"id": "site-1", "x_m": 260.0, "y_m": 231.0},
        ],
        "samples": [
            {
                "id": "s-1",
                "reports": [
                    {"node": "site-0", "t_s": 0.0, "rss_dbm": -87.0, "toa_ns": 812.5, "aoa_deg": 231.0, "snr_db": 12.5},
                    {"node": "site-1", "rss_dbm": -95.0, "ta": 3},
                ],
                "truth": {"lat": 48.1375, "lon": 11.5761},
            },
            {"id": "s-2", "reports": [{"node": "site-0", "rss_dbm": -80.0}]},
        ],
    }


def base_survey() -> dict[str, Any]:
    return {
        "tx1": {
            "features": {"x": [51.21, 51.22, 51.23], "y": [4.40, 4.41, 4.42], "rssi": [-90.0, -95.0, -99.0]},
            "targets": {"source_x": 51.215, "source_y": 4.405},
        }
    }


def encode(doc: Any, literal: str | None = None) -> bytes:
    text = json.dumps(doc)
    if literal is not None:
        text = text.replace(json.dumps(LITERAL), literal)
    return text.encode("utf-8")


def edit(fn: Callable[[dict[str, Any]], Any], *, literal: str | None = None, base=base_doc) -> bytes:
    doc = copy.deepcopy(base())
    fn(doc)
    return encode(doc, literal)


def report0(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["samples"][0]["reports"][0]


def _set(mapping_of: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any):
    def fn(doc: dict[str, Any]) -> None:
        mapping_of(doc)[key] = value
    return fn


def _del(mapping_of: Callable[[dict[str, Any]], dict[str, Any]], *keys: str):
    def fn(doc: dict[str, Any]) -> None:
        for key in keys:
            del mapping_of(doc)[key]
    return fn


def _root(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


def _node0(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["nodes"][0]


def _sample0(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["samples"][0]


def _truth0(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["samples"][0]["truth"]


def _dup_node(doc: dict[str, Any]) -> None:
    doc["nodes"][1]["id"] = "site-0"


def _dup_sample(doc: dict[str, Any]) -> None:
    doc["samples"][1]["id"] = "s-1"


# (case id, file content, expected path, expected text in the message)
MALFORMED: list[tuple[str, bytes, str, str]] = [
    ("format-unknown", edit(_set(_root, "format", "rflocal-measurements/2")), "format",
     'expected "rflocal-measurements/1", got "rflocal-measurements/2"'),
    ("format-missing", edit(_del(_root, "format")), "format", 'expected "rflocal-measurements/1", got nothing'),
    ("top-key-unknown", edit(_set(_root, "colour", "red")), "colour",
     "unknown key; expected one of format, mode, scene, notes, nodes, samples"),
    ("mode-bad", edit(_set(_root, "mode", "drone")), "mode", 'expected "ue" (known nodes transmit'),
    ("mode-missing", edit(_del(_root, "mode")), "mode", "got nothing"),
    ("scene-not-string", edit(_set(_root, "scene", 5)), "scene",
     "expected a scene name (a non-empty string) or null, got 5"),
    ("notes-not-list", edit(_set(_root, "notes", "hello")), "notes", 'expected a list of strings, got "hello"'),
    ("samples-empty", edit(_set(_root, "samples", [])), "samples", "expected a non-empty list of samples, got []"),
    ("samples-missing", edit(_del(_root, "samples")), "samples", "expected a non-empty list of samples, got nothing"),
    ("nodes-not-list", edit(_set(_root, "nodes", {"id": "x"})), "nodes", "expected a list of nodes, got an object"),
    ("rss-string", edit(_set(report0, "rss_dbm", "abc")), "samples[0].reports[0].rss_dbm",
     'expected a number in [-200, 30], got "abc"'),
    ("rss-too-high", edit(_set(report0, "rss_dbm", 45)), "samples[0].reports[0].rss_dbm",
     "expected a number in [-200, 30], got 45"),
    ("rss-boolean", edit(_set(report0, "rss_dbm", True)), "samples[0].reports[0].rss_dbm",
     "expected a number in [-200, 30], got true"),
    ("rss-nan-literal", edit(_set(report0, "rss_dbm", LITERAL), literal="NaN"), "samples[0].reports[0].rss_dbm",
     "expected a number in [-200, 30], got NaN"),
    ("toa-infinity-literal", edit(_set(report0, "toa_ns", LITERAL), literal="Infinity"),
     "samples[0].reports[0].toa_ns", "expected a number in [0, 1e7], got Infinity"),
    ("aoa-minus-infinity-literal", edit(_set(report0, "aoa_deg", LITERAL), literal="-Infinity"),
     "samples[0].reports[0].aoa_deg", "expected a number in [0, 360], got -Infinity"),
    ("lat-overflow-1e999", edit(_set(_truth0, "lat", LITERAL), literal="1e999"), "samples[0].truth.lat",
     "expected a number in [-90, 90], got Infinity"),
    ("toa-negative", edit(_set(report0, "toa_ns", -1)), "samples[0].reports[0].toa_ns",
     "expected a number in [0, 1e7], got -1"),
    ("ta-fraction", edit(_set(report0, "ta", 3.5)), "samples[0].reports[0].ta",
     "expected an integer in [0, 65535], got 3.5"),
    ("ta-too-large", edit(_set(report0, "ta", 70000)), "samples[0].reports[0].ta",
     "expected an integer in [0, 65535], got 70000"),
    ("aoa-too-large", edit(_set(report0, "aoa_deg", 361)), "samples[0].reports[0].aoa_deg",
     "expected a number in [0, 360], got 361"),
    ("snr-too-low", edit(_set(report0, "snr_db", -60)), "samples[0].reports[0].snr_db",
     "expected a number in [-50, 100], got -60"),
    ("t-negative", edit(_set(report0, "t_s", -1)), "samples[0].reports[0].t_s", "expected a number >= 0, got -1"),
    ("t-string", edit(_set(report0, "t_s", "0")), "samples[0].reports[0].t_s", 'expected a number >= 0, got "0"'),
    ("report-no-measurement", edit(_del(report0, "rss_dbm", "toa_ns", "aoa_deg", "snr_db")),
     "samples[0].reports[0]", "expected at least one measurement (rss_dbm, toa_ns, ta, aoa_deg, snr_db), got none"),
    ("report-unknown-node", edit(_set(report0, "node", "site-9")), "samples[0].reports[0].node",
     'expected the id of a node listed in "nodes" (site-0, site-1), got "site-9"'),
    ("report-node-and-position", edit(_set(report0, "lat", 48.0)), "samples[0].reports[0]",
     "expected either a node id or the report's own position"),
    ("report-neither-node-nor-position", edit(_del(report0, "node")), "samples[0].reports[0].node",
     "expected a node id or the report's own position (lat/lon or x_m/y_m), got neither"),
    ("report-key-unknown", edit(_set(report0, "rssi", -80)), "samples[0].reports[0].rssi",
     "unknown key; expected one of node, t_s, rss_dbm, toa_ns, ta, aoa_deg, snr_db, lat, lon, x_m, y_m, alt_m"),
    ("report-not-object", edit(lambda d: d["samples"][0]["reports"].__setitem__(0, [1, 2])),
     "samples[0].reports[0]", "expected a report object"),
    ("mobile-report-lat-without-lon", edit(lambda d: d["samples"][0]["reports"].__setitem__(
        0, {"lat": 48.1, "rss_dbm": -80})), "samples[0].reports[0].lon",
     "expected a number in [-180, 180] together with lat, got nothing"),
    ("mobile-report-only-alt", edit(lambda d: d["samples"][0]["reports"].__setitem__(
        0, {"alt_m": 50.0, "rss_dbm": -80})), "samples[0].reports[0]", "got only alt_m"),
    ("reports-empty", edit(_set(_sample0, "reports", [])), "samples[0].reports",
     "expected a non-empty list of reports, got []"),
    ("sample-key-unknown", edit(_set(_sample0, "colour", "red")), "samples[0].colour",
     "unknown key; expected one of id, reports, truth, sequence"),
    ("sample-not-object", edit(lambda d: d["samples"].__setitem__(0, "s-1")), "samples[0]",
     'expected a sample object {"id": ..., "reports": [...]}, got "s-1"'),
    ("sample-id-duplicate", edit(_dup_sample), "samples[1].id",
     'expected unique sample ids, got "s-1" again (first at samples[0])'),
    ("sample-id-number", edit(_set(_sample0, "id", 7)), "samples[0].id", "expected a non-empty string"),
    ("truth-lat-out-of-range", edit(_set(_truth0, "lat", 100)), "samples[0].truth.lat",
     "expected a number in [-90, 90], got 100"),
    ("truth-empty", edit(_set(_sample0, "truth", {})), "samples[0].truth",
     "expected a position as lat/lon or x_m/y_m, got neither"),
    ("truth-key-unknown", edit(_set(_truth0, "z_m", 3)), "samples[0].truth.z_m",
     "unknown key; expected one of lat, lon, x_m, y_m, alt_m"),
    ("node-lat-out-of-range", edit(_set(_node0, "lat", 91)), "nodes[0].lat", "expected a number in [-90, 90], got 91"),
    ("node-lon-out-of-range", edit(_set(_node0, "lon", -181)), "nodes[0].lon",
     "expected a number in [-180, 180], got -181"),
    ("node-lat-without-lon", edit(_del(_node0, "lon")), "nodes[0].lon",
     "expected a number in [-180, 180] together with lat, got nothing"),
    ("node-no-position", edit(_del(_node0, "lat", "lon")), "nodes[0]",
     'expected lat/lon or x_m/y_m, or "position": null if the node\'s position is unknown, got neither'),
    ("node-position-object", edit(_set(_node0, "position", {"lat": 1, "lon": 2})), "nodes[0].position",
     "expected null (the node's position is unknown)"),
    ("node-position-null-and-lat", edit(_set(_node0, "position", None)), "nodes[0].position",
     'expected either "position": null or a position, got both ("position": null and lat)'),
    ("node-id-number", edit(_set(_node0, "id", 5)), "nodes[0].id", "expected a non-empty string, got 5"),
    ("node-id-missing", edit(_del(_node0, "id")), "nodes[0].id", "expected a non-empty string, got nothing"),
    ("node-id-duplicate", edit(_dup_node), "nodes[1].id", 'expected unique node ids, got "site-0" again'),
    ("node-tx-power-string", edit(_set(_node0, "tx_power_dbm", "43")), "nodes[0].tx_power_dbm",
     'expected a number in [-100, 100], got "43"'),
    ("node-key-unknown", edit(_set(_node0, "height", 3)), "nodes[0].height",
     "unknown key; expected one of id, lat, lon, x_m, y_m, alt_m, tx_power_dbm, carrier_hz, position"),
    ("node-alt-boolean", edit(_set(_node0, "alt_m", False)), "nodes[0].alt_m",
     "expected a number in [-1000, 100000], got false"),
]

FILE_LEVEL: list[tuple[str, bytes, str]] = [
    ("invalid-json", b'{\n  "format": "rflocal-measurements/1",\n  "mode": "ue"\n  "samples": []\n}',
     "invalid JSON at line 4, column 3: Expecting ',' delimiter"),
    ("not-utf8", b'{"format": "rflocal-measurements/1", "scene": "M\xfcnchen"}',
     "expected UTF-8 encoded JSON, got byte 0xfc at offset"),
    ("empty-file", b"  \n", "expected a JSON object, got an empty file"),
    ("root-list", b"[1, 2]", "expected a JSON object"),
    ("root-unrecognized", b'{"hello": 1}', "expected an rflocal-measurements/1 document"),
]


def test_enough_malformed_cases() -> None:
    assert len(MALFORMED) + len(FILE_LEVEL) >= 25


@pytest.mark.parametrize(("content", "path", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_documents_name_field_and_expectation(content: bytes, path: str, expected: str) -> None:
    with pytest.raises(MeasurementFormatError) as info:
        load_measurements(content)
    assert info.value.path == path
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in FILE_LEVEL], ids=[c[0] for c in FILE_LEVEL])
def test_malformed_files(content: bytes, expected: str) -> None:
    with pytest.raises(MeasurementFormatError) as info:
        load_measurements(content)
    assert expected in str(info.value), str(info.value)


def test_spec_example_message_exactly() -> None:
    doc = base_doc()
    doc["samples"] = [copy.deepcopy(doc["samples"][1]) for _ in range(4)]
    for i, sample in enumerate(doc["samples"]):
        sample["id"] = f"s-{i}"
    doc["samples"][3]["reports"][0]["rss_dbm"] = "abc"
    with pytest.raises(MeasurementFormatError) as info:
        parse_measurements(doc)
    assert str(info.value) == 'samples[3].reports[0].rss_dbm: expected a number in [-200, 30], got "abc"'


def test_error_classes() -> None:
    with pytest.raises(MeasurementFormatError) as info:
        load_measurements(b"{")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RFLocalInputError)
    assert info.value.path == ""
    err = MeasurementFormatError("expected x, got y", path="samples[0].id")
    copied = pickle.loads(pickle.dumps(err))
    assert (copied.path, copied.detail, str(copied)) == ("samples[0].id", "expected x, got y", str(err))
    with pytest.raises(InvalidInputError, match="on_error"):
        load_measurements(encode(base_doc()), on_error="ignore")  # type: ignore[arg-type]


def test_missing_sample_id_defaults_to_index() -> None:
    doc = base_doc()
    doc["samples"][0]["id"] = "first"
    del doc["samples"][1]["id"]
    ms = load_measurements(encode(doc))
    assert [s.id for s in ms.samples] == ["first", "s-1"]


def test_types_are_normalized() -> None:
    doc = base_doc()
    doc["samples"][0]["reports"][1]["ta"] = 3.0
    doc["samples"][0]["reports"][1]["snr_db"] = None  # null is the same as absent
    ms = load_measurements(encode(doc))
    r0, r1 = ms.samples[0].reports
    assert r1.ta == 3 and isinstance(r1.ta, int)
    assert r1.snr_db is None
    assert r1.t_s == 0.0  # default
    assert isinstance(ms.samples[1].reports[0].rss_dbm, float)
    assert r0.measurements == {"rss_dbm": -87.0, "toa_ns": 812.5, "aoa_deg": 231.0, "snr_db": 12.5}
    assert ms.nodes_by_id["site-1"].x_m == 260.0
    assert ms.samples[0].truth == Position(lat=48.1375, lon=11.5761)


def test_utf8_bom_is_accepted() -> None:
    ms = load_measurements(b"\xef\xbb\xbf" + encode(base_doc()))
    assert len(ms.samples) == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MeasurementFormatError, match="no such file"):
        load_measurements(tmp_path / "nope.json")
    with pytest.raises(MeasurementFormatError, match="got a folder"):
        load_measurements(str(tmp_path))


# --------------------------------------------------------------------------- round trip


def test_round_trip_example(tmp_path: Path) -> None:
    ms = load_measurements(EXAMPLE)
    out = dump_measurements(ms, tmp_path / "sub" / "out.json")
    again = load_measurements(out)
    assert again == ms
    assert to_json_dict(again) == to_json_dict(ms)
    assert json.loads(out.read_text(encoding="utf-8"))["format"] == FORMAT_ID


def test_round_trip_programmatic_set(tmp_path: Path) -> None:
    ms = MeasurementSet(
        mode="emitter",
        scene=None,
        nodes=(Node("gw-1", lat=51.2, lon=4.4, alt_m=30), Node("gw-2")),
        samples=(
            Sample("a", (Report(node="gw-1", rss_dbm=-100.5), Report(node="gw-2", rss_dbm=-110, t_s=2.5))),
            Sample("b", (Report(x_m=10.0, y_m=-5.0, alt_m=80.0, rss_dbm=-90, aoa_deg=359.9),), Position(x_m=1, y_m=2)),
        ),
        notes=("drone survey",),
    )
    path = dump_measurements(ms, tmp_path / "ms.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["nodes"][1] == {"id": "gw-2", "position": None}
    assert load_measurements(path) == ms
    assert load_measurements(dumps_measurements(ms).encode()) == ms


def test_dump_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ms = load_measurements(EXAMPLE)
    target = tmp_path / "out.json"
    target.write_text("old", encoding="utf-8")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        dump_measurements(ms, target)
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    dump_measurements(ms, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    assert load_measurements(target) == ms


def test_fill_positions_completes_both_ways() -> None:
    ms = load_measurements(EXAMPLE)
    frame = LocalFrame.at(48.1372, 11.5755)
    filled = ms.fill_positions(frame)
    for node in filled.nodes:
        assert None not in (node.lat, node.lon, node.x_m, node.y_m)
        assert isinstance(node.x_m, float) and isinstance(node.lat, float)
    for sample in filled.samples:
        t = sample.truth
        assert None not in (t.lat, t.lon, t.x_m, t.y_m)
    # x/y -> lat/lon -> x/y is consistent
    s3 = filled.samples[2].truth
    x, y = frame.to_xy(s3.lat, s3.lon)
    assert abs(float(x) - -120.0) < 1e-6 and abs(float(y) - 85.0) < 1e-6
    # lat/lon given values are kept
    assert filled.nodes[0].lat == 48.1371
    # a mobile report is completed too
    mobile = MeasurementSet("emitter", samples=(Sample("m", (Report(lat=48.1372, lon=11.5755, rss_dbm=-70),)),))
    rep = mobile.fill_positions(frame).samples[0].reports[0]
    assert abs(rep.x_m) < 1e-6 and abs(rep.y_m) < 1e-6


def test_dataclasses_validate_direct_construction() -> None:
    with pytest.raises(MeasurementFormatError, match="expected at least one measurement"):
        Report(node="a")
    with pytest.raises(MeasurementFormatError, match=r"rss_dbm: expected a number in \[-200, 30\], got NaN"):
        Report(node="a", rss_dbm=float("nan"))
    with pytest.raises(MeasurementFormatError, match="got neither"):
        Position()
    with pytest.raises(MeasurementFormatError, match=r"samples\[0\]\.reports\[0\]\.node: expected the id of a node"):
        MeasurementSet("ue", nodes=(Node("a", lat=1, lon=2),), samples=(Sample("s", (Report(node="b", rss_dbm=-1),)),))
    with pytest.raises(MeasurementFormatError, match="samples: expected a non-empty list of samples"):
        MeasurementSet("ue")
    with pytest.raises(MeasurementFormatError, match='mode: expected "ue" or "emitter", got "x"'):
        MeasurementSet("x", samples=(Sample("s", (Report(lat=1, lon=2, rss_dbm=-1),)),))


# --------------------------------------------------------------------------- survey format


def test_survey_example_loads() -> None:
    ms = load_measurements(EXAMPLE_SURVEY)
    assert ms.mode == "emitter"
    assert ms.nodes == ()
    assert [s.id for s in ms.samples] == ["tx_rooftop", "tx_unknown"]
    first, second = ms.samples
    assert first.truth == Position(lat=51.2117, lon=4.4023)
    assert second.truth is None
    assert len(first.reports) == 5 and len(second.reports) == 3
    r = first.reports[0]
    assert (r.node, r.lat, r.lon, r.rss_dbm) == (None, 51.2101, 4.4002, -97.0)  # x is latitude, y longitude


def test_survey_round_trips_through_rflocal_format(tmp_path: Path) -> None:
    ms = load_measurements(EXAMPLE_SURVEY)
    again = load_measurements(dump_measurements(ms, tmp_path / "survey.json"))
    assert again == ms


def _src(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["tx1"]


def _features(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["tx1"]["features"]


def _targets(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["tx1"]["targets"]


def survey(fn: Callable[[dict[str, Any]], Any], *, literal: str | None = None) -> bytes:
    return edit(fn, literal=literal, base=base_survey)


def _rename_source(doc: dict[str, Any]) -> None:
    doc["tx 1"] = doc.pop("tx1")
    doc["tx 1"]["features"]["rssi"][0] = 99


SURVEY_MALFORMED: list[tuple[str, bytes, str, str]] = [
    ("length-mismatch", survey(lambda d: _features(d)["y"].pop()), "tx1.features.y",
     "expected a list as long as features.x (3 values), got 2 values"),
    ("rssi-string", survey(lambda d: _features(d)["rssi"].__setitem__(1, "abc")), "tx1.features.rssi[1]",
     'expected a number in [-200, 30] (dBm), got "abc"'),
    ("rssi-nan", survey(lambda d: _features(d)["rssi"].__setitem__(2, LITERAL), literal="NaN"),
     "tx1.features.rssi[2]", "got NaN"),
    ("lat-out-of-range", survey(lambda d: _features(d)["x"].__setitem__(0, 95)), "tx1.features.x[0]",
     "expected a number in [-90, 90] (latitude), got 95"),
    ("lon-boolean", survey(lambda d: _features(d)["y"].__setitem__(0, True)), "tx1.features.y[0]",
     "expected a number in [-180, 180] (longitude), got true"),
    ("rssi-missing", survey(_del(_features, "rssi")), "tx1.features.rssi",
     "expected a non-empty list of RSSI values in dBm, got nothing"),
    ("x-empty", survey(_set(_features, "x", [])), "tx1.features.x", "expected a non-empty list of latitudes, got []"),
    ("feature-key-unknown", survey(_set(_features, "snr", [1, 2, 3])), "tx1.features.snr",
     "unknown key; expected one of x, y, rssi"),
    ("source-key-unknown", survey(_set(_src, "meta", {})), "tx1.meta",
     "unknown key; expected one of features, targets"),
    ("target-missing-y", survey(_del(_targets, "source_y")), "tx1.targets.source_y",
     "expected a number in [-180, 180] (longitude), got nothing"),
    ("source-not-object", survey(lambda d: d.__setitem__("tx2", [1])), "tx2",
     'expected a survey source {"features": {"x": [...], "y": [...], "rssi": [...]}}, got a list of 1 item'),
    ("odd-source-id", survey(_rename_source), '["tx 1"].features.rssi[0]', "expected a number in [-200, 30]"),
]


@pytest.mark.parametrize(("content", "path", "expected"), [c[1:] for c in SURVEY_MALFORMED],
                         ids=[c[0] for c in SURVEY_MALFORMED])
def test_survey_malformed(content: bytes, path: str, expected: str) -> None:
    with pytest.raises(MeasurementFormatError) as info:
        load_measurements(content)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value), str(info.value)


def test_survey_lenient_mode() -> None:
    doc = base_survey()
    doc["bad"] = {"features": {"x": [51.0], "y": [4.0, 4.1], "rssi": [-90]}}
    doc["tx3"] = copy.deepcopy(doc["tx1"])
    ms = load_measurements(encode(doc), on_error="collect")
    assert [s.id for s in ms.samples] == ["tx1", "tx3"]
    assert ms.errors == (SampleError(1, "bad", "bad.features.y: expected a list as long as features.x (1 values), "
                                                "got 2 values"),)


# --------------------------------------------------------------------------- lenient mode


def test_lenient_mode_keeps_good_samples_and_lists_bad_ones() -> None:
    doc = base_doc()
    good = doc["samples"][1]
    doc["samples"] = []
    for i in range(5):
        sample = copy.deepcopy(good)
        sample["id"] = f"m-{i}"
        doc["samples"].append(sample)
    doc["samples"][1]["reports"][0]["rss_dbm"] = "abc"
    doc["samples"][3]["reports"][0]["node"] = "site-9"
    doc["samples"][4] = "not a sample"
    content = encode(doc)

    # strict reading names every bad sample at once (the first problem of each)
    with pytest.raises(MeasurementFormatError, match=r"^3 problems: samples\[1\]\.reports\[0\]\.rss_dbm.*; "
                                                      r"samples\[3\]\.reports\[0\]\.node: .*; samples\[4\]: "):
        load_measurements(content)

    ms = load_measurements(content, on_error="collect")
    assert [s.id for s in ms.samples] == ["m-0", "m-2"]
    assert [(e.index, e.id) for e in ms.errors] == [(1, "m-1"), (3, "m-3"), (4, "s-4")]
    index, sample_id, message = ms.errors[0]
    assert (index, sample_id) == (1, "m-1")
    assert message == 'samples[1].reports[0].rss_dbm: expected a number in [-200, 30], got "abc"'
    assert ms.errors[1].message.startswith("samples[3].reports[0].node: expected the id of a node")
    assert ms.errors[2].message.startswith("samples[4]: expected a sample object")
    # errors are diagnostics, not data: they are not written
    assert "errors" not in to_json_dict(ms)
    assert load_measurements(dumps_measurements(ms).encode()).samples == ms.samples


def test_lenient_mode_still_raises_file_level_problems() -> None:
    for fn in (_set(_root, "mode", "drone"), _set(_node0, "lat", 91), _set(_root, "samples", [])):
        with pytest.raises(MeasurementFormatError):
            load_measurements(edit(fn), on_error="collect")
    with pytest.raises(MeasurementFormatError, match="invalid JSON"):
        load_measurements(b"{", on_error="collect")


def test_lenient_mode_all_samples_bad() -> None:
    doc = base_doc()
    for sample in doc["samples"]:
        sample["reports"] = []
    ms = load_measurements(encode(doc), on_error="collect")
    assert ms.samples == () and len(ms.errors) == 2
    with pytest.raises(MeasurementFormatError, match="samples: expected at least one sample to write"):
        to_json_dict(ms)


def test_duplicate_sample_id_lenient() -> None:
    content = edit(_dup_sample)
    ms = load_measurements(content, on_error="collect")
    assert [s.id for s in ms.samples] == ["s-1"]
    assert ms.errors[0].index == 1 and "expected unique sample ids" in ms.errors[0].message


# --------------------------------------------------------------------------- size limit


def test_size_limit_bytes_and_path(tmp_path: Path) -> None:
    assert MAX_MEASUREMENT_FILE_BYTES == 20 * 1024 * 1024
    content = encode(base_doc())
    assert len(load_measurements(content, max_bytes=len(content)).samples) == 2
    with pytest.raises(MeasurementFormatError, match=r"too large; expected at most 100 bytes"):
        load_measurements(content, max_bytes=100)
    path = tmp_path / "m.json"
    path.write_bytes(content)
    with pytest.raises(MeasurementFormatError, match=r"m\.json: .* too large"):
        load_measurements(path, max_bytes=len(content) - 1)
    assert load_measurements(str(path), max_bytes=len(content)).samples


def test_default_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(MAX_MEASUREMENT_FILE_BYTES + 1)  # sparse: nothing is read
    with pytest.raises(MeasurementFormatError, match="too large"):
        load_measurements(big)
    with pytest.raises(InvalidInputError, match="max_bytes"):
        load_measurements(big, max_bytes=0)


# --------------------------------------------------------------------------- assets


def test_example_assets_load() -> None:
    ms = load_measurements(EXAMPLE)
    assert ms.mode == "ue" and len(ms.nodes) == 3 and len(ms.samples) == 3
    times = {r.t_s for s in ms.samples for r in s.reports if r.node == "site-0"}
    assert len(times) >= 3  # a sequence of reports at different t_s
    assert any(s.truth is not None and s.truth.x_m is not None and s.truth.lat is None for s in ms.samples)
    assert any(r.ta is not None for s in ms.samples for r in s.reports)
    survey_ms = load_measurements(EXAMPLE_SURVEY)
    assert len(survey_ms.samples) == 2


# --------------------------------------------------------------------------- JSON Schema


SCHEMA_PATH = REPO_ROOT / "docs" / "rflocal-measurements-1.schema.json"

#: Malformed cases whose rule JSON Schema cannot express (schema.NOT_IN_SCHEMA): the schema accepts them.
SCHEMA_BLIND = {"report-unknown-node", "sample-id-duplicate", "node-id-duplicate", "length-mismatch"}
#: Malformed cases that are not JSON at all (RFC 8259: no NaN / Infinity, UTF-8): no schema ever sees them.
NOT_JSON = {"rss-nan-literal", "toa-infinity-literal", "aoa-minus-infinity-literal", "rssi-nan",
            "invalid-json", "not-utf8", "empty-file"}


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def strict_json(content: bytes) -> Any:
    """The document as a standard JSON parser reads it, or None if it is not JSON (NaN, Infinity, syntax, UTF-8)."""
    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        return json.loads(content.decode("utf-8"), parse_constant=refuse)
    except (UnicodeDecodeError, ValueError):
        return None


def schema_path(parts: Any) -> str:
    """A jsonschema error location written as the reader writes paths (``samples[0].id``, ``["tx 1"].features``)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def test_committed_schema_is_current() -> None:
    from rflocal_core.measurements.schema import dumps_schema

    assert SCHEMA_PATH.read_text(encoding="utf-8") == dumps_schema(), (
        "docs/rflocal-measurements-1.schema.json is stale: run "
        "python -m rflocal_core.measurements.schema docs/rflocal-measurements-1.schema.json")


def test_schema_command_writes_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rflocal_core.measurements.schema import main

    assert main([]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == FORMAT_ID
    assert main([str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.json").read_text(encoding="utf-8") == SCHEMA_PATH.read_text(encoding="utf-8")


def test_schema_accepts_the_shipped_examples_and_round_trips(validator: Any, tmp_path: Path) -> None:
    files = sorted((REPO_ROOT / "assets").glob("*.json"))
    assert len(files) >= 4
    for path in files:
        load_measurements(path)
        assert list(validator.iter_errors(json.loads(path.read_text(encoding="utf-8")))) == [], path.name
        assert validator.is_valid(to_json_dict(load_measurements(path))), path.name
    for doc in (base_doc(), base_survey()):
        assert validator.is_valid(doc)


ALL_MALFORMED = [(c[0], c[1], c[2]) for c in MALFORMED + SURVEY_MALFORMED] + [(c[0], c[1], "") for c in FILE_LEVEL]


@pytest.mark.parametrize(("case", "content", "path"), ALL_MALFORMED, ids=[c[0] for c in ALL_MALFORMED])
def test_schema_rejects_what_the_reader_refuses(validator: Any, case: str, content: bytes, path: str) -> None:
    with pytest.raises(MeasurementFormatError):
        load_measurements(content)
    doc = strict_json(content)
    if doc is None:
        assert case in NOT_JSON
        return
    assert case not in NOT_JSON
    errors = list(validator.iter_errors(doc))
    if case in SCHEMA_BLIND:
        assert errors == []
        return
    assert errors, f"the schema accepts {case!r}, which the reader refuses at {path!r}"
    from jsonschema.exceptions import best_match

    # The schema's best error lies on the reader's path, or beside it in the same object.
    where = schema_path(best_match(errors).absolute_path)
    assert path.startswith(where) or parent_path(where) == parent_path(path), (where, path)


def parent_path(path: str) -> str:
    """``samples[0].reports[1]`` for ``samples[0].reports[1].node``; ``""`` for a top-level key."""
    return re.sub(r"((^|\.)[^.\[]+|\[[^\]]*\])$", "", path)


def test_schema_and_reader_agree_on_strings(validator: Any) -> None:
    cases = 0
    for value in ("", " ", "\t\n", "a", " a ", 5, None, True):
        for where in ("scene", "node_id", "sample_id", "note"):
            doc = base_doc()
            if where == "scene":
                doc["scene"] = value
            elif where == "node_id":
                doc["nodes"][1]["id"] = value
                doc["samples"][0]["reports"][1]["node"] = value  # the one report of site-1
            elif where == "sample_id":
                doc["samples"][0]["id"] = value
            else:
                doc["notes"] = [value]
            assert validator.is_valid(doc) == _reader_accepts(doc), (where, value)
            cases += 1
    assert cases == 32


def test_schema_and_reader_agree_on_every_field_range(validator: Any) -> None:
    from rflocal_core.measurements.format import FIELDS

    def place(name: str, value: Any) -> dict[str, Any]:
        doc = base_doc()
        if name == "tx_power_dbm":
            doc["nodes"][0][name] = value
        elif name in ("lat", "lon", "x_m", "y_m", "alt_m"):
            other = {"lat": "lon", "lon": "lat", "x_m": "y_m", "y_m": "x_m", "alt_m": "lat"}[name]
            doc["samples"][0]["truth"] = {other: 0.0, **({"lon": 0.0} if name == "alt_m" else {}), name: value}
        else:
            report0(doc)[name] = value
        return doc

    checked = 0
    for name, spec in FIELDS.items():
        lo, hi = spec.bounds
        values: list[Any] = [None, "1", True, [1], 3.0, 3.5]
        for bound, step in ((lo, -1), (hi, 1)):
            if bound is not None:
                values += [bound, bound + step, bound - step * 1e-9]
        for value in values:
            doc = place(name, value)
            try:
                load_measurements(encode(doc))
                reader_ok = True
            except MeasurementFormatError:
                reader_ok = False
            assert validator.is_valid(doc) == reader_ok, (name, value, reader_ok)
            checked += 1
    assert checked >= 100


def _combinations(keys: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object with each key absent, null or set to its value."""
    out: list[dict[str, Any]] = [{}]
    for key, value in keys.items():
        out = [{**obj, **extra} for obj in out for extra in ({}, {key: None}, {key: value})]
    return out


def _reader_accepts(doc: dict[str, Any]) -> bool:
    try:
        parse_measurements(doc)
    except MeasurementFormatError:
        return False
    return True


def test_schema_and_reader_agree_on_node_position_and_report_rules(validator: Any) -> None:
    position = {"lat": 48.1, "lon": 11.5, "x_m": 10.0, "y_m": 20.0, "alt_m": 5.0}
    disagree: list[tuple[str, dict[str, Any]]] = []
    counts = {"report": 0, "node": 0, "truth": 0}
    for report in _combinations({"node": "site-0", **position, "rss_dbm": -80.0}):
        doc = base_doc()
        doc["samples"][0]["reports"][0] = report
        counts["report"] += 1
        if validator.is_valid(doc) != _reader_accepts(doc):
            disagree.append(("report", report))
    for node in _combinations({**position, "position": {"lat": 1.0, "lon": 2.0}}):
        doc = base_doc()
        doc["nodes"][0] = {"id": "site-0", **node}
        counts["node"] += 1
        if validator.is_valid(doc) != _reader_accepts(doc):
            disagree.append(("node", node))
    for truth in _combinations(position):
        doc = base_doc()
        doc["samples"][0]["truth"] = truth
        counts["truth"] += 1
        if validator.is_valid(doc) != _reader_accepts(doc):
            disagree.append(("truth", truth))
    assert disagree == []
    assert counts == {"report": 3**7, "node": 3**6, "truth": 3**5}


# --------------------------------------------------------------------------- all problems at once


def test_every_problem_of_a_document_is_listed_at_once():
    """A missing mode no longer hides the bad samples list: both are named, one line, in file order."""
    doc = base_doc()
    del doc["mode"]
    doc["samples"] = "oops"
    with pytest.raises(MeasurementFormatError) as info:
        parse_measurements(doc)
    err = info.value
    assert err.problems == (
        ('mode: expected "ue" (known nodes transmit, the device is located) or "emitter" (known nodes receive, '
         "an unknown transmitter is located), got nothing"),
        'samples: expected a non-empty list of samples, got "oops"',
    )
    assert str(err) == "2 problems: " + "; ".join(err.problems) and "\n" not in str(err)
    # the same through a file and in lenient mode: problems of the document as a whole still raise, together
    with pytest.raises(MeasurementFormatError) as lenient:
        load_measurements(json.dumps(doc).encode(), on_error="collect")
    assert lenient.value.problems == err.problems
    # lenient reading of a refused document names its bad samples too
    doc["samples"] = base_doc()["samples"]
    doc["samples"][1]["reports"][0]["rss_dbm"] = "oops"
    with pytest.raises(MeasurementFormatError) as both:
        parse_measurements(doc, on_error="collect")
    assert both.value.problems[0].startswith("mode: ") and len(both.value.problems) == 2
    assert both.value.problems[1] == 'samples[1].reports[0].rss_dbm: expected a number in [-200, 30], got "oops"'


def test_nodes_samples_and_unknown_keys_each_add_their_first_problem():
    doc = base_doc()
    doc["extra"] = 1
    doc["nodes"][0]["lat"] = 100.0
    doc["nodes"].append({"id": "site-1", "x_m": 0.0, "y_m": 0.0})
    doc["samples"][0]["reports"][1]["rss_dbm"] = "abc"
    doc["samples"][0]["reports"][1]["ta"] = -1  # a second problem of the same sample: the first one is named
    problems = _problems(doc)
    assert problems == [
        "extra: unknown key; expected one of format, mode, scene, notes, nodes, samples",
        "nodes[0].lat: expected a number in [-90, 90], got 100.0",
        'nodes[2].id: expected unique node ids, got "site-1" again (first at nodes[1])',
        'samples[0].reports[1].rss_dbm: expected a number in [-200, 30], got "abc"',
    ]
    # the reports naming a node with a problem (or renamed by a duplicate) add none of their own
    assert not any("expected the id of a node" in p for p in problems)


def _problems(doc: dict[str, Any], **kw: Any) -> list[str]:
    with pytest.raises(MeasurementFormatError) as info:
        parse_measurements(doc, **kw)
    return list(info.value.problems)


def test_one_problem_reads_as_before_and_many_are_capped():
    from rflocal_core.measurements.format import MAX_LISTED_PROBLEMS

    doc = base_doc()
    doc["samples"][0]["reports"][0]["rss_dbm"] = "abc"
    with pytest.raises(MeasurementFormatError) as one:
        parse_measurements(doc)
    assert str(one.value) == 'samples[0].reports[0].rss_dbm: expected a number in [-200, 30], got "abc"'
    assert one.value.path == "samples[0].reports[0].rss_dbm" and one.value.problems == (str(one.value),)
    # a thousand bad samples: the first MAX_LISTED_PROBLEMS are listed, the rest counted
    bad = copy.deepcopy(doc["samples"][0])
    doc["samples"] = [{**copy.deepcopy(bad), "id": f"s-{i}"} for i in range(1000)]
    problems = _problems(doc)
    assert len(problems) == MAX_LISTED_PROBLEMS + 1
    assert problems[0].startswith("samples[0].reports[0].rss_dbm") and problems[-1] == f"and {1000 - MAX_LISTED_PROBLEMS} more"
    with pytest.raises(MeasurementFormatError, match=r"^1000 problems: samples\[0\]\..*; and 980 more$"):
        parse_measurements(doc)
    # lenient reading skips the bad samples instead, as before
    assert len(parse_measurements({**doc, "samples": [*doc["samples"], {**base_doc()["samples"][0], "id": "ok"}]},
                                  on_error="collect").errors) == 1000


def test_survey_sources_each_add_their_first_problem():
    doc = {"a": {"features": {"x": [91.0], "y": [11.0], "rssi": [-80.0]}},
           "b": {"features": {"x": [48.0], "y": [11.0], "rssi": ["x"]}}}
    assert _problems(doc) == ["a.features.x[0]: expected a number in [-90, 90] (latitude), got 91.0",
                              'b.features.rssi[0]: expected a number in [-200, 30] (dBm), got "x"']


def test_a_combined_error_survives_pickling():
    doc = base_doc()
    del doc["mode"]
    doc["samples"] = "oops"
    with pytest.raises(MeasurementFormatError) as info:
        parse_measurements(doc)
    back = pickle.loads(pickle.dumps(info.value))
    assert back.problems == info.value.problems and str(back) == str(info.value)


def test_cli_names_every_problem_on_one_line(run_cli, tmp_path):
    doc = base_doc()
    del doc["mode"]
    doc["samples"] = "oops"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    proc = run_cli(["data", "import", str(bad), "--name", "bad"], tmp_path / "ws")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 2 problems: mode: expected")
    assert 'samples: expected a non-empty list of samples, got "oops"' in lines[0]
