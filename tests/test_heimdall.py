"""heimdall at batch 1-2 with any receivers masked (finite outputs and gradients), and its calibration layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rflocal_core.models.features import TOKEN_COLUMNS, FeatureSpec, make_batch
from rflocal_core.models.nets import build_network
from tests.test_nets import synthetic_inputs

RSS = TOKEN_COLUMNS.index("rss")


def _masks(n: int, s: int) -> dict[str, torch.Tensor]:
    """Every receiver, all but one, exactly one, none; and a batch mixing an empty sample with a full one."""
    full = torch.ones(n, s, dtype=torch.bool)
    one = torch.zeros(n, s, dtype=torch.bool)
    one[:, 1] = True
    mixed = full.clone()
    mixed[0] = False
    return {"all": full, "all_but_one": ~one, "one": one, "none": ~full, "mixed": mixed}


@pytest.mark.parametrize("calibration", [False, True])
@pytest.mark.parametrize("n", [1, 2])
def test_finite_outputs_and_gradients_with_any_receivers_masked(n, calibration):
    spec = FeatureSpec.fit(synthetic_inputs(32, nodes=5))
    torch.manual_seed(0)
    net = build_network("heimdall", {"use_calibration": calibration, "dropout": 0.1, "frame": "scene"},
                        vocab_size=len(spec.node_keys))
    base = make_batch(synthetic_inputs(n, nodes=5, seed=n), spec)
    gen = torch.Generator().manual_seed(0)
    for name, mask in _masks(n, 5).items():
        batch = base.with_tokens(mask=mask)
        net.train()
        net.zero_grad()
        aug = net.augment(batch, epoch_fraction=0.9, extent_m=spec.extent_m, generator=gen)
        loss, _ = net.loss(aug, net(aug))
        loss.backward()
        assert torch.isfinite(loss), name
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name
        net.eval()
        with torch.no_grad():
            out = net(batch)
        assert torch.isfinite(out["mu"]).all() and (out["sigma"] > 0).all(), name
        assert torch.isfinite(out["weights"]).all() and (out["weights"][~mask] == 0).all(), name


def test_calibration_shifts_one_receivers_rss_and_starts_as_identity():
    x = synthetic_inputs(8, nodes=5, seed=3)
    spec = FeatureSpec.fit(x)
    torch.manual_seed(0)
    plain = build_network("heimdall", {"use_calibration": False, "frame": "scene"},
                          vocab_size=len(spec.node_keys)).eval()
    with torch.no_grad():  # weights larger than the default init: the output reacts to every RSS
        for p in plain.parameters():
            p.normal_(0.0, 0.5)
    calib = build_network("heimdall", {"use_calibration": True, "frame": "scene"},
                          vocab_size=len(spec.node_keys)).eval()
    calib.load_state_dict({**plain.state_dict(), "calibration.weight": torch.zeros(len(spec.node_keys) + 1, 2)})
    batch = make_batch(x, spec)
    with torch.no_grad():
        np.testing.assert_allclose(calib(batch)["mu"], plain(batch)["mu"], atol=1e-6)  # identity at the start
        node = int(batch.node_id[0, 2])
        calib.calibration.weight[node] = torch.tensor([0.0, 0.1])  # +9 dB on that receiver
        shifted = batch.feats.clone()
        shifted[..., RSS] += 0.1 * (batch.node_id == node)
        expect = plain(batch.with_tokens(feats=shifted))["mu"]
        np.testing.assert_allclose(calib(batch)["mu"], expect, atol=1e-6)
        assert (calib(batch)["mu"] - plain(batch)["mu"]).abs().max() > 1e-4  # the receiver's RSS matters
    assert calib.calibration.padding_idx == 0  # unknown nodes (id 0) are never calibrated
