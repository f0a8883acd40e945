"""Issue 17, IQ timing features (``heimdall`` ``iq_lags``): each capture's lag against the sample's strongest.

Line-of-sight captures with known fractional delays (:func:`rflocal_core.iq.channel`): the vectorized
estimator must give the true delay differences within a quarter sample and the same lags as
:func:`rflocal_core.iq.tdoa_s` (the estimator of ``tdoa_multilateration``); the token columns hold them as
range differences; a noise-only capture is not timed; heimdall reads them the same whichever receiver
is the reference and learns from timing alone (no RSS, no ToA, no IQ encoder). The lags are token
columns, so the ONNX graph is heimdall's own (checked by hand: bench/bench_iq_latency.py exports a run)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from rflocal_core import iq as iqmod
from rflocal_core.constants import SPEED_OF_LIGHT_M_S
from rflocal_core.models.features import IQ_LAG_COLUMNS, FeatureSpec, make_batch
from rflocal_core.models.nets import build_network
from rflocal_core.models.neural import NeuralModel
from tests.test_iq_heimdall import NODES, SMALL, _iq_inputs

FS = iqmod.SAMPLE_RATE_HZ


def _los_captures(delays: np.ndarray, gains: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, S, 2, 1024] int16 codes: one OFDM burst per sample after each receiver's delay (samples), + noise."""
    n, s = delays.shape
    codes = np.zeros((n, s, 2, iqmod.CAPTURE_SAMPLES), np.int16)
    for i in range(n):
        burst = iqmod.waveform("ofdm", 600, rng=rng)
        for j in range(s):
            x = iqmod.channel(burst, n=iqmod.CAPTURE_SAMPLES, sample_rate_hz=FS, gains=np.array([gains[i, j]]),
                              delays_s=np.array([delays[i, j] / FS]), offset_s=0.0)
            x = x + (rng.normal(size=x.size) + 1j * rng.normal(size=x.size)) * 0.02
            codes[i, j] = np.clip(np.round(np.stack([x.real, x.imag]) * 8000), -32767, 32767)
    return codes


def test_lags_are_the_delay_differences_and_equal_tdoa_s() -> None:
    rng = np.random.default_rng(0)
    delays = rng.uniform(30.0, 300.0, (3, 4))
    gains = rng.uniform(0.2, 1.0, (3, 4))
    gains[:, 2] = 1.5  # slot 2 is the strongest: the reference
    codes = _los_captures(delays, gains, rng)
    scale = np.full((3, 4), 1 / 8000)
    scale[1, 3] = np.nan  # no capture there
    t0 = np.zeros((3, 4))
    t0[2, 0] = 5 / FS  # receiver 0 of sample 2 started 5 samples later on the common clock
    tdoa, quality, ref = iqmod.lags_to_strongest(codes, scale, t0_s=t0, sample_rate_hz=FS)
    assert ref.tolist() == [2, 2, 2]
    truth = delays - delays[:, 2:3] + t0 * FS
    ok = np.isfinite(scale)
    assert np.abs(tdoa[ok] * FS - truth[ok]).max() < 0.25
    assert np.isnan(tdoa[1, 3]) and np.isnan(quality[1, 3]) and np.all(quality[:, 2] == 1.0)
    for i, j in zip(*np.nonzero(ok)):
        lag, q = iqmod.tdoa_s(iqmod.dequantize(codes[i, 2], scale[i, 2]), iqmod.dequantize(codes[i, j], scale[i, j]),
                              start_difference_s=t0[i, j] - t0[i, 2])
        assert abs(lag - tdoa[i, j]) * FS < 1e-3 and abs(q - quality[i, j]) < 1e-5  # single precision
    none, _, no_ref = iqmod.lags_to_strongest(codes[:1], np.full((1, 4), np.nan))
    assert np.isnan(none).all() and no_ref.tolist() == [-1]


def test_lag_columns_hold_range_differences_and_leave_noise_untimed() -> None:
    rng = np.random.default_rng(1)
    x = _iq_inputs(4, rng, with_rss=True)
    noise = (rng.normal(size=(2, iqmod.CAPTURE_SAMPLES)) * 400).astype(np.int16)
    codes = x.iq.copy()
    codes[0, 4] = noise  # receiver 4 of sample 0 recorded noise alone
    x = replace(x, iq=codes)
    spec = FeatureSpec.fit(x, iq_lags=True)
    assert FeatureSpec.from_dict(spec.to_dict()).iq_lags
    feats = make_batch(x, spec).feats.numpy()
    lag, q, ok = (feats[..., -len(IQ_LAG_COLUMNS) + k] for k in range(3))
    _, _, ref = iqmod.lags_to_strongest(x.iq, x.iq_scale)
    dist = np.sqrt(((x.truth_m[:, None] - NODES[None, :, :2]) ** 2).sum(-1) + (NODES[:, 2] - 1.5) ** 2)
    truth = dist - np.take_along_axis(dist, ref[:, None], 1)
    timed = ok > 0
    assert not timed[0, 4] and timed.sum() == 19
    # the captures start on whole samples: within one sample of propagation plus a quarter
    assert np.abs(lag * spec.extent_m - truth)[timed].max() < 1.25 * SPEED_OF_LIGHT_M_S / FS
    assert np.all(q[timed] > 0.5)


