"""Issue 19, inference on files: a measurement file of a scene the run never saw.

A geometric model trained on a small (240 m) scene predicts a hand-built file of a 1.5 km scene
in that scene's coordinates, at positions far outside the training extent (noise-free ToA from
four nodes: the answer is known); the nodes come from the file (metres or lat/lon) or from the
workspace scene the file names. Models tied to their training scenes (kNN, map matching, a
network) refuse the file, naming the scene and why.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rflocal_core import settings
from rflocal_core.constants import C_M_PER_NS
from rflocal_core.dataset import export_dataset
from rflocal_core.geo import LocalFrame
from rflocal_core.infer import load_run, predict_file, scene_map
from rflocal_core.measurements import to_json_dict
from rflocal_core.reference import InferenceInputError
from rflocal_core.train import train

DEVICE_Z_M = 1.5
#: Four rooftop nodes near the corners of a 1.5 km square centred on the origin.
NODES = np.array([[-700.0, -680.0, 25.0], [690.0, -700.0, 31.0], [710.0, 690.0, 18.0], [-690.0, 700.0, 40.0]])
#: Targets far outside the 240 m training scene (|x|, |y| <= 120 m there).
TARGETS = np.array([[600.0, -550.0], [-640.0, 430.0], [300.0, 650.0], [-420.0, -610.0]])
GEOMETRIC = ("toa_multilateration", "aoa_triangulation", "weighted_centroid")
TIED = ("knn", "map_matching", "setnet")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, workspace_env, tiny_dataset):
    """A 240 m training scene with a small dataset, a run of each kind, and a 1.5 km workspace scene."""
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    path = tmp_path_factory.mktemp("unseen-file") / "workspace"
    path.mkdir()
    with workspace_env(path):
        tiny_dataset("small", "smallds", samples=150, cell_size_m=8.0, map_samples_per_tx=200_000,
                     paths_samples_per_src=4000)
        runs = {m: train("smallds", m, model_config={"frame": "scene"} if m == "setnet" else None,  # tied: scene frame
                         train_config={"epochs": 2}, seed=0).run_id for m in GEOMETRIC + TIED}
        build_scene(SceneConfig(name="bigtown", procedural=ProceduralConfig(size_m=1500, seed=3),
                                sites=SiteConfig(count=4)))
        doc = to_json_dict(export_dataset("smallds", split="test", limit=8))
        yield {"path": path, "runs": runs, "doc": doc}


@pytest.fixture
def env(ws, monkeypatch):
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(ws["path"]))
    return ws


def _file(tmp_path: Path, doc: dict, name: str = "city.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _reports(target: np.ndarray, nodes: np.ndarray, ids: list[str]) -> list[dict]:
    """Noise-free ToA (3-D, device at 1.5 m) and exact compass bearings of every node for one target."""
    out = []
    for node_id, (nx, ny, nz) in zip(ids, nodes):
        dist = float(np.sqrt((target[0] - nx) ** 2 + (target[1] - ny) ** 2 + (nz - DEVICE_Z_M) ** 2))
        bearing = float(np.degrees(np.arctan2(target[0] - nx, target[1] - ny)) % 360)
        rss = round(-20.0 - 25.0 * float(np.log10(dist)), 1)  # a plausible path loss (constants read as a sentinel)
        out.append({"node": node_id, "toa_ns": dist / C_M_PER_NS, "aoa_deg": bearing, "rss_dbm": rss})
    return out


def _city_doc(scene: str | None, *, frame: LocalFrame | None = None, targets: np.ndarray = TARGETS) -> dict:
    """The 1.5 km file: nodes and truths in scene metres, or (``frame`` given) in lat/lon only."""
    ids = [f"tower-{k}" for k in range(len(NODES))]
    nodes, samples = [], []
    for node_id, (x, y, z) in zip(ids, NODES):
        where = {"x_m": x, "y_m": y} if frame is None else dict(zip(("lat", "lon"), map(float, frame.to_latlon(x, y))))
        nodes.append({"id": node_id, **where, "alt_m": z})
    for k, t in enumerate(targets):
        truth = ({"x_m": float(t[0]), "y_m": float(t[1])} if frame is None
                 else dict(zip(("lat", "lon"), map(float, frame.to_latlon(t[0], t[1])))))
        samples.append({"id": f"t{k}", "reports": _reports(t, NODES, ids), "truth": truth})
    doc = {"format": "rflocal-measurements/1", "mode": "ue", "nodes": nodes, "samples": samples}
    return doc if scene is None else {**doc, "scene": scene}


def test_toa_far_outside_the_training_extent_in_a_new_scene(env, tmp_path):
    """Trained on 240 m, ToA multilateration finds noise-free targets 700-900 m from the centre of a 1.5 km
    scene it never saw: in that scene's coordinates, not clipped to the training area."""
    out = predict_file(env["runs"]["toa_multilateration"], _file(tmp_path, _city_doc("farcity"))).runs[0]
    assert out.scene == "farcity" and out.new_scene is True
    assert any("predicted in the scene's own coordinates" in w for w in out.warnings), out.warnings
    assert len(out.predictions) == len(TARGETS) and not out.bad_samples
    got = np.array([[p.x_m, p.y_m] for p in out.predictions])
    assert np.abs(got - TARGETS).max() < 1.0, got
    assert all(p.error_m < 1.0 for p in out.predictions)
    assert not any(p.flags for p in out.predictions), [p.flags for p in out.predictions]
    assert out.to_json()["new_scene"] is True


