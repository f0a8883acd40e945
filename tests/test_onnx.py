"""ONNX export of every network and the onnxruntime backend: the same outputs as PyTorch within 1e-4.

Untrained networks are exported in the unit tests (export checks the graph, not the training);
the command-line tests train a heimdall run on a tiny generated dataset.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rflocal_core.models import Inputs
from rflocal_core.models.features import FeatureSpec, make_batch
from rflocal_core.models.locheatmap import LocHeatmap, LocHeatmapConfig
from rflocal_core.models.mapformer import MapFormer, MapFormerConfig
from rflocal_core.models.maps import MapBatch
from rflocal_core.models.neural import NeuralModel
from rflocal_core.models.onnx_export import EXPORT_TOLERANCE, OnnxModel, export_graph, exportable, onnx_session
from tests import test_locheatmap, test_mapformer
from tests.test_nets import SET_NETWORKS, _model, synthetic_inputs


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cases(x: Inputs) -> dict[str, Inputs]:
    """A batch of one, of two with fewer slots, one report, none, and the whole set."""
    one = x.subset(np.array([0]))
    single = one.slots(np.array([2]))
    return {"all": x, "one": one, "two_three_slots": x.subset(np.arange(2)).slots(np.array([0, 3, 5])),
            "single_report": single, "no_report": Inputs(**{**single.__dict__, "node_mask": np.zeros((1, 1), bool)})}


@pytest.mark.parametrize("name", SET_NETWORKS)
def test_each_set_network_exports_with_dynamic_axes_and_matches_torch(tmp_path, name):
    x = synthetic_inputs(24, nodes=6, seed=7)
    model = _model(name, x)
    model.net.eval()
    names, outputs = export_graph(model, make_batch(x, model.spec).compact(), tmp_path / "m.onnx")
    assert names == ("node_xy", "feats", "node_id", "mask") and outputs == ("mu", "sigma")
    onnx = OnnxModel.wrap(model, onnx_session(tmp_path / "m.onnx"), tmp_path / "m.onnx")
    for case, xi in _cases(x).items():
        mu_t, sig_t = model.predict_batch(make_batch(xi, model.spec))
        mu_o, sig_o = onnx.predict_batch(make_batch(xi, model.spec))
        assert mu_o.shape == (len(xi), 2), case
        np.testing.assert_allclose(mu_o, mu_t, atol=EXPORT_TOLERANCE, err_msg=case)
        np.testing.assert_allclose(sig_o, sig_t, atol=EXPORT_TOLERANCE, err_msg=case)
    assert np.abs(onnx.predict_batch(make_batch(x, model.spec))[0] - 0.5).max() > 1e-3  # not a constant graph


def _map_nets() -> dict[str, tuple[NeuralModel, MapBatch]]:
    torch.manual_seed(0)
    spec = FeatureSpec((0.0, 0.0), 200.0, ("a", "b", "c", "d", "e"), 5)
    mf = MapFormer(MapFormerConfig.from_dict({**test_mapformer.SMALL, "grid_cells": 8, "top_k": 3, "map_res": 16}),
                   vocab_size=4)
    lh = LocHeatmap(LocHeatmapConfig.from_dict({"res": 16, "completion_channels": [8, 16], "latent_dim": 16,
                                                "unet_channels": [8, 16]}), vocab_size=5)
    return {"mapformer": (NeuralModel("mapformer", mf.eval(), spec), test_mapformer.synthetic(6, res=16)),
            "locheatmap": (NeuralModel("locheatmap", lh.eval(), spec), test_locheatmap.synthetic(6, 16))}


@pytest.mark.parametrize("name", ["mapformer", "locheatmap"])
def test_map_networks_export_their_maps_as_graph_inputs(tmp_path, name):
    model, mb = _map_nets()[name]
    mb.extent_m = 200.0
    names, outputs = export_graph(model, mb, tmp_path / "m.onnx")
    assert names[4:] == ("site_maps", "site_ok", "site_has_map", "scene_rasters")
    onnx = OnnxModel.wrap(model, onnx_session(tmp_path / "m.onnx"), tmp_path / "m.onnx")
    keep = torch.tensor([0, 2, 3])
    b = mb.base
    base = type(b)(b.node_xy[:, keep], b.feats[:, keep], b.node_id[:, keep], b.mask[:, keep].clone(), b.truth)
    base.mask[0] = False  # an empty sample
    fewer = MapBatch(base, mb.site_maps[:, keep], mb.site_ok[:, keep], mb.site_has_map[:, keep], mb.scene_rasters,
                     mb.extent_m)
    for case, inp in {"all": mb, "one": mb.index(slice(0, 1)), "fewer_slots": fewer}.items():
        ref, got = model.forward_numpy(inp), onnx.forward_numpy(inp)
        assert set(got) == set(outputs), case
        for key in outputs:
            np.testing.assert_allclose(got[key], ref[key], atol=EXPORT_TOLERANCE, equal_nan=True, err_msg=case)


def test_mapformer_with_refinement_is_not_exportable():
    model, _ = _map_nets()["mapformer"]
    assert exportable(model) is None
    refining = MapFormer(MapFormerConfig.from_dict({**test_mapformer.SMALL, "refine_steps": 5}), vocab_size=4)
    assert "refine_steps" in exportable(NeuralModel("mapformer", refining, model.spec))
    maps = MapFormer(MapFormerConfig.from_dict({**test_mapformer.SMALL, "prior_timing": "line_or_maps"}), vocab_size=4)
    assert "prior_timing" in exportable(NeuralModel("mapformer", maps, model.spec))  # its graph has no map inputs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, workspace_env, tiny_dataset):
    """A tiny generated dataset, a heimdall run and a knn run on it, and 12 test samples as a measurement file."""
    from rflocal_core.dataset import export_dataset
    from rflocal_core.measurements import to_json_dict
    from rflocal_core.train import train

    path = tmp_path_factory.mktemp("onnx") / "workspace"
    path.mkdir()
    with workspace_env(path):
        tiny_dataset("onx", "onxds", samples=200)
        torch.manual_seed(0)
        net = train("onxds", "heimdall", train_config={"epochs": 2}, seed=0).run_id
        knn = train("onxds", "knn", seed=0).run_id
        file = path / "test12.json"
        file.write_text(json.dumps(to_json_dict(export_dataset("onxds", split="test", limit=12))))
    return {"path": path, "net": net, "knn": knn, "file": file}


def test_export_and_predict_with_onnxruntime_from_the_command_line(runs, run_cli, monkeypatch, tmp_path):
    from rflocal_core import settings
    from rflocal_core.infer import load_run, predict_file
    from rflocal_core.infer.anyscene import file_inputs
    from rflocal_core.measurements import load_measurements

    out = tmp_path / "heimdall.onnx"
    res = run_cli(["export", "--run", runs["net"], "--format", "onnx", "--out", str(out)], runs["path"], timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["path"] == str(out) and out.stat().st_size == doc["bytes"] > 0
    assert doc["checked_samples"] > 0 and max(doc["max_abs_diff"].values()) <= EXPORT_TOLERANCE
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no temporary file left

    res = run_cli(["predict", "--run", runs["net"], "--input", str(runs["file"]), "--backend", "onnxruntime"],
                  runs["path"], timeout=300)
    assert res.returncode == 0, res.stderr
    onnx_doc = json.loads(res.stdout)
    assert onnx_doc["backend"] == "onnxruntime"
    assert (runs["path"] / "runs" / runs["net"] / "model.onnx").is_file()  # the run's own graph, made on first use
    # The torch side in this process, not a third command: the command line prints exactly the core's JSON
    # (test_infer.py::test_cli_predict_gives_the_core_numbers), so this is what `predict` without --backend prints.
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(runs["path"]))
    torch_doc = predict_file(runs["net"], runs["file"]).runs[0].to_json()
    assert "backend" not in torch_doc
    for a, b in zip(onnx_doc["predictions"], torch_doc["predictions"], strict=True):
        assert a["id"] == b["id"] and abs(a["x_m"] - b["x_m"]) <= 0.011 and abs(a["y_m"] - b["y_m"]) <= 0.011

    # the same positions and sigmas within 1e-4 of the unit square, unrounded
    run_t, run_o = load_run(runs["net"]), load_run(runs["net"], backend="onnxruntime")
    assert run_o.backend == "onnxruntime" and run_t.backend == "torch"
    x = file_inputs(run_t, load_measurements(runs["file"])).inputs
    p_t, p_o = run_t.predict(x), run_o.predict(x)
    scale = run_t.model.spec.extent_m
    np.testing.assert_allclose(p_o.position_m, p_t.position_m, atol=EXPORT_TOLERANCE * scale)
    np.testing.assert_allclose(p_o.sigma_m, p_t.sigma_m, atol=EXPORT_TOLERANCE * scale * run_t.sigma_scale)


def test_a_baseline_is_refused_with_exit_2(runs, run_cli):
    res = run_cli(["export", "--run", runs["knn"], "--format", "onnx"], runs["path"])
    assert res.returncode == 2 and res.stdout == ""
    assert "is a baseline, not a network" in res.stderr and "knn" in res.stderr
    assert not (runs["path"] / "runs" / runs["knn"] / "model.onnx").exists()
    res = run_cli(["predict", "--run", runs["knn"], "--input", str(runs["file"]), "--backend", "tflite"], runs["path"])
    assert res.returncode == 2 and "backend" in res.stderr and "onnxruntime" in res.stderr


def test_live_inference_offers_the_backend_and_predicts_the_same(runs, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.test_pages_inference import PAGE

    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(runs["path"]))
    at = AppTest.from_file(PAGE, default_timeout=300)
    at.run()
    at.multiselect(key="li_runs").set_value([runs["net"]]).run()
    at.file_uploader(key="li_upload").set_value(("test12.json", runs["file"].read_bytes(), "application/json"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="li_backend").options == ["torch", "onnxruntime"]
    torch_value = at.metric[0].value
    at.selectbox(key="li_backend").set_value("onnxruntime").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("onnxruntime" in m.value for m in at.markdown)
    assert at.metric[0].value == torch_value  # lat, lon to 6 decimals (~0.1 m)
