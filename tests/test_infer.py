"""Live Inference core and command line: measurement files in, positions out, for every kind of run."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rflocal_core import settings
from rflocal_core.dataset import export_dataset
from rflocal_core.infer import (
    ELLIPSE_LEVELS,
    FOCUS_MIN_M,
    ellipse_latlon,
    load_run,
    predict_file,
    predict_measurements,
    predictions_table,
    report_timeline,
    sample_heatmap,
    scale_bar_length,
    scene_map,
    scene_overlay,
)
from rflocal_core.measurements import dumps_measurements, load_measurements, to_json_dict
from rflocal_core.models import errors_m, load_inputs
from rflocal_core.reference import REFERENCE_FILE, InferenceInputError, run_reference
from rflocal_core.train import train

MODELS = ("weighted_centroid", "knn", "map_matching", "setnet")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, workspace_env, tiny_dataset):
    """One tiny scene, a small ue dataset with timing and angles, and a run of each kind of model."""
    path = tmp_path_factory.mktemp("infer") / "workspace"
    path.mkdir()
    with workspace_env(path):
        tiny_dataset("inf", "infds", samples=400)
        # setnet in the scene frame: the file checks here are those of a network tied to its scene (an unknown
        # node is listed, not placed); the sample frame, its default, reads files of any scene (test_infer_unseen_scene)
        runs = {m: train("infds", m, model_config={"frame": "scene"} if m == "setnet" else None,
                         train_config={"epochs": 4}, seed=0).run_id for m in MODELS}
        doc = to_json_dict(export_dataset("infds", split="test", limit=12))
        (path / "test12.json").write_text(json.dumps(doc))
        yield {"path": path, "runs": runs, "doc": doc}


@pytest.fixture
def env(ws, monkeypatch):
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(ws["path"]))
    return ws


def _file(tmp_path: Path, doc: dict, name: str = "m.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize("model", MODELS)
def test_a_file_predicts_exactly_as_the_dataset_split(env, model):
    """Exported test samples read back from JSON give the same positions as the Zarr split."""
    run = load_run(env["runs"][model])
    x = load_inputs("infds", "test", with_maps=run.needs_maps)
    by_id = {f"infds-{int(i)}": e for i, e in zip(x.indices, errors_m(run.predict(x), x))}
    out = predict_measurements(run, export_dataset("infds", split="test"), top_k=0)
    assert not out.bad_samples and not out.warnings
    assert len(out.predictions) == len(x)
    for row in out.predictions:
        assert row.error_m == pytest.approx(by_id[row.id], abs=0.02)  # file values are float32, 2 decimals
        assert {"x_m", "y_m", "lat", "lon", "sigma_x_m", "sigma_y_m", "error_m", "truth"} <= set(row.to_json())
    # the lat/lon of a prediction is the frame's image of its x/y
    frame = run.reference.frame("inf")
    row = out.predictions[0]
    lat, lon = frame.to_latlon(row.x_m, row.y_m)
    assert (float(lat), float(lon)) == pytest.approx((row.lat, row.lon), abs=1e-6)


def test_uncertainty_and_posterior(env):
    mm = predict_measurements(load_run(env["runs"]["map_matching"]), load_measurements(env["path"] / "test12.json"),
                              heatmaps=True)
    for row in mm.predictions:
        assert row.sigma_x_m is not None and row.sigma_x_m >= 0
        heat = mm.heatmaps[row.id].p
        assert heat.sum() == pytest.approx(1.0, abs=1e-6)
        probs = [c.p for c in row.candidates]
        assert 1 <= len(probs) <= 5 and sum(probs) <= 1.0 + 1e-6 and probs[0] > 0
    wc = predict_measurements(load_run(env["runs"]["weighted_centroid"]), load_measurements(env["path"] / "test12.json"))
    assert all(r.sigma_x_m is None and r.candidates == () for r in wc.predictions)
    assert wc.heatmaps is None and "heatmaps" not in mm.to_json()
    # one sample's heatmap on its own is the one of the batch
    ms = load_measurements(env["path"] / "test12.json")
    sid = mm.predictions[3].id
    one = sample_heatmap(load_run(env["runs"]["map_matching"]), ms, sid)
    np.testing.assert_array_equal(one.p, mm.heatmaps[sid].p)
    assert sample_heatmap(load_run(env["runs"]["setnet"]), ms, sid) is None


def test_knn_posterior_is_its_neighbours_weights(env):
    """kNN's map: its k neighbours' weights spread over a grid; its mean is the estimate, its modes the candidates."""
    run = load_run(env["runs"]["knn"])
    ms = load_measurements(env["path"] / "test12.json")
    out = predict_measurements(run, ms, heatmaps=True)
    for row in out.predictions:
        heat = out.heatmaps[row.id]
        assert heat.p.shape == (heat.grid.ny, heat.grid.nx) and heat.p.sum() == pytest.approx(1.0, abs=1e-9)
        mean = (heat.p.sum(0) @ heat.grid.x_m, heat.p.sum(1) @ heat.grid.y_m)
        # the mean of the spread weights is the estimate (the grid leaves room around the training area)
        assert np.hypot(mean[0] - row.x_m, mean[1] - row.y_m) < 0.25 * heat.grid.cell_m + 0.05
        assert 1 <= len(row.candidates) <= 5 and sum(c.p for c in row.candidates) <= 1.0 + 1e-6
    # the strongest candidate lies at a neighbour's place: the cell of most weight
    row = out.predictions[0]
    heat = out.heatmaps[row.id]
    iy, ix = np.unravel_index(np.argmax(heat.p), heat.p.shape)
    assert (row.candidates[0].x_m, row.candidates[0].y_m) == pytest.approx(
        (heat.grid.x_m[ix], heat.grid.y_m[iy]), abs=0.01)
    assert sample_heatmap(run, ms, row.id) is not None


def test_scene_map_clips_nothing_and_has_a_round_scale_bar(env):
    run = load_run(env["runs"]["setnet"])
    out = predict_measurements(run, load_measurements(env["path"] / "test12.json"))
    far = (10_000.0, -3_000.0)  # a point far outside the scene widens the map to hold it
    points = [(p.x_m, p.y_m) for p in out.predictions]
    view = scene_map(run, out.scene, points)
    x0, x1, y0, y1 = view.extent_m
    assert view.buildings and len(view.nodes) == 5
    for xs, ys in view.buildings:
        assert x0 <= min(xs) and max(xs) <= x1 and y0 <= min(ys) and max(ys) <= y1
    for x, y in [*points, *((n["x_m"], n["y_m"]) for n in view.nodes)]:
        assert x0 <= x <= x1 and y0 <= y <= y1
    assert (x1 - x0) / 10 <= view.scale_bar_m <= (x1 - x0) / 5
    # the box to zoom to holds the points alone, at least FOCUS_MIN_M a side
    one = scene_map(run, out.scene, points[:1])
    fx0, fx1, fy0, fy1 = one.focus_m
    assert fx0 < points[0][0] < fx1 and fy0 < points[0][1] < fy1 and fx1 - fx0 == pytest.approx(FOCUS_MIN_M, abs=0.02)
    assert one.focus_scale_bar_m == 20.0 and one.extent_m == view.extent_m
    wide = scene_map(run, out.scene, [*points, far])
    assert wide.extent_m[1] >= far[0] and wide.extent_m[2] <= far[1] and wide.scale_bar_m > view.scale_bar_m
    # building outlines in metres are the footprints of the workspace's scene (their lat/lon mapped by the frame)
    geo = scene_overlay(run, out.scene)["buildings"]
    assert len(view.buildings) >= len(geo["features"])
    assert [scale_bar_length(w) for w in (512.0, 1000.0, 37.0, 3.0, 0.5)] == [100.0, 200.0, 5.0, 1.0, 1.0]


def test_cli_predict_gives_the_core_numbers(env, run_cli, tmp_path):
    run_id = env["runs"]["setnet"]
    out_file = tmp_path / "pred.json"
    proc = run_cli(["predict", "--run", run_id, "--input", str(env["path"] / "test12.json"), "--out", str(out_file)],
                   env["path"])
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout)
    core = predict_file(run_id, env["path"] / "test12.json")
    assert json.loads(out_file.read_text()) == cli
    assert [(p["id"], p["x_m"], p["y_m"], p["sigma_x_m"], p["error_m"]) for p in cli["predictions"]] == \
           [(p.id, p.x_m, p.y_m, p.sigma_x_m, p.error_m) for p in core.runs[0].predictions]
    # the CLI prints the core's JSON: the run's keys, and the file's quality
    timing = ("predict_ms", "predict_ms_per_sample")
    assert {k: v for k, v in cli.items() if k not in timing} == \
           {**{k: v for k, v in core.runs[0].to_json().items() if k not in timing}, "quality": core.file.quality.to_dict()}
    two = run_cli(["predict", "--run", run_id, "--run", env["runs"]["knn"], "--input", str(env["path"] / "test12.json")],
                  env["path"])
    assert two.returncode == 0 and [r["run_id"] for r in json.loads(two.stdout)["runs"]] == [run_id, env["runs"]["knn"]]


def _edited(doc: dict, fn) -> dict:
    d = copy.deepcopy(doc)
    fn(d)
    return d


def _moved(d: dict) -> None:
    d["nodes"][0]["x_m"] += 300.0
    d["nodes"][0].pop("lat")
    d["nodes"][0].pop("lon")


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d.update(mode="emitter"), "mode: the file holds 'emitter' measurements"),
    (lambda d: d.update(scene="elsewhere"), "scene: the file is for scene 'elsewhere'"),
    (_moved, "the file belongs to another scene or site layout"),
])
def test_a_file_that_does_not_fit_the_run_is_refused(env, run_cli, tmp_path, edit, needle):
    path = _file(tmp_path, _edited(env["doc"], edit))
    with pytest.raises(InferenceInputError) as info:
        predict_file(env["runs"]["knn"], path)
    assert needle in str(info.value)
    proc = run_cli(["predict", "--run", env["runs"]["knn"], "--input", str(path)], env["path"])
    assert proc.returncode == 2 and needle in proc.stderr and proc.stdout == ""


def test_unknown_nodes_and_bad_samples_are_listed_while_the_rest_predicts(env, tmp_path):
    def edit(d: dict) -> None:
        d["nodes"].append({"id": "stranger", "x_m": 5000.0, "y_m": 5000.0})
        d["samples"][0]["reports"][0]["node"] = "stranger"
        d["samples"][1]["reports"][0]["rss_dbm"] = "loud"

    doc = _edited(env["doc"], edit)
    out = predict_file(env["runs"]["setnet"], _file(tmp_path, doc)).runs[0]
    bad = {b.id: b.message for b in out.bad_samples}
    assert set(bad) == {doc["samples"][0]["id"], doc["samples"][1]["id"]}
    assert "'stranger'" in bad[doc["samples"][0]["id"]] and "never saw" in bad[doc["samples"][0]["id"]]
    assert "samples[1].reports[0].rss_dbm" in bad[doc["samples"][1]["id"]]
    assert len(out.predictions) == len(doc["samples"]) - 2


def test_a_node_known_only_by_position_is_matched_and_out_of_range_rss_is_flagged(env, tmp_path):
    def edit(d: dict) -> None:
        old = d["nodes"][0]["id"]
        d["nodes"][0]["id"] = "renamed"
        for s in d["samples"]:
            for r in s["reports"]:
                if r.get("node") == old:
                    r["node"] = "renamed"
        d["samples"][0]["reports"][0]["rss_dbm"] = 20.0

    out = predict_file(env["runs"]["knn"], _file(tmp_path, _edited(env["doc"], edit))).runs[0]
    assert any("matched to training nodes at the same position" in w for w in out.warnings)
    flags = out.predictions[0].flags
    assert any("outside the training range" in f for f in flags), flags
    assert not any(p.flags for p in out.predictions[1:])


def test_features_the_model_never_saw_are_ignored_with_a_warning(env, tmp_path):
    """A model trained without AoA must not read AoA it never learned: the warning says so."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset

    generate_dataset(GenerationConfig(name="infrss", scenes=("inf",), samples_per_scene=150, cell_size_m=4.0,
                                      map_samples_per_tx=1_000_000, timing=False, min_sites=2))  # RSS only
    run_id = train("infrss", "weighted_centroid").run_id
    out = predict_file(run_id, env["path"] / "test12.json").runs[0]
    assert any("aoa_deg" in w and "trained without" in w for w in out.warnings)
    assert len(out.predictions) == 12


