"""Tracks from tables: the ``sequence`` column key and ``sequence_gap_s`` give each sample of a timed log its track,
with ``t_s`` counted along the track, so ``predict --track`` follows a drive test read from a table. The walk is
built from real Duke CBRS fingerprints (``../shared/data/real/duke_cbrs``): the Duke file is not in walk order and has
no times, so positions are chained nearest first and timed at walking speed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.measurements.columns import guess_columns
from rflocal_core.measurements.table import TableFormatError, preview_samples, read_table
from tests.duke_walks import timed_walks

LOG = "walk,ts,cell,rsrp,lat,lon\n" \
      "w1,0,A,-80,36.0,-78.93\nw1,0,B,-90,36.0,-78.93\nw1,5,A,-81,36.0001,-78.93\nw1,100,A,-81,36.0002,-78.93\n" \
      "w2,3,A,-70,36.001,-78.93\n,4,A,-70,36.001,-78.931\nw2,10,A,-71,36.0012,-78.93\nw3,10,B,-72,36.0012,-78.93\n"
LOG_COLUMNS = {"time": "ts", "node": "cell", "rss_dbm": "rsrp", "lat": "lat", "lon": "lon"}
WALK_FLAGS = ["--columns", "lat=Latitude,lon=Longitude,time=Timestamp", "--node-pairs", "PSC:Level,NCell*:NRxLev*",
              "--time-format", "%Y.%m.%d_%H.%M.%S"]


def _ok(proc: Any) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _tracks(source: bytes, columns: dict[str, str], gap: Any = None, **kw: Any) -> list[tuple[str, str, float]]:
    table = read_table(source, kind="csv", columns=columns, group_by=["lat", "lon"], sequence_gap_s=gap, **kw)
    return [(s.id, s.sequence, max(r.t_s for r in s.reports)) for s in table.measurements.samples]


def test_a_sequence_column_and_time_gaps_make_tracks() -> None:
    data = LOG.encode()
    assert _tracks(data, {**LOG_COLUMNS, "sequence": "walk"}) == [
        ("row-1", "w1", 0.0), ("row-3", "w1", 5.0), ("row-4", "w1", 100.0), ("row-5", "w2", 0.0), ("row-7", "w2", 7.0)]
    # the same cut where 30 s pass without a sample: w1 in two tracks
    assert [seq for _, seq, _ in _tracks(data, {**LOG_COLUMNS, "sequence": "walk"}, 30)] == \
        ["w1-1", "w1-1", "w1-2", "w2", "w2"]
    # no sequence column: the file is one stream, cut at gaps (or one track: inf), t_s along it
    assert _tracks(data, LOG_COLUMNS, "30") == [("row-1", "track-1", 0.0), ("row-3", "track-1", 5.0),
                                               ("row-4", "track-2", 0.0), ("row-5", "track-1", 3.0),
                                               ("row-6", "track-1", 4.0), ("row-7", "track-1", 10.0)]
    assert {seq for _, seq, _ in _tracks(data, LOG_COLUMNS, float("inf"))} == {"track"}
    table = read_table(data, kind="csv", columns={**LOG_COLUMNS, "sequence": "walk"}, group_by=["lat", "lon"])
    issues = table.report.to_dict()["issues"]
    assert issues["no_sequence"]["rows"] == [6]  # the empty track id: dropped, named
    assert issues["sequence_varies"]["rows"] == [8] and issues["sequence_varies"]["samples"] == ["row-7"]
    assert "tracks by the sequence id in column 'walk'" in " ".join(table.measurements.notes)
    assert preview_samples(table.measurements)[0]["sequence"] == "w1"
    with pytest.raises(TableFormatError, match="no_sequence"):
        read_table(data, kind="csv", columns={**LOG_COLUMNS, "sequence": "walk"}, group_by=["lat", "lon"],
                   strict=True)
    untimed = {k: v for k, v in LOG_COLUMNS.items() if k != "time"}
    for columns, gap, error in (({**untimed, "sequence": "walk"}, None, "columns: sequence needs time"),
                                (untimed, 60, "columns: sequence_gap_s needs time"),
                                (LOG_COLUMNS, 0, "sequence_gap_s: expected seconds above 0"),
                                (LOG_COLUMNS, "soon", "sequence_gap_s: expected seconds above 0.*'soon'")):
        with pytest.raises(InvalidInputError, match=error):
            _tracks(data, columns, gap)
    # a track column is guessed only with a time column to order it
    assert guess_columns(["Track", "Timestamp", "rsrp"])["sequence"] == "Track"
    assert "sequence" not in guess_columns(["Track", "rsrp"])


def _timed_walks(shared_data: Path, steps: int,
                 starts: tuple[int, ...] = (0, 5000)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Walks of ``steps`` real Duke samples from each start as a G-NetTrack export, and the Duke rows away from them
    (:func:`tests.duke_walks.timed_walks`)."""
    src = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    walks = timed_walks(pd.read_csv(src), starts, steps)
    assert len(walks.export) == steps * len(starts), "a walk ran out of nearby positions"
    return walks.export, walks.rest


