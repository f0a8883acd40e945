"""Complex baseband IQ captures from ray-traced channels, and the estimators that read them.

Pure numpy. A capture is what one receiver records of one emitter burst: the emitted waveform
(:func:`waveform`: an OFDM burst, a GFSK burst or narrowband FM), passed through the paths of
the channel (:func:`channel`: complex gain, fractional delay and Doppler per path), shifted by
the receiver's local-oscillator offset (:func:`apply_lo`), plus thermal noise from the noise
figure (:func:`thermal_noise`), then quantized by the ADC (:func:`quantize`).
:func:`synthesize_capture` chains them.

Units: samples are in √mW (``|x|²`` is the instantaneous power in mW, so ``mean(|x|²)`` in
dBm is the band power); times on the receivers' common (GPS) clock in seconds.

Sample rate: 30.72 MS/s (the LTE/NR 20 MHz rate). One sample is 32.6 ns, 9.76 m of
propagation, so the time differences of arrival inside a 512 m scene span ±54 samples and a
quarter sample is 2.4 m; 1024 samples (33.3 µs) hold a 20.8 µs burst plus every arrival.

Estimators: :func:`estimate_snr_db`, :func:`band_power_dbm`, :func:`psd_summary_db`,
:func:`estimate_frequency_offset_hz` and :func:`tdoa_s` (cross-correlation with sub-sample
interpolation).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from rflocal_core.constants import SPEED_OF_LIGHT_M_S
from rflocal_core.errors import InvalidInputError

#: Default sample rate, Hz: 32.6 ns (9.76 m) per sample.
SAMPLE_RATE_HZ = 30.72e6
#: Samples per capture.
CAPTURE_SAMPLES = 1024
#: Emitted waveforms.
WAVEFORMS = ("ofdm", "gfsk", "fm")
#: ADC formats: the integer type of the stored samples.
ADC_FORMATS = ("int16", "int8")
#: Thermal noise density at 290 K, dBm/Hz.
THERMAL_DBM_HZ = -174.0

#: OFDM: FFT size and cyclic prefix (120 kHz subcarriers at 30.72 MS/s).
OFDM_NFFT = 256
OFDM_CP = 32
#: OFDM: samples of the raised-cosine taper between symbols.
OFDM_TAPER = 8
#: GFSK: modulation index and Gaussian filter bandwidth-time product (Bluetooth-like).
GFSK_H = 0.5
GFSK_BT = 0.5
#: Raised-cosine ramp at each end of a burst, samples (limits the spectral splatter of the edges).
RAMP_SAMPLES = 16
#: Welch segment length of the PSD estimates (240 kHz bins at 30.72 MS/s).
PSD_SEGMENT = 128
#: PSD bins between the occupied band and the bins that measure the noise.
GUARD_BINS = 4


def _check_waveform(kind: str) -> None:
    if kind not in WAVEFORMS:
        msg = f"waveform: expected one of {', '.join(WAVEFORMS)}, got {kind!r}"
        raise InvalidInputError(msg)


def _check_band(bandwidth_hz: float, sample_rate_hz: float) -> None:
    if not 0 < bandwidth_hz < sample_rate_hz:
        msg = f"bandwidth_hz: expected a bandwidth in (0, {sample_rate_hz:g}) Hz (below the sample rate), got {bandwidth_hz!r}"
        raise InvalidInputError(msg)


# --------------------------------------------------------------------------- waveforms


def waveform(kind: str, n: int, *, sample_rate_hz: float = SAMPLE_RATE_HZ, bandwidth_hz: float = 18e6,
             rng: np.random.Generator) -> np.ndarray:
    """A burst of ``n`` complex baseband samples of unit mean power, with ramped edges.

    Parameters
    ----------
    kind : {"ofdm", "gfsk", "fm"}
        ``"ofdm"``: QPSK on the subcarriers within ``bandwidth_hz`` (256-point FFT, 32-sample
        cyclic prefix). ``"gfsk"``: Gaussian FSK (h = 0.5, BT = 0.5) at a symbol rate of
        ``bandwidth_hz / 1.5`` with a DC-balanced payload (as many ones as zeros, as whitened
        framing gives), so the mean frequency of the burst is the carrier. ``"fm"``: narrowband
        FM of three voice tones (300-3000 Hz), deviation from Carson's rule
        ``bandwidth = 2 (deviation + 3 kHz)``.
    n : int
        Burst length in samples.
    sample_rate_hz, bandwidth_hz : float
        The occupied bandwidth, below the sample rate.
    rng : numpy.random.Generator
    """
    _check_waveform(kind)
    _check_band(bandwidth_hz, sample_rate_hz)
    envelope = np.ones(n)
    ramp = min(RAMP_SAMPLES, n // 4)
    if ramp:
        edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        envelope[:ramp] = edge
        envelope[-ramp:] = edge[::-1]
    if kind == "ofdm":
        x = _ofdm(n, sample_rate_hz, bandwidth_hz, rng)
    elif kind == "gfsk":
        x = _gfsk(n, sample_rate_hz, bandwidth_hz, rng, envelope ** 2)
    else:
        x = _fm(n, sample_rate_hz, bandwidth_hz, rng)
    return envelope * x / np.sqrt(np.mean(np.abs(x) ** 2))


def _ofdm(n: int, fs: float, bw: float, rng: np.random.Generator) -> np.ndarray:
    spacing = fs / OFDM_NFFT
    k = np.fft.fftfreq(OFDM_NFFT, d=1.0 / OFDM_NFFT)
    used = (np.abs(k) * spacing <= bw / 2) & (k != 0)  # DC left empty, as in LTE
    symbols = -(-n // (OFDM_NFFT + OFDM_CP))
    qpsk = (rng.choice([-1.0, 1.0], (symbols, OFDM_NFFT)) + 1j * rng.choice([-1.0, 1.0], (symbols, OFDM_NFFT)))
    body = np.fft.ifft(np.where(used, qpsk, 0.0), axis=1)
    # Windowed overlap-add (WOLA): each symbol's cyclic extension is tapered over OFDM_TAPER samples
    # at both ends and overlapped with the next; without it the phase jumps between symbols splatter
    # -32 dB outside the band. The last OFDM_CP - OFDM_TAPER samples of each prefix stay exact copies.
    ext = np.concatenate([body[:, -OFDM_CP:], body, body[:, :OFDM_TAPER]], axis=1)
    taper = 0.5 - 0.5 * np.cos(np.pi * (np.arange(OFDM_TAPER) + 0.5) / OFDM_TAPER)
    ext[:, :OFDM_TAPER] *= taper
    ext[:, -OFDM_TAPER:] *= taper[::-1]
    period = OFDM_NFFT + OFDM_CP
    x = np.zeros(symbols * period + OFDM_TAPER, dtype=complex)
    for i in range(symbols):
        x[i * period: i * period + ext.shape[1]] += ext[i]
    return x[:n]


def _gfsk(n: int, fs: float, bw: float, rng: np.random.Generator, weight: np.ndarray) -> np.ndarray:
    rate = bw / (1.0 + GFSK_H)
    sps = fs / rate
    count = max(2, math.ceil(n / sps) + 1)
    count += count % 2
    bits = rng.permutation(np.repeat([-1.0, 1.0], count // 2))  # DC-balanced payload
    nrz = bits[np.minimum((np.arange(n) / sps).astype(int), count - 1)]
    sigma = math.sqrt(math.log(2.0)) / (2 * math.pi * GFSK_BT) * sps  # Gaussian filter, in samples
    half = math.ceil(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    freq = np.convolve(np.pad(nrz, half, mode="edge"), taps / taps.sum(), mode="valid")
    # Balanced to zero mean frequency over the burst as it is sent: bits of unequal sample counts
    # (non-integer samples per bit) leave a residue otherwise. freq[k] is the step from sample k-1
    # to k, weighted by the power of both (the ramps weigh the ends less).
    step_weight = np.sqrt(weight[1:] * weight[:-1])
    freq[1:] -= np.sum(freq[1:] * step_weight) / np.sum(step_weight)
    phase = np.pi * GFSK_H * np.cumsum(freq) / sps
    return np.exp(1j * phase)


def _fm(n: int, fs: float, bw: float, rng: np.random.Generator) -> np.ndarray:
    f_audio = 3000.0
    deviation = max(bw / 2 - f_audio, 100.0)
    t = np.arange(n) / fs
    tones = rng.uniform(300.0, f_audio, 3)
    audio = sum(np.cos(2 * np.pi * f * t + p) for f, p in zip(tones, rng.uniform(0, 2 * np.pi, 3)))
    audio = audio / 3.0
    return np.exp(2j * np.pi * deviation * np.cumsum(audio) / fs)


# --------------------------------------------------------------------------- channel and receiver


def doppler_hz(velocity_m_s: np.ndarray, direction: np.ndarray, carrier_hz: float) -> np.ndarray:
    """Doppler shift ``v · u / λ`` of paths leaving a moving emitter along unit vectors ``direction``.

    Parameters
    ----------
    velocity_m_s : ndarray [3]
    direction : ndarray [..., 3]
        Departure direction of each path at the emitter (unit vectors).
    carrier_hz : float
    """
    projected = np.sum(np.asarray(direction, dtype=float) * np.asarray(velocity_m_s, dtype=float), axis=-1)
    return projected * carrier_hz / SPEED_OF_LIGHT_M_S


def channel(burst: np.ndarray, *, n: int, sample_rate_hz: float, gains: np.ndarray, delays_s: np.ndarray,
            offset_s: float, doppler: np.ndarray | None = None) -> np.ndarray:
    """What arrives of ``burst`` through the paths, sampled over ``n`` samples of a capture.

    Path ``p`` contributes ``gains[p] · s(t - delays_s[p]) · exp(j 2π doppler[p] t)``, where ``t``
    runs from the burst's start and ``s`` is the band-limited burst (fractional delays by a
    phase ramp in the frequency domain).

    Parameters
    ----------
    burst : ndarray [L] complex
    n : int
        Capture length.
    gains : ndarray [P] complex
        Path amplitude gains (√ of power gain, with the carrier phase), e.g. Sionna's ``paths.a``
        times √(transmit power in mW).
    delays_s : ndarray [P]
        Propagation delays.
    offset_s : float
        Capture start minus burst start (negative: the capture starts before the burst).
    doppler : ndarray [P], optional
        Doppler shift of each path, Hz.
    """
    gains = np.asarray(gains, dtype=complex).reshape(-1)
    delays_s = np.asarray(delays_s, dtype=float).reshape(-1)
    if gains.size == 0:
        return np.zeros(n, dtype=complex)
    length = len(burst)
    # capture sample m reads burst sample m + shift - n, i.e. buf[m + shift]
    shift = (offset_s - delays_s) * sample_rate_hz + n  # [P]
    # the buffer holds the burst and every read (a capture starting up to n samples before the burst)
    size = 1 << math.ceil(math.log2(max(n + length, math.ceil(float(shift.max())) + n) + 1))
    buf = np.zeros(size, dtype=complex)
    buf[n: n + length] = burst  # n zeros before
    if np.any(shift < 0):
        msg = (f"offset_s: the capture must overlap the burst's buffer; got a read {float(shift.min()) - n:.1f} "
               f"samples from its start")
        raise InvalidInputError(msg)
    freqs = np.fft.fftfreq(size)
    spectrum = np.fft.fft(buf)
    ramp = np.exp(2j * np.pi * freqs[None, :] * shift[:, None])  # advance each path by its shift
    if doppler is None or not np.any(doppler):
        return np.fft.ifft(spectrum * np.sum(gains[:, None] * ramp, axis=0))[:n]  # not matmul: BLAS threads
    waves = np.fft.ifft(spectrum[None, :] * ramp, axis=1)[:, :n]  # [P, n], one batched transform
    t_s = (np.arange(n) / sample_rate_hz) + offset_s  # time since the burst's start
    doppler = np.asarray(doppler, dtype=float).reshape(-1)
    rotation = np.exp(2j * np.pi * doppler[:, None] * (t_s[None, :] - delays_s[:, None]))
    return np.sum(gains[:, None] * waves * rotation, axis=0)


def apply_lo(x: np.ndarray, *, sample_rate_hz: float, offset_hz: float, phase_rad: float = 0.0,
             start_s: float = 0.0) -> np.ndarray:
    """Mix with the receiver's local-oscillator error: the capture appears ``offset_hz`` higher."""
    t = start_s + np.arange(len(x)) / sample_rate_hz
    return x * np.exp(1j * (2 * np.pi * offset_hz * t + phase_rad))


