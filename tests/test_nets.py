"""The networks: overfitting, permutation invariance, masking = removing, batch 1, single report."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch

from rflocal_core.models import Inputs, errors_m
from rflocal_core.models.features import FeatureSpec, make_batch
from rflocal_core.models.nets import build_network
from rflocal_core.models.registry import NETWORKS

#: The set networks (no maps); the map-conditioned ones have tests of their own.
SET_NETWORKS = sorted(n for n, cls in NETWORKS.items() if not getattr(cls, "needs_maps", False))
from rflocal_core.models.neural import NeuralModel
from rflocal_core.train.engine import TrainConfig, fit_network

NO_AUGMENT = {"node_dropout": [0.0], "rss_noise_db": 0.0, "position_jitter_m": 0.0}
#: The fingerprint networks' own augmentations and dropout (on by default there), off where their config has them.
#: Median training error (m) to reach in test_each_network_overfits_a_tiny_dataset (default 3 m). The
#: fingerprint networks see no node position (fpnet learns RSS -> position from the samples alone, ~4.5 m
#: here); fpnet_knn never sees a training sample's own fingerprint (leave-location-out), so it cannot
#: memorize: it interpolates between neighbours ~29 m apart (~11 m here).
OVERFIT_LIMIT_M = {"fpnet": 6.0, "fpnet_knn": 15.0}
NO_FP_AUGMENT = {"gateway_drop": 0.0, "rss_offset_db": 0.0, "dropout": 0.0}


def synthetic_inputs(n: int, *, nodes: int = 5, seed: int = 0, split: str = "train") -> Inputs:
    """A real (if simple) radio world: log-distance RSS, geometric AoA and ToA, 200 m square."""
    rng = np.random.default_rng(seed)
    node_xy = np.random.default_rng(99).uniform(0, 200, (nodes, 2))
    truth = rng.uniform(0, 200, (n, 2))
    d = np.linalg.norm(truth[:, None] - node_xy[None], axis=-1)
    d3 = np.hypot(d, 20.0)
    rss = 20.0 - 40.0 - 30.0 * np.log10(d3) + rng.normal(0, 1.0, d.shape)
    delta = truth[:, None] - node_xy[None]
    aoa = np.degrees(np.arctan2(delta[..., 0], delta[..., 1])) % 360
    toa = d3 / 0.299792458
    node_pos = np.concatenate([np.broadcast_to(node_xy, (n, nodes, 2)), np.full((n, nodes, 1), 20.0)], -1)
    return Inputs(
        dataset="synthetic", split=split, mode="ue", indices=np.arange(n), rss_dbm=rss, toa_ns=toa, aoa_deg=aoa,
        los=np.ones((n, nodes), np.int8), node_pos_m=node_pos.copy(), node_mask=np.ones((n, nodes), bool),
        tx_power_dbm=np.full((n, nodes), 20.0), slot_site=np.broadcast_to(np.arange(nodes), (n, nodes)).copy(),
        truth_m=truth, truth_z_m=np.full(n, 1.5), scene_idx=np.zeros(n, np.int64), scenes=("syn",),
        fixed_slots=nodes,
    )


def _model(name: str, x: Inputs, **options) -> NeuralModel:
    spec = FeatureSpec.fit(x)
    torch.manual_seed(0)
    if options == NO_AUGMENT:
        names = {f.name for f in fields(NETWORKS[name].config_cls)}
        options = {**options, **{k: v for k, v in NO_FP_AUGMENT.items() if k in names}}
    options = {"frame": "scene", **options}  # the frame of the spec (the set networks' default is sample)
    net = build_network(name, options, vocab_size=len(spec.node_keys))
    if hasattr(net, "prepare"):  # as the run machinery does (fpnet: output scale, fingerprint database)
        net.prepare(x, spec)
    return NeuralModel(name, net, spec)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each network briefly trained (an untrained head barely reacts to its inputs)."""
    x = synthetic_inputs(64, nodes=6, seed=7)
    models = {}
    for name in SET_NETWORKS:
        model = _model(name, x)
        fit_network(tmp_path_factory.mktemp(name), model, TrainConfig(epochs=15, batch_size=16, patience=0), x, x,
                    seed=0, progress=lambda stage, fraction: None)
        models[name] = model
    return models