def test_a_timed_drive_test_table_is_tracked(shared_data: Path, tmp_path: Path, workspace: Path,
                                             run_cli: Any) -> None:
    """``predict --track`` on a G-NetTrack export of two walks: the gap cuts them apart, and following each walk
    beats the per-sample answers of a knn trained on the rest of the campus."""
    from rflocal_core.dataset.table_import import import_table
    from rflocal_core.train import train

    walks, rest = _timed_walks(shared_data, 150)
    rest.to_csv(tmp_path / "rest.csv", index=False)
    walks.to_csv(tmp_path / "walks.txt", sep="\t", index=False)
    import_table(tmp_path / "rest.csv", name="campus", group_by=["latitude", "longitude", "device"],
                 columns={"node": "PCI", "lat": "latitude", "lon": "longitude", "rss_dbm": "rsrp"})
    run = train("campus", "knn").run_id
    predict = ["predict", "--run", run, "--input", str(tmp_path / "walks.txt"), *WALK_FLAGS]
    refused = run_cli([*predict, "--track", "kalman"], workspace)
    assert refused.returncode == 2 and "samples[0].sequence: tracking needs" in refused.stderr
    proc = run_cli([*predict, "--sequence-gap-s", "600", "--track", "kalman", "--track-smooth"], workspace)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["predictions"]
    assert len(rows) == 300 and [r["sequence"] for r in rows] == ["track-1"] * 150 + ["track-2"] * 150
    assert rows[0]["t_s"] == rows[150]["t_s"] == 0.0 and rows[149]["t_s"] > 300.0
    raw = np.median([r["error_m"] for r in rows])
    tracked = np.median([r["tracked_error_m"] for r in rows])
    assert tracked < 0.85 * raw, (raw, tracked)  # measured 51.9 against 86.0 m
    # Live Inference: the same export uploaded, mapped and tracked on the page
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "views" / "live_inference.py"),
                           default_timeout=120)
    at.run()
    at.multiselect(key="li_runs").set_value([run])
    at.file_uploader(key="li_upload").set_value(("walks.txt", (tmp_path / "walks.txt").read_bytes(), "text/plain"))
    at.run()
    assert at.selectbox(key="li_tab_time").value == "Timestamp"  # guessed
    at.text_input(key="li_tab_pairs").set_value("PSC:Level, NCell*:NRxLev*")
    at.text_input(key="li_tab_time_format").set_value("%Y.%m.%d_%H.%M.%S")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "li_track" not in [s.key for s in at.selectbox]  # no tracks yet: no tracker offered, a hint how
    assert any(c.value.startswith("A timed table can be tracked") for c in at.caption)
    at.text_input(key="li_tab_gap").set_value("600")
    at.run()
    at.selectbox(key="li_track").set_value("kalman")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(m.value.startswith("tracked (kalman, sequence `track-1`, t = 0 s)") for m in at.markdown)
    at.checkbox(key="li_track_smooth").check()  # the smoother, as --track-smooth: the same tracked errors
    at.run()
    shown = at.dataframe[-1].value
    by_id = {r["id"]: r["tracked_error_m"] for r in rows}
    assert [round(by_id[i], 2) for i in shown["id"]] == pytest.approx(list(shown["tracked_error_m"]), abs=0.01)


