"""IQ captures of a generated emitter dataset: one per report, from the exact paths of its link.

Each sample's emitter sends one burst per report time; every receiver that reports it
captures :data:`~rflocal_core.iq.CAPTURE_SAMPLES` samples starting at the report time on the
common (GPS) clock, late by its own jitter, with its own oscillator offset (a fixed ppm per
receiver plus drift over time). The features stored next to the captures are estimated from
the captures (:mod:`rflocal_core.iq`), never copied from the paths.

Arrays (``samples/`` of the dataset, ``[N, T, S, ...]``; see :mod:`rflocal_core.dataset.store`):
``iq`` codes ``[..., 2, n]`` (int16 or int8), ``iq_scale`` (√mW per code), ``iq_t0_s`` the
capture start on the common clock, ``mask_iq``, and ``iq_snr_db``, ``iq_power_dbm``,
``iq_freq_offset_hz``, ``iq_psd_db [..., 16]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rflocal_core import iq
from rflocal_core.dataset.config import GenerationConfig

#: Paths kept per link for the IQ channel (the strongest).
IQ_TAPS = 16
#: Burst length, samples (three OFDM symbols of 288); the capture starts 16-64 samples before it.
BURST_SAMPLES = 864
LEAD_SAMPLES = (16, 64)
#: Sub-bands of the PSD summary.
PSD_BANDS = 16
#: Names of the per-report arrays :func:`synthesize_iq` returns, besides ``iq`` and ``iq_t0_s``.
FEATURES = ("iq_scale", "iq_snr_db", "iq_power_dbm", "iq_freq_offset_hz", "iq_psd_db", "mask_iq")


def capture_attrs(config: GenerationConfig, carrier_hz: float | None) -> dict[str, Any]:
    """What a reader needs to interpret the stored captures (``samples`` attrs ``iq``); ``carrier_hz`` None:
    the receivers are on several carriers, each capture at its node's (``samples/node_carrier_hz``)."""
    return {"sample_rate_hz": config.iq_sample_rate_hz, "samples": iq.CAPTURE_SAMPLES, "adc": config.iq_adc,
            "waveform": config.iq_waveform, "bandwidth_hz": config.iq_bandwidth_hz, "carrier_hz": carrier_hz,
            "burst_samples": BURST_SAMPLES,
            "units": "iq codes x iq_scale = complex baseband in sqrt(mW); iq_t0_s: capture start, common clock"}


def velocities(pos: np.ndarray, t_s: np.ndarray) -> np.ndarray:
    """Velocity [n, T, 3] from consecutive positions (the last step keeps the one before; one step: 0)."""
    v = np.zeros_like(pos, dtype=np.float64)
    if pos.shape[1] > 1:
        dt = np.diff(t_s, axis=1)[..., None]
        with np.errstate(invalid="ignore", divide="ignore"):
            step = np.where(dt > 0, np.diff(pos, axis=1) / dt, 0.0)
        v[:, :-1] = np.nan_to_num(step)
        v[:, -1] = v[:, -2]
    return v