def test_a_run_predicts_without_its_dataset_from_its_reference(env, tmp_path, monkeypatch):
    other = tmp_path / "empty-ws"
    (other / "runs").mkdir(parents=True)
    run_id = env["runs"]["setnet"]
    shutil.copytree(env["path"] / "runs" / run_id, other / "runs" / run_id)
    expected = predict_file(run_id, env["path"] / "test12.json").runs[0].predictions
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(other))
    assert predict_file(run_id, env["path"] / "test12.json").runs[0].predictions == expected
    (other / "runs" / run_id / REFERENCE_FILE).unlink()
    with pytest.raises(InferenceInputError, match="has no reference.json and its training dataset 'infds'"):
        run_reference(run_id)


def test_an_old_run_without_reference_gets_one_from_its_dataset(env):
    run_id = env["runs"]["weighted_centroid"]
    file = env["path"] / "runs" / run_id / REFERENCE_FILE
    before = json.loads(file.read_text())
    file.unlink()
    ref = run_reference(run_id)
    assert file.is_file() and json.loads(file.read_text()) == before
    assert ref.scenes == ("inf",) and [n["id"] for n in ref.nodes["inf"]] == [f"site-{i}" for i in range(5)]
    assert ref.features == ("rss_dbm", "toa_ns", "aoa_deg")


