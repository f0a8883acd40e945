"""Tracking after a model: sequence files (``sequence`` + ``t_s``), ``predict --track``, ``data export --sequences``,
and Live Inference's tracking choice (AppTest, the shipped demo runs)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rflocal_core import demo
from rflocal_core.cli import main
from rflocal_core.dataset import export_dataset
from rflocal_core.dataset.sequences import export_sequences
from rflocal_core.infer import load_run, predict_measurements, run_outdoor_mask, sequence_lines, track_prediction
from rflocal_core.measurements import check_quality, dumps_measurements, load_measurements
from rflocal_core.options import options
from rflocal_core.tracking import TrackConfig
from rflocal_core.train import train

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "views" / "live_inference.py")


def _demo_sequences(seq_len: int = 5) -> dict:
    """The demo example file as sequences of ``seq_len`` samples, one report time (1 s apart) each."""
    doc = json.loads(demo.EXAMPLE_FILE.read_text())
    for i, sample in enumerate(doc["samples"]):
        sample["sequence"] = f"walk-{i // seq_len}"
        for report in sample["reports"]:
            report["t_s"] = float(i % seq_len)
    return doc


def test_a_sequence_file_reads_writes_and_survives_the_quality_checks() -> None:
    ms = load_measurements(json.dumps(_demo_sequences()).encode())
    assert {s.sequence for s in ms.samples} == {f"walk-{k}" for k in range(5)}
    again = load_measurements(dumps_measurements(ms).encode())
    assert [s.sequence for s in again.samples] == [s.sequence for s in ms.samples]
    assert [s.sequence for s in check_quality(ms)[0].samples] == [s.sequence for s in ms.samples]
    bad = _demo_sequences()
    bad["samples"][2]["sequence"] = ""
    with pytest.raises(ValueError, match=r"samples\[2\]\.sequence: expected a sequence id"):
        load_measurements(json.dumps(bad).encode())


@pytest.mark.skipif(not demo.demo_available(), reason="assets/demo is missing (make demo-model)")
def test_predict_track_cli_keeps_the_raw_rows_and_adds_the_tracked_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    demo.install_demo()
    run_id = demo.DEMO_RUNS[0]
    file = tmp_path / "walks.json"
    file.write_text(json.dumps(_demo_sequences()))
    assert main(["predict", "--run", run_id, "--input", str(file)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "tracked_x_m" not in plain["predictions"][0] and "track" not in plain
    for method in ("kalman", "particle"):
        assert main(["predict", "--run", run_id, "--input", str(file), "--track", method]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["track"] == method and len(out["predictions"]) == 25
        for raw, row in zip(plain["predictions"], out["predictions"]):
            assert (row["x_m"], row["y_m"], row["error_m"]) == (raw["x_m"], raw["y_m"], raw["error_m"])
            truth = np.array([row["truth"]["x_m"], row["truth"]["y_m"]])
            tracked = np.array([row["tracked_x_m"], row["tracked_y_m"]])
            assert row["tracked_error_m"] == pytest.approx(np.hypot(*(tracked - truth)), abs=0.02)
            assert row["sequence"].startswith("walk-") and row["tracked_sigma_x_m"] > 0
        # the first report of a sequence: the filter starts at the report (Kalman) or near it
        first = out["predictions"][0]
        assert np.hypot(first["tracked_x_m"] - first["x_m"], first["tracked_y_m"] - first["y_m"]) < 3 * max(
            first["sigma_x_m"] or 25.0, first["sigma_y_m"] or 25.0)
    # the particle filter never puts the device inside one of the scene's buildings
    run = load_run(run_id)
    mask = run_outdoor_mask(run, out["scene"])
    assert not mask.outdoor.all()  # the demo scene's footprints are known
    xs, ys = [r["tracked_x_m"] for r in out["predictions"]], [r["tracked_y_m"] for r in out["predictions"]]
    assert mask.is_outdoor(np.array(xs), np.array(ys)).all()


@pytest.mark.skipif(not demo.demo_available(), reason="assets/demo is missing (make demo-model)")
def test_files_without_sequences_or_times_are_refused_naming_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    demo.install_demo()
    assert main(["predict", "--run", demo.DEMO_RUNS[0], "--input", str(demo.EXAMPLE_FILE), "--track", "kalman"]) == 2
    err = capsys.readouterr().err
    assert "samples[0].sequence: tracking needs each sample's sequence id" in err and "got none for 25 of 25" in err
    doc = _demo_sequences()
    for sample in doc["samples"]:
        for report in sample["reports"]:
            report.pop("t_s")
    file = tmp_path / "no_times.json"
    file.write_text(json.dumps(doc))
    assert main(["predict", "--run", demo.DEMO_RUNS[0], "--input", str(file), "--track", "particle"]) == 2
    err = capsys.readouterr().err
    assert "samples[0].reports[].t_s: the 5 samples of sequence 'walk-0' all have t_s = 0" in err
    assert main(["predict", "--run", demo.DEMO_RUNS[0], "--input", str(file), "--track", "ukf"]) == 2
    assert "track: expected one of kalman, particle or None, got 'ukf'" in capsys.readouterr().err


def test_a_moving_dataset_exports_as_sequences_and_tracks(workspace: Path, tiny_dataset,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    tiny_dataset("trk", "trkds", samples=100, timing=False, sequence_length=(5, 5), motion="vehicular")
    whole = export_dataset("trkds", split="test", limit=6)
    ms = export_sequences("trkds", split="test", limit=6)
    history = export_sequences("trkds", split="test", limit=6, history=True)
    assert {s.sequence for s in ms.samples} == {s.id for s in whole.samples}
    for sample in whole.samples:
        steps = [s for s in ms.samples if s.sequence == sample.id]
        assert len(steps) == len({r.t_s for r in sample.reports})
        assert len({r.t_s for s in steps for r in s.reports}) == len(steps)  # one time each
        assert (steps[-1].truth.x_m, steps[-1].truth.y_m) == (sample.truth.x_m, sample.truth.y_m)
        path = np.array([[s.truth.x_m, s.truth.y_m] for s in steps])
        assert np.hypot(*np.diff(path, axis=0).T).max() > 0.5  # a vehicle moves between reports
        last = [s for s in history.samples if s.sequence == sample.id][-1]
        assert sorted(last.reports, key=lambda r: (r.t_s, r.node)) == sorted(sample.reports,
                                                                               key=lambda r: (r.t_s, r.node))
    # the command line writes the same file
    assert main(["data", "export", "--dataset", "trkds", "--limit", "6", "--sequences", "per-report",
                 "--out", str(workspace / "walks.json")]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == len(ms.samples)
    assert load_measurements(workspace / "walks.json") == load_measurements(dumps_measurements(ms).encode())
    run = load_run(train("trkds", "knn").run_id)
    res = predict_measurements(run, ms)
    tracked = track_prediction(res, ms, TrackConfig(method="kalman", motion="vehicular"))
    assert tracked.track == "kalman" and all(p.tracked_x_m is not None for p in tracked.predictions)
    lines = sequence_lines(tracked, tracked.predictions[0].id)
    assert lines is not None and len(lines["raw_x"]) == len(lines["tracked_x"]) == 5
    assert sequence_lines(res, res.predictions[0].id) is None  # untracked: nothing to draw
    with pytest.raises(ValueError, match=r"samples\[0\]\.sequence"):
        track_prediction(res, replace(ms, samples=tuple(replace(s, sequence=None) for s in ms.samples)),
                         TrackConfig(method="kalman"))


@pytest.mark.skipif(not demo.demo_available(), reason="assets/demo is missing (make demo-model)")
def test_live_inference_offers_tracking_and_draws_raw_and_tracked_tracks(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(tmp_path / "ws"))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    at.multiselect(key="li_runs").set_value([demo.DEMO_RUNS[0]])
    at.run()
    at.file_uploader(key="li_upload").set_value(("walks.json", json.dumps(_demo_sequences()).encode(),
                                                 "application/json"))
    at.run()
    assert not at.exception, at.exception
    box = at.selectbox(key="li_track")
    assert list(box.options) == ["none", *options(TrackConfig)["method"].choices]  # derived from the option
    assert list(at.selectbox(key="li_track_motion").options) == list(options(TrackConfig)["motion"].choices)
    box.set_value("particle")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (spec,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith("li_map")]
    names = [trace.get("name", "") for trace in spec["data"]]
    assert any(n.startswith("raw track") for n in names) and any(n.startswith("tracked (particle") for n in names)
    assert any(m.value.startswith("tracked (particle") for m in at.markdown)
    table = at.dataframe[-1].value
    assert {"tracked_x_m", "tracked_y_m", "tracked_error_m", "sequence"} <= set(table.columns)
