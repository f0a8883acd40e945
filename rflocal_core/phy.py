"""PHY and MAC measurements of a 5G/LTE network, from the ray-traced channel of every cell.

Plain numpy. :func:`link_channel` turns the paths of one link (complex gains, delays, angles,
as :class:`~rflocal_core.raytrace.PathFeatures` carries them) into what does not depend on the
load or the motion: SSB beam gains, the eigenvalues of a MIMO channel, the direction of arrival
of the strongest path. :func:`phy_reports` then makes the reports of every cell at every step:
RSRP, RSSI, RSRQ, SINR, CQI, rank, best beam, serving cell and neighbours, Doppler.

Conventions (documented here once)
----------------------------------
- OFDM numerology: subcarrier spacing ``scs_khz`` and ``n_rb`` resource blocks of 12
  subcarriers; the measured bandwidth is ``12 · n_rb · scs``.
- Reference signals (the RS-only convention of the RSRQ tests): in an OFDM symbol that carries
  reference signals, :data:`RS_RE_PER_RB` = 2 of the 12 resource elements of a resource block
  carry RS (one antenna port, LTE's CRS every 6th subcarrier); the other 10 carry data with
  probability ``load``. A cell's RSSI share is thus ``N · RSRP · (2 + 10 · load)``, and with one
  cell and no noise RSRQ = N·RSRP/RSSI = 1/(2 + 10·load): −3.0 dB at load 0, −10.8 dB at load 1.
- Transmit power is spread evenly over all resource elements: RSRP = received power −
  10·log10(12·n_rb).
- Reported RSRQ is clamped to NR's SS-RSRQ range [−43, 20] dB and SINR to SS-SINR's [−23, 40] dB
  (TS 38.133), both in 0.5 dB steps; powers in 1 dB steps.
- CQI: TS 38.214 Table 5.2.2.1-2 (4-bit CQI, up to 64QAM); the SINR thresholds (10% BLER, SISO)
  are those of Kawser et al., "Downlink SNR to CQI Mapping for Different Multiple Antenna
  Techniques in LTE", IJIEE 2(5), 2012 (:data:`CQI_SINR_DB`).
- Arrays: uniform linear arrays, half-wavelength spacing, horizontal. A gNB sector's array axis
  is perpendicular to its boresight; its elements have the horizontal pattern of TS 38.901
  Table 7.3-1, −min(12·(φ/65°)², 30) dB at φ off boresight (30 dB front-to-back). The UE
  array lies along x (east), its elements isotropic.
- SSB beams: a DFT codebook of ``beams`` beams per sector on a ``beams``-element array; beam
  ``b`` points at ``sin ψ = (2b + 1 − B)/B`` off boresight (±61° for B = 8), so the beam
  width in ``sin ψ`` is ``2/B``. A sectorized site (a directional pattern and an azimuth) has
  one sector; an omni site (``iso`` pattern) three (azimuths 0°, 120°, 240°). Beam ids count
  ``sector · B + b``.
- Doppler: ``f_D = v · u / λ`` with ``u`` the unit vector from the device towards where the
  strongest path arrives from (positive when moving towards it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from rflocal_core.constants import SPEED_OF_LIGHT_M_S
from rflocal_core.errors import InvalidInputError

#: Subcarrier spacings of NR numerologies μ = 0..3, kHz.
SCS_KHZ: tuple[int, ...] = (15, 30, 60, 120)
#: Subcarriers (resource elements per OFDM symbol) in a resource block.
RE_PER_RB = 12
#: Resource elements of a resource block that carry reference signals in an RS-bearing symbol.
RS_RE_PER_RB = 2
#: Reported RSRQ range, dB: NR SS-RSRQ (TS 38.133; LTE's TS 36.133 range stops at −19.5 dB, where more
#: than half of a dense network's neighbour reports would pile up) and its step.
RSRQ_RANGE_DB = (-43.0, 20.0)
#: Reported SINR range, dB (TS 38.133 SS-SINR) and the step of both.
SINR_RANGE_DB = (-23.0, 40.0)
RATIO_STEP_DB = 0.5
#: Element pattern of a gNB panel (TS 38.901 Table 7.3-1): half-power beam width and front-to-back ratio.
ELEMENT_HPBW_DEG = 65.0
ELEMENT_FRONT_BACK_DB = 30.0
#: Azimuths of the sectors of an omni site, degrees.
OMNI_SECTORS_DEG = (0.0, 120.0, 240.0)

#: TS 38.214 Table 5.2.2.1-2: CQI index -> (modulation, code rate x 1024, spectral efficiency).
CQI_TABLE: dict[int, tuple[str, int, float]] = {
    1: ("QPSK", 78, 0.1523), 2: ("QPSK", 120, 0.2344), 3: ("QPSK", 193, 0.3770), 4: ("QPSK", 308, 0.6016),
    5: ("QPSK", 449, 0.8770), 6: ("QPSK", 602, 1.1758), 7: ("16QAM", 378, 1.4766), 8: ("16QAM", 490, 1.9141),
    9: ("16QAM", 616, 2.4063), 10: ("64QAM", 466, 2.7305), 11: ("64QAM", 567, 3.3223),
    12: ("64QAM", 666, 3.9023), 13: ("64QAM", 772, 4.5234), 14: ("64QAM", 873, 5.1152),
    15: ("64QAM", 948, 5.5547),
}
#: Least SINR (dB) for CQI 1..15 at 10% BLER (Kawser et al. 2012, SISO); below the first: CQI 0.
CQI_SINR_DB: tuple[float, ...] = (-6.7, -4.7, -2.3, 0.2, 2.4, 4.3, 5.9, 8.1, 10.3, 11.7, 14.1, 16.3, 18.7, 21.0,
                                  22.7)


@dataclass(frozen=True)
class Numerology:
    """OFDM numerology of the measured band.

    Parameters
    ----------
    scs_khz : int
        Subcarrier spacing, one of :data:`SCS_KHZ`.
    n_rb : int
        Resource blocks measured (the N of RSRQ), 1..275.
    """

    scs_khz: int = 30
    n_rb: int = 51

    def __post_init__(self) -> None:
        if self.scs_khz not in SCS_KHZ:
            msg = f"phy_scs_khz: expected one of {', '.join(map(str, SCS_KHZ))} kHz, got {self.scs_khz!r}"
            raise InvalidInputError(msg)
        if not isinstance(self.n_rb, (int, np.integer)) or not 1 <= self.n_rb <= 275:
            msg = f"phy_n_rb: expected an integer in [1, 275], got {self.n_rb!r}"
            raise InvalidInputError(msg)

    @property
    def bandwidth_hz(self) -> float:
        """Measured bandwidth, 12 · n_rb · scs."""
        return float(RE_PER_RB * self.n_rb * self.scs_khz * 1e3)

    @property
    def n_re(self) -> int:
        """Resource elements per OFDM symbol over the band."""
        return RE_PER_RB * self.n_rb

    def noise_per_re_dbm(self, noise_figure_db: float) -> float:
        """Thermal noise in one resource element: −174 dBm/Hz + 10·log10(scs) + NF."""
        return float(-174.0 + 10.0 * np.log10(self.scs_khz * 1e3) + noise_figure_db)


def _lin(db: np.ndarray) -> np.ndarray:
    """dB to linear; NaN and −inf give 0 (a cell that is not heard adds nothing)."""
    db = np.asarray(db, dtype=np.float64)
    return np.where(np.isfinite(db), 10.0 ** (np.where(np.isfinite(db), db, 0.0) / 10.0), 0.0)


def _db(lin: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lin > 0, 10.0 * np.log10(np.maximum(lin, 1e-300)), np.nan)


def re_activity(load: np.ndarray) -> np.ndarray:
    """Mean share of a cell's resource elements that carry power in an RS-bearing symbol: (2 + 10·load)/12."""
    load = np.asarray(load, dtype=np.float64)
    return (RS_RE_PER_RB + (RE_PER_RB - RS_RE_PER_RB) * load) / RE_PER_RB


