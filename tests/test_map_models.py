"""Map-conditioned networks on real generated data: map tensors, training, evaluation, file inference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rflocal_core.dataset import export_dataset
from rflocal_core.errors import InferenceInputError
from rflocal_core.infer import evaluate_run, load_run, predict_measurements
from rflocal_core.models import errors_m, load_inputs
from rflocal_core.models.features import FeatureSpec, make_batch
from rflocal_core.models.maps import MapSource, lookup, unit_to_pg_db
from rflocal_core.models.transforms import InputTransform, apply_transform
from rflocal_core.train import train

CONFIGS = {"mapformer": {}, "locheatmap": {"mode": "proposal", "res": 32}}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, workspace_env, tiny_dataset):
    path = tmp_path_factory.mktemp("mapnets") / "workspace"
    path.mkdir()
    with workspace_env(path):
        tiny_dataset("mn", "mnds", samples=240)
        runs = {m: train("mnds", m, model_config=cfg, train_config={"epochs": 2, "batch_size": 64}).run_id
                for m, cfg in CONFIGS.items()}
        yield {"path": path, "runs": runs}


@pytest.fixture
def env(ws, monkeypatch):
    monkeypatch.setenv("RFLOCAL_WORKSPACE", str(ws["path"]))
    return ws


def test_map_source_resamples_the_dataset_maps_onto_the_unit_square(env):
    train_in, x = load_inputs("mnds", "train"), load_inputs("mnds", "test")
    spec = FeatureSpec.fit(train_in)
    src = MapSource.from_inputs(x, spec, res=128)
    mb = src.batch(make_batch(x, spec), np.arange(len(x)))
    assert mb.site_maps.shape == (len(x), x.node_mask.shape[1], 128, 128)
    assert mb.scene_rasters.shape == (len(x), 4, 128, 128)
    u = torch.from_numpy(spec.to_unit(x.truth_m)).float()
    ok = lookup(mb.site_ok.float(), u).numpy() > 0.99
    got = unit_to_pg_db(lookup(mb.site_maps, u)).numpy()
    maps = x.maps["mn"]
    want = np.stack([maps.grid.bilinear(np.where(np.isfinite(pg), pg, -170.0), x.truth_m[:, 0], x.truth_m[:, 1])
                     for pg in maps.path_gain_db], axis=1)
    assert ok.sum() > 40
    assert np.median(np.abs(got - want)[ok]) < 1.0  # a 4 m grid resampled at ~2.4 m cells
    # the footprint channel is the dataset's footprint at the same place (nearest cell)
    iy, ix = maps.grid.cell_of(x.truth_m[:, 0], x.truth_m[:, 1])
    foot = lookup(mb.scene_rasters[:, 1:2], u).numpy()[:, 0]
    assert np.mean((foot > 0.5) == (maps.rasters["footprint"][iy, ix] > 0)) > 0.9
    with pytest.raises(Exception, match="need the radio maps"):
        MapSource.from_inputs(load_inputs("mnds", "test", with_maps=False), spec, res=32)


@pytest.mark.parametrize("model", list(CONFIGS))
def test_map_networks_train_evaluate_and_predict_files(env, model):
    run = load_run(env["runs"][model])
    assert run.needs_maps
    x = load_inputs("mnds", "test")
    by_id = {f"mnds-{int(i)}": e for i, e in zip(x.indices, errors_m(run.predict(x), x))}
    assert np.isfinite(list(by_id.values())).all()
    out = predict_measurements(run, export_dataset("mnds", split="test"), top_k=0)
    assert not out.bad_samples and len(out.predictions) == len(x)
    for row in out.predictions:  # a file reads the maps of the run's dataset: the same answer
        assert row.error_m == pytest.approx(by_id[row.id], abs=0.5)
        assert row.sigma_x_m > 0
    result = evaluate_run(env["runs"][model], "mnds")
    assert result.summary.count == len(x) and result.calibration.available
    if model == "mapformer":  # the physics residual travels with each prediction as a confidence signal
        assert any(row.residual_db is not None and row.residual_db >= 0 for row in out.predictions)
        assert "residual_db" in out.predictions[0].to_json()
    else:
        assert "residual_db" not in out.predictions[0].to_json()


def test_wrong_maps_at_test_time_change_a_map_model(env):
    run = load_run(env["runs"]["mapformer"])
    x = load_inputs("mnds", "test")
    clean = run.predict(x).position_m
    missing = run.predict(apply_transform(x, InputTransform(map_corruption="maps_missing"))).position_m
    assert np.abs(clean - missing).max() > 0.1


def test_mapformer_refines_its_position_at_inference(env):
    run_id = train("mnds", "mapformer", model_config={"refine_steps": 5}, train_config={"epochs": 1}).run_id
    run = load_run(run_id)
    x = load_inputs("mnds", "test")
    pred = run.predict(x)
    assert np.isfinite(pred.position_m).all() and np.isfinite(pred.info["residual_db"]).any()


def test_a_window_frame_run_trains_evaluates_and_predicts_files(env):
    """Issue 19: mapformer with ``frame=window`` through the whole path: trained by the engine, a run
    that predicts in any scene (given that scene's maps), evaluated, and reading files with its
    dataset's maps as before; the same predictions from the file and from the dataset."""
    small = {"d_model": 16, "heads": 2, "layers": 1, "map_layers": 0, "grid_cells": 8, "top_k": 2}
    run_id = train("mnds", "mapformer", model_config={**small, "frame": "window", "cell_m": 4.0, "map_res": 32},
                   train_config={"epochs": 1, "batch_size": 64}).run_id
    run = load_run(run_id)
    assert run.any_scene and run.needs_maps and run.model.spec.window_m == 128.0
    x = load_inputs("mnds", "test")
    pred = run.predict(x)
    ext = x.maps["mn"].grid.extent_m
    assert ((pred.position_m >= [ext[0], ext[1]]) & (pred.position_m <= [ext[2], ext[3]])).all()
    by_id = {f"mnds-{int(i)}": e for i, e in zip(x.indices, errors_m(pred, x))}
    out = predict_measurements(run, export_dataset("mnds", split="test"), top_k=0)
    assert not out.bad_samples and len(out.predictions) == len(x)
    for row in out.predictions:
        assert row.error_m == pytest.approx(by_id[row.id], abs=0.5)
    assert evaluate_run(run_id, "mnds").summary.count == len(x)
    # a file of another scene brings no maps: refused, naming what would work
    with pytest.raises(InferenceInputError, match="evaluate the run on it"):
        predict_measurements(run, dataclasses.replace(export_dataset("mnds", split="test"), scene="elsewhere"), top_k=0)
