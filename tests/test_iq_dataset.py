"""IQ captures in a generated emitter dataset (``data generate --mode emitter --iq``).

A scene with no buildings in the middle (two 4 m huts in far corners) and three 10 m masts;
direct paths only (``paths_max_depth=0``), no capture jitter: the cross-correlation of two stored
captures gives the difference of the emitter's distances to the two masts over c, within a
quarter sample, and the stored taps are Friis amplitude at delay d/c along the direction of
the mast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rflocal_core import iq, settings
from rflocal_core.dataset import GenerationConfig, generate_dataset, open_dataset
from rflocal_core.errors import InvalidInputError
from rflocal_core.raytrace import compute_paths, friis_path_gain_db, load_rt_scene
from rflocal_core.scene import CustomSite, SceneConfig, SiteConfig, build_scene, load_scene_meta

C = 299_792_458.0
LAT0, LON0 = 48.0, 11.0
MASTS = {"a": (0.0, 0.0), "b": (-70.0, 50.0), "c": (60.0, -40.0)}
SCENE, DATASET = "iqopen", "iqds"


def _hut(lat: float, lon: float) -> dict[str, Any]:
    dlat, dlon = 4.0 / 111_320.0, 4.0 / (111_320.0 * math.cos(math.radians(lat)))
    ring = [[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]
    return {"type": "Feature", "properties": {"height": "6"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


@pytest.fixture(scope="module")
def iq_ws(tmp_path_factory: pytest.TempPathFactory, workspace_env) -> Path:
    ws = tmp_path_factory.mktemp("iq_ws")
    half_lat, half_lon = 150.0 / 111_320.0, 150.0 / (111_320.0 * math.cos(math.radians(LAT0)))
    features = [_hut(LAT0 - half_lat, LON0 - half_lon), _hut(LAT0 + half_lat - 4e-5, LON0 + half_lon - 6e-5)]
    geojson = ws / "huts.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    masts = tuple(CustomSite(x_m=x, y_m=y, height_m=10.0, mount="ground", id=k) for k, (x, y) in MASTS.items())
    with workspace_env(ws):
        build_scene(SceneConfig(name=SCENE, source="geojson_file", path=str(geojson),
                                sites=SiteConfig(placement="custom", custom=masts)))
        generate_dataset(GenerationConfig(
            name=DATASET, scenes=(SCENE,), samples_per_scene=16, mode="emitter", iq=True, iq_jitter_ns=0.0,
            cell_size_m=4.0, map_samples_per_tx=1_000_000, map_max_depth=0, paths_max_depth=0,
            paths_samples_per_src=10_000, min_sites=3, max_distance_m=120.0, shadowing_sigma_db=0.0,
            emitter_power_dbm=(20.0, 20.0)))
    return ws


@pytest.fixture
def ws(iq_ws: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(iq_ws))
    return iq_ws


@pytest.mark.raytrace
def test_dataset_stores_captures_masks_and_estimated_features(ws: Path) -> None:
    root = open_dataset(DATASET)
    samples = root["samples"]
    n = samples["pos_m"].shape[0]
    assert samples["iq"].shape == (n, 1, 3, 2, iq.CAPTURE_SAMPLES) and samples["iq"].dtype == np.int16
    assert samples["iq"].chunks[0] <= 32  # small chunks: 4 kB per capture
    attrs = dict(samples.attrs)["iq"]
    assert attrs["sample_rate_hz"] == 30.72e6 and attrs["waveform"] == "ofdm" and attrs["adc"] == "int16"
    mask = np.asarray(samples["mask_iq"][...])
    assert mask.all()  # every mast is in sight of every emitter
    for key in ("iq_scale", "iq_snr_db", "iq_power_dbm", "iq_freq_offset_hz"):
        assert np.isfinite(np.asarray(samples[key][...])[mask]).all(), key
    assert np.asarray(samples["iq_psd_db"][...]).shape == (n, 1, 3, 16)
    # Features come from the captures: the SNR read back from a stored capture is the stored one.
    x = iq.dequantize(np.asarray(samples["iq"][0, 0, 0]), float(samples["iq_scale"][0, 0, 0]))
    assert iq.estimate_snr_db(x, occupied_hz=18e6) == pytest.approx(float(samples["iq_snr_db"][0, 0, 0]), abs=1e-3)
    # The estimated band power follows the free-space budget: 20 dBm + Friis (direct path only),
    # times the burst's share of the capture; within 1.5 dB (the ground is not traced at depth 0).
    pos = np.asarray(samples["pos_m"][:, 0])
    nodes = np.asarray(samples["node_pos_m"][0])
    d = np.linalg.norm(pos[:, None, :] - nodes[None, :, :], axis=-1)
    budget = 20.0 + friis_path_gain_db(d, 3.5e9) + 10 * np.log10(attrs["burst_samples"] / iq.CAPTURE_SAMPLES)
    power = np.asarray(samples["iq_power_dbm"][:, 0])
    assert np.abs(power - budget).max() < 1.5, np.abs(power - budget).max()
    # Every receiver's oscillator is off by its own fixed ppm: the offsets differ between masts.
    offsets = np.asarray(samples["iq_freq_offset_hz"][:, 0])
    assert np.ptp(np.median(offsets, axis=0)) > 100.0
    assert root.attrs["counts"]["iq_captures"] == int(mask.sum()) and root.attrs["counts"]["iq_ms_per_capture"] > 0


@pytest.mark.raytrace
def test_tdoa_of_stored_captures_is_the_distance_difference_over_c(ws: Path) -> None:
    samples = open_dataset(DATASET)["samples"]
    codes, scale = np.asarray(samples["iq"][:, 0]), np.asarray(samples["iq_scale"][:, 0])
    pos = np.asarray(samples["pos_m"][:, 0], dtype=float)
    nodes = np.asarray(samples["node_pos_m"][0], dtype=float)
    t0 = np.asarray(samples["iq_t0_s"][:, 0])  # [N, S]: every receiver starts at the report time
    checked = 0
    for i in range(len(pos)):
        d = np.linalg.norm(nodes - pos[i], axis=-1)
        ref = iq.dequantize(codes[i, 0], float(scale[i, 0]))
        for s in (1, 2):
            tdoa, _ = iq.tdoa_s(ref, iq.dequantize(codes[i, s], float(scale[i, s])), start_difference_s=t0[i, s] - t0[i, 0])
            assert abs(tdoa - (d[s] - d[0]) / C) < 0.25 / 30.72e6, (i, s, tdoa * C, d[s] - d[0])
            checked += 1
    assert checked == 2 * len(pos)


@pytest.mark.raytrace
def test_path_taps_are_friis_amplitude_at_d_over_c_towards_the_site(ws: Path) -> None:
    meta = load_scene_meta(SCENE)
    sites = np.array([[s["x_m"], s["y_m"], s["z_m"]] for s in meta["sites"]])
    targets = np.array([[20.0, 30.0, 1.5], [-40.0, -10.0, 1.5], [5.0, -60.0, 1.5]])
    feats = compute_paths(load_rt_scene(SCENE), targets, max_depth=0, samples_per_src=10_000, taps=4)
    taps = feats.taps
    assert taps is not None and taps.delay_ns.shape == (3, 3, 4) and taps.direction.shape == (3, 3, 4, 3)
    d = np.linalg.norm(targets[:, None, :] - sites[None, :, :], axis=-1)
    np.testing.assert_allclose(taps.delay_ns[..., 0], d / C * 1e9, atol=0.05)
    amplitude = np.hypot(taps.gain_re[..., 0], taps.gain_im[..., 0])
    np.testing.assert_allclose(20 * np.log10(amplitude), friis_path_gain_db(d, meta["sites"][0]["freq_hz"]), atol=0.05)
    towards = (sites[None, :, :] - targets[:, None, :]) / d[..., None]
    np.testing.assert_allclose(taps.direction[..., 0, :], towards, atol=1e-3)
    assert np.isnan(taps.delay_ns[..., 1:]).all() and (taps.gain_re[..., 1:] == 0).all()  # one path per link


def test_iq_needs_emitter_mode_fixed_sensors_and_timing() -> None:
    with pytest.raises(InvalidInputError, match="iq: IQ captures need mode 'emitter'"):
        GenerationConfig(name="x", scenes=("a",), mode="ue", iq=True)
    with pytest.raises(InvalidInputError, match="iq: IQ captures need mode 'emitter'"):
        GenerationConfig(name="x", scenes=("a",), mode="emitter", iq=True, timing=False)
    with pytest.raises(InvalidInputError, match="iq_bandwidth_hz: expected a bandwidth below the IQ sample rate"):
        GenerationConfig(name="x", scenes=("a",), mode="emitter", iq=True, iq_bandwidth_hz=40e6)


def test_cli_iq_flag_is_the_option() -> None:
    from rflocal_core.cli import build_parser, command_config

    args = build_parser().parse_args(["data", "generate", "--name", "d", "--scene", "s", "--mode", "emitter",
                                      "--iq", "--iq-waveform", "gfsk", "--iq-bandwidth-hz", "2e6"])
    config = command_config(args)
    assert config.iq is True and config.iq_waveform == "gfsk" and config.iq_bandwidth_hz == 2e6
    default = command_config(build_parser().parse_args(["data", "generate", "--name", "d", "--scene", "s"]))
    assert default.iq is False


@pytest.mark.raytrace
def test_iq_export_import_round_trip(ws: Path, tmp_path: Path) -> None:
    from rflocal_core.dataset import export_dataset, import_measurements
    from rflocal_core.measurements import dump_measurements, load_measurements

    ms = export_dataset(DATASET, split="train")
    reports = [r for sample in ms.samples for r in sample.reports]
    assert all(r.iq is not None and len(r.iq.i) == len(r.iq.q) == iq.CAPTURE_SAMPLES for r in reports)
    assert reports[0].iq.sample_rate_hz == 30.72e6
    path = dump_measurements(ms, tmp_path / "iq.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert list(raw["samples"][0]["reports"][0]["iq"]) == ["sample_rate_hz", "t0_s", "i", "q"]
    back = load_measurements(path)
    import_measurements(back, name="iqback", scene=SCENE)
    src, dst = open_dataset(DATASET)["samples"], open_dataset("iqback")["samples"]
    assert dict(dst.attrs)["iq"]["sample_rate_hz"] == 30.72e6
    rows = np.asarray(open_dataset(DATASET)["splits/train"][...])
    ids = [s.id for s in back.samples]
    for k, sample_id in enumerate(ids[:4]):
        row = rows[k]
        assert sample_id == f"{DATASET}-{row}"
        for s in range(3):  # node slots keep the sites' order
            a = iq.dequantize(np.asarray(src["iq"][row, 0, s]), float(src["iq_scale"][row, 0, s]))
            b = iq.dequantize(np.asarray(dst["iq"][k, 0, s]), float(dst["iq_scale"][k, 0, s]))
            assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
            assert float(dst["iq_t0_s"][k, 0, s]) == pytest.approx(float(src["iq_t0_s"][row, 0, s]))
    assert np.asarray(dst["mask_iq"][...]).sum() == len(reports)


def test_measurement_format_reads_and_refuses_iq_objects() -> None:
    from rflocal_core.errors import MeasurementFormatError
    from rflocal_core.measurements import parse_measurements

    def doc(capture: Any) -> dict[str, Any]:
        return {"format": "rflocal-measurements/1", "mode": "emitter", "nodes": [{"id": "a", "x_m": 0, "y_m": 0}],
                "samples": [{"id": "s", "reports": [{"node": "a", "iq": capture}], "truth": {"x_m": 1, "y_m": 2}}]}

    good = {"sample_rate_hz": 30.72e6, "t0_s": 12.5, "i": [1, 2.5, -3], "q": [0, 0.25, 1e-6]}
    report = parse_measurements(doc(good)).samples[0].reports[0]  # a capture alone is a report
    assert report.iq.i == (1.0, 2.5, -3.0) and report.iq.t0_s == 12.5
    for bad, message in (
        ({**good, "q": [1, 2]}, r"reports\[0\].iq.q: expected as many q samples as i samples \(3\), got 2"),
        ({k: v for k, v in good.items() if k != "t0_s"}, r"reports\[0\].iq: expected sample_rate_hz, t0_s, i, q"),
        ({**good, "i": [1, "x", 3]}, r"reports\[0\].iq.i\[1\]: expected a finite number, got \"x\""),
        ({**good, "sample_rate_hz": 0}, r"iq.sample_rate_hz: expected a number in \[1, 1e11\], got 0"),
        ({**good, "gain": 1}, r"iq.gain: unknown key"),
        ([1, 2], r"reports\[0\].iq: expected an IQ capture"),
    ):
        with pytest.raises(MeasurementFormatError, match=message):
            parse_measurements(doc(bad))


@pytest.mark.raytrace
def test_tdoa_multilateration_locates_from_the_captures(ws: Path) -> None:
    """Free space, direct paths, no jitter: three masts fix the emitter to about a metre (the
    quarter-sample TDoA error is 2.4 m of range difference); it needs no training."""
    from rflocal_core.models import BASELINES, errors_m, load_inputs

    train, test = load_inputs(DATASET, "train"), load_inputs(DATASET, "val")
    assert train.iq is not None and train.iq.shape[1:] == (3, 2, iq.CAPTURE_SAMPLES)
    assert train.iq_sample_rate_hz == 30.72e6 and np.isfinite(train.iq_scale).all()
    model = BASELINES["tdoa_multilateration"]().fit(train)
    for x in (train, test):
        pred = model.predict(x)
        assert pred.info["fallbacks"] == 0
        err = errors_m(pred, x)
        assert np.median(err) < 3.0 and err.max() < 10.0, err
    # without captures it falls back to the weighted centroid, sample by sample
    bare = test.slots(np.array([0, 1]))  # two receivers: one difference, no fix
    assert model.predict(bare).info["fallbacks"] == len(bare)


@pytest.mark.raytrace
def test_tdoa_run_predicts_a_measurement_file_from_its_captures(ws: Path, tmp_path: Path) -> None:
    """The IQ objects of an uploaded file reach the model: the file path locates as the dataset path does."""
    from rflocal_core.dataset import export_dataset
    from rflocal_core.infer import predict_file
    from rflocal_core.measurements import dump_measurements
    from rflocal_core.train import train

    run = train(DATASET, "tdoa_multilateration").run_id
    path = dump_measurements(export_dataset(DATASET, split="val"), tmp_path / "val.json")
    out = predict_file(run, path).runs[0]
    assert out.predictions and not out.bad_samples
    errors = np.array([p.error_m for p in out.predictions])
    assert np.median(errors) < 3.0, errors


@pytest.mark.raytrace
def test_heimdall_with_iq_trains_predicts_and_needs_captures(ws: Path, iq_run: str, tmp_path: Path) -> None:
    """heimdall use_iq through the run machinery on the ray-traced captures: a run that loads and
    predicts its dataset and a measurement file (captures read from the file's iq objects); a
    dataset without captures is refused naming use_iq."""
    from rflocal_core.dataset import export_dataset
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.infer import predict_file
    from rflocal_core.measurements import dump_measurements
    from rflocal_core.train import train

    options = {"use_iq": True, "iq_width": 4, "d_model": 16, "node_embedding_dim": 0}
    path = dump_measurements(export_dataset(DATASET, split="val"), tmp_path / "val.json")
    out = predict_file(iq_run, path).runs[0]
    assert out.predictions and not out.bad_samples
    assert all(p.x_m is not None and np.isfinite(p.x_m) for p in out.predictions)
    bare = tmp_path / "bare.json"
    doc = json.loads(path.read_text())
    for sample in doc["samples"]:
        for report in sample["reports"]:
            report.pop("iq", None)
    bare.write_text(json.dumps(doc))
    assert predict_file(iq_run, bare).runs[0].predictions  # reports without captures: the branch adds zeros
    with pytest.raises(InvalidInputError, match="^use_iq: heimdall reads IQ captures, but dataset"):
        train(_no_iq_dataset(tmp_path), "heimdall", model_config=options, train_config={"epochs": 1})


def _no_iq_dataset(tmp_path: Path) -> str:
    """The IQ dataset's train and val splits imported back, as they were split, without their captures."""
    from rflocal_core.dataset import export_dataset, import_measurements
    from rflocal_core.measurements import dump_measurements

    samples, fixed = [], {}
    for split in ("train", "val"):
        path = dump_measurements(export_dataset(DATASET, split=split), tmp_path / f"{split}.json")
        doc = json.loads(path.read_text())
        for sample in doc["samples"]:
            fixed[sample["id"]] = split
            for report in sample["reports"]:
                report.pop("iq", None)
        samples += doc["samples"]
    doc["samples"] = samples
    path = tmp_path / "noiq.json"
    path.write_text(json.dumps(doc))
    import_measurements(path, name="noiq", fixed_splits=fixed)
    return "noiq"


@pytest.fixture(scope="module")
def iq_run(iq_ws: Path, workspace_env: Any) -> str:
    """A small heimdall with the IQ branch trained on the captures (2 epochs)."""
    from rflocal_core.train import train

    options = {"use_iq": True, "iq_width": 4, "d_model": 16, "node_embedding_dim": 0}
    with workspace_env(iq_ws):
        return train(DATASET, "heimdall", model_config=options, train_config={"epochs": 2, "batch_size": 8},
                     seed=0).run_id


@pytest.mark.raytrace
def test_receiver_dropout_removes_the_captures_of_the_receivers_it_drops(ws: Path) -> None:
    from rflocal_core.models import load_inputs
    from rflocal_core.models.transforms import InputTransform, apply_transform

    x = load_inputs(DATASET, "train", with_maps=False)
    heard = np.isfinite(x.iq_scale)
    assert (heard.sum(1) == 3).any()
    for choice in ("strongest", "random"):
        y = apply_transform(x, InputTransform(features=("rss",), max_sites=2, site_choice=choice, seed=1))
        kept = np.isfinite(y.iq_scale)
        assert (kept.sum(1) == np.minimum(heard.sum(1), 2)).all() and not (kept & ~heard).any()
        assert np.array_equal(kept & np.isfinite(x.rss_dbm), np.isfinite(y.rss_dbm))  # RSS goes with its capture
        assert np.isnan(y.toa_ns).all() and np.isnan(y.aoa_deg).all()
    strongest = apply_transform(x, InputTransform(max_sites=1))
    rss = np.where(heard, x.rss_dbm, -np.inf)
    assert np.array_equal(np.argmax(np.isfinite(strongest.iq_scale), 1), np.argmax(rss, 1))
    with pytest.raises(InvalidInputError, match="site_choice: expected one of strongest, random, got 'weakest'"):
        InputTransform(site_choice="weakest")


@pytest.mark.raytrace
def test_iq_study_pair_trains_with_its_options_and_reports_calibration(ws: Path) -> None:
    from rflocal_core import ablate
    from rflocal_core.infer import load_run

    pair = ["heimdall + IQ, RSS only", "heimdall, RSS only"]
    out = ablate.run_study("iq", DATASET, epochs=1, variants=pair, name="iq-pair")
    assert out["state"] == "done" and [r["variant"] for r in out["rows"]] == pair
    for row, use_iq in zip(out["rows"], (True, False), strict=True):
        config = load_run(row["run_id"]).config
        assert config["model_config"]["use_iq"] is use_iq and config["input_transform"]["features"] == ["rss"]
        assert np.isfinite(row["median_m"]) and set(ablate.CALIBRATION_KEYS) <= set(row)
        record = config["sigma_calibration"]  # the val record, as train/calibrate.py kept it
        assert row["sigma_scale"] == record["scale"] and row["val_in_1sigma_after"] == record["inside_1sigma_after"]
        for when in ("before", "after"):
            one, two = row[f"test_in_1sigma_{when}"], row[f"test_in_2sigma_{when}"]
            assert 0.0 <= one <= two <= 1.0
    saved = ablate.load_ablation("iq-pair")
    assert saved["summary"][0]["test_in_2sigma_after"] == out["rows"][0]["test_in_2sigma_after"]
    assert "test_in_1sigma_before" in ablate.rows_csv(saved["rows"]).splitlines()[0]


@pytest.mark.raytrace
def test_heimdall_with_iq_predicts_a_file_with_captures_alike_in_onnxruntime(ws: Path, iq_run: str,
                                                                              tmp_path: Path) -> None:
    """The captures are graph inputs (batch and receiver axes dynamic, 1024 samples fixed), the export is checked
    within 1e-4 on val, and predicting a file with captures through onnxruntime (what ``predict --backend
    onnxruntime`` calls; its command line is tested in tests/test_onnx.py) gives PyTorch's positions."""
    from rflocal_core.dataset import export_dataset
    from rflocal_core.infer import predict_file
    from rflocal_core.infer.run import ONNX_RECORD
    from rflocal_core.measurements import dump_measurements
    from rflocal_core.models.onnx_export import EXPORT_TOLERANCE, onnx_session

    path = dump_measurements(export_dataset(DATASET, split="train"), tmp_path / "train.json")  # the most samples
    bare = json.loads(path.read_text())  # reports without captures: zeros and iq_ok false in the graph
    for sample in bare["samples"]:
        for report in sample["reports"]:
            report.pop("iq", None)
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    for file in (path, tmp_path / "bare.json"):
        onnx, torch_ = (predict_file(iq_run, file, backend=b).runs[0] for b in ("onnxruntime", "torch"))
        assert onnx.backend == "onnxruntime" and len(onnx.predictions) == len(torch_.predictions) > 0
        assert [p.id for p in onnx.predictions] == [p.id for p in torch_.predictions]
        assert [c for p in onnx.predictions for c in (p.x_m, p.y_m)] == pytest.approx(
            [c for p in torch_.predictions for c in (p.x_m, p.y_m)], abs=0.011)
    folder = ws / "runs" / iq_run
    record = json.loads((folder / ONNX_RECORD).read_text())  # made at first use, checked on val
    assert record["checked_samples"] > 0 and max(record["max_abs_diff"].values()) <= EXPORT_TOLERANCE
    shapes = {i.name: i.shape for i in onnx_session(folder / "model.onnx").get_inputs()}
    assert shapes["iq"][2:] == [2, iq.CAPTURE_SAMPLES] and all(isinstance(d, str) for d in shapes["iq"][:2])
