"""Issue 17, heimdall's onset loss (``iq_lag_aux``): the IQ encoder learns timing from the captures' own lags.

The targets are the captures' cross-correlation lags against the sample's strongest capture, computed in
torch on every batch (:func:`rflocal_core.models.iqenc.capture_lags`): they must equal the vectorized
estimator the lag features use within a quarter sample. Trained briefly with the loss, the encoder's onset
differences follow the true delay differences within a sample; the option acts with ``use_iq`` only and is
training only (the graph and predictions are the network's)."""

from __future__ import annotations

import numpy as np
import torch

from rflocal_core import iq as iqmod
from rflocal_core.constants import C_M_PER_NS
from rflocal_core.models.features import FeatureSpec, make_batch
from rflocal_core.models.iqenc import capture_lags
from rflocal_core.models.nets import build_network
from tests.test_iq_heimdall import NODES, SMALL, _iq_inputs
from tests.test_iq_lags import _los_captures

FS = iqmod.SAMPLE_RATE_HZ
#: The cropped, strided encoder: an eighth of the full one's cost, so a few steps fit the test budget.
FAST = {**SMALL, "use_iq": True, "iq_crop": 128, "iq_stem_stride": 2, "frame": "scene"}


def test_capture_lags_equal_the_lag_features_estimator() -> None:
    rng = np.random.default_rng(0)
    delays = rng.uniform(30.0, 300.0, (3, 4))
    gains = rng.uniform(0.2, 1.0, (3, 4))
    gains[:, 1] = 1.5
    codes = _los_captures(delays, gains, rng)
    scale = np.full((3, 4), 1 / 8000)
    scale[2, 3] = np.nan
    tdoa, quality, ref = iqmod.lags_to_strongest(codes, scale)
    ok = torch.from_numpy(np.isfinite(scale))
    lag, q = capture_lags(torch.from_numpy(codes), ok, torch.from_numpy(ref))
    okn = ok.numpy()
    assert np.abs(lag.numpy()[okn] - tdoa[okn] * FS).max() < 0.25
    assert np.abs(lag.numpy()[okn] - (delays - delays[:, 1:2])[okn]).max() < 0.25
    # the peak read at whole lags: at most the upsampled peak, at most a sixth below it
    assert np.all(q.numpy()[okn] <= quality[okn] + 1e-5) and np.all(q.numpy()[okn] > 0.83 * quality[okn])
    assert lag[2, 3] == 0 and q[2, 3] == 0 and torch.all(lag[:, 1].abs() < 1e-3)  # the reference: 0


def test_option_adds_an_aux_part_with_the_iq_branch_only() -> None:
    torch.set_num_threads(1)
    no_branch = build_network("heimdall", {**SMALL, "iq_lag_aux": 1.0}, vocab_size=len(NODES))
    assert no_branch.aux_weight == 0.0  # without use_iq there are no onsets to train: nothing
    rng = np.random.default_rng(1)
    x = _iq_inputs(4, rng, with_rss=True)
    spec = FeatureSpec.fit(x, iq=True)
    batch = make_batch(x, spec)
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        net = build_network("heimdall", {**FAST, "iq_lag_aux": weight}, vocab_size=len(spec.node_keys)).train()
        out = net(batch)
        loss, parts = net.loss(batch, out)
        assert ("aux" in parts) == (weight > 0) and torch.isfinite(loss)
        assert out["iq_onset"].shape == (4, len(NODES))
        if weight:
            loss.backward()
            assert net.iq_encoder.onset_logit.weight.grad.abs().sum() > 0


def _onset_error(net, test_batch, truth_diff: np.ndarray) -> float:
    """Median |onset difference - true delay difference| (samples) against the first receiver."""
    with torch.no_grad():
        onset = net.eval()(test_batch)["iq_onset"].numpy() * iqmod.CAPTURE_SAMPLES
    return float(np.median(np.abs((onset - onset[:, :1]) - truth_diff)[:, 1:]))


def test_onset_loss_teaches_the_encoder_the_delay_differences() -> None:
    """25 steps with the onset loss: the onset differences follow the true delay differences within a sample
    (before, the encoder's onsets are where its crop window put them, a few samples off)."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(2)
    train, test = _iq_inputs(64, rng, with_rss=True), _iq_inputs(32, rng, with_rss=True)
    spec = FeatureSpec.fit(train, iq=True)
    batch, test_batch = make_batch(train, spec), make_batch(test, spec)
    dist = np.sqrt(((test.truth_m[:, None] - NODES[None, :, :2]) ** 2).sum(-1) + (NODES[:, 2] - 1.5) ** 2)
    delay = dist / (C_M_PER_NS * 1e9) * FS
    truth_diff = delay - delay[:, :1]
    torch.manual_seed(0)
    net = build_network("heimdall", {**FAST, "iq_lag_aux": 1.0}, vocab_size=len(NODES))
    before = _onset_error(net, test_batch, truth_diff)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(25):
        part = batch.index(torch.randint(0, len(batch), (8,), generator=gen))
        loss, _ = net.train().loss(part, net(part))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _onset_error(net, test_batch, truth_diff)
    print(f"onset differences off by {before:.1f} samples before, {after:.1f} after 25 steps with the onset loss")
    assert after < 1.0 and after < 0.5 * before, (before, after)
