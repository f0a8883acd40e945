"""Quality checks of measurement files: every fault of real logs is dropped and counted, or refused with strict.

Small hand-made measurement sets (a synthetic log-distance network of six receivers over a
2 km area) exercise each check through the API, the import, the command line, prediction and
training. The end-to-end test dirties a real file derived from the Antwerp LoRaWAN data (skipped
without ../shared/data) and trains a small network on it.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rflocal_core import settings
from rflocal_core.dataset import import_measurements, open_dataset
from rflocal_core.dataset.store import position_extent_m
from rflocal_core.errors import InvalidInputError, MeasurementQualityError, RFLocalInputError
from rflocal_core.geo import LocalFrame
from rflocal_core.infer import predict_file
from rflocal_core.measurements import (
    MeasurementFormatError,
    MeasurementSet,
    Node,
    Position,
    QualityLimits,
    QualityReport,
    Report,
    Sample,
    check_quality,
    convert_antwerp,
    dump_measurements,
    fixed_node_positions,
    parse_measurements,
    to_json_dict,
)
from rflocal_core.train import train

LAT0, LON0 = 51.2, 4.4
M_PER_DEG = 111_320.0
ANTWERP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "antwerp_lorawan"


def _latlon(x_m: float, y_m: float) -> tuple[float, float]:
    return LAT0 + y_m / M_PER_DEG, LON0 + x_m / (M_PER_DEG * math.cos(math.radians(LAT0)))


def _synthetic(n: int = 200, seed: int = 0, side_m: float = 2000.0) -> MeasurementSet:
    """Emitter mode: six receivers around a ``side_m`` square, an emitter per sample, log-distance RSS in 1 dB steps."""
    rng = np.random.default_rng(seed)
    corners = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5), (0.0, 0.0), (0.0, 0.6)]
    nodes = tuple(Node(f"n{k}", *_latlon(cx * side_m, cy * side_m), alt_m=20.0) for k, (cx, cy) in enumerate(corners))
    samples: list[Sample] = []
    while len(samples) < n:
        x, y = rng.uniform(-side_m / 2, side_m / 2, 2)
        reports = []
        for k, (cx, cy) in enumerate(corners):
            d = max(math.hypot(x - cx * side_m, y - cy * side_m) * 2000.0 / side_m, 1.0)  # as in a 2 km area
            rss = round(-20.0 - 30.0 * math.log10(d) + rng.normal(0.0, 3.0))
            if rss >= -115:  # receiver sensitivity: weaker emissions are not heard
                reports.append(Report(node=f"n{k}", rss_dbm=float(rss)))
        if reports:
            samples.append(Sample(f"s-{len(samples)}", tuple(reports), Position(*_latlon(x, y))))
    return MeasurementSet("emitter", None, nodes, tuple(samples))


def _counts(quality: QualityReport | dict[str, Any]) -> dict[str, int]:
    """Counts by reason, of a report or of its JSON (what the command line prints)."""
    if isinstance(quality, QualityReport):
        return {reason: issue.count for reason, issue in quality.issues.items() if issue.count}
    return {reason: row["count"] for reason, row in quality["reasons"].items()}


def _fails(proc: Any, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- each check through the API


def test_a_clean_file_passes_unchanged() -> None:
    ms = _synthetic()
    clean, report = check_quality(ms)
    assert clean == ms and not report.faulty and report.to_dict()["reasons"] == {}
    n_reports = sum(len(s.reports) for s in ms.samples)
    assert report.kept == {"samples": 200, "reports": n_reports, "truths": 200, "node_positions": 6}
    assert report.dropped == {"samples": 0, "reports": 0, "truths": 0, "node_positions": 0}
    assert report.summary() == f"quality: no faults found; kept 200 samples, {n_reports:,} reports"


def test_gps_sentinels_on_mobile_reports_truths_and_nodes() -> None:
    ms = _synthetic(n=40)
    nodes = list(ms.nodes)
    nodes[5] = Node("n5", lat=0.0, lon=0.0, alt_m=20.0, tx_power_dbm=14.0)  # a node with a no-fix position
    samples = list(ms.samples)
    samples[3] = Sample("s-3", (*samples[3].reports, Report(lat=0.0, lon=0.0, rss_dbm=-80.0)), samples[3].truth)
    samples[4] = Sample("s-4", (*samples[4].reports, Report(lat=-1.0, lon=-1.0, rss_dbm=-81.0),
                                Report(lat=LAT0, lon=LON0, rss_dbm=-70.0)), samples[4].truth)
    samples[7] = Sample("s-7", samples[7].reports, Position(lat=-1.0, lon=-1.0))
    dirty = MeasurementSet("emitter", None, tuple(nodes), tuple(samples))
    clean, report = check_quality(dirty)
    q = report.to_dict()
    assert _counts(q) == {"node_position_sentinel": 1, "report_position_sentinel": 2, "truth_position_sentinel": 1}
    assert q["dropped"] == {"samples": 0, "reports": 2, "truths": 1, "node_positions": 1}
    assert q["reasons"]["report_position_sentinel"]["sample_ids"] == ["s-3", "s-4"]
    assert q["reasons"]["node_position_sentinel"]["node_ids"] == ["n5"]
    assert q["reasons"]["report_position_sentinel"]["first"] == (
        f"sample 's-3' reports[{len(ms.samples[3].reports)}]: lat/lon (0, 0) is a GPS no-fix sentinel")
    # the node stays, with an unknown position (its measurements still serve fingerprinting)
    assert clean.nodes[5] == Node("n5", tx_power_dbm=14.0) and clean.nodes[:5] == ms.nodes[:5]
    assert clean.samples[3] == ms.samples[3]
    assert clean.samples[4].reports == (*ms.samples[4].reports, Report(lat=LAT0, lon=LON0, rss_dbm=-70.0))
    assert clean.samples[7].truth is None and clean.samples[7].reports == ms.samples[7].reports  # kept, unlabeled
    assert report.kept["truths"] == 39 and report.kept["node_positions"] == 5 and report.kept["samples"] == 40


def test_positions_outside_the_robust_extent() -> None:
    ms = _synthetic(n=60)
    samples = list(ms.samples)
    samples[10] = Sample("s-10", samples[10].reports, Position(*_latlon(30_000.0, 0.0)))  # a truth 30 km away
    samples[11] = Sample("s-11", (*samples[11].reports, Report(lat=_latlon(0, -25_000)[0], lon=LON0, rss_dbm=-90.0)),
                         samples[11].truth)
    nodes = (*ms.nodes, Node("far-gateway", *_latlon(0.0, 60_000.0)), Node("wrong-sign", LAT0, -LON0))
    dirty = MeasurementSet("emitter", None, nodes, tuple(samples))
    clean, report = check_quality(dirty)
    q = report.to_dict()
    # a gateway 60 km away is fixed infrastructure (kept); one at the wrong longitude sign (~560 km) is not
    assert _counts(q) == {"truth_position_outlier": 1, "report_position_outlier": 1, "node_position_outlier": 1}
    assert q["reasons"]["node_position_outlier"]["node_ids"] == ["wrong-sign"]
    assert " km from the file's median position" in q["reasons"]["truth_position_outlier"]["first"]
    assert "expected at most 20.0 km" in q["reasons"]["truth_position_outlier"]["first"]
    assert clean.samples[10].truth is None and clean.samples[11] == ms.samples[11]
    assert clean.nodes[6].has_position and not clean.nodes[7].has_position
    # the limit grows with the spread: the same 30 km truth in a file spread over 80 km is kept
    wide = _synthetic(n=60, side_m=80_000.0)
    wide = MeasurementSet("emitter", None, wide.nodes, (*wide.samples, Sample("x", wide.samples[0].reports,
                                                                              Position(*_latlon(30_000.0, 0.0)))))
    assert not check_quality(wide)[1].faulty


def test_a_position_repeated_far_from_everything_else() -> None:
    ms = _synthetic(n=100)
    stale = _latlon(6_000.0, 0.0)  # a stale fix 6 km east of a 2 km area: within 20 km, but alone
    samples = [Sample(s.id, s.reports, Position(*stale)) if i % 20 == 0 else s for i, s in enumerate(ms.samples)]
    clean, report = check_quality(MeasurementSet("emitter", None, ms.nodes, tuple(samples)))
    q = report.to_dict()
    assert _counts(q) == {"truth_position_repeated": 5}
    assert q["reasons"]["truth_position_repeated"]["sample_ids"] == ["s-0", "s-20", "s-40", "s-60", "s-80"]
    assert "is repeated 5 times" in q["reasons"]["truth_position_repeated"]["first"]
    assert sum(s.truth is None for s in clean.samples) == 5
    # four repeats are not enough, and a repeated position among the others is a parked device
    four = MeasurementSet("emitter", None, ms.nodes, tuple(
        Sample(s.id, s.reports, Position(*stale)) if i in (0, 20, 40, 60) else s for i, s in enumerate(ms.samples)))
    assert not check_quality(four)[1].faulty
    assert check_quality(four, limits=QualityLimits(repeat_min=4))[1].issues["truth_position_repeated"].count == 4
    parked = [Sample(s.id, s.reports, ms.samples[1].truth) if i % 20 == 0 else s for i, s in enumerate(ms.samples)]
    assert not check_quality(MeasurementSet("emitter", None, ms.nodes, tuple(parked)))[1].faulty
    # fixed sensors reporting their own position (a survey) repeat by nature: no fault
    survey = [Sample(s.id, tuple(Report(lat=lat, lon=lon, rss_dbm=-80.0 - k) for k, (lat, lon) in
                                 enumerate([_latlon(-9000, 0), _latlon(9000, 0), _latlon(0, 9000)])), s.truth)
              for s in ms.samples]
    assert not check_quality(MeasurementSet("emitter", None, (), tuple(survey)))[1].faulty


def test_rss_sentinels_codes_and_constant_floors() -> None:
    ms = _synthetic(n=200)
    heard = {i: {r.node for r in s.reports} for i, s in enumerate(ms.samples)}
    samples = []
    added = 0
    for i, s in enumerate(ms.samples):
        reports = list(s.reports)
        missing = [f"n{k}" for k in range(6) if f"n{k}" not in heard[i]]
        if missing and added < 30:  # 'not received' written as a constant -125 dBm
            reports.append(Report(node=missing[0], rss_dbm=-125.0))
            added += 1
        if i in (0, 1):
            reports[0] = replace_rss(reports[0], -190.0)  # below any receiver's sensitivity
        samples.append(Sample(s.id, tuple(reports), s.truth))
    assert added == 30
    clean, report = check_quality(MeasurementSet("emitter", None, ms.nodes, tuple(samples)))
    q = report.to_dict()
    assert _counts(q) == {"rss_sentinel": 32}
    assert q["reasons"]["rss_sentinel"]["sample_ids"][:2] == ["s-0", "s-1"]
    assert "-190 dBm is at or below -180 dBm" in q["reasons"]["rss_sentinel"]["first"]
    assert [r for s in clean.samples for r in s.reports if r.rss_dbm in (-125.0, -190.0)] == []
    floor = next(r for r in report.rows() if r["reason"] == "rss_sentinel")
    assert floor["count"] == 32
    # the same floor written instead of every value below -101 dBm (a receiver that clips) is found too
    clipped = [Sample(s.id, tuple(replace_rss(r, max(r.rss_dbm, -101.0)) for r in s.reports), s.truth)
               for s in ms.samples]
    n_clipped = sum(r.rss_dbm <= -101.0 for s in ms.samples for r in s.reports)
    n_empty = sum(all(r.rss_dbm <= -101.0 for r in s.reports) for s in ms.samples)  # nothing heard above the floor
    q = check_quality(MeasurementSet("emitter", None, ms.nodes, tuple(clipped)))[1].to_dict()
    assert _counts(q) == {"rss_sentinel": n_clipped, "too_few_reports": n_empty} and n_empty > 0
    assert "-101 dBm is a constant floor" in q["reasons"]["rss_sentinel"]["first"]
    # a real bottom of the distribution (counts that taper off) is left alone: the clean set has none
    assert not check_quality(ms)[1].faulty


def replace_rss(report: Report, rss_dbm: float) -> Report:
    from dataclasses import replace

    return replace(report, rss_dbm=rss_dbm)


def test_implausible_toa_and_too_few_reports() -> None:
    ms = _synthetic(n=30)
    samples = list(ms.samples)
    first = samples[2].reports[0]
    samples[2] = Sample("s-2", (Report(node=first.node, rss_dbm=first.rss_dbm, toa_ns=5e6), *samples[2].reports[1:]),
                        samples[2].truth)  # 1,499 km of travel in a 2 km area
    samples[3] = Sample("s-3", (Report(node="n0", toa_ns=2000.0),), samples[3].truth)  # 600 m: plausible
    samples[4] = Sample("s-4", (Report(lat=0.0, lon=0.0, rss_dbm=-70.0),), samples[4].truth)  # nothing left
    clean, report = check_quality(MeasurementSet("emitter", None, ms.nodes, tuple(samples)))
    assert _counts(report.to_dict()) == {"report_position_sentinel": 1, "toa_implausible": 1, "too_few_reports": 1}
    assert "5e+06 ns is 1,499.0 km of travel; expected at most 20.0 km" in report.issues["toa_implausible"].first
    assert report.issues["too_few_reports"].ids == ["s-4"] and len(clean.samples) == 29
    # samples with fewer reports than a model needs
    clean, report = check_quality(ms, min_reports=3)
    thin = [s.id for s in ms.samples if len(s.reports) < 3]
    assert thin and [s.id for s in clean.samples] == [s.id for s in ms.samples if len(s.reports) >= 3]
    assert report.issues["too_few_reports"].count == len(thin) and "expected at least 3" in report.issues[
        "too_few_reports"].first
    with pytest.raises(InvalidInputError, match="min_reports: expected an integer >= 1, got 0"):
        check_quality(ms, min_reports=0)


def test_reading_drops_duplicate_ids_and_impossible_values_that_it_used_to_refuse() -> None:
    doc = to_json_dict(_synthetic(n=6))
    doc["samples"].append({**copy.deepcopy(doc["samples"][4]), "id": "s-1"})  # a later sample with an id seen before
    doc["samples"][2]["reports"][0]["rss_dbm"] = -999  # 'not received' as a number outside [-200, 30]
    doc["samples"][3]["reports"][0] = {"node": "n0", "toa_ns": -1.0}
    doc["samples"][5]["reports"] = [{"node": "n1", "rss_dbm": -999}]  # nothing left
    with pytest.raises(MeasurementFormatError, match=r"samples\[2\].reports\[0\].rss_dbm: expected a number in"):
        parse_measurements(doc)
    ms = parse_measurements(doc, on_fault="drop")
    assert [s.id for s in ms.samples] == ["s-0", "s-1", "s-2", "s-3", "s-4"]
    assert [(d.reason, d.unit, d.sample_id, d.path) for d in ms.dropped] == [
        ("rss_out_of_range", "reports", "s-2", "samples[2].reports[0].rss_dbm"),
        ("toa_out_of_range", "reports", "s-3", "samples[3].reports[0].toa_ns"),
        ("rss_out_of_range", "reports", "s-5", "samples[5].reports[0].rss_dbm"),
        ("too_few_reports", "samples", "s-5", "samples[5].reports"),
        ("duplicate_sample_id", "samples", "s-1", "samples[6].id"),
    ]
    assert ms.dropped[-1].message == 'expected unique sample ids, got "s-1" again (first at samples[1])'
    clean, report = check_quality(ms)
    assert clean.dropped == () and _counts(report.to_dict()) == {
        "rss_out_of_range": 2, "toa_out_of_range": 1, "too_few_reports": 1, "duplicate_sample_id": 1}
    assert report.dropped == {"samples": 2, "reports": 3, "truths": 0, "node_positions": 0}
    # the survey format too; a malformed value ("abc", NaN) stays a format error
    survey = {"src": {"features": {"x": [51.2, 51.21], "y": [4.4, 4.41], "rssi": [-80, -999]}}}
    assert [d.path for d in parse_measurements(survey, on_fault="drop").dropped] == ["src.features.rssi[1]"]
    doc["samples"][0]["reports"][0]["rss_dbm"] = "abc"
    with pytest.raises(MeasurementFormatError, match=r"samples\[0\].reports\[0\].rss_dbm"):
        parse_measurements(doc, on_fault="drop")
    with pytest.raises(InvalidInputError, match='on_fault: expected "raise" or "drop"'):
        parse_measurements(doc, on_fault="skip")


def test_strict_refuses_in_one_line_naming_the_first_offenders() -> None:
    ms = _synthetic(n=20)
    samples = [Sample(s.id, (*s.reports, Report(lat=0.0, lon=0.0, rss_dbm=-80.0)), s.truth) if i in (3, 9, 12) else s
               for i, s in enumerate(ms.samples)]
    dirty = MeasurementSet("emitter", None, ms.nodes, tuple(samples))
    with pytest.raises(MeasurementQualityError) as info:
        check_quality(dirty, strict=True)
    text = str(info.value)
    assert isinstance(info.value, (RFLocalInputError, ValueError)) and "\n" not in text
    assert text.startswith("quality: refused (strict): sample 's-3' reports[")
    assert "report_position_sentinel: 3 reports ('s-3', 's-9', 's-12')" in text
    assert info.value.report.issues["report_position_sentinel"].count == 3
    assert check_quality(ms, strict=True)[1].faulty is False  # a clean set passes strict checking
    prior = QualityReport()
    prior.add("unparsable_row", unit="reports", what="a row whose values cannot be read", sample_id="row-7",
              where="line 9", message='rss_dbm: expected a number, got "n/a"')
    with pytest.raises(MeasurementQualityError, match=r"line 9: rss_dbm: expected a number.*unparsable_row: 1 reports"):
        check_quality(ms, strict=True, prior=prior)


def test_the_report_adds_merges_and_round_trips() -> None:
    a = QualityReport()
    a.add("rss_sentinel", sample_id="s-1", where="w", message="m", count=2)
    for k in range(7):
        a.add("rss_sentinel", sample_id=f"s-{k}")
    b = QualityReport()
    b.add("missing_value", unit="reports", what="an empty cell", sample_id="r-1", count=4)
    b.add("rss_sentinel", sample_id="s-9")
    a.merge(b)
    assert a.issues["rss_sentinel"].count == 10 and a.issues["rss_sentinel"].ids == ["s-1", "s-0", "s-2", "s-3", "s-4"]
    assert a.issues["rss_sentinel"].first == "w: m" and a.dropped["reports"] == 14
    assert a.summary() == "quality: dropped 14 reports (rss_sentinel 10, missing_value 4)"
    assert QualityReport.from_dict(json.loads(json.dumps(a.to_dict()))).to_dict() == a.to_dict()
    with pytest.raises(InvalidInputError, match="unit: expected one of samples, reports, truths, node_positions"):
        a.add("new_reason")
    with pytest.raises(InvalidInputError, match="count: expected a non-negative integer"):
        a.add("rss_sentinel", count=-1)


def test_a_fixed_node_that_moves_between_rows() -> None:
    a, a_off = _latlon(0.0, 0.0), _latlon(500.0, 0.0)
    b1, b2 = _latlon(1000.0, 1000.0), _latlon(3000.0, 1000.0)
    rows = ([("A", *a, 30.0)] * 8 + [("A", *a_off, 30.0)] + [("B", *b1, np.nan), ("B", *b2, np.nan)] * 2
            + [("C", np.nan, np.nan, np.nan)])
    ids, lat, lon, alt = zip(*rows)
    out = fixed_node_positions(ids, lat, lon, alt_m=alt, sample_ids=[f"s-{r}" for r in range(len(rows))])
    assert out.positions["A"] == pytest.approx((a[0], a[1], 30.0)) and out.positions["B"] is None
    assert out.positions["C"] is None
    assert out.moved.tolist() == [False] * 8 + [True] + [False] * 5
    q = out.report.to_dict()
    assert _counts(q) == {"node_moved": 1, "node_position_unstable": 1}
    assert q["reasons"]["node_moved"]["sample_ids"] == ["s-8"]
    assert q["reasons"]["node_position_unstable"]["node_ids"] == ["B"]
    assert "500 m from where most of its rows place it; expected within 50 m" in q["reasons"]["node_moved"]["first"]
    with pytest.raises(InvalidInputError, match="expected one value per row each"):
        fixed_node_positions(["A", "B"], [1.0], [2.0, 3.0])
    # a table reader passes these on: the import counts them with its own
    ms = _synthetic(n=10)
    assert _counts(check_quality(ms, prior=out.report)[1].to_dict()) == _counts(q)


# --------------------------------------------------------------------------- import, command line


def _dirty_doc() -> tuple[dict[str, Any], dict[str, int]]:
    """The synthetic file with one fault of each kind, and the counts the import must report."""
    doc = to_json_dict(_synthetic(n=200))
    s = doc["samples"]
    s.append({**copy.deepcopy(s[8]), "id": "s-3"})
    s[10]["reports"][0]["rss_dbm"] = -999
    s[11]["reports"][0] = {"node": s[11]["reports"][0]["node"], "toa_ns": -5.0}
    s[20]["reports"].append({"lat": 0.0, "lon": 0.0, "rss_dbm": -77.0})
    s[21]["reports"].append({"lat": 0.0, "lon": 0.0, "rss_dbm": -78.0})
    s[30]["truth"] = {"lat": 0.0, "lon": 0.0}
    s[31]["truth"] = {"lat": LAT0 + 0.4, "lon": LON0}  # 44 km north
    s[40]["reports"][0]["rss_dbm"] = -190.0
    s[50]["reports"] = [{"node": "n2", "rss_dbm": -999}]
    doc["nodes"][5].update(lat=0.0, lon=0.0)
    heard = [{r["node"] for r in smp["reports"] if "node" in r} for smp in s]
    added = 0
    for i, smp in enumerate(s[:200]):
        missing = [f"n{k}" for k in range(6) if f"n{k}" not in heard[i]]
        if missing and added < 30 and i not in (10, 11, 40, 50):
            smp["reports"].append({"node": missing[0], "rss_dbm": -125.0})
            added += 1
    counts = {"rss_out_of_range": 2, "toa_out_of_range": 1, "too_few_reports": 1, "duplicate_sample_id": 1,
              "node_position_sentinel": 1, "report_position_sentinel": 2, "truth_position_sentinel": 1,
              "truth_position_outlier": 1, "rss_sentinel": 31}
    return doc, counts


def test_import_drops_faults_and_reports_them_by_reason(workspace: Path, tmp_path: Path) -> None:
    doc, counts = _dirty_doc()
    path = tmp_path / "dirty.json"
    path.write_text(json.dumps(doc))
    summary = import_measurements(path, name="dirty")
    q = summary.quality
    assert _counts(q) == counts
    assert q.dropped == {"samples": 2, "reports": 36, "truths": 2, "node_positions": 1}
    assert summary.samples == 199 and summary.unlabeled == 2 and summary.unknown_position_nodes == 1
    assert q.kept["samples"] == 199 and q.kept["truths"] == 197
    assert q.issues["duplicate_sample_id"].ids == ["s-3"]
    assert q.issues["truth_position_sentinel"].ids == ["s-30"]
    root = open_dataset("dirty")
    assert root.attrs["quality"] == q.to_dict() and q.summary() in root.attrs["assumptions"]
    assert "s-50" not in root["samples"].attrs["sample_ids"]
    assert np.nanmin(np.asarray(root["samples/rss_dbm"][...])) > -120  # no code or floor left
    # the frame is where the clean positions are
    frame = LocalFrame.from_dict(root.attrs["frame"])
    assert math.hypot(*frame.to_xy(LAT0, LON0)) < 100.0
    assert position_extent_m("dirty")["extent_m"] < 2100.0
    # strict refuses, naming the first offender, and writes nothing
    first = r"^quality: refused \(strict\): samples\[10\].reports\[0\].rss_dbm"
    with pytest.raises(MeasurementQualityError, match=first):
        import_measurements(path, name="strict", strict=True)
    assert sorted(p.name for p in (workspace / "datasets").iterdir()) == ["dirty"]
    # every sample faulty: nothing to import, and the message says why
    bad = {"format": "rflocal-measurements/1", "mode": "emitter", "samples": [
        {"id": "a", "reports": [{"lat": 0.0, "lon": 0.0, "rss_dbm": -80.0}]}]}
    with pytest.raises(MeasurementQualityError, match=r"^samples: expected at least one sample left after the quality "
                       r"checks, got none \(quality: dropped 1 samples \(too_few_reports 1\), 1 reports "
                       r"\(report_position_sentinel 1\)"):
        import_measurements(json.dumps(bad).encode(), name="nothing")


def test_cli_import_prints_the_quality_and_strict_exits_2(workspace: Path, tmp_path: Path, run_cli: Any) -> None:
    doc, counts = _dirty_doc()
    path = tmp_path / "dirty.json"
    path.write_text(json.dumps(doc))
    proc = run_cli(["data", "import", str(path), "--name", "d"], workspace)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert _counts(summary["quality"]) == counts
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: quality: ")]
    assert len(warnings) == len(counts)
    assert any("dropped 2 reports ('s-20', 's-21'): report_position_sentinel" in w for w in warnings), warnings
    assert json.loads(run_cli(["data", "show", "d"], workspace).stdout)["quality"] == summary["quality"]
    _fails(run_cli(["data", "import", str(path), "--name", "s", "--strict"], workspace),
           "quality: refused (strict)", "duplicate_sample_id: 1 samples ('s-3')", "report_position_sentinel: 2 reports")
    assert run_cli(["data", "list"], workspace).stdout.count('"name"') == 1
    # --min-reports reaches the core: the command line reports what the API reports
    proc = run_cli(["data", "import", str(path), "--name", "m3", "--min-reports", "3"], workspace)
    api = import_measurements(path, name="api3", min_reports=3).quality
    assert json.loads(proc.stdout)["quality"] == api.to_dict() and api.issues["too_few_reports"].count > 1


# --------------------------------------------------------------------------- prediction, training


@pytest.fixture(scope="module")
def knn_ws(tmp_path_factory: pytest.TempPathFactory, workspace_env: Any) -> dict[str, Any]:
    """A clean synthetic import and a kNN run on it."""
    path = tmp_path_factory.mktemp("quality_ws")
    with workspace_env(path):
        import_measurements(_synthetic(n=300, seed=1), name="syn", seed=0)
        run_id = train("syn", "knn").run_id
    return {"path": path, "run": run_id}


@pytest.fixture
def knn_env(knn_ws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(knn_ws["path"]))
    return knn_ws


def test_predict_drops_faults_and_strict_refuses(knn_env: dict[str, Any], tmp_path: Path, run_cli: Any) -> None:
    doc = to_json_dict(_synthetic(n=12, seed=5))
    doc["samples"].append({**copy.deepcopy(doc["samples"][0]), "id": "s-2"})
    doc["samples"][1]["truth"] = {"lat": 0.0, "lon": 0.0}
    doc["samples"][3]["reports"][0]["rss_dbm"] = -999
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    out = predict_file(knn_env["run"], path)
    assert out.file.samples == 13
    assert _counts(out.file.quality) == {"duplicate_sample_id": 1, "rss_out_of_range": 1,
                                         "truth_position_sentinel": 1}
    preds = {p.id: p for p in out.runs[0].predictions}
    assert len(preds) == 12 and preds["s-1"].error_m is None and preds["s-1"].truth is None
    errors = [p.error_m for sid, p in preds.items() if sid != "s-1"]
    assert np.median(errors) < 300.0  # a truth at (0, 0) would have made one error of 5,700 km
    proc = run_cli(["predict", "--run", knn_env["run"], "--input", str(path)], knn_env["path"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["quality"] == out.file.quality.to_dict()
    assert sum(line.startswith("warning: quality: dropped") for line in proc.stderr.splitlines()) == 3
    _fails(run_cli(["predict", "--run", knn_env["run"], "--input", str(path), "--strict"], knn_env["path"]),
           "quality: refused (strict): samples[3].reports[0].rss_dbm: expected a number in [-200, 30], got -999")
    with pytest.raises(MeasurementQualityError):
        predict_file(knn_env["run"], path, strict=True)


def test_training_refuses_an_extent_over_the_limit(knn_env: dict[str, Any], run_cli: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    wide = _synthetic(n=120, seed=2, side_m=60_000.0)  # legitimately wide: the quality checks keep it
    summary = import_measurements(wide, name="wide", seed=0)
    assert not summary.quality.faulty
    extent = position_extent_m("wide")
    assert 50_000.0 < extent["extent_m"] < 60_000.0
    km = f"{extent['extent_m'] / 1000:,.1f} km"
    with pytest.raises(InvalidInputError, match=f"dataset: 'wide' spans {km} .*more than the 50 km limit"):
        train("wide", "knn")
    assert train("wide", "knn", allow_large_extent=True).summary.median_m > 0
    _fails(run_cli(["train", "--dataset", "wide", "--model", "setnet"], knn_env["path"]),
           f"spans {km}", "--allow-large-extent")
    proc = run_cli(["train", "--dataset", "wide", "--model", "weighted_centroid", "--allow-large-extent"],
                   knn_env["path"])
    assert proc.returncode == 0, proc.stderr
    # the limit is a setting; the small dataset passes it
    monkeypatch.setattr(settings, "max_dataset_extent_m", 1000.0)
    with pytest.raises(InvalidInputError, match="more than the 1 km limit"):
        train("syn", "knn")


# --------------------------------------------------------------------------- end to end on real data


def _antwerp_survey(split: str, limit: int) -> tuple[MeasurementSet, list[tuple[float, float]]]:
    """Antwerp messages as a survey: every gateway that heard one is a receiver reporting its own position.

    Only the gateways within 12 km of the messages are kept (the farther ones lie outside the
    file's robust extent and would be dropped, clean file or not).
    """
    ms = convert_antwerp(ANTWERP, split=split, limit=limit)
    lat0 = float(np.median([s.truth.lat for s in ms.samples]))
    lon0 = float(np.median([s.truth.lon for s in ms.samples]))
    cos0 = math.cos(math.radians(lat0))
    near = {n.id: (n.lat, n.lon) for n in ms.nodes
            if n.has_position and math.hypot((n.lat - lat0) * M_PER_DEG, (n.lon - lon0) * M_PER_DEG * cos0) < 12e3}
    samples = []
    for s in ms.samples:
        reports = tuple(Report(lat=near[r.node][0], lon=near[r.node][1], rss_dbm=r.rss_dbm) for r in s.reports
                        if r.node in near)
        if reports:
            samples.append(Sample(s.id, reports, s.truth))
    return MeasurementSet("emitter", None, (), tuple(samples)), sorted(near.values())


def test_a_dirty_real_file_trains_a_network_as_well_as_the_clean_one(workspace: Path, tmp_path: Path) -> None:
    """Mobile reports at (0, 0), a 'not received' floor and a duplicated id: cleaned, the file is the clean one.

    Measured once with this configuration (setnet, d_model 32, 1 layer, 8 epochs, seed 0, CPU):
    trained on the clean file, the network predicts the held-out messages with a median error of
    382 m, and so it does trained on the cleaned dirty file (its arrays are the clean file's).
    The README's Quality checks give the same comparison at a larger scale, with the dirty file
    also imported without the checks.
    """
    if not ANTWERP.is_dir():
        pytest.skip(f"real Antwerp LoRaWAN data not found at {ANTWERP}")
    clean, gateways = _antwerp_survey("val", 1200)
    test, _ = _antwerp_survey("test", 500)
    rng = np.random.default_rng(0)
    dirty, n_zero, n_floor = [], 0, 0
    for s in clean.samples:
        reports = list(s.reports)
        if rng.random() < 0.03:  # a receiver without a GPS fix
            reports.append(Report(lat=0.0, lon=0.0, rss_dbm=reports[0].rss_dbm))
            n_zero += 1
        heard = {(r.lat, r.lon) for r in reports}
        silent = [g for g in gateways if g not in heard]
        if rng.random() < 0.3 and silent:  # 'not received' written as -130 dBm
            reports.append(Report(lat=silent[0][0], lon=silent[0][1], rss_dbm=-130.0))
            n_floor += 1
        dirty.append(Sample(s.id, tuple(reports), s.truth))
    doc = to_json_dict(MeasurementSet("emitter", None, (), tuple(dirty)))
    doc["samples"].append({**doc["samples"][5], "id": doc["samples"][2]["id"]})
    (tmp_path / "dirty.json").write_text(json.dumps(doc))
    dump_measurements(clean, tmp_path / "clean.json")
    dump_measurements(test, tmp_path / "test.json")
    assert (n_zero, n_floor) == (39, 349)

    # without the checks the frame (the centroid of every position) would move tens of km
    lat = [r.lat for s in dirty for r in s.reports] + [s.truth.lat for s in dirty]
    assert (np.mean(lat) - np.mean([r.lat for s in clean.samples for r in s.reports]
                                   + [s.truth.lat for s in clean.samples])) * M_PER_DEG < -10_000

    q_clean = import_measurements(tmp_path / "clean.json", name="clean", seed=1).quality
    q_dirty = import_measurements(tmp_path / "dirty.json", name="dirty", seed=1).quality
    assert not q_clean.faulty
    assert _counts(q_dirty) == {"duplicate_sample_id": 1, "report_position_sentinel": n_zero, "rss_sentinel": n_floor}
    assert q_dirty.kept == q_clean.kept
    # cleaned, the dirty file is the clean one: the same frame, splits and arrays
    a, b = open_dataset("clean"), open_dataset("dirty")
    assert a.attrs["frame"] == b.attrs["frame"] and position_extent_m("dirty")["extent_m"] < 30_000.0
    for key in ("splits/train", "splits/val", "samples/rss_dbm", "samples/node_pos_m", "samples/pos_m"):
        assert np.array_equal(np.asarray(a[key][...]), np.asarray(b[key][...]), equal_nan=True), key

    run = train("dirty", "setnet", model_config={"d_model": 32, "layers": 1, "heads": 2},
                train_config={"epochs": 8, "batch_size": 64, "patience": 0, "device": "cpu"}, seed=0)
    out = predict_file(run.run_id, tmp_path / "test.json")
    errors = np.array([p.error_m for p in out.runs[0].predictions])
    assert len(errors) == len(test.samples) and not out.file.quality.faulty
    assert np.median(errors) < 420.0, np.median(errors)  # clean file: 382 m (measured once)


# --------------------------------------------------------------------------- pages

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_tab_shows_the_quality_and_strict_refuses(workspace: Path) -> None:
    from streamlit.testing.v1 import AppTest

    doc, counts = _dirty_doc()
    at = AppTest.from_file(str(ROOT / "pages" / "views" / "data_generation.py"), default_timeout=60)
    at.run()
    at.file_uploader(key="dg_import_file").set_value(("dirty.json", json.dumps(doc).encode(), "application/json"))
    at.text_input(key="dg_import_name").set_value("dirty")
    at.checkbox(key="dg_import_strict").check()
    at.run()
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] and at.error[0].value.startswith("quality: refused (strict): samples[10]")
    assert not (workspace / "datasets").exists() or not list((workspace / "datasets").iterdir())
    at.checkbox(key="dg_import_strict").uncheck()
    at.run()
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Imported **dirty**: 199 samples" in at.success[0].value
    assert at.warning[0].value == import_measurements(json.dumps(doc).encode(), name="again").quality.summary()
    table = next(df.value for df in at.dataframe if "reason" in df.value)
    assert dict(zip(table["reason"], table["count"])) == counts


def test_live_inference_shows_the_quality_and_strict_refuses(knn_env: dict[str, Any]) -> None:
    from streamlit.testing.v1 import AppTest

    doc = to_json_dict(_synthetic(n=12, seed=5))
    doc["samples"][1]["truth"] = {"lat": 0.0, "lon": 0.0}
    at = AppTest.from_file(str(ROOT / "pages" / "views" / "live_inference.py"), default_timeout=60)
    at.run()
    at.multiselect(key="li_runs").set_value([knn_env["run"]])
    at.run()
    at.file_uploader(key="li_upload").set_value(("syn.json", json.dumps(doc).encode(), "application/json"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "quality: dropped 1 truths (truth_position_sentinel 1)" in at.warning[0].value
    assert at.metric  # the samples are predicted
    at.checkbox(key="li_strict").check()
    at.run()
    assert at.error[0].value.startswith("quality: refused (strict): sample 's-1' truth: lat/lon (0, 0)")
    assert not at.metric


def test_the_training_monitor_refuses_a_wide_dataset_unless_allowed(workspace: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from rflocal_core.jobs import REGISTRY

    import_measurements(_synthetic(n=120, seed=2, side_m=60_000.0), name="wide-page", seed=0)
    at = AppTest.from_file(str(ROOT / "pages" / "views" / "training_monitor.py"), default_timeout=60)
    at.run()
    at.selectbox(key="tm_dataset").set_value("wide-page")
    at.selectbox(key="tm_model").set_value("weighted_centroid")
    at.run()
    at.button(key="tm_start").click()
    at.run()
    assert not at.exception and at.error[0].value.startswith("dataset: 'wide-page' spans ")
    assert "more than the 50 km limit" in at.error[0].value and not at.success
    at.checkbox(key="tm_large_extent").check()
    at.button(key="tm_start").click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    run_id = at.success[0].value.split("**")[1]
    job = next(j for j in REGISTRY.list(kind="train") if j.label == run_id)
    assert job.wait(60) and job.state == "done", job.error