def noise_power_mw(sample_rate_hz: float, noise_figure_db: float) -> float:
    """Thermal noise power over the sampled band: -174 dBm/Hz + 10·log10(fs) + NF, in mW."""
    return float(10 ** ((THERMAL_DBM_HZ + 10 * np.log10(sample_rate_hz) + noise_figure_db) / 10))


def thermal_noise(n: int, *, sample_rate_hz: float, noise_figure_db: float, rng: np.random.Generator) -> np.ndarray:
    """Complex white Gaussian noise of :func:`noise_power_mw` (√mW)."""
    sigma = math.sqrt(noise_power_mw(sample_rate_hz, noise_figure_db) / 2)
    return sigma * (rng.standard_normal(n) + 1j * rng.standard_normal(n))


def quantize(x: np.ndarray, *, adc: str = "int16", headroom_db: float = 3.0) -> tuple[np.ndarray, float]:
    """ADC with automatic gain: the largest component sits ``headroom_db`` below full scale.

    Returns
    -------
    codes : ndarray [2, n] of int16 or int8
        In-phase and quadrature codes.
    scale : float
        √mW per code: ``codes * scale`` is the capture.
    """
    if adc not in ADC_FORMATS:
        msg = f"adc: expected one of {', '.join(ADC_FORMATS)}, got {adc!r}"
        raise InvalidInputError(msg)
    dtype = np.dtype(adc)
    full = np.iinfo(dtype).max
    peak = float(np.max(np.abs(np.concatenate([x.real, x.imag])))) if len(x) else 0.0
    scale = peak * 10 ** (headroom_db / 20) / full if peak > 0 else 1.0
    codes = np.clip(np.round(np.stack([x.real, x.imag]) / scale), -full - 1, full).astype(dtype)
    return codes, scale