def rsrp_dbm(rx_power_dbm: np.ndarray, numerology: Numerology) -> np.ndarray:
    """RSRP: the received power of one resource element, the cell's power spread over all of them."""
    return np.asarray(rx_power_dbm, dtype=np.float64) - 10.0 * np.log10(numerology.n_re)


def rssi_dbm(rsrp: np.ndarray, load: np.ndarray, *, noise_per_re_dbm: float, n_rb: int) -> np.ndarray:
    """RSSI over the band in an RS-bearing symbol: every cell (axis −1) with its load, plus noise.

    Parameters
    ----------
    rsrp : ndarray [..., S]
        RSRP of every cell, dBm (NaN: not heard).
    load : ndarray broadcastable to ``rsrp``
        Share of data resource elements in use, 0..1.
    noise_per_re_dbm : float
        Noise per resource element (``-inf`` for none).
    n_rb : int
    """
    cells = (_lin(rsrp) * RE_PER_RB * re_activity(load)).sum(-1)
    return _db(n_rb * (cells + RE_PER_RB * _lin(noise_per_re_dbm)))


def rsrq_db(rsrp: np.ndarray, rssi: np.ndarray, *, n_rb: int) -> np.ndarray:
    """RSRQ = N · RSRP / RSSI in dB (``rssi`` broadcast over the cells)."""
    return 10.0 * np.log10(n_rb) + np.asarray(rsrp, dtype=np.float64) - np.asarray(rssi, dtype=np.float64)


def sinr_db(rsrp: np.ndarray, load: np.ndarray, *, noise_per_re_dbm: float) -> np.ndarray:
    """SINR of every cell (axis −1): the others interfere with their mean RE activity, plus noise.

    The wanted signal is the cell's full resource-element power (its data is scheduled to the
    device); a neighbour at load 0 still interferes with its reference signals.
    """
    own = _lin(rsrp)
    weighted = own * re_activity(load)
    interference = weighted.sum(-1, keepdims=True) - weighted + _lin(noise_per_re_dbm)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(own > 0, 10.0 * np.log10(np.maximum(own, 1e-300) / interference), np.nan)


