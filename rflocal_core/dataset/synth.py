"""Measurement reports as a network or sensor array would report them.

From noise-free ray-traced quantities (path gain maps, exact paths) to reports:
shadow fading, quantization, the sensitivity floor, timing and angle noise,
top-K selection and random dropout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rflocal_core.dataset.config import GenerationConfig

#: LTE/NR basic time unit Ts = 1 / (15 kHz · 2048), in seconds; timing advance steps are 16 Ts.
TS_S = 1.0 / (15_000 * 2048)
TA_STEP_S = 16 * TS_S


def noise_floor_dbm(bandwidth_hz: float, noise_figure_db: float) -> float:
    """Thermal noise power -174 dBm/Hz + 10·log10(B) + NF."""
    return -174.0 + 10.0 * np.log10(bandwidth_hz) + noise_figure_db


@dataclass
class Reports:
    """Per-report arrays [n, T, S]; NaN (or -1 for integers) where missing."""

    rss_dbm: np.ndarray
    snr_db: np.ndarray
    toa_ns: np.ndarray
    ta: np.ndarray
    aoa_deg: np.ndarray
    los: np.ndarray
    delay_spread_ns: np.ndarray
    pg_true_db: np.ndarray


def synthesize(
    *,
    pg_db: np.ndarray,
    shadow_db: np.ndarray,
    tx_power_dbm: np.ndarray,
    toa_true_ns: np.ndarray | None,
    aoa_true_deg: np.ndarray | None,
    los: np.ndarray | None,
    delay_spread_ns: np.ndarray | None,
    step_mask: np.ndarray,
    config: GenerationConfig,
    rng: np.random.Generator,
    top_k: int | None = None,
) -> Reports:
    """Turn noise-free link quantities into reports.

    Parameters
    ----------
    pg_db : ndarray [n, T, S]
        Ray-traced path gain of each link (-inf or NaN where no ray arrived).
    shadow_db : ndarray [n, T, S]
        Shadow fading at each position (correlated field sampled there).
    tx_power_dbm : ndarray broadcastable to [n, T, S]
        Transmit power of the link (site power in ``ue`` mode, the emitter's in ``emitter``).
    toa_true_ns, aoa_true_deg, los, delay_spread_ns : ndarray [n, T, S] or None
        Exact-path features (None when timing is off).
    step_mask : ndarray [n, T] bool
    top_k : int, optional
        Overrides ``config.top_k`` (0 keeps every report).
    """
    top_k = config.top_k if top_k is None else top_k
    pg = np.where(np.isfinite(pg_db), pg_db, np.nan)
    rss = tx_power_dbm + pg + shadow_db
    if config.rss_noise_db > 0:
        rss = rss + rng.normal(0.0, config.rss_noise_db, rss.shape)
    if config.rss_quantization_db > 0:
        rss = np.round(rss / config.rss_quantization_db) * config.rss_quantization_db
    present = np.isfinite(rss) & (rss >= config.sensitivity_dbm) & step_mask[..., None]

    if top_k and rss.shape[-1] > top_k:
        ranked = np.where(present, rss, -np.inf)
        kth = -np.sort(-ranked, axis=-1)[..., top_k - 1 : top_k]
        order = np.argsort(-ranked, axis=-1, kind="stable")
        keep = np.zeros_like(present)
        np.put_along_axis(keep, order[..., :top_k], True, axis=-1)
        present &= keep & (ranked >= kth)

    shape = rss.shape
    has_rss = present.copy()
    toa = np.full(shape, np.nan)
    aoa = np.full(shape, np.nan)
    spread = np.full(shape, np.nan)
    los_out = np.full(shape, -1, dtype=np.int8)
    if toa_true_ns is not None:
        has_path = present & np.isfinite(toa_true_ns)
        nlos = los != 1
        bias = np.where(nlos, rng.exponential(max(config.nlos_bias_mean_ns, 1e-12), shape), 0.0)
        if config.nlos_bias_mean_ns == 0:
            bias[:] = 0.0
        noisy = toa_true_ns + bias + rng.normal(0.0, 1.0, shape) * config.toa_noise_ns
        toa = np.where(has_path, np.maximum(noisy, 0.0), np.nan)
        angle = aoa_true_deg + rng.normal(0.0, 1.0, shape) * config.aoa_noise_deg
        aoa = np.where(has_path, np.mod(np.round(angle), 360.0), np.nan)
        spread = np.where(has_path, delay_spread_ns, np.nan)
        los_out = np.where(present, los, -1).astype(np.int8)

    if config.dropout > 0:
        has_rss &= rng.random(shape) >= config.dropout
        toa = np.where(rng.random(shape) >= config.dropout, toa, np.nan)
        aoa = np.where(rng.random(shape) >= config.dropout, aoa, np.nan)
        # A report that lost every feature is not a report.
        empty = ~has_rss & np.isnan(toa) & np.isnan(aoa)
        los_out = np.where(empty, -1, los_out).astype(np.int8)

    rss_out = np.where(has_rss, rss, np.nan)
    snr = rss_out - noise_floor_dbm(config.bandwidth_hz, config.noise_figure_db)
    ta = np.where(np.isfinite(toa), np.round(2.0 * toa * 1e-9 / TA_STEP_S), -1).astype(np.int32)
    return Reports(rss_out.astype(np.float32), snr.astype(np.float32), toa.astype(np.float32), ta,
                   aoa.astype(np.float32), los_out, spread.astype(np.float32),
                   np.where(step_mask[..., None], pg, np.nan).astype(np.float32))