def test_views_ellipse_timeline_table_overlay(env):
    run = load_run(env["runs"]["setnet"])
    ms = load_measurements(env["path"] / "test12.json")
    out = predict_measurements(run, ms)
    row = out.predictions[0]
    frame = run.reference.frame("inf")
    ring = np.array(ellipse_latlon(row, frame, k=2))
    x, y = frame.to_xy(ring[:, 0], ring[:, 1])
    # every point of the 2-sigma ellipse satisfies (dx/2sx)^2 + (dy/2sy)^2 = 1
    d = ((x - row.x_m) / (2 * row.sigma_x_m)) ** 2 + ((y - row.y_m) / (2 * row.sigma_y_m)) ** 2
    np.testing.assert_allclose(d, 1.0, atol=1e-3)
    assert ELLIPSE_LEVELS[1] == pytest.approx(0.3935, abs=1e-4) and ELLIPSE_LEVELS[2] == pytest.approx(0.8647, abs=1e-4)
    timeline = report_timeline(ms, row.id)
    assert len(timeline) == len(ms.samples[0].reports) and all("rss_dbm" in r for r in timeline)
    table = predictions_table([out])
    assert len(table) == 12 and table[0]["id"] == row.id
    overlay = scene_overlay(run, "inf")
    assert len(overlay["nodes"]) == 5 and overlay["buildings"]["features"]