def synthesize_iq(*, pos: np.ndarray, t_s: np.ndarray, present: np.ndarray, taps: dict[str, np.ndarray],
                  gain_db: np.ndarray, carrier_hz: float | np.ndarray, config: GenerationConfig,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Captures and their estimated features for every present report.

    Parameters
    ----------
    pos, t_s : ndarray [n, T, 3], [n, T]
        The emitter's positions and report times (the capture starts at the report time).
    present : ndarray [n, T, S] bool
        Reports that exist (a receiver without a path captures nothing: masked).
    taps : dict of ndarray [n, T, S, K]
        ``gain_re``, ``gain_im``, ``delay_ns``, ``direction`` (``[..., K, 3]``) of
        :class:`~rflocal_core.raytrace.PathTaps`.
    gain_db : ndarray [n, T, S]
        Transmit power (dBm) plus shadow fading (dB) of each link: scales the path gains.
    carrier_hz : float or ndarray [n, S]
        The carrier of every receiver (node slot): its Doppler shifts and oscillator offset scale with it
        (a multi-band scene's cells are nodes on their own carriers).
    config : GenerationConfig
    rng : numpy.random.Generator
    """
    n, steps, sites = present.shape
    carriers = np.broadcast_to(np.asarray(carrier_hz, dtype=np.float64), (n, sites))
    fs, size = config.iq_sample_rate_hz, iq.CAPTURE_SAMPLES
    ppm = rng.normal(0.0, config.iq_lo_ppm, sites)  # each receiver's oscillator, fixed
    drift = rng.normal(0.0, config.iq_lo_drift_ppm_s, sites)
    vel = velocities(pos, t_s)
    out = _empty(n, steps, sites, config)
    has_path = np.isfinite(taps["delay_ns"]).any(-1)
    out["mask_iq"] = present & has_path
    for i, t in zip(*np.nonzero(out["mask_iq"].any(-1))):
        burst = iq.waveform(config.iq_waveform, BURST_SAMPLES, sample_rate_hz=fs, bandwidth_hz=config.iq_bandwidth_hz,
                            rng=rng)
        t0 = float(t_s[i, t])
        start = t0 + rng.uniform(*LEAD_SAMPLES) / fs
        for s in np.flatnonzero(out["mask_iq"][i, t]):
            link = {key: value[i, t, s] for key, value in taps.items()}
            carrier = float(carriers[i, s])
            imp = iq.Impairments(lo_offset_hz=carrier * 1e-6 * (ppm[s] + drift[s] * t0),
                                 lo_phase_rad=float(rng.uniform(0, 2 * np.pi)),
                                 jitter_s=float(rng.normal(0.0, config.iq_jitter_ns * 1e-9)),
                                 noise_figure_db=config.noise_figure_db, adc=config.iq_adc)
            gains, delays, doppler = _link_channel(link, gain_db[i, t, s], vel[i, t], carrier,
                                                   latest_s=size / fs - (start - t0))
            codes, scale = iq.synthesize_capture(burst, gains=gains, delays_s=delays, burst_start_s=start,
                                                 capture_start_s=t0, impairments=imp, rng=rng, n=size,
                                                 sample_rate_hz=fs, doppler=doppler)
            out["iq"][i, t, s], out["iq_t0_s"][i, t, s] = codes, t0
            _features(out, (i, t, s), iq.dequantize(codes, scale), scale, config)
    return out


def _empty(n: int, steps: int, sites: int, config: GenerationConfig) -> dict[str, np.ndarray]:
    shape = (n, steps, sites)
    out = {key: np.full(shape, np.nan, np.float32) for key in FEATURES if key != "mask_iq"}
    out["iq_psd_db"] = np.full((*shape, PSD_BANDS), np.nan, np.float32)
    out["iq"] = np.zeros((*shape, 2, iq.CAPTURE_SAMPLES), dtype=config.iq_adc)
    out["iq_t0_s"] = np.full(shape, np.nan, np.float64)
    return out


def _link_channel(link: dict[str, np.ndarray], gain_db: float, velocity: np.ndarray, carrier_hz: float, *,
                  latest_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complex gains (√mW), delays (s) and Doppler shifts (Hz) of a link's paths that arrive within the capture."""
    delays = link["delay_ns"] * 1e-9
    ok = np.isfinite(delays) & (delays < latest_s)
    gains = (link["gain_re"] + 1j * link["gain_im"]).astype(complex) * 10 ** (gain_db / 20)
    doppler = iq.doppler_hz(velocity, link["direction"][ok], carrier_hz)
    return gains[ok], delays[ok], doppler


def _features(out: dict[str, np.ndarray], at: tuple[int, int, int], x: np.ndarray, scale: float,
              config: GenerationConfig) -> None:
    fs, bw = config.iq_sample_rate_hz, config.iq_bandwidth_hz
    psd = iq.welch_psd(x, sample_rate_hz=fs)  # once for the three PSD-based features
    out["iq_scale"][at] = scale
    out["iq_snr_db"][at] = iq.estimate_snr_db(x, occupied_hz=bw, sample_rate_hz=fs, psd=psd)
    out["iq_power_dbm"][at] = iq.band_power_dbm(x, occupied_hz=bw, sample_rate_hz=fs, psd=psd)
    out["iq_freq_offset_hz"][at] = iq.estimate_frequency_offset_hz(x, kind=config.iq_waveform, occupied_hz=bw,
                                                                   sample_rate_hz=fs)
    out["iq_psd_db"][at] = iq.psd_summary_db(x, bands=PSD_BANDS, sample_rate_hz=fs, psd=psd)
