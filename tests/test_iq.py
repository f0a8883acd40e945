"""Physics of the IQ captures (rflocal_core.iq): each expectation is computed here from geometry
and constants (distances over c, kTB·NF, v·cosθ/λ), not from the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rflocal_core import iq
from rflocal_core.errors import InvalidInputError

C = 299_792_458.0
FS = 30.72e6
N = 1024
BURST = 864
NF_DB = 7.0
BANDS = {"ofdm": 18e6, "gfsk": 1.5e6, "fm": 16e3}


def _noise_mw() -> float:
    return 10 ** ((-174.0 + 10 * math.log10(FS) + NF_DB) / 10)


def _gain_for_snr(burst: np.ndarray, snr_db: float) -> float:
    """Amplitude gain that gives ``snr_db``: burst energy over the capture / noise over the sampled band."""
    return math.sqrt(10 ** (snr_db / 10) * _noise_mw() * N / float(np.sum(np.abs(burst) ** 2)))


def _capture(burst: np.ndarray, *, gain: complex, distance_m: float, rng: np.random.Generator,
             lo_hz: float = 0.0, doppler: float | None = None, nf_db: float = NF_DB) -> np.ndarray:
    codes, scale = iq.synthesize_capture(
        burst, gains=[gain], delays_s=[distance_m / C], burst_start_s=1.0e-6, capture_start_s=0.0,
        impairments=iq.Impairments(lo_offset_hz=lo_hz, noise_figure_db=nf_db), rng=rng,
        doppler=None if doppler is None else [doppler])
    assert codes.dtype == np.int16 and codes.shape == (2, N)
    return iq.dequantize(codes, scale)


@pytest.mark.parametrize("seed", range(4))
def test_tdoa_of_a_single_los_path_is_the_distance_difference_over_c(seed: int) -> None:
    rng = np.random.default_rng(seed)
    emitter = np.array([10.0, -40.0, 1.5])
    rx1 = emitter + rng.uniform(-250, 250, 3) * [1, 1, 0] + [0, 0, 20]
    rx2 = emitter + rng.uniform(-250, 250, 3) * [1, 1, 0] + [0, 0, 30]
    d1, d2 = float(np.linalg.norm(rx1 - emitter)), float(np.linalg.norm(rx2 - emitter))
    burst = iq.waveform("ofdm", BURST, bandwidth_hz=BANDS["ofdm"], rng=rng)
    g = _gain_for_snr(burst, 10.0)
    # different LO offsets and carrier phases at the two receivers, as in the field
    x1 = _capture(burst, gain=g * np.exp(1j * 0.3), distance_m=d1, rng=rng, lo_hz=1800.0)
    x2 = _capture(burst, gain=g * np.exp(-2j), distance_m=d2, rng=rng, lo_hz=-900.0)
    tdoa, quality = iq.tdoa_s(x1, x2, sample_rate_hz=FS)
    assert abs(tdoa - (d2 - d1) / C) < 0.25 / FS
    assert 0.3 < quality <= 1.0


def test_tdoa_adds_the_difference_of_capture_starts() -> None:
    rng = np.random.default_rng(7)
    burst = iq.waveform("ofdm", BURST, bandwidth_hz=BANDS["ofdm"], rng=rng)
    g = _gain_for_snr(burst, 20.0)
    late = 0.4e-6  # the second receiver starts 0.4 µs later: its arrival sits 0.4 µs earlier in its capture
    x1 = _capture(burst, gain=g, distance_m=100.0, rng=rng)
    codes, scale = iq.synthesize_capture(burst, gains=[g], delays_s=[300.0 / C], burst_start_s=1.0e-6,
                                         capture_start_s=late, impairments=iq.Impairments(), rng=rng)
    tdoa, _ = iq.tdoa_s(x1, iq.dequantize(codes, scale), sample_rate_hz=FS, start_difference_s=late)
    assert abs(tdoa - 200.0 / C) < 0.25 / FS


@pytest.mark.parametrize("offset_hz", [-11_300.0, 2_100.0, 7_450.0])
@pytest.mark.parametrize("seed", range(3))
def test_frequency_offset_within_one_percent_of_a_bin(offset_hz: float, seed: int) -> None:
    """OFDM (cyclic-prefix estimator) at 30 dB: within 1% of the FFT bin fs/1024 (300 Hz)."""
    rng = np.random.default_rng(seed)
    burst = iq.waveform("ofdm", BURST, bandwidth_hz=BANDS["ofdm"], rng=rng)
    x = _capture(burst, gain=_gain_for_snr(burst, 30.0), distance_m=180.0, rng=rng, lo_hz=offset_hz)
    est = iq.estimate_frequency_offset_hz(x, kind="ofdm", occupied_hz=BANDS["ofdm"], sample_rate_hz=FS)
    assert abs(est - offset_hz) < 0.01 * FS / N


@pytest.mark.parametrize("seed", range(3))
def test_gfsk_frequency_offset_within_three_percent_of_a_bin(seed: int) -> None:
    """GFSK (balanced payload, PSD centroid) at 30 dB: within 3% of a bin (noise-free about 0.1%;
    the in-band noise of the centroid's 6 MHz window dominates at 30 dB)."""
    rng = np.random.default_rng(seed)
    burst = iq.waveform("gfsk", BURST, bandwidth_hz=BANDS["gfsk"], rng=rng)
    x = _capture(burst, gain=_gain_for_snr(burst, 30.0), distance_m=180.0, rng=rng, lo_hz=-5_200.0)
    est = iq.estimate_frequency_offset_hz(x, kind="gfsk", occupied_hz=BANDS["gfsk"], sample_rate_hz=FS)
    assert abs(est + 5_200.0) < 0.03 * FS / N


@pytest.mark.parametrize("kind", iq.WAVEFORMS)
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_estimated_snr_within_1_db(kind: str, snr_db: float) -> None:
    rng = np.random.default_rng(int(snr_db) + 3)
    burst = iq.waveform(kind, BURST, bandwidth_hz=BANDS[kind], rng=rng)
    x = _capture(burst, gain=_gain_for_snr(burst, snr_db) * np.exp(0.7j), distance_m=250.0, rng=rng, lo_hz=3000.0)
    assert abs(iq.estimate_snr_db(x, occupied_hz=BANDS[kind], sample_rate_hz=FS) - snr_db) < 1.0
    # band power: the received signal power over the capture, in dBm
    signal_dbm = 10 * math.log10(_gain_for_snr(burst, snr_db) ** 2 * float(np.sum(np.abs(burst) ** 2)) / N)
    assert abs(iq.band_power_dbm(x, occupied_hz=BANDS[kind], sample_rate_hz=FS) - signal_dbm) < 1.0


@pytest.mark.parametrize("angle_deg", [0.0, 60.0, 135.0])
def test_moving_emitter_shows_doppler_v_cos_theta_over_lambda(angle_deg: float) -> None:
    carrier = 3.5e9
    speed = 30.0
    velocity = np.array([speed, 0.0, 0.0])
    emitter = np.array([0.0, 0.0, 1.5])
    theta = math.radians(angle_deg)
    receiver = emitter + 200.0 * np.array([math.cos(theta), math.sin(theta), 0.0])
    direction = (receiver - emitter) / np.linalg.norm(receiver - emitter)
    expected = speed * math.cos(theta) / (C / carrier)
    shift = iq.doppler_hz(velocity, direction[None, :], carrier)
    assert shift.shape == (1,) and shift[0] == pytest.approx(expected, rel=1e-9)

    burst = iq.waveform("fm", BURST, bandwidth_hz=BANDS["fm"], rng=np.random.default_rng(5))
    g = _gain_for_snr(burst, 30.0)
    # the same noise with and without motion: the difference of the estimates is the Doppler shift alone
    still = _capture(burst, gain=g, distance_m=200.0, rng=np.random.default_rng(9))
    moving = _capture(burst, gain=g, distance_m=200.0, rng=np.random.default_rng(9), doppler=float(shift[0]))
    est = [iq.estimate_frequency_offset_hz(x, kind="fm", occupied_hz=BANDS["fm"], sample_rate_hz=FS)
           for x in (still, moving)]
    assert est[1] - est[0] == pytest.approx(expected, abs=0.03 * abs(expected) + 2.0)


def test_adc_formats_and_full_scale() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(N) + 1j * rng.standard_normal(N)) * 1e-6
    for adc, top in (("int16", 32767), ("int8", 127)):
        codes, scale = iq.quantize(x, adc=adc)
        assert codes.dtype == np.dtype(adc)
        assert np.abs(codes).max() == round(top / 10 ** (3 / 20))  # 3 dB headroom below full scale
        err = iq.dequantize(codes, scale) - x
        assert np.max(np.abs(err.real)) <= scale / 2 + 1e-18
    with pytest.raises(InvalidInputError, match="adc: expected one of int16, int8, got 'int12'"):
        iq.quantize(x, adc="int12")