def test_aoa_and_the_centroid_predict_in_the_new_scene_too(env, tmp_path):
    path = _file(tmp_path, _city_doc("farcity"))
    aoa = predict_file(env["runs"]["aoa_triangulation"], path).runs[0]
    assert aoa.new_scene and max(p.error_m for p in aoa.predictions) < 1.0
    centroid = predict_file(env["runs"]["weighted_centroid"], path).runs[0]
    got = np.array([[p.x_m, p.y_m] for p in centroid.predictions])
    # pulled towards the nearest corner node: inside the 1.5 km scene, far from the 240 m training area
    assert (np.abs(got) <= 710.0).all() and (np.abs(got).max(1) > 200.0).all(), got
    assert (np.sign(got) == np.sign(TARGETS)).all(), got


def test_nodes_in_lat_lon_only_place_the_scene_on_earth(env, tmp_path):
    """No scene of that name anywhere: a frame centred on the file's nodes; answers in lat/lon match the truth."""
    frame = LocalFrame.at(51.2194, 4.4025)
    out = predict_file(env["runs"]["toa_multilateration"], _file(tmp_path, _city_doc(None, frame=frame))).runs[0]
    assert out.scene == "file" and out.new_scene
    for p in out.predictions:
        assert p.error_m < 1.0, p
        tx, ty = frame.to_xy(p.truth.lat, p.truth.lon)
        px, py = frame.to_xy(p.lat, p.lon)
        assert np.hypot(px - tx, py - ty) < 1.0


def test_node_positions_from_the_workspace_scene(env, tmp_path):
    """The file names a workspace scene and its sites by id only: positions and frame come from the scene."""
    from rflocal_core.scene import load_scene_meta

    meta = load_scene_meta("bigtown")
    sites = meta["sites"]
    ids = [s["id"] for s in sites]
    pos = np.array([[s["x_m"], s["y_m"], s["z_m"]] for s in sites])
    targets = np.array([[520.0, -600.0], [-610.0, 540.0], [80.0, 690.0]])
    doc = {"format": "rflocal-measurements/1", "mode": "ue", "scene": "bigtown", "nodes": [{"id": i, "position": None} for i in ids],
           "samples": [{"id": f"b{k}", "reports": _reports(t, pos, ids), "truth": {"x_m": t[0], "y_m": t[1]}}
                       for k, t in enumerate(targets)]}
    run = load_run(env["runs"]["toa_multilateration"])
    from rflocal_core.infer import predict_measurements
    from rflocal_core.measurements import load_measurements

    out = predict_measurements(run, load_measurements(_file(tmp_path, doc)))
    assert out.scene == "bigtown" and out.new_scene
    assert any("workspace scene 'bigtown'" in w for w in out.warnings), out.warnings
    assert max(p.error_m for p in out.predictions) < 1.0
    frame = LocalFrame.from_dict(meta["frame"])
    lat, lon = frame.to_latlon(targets[0, 0], targets[0, 1])
    assert abs(out.predictions[0].lat - float(lat)) < 1e-4 and abs(out.predictions[0].lon - float(lon)) < 1e-4
    # the map drawn after predicting shows that scene: its sites and its buildings, not the training ones
    view = scene_map(run, "bigtown", [(p.x_m, p.y_m) for p in out.predictions])
    assert sorted(n["id"] for n in view.nodes) == sorted(ids) and len(view.buildings) > 100
    assert view.extent_m[1] - view.extent_m[0] >= 1400


@pytest.mark.parametrize(("model", "why"), [("knn", "fingerprints"), ("map_matching", "radio maps"),
                                             ("setnet", "coordinate range of its training scene")])
def test_models_tied_to_their_training_scenes_refuse_naming_the_scene_and_why(env, tmp_path, run_cli, model, why):
    path = _file(tmp_path, _city_doc("farcity"))
    with pytest.raises(InferenceInputError) as info:
        predict_file(env["runs"][model], path)
    text = str(info.value)
    assert "scene 'farcity'" in text and why in text and "toa_multilateration" in text, text
    if model == "knn":
        proc = run_cli(["predict", "--run", env["runs"][model], "--input", str(path)], env["path"])
        assert proc.returncode == 2 and "scene 'farcity'" in proc.stderr and proc.stdout == ""