def band_levels(rsrp: np.ndarray, load: np.ndarray, freqs: np.ndarray, *, noise_per_re_dbm: float,
                n_rb: int) -> tuple[np.ndarray, np.ndarray]:
    """RSSI of each cell's band and SINR of each cell [..., S], only cells of the same carrier counting.

    ``freqs`` [S] is each cell's carrier; with one carrier this is :func:`rssi_dbm` (broadcast over the
    cells) and :func:`sinr_db` themselves.
    """
    rsrp = np.asarray(rsrp, dtype=np.float64)
    rssi_cell = np.full(rsrp.shape, np.nan)
    sinr = np.full(rsrp.shape, np.nan)
    for freq in np.unique(freqs):
        on = freqs == freq
        band = rsrp if on.all() else np.where(on, rsrp, np.nan)
        rssi_cell[..., on] = rssi_dbm(band, load, noise_per_re_dbm=noise_per_re_dbm, n_rb=n_rb)[..., None]
        sinr[..., on] = sinr_db(band, load, noise_per_re_dbm=noise_per_re_dbm)[..., on]
    return rssi_cell, sinr


def sinr_map_db(path_gain_db: np.ndarray, tx_power_dbm: np.ndarray, load: np.ndarray, *, numerology: Numerology,
                noise_figure_db: float, freq_hz: np.ndarray | None = None) -> np.ndarray:
    """SINR map of every cell [S, ny, nx] from its path-gain map, as :func:`sinr_db` makes a report's SINR.

    Each map cell is a device there: the cell's RSRP from its transmit power and path gain
    (no shadowing), the others interfering with their load, plus the noise of one resource
    element. A cell without a ray (``-inf``) neither serves nor interferes there (NaN).

    Parameters
    ----------
    path_gain_db : ndarray [S, ny, nx]
        Path gain of each cell (site), dB; ``-inf`` or NaN where no ray arrived.
    tx_power_dbm : ndarray [S]
    load : ndarray [S]
        Share of data resource elements in use per cell, 0..1.
    numerology : Numerology
    noise_figure_db : float
    freq_hz : ndarray [S], optional
        Carrier of each cell: only cells of the same band interfere (default: all on one band).
    """
    rx = np.asarray(path_gain_db, dtype=np.float64) + np.asarray(tx_power_dbm, dtype=np.float64)[:, None, None]
    rsrp = rsrp_dbm(np.moveaxis(rx, 0, -1), numerology)  # [ny, nx, S]: cells on the last axis, as in reports
    noise_re = numerology.noise_per_re_dbm(noise_figure_db)
    if freq_hz is None or len(np.unique(freq_hz)) == 1:
        sinr = sinr_db(rsrp, np.asarray(load, dtype=np.float64), noise_per_re_dbm=noise_re)
    else:
        _, sinr = band_levels(rsrp, np.asarray(load, dtype=np.float64), np.asarray(freq_hz, dtype=np.float64),
                              noise_per_re_dbm=noise_re, n_rb=numerology.n_rb)
    return np.moveaxis(sinr, -1, 0).astype(np.float32)


def cqi_from_sinr(sinr: np.ndarray) -> np.ndarray:
    """CQI 0..15 of TS 38.214 Table 5.2.2.1-2 from SINR (dB) by :data:`CQI_SINR_DB`; −1 where SINR is NaN."""
    sinr = np.asarray(sinr, dtype=np.float64)
    cqi = np.searchsorted(np.asarray(CQI_SINR_DB), np.where(np.isfinite(sinr), sinr, -np.inf), side="right")
    return np.where(np.isfinite(sinr), cqi, -1).astype(np.int8)


def rank_indicator(eig: np.ndarray, sinr: np.ndarray, *, gnb_antennas: int) -> np.ndarray:
    """Rank 1..len(eig) that maximizes the sum of per-layer log2(1 + SINR·λ_i / (r·M)); −1 where undefined.

    Parameters
    ----------
    eig : ndarray [..., R]
        Eigenvalues of the wideband channel covariance H·Hᴴ, descending, normalized so that one
        path gives λ₁ = UE antennas × gNB antennas (see :func:`link_channel`).
    sinr : ndarray [...]
        SINR (dB) of one gNB antenna at full power.
    gnb_antennas : int
        M: the power is split over M antennas and r layers.
    """
    eig = np.asarray(eig, dtype=np.float64)
    snr = _lin(sinr)[..., None]
    ranks = np.arange(1, eig.shape[-1] + 1)
    per_layer = np.log2(1.0 + snr[..., None, :] * np.nan_to_num(eig)[..., None, :] / (ranks[:, None] * gnb_antennas))
    used = np.arange(eig.shape[-1])[None, :] < ranks[:, None]
    capacity = np.where(used, per_layer, 0.0).sum(-1)
    ri = np.argmax(capacity, axis=-1) + 1
    ok = np.isfinite(np.asarray(sinr, dtype=np.float64)) & np.isfinite(eig[..., 0]) & (eig[..., 0] > 0)
    return np.where(ok, ri, -1).astype(np.int8)


