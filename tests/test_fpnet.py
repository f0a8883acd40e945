"""The fingerprint networks (fpnet, fpnet_knn) on a small real subset of Antwerp LoRaWAN, through the run machinery."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rflocal_core.dataset import import_measurements
from rflocal_core.errors import InvalidInputError
from rflocal_core.infer import evaluate_run, load_run
from rflocal_core.measurements import convert_antwerp
from rflocal_core.models import errors_m, load_inputs
from rflocal_core.models.features import FeatureSpec, make_batch
from rflocal_core.models.fpnet import fixed_vector
from rflocal_core.models.nets import build_network
from rflocal_core.train import train

QUICK = {"epochs": 12, "batch_size": 64, "lr": 3e-3, "warmup_epochs": 1, "patience": 0, "device": "cpu"}


@pytest.fixture
def antwerp_small(shared_data: Path, workspace: Path) -> str:
    """The first 1,200 messages of Antwerp's ``x_val.csv`` as dataset ``aw`` (70/15/15 random split)."""
    ms = convert_antwerp(shared_data / "real" / "antwerp_lorawan", split="val", limit=1200)
    import_measurements(ms, name="aw", split_fractions=(0.7, 0.15, 0.15))
    return "aw"


@pytest.mark.parametrize("model", ["fpnet", "fpnet_knn"])
def test_trains_on_real_data_and_beats_the_weighted_centroid(antwerp_small: str, model: str) -> None:
    torch.set_num_threads(1)
    run = train(antwerp_small, model, train_config=QUICK, seed=0)
    centroid = train(antwerp_small, "weighted_centroid", seed=0)
    net_test = evaluate_run(run.run_id, antwerp_small, split="test").summary
    wc_test = evaluate_run(centroid.run_id, antwerp_small, split="test").summary
    assert net_test.median_m < 0.9 * wc_test.median_m, (net_test.median_m, wc_test.median_m)
    # the checkpoint carries its configuration: the reloaded run predicts as evaluate_run measured
    x = load_inputs(antwerp_small, "test")
    pred = load_run(run.run_id).predict(x)
    assert np.median(errors_m(pred, x)) == pytest.approx(net_test.median_m, rel=1e-6)
    assert (pred.sigma_m > 0).all()
    # not clamped to, but near, the training area: positions within 3 extents of the centre
    spec_extent = FeatureSpec.fit(load_inputs(antwerp_small, "train")).extent_m
    centre = np.nanmean(load_inputs(antwerp_small, "train").truth_m, 0)
    assert np.abs(pred.position_m - centre).max() < 3 * spec_extent


def test_training_neighbours_leave_the_sample_out(antwerp_small: str) -> None:
    x = load_inputs(antwerp_small, "train")
    spec = FeatureSpec.fit(x)
    net = build_network("fpnet_knn", {"neighbours": 4}, vocab_size=len(spec.node_keys))
    net.prepare(x, spec)
    batch = make_batch(x, spec)
    rss, _ = fixed_vector(batch, net.vocab_size)
    own = np.arange(len(x))
    _, idx_train = net.neighbours(rss, batch.truth)  # training: the truth names the sample's own position
    same_place = (net.db_pos[idx_train] == batch.truth[:, None]).all(-1)
    assert not same_place.any()
    assert not (idx_train.numpy() == own[:, None]).any()
    dist_eval, idx_eval = net.neighbours(rss, None)  # prediction: the database is searched whole
    assert (dist_eval[:, 0] == 0).all()  # each training sample finds its own fingerprint (or a twin) first
    assert (idx_eval.numpy() == own[:, None]).any(1).mean() > 0.95


def test_no_fixed_nodes_is_refused(antwerp_small: str) -> None:
    x = load_inputs(antwerp_small, "train")
    spec = FeatureSpec.fit(x)
    for model in ("fpnet", "fpnet_knn"):
        net = build_network(model, None, vocab_size=len(spec.node_keys))
        with pytest.raises(InvalidInputError, match=r"fixed_slots=0 .* expected an emitter or ue dataset"):
            net.prepare(replace(x, fixed_slots=0), spec)
