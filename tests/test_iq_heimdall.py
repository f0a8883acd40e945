"""Issue 17, heimdall's IQ branch (``use_iq``): each report's capture joins its token.

Hand-built captures (ray-free): an OFDM burst reaching each receiver after its distance / c, from
an unknown emission time, plus noise, as int16 codes. The branch must stay finite at batch 1-2 with
receivers masked (and with no capture at all), give the same answer whatever the slot order, come
back from a checkpoint the same, and learn: trained briefly on captures alone (no RSS, no ToA), it
places emitters far better than the same network without the branch, which only sees where the
receivers are."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from rflocal_core import iq as iqmod
from rflocal_core.constants import C_M_PER_NS
from rflocal_core.models import Inputs
from rflocal_core.models.features import FeatureSpec, make_batch
from rflocal_core.models.nets import build_network
from rflocal_core.models.neural import NeuralModel

N_IQ = 1024
BURST = 600
FS = iqmod.SAMPLE_RATE_HZ
NODES = np.array([[-900.0, -900.0, 20.0], [900.0, -900.0, 25.0], [900.0, 900.0, 30.0], [-900.0, 900.0, 15.0],
                  [0.0, 950.0, 20.0]])
SMALL = {"d_model": 32, "iq_width": 8, "node_embedding_dim": 0, "node_dropout": [0.0], "rss_noise_db": 0.0,
         "position_jitter_m": 0.0, "geometry": True}


def _iq_inputs(n: int, rng: np.random.Generator, *, with_rss: bool = False) -> Inputs:
    """``n`` emitters drawn in the 2 km square, a capture per receiver (no RSS/ToA unless ``with_rss``)."""
    s = len(NODES)
    truth = rng.uniform(-800, 800, (n, 2))
    dist = np.sqrt(((truth[:, None] - NODES[None, :, :2]) ** 2).sum(-1) + (NODES[:, 2] - 1.5) ** 2)
    codes = np.zeros((n, s, 2, N_IQ), np.int16)
    for i in range(n):
        burst = iqmod.waveform("ofdm", BURST, rng=rng)
        lead = rng.uniform(20, 150)  # the emission time is unknown: only differences tell
        for j in range(s):
            x = np.zeros(N_IQ, complex)
            start = round(lead + dist[i, j] / (C_M_PER_NS * 1e9) * FS)
            x[start:start + BURST] = burst[: N_IQ - start]
            x += (rng.normal(size=N_IQ) + 1j * rng.normal(size=N_IQ)) * 0.05
            codes[i, j] = np.clip(np.round(np.stack([x.real, x.imag]) * 8000), -32767, 32767)
    nan = np.full((n, s), np.nan)
    rss = -40 - 20 * np.log10(dist) if with_rss else nan
    x = Inputs("handmade", "train", "emitter", np.arange(n), rss, nan.copy(), nan.copy(), np.ones((n, s), np.int8),
               np.broadcast_to(NODES, (n, s, 3)).copy(), np.ones((n, s), bool), nan.copy(),
               np.broadcast_to(np.arange(s), (n, s)).copy(), truth, np.full(n, 1.5), np.zeros(n, np.int64),
               ("hand",), None, s)
    return replace(x, iq=codes, iq_scale=np.full((n, s), 1 / 8000), iq_t0_s=np.zeros((n, s)), iq_sample_rate_hz=FS)


def _model(x: Inputs, *, use_iq: bool) -> NeuralModel:
    spec = FeatureSpec.fit(x, iq=use_iq)
    torch.manual_seed(0)
    net = build_network("heimdall", {**SMALL, "use_iq": use_iq, "frame": "scene"}, vocab_size=len(spec.node_keys))
    return NeuralModel("heimdall", net, spec)


def test_batch_one_two_masked_receivers_and_no_capture_stay_finite() -> None:
    rng = np.random.default_rng(0)
    x = _iq_inputs(2, rng, with_rss=True)
    model = _model(x, use_iq=True)
    batch = make_batch(x, model.spec)
    assert batch.iq.shape == (2, 5, 2, N_IQ) and batch.iq_ok.all()
    net = model.net.train()
    for keep in (5, 2, 1):
        for size in (1, 2):
            part = batch.index(slice(0, size))
            mask = part.mask.clone()
            mask[:, keep:] = False
            part = part.with_tokens(mask=mask)
            out = net(part)
            loss, _ = net.loss(part, out)
            net.zero_grad()
            loss.backward()
            assert torch.isfinite(out["mu"]).all() and torch.isfinite(out["sigma"]).all() and torch.isfinite(loss)
            assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    none = batch.index(slice(0, 2))
    none.iq_ok = torch.zeros_like(none.iq_ok)  # reports without captures: the branch adds zeros
    assert torch.isfinite(net(none)["mu"]).all()
    empty = none.with_tokens(mask=torch.zeros_like(none.mask))
    assert torch.isfinite(net(empty)["mu"]).all()


def test_slot_order_and_checkpoint_round_trip() -> None:
    rng = np.random.default_rng(1)
    x = _iq_inputs(3, rng, with_rss=True)
    model = _model(x, use_iq=True)
    model.net.eval()
    pred = model.predict(x).position_m
    order = np.array([3, 0, 4, 2, 1])
    names = ("rss_dbm", "toa_ns", "aoa_deg", "node_pos_m", "slot_site", "iq", "iq_scale", "iq_t0_s", "tx_power_dbm")
    y = replace(x, **{name: getattr(x, name)[:, order].copy() for name in names})
    assert np.allclose(model.predict(y).position_m, pred, atol=1e-3)
    again = NeuralModel.from_checkpoint({"model": "heimdall", "state": model.net.state_dict(),
                                         "config": model.checkpoint_config()})
    assert again.spec.iq and np.allclose(again.predict(x).position_m, pred, atol=1e-5)


def test_iq_branch_learns_where_the_emitter_is() -> None:
    """Captures alone (no RSS, no ToA) carry the time differences: after 150 steps the error is well
    below answering the middle of the receivers, which is all the reports' positions could give."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(2)
    train, test = _iq_inputs(256, rng), _iq_inputs(64, rng)
    model = _model(train, use_iq=True)
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
    print(f"median error with IQ {err:.0f} m, the receivers' middle {middle:.0f} m")
    assert err < 0.8 * middle, (err, middle)