def test_dumps_round_trip_keeps_predictions(env, tmp_path):
    ms = load_measurements(env["path"] / "test12.json")
    again = tmp_path / "again.json"
    again.write_text(dumps_measurements(ms))
    a = predict_file(env["runs"]["knn"], env["path"] / "test12.json").runs[0].predictions
    b = predict_file(env["runs"]["knn"], again).runs[0].predictions
    assert a == b


def test_runs_on_imported_measurements_predict_their_own_files(env, tmp_path):
    """Imported data (no maps): nodes come from the file's node table, matched by id."""
    from rflocal_core.dataset import import_measurements

    full = tmp_path / "all.json"
    full.write_text(json.dumps(to_json_dict(export_dataset("infds", split="train"))))
    import_measurements(full, name="infimp", seed=0)
    from rflocal_core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="mapformer reads radio maps and scene rasters, but dataset 'infimp'"):
        train("infimp", "mapformer")
    for model in ("knn", "setnet"):
        run_id = train("infimp", model, train_config={"epochs": 2}).run_id
        ref = run_reference(run_id)
        assert ref.source == "import" and len(ref.nodes[ref.scenes[0]]) == 5
        out = predict_file(run_id, env["path"] / "test12.json").runs[0]
        assert len(out.predictions) == 12 and not out.bad_samples
        assert np.median([p.error_m for p in out.predictions]) < 100


def _same_as_dataset(run_id: str, dataset: str, ms) -> None:
    run = load_run(run_id)
    x = load_inputs(dataset, "test", with_maps=run.needs_maps)
    by_id = {f"{dataset}-{int(i)}": e for i, e in zip(x.indices, errors_m(run.predict(x), x))}
    out = predict_measurements(run, ms, top_k=0)
    assert not out.bad_samples and len(out.predictions) == len(x)
    for row in out.predictions:
        assert row.error_m == pytest.approx(by_id[row.id], abs=0.05)


def test_emitter_runs_predict_files_of_fixed_sensors(env, tiny_dataset):
    tiny_dataset("infem", "infemds", samples=200, mode="emitter", timing=False)
    for model in ("knn", "setnet"):
        run_id = train("infemds", model, train_config={"epochs": 2}).run_id
        _same_as_dataset(run_id, "infemds", export_dataset("infemds", split="test"))