def test_psd_summary_sees_the_occupied_band() -> None:
    rng = np.random.default_rng(2)
    burst = iq.waveform("ofdm", BURST, bandwidth_hz=9e6, rng=rng)
    x = _capture(burst, gain=_gain_for_snr(burst, 20.0), distance_m=80.0, rng=rng)
    bands = iq.psd_summary_db(x, bands=16, sample_rate_hz=FS)
    # 16 bands of 1.92 MHz from -15.36 MHz: the middle four lie inside ±4.5 MHz, the outer four outside
    assert bands.shape == (16,)
    assert bands[6:10].min() > bands[:4].max() + 10 and bands[6:10].min() > bands[12:].max() + 10


def test_waveform_rejects_bad_inputs() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidInputError, match="waveform: expected one of ofdm, gfsk, fm, got 'am'"):
        iq.waveform("am", 100, rng=rng)
    with pytest.raises(InvalidInputError, match="bandwidth_hz: expected a bandwidth in"):
        iq.waveform("ofdm", 100, bandwidth_hz=40e6, rng=rng)


def test_dataset_captures_of_a_moving_emitter_carry_its_doppler_per_receiver() -> None:
    """iqgen: an emitter at 10 m/s along +x; the path to receiver 0 leaves along +x, to receiver 1
    along +y. Against the same captures of a still emitter (same draws), the estimated frequency
    offsets move by v/λ and by 0."""
    from rflocal_core.dataset.config import GenerationConfig
    from rflocal_core.dataset.iqgen import synthesize_iq

    carrier = 3.5e9
    config = GenerationConfig(name="x", scenes=("a",), mode="emitter", iq=True)
    taps = {"gain_re": np.full((1, 2, 2, 1), 1e-3), "gain_im": np.zeros((1, 2, 2, 1)),
            "delay_ns": np.array([[[[400.0], [700.0]]] * 2]),
            "direction": np.array([[[[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]]] * 2])}
    t_s = np.array([[0.0, 0.5]])
    out = {}
    for name, dx in (("still", 0.0), ("moving", 5.0)):
        pos = np.array([[[0.0, 0.0, 1.5], [dx, 0.0, 1.5]]])
        out[name] = synthesize_iq(pos=pos, t_s=t_s, present=np.ones((1, 2, 2), bool), taps=taps,
                                  gain_db=np.full((1, 2, 2), 20.0), carrier_hz=carrier, config=config,
                                  rng=np.random.default_rng(3))
    shift = out["moving"]["iq_freq_offset_hz"] - out["still"]["iq_freq_offset_hz"]  # [1, T, S]
    v_over_lambda = 10.0 * carrier / C
    np.testing.assert_allclose(shift[0, :, 0], v_over_lambda, atol=5.0)
    np.testing.assert_allclose(shift[0, :, 1], 0.0, atol=5.0)
    assert out["still"]["mask_iq"].all() and np.isfinite(out["still"]["iq_snr_db"]).all()