def _lag_model(x, *, seed: int = 0) -> NeuralModel:
    spec = FeatureSpec.fit(x, iq_lags=True)
    torch.manual_seed(seed)
    net = build_network("heimdall", {**SMALL, "iq_lags": True}, vocab_size=len(spec.node_keys))
    return NeuralModel("heimdall", net, spec)


def test_heimdall_reads_lags_whatever_the_reference() -> None:
    rng = np.random.default_rng(2)
    x = _iq_inputs(6, rng, with_rss=True)
    model = _lag_model(x)
    net = model.net.eval()
    batch = make_batch(x, model.spec)
    shifted = batch.feats.clone()
    shifted[..., -3] += 0.3 * shifted[..., -1]  # another reference: every lag moves by the same amount
    stretched = batch.feats.clone()
    stretched[..., -3] *= 10.0  # other range differences: another place
    with torch.no_grad():
        a, b = net(batch)["mu"], net(batch.with_tokens(feats=shifted))["mu"]
        c = net(batch.with_tokens(feats=stretched))["mu"]
        one = batch.index(slice(0, 1))
        mask = one.mask.clone()
        mask[:, 1:] = False
        assert torch.isfinite(net(one.with_tokens(mask=mask))["mu"]).all()
    assert torch.allclose(a, b, atol=1e-5)
    assert (a - c).abs().max() > 1e-5  # it reads them (untrained: a small change)


def test_lags_alone_place_the_emitter() -> None:
    """No RSS, no ToA, no IQ encoder: after 150 steps on the lags the median error is a fraction of answering
    the receivers' middle (the IQ encoder needs the whole budget for 0.8x of it, tests/test_iq_heimdall.py)."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    train, test = _iq_inputs(256, rng), _iq_inputs(64, rng)
    model = _lag_model(train)
    batch = make_batch(train, model.spec)
    opt = torch.optim.AdamW(model.net.parameters(), lr=3e-3)
    model.net.train()
    for _ in range(150):
        part = batch.index(torch.randint(0, len(batch), (16,)))
        loss, _ = model.net.loss(part, model.net(part))
        opt.zero_grad()
        loss.backward()
        opt.step()
    err = np.median(np.hypot(*(model.predict(test).position_m - test.truth_m).T))
    middle = np.median(np.hypot(*(NODES[:, :2].mean(0) - test.truth_m).T))
    print(f"median error from the lags {err:.0f} m, the receivers' middle {middle:.0f} m")
    assert err < 0.4 * middle, (err, middle)


def test_encoder_crop_window_sits_on_the_onset() -> None:
    """``iq_crop``: the encoder reads a window starting a quarter of itself before the energy onset, inside the
    capture, and reports the onset on the whole capture's scale; an all-zero capture stays finite."""
    from rflocal_core.models.iqenc import IQEncoder, IQEncoderConfig, crop_start

    rng = np.random.default_rng(4)
    onsets = np.array([500.0, 2.5, 1000.0])
    codes = _los_captures(onsets[None], np.ones((1, 3)), rng)[0].astype(np.float32)  # [3, 2, 1024]
    power = torch.from_numpy(codes).pow(2).sum(1, keepdim=True)
    starts = crop_start(torch.nn.functional.avg_pool1d(power, 9, 1, 4, count_include_pad=False), 128)
    assert starts.tolist()[1:] == [0, 1024 - 128]  # kept inside the capture
    assert 500 - 32 <= int(starts[0]) <= 500  # the burst's ramp: half power a few samples after it starts
    torch.manual_seed(0)
    enc = IQEncoder(IQEncoderConfig(width=8, out_dim=16, crop=128, stem_stride=2)).eval()
    with torch.no_grad():
        emb, onset = enc(torch.cat([torch.from_numpy(codes), torch.zeros(1, 2, 1024)]))
    assert torch.isfinite(emb).all() and torch.isfinite(onset).all()
    lo, hi = starts.double() / 1024, (starts.double() + 128) / 1024
    assert torch.all((onset[:3] >= lo) & (onset[:3] <= hi))


def test_batch_one_paths_equal_the_general_ones() -> None:
    """The batch-1 shortcuts of the predict path: compacting one sample keeps its reporting slots in order (as
    the general gather does), and quantizing captures at once gives each capture's own codes and scale."""
    rng = np.random.default_rng(5)
    x = _iq_inputs(3, rng, with_rss=True)
    model = _lag_model(x)
    batch = make_batch(x, model.spec)
    mask = batch.mask.clone()
    mask[0, [1, 3]] = False
    mask[1, :] = False
    batch = batch.with_tokens(mask=mask)
    for row, keep in ((0, 3), (1, 1)):
        one = batch.index(slice(row, row + 1)).compact()
        ref = batch.index(slice(row, row + 2)).compact().index(slice(0, 1))  # the general path, two samples
        assert one.mask.shape == (1, keep)
        for a, b in ((one.node_xy, ref.node_xy[:, :keep]), (one.feats, ref.feats[:, :keep]),
                     (one.node_id, ref.node_id[:, :keep]), (one.mask, ref.mask[:, :keep])):
            assert torch.equal(a, b)
    z = rng.normal(size=(4, 64)) + 1j * rng.normal(size=(4, 64))
    z[2] = 0.0
    codes, scales = iqmod.quantize_rows(z)
    for k in range(4):
        c, sc = iqmod.quantize(z[k])
        assert np.array_equal(codes[k], c) and scales[k] == sc