def direction(theta_rad: np.ndarray, phi_rad: np.ndarray) -> np.ndarray:
    """Unit vectors [..., 3] (x east, y north, z up) of zenith angles ``theta`` and azimuths ``phi`` (from +x)."""
    st = np.sin(theta_rad)
    return np.stack([st * np.cos(phi_rad), st * np.sin(phi_rad), np.cos(theta_rad)], axis=-1)


def sector_frame(azimuth_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Boresight and array-axis unit vectors of a sector whose boresight has compass ``azimuth_deg``."""
    az = np.radians(azimuth_deg)
    boresight = np.array([np.sin(az), np.cos(az), 0.0])
    axis = np.array([np.cos(az), -np.sin(az), 0.0])  # boresight turned 90° clockwise
    return boresight, axis


def element_gain(u: np.ndarray, boresight: np.ndarray) -> np.ndarray:
    """Power gain (linear, 1 on boresight) of a panel element towards directions ``u`` [..., 3], horizontal pattern."""
    horizontal = u[..., :2]
    cos_off = (horizontal @ boresight[:2]) / np.maximum(np.linalg.norm(horizontal, axis=-1), 1e-12)
    off_deg = np.degrees(np.arccos(np.clip(cos_off, -1.0, 1.0)))
    return 10.0 ** (-np.minimum(12.0 * (off_deg / ELEMENT_HPBW_DEG) ** 2, ELEMENT_FRONT_BACK_DB) / 10.0)


def ula_response(u: np.ndarray, axis: np.ndarray, n: int) -> np.ndarray:
    """Response [..., n] of an n-element half-wavelength ULA along ``axis`` to directions ``u`` [..., 3]."""
    return np.exp(1j * np.pi * np.arange(n) * (u @ axis)[..., None])


def array_factor(offset: np.ndarray, n: int) -> np.ndarray:
    """|Σₖ exp(jπ·k·offset)|² over k < n: the power of an n-element half-wavelength ULA steered
    ``offset`` (in sin ψ) away from a direction, sin²(nπx/2) / sin²(πx/2), n² at x = 0."""
    half = np.pi * np.asarray(offset, dtype=np.float64) / 2
    den = np.sin(half) ** 2
    tiny = den < 1e-12
    return np.where(tiny, float(n * n), np.sin(n * half) ** 2 / np.where(tiny, 1.0, den))


def beam_directions(beams: int) -> np.ndarray:
    """``sin ψ`` off boresight of the DFT codebook's beams: (2b + 1 − B)/B."""
    return (2.0 * np.arange(beams) + 1.0 - beams) / beams


def beam_bearing_deg(beam: int, *, beams: int, sector_azimuth_deg: float) -> float:
    """Compass bearing of the horizontal direction in which beam ``beam`` of a sector points."""
    return float(np.mod(sector_azimuth_deg + np.degrees(np.arcsin(beam_directions(beams)[beam])), 360.0))


def site_sectors(site: dict) -> list[float]:
    """Sector azimuths of a site record: its own azimuth if it has one, else three sectors (omni)."""
    az = site.get("azimuth_deg")
    if az is not None and site.get("pattern", "iso") != "iso":
        return [float(az)]
    return list(OMNI_SECTORS_DEG)


@dataclass(frozen=True)
class ArraySetup:
    """Antenna arrays of the links: SSB beams per sector, MIMO antennas at both ends.

    Parameters
    ----------
    beams : int
        SSB beams (and array elements) per gNB sector, a DFT codebook.
    gnb_antennas, ue_antennas : int
        MIMO antennas of the gNB sector and the device (rank ≤ min of both).
    subcarriers : int
        Subcarriers over the band at which the MIMO channel is averaged (wideband rank).
    """

    beams: int = 8
    gnb_antennas: int = 4
    ue_antennas: int = 2
    subcarriers: int = 12


@dataclass
class LinkChannel:
    """What a link's paths give, independent of load and motion (arrays over [rx, tx]).

    Attributes
    ----------
    beam_gain : ndarray [rx, tx, sectors·beams]
        Power gain (linear, over one isotropic element) of every SSB beam, element pattern
        included; NaN for sectors a site lacks or links without a path.
    eig : ndarray [rx, tx, min(ue, gnb antennas)]
        Eigenvalues (descending) of the wideband covariance of the MIMO channel of the best
        sector, normalized by the link's path power (one path on boresight: λ₁ = ue·gnb antennas;
        off boresight times the element gain).
    arrival_dir : ndarray [rx, tx, 3]
        Unit vector from the device towards where the strongest path arrives from.
    """

    beam_gain: np.ndarray
    eig: np.ndarray
    arrival_dir: np.ndarray


def _beam_gains(power: np.ndarray, u_t: np.ndarray, sectors: list[float], beams: int) -> tuple[np.ndarray, np.ndarray]:
    """Beam gains [rx, len(sectors)·beams] of one site's links and each path's element gain [rx, sectors, p]."""
    codebook = beam_directions(beams)
    total = power.sum(-1)
    gains, fronts = [], []
    for az in sectors:
        boresight, axis = sector_frame(az)
        front = element_gain(u_t, boresight)
        offset = (u_t @ axis)[..., None] - codebook  # [rx, p, B]
        factor = array_factor(offset, beams) / beams
        with np.errstate(invalid="ignore", divide="ignore"):
            gains.append((power[..., None] * factor * front[..., None]).sum(-2) / total[:, None])
        fronts.append(front)
    return np.concatenate(gains, -1), np.stack(fronts, 1)


def _mimo_eig(a: np.ndarray, tau: np.ndarray, u_t: np.ndarray, u_r: np.ndarray, front: np.ndarray,
              axis: np.ndarray, setup: ArraySetup, bandwidth_hz: float) -> np.ndarray:
    """Eigenvalues [rx, R] of the wideband covariance of one site's MIMO channel (the sector ``axis`` per rx).

    ``front`` [rx, p] is each path's element power gain in that sector.
    """
    offsets = (np.arange(setup.subcarriers) + 0.5) / setup.subcarriers * bandwidth_hz - bandwidth_hz / 2
    coef = a[:, None, :] * np.exp(-2j * np.pi * offsets[None, :, None] * tau[:, None, :]) * np.sqrt(front)[:, None, :]
    b_r = ula_response(u_r, np.array([1.0, 0.0, 0.0]), setup.ue_antennas)  # [rx, p, ue]
    phase_t = np.einsum("rpc,rc->rp", u_t, axis)
    b_t = np.exp(1j * np.pi * np.arange(setup.gnb_antennas) * phase_t[..., None])  # [rx, p, gnb]
    h = np.swapaxes(coef[..., None] * b_r[:, None], -1, -2) @ np.conj(b_t)[:, None]  # [rx, k, ue, gnb]
    cov = (h @ np.conj(np.swapaxes(h, -1, -2))).mean(1)
    total = (np.abs(a) ** 2).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        eig = np.linalg.eigvalsh(cov)[..., ::-1] / total[:, None]
    rank_max = min(setup.ue_antennas, setup.gnb_antennas)
    return np.maximum(eig[..., :rank_max], 0.0)


def link_channel(a: np.ndarray, tau: np.ndarray, valid: np.ndarray, u_t: np.ndarray, u_r: np.ndarray, *,
                 sectors: list[list[float]], setup: ArraySetup, bandwidth_hz: float) -> LinkChannel:
    """Beam gains, MIMO eigenvalues and arrival direction of every link from its paths.

    Parameters
    ----------
    a : ndarray [rx, tx, p] complex
        Path coefficients (carrier phase included, the delay phase not: Sionna's ``a``).
    tau : ndarray [rx, tx, p]
        Path delays, s.
    valid : ndarray [rx, tx, p] bool
    u_t, u_r : ndarray [rx, tx, p, 3]
        Unit vectors of departure at the site and of arrival at the device (towards the source).
    sectors : list of list of float
        Sector azimuths of every site (:func:`site_sectors`).
    setup : ArraySetup
    bandwidth_hz : float
        Band over which the MIMO covariance is averaged.
    """
    num_rx, num_tx = a.shape[:2]
    width = max(len(s) for s in sectors) * setup.beams
    beam_gain = np.full((num_rx, num_tx, width), np.nan)
    rank_max = min(setup.ue_antennas, setup.gnb_antennas)
    eig = np.full((num_rx, num_tx, rank_max), np.nan)
    a = np.where(valid, a, 0.0)
    tau = np.where(valid, tau, 0.0)  # an invalid path's delay and angles may be NaN: they must weigh nothing
    u_t = np.where(valid[..., None], np.nan_to_num(u_t), 0.0)
    u_r = np.where(valid[..., None], np.nan_to_num(u_r), 0.0)
    power = np.abs(a) ** 2
    has = valid.any(-1) & (power.sum(-1) > 0)
    for t, site_sectors_deg in enumerate(sectors):
        # the path axis is padded to the busiest link: each link's valid paths first, the rest cut
        order = np.argsort(~valid[:, t], axis=-1, kind="stable")[:, : max(int(valid[:, t].sum(-1).max()), 1)]

        def take(v: np.ndarray, t: int = t, order: np.ndarray = order) -> np.ndarray:
            idx = order.reshape(*order.shape, *([1] * (v.ndim - 3)))
            return np.take_along_axis(v[:, t], idx, 1)

        at, taut, utt, urt, pw = take(a), take(tau), take(u_t), take(u_r), take(power)
        gains, front = _beam_gains(pw, utt, site_sectors_deg, setup.beams)
        beam_gain[:, t, : gains.shape[-1]] = gains
        best = np.argmax(np.nan_to_num(gains, nan=-1.0), -1) // setup.beams  # sector of the best beam
        axes = np.stack([sector_frame(az)[1] for az in site_sectors_deg])[best]
        eig[:, t] = _mimo_eig(at, taut, utt, urt, np.take_along_axis(front, best[:, None, None], 1)[:, 0], axes,
                              setup, bandwidth_hz)
    strongest = np.argmax(power, -1)
    arrival = np.take_along_axis(u_r, strongest[..., None, None], 2)[:, :, 0]
    beam_gain[~has] = np.nan
    eig[~has] = np.nan
    arrival[~has] = np.nan
    return LinkChannel(beam_gain, eig, arrival)


def doppler_hz(velocity_m_s: np.ndarray, arrival_dir: np.ndarray, *, freq_hz: float | np.ndarray) -> np.ndarray:
    """Doppler shift of the strongest path, ``v · u / λ`` (positive when moving towards the source)."""
    return (np.asarray(velocity_m_s) * np.asarray(arrival_dir)).sum(-1) * freq_hz / SPEED_OF_LIGHT_M_S


def quantize(values: np.ndarray, step: float, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """``values`` rounded to multiples of ``step`` (clipped to ``bounds`` first); NaN stays NaN."""
    values = np.asarray(values, dtype=np.float64)
    if bounds is not None:
        values = np.clip(values, *bounds)
    return np.round(values / step) * step


@dataclass
class PhyReports:
    """PHY/MAC report fields [n, T, S] (NaN, or −1 for integers, where a report is missing).

    Attributes
    ----------
    rsrp_dbm, rsrq_db, sinr_db : float32
        1 dB / 0.5 dB steps (see the module's conventions).
    rssi_dbm : float32 [n, T]
        The device's RSSI over the band (NaN at steps without a report).
    cqi, ri : int8
        CQI 0..15 (TS 38.214 Table 5.2.2.1-2), rank indicator 1..R.
    beam_id : int16
        Best SSB beam (``sector · beams + b``).
    beam_rsrp_dbm : float32
        L1-RSRP of the best beam.
    beam_top_ids, beam_top_rsrp_dbm : [n, T, S, M]
        The M best beams and their L1-RSRP.
    doppler_hz : float32
        Doppler shift of the strongest path, 1 Hz steps.
    serving : int8
        1 for the serving cell (the strongest at the first report; then changed by A3/A5 handovers), 0 for
        the others.
    neighbour_rank : int8
        0 serving, 1..K the K strongest neighbours, −1 otherwise.
    event_a3, event_a5 : int8
        1 where an A3 / A5 event fires for this cell (:func:`serving_along`), 0 otherwise.
    """

    rsrp_dbm: np.ndarray
    rssi_dbm: np.ndarray
    rsrq_db: np.ndarray
    sinr_db: np.ndarray
    cqi: np.ndarray
    ri: np.ndarray
    beam_id: np.ndarray
    beam_rsrp_dbm: np.ndarray
    beam_top_ids: np.ndarray
    beam_top_rsrp_dbm: np.ndarray
    doppler_hz: np.ndarray
    serving: np.ndarray
    neighbour_rank: np.ndarray
    event_a3: np.ndarray
    event_a5: np.ndarray


def _beam_reports(rsrp: np.ndarray, beam_gain: np.ndarray, top: int) -> tuple[np.ndarray, ...]:
    """Best beam id and L1-RSRP, and the ``top`` best ids and L1-RSRPs, from RSRP and beam gains [..., W]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        beam_rsrp = rsrp[..., None] + 10.0 * np.log10(beam_gain)
    ranked = np.where(np.isfinite(beam_rsrp), beam_rsrp, -np.inf)
    order = np.argsort(-ranked, axis=-1, kind="stable")[..., :top]
    top_rsrp = np.take_along_axis(ranked, order, -1)
    ok = np.isfinite(top_rsrp)
    top_ids = np.where(ok, order, -1)
    top_rsrp = np.where(ok, top_rsrp, np.nan)
    return top_ids[..., 0], top_rsrp[..., 0], top_ids, top_rsrp


#: Measurement events (TS 38.331): A3 a neighbour offset better than the serving cell; A5 the serving
#: cell below the first RSRP threshold and a neighbour above the second; both after a time to trigger
#: counted in consecutive reports. A fired event hands the device over to that neighbour.
A3_OFFSET_DB = 3.0
A5_THRESHOLDS_DBM = (-110.0, -105.0)
TIME_TO_TRIGGER_REPORTS = 2


#: The measured PHY quantities feature dropout removes (:func:`drop_fields`); the integer reports stay.
DROPOUT_FIELDS = ("rsrq_db", "sinr_db", "beam_rsrp_dbm", "doppler_hz")


def drop_fields(reports: PhyReports, rate: float, rng: np.random.Generator) -> PhyReports:
    """``reports`` with each of :data:`DROPOUT_FIELDS` of each report missing (NaN) with probability ``rate``.

    Feature dropout as for RSS, ToA and AoA (``GenerationConfig.dropout``): one draw per field and report,
    field by field in :data:`DROPOUT_FIELDS` order. CQI, rank, beam id, the serving cell, the neighbour rank and
    the events are kept (a report that carries them carries them whole).
    """
    if rate <= 0:
        return reports
    dropped = {}
    for key in DROPOUT_FIELDS:
        value = getattr(reports, key)
        dropped[key] = np.where(rng.random(value.shape) >= rate, value, np.nan).astype(value.dtype)
    return replace(reports, **dropped)


def serving_along(rsrp: np.ndarray, steps: np.ndarray, *, offset_db: float = A3_OFFSET_DB,
                  thresholds_dbm: tuple[float, float] = A5_THRESHOLDS_DBM,
                  time_to_trigger: int = TIME_TO_TRIGGER_REPORTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The serving cell along each sequence, with A3/A5 events and the handovers they trigger.

    The first report is served by the strongest cell (and so is a report whose serving cell is
    no longer heard); afterwards the serving cell changes only when an A3 or A5 event fires for
    a neighbour, to the strongest neighbour that fired.

    Parameters
    ----------
    rsrp : ndarray [n, T, S]
        RSRP of every cell (NaN: not heard).
    steps : ndarray [n, T] bool
        Steps with a report (the others keep the state).

    Returns
    -------
    serving : ndarray [n, T] int
        Serving cell index (−1 where none is heard).
    a3, a5 : ndarray [n, T, S] bool
        Where an event fires (once, when its condition has held for ``time_to_trigger`` reports).
    """
    n, steps_max, cells = rsrp.shape
    level = np.where(np.isfinite(rsrp), rsrp, -np.inf)
    serving = np.full((n, steps_max), -1, dtype=np.int64)
    a3 = np.zeros(rsrp.shape, dtype=bool)
    a5 = np.zeros(rsrp.shape, dtype=bool)
    current = np.full(n, -1, dtype=np.int64)
    count3 = np.zeros((n, cells), dtype=np.int64)
    count5 = np.zeros((n, cells), dtype=np.int64)
    rows = np.arange(n)
    for t in range(steps_max):
        now, live = level[:, t], steps[:, t] & np.isfinite(level[:, t]).any(-1)
        lost = live & ((current < 0) | ~np.isfinite(now[rows, np.maximum(current, 0)]))
        current = np.where(lost, np.argmax(now, -1), current)
        own = now[rows, np.maximum(current, 0)][:, None]
        other = np.isfinite(now) & (np.arange(cells)[None] != current[:, None]) & ~lost[:, None] & live[:, None]
        count3 = np.where(other & (now > own + offset_db), count3 + 1, np.where(live[:, None], 0, count3))
        count5 = np.where(other & (own < thresholds_dbm[0]) & (now > thresholds_dbm[1]), count5 + 1,
                          np.where(live[:, None], 0, count5))
        a3[:, t], a5[:, t] = count3 == time_to_trigger, count5 == time_to_trigger
        fired = a3[:, t] | a5[:, t]
        handover = fired.any(-1)
        current = np.where(handover, np.argmax(np.where(fired, now, -np.inf), -1), current)
        count3[handover], count5[handover] = 0, 0
        serving[:, t] = np.where(live, current, -1)
    return serving, a3, a5


def _cell_ranks(rsrp: np.ndarray, serving: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Serving flag and neighbour rank (0 serving, 1..K the strongest others) over the cells (axis −1)."""
    cells = rsrp.shape[-1]
    is_serving = (np.arange(cells) == serving[..., None]) & (serving[..., None] >= 0)
    ranked = np.where(is_serving, np.inf, np.where(np.isfinite(rsrp), rsrp, -np.inf))
    order = np.argsort(-ranked, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(cells), axis=-1)
    heard = np.isfinite(rsrp)
    neighbour_rank = np.where(heard & (rank <= neighbours), rank, -1)
    return np.where(heard, is_serving, False), neighbour_rank


#: Reporting periods (the design: L1 faster than RRC). L1 quantities (beam reports, CQI, rank, SINR, Doppler)
#: are fresh at every report; the RRC measurement report (RSRP, RSRQ, neighbour list) is refreshed at every
#: ``rrc_period``-th report of a sequence (the 1st, the (k+1)-th, ...) and its values are held in between.
RRC_FIELDS: tuple[str, ...] = ("rsrp_dbm", "rsrq_db", "neighbour_rank")
L1_FIELDS: tuple[str, ...] = ("beam_id", "beam_rsrp_dbm", "beam_top_ids", "beam_top_rsrp_dbm", "cqi", "ri", "sinr_db")
#: Default RRC period, in reports (with 0.1-0.5 s between reports: an RRC report every 0.4-2 s).
RRC_PERIOD_REPORTS = 4


def rrc_source_steps(steps: np.ndarray, period: int) -> np.ndarray:
    """[n, T] index of the step whose RRC report holds at each step (−1 before the first report).

    ``steps`` [n, T] bool: steps with a report. The RRC report is made at reports 0, k, 2k, ... of each
    sequence (k = ``period``), counted over the steps with a report.
    """
    t_max = steps.shape[1]
    count = np.cumsum(steps, axis=1) - 1  # report index of each step (valid where steps)
    refresh = steps & (count % max(int(period), 1) == 0)
    idx = np.where(refresh, np.arange(t_max)[None, :], -1)
    return np.maximum.accumulate(idx, axis=1)


def hold_rrc(reports: PhyReports, present: np.ndarray, *, period: int) -> PhyReports:
    """``reports`` with the :data:`RRC_FIELDS` refreshed every ``period``-th report and held in between.

    A cell reported now carries the values of the last RRC report (missing if that report lacked the
    cell); a cell not reported now stays missing. The serving cell, events and L1 fields are untouched.
    """
    if period <= 1:
        return reports
    src = rrc_source_steps(present.any(-1), period)
    take = np.maximum(src, 0)[..., None]
    out = {}
    for key in RRC_FIELDS:
        value = getattr(reports, key)
        fill = -1 if value.dtype.kind in "iu" else np.nan
        held = np.take_along_axis(value, np.broadcast_to(take, value.shape), axis=1)
        out[key] = np.where(present & (src >= 0)[..., None], held, fill).astype(value.dtype)
    return replace(reports, **out)


def phy_reports(*, rx_power_dbm: np.ndarray, load: np.ndarray, channel: LinkChannel, velocity_m_s: np.ndarray,
                present: np.ndarray, numerology: Numerology, noise_figure_db: float, setup: ArraySetup,
                freq_hz: float | np.ndarray, neighbours: int = 8, top_beams: int = 4,
                rrc_period: int = RRC_PERIOD_REPORTS) -> PhyReports:
    """PHY/MAC reports of every cell at every step.

    Parameters
    ----------
    rx_power_dbm : ndarray [n, T, S]
        Received power of every cell (transmit power + path gain + shadowing), NaN where not heard;
        every heard cell counts in RSSI and interference, reported or not.
    load : ndarray [n, S] or [n, T, S]
        Load of every cell, 0..1.
    channel : LinkChannel
        Arrays [n, T, S, ...] (see :func:`link_channel`).
    velocity_m_s : ndarray [n, T, 3]
    present : ndarray [n, T, S] bool
        Where a report is made; every field is masked elsewhere.
    freq_hz : float or ndarray [S]
        Carrier of every cell (Doppler); cells on different carriers neither add to each other's RSSI
        nor interfere (a multi-band scene's co-sited cells).
    rrc_period : int
        RRC fields refreshed every this many reports and held in between (:func:`hold_rrc`; 1: every report).
    """
    load = load[:, None, :] if load.ndim == 2 else load
    noise_re = numerology.noise_per_re_dbm(noise_figure_db)
    rsrp = rsrp_dbm(rx_power_dbm, numerology)
    freqs = np.broadcast_to(np.asarray(freq_hz, dtype=np.float64), rsrp.shape[-1:])
    rssi_cell, sinr = band_levels(rsrp, load, freqs, noise_per_re_dbm=noise_re, n_rb=numerology.n_rb)
    rsrq = rsrq_db(rsrp, rssi_cell, n_rb=numerology.n_rb)
    cqi = cqi_from_sinr(sinr)
    ri = rank_indicator(channel.eig, sinr, gnb_antennas=setup.gnb_antennas)
    beam_id, beam_rsrp, top_ids, top_rsrp = _beam_reports(rsrp, channel.beam_gain, top_beams)
    doppler = doppler_hz(velocity_m_s[:, :, None, :], channel.arrival_dir, freq_hz=freqs)
    serving_cell, a3, a5 = serving_along(rsrp, present.any(-1))
    # the device's RSSI: over the serving cell's band (one band: the only one)
    rssi = np.take_along_axis(rssi_cell, np.maximum(serving_cell, 0)[..., None], -1)[..., 0]
    serving, neighbour_rank = _cell_ranks(rsrp, serving_cell, neighbours)

    def num(x: np.ndarray, step: float, bounds: tuple[float, float] | None = None) -> np.ndarray:
        return np.where(present, quantize(x, step, bounds), np.nan).astype(np.float32)

    def whole(x: np.ndarray, dtype: type) -> np.ndarray:
        return np.where(present, x, -1).astype(dtype)

    some = present.any(-1)
    fresh = PhyReports(
        rsrp_dbm=num(rsrp, 1.0), rssi_dbm=np.where(some, quantize(rssi, 1.0), np.nan).astype(np.float32),
        rsrq_db=num(rsrq, RATIO_STEP_DB, RSRQ_RANGE_DB), sinr_db=num(sinr, RATIO_STEP_DB, SINR_RANGE_DB),
        cqi=whole(cqi, np.int8), ri=whole(ri, np.int8), beam_id=whole(beam_id, np.int16),
        beam_rsrp_dbm=num(beam_rsrp, 1.0),
        beam_top_ids=np.where(present[..., None], top_ids, -1).astype(np.int16),
        beam_top_rsrp_dbm=np.where(present[..., None], quantize(top_rsrp, 1.0), np.nan).astype(np.float32),
        doppler_hz=num(doppler, 1.0), serving=whole(serving, np.int8), neighbour_rank=whole(neighbour_rank, np.int8),
        event_a3=whole(a3, np.int8), event_a5=whole(a5, np.int8),
    )
    return hold_rrc(fresh, present, period=rrc_period)