def test_the_cli_predicts_a_new_scene_file(env, tmp_path, run_cli):
    proc = run_cli(["predict", "--run", env["runs"]["toa_multilateration"], "--input",
                    str(_file(tmp_path, _city_doc("farcity")))], env["path"])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["scene"] == "farcity" and out["new_scene"] is True
    assert max(p["error_m"] for p in out["predictions"]) < 1.0


def test_the_training_scene_still_predicts_as_before_and_moved_nodes_are_a_new_layout(env, tmp_path):
    doc = env["doc"]
    same = predict_file(env["runs"]["toa_multilateration"], _file(tmp_path, doc)).runs[0]
    assert same.new_scene is None and same.scene == "small" and len(same.predictions) == 8
    assert "new_scene" not in same.to_json()
    moved = json.loads(json.dumps(doc))
    for node in moved["nodes"]:  # the same ids, 400 m east: another site layout
        node["x_m"] += 400.0
        node.pop("lat", None)
        node.pop("lon", None)
    out = predict_file(env["runs"]["toa_multilateration"], _file(tmp_path, moved, "moved.json")).runs[0]
    assert out.new_scene and out.scene == "small"
    with pytest.raises(InferenceInputError, match="the file belongs to another scene or site layout.*fingerprints"):
        predict_file(env["runs"]["knn"], _file(tmp_path, moved, "moved.json"))


def test_a_geometric_run_is_scored_on_a_dataset_of_another_city(env, tmp_path):
    """evaluate_run refuses another place for models tied to their scenes, not for a geometric one."""
    from rflocal_core.dataset import import_measurements
    from rflocal_core.errors import OtherSceneError
    from rflocal_core.infer import evaluate_run

    targets = np.random.default_rng(0).uniform(-700.0, 700.0, (30, 2))
    doc = _city_doc("farcity", frame=LocalFrame.at(51.2194, 4.4025), targets=targets)
    import_measurements(_file(tmp_path, doc), name="farcity-ds", split_fractions=(0.0, 0.0, 1.0))
    out = evaluate_run(env["runs"]["toa_multilateration"], "farcity-ds", split="test")
    assert out.scene_check.status == "other" and out.summary.count == 30 and out.summary.p95_m < 1.0
    with pytest.raises(OtherSceneError, match="allow-other-scene"):
        evaluate_run(env["runs"]["knn"], "farcity-ds", split="test")


def test_a_file_naming_no_scene_with_a_new_node_stays_in_the_run_scene(env, tmp_path):
    """Known node ids without positions and one new node: the run's scene and frame, its node positions."""
    doc = json.loads(json.dumps(env["doc"]))
    doc.pop("scene", None)
    for node in doc["nodes"]:
        for key in ("lat", "lon", "x_m", "y_m", "alt_m"):
            node.pop(key, None)
        node["position"] = None
    doc["nodes"].append({"id": "newcomer", "x_m": 60.0, "y_m": -40.0, "alt_m": 20.0})
    first = doc["samples"][0]
    tx, ty = first["truth"]["x_m"], first["truth"]["y_m"]
    dist = float(np.sqrt((tx - 60.0) ** 2 + (ty + 40.0) ** 2 + (20.0 - DEVICE_Z_M) ** 2))
    t_s = max(r.get("t_s", 0.0) for r in first["reports"])
    first["reports"].append({"node": "newcomer", "t_s": t_s, "toa_ns": dist / C_M_PER_NS})
    run = env["runs"]["toa_multilateration"]
    out = predict_file(run, _file(tmp_path, doc)).runs[0]
    assert out.new_scene and out.scene == "small" and not out.bad_samples
    assert any("the frame of scene 'small' as the run knows it" in w for w in out.warnings), out.warnings
    assert out.georeferenced is None  # the run's geo-referenced frame, not the file's bare metres
    before = predict_file(run, _file(tmp_path, env["doc"], "before.json")).runs[0]
    # the other samples report the training nodes only, placed where the run had them: the same answers
    assert [(p.x_m, p.y_m, p.lat) for p in out.predictions[1:]] == [(p.x_m, p.y_m, p.lat) for p in before.predictions[1:]]


def test_a_new_scene_without_any_node_position_is_refused(env, tmp_path):
    doc = _city_doc("nowhere")
    for node in doc["nodes"]:
        for key in ("x_m", "y_m", "alt_m"):
            node.pop(key)
        node["position"] = None
    with pytest.raises(InferenceInputError, match="none of its 4 node\\(s\\) has a position"):
        predict_file(env["runs"]["toa_multilateration"], _file(tmp_path, doc))