def test_an_import_splits_by_track(shared_data: Path, tmp_path: Path, workspace: Path, run_cli: Any) -> None:
    """``--split-by-sequence`` (page: "Split by track"): whole walks go to train, val or test."""
    from streamlit.testing.v1 import AppTest

    from rflocal_core.dataset import export_dataset
    from rflocal_core.infer import predict_tracked_file
    from rflocal_core.measurements import dump_measurements
    from rflocal_core.tracking import TrackConfig
    from rflocal_core.train import train
    from tests.page_support import import_tab, import_with

    walks, _ = _timed_walks(shared_data, 40, (0, 5000, 1000, 2000, 3000, 4000))
    src = tmp_path / "walks.txt"
    walks.to_csv(src, sep="\t", index=False)
    flags = ["data", "import", str(src), *WALK_FLAGS, "--split-by-sequence"]
    proc = run_cli([*flags, "--name", "walks", "--sequence-gap-s", "600"], workspace)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["split"] == {"kind": "sequences", "sequences": {"train": 4, "val": 1, "test": 1}}
    assert out["splits"] == {"train": 160, "val": 40, "test": 40, "test_unseen": 0}
    track = {f"row-{r}": (r - 1) // 40 for r in range(1, 241)}  # walk k: file rows 40k+1 ... 40k+40
    for split in ("val", "test"):
        exported = export_dataset("walks", split=split)
        held = {track[s.id] for s in exported.samples}
        assert len(held) == 1, (split, held)  # one whole walk
        # the dataset keeps each sample's track: the split exports as a walk to follow again
        assert {s.sequence for s in exported.samples} == {f"track-{held.pop() + 1}"}
    dump_measurements(exported, tmp_path / "test.json")
    run = train("walks", "knn").run_id
    tracked = predict_tracked_file(run, tmp_path / "test.json", TrackConfig(method="kalman"))
    rows = tracked.runs[0].predictions
    assert len(rows) == 40 and all(r.tracked_error_m is not None for r in rows)
    assert [r.t_s for r in rows] == sorted(r.t_s for r in rows) and rows[0].t_s == 0.0
    # evaluate --track: the split's tracks filtered as predict --track filters the exported walk
    scored = json.loads(_ok(run_cli(["evaluate", "--run", run, "--dataset", "walks", "--track", "kalman"], workspace)))
    assert scored["tracked"]["tracks"] == 1 and scored["tracked"]["untracked"] == 0
    assert scored["tracked"]["median_m"] == pytest.approx(np.median([r.tracked_error_m for r in rows]), abs=0.01)
    assert scored["median_m"] == pytest.approx(np.median([r.error_m for r in rows]), abs=0.01)
    for extra, error in (([], "split_by_sequence: 240 of the 240 samples with a truth have no sequence (first: "
                                  "sample 'row-1')"),
                         (["--sequence-gap-s", "inf"], "split_by_sequence: the 240 samples with a truth form 1 "
                                                       "track(s); expected at least 3"),
                         (["--sequence-gap-s", "600", "--split-block-m", "200"], "split_block_m: expected one of")):
        bad = run_cli([*flags, "--name", "walks2", *extra], workspace)
        assert bad.returncode == 2 and bad.stderr.startswith(f"error: {error}"), bad.stderr
    _ok(run_cli(["data", "import", str(src), *WALK_FLAGS, "--name", "flat"], workspace))  # no tracks kept
    bad = run_cli(["evaluate", "--run", run, "--dataset", "flat", "--track", "kalman"], workspace)
    assert bad.returncode == 2 and bad.stderr.startswith("error: track: dataset 'flat' keeps no tracks"), bad.stderr
    # --sequences splits a generated moving sample into steps; an import's samples already are the steps
    for name, hint in (("walks", True), ("flat", False)):
        bad = run_cli(["data", "export", "--dataset", name, "--sequences", "per-report", "--out",
                       str(tmp_path / "seq.json")], workspace)
        assert bad.returncode == 2 and "one report time per sample" in bad.stderr, bad.stderr
        assert ("already keep the tracks of the import" in bad.stderr) is hint, bad.stderr
    at = import_tab("walks.txt", src.read_bytes(), "text/plain")
    at.text_input(key="dg_tab_pairs").set_value("PSC:Level, NCell*:NRxLev*")
    at.checkbox(key="dg_import_by_track").check()
    import_with(at, dg_tab_time_format="%Y.%m.%d_%H.%M.%S", dg_tab_gap="600", dg_import_name="walks-page")
    assert not at.error, [e.value for e in at.error]
    assert any(c.value == "Split by track: tracks 4 to train, 1 to val, 1 to test" for c in at.caption)
    # Metrics: a dataset that keeps tracks offers a tracker; the tracked row next to the run's
    mx = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "views" / "metrics.py"),
                           default_timeout=120)
    mx.run()
    mx.selectbox(key="mx_dataset").set_value("walks")
    mx.multiselect(key="mx_runs").set_value([run])
    mx.run()
    mx.selectbox(key="mx_track").set_value("kalman")
    mx.run()
    assert not mx.exception and not mx.error, [e.value for e in mx.error]
    table = mx.dataframe[0].value
    assert list(table["run"]) == [run, f"{run} tracked"]
    assert table["median (m)"].iloc[1] == pytest.approx(scored["tracked"]["median_m"], abs=0.01)
    mx.selectbox(key="mx_dataset").set_value("flat")
    mx.run()
    assert "mx_track" not in [s.key for s in mx.selectbox]  # no tracks kept: no tracker offered