def quantize_rows(x: np.ndarray, *, adc: str = "int16", headroom_db: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize` of each row of ``x`` [k, n] at once: codes [k, 2, n] and scales [k] (the same values)."""
    if adc not in ADC_FORMATS:
        msg = f"adc: expected one of {', '.join(ADC_FORMATS)}, got {adc!r}"
        raise InvalidInputError(msg)
    dtype = np.dtype(adc)
    full = np.iinfo(dtype).max
    parts = np.stack([x.real, x.imag], 1)  # [k, 2, n]
    peak = np.abs(parts).max(axis=(1, 2), initial=0.0)
    scale = np.where(peak > 0, peak * 10 ** (headroom_db / 20) / full, 1.0)
    codes = np.clip(np.round(parts / scale[:, None, None]), -full - 1, full).astype(dtype)
    return codes, scale


def dequantize(codes: np.ndarray, scale: float) -> np.ndarray:
    """The complex capture (√mW) of ADC codes ``[2, n]``."""
    codes = np.asarray(codes, dtype=np.float64)
    return (codes[0] + 1j * codes[1]) * scale


@dataclass(frozen=True)
class Impairments:
    """A receiver's imperfections for one capture.

    Attributes
    ----------
    lo_offset_hz : float
        Local-oscillator error (fixed ppm of the receiver plus its drift, times the carrier).
    lo_phase_rad : float
    jitter_s : float
        Error of the capture start against the common clock (GPS-disciplined receivers).
    noise_figure_db : float
    adc : str
        ``"int16"`` or ``"int8"``.
    """

    lo_offset_hz: float = 0.0
    lo_phase_rad: float = 0.0
    jitter_s: float = 0.0
    noise_figure_db: float = 7.0
    adc: str = "int16"


def synthesize_capture(burst: np.ndarray, *, gains: np.ndarray, delays_s: np.ndarray, burst_start_s: float,
                       capture_start_s: float, impairments: Impairments, rng: np.random.Generator,
                       n: int = CAPTURE_SAMPLES, sample_rate_hz: float = SAMPLE_RATE_HZ,
                       doppler: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """One receiver's capture of a burst: channel, LO offset, noise, ADC.

    ``capture_start_s`` is the start on the common clock; the receiver really starts
    ``impairments.jitter_s`` later.

    Returns
    -------
    codes, scale
        As :func:`quantize`.
    """
    start = capture_start_s + impairments.jitter_s
    x = channel(burst, n=n, sample_rate_hz=sample_rate_hz, gains=gains, delays_s=delays_s,
                offset_s=start - burst_start_s, doppler=doppler)
    x = apply_lo(x, sample_rate_hz=sample_rate_hz, offset_hz=impairments.lo_offset_hz,
                 phase_rad=impairments.lo_phase_rad, start_s=start)
    x = x + thermal_noise(n, sample_rate_hz=sample_rate_hz, noise_figure_db=impairments.noise_figure_db, rng=rng)
    return quantize(x, adc=impairments.adc)


# --------------------------------------------------------------------------- estimators


def welch_psd(x: np.ndarray, *, sample_rate_hz: float = SAMPLE_RATE_HZ,
              segment: int = PSD_SEGMENT) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density (Blackman-Harris window, half overlap), mW/Hz, frequencies from -fs/2 up.

    The window's sidelobes (-92 dB) keep a strong narrowband signal out of the noise bins.
    """
    x = np.asarray(x, dtype=complex)
    segment = min(segment, len(x))
    step = max(segment // 2, 1)
    starts = range(0, len(x) - segment + 1, step)
    window = _blackman_harris(segment)
    spectra = [np.abs(np.fft.fft(x[s:s + segment] * window)) ** 2 for s in starts]
    psd = np.mean(spectra, axis=0) / (sample_rate_hz * np.sum(window ** 2))
    freqs = np.fft.fftfreq(segment, d=1.0 / sample_rate_hz)
    return np.fft.fftshift(freqs), np.fft.fftshift(psd)


def _blackman_harris(size: int) -> np.ndarray:
    k = 2 * np.pi * np.arange(size) / size
    return 0.35875 - 0.48829 * np.cos(k) + 0.14128 * np.cos(2 * k) - 0.01168 * np.cos(3 * k)


def noise_density_mw_hz(x: np.ndarray, *, occupied_hz: float, sample_rate_hz: float = SAMPLE_RATE_HZ,
                        psd: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Noise density: the median PSD outside the occupied band (four 240 kHz bins of guard), mW/Hz.

    The median, not the mean: the bins next to the band hold what the signal splatters. With
    fewer than four bins outside the band (a signal as wide as the sample rate) the lowest tenth
    of the bins is taken, an upper bound. ``psd``: :func:`welch_psd` of ``x`` if already computed.
    """
    freqs, psd = welch_psd(x, sample_rate_hz=sample_rate_hz) if psd is None else psd
    guard = GUARD_BINS * sample_rate_hz / PSD_SEGMENT  # the window's main lobe is 4 bins each side
    outside = np.abs(freqs) > occupied_hz / 2 + guard
    if outside.sum() >= 4:
        return float(np.median(psd[outside]))
    return float(np.mean(np.sort(psd)[: max(len(psd) // 10, 1)]))


def estimate_snr_db(x: np.ndarray, *, occupied_hz: float, sample_rate_hz: float = SAMPLE_RATE_HZ,
                    psd: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """SNR over the capture: signal energy / noise energy, both over the whole sampled band.

    The noise density comes from the bins outside the occupied band
    (:func:`noise_density_mw_hz`); the signal is the rest of the capture's power.
    """
    noise = noise_density_mw_hz(x, occupied_hz=occupied_hz, sample_rate_hz=sample_rate_hz, psd=psd) * sample_rate_hz
    total = float(np.mean(np.abs(x) ** 2))
    signal = max(total - noise, total * 1e-6)
    return float(10 * np.log10(signal / noise))


def band_power_dbm(x: np.ndarray, *, occupied_hz: float, sample_rate_hz: float = SAMPLE_RATE_HZ,
                   psd: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Signal power in the occupied band (and the window's main lobe around it) over the capture, noise removed, dBm."""
    psd = welch_psd(x, sample_rate_hz=sample_rate_hz) if psd is None else psd
    noise = noise_density_mw_hz(x, occupied_hz=occupied_hz, sample_rate_hz=sample_rate_hz, psd=psd)
    freqs, psd = psd
    inside = np.abs(freqs) <= occupied_hz / 2 + GUARD_BINS * sample_rate_hz / PSD_SEGMENT
    df = sample_rate_hz / len(freqs)
    power = float(np.sum(np.maximum(psd[inside] - noise, 0.0)) * df)
    return float(10 * np.log10(max(power, 1e-30)))


def psd_summary_db(x: np.ndarray, *, bands: int = 16, sample_rate_hz: float = SAMPLE_RATE_HZ,
                   psd: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Mean PSD in ``bands`` equal sub-bands from -fs/2 to fs/2, dBm/Hz."""
    _, psd = welch_psd(x, sample_rate_hz=sample_rate_hz) if psd is None else psd
    if len(psd) % bands:
        msg = f"bands: expected a divisor of the {len(psd)} PSD bins, got {bands}"
        raise InvalidInputError(msg)
    return (10 * np.log10(np.maximum(psd.reshape(bands, -1).mean(1), 1e-30))).astype(np.float32)


def estimate_frequency_offset_hz(x: np.ndarray, *, kind: str, occupied_hz: float,
                                 sample_rate_hz: float = SAMPLE_RATE_HZ) -> float:
    """Carrier frequency offset of a capture, blind (knowing the waveform's kind, not its data).

    ``"ofdm"``: the cyclic-prefix correlation at the best symbol timing (range ±60 kHz at
    30.72 MS/s). ``"gfsk"``: the centroid of the PSD, noise floor removed, within twice the
    occupied band each side (the balanced payload's mean frequency is the carrier; noise-free
    within 30 Hz, at 30 dB a few hundred Hz). ``"fm"``: the peak of the periodogram,
    refined on the DTFT (a 33 µs capture is a small part of an audio cycle: the estimate
    includes the instantaneous deviation).
    """
    _check_waveform(kind)
    x = np.asarray(x, dtype=complex)
    if kind == "ofdm":
        return _cp_offset(x, sample_rate_hz)
    if kind == "gfsk":
        return _centroid_offset(x, occupied_hz, sample_rate_hz)
    return _tone_offset(x, sample_rate_hz)


def _cp_offset(x: np.ndarray, fs: float) -> float:
    period = OFDM_NFFT + OFDM_CP
    exact = OFDM_CP - OFDM_TAPER  # the prefix samples that are exact copies
    lagged = x[OFDM_NFFT:] * np.conj(x[: len(x) - OFDM_NFFT])
    timing = _fold(np.convolve(lagged, np.ones(exact), mode="valid"), period)
    start = int(np.argmax(np.abs(timing)))
    # the angle from the middle half of the exact part: a timing a few samples off costs nothing
    inner = _fold(np.convolve(lagged, np.ones(exact // 2), mode="valid"), period)
    best = inner[(start + exact // 4) % period]
    return float(np.angle(best) / (2 * np.pi) * fs / OFDM_NFFT)


def _fold(values: np.ndarray, period: int) -> np.ndarray:
    """Sum of ``values`` at the same position in each period."""
    folded = np.zeros(period, dtype=complex)
    for start in range(0, len(values), period):
        part = values[start:start + period]
        folded[: len(part)] += part
    return folded


def _centroid_offset(x: np.ndarray, occupied_hz: float, fs: float) -> float:
    size = 1 << math.ceil(math.log2(len(x)))
    spectrum = np.abs(np.fft.fftshift(np.fft.fft(x, size))) ** 2
    freqs = np.fft.fftshift(np.fft.fftfreq(size, d=1.0 / fs))
    inside = np.abs(freqs) <= 2 * occupied_hz  # four times the occupied band: the Gaussian tails too
    outside = np.abs(freqs) > 2 * occupied_hz + GUARD_BINS * fs / PSD_SEGMENT
    floor = float(np.median(spectrum[outside])) if outside.any() else 0.0
    weight = spectrum[inside] - floor  # noise is flat: removing its mean leaves the signal's centroid
    return float(np.sum(weight * freqs[inside]) / np.sum(weight))


def _tone_offset(x: np.ndarray, fs: float) -> float:
    n = len(x)
    pad = 8 * (1 << math.ceil(math.log2(n)))
    coarse = np.fft.fftfreq(pad, d=1.0 / fs)[int(np.argmax(np.abs(np.fft.fft(x, pad))))]
    t = np.arange(n) / fs

    def power(f: float) -> float:
        return float(np.abs(np.sum(x * np.exp(-2j * np.pi * f * t))) ** 2)

    lo, hi = coarse - fs / pad, coarse + fs / pad
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(40):  # golden-section search of the DTFT peak
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if power(a) > power(b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def tdoa_s(reference: np.ndarray, other: np.ndarray, *, sample_rate_hz: float = SAMPLE_RATE_HZ,
           start_difference_s: float = 0.0, upsample: int = 8) -> tuple[float, float]:
    """Time difference of arrival of ``other`` after ``reference`` by cross-correlation.

    The correlation is computed in the frequency domain, interpolated ``upsample`` times (zero
    padding of the cross spectrum), and its peak refined by a parabola through the three
    largest magnitudes.

    Parameters
    ----------
    reference, other : ndarray [n] complex
    start_difference_s : float
        ``other``'s capture start minus ``reference``'s on the common clock (added to the lag).
    upsample : int

    Returns
    -------
    tdoa_s : float
        Arrival at ``other`` minus arrival at ``reference``, seconds.
    quality : float
        Peak of the normalized correlation magnitude, in [0, 1].
    """
    a = np.asarray(reference, dtype=complex)
    b = np.asarray(other, dtype=complex)
    n = max(len(a), len(b))
    size = 1 << math.ceil(math.log2(2 * n))
    cross = np.fft.fft(b, size) * np.conj(np.fft.fft(a, size))
    big = size * upsample
    padded = np.zeros(big, dtype=complex)
    half = size // 2
    padded[:half] = cross[:half]
    padded[-half:] = cross[-half:]
    corr = np.abs(np.fft.ifft(padded)) * upsample
    k = int(np.argmax(corr))
    y0, y1, y2 = corr[k - 1], corr[k], corr[(k + 1) % big]
    denom = y0 - 2 * y1 + y2
    frac = 0.5 * (y0 - y2) / denom if denom != 0 else 0.0
    lag = (k + frac) / upsample
    if lag > size / 2:
        lag -= size
    norm = math.sqrt(float(np.sum(np.abs(a) ** 2) * np.sum(np.abs(b) ** 2))) or 1.0
    return float(lag / sample_rate_hz + start_difference_s), float(min(y1 / norm, 1.0))


#: Captures cross-correlated at once by :func:`lags_to_strongest` (bounds its memory).
LAG_CHUNK = 64


def lags_to_strongest(codes: np.ndarray, scale: np.ndarray, *, t0_s: np.ndarray | None = None,
                      sample_rate_hz: float = SAMPLE_RATE_HZ, upsample: int = 8
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every capture's time difference of arrival after its sample's strongest capture, vectorized.

    The estimator of :func:`tdoa_s` (cross spectrum of zero-padded FFTs, correlation magnitude
    on a ``1 / upsample`` sample grid, parabola through the peak), evaluated on that grid only
    within one sample of the integer-lag peak (a small DFT instead of an ``upsample``-times
    longer inverse FFT), in single precision: the same lags (within 1e-3 sample) and qualities at
    a fraction of the cost, so that a network's features and ``tdoa_multilateration`` read the
    captures alike.

    Parameters
    ----------
    codes : ndarray [N, S, 2, n]
        ADC codes (I, Q) of each sample's captures.
    scale : ndarray [N, S]
        √mW per code; NaN (or not > 0) where a report has no capture. Only the choice of the
        strongest capture (the reference) depends on it.
    t0_s : ndarray [N, S], optional
        Capture starts on the common clock (added to the lags as in :func:`tdoa_s`).
    sample_rate_hz : float
    upsample : int

    Returns
    -------
    tdoa_s : ndarray [N, S]
        Arrival minus the reference's arrival, seconds (0 at the reference, NaN without a capture).
    quality : ndarray [N, S]
        Peak of the normalized correlation magnitude in [0, 1] (1 at the reference, NaN without).
    reference : ndarray [N] int
        Slot of each sample's strongest capture (-1 where a sample has none).
    """
    codes = np.asarray(codes)
    scale = np.asarray(scale, dtype=np.float64)
    n_samples, slots = scale.shape
    ok = np.isfinite(scale) & (scale > 0)
    tdoa = np.full((n_samples, slots), np.nan)
    quality = np.full((n_samples, slots), np.nan)
    reference = np.full(n_samples, -1, dtype=np.int64)
    for lo in range(0, n_samples, LAG_CHUNK):
        rows = slice(lo, min(lo + LAG_CHUNK, n_samples))
        t, q, r = _lag_chunk(codes[rows], np.where(ok[rows], scale[rows], 0.0), ok[rows], upsample)
        tdoa[rows], quality[rows], reference[rows] = t / sample_rate_hz, q, r
    if t0_s is not None:
        t0 = np.nan_to_num(np.asarray(t0_s, dtype=np.float64))
        ref_t0 = np.take_along_axis(t0, np.maximum(reference, 0)[:, None], 1)
        tdoa = tdoa + (t0 - ref_t0)
    return tdoa, quality, reference


@functools.lru_cache(maxsize=4)
def _lag_grid(size: int, upsample: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bins (as :func:`tdoa_s` keeps them, int64), fine offsets (one sample either side), unit phasors, fine-grid
    DFT."""
    freq = np.fft.fftfreq(size) * size
    offsets = np.arange(-upsample, upsample + 1) / upsample
    turns = np.exp(2j * np.pi * np.arange(size) / size).astype(np.complex64)
    fine = np.exp(2j * np.pi * freq[:, None] * offsets[None] / size).astype(np.complex64)
    return freq.astype(np.int64), offsets, turns, fine


def _lag_chunk(codes: np.ndarray, scale: np.ndarray, ok: np.ndarray, upsample: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`lags_to_strongest` for a few samples: lags in samples, qualities, reference slots.

    Batch-1 inference runs this once per request, so it avoids temporaries: the codes go straight into
    a single-precision spectrum (half the FFT time; the lags stay within 1e-3 sample of :func:`tdoa_s`), in
    code units (the correlation and the energies scale alike, so the quality does not change)."""
    b, s, _, n = codes.shape
    x = np.empty((b, s, n), np.complex64)
    x.real, x.imag = codes[..., 0, :], codes[..., 1, :]
    unscaled = np.square(codes.reshape(b, s, 2 * n), dtype=np.float64).sum(-1)  # [b, s]: code² x samples
    reference = np.where(ok.any(1), np.argmax(np.where(ok, unscaled * scale**2, -1.0), 1), -1)
    ref = np.maximum(reference, 0)
    size = 1 << math.ceil(math.log2(2 * n))
    spectra = scipy.fft.fft(x, size, workers=1)
    cross = spectra * np.conj(spectra[np.arange(b), ref])[:, None]
    coarse = np.argmax(np.abs(scipy.fft.ifft(cross, workers=1)), -1)  # [b, s]: integer lag of the peak (mod size)
    freq, offsets, turns, fine = _lag_grid(size, upsample)
    phase = freq * coarse[..., None]
    phase &= size - 1  # (f x coarse) mod size: size is a power of two
    rotated = turns[phase]
    rotated *= cross  # the peak moved to lag 0
    corr = np.abs(rotated @ fine).astype(np.float64) / size  # [b, s, 2u + 1]: correlation around the peak
    k = np.clip(np.argmax(corr, -1), 1, 2 * upsample - 1)[..., None]
    y0, y1, y2 = (np.take_along_axis(corr, k + d, -1)[..., 0] for d in (-1, 0, 1))
    denom = y0 - 2 * y1 + y2
    frac = np.where(denom != 0, 0.5 * (y0 - y2) / np.where(denom != 0, denom, 1.0), 0.0)
    lag = coarse + offsets[k[..., 0]] + frac / upsample
    lag = np.where(lag > size / 2, lag - size, lag)
    norm = np.sqrt(unscaled * unscaled[np.arange(b), ref][:, None])
    q = np.minimum(y1 / np.where(norm > 0, norm, 1.0), 1.0)
    own = (np.arange(s)[None] == reference[:, None]) & ok
    return (np.where(own, 0.0, np.where(ok, lag, np.nan)), np.where(own, 1.0, np.where(ok, q, np.nan)), reference)