@pytest.mark.parametrize("name", SET_NETWORKS)
def test_each_network_overfits_a_tiny_dataset(tmp_path, name):
    x = synthetic_inputs(48, seed=1)
    model = _model(name, x, **NO_AUGMENT)
    out = fit_network(tmp_path, model, TrainConfig(epochs=150, batch_size=16, lr=3e-3, warmup_epochs=1, patience=0),
                      x, x, seed=0, progress=lambda stage, fraction: None)
    err = errors_m(model.predict(x), x)
    limit = OVERFIT_LIMIT_M.get(name, 3.0)
    assert np.median(err) < limit, f"{name} median training error {np.median(err):.2f} m"
    assert out.best.median_m < limit and out.stop_reason == "epochs" and out.epochs_run == 150
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "resume.pt").is_file()


@pytest.mark.parametrize("name", SET_NETWORKS)
def test_permuting_sites_leaves_the_prediction_unchanged(trained, name):
    x = synthetic_inputs(32, nodes=6, seed=2)
    model = trained[name]
    base = model.predict(x)
    perm = np.array([3, 0, 5, 1, 4, 2])
    moved = model.predict(x.slots(perm))
    np.testing.assert_allclose(moved.position_m, base.position_m, atol=1e-3)
    np.testing.assert_allclose(moved.sigma_m, base.sigma_m, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", SET_NETWORKS)
def test_masking_a_report_equals_removing_it(trained, name):
    x = synthetic_inputs(32, nodes=6, seed=3)
    model = trained[name]
    masked_mask = x.node_mask.copy()
    masked_mask[:, 2] = False
    masked = Inputs(**{**x.__dict__, "node_mask": masked_mask})
    removed = x.slots(np.array([0, 1, 3, 4, 5]))
    a, b = model.predict(masked), model.predict(removed)
    np.testing.assert_allclose(a.position_m, b.position_m, atol=1e-3)
    np.testing.assert_allclose(a.sigma_m, b.sigma_m, rtol=1e-4, atol=1e-5)
    # and it does change the answer (the test would pass vacuously otherwise)
    assert np.abs(a.position_m - model.predict(x).position_m).max() > 0.5


@pytest.mark.parametrize("name", SET_NETWORKS)
def test_batch_of_one_single_report_and_no_report_are_finite(trained, name):
    x = synthetic_inputs(16, nodes=6, seed=4)
    model = trained[name]
    one = x.subset(np.array([0]))
    single = one.slots(np.array([2]))
    nothing = Inputs(**{**single.__dict__, "node_mask": np.zeros((1, 1), bool)})
    for case in (one, single, nothing):
        pred = model.predict(case)
        assert pred.position_m.shape == (1, 2)
        assert np.isfinite(pred.position_m).all() and (pred.sigma_m > 0).all()
    # gradients are finite for a single-report batch of one (training at batch size 1)
    model.net.train()
    batch = make_batch(single, model.spec)
    loss, _ = model.net.loss(batch, model.net(batch))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.net.parameters() if p.grad is not None)


def test_sigma_stays_positive_and_above_its_floor():
    x = synthetic_inputs(16, seed=5)
    model = _model("heimdall", x, sigma_min=0.01)
    mu, sigma = model.predict_batch(make_batch(x, model.spec))
    assert (sigma >= 0.01).all()


def test_bad_network_options_name_the_field():
    with pytest.raises(ValueError, match=r"heads: d_model \(60\) must be divisible by heads"):
        build_network("setnet", {"d_model": 60, "heads": 8}, vocab_size=0)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['layer'\]"):
        build_network("setnet", {"layer": 2}, vocab_size=0)
    with pytest.raises(ValueError, match=r"node_dropout: expected .* got \(1.5,\)"):
        build_network("heimdall", {"node_dropout": [1.5]}, vocab_size=0)
    with pytest.raises(ValueError, match="schedule: expected one of cosine, plateau, got 'step'"):
        TrainConfig(schedule="step")