def test_sequences_give_mapformer_earlier_reports_and_a_file_predicts_as_the_split(env, tiny_dataset):
    """Sequence datasets: earlier report times become mapformer's history tokens, in a Zarr split and a file."""
    from dataclasses import replace

    from rflocal_core.models.features import make_batch

    tiny_dataset("infseq", "infseqds", samples=160, timing=False, sequence_length=(4, 4), motion="pedestrian")
    # scene frame: after one epoch the window frame's 4 m physics prior leaves the history tokens a
    # sub-millimetre say in the answer (read, but below the check's 1 mm)
    run_id = train("infseqds", "mapformer", model_config={"d_model": 32, "heads": 2, "layers": 1, "map_res": 32,
                                                          "frame": "scene"},
                   # the trained epoch, not the untrained network (whose history weights start at zero)
                   train_config={"epochs": 1, "initial_validation": False}, seed=0).run_id
    run = load_run(run_id)
    x = load_inputs("infseqds", "test", with_maps=True)
    assert x.rss_steps_dbm is not None and x.rss_steps_dbm.shape[:2] == (len(x), 4)
    b = make_batch(x, run.model.spec)
    assert b.hist is not None and b.hist.shape == (len(x), 4, x.node_mask.shape[1], 2) and b.hist_mask.any()
    ages = b.hist[..., 1][b.hist_mask]
    assert (ages > 0).all()  # the current report is the snapshot token, not a history token
    assert not (b.hist_mask & ~b.mask.unsqueeze(1)).any()  # only nodes that report
    _same_as_dataset(run_id, "infseqds", export_dataset("infseqds", split="test"))
    # the earlier reports are read: without them the answer changes
    with_history = run.predict(x).position_m
    snapshot = run.predict(replace(x, rss_steps_dbm=None, step_age_s=None)).position_m
    assert np.abs(with_history - snapshot).max() > 1e-3


def test_drone_survey_runs_predict_reports_with_their_own_positions(env):
    """Drone surveys: every report carries its own position (rflocal format or the survey format)."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset, open_dataset
    from rflocal_core.measurements import MeasurementSet, Position, Report, Sample, parse_measurements
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="infdrone", procedural=ProceduralConfig(size_m=200, seed=2), sites=SiteConfig(count=4)))
    generate_dataset(GenerationConfig(
        name="infdroneds", scenes=("infdrone",), samples_per_scene=60, mode="emitter", survey="drone",
        drone_spacing_m=40.0, drone_points=8, cell_size_m=4.0, drone_map_samples_per_tx=400_000, timing=False,
        min_sites=3))
    run_id = train("infdroneds", "setnet", train_config={"epochs": 2}).run_id
    root = open_dataset("infdroneds")
    s = root["samples"]
    idx = np.asarray(root["splits/test"][...])
    node_pos, rss, pos = (np.asarray(s[k][...])[idx] for k in ("node_pos_m", "rss_dbm", "pos_m"))
    samples = []
    for i, row in enumerate(idx):
        reports = tuple(Report(x_m=float(node_pos[i, j, 0]), y_m=float(node_pos[i, j, 1]), alt_m=float(node_pos[i, j, 2]),
                               rss_dbm=float(rss[i, 0, j])) for j in range(node_pos.shape[1]) if np.isfinite(rss[i, 0, j]))
        truth = Position(x_m=float(pos[i, 0, 0]), y_m=float(pos[i, 0, 1]))
        samples.append(Sample(f"infdroneds-{int(row)}", reports, truth))
    _same_as_dataset(run_id, "infdroneds", MeasurementSet("emitter", "infdrone", (), tuple(samples)))
    ref = run_reference(run_id)
    assert ref.fixed_slots is False and ref.nodes["infdrone"] == []
    # The survey format (lat/lon, no altitude) reads as the same kind of file and predicts.
    frame = ref.frame("infdrone")
    heard = np.isfinite(rss[0, 0])
    lat, lon = frame.to_latlon(node_pos[0, heard, 0], node_pos[0, heard, 1])
    survey = {"src": {"features": {"x": lat.tolist(), "y": lon.tolist(), "rssi": rss[0, 0, heard].tolist()}}}
    out = predict_measurements(load_run(run_id), parse_measurements(survey))
    assert len(out.predictions) == 1 and out.predictions[0].x_m is not None
