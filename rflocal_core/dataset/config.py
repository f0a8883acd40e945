"""Configuration of a generated dataset (frozen, validated on construction)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError
from rflocal_core.options import check_options, option, seed_option
from rflocal_core.phy import RRC_PERIOD_REPORTS, Numerology
from rflocal_core.workspace import validate_name

MOTIONS = ("stationary", "pedestrian", "vehicular")
#: IQ burst waveforms and ADC formats (the same as :mod:`rflocal_core.iq`, which checks them too).
IQ_WAVEFORMS = ("ofdm", "gfsk", "fm")
IQ_ADCS = ("int16", "int8")
SURVEYS = ("fixed", "drone")
SAMPLINGS = ("uniform", "coverage")
#: Options of drone surveys only (checked when ``survey == "drone"``).
DRONE_OPTIONS = ("drone_altitude_m", "drone_spacing_m", "drone_points", "drone_map_samples_per_tx")

#: Speeds of the motion models, m/s.
MOTION_SPEED_M_S = {"stationary": 0.0, "pedestrian": 1.0, "vehicular": 10.0}


@dataclass(frozen=True)
class GenerationConfig:
    """Everything that defines a generated dataset; the same config gives the same data.

    Parameters
    ----------
    name : str
        Dataset folder name under ``workspace/datasets``.
    scenes : tuple of str
        Scenes to sample from (each keeps its own sites and radio maps).
    samples_per_scene : int
        Number of samples (targets) drawn per scene.
    mode : str or None
        ``"ue"`` or ``"emitter"``; None takes each scene's own mode.
    seed : int
    cell_size_m, plane_height_m : float
        Radio-map grid and the height of the measurement plane (the target's height).
    map_samples_per_tx, map_max_depth : int
        ``RadioMapSolver`` rays per site and interaction depth.
    map_diffraction : bool
        Diffraction in the radio maps. Without it, street canyons out of sight of a
        rooftop site get no signal at all (measured on the default city: 4.6% of
        outdoor cells covered by 3 sites without, 40% with).
    sensitivity_dbm : float
        Reports below this are missing; a position is "covered" by a site above it.
    min_sites : int
        A target position needs coverage from at least this many sites.
    min_distance_m, max_distance_m : float or None
        Optional bounds on the distance from the target to its nearest site.
    sampling : str
        ``"uniform"`` over covered outdoor cells, or ``"coverage"`` (weighted by the
        number of covering sites).
    shadowing_sigma_db, shadowing_corr_m : float
        Log-normal shadow fading, spatially correlated (Gudmundson, exponential).
    rss_noise_db : float
        Per-report measurement noise (dB, 1 sigma, independent per report and step): the
        residual of fast fading after averaging plus receiver error. Shadowing is static
        (the same at a place every time); this is what changes between two visits.
    rss_quantization_db : float
        Report resolution (0 for none).
    timing : bool
        Trace exact paths (``PathSolver``) for time of arrival, angle, LoS, delay spread.
    paths_samples_per_src, paths_max_depth : int
    paths_diffraction : bool
        ``PathSolver`` settings for timing and angles.
    toa_noise_ns, nlos_bias_mean_ns : float
        Gaussian ToA noise, and the mean of the exponential NLoS bias.
    aoa_noise_deg : float
        Gaussian angle noise before 1-degree binning.
    bandwidth_hz, noise_figure_db : float
        Receiver noise floor for SNR: -174 dBm/Hz + 10 log10(B) + NF.
    top_k : int
        Keep only the K strongest sites per report (0 keeps all).
    dropout : float
        Probability that a feature of a report is missing at random.
    sequence_length : tuple of int
        (min, max) reports per sample over time; (1, 1) for snapshots.
    interval_s : tuple of float
        (min, max) time between consecutive reports.
    motion : str
        ``"stationary"``, ``"pedestrian"`` (1 m/s) or ``"vehicular"`` (10 m/s).
    emitter_power_dbm : tuple of float
        (min, max) of the unknown transmit power in ``emitter`` mode, drawn per sample.
    iq : bool
        ``emitter`` mode: synthesize each report's IQ capture (:mod:`rflocal_core.iq`) from the
        exact paths and estimate SNR, band power, PSD and frequency offset from it.
    iq_waveform, iq_bandwidth_hz, iq_sample_rate_hz, iq_adc : str, float, float, str
        The emitter's burst, and the receivers' sample rate and ADC format.
    iq_lo_ppm, iq_lo_drift_ppm_s : float
        Spread of each receiver's fixed oscillator offset and of its drift.
    iq_jitter_ns : float
        Spread of each receiver's capture-start error against GPS time.
    survey : str
        ``"fixed"``: the scene's sites measure. ``"drone"`` (``emitter`` mode): a drone
        measures at ``drone_points`` waypoints along a flight line at ``drone_altitude_m``,
        each report carrying its own position. Waypoints lie on a grid of
        ``drone_spacing_m``; their radio maps (reciprocity: the waypoint as transmitter)
        use ``drone_map_samples_per_tx`` rays each.
    drone_altitude_m, drone_spacing_m : float
    drone_points : int
    drone_map_samples_per_tx : int
    timing_maps : bool
        Also ToA and AoA maps per site next to the path-gain maps (:mod:`rflocal_core.dataset.timing_maps`):
        ``PathSolver`` with the exact-path settings on a grid ``timing_map_factor`` times coarser, interpolated.
    timing_map_factor : int
        Coarsening of the ToA/AoA grid per axis (``factor``² fewer traced positions than map cells).
    phy : bool
        PHY/MAC reports in ``ue`` mode with timing (:mod:`rflocal_core.phy`): RSRP, RSSI, RSRQ,
        SINR, CQI, rank, SSB beams, serving cell and neighbours, Doppler.
    phy_scs_khz, phy_n_rb : int
        OFDM numerology of the measured band (bandwidth 12 · n_rb · scs).
    phy_load : tuple of float
        (min, max) load of every cell, drawn per sample and cell.
    phy_beams, phy_gnb_antennas, phy_ue_antennas : int
        SSB beams per sector and the MIMO array sizes.
    phy_neighbours, phy_top_beams : int
        Neighbour-list length K and the number of beams whose L1-RSRP is stored.
    phy_rrc_period : int
        Reporting periods in sequences: L1 quantities (beams, CQI, rank, SINR) are fresh at every
        report, RRC ones (RSRP, RSRQ, neighbour list) every ``phy_rrc_period``-th report and held in
        between (:func:`rflocal_core.phy.hold_rrc`; 1: every report).
    split : tuple of float
        Train / val / test fractions of the samples of the seen scenes.
    unseen_scenes : tuple of str
        Scenes held out entirely as the ``test_unseen`` split.
    """

    name: str
    scenes: tuple[str, ...]
    samples_per_scene: int = option(2000, lo=1, hi=1_000_000, label="Samples per scene", flag="samples",
                                    help="samples per scene")
    # mode is checked by hand: its message names None
    mode: str | None = option(None, choices=("ue", "emitter"), check=False, label="Mode", none_means="the scene's",
                              help="who transmits: ue (sites) or emitter (the target)")
    seed: int = seed_option(0, help="seed of positions, fading and noise")
    cell_size_m: float = option(2.0, lo=0.5, hi=20.0, unit="m", label="Cell size (m)", help="radio-map cell")
    plane_height_m: float = option(1.5, lo=0.1, hi=300.0, unit="m", label="Plane height (m)",
                                   help="height of the measurement plane (the target's height)")
    map_samples_per_tx: int = option(10_000_000, lo=1000, hi=10**9, step=1_000_000, label="Rays per site",
                                     flag="map-samples", help="rays per site for radio maps")
    map_max_depth: int = option(3, lo=0, hi=10, label="Map interaction depth", help="radio-map interaction depth")
    map_diffraction: bool = option(True, label="Diffraction", flag="no-diffraction",
                                   help="diffraction in maps and paths (without it, shadowed streets get no signal)")
    sensitivity_dbm: float = option(-120.0, lo=-200.0, hi=0.0, unit="dBm", label="Sensitivity (dBm)",
                                    help="reports below this are missing")
    min_sites: int = option(3, lo=1, hi=64, label="Min. covering sites",
                            help="a target position needs coverage from at least this many sites")
    min_distance_m: float | None = option(None, lo=0.0, hi=1e5, unit="m", none_means="no bound",
                                          label="Min. distance to the nearest site (m)",
                                          help="least distance from the target to its nearest site")
    max_distance_m: float | None = option(None, lo=0.0, hi=1e5, unit="m", none_means="no bound",
                                          label="Max. distance to the nearest site (m)",
                                          help="largest distance from the target to its nearest site")
    sampling: str = option("uniform", choices=SAMPLINGS, label="Position sampling",
                           help="uniform over covered cells, or weighted by coverage")
    shadowing_sigma_db: float = option(6.0, lo=0.0, hi=30.0, unit="dB", label="Shadowing σ (dB)", flag="sigma-db",
                                       help="shadow fading sigma")
    shadowing_corr_m: float = option(20.0, lo=0.1, hi=1000.0, unit="m", label="Correlation distance (m)",
                                     flag="corr-m", help="shadow fading correlation distance")
    rss_quantization_db: float = option(1.0, lo=0.0, hi=10.0, unit="dB", label="RSS resolution (dB)",
                                        help="report resolution (0 for none)")
    rss_noise_db: float = option(2.0, lo=0.0, hi=20.0, unit="dB", label="RSS measurement noise σ (dB)",
                                 help="per-report measurement noise sigma, on top of the static shadowing")
    timing: bool = option(True, label="Timing and angles (PathSolver)",
                          help="exact paths for time of arrival and angles (without: RSS only)")
    paths_samples_per_src: int = option(30_000, lo=1000, hi=10**8, label="Rays per site (paths)",
                                        flag="paths-samples", help="rays per site for exact paths")
    paths_max_depth: int = option(3, lo=0, hi=10, label="Path interaction depth", help="exact-path interaction depth")
    # follows map_diffraction on the command line and the page
    paths_diffraction: bool = option(True, flag=None, label="Diffraction (paths)", help="diffraction in exact paths")
    toa_noise_ns: float = option(10.0, lo=0.0, hi=1e4, unit="ns", label="ToA noise σ (ns)",
                                 help="Gaussian time-of-arrival noise")
    nlos_bias_mean_ns: float = option(50.0, lo=0.0, hi=1e4, unit="ns", label="NLoS bias mean (ns)",
                                      flag="nlos-bias-ns", help="mean of the exponential NLoS bias")
    aoa_noise_deg: float = option(5.0, lo=0.0, hi=180.0, unit="degrees", label="AoA noise σ (°)",
                                  help="Gaussian angle noise before 1-degree binning")
    bandwidth_hz: float = option(20e6, lo=1e3, hi=1e10, unit="Hz", label="Bandwidth (Hz)",
                                 help="receiver bandwidth (noise floor for SNR)")
    noise_figure_db: float = option(7.0, lo=0.0, hi=30.0, unit="dB", label="Noise figure (dB)",
                                    help="receiver noise figure (noise floor for SNR)")
    top_k: int = option(8, lo=0, hi=64, label="Top-K sites (0 = all)", help="keep the K strongest sites per report")
    dropout: float = option(0.0, lo=0.0, hi=0.9, label="Feature dropout",
                            help="probability that a feature of a report is missing at random")
    sequence_length: tuple[int, int] = option((1, 1), lo=1, hi=100, label="Reports per sample", flag="sequence",
                                              help="reports per sample over time")
    interval_s: tuple[float, float] = option((0.1, 0.5), lo=0.001, hi=60.0, unit="s", label="Report interval (s)",
                                             help="time between consecutive reports")
    motion: str = option("stationary", choices=MOTIONS, label="Motion", help="motion model of the target")
    emitter_power_dbm: tuple[float, float] = option((10.0, 30.0), lo=-50.0, hi=80.0, unit="dBm",
                                                    label="Emitter power (dBm)",
                                                    help="unknown transmit power in emitter mode, drawn per sample")
    iq: bool = option(False, label="IQ captures (emitter mode)",
                      help="also synthesize each report's IQ capture from the exact paths, and features estimated "
                           "from it (emitter mode, fixed sensors, timing on)")
    iq_waveform: str = option("ofdm", choices=IQ_WAVEFORMS, label="IQ waveform",
                              help="the emitter's burst: ofdm, gfsk or narrowband fm")
    iq_bandwidth_hz: float = option(18e6, lo=1e3, hi=1e9, unit="Hz", label="IQ signal bandwidth (Hz)",
                                    help="occupied bandwidth of the emitter's burst (below the IQ sample rate)")
    iq_sample_rate_hz: float = option(30.72e6, lo=1e6, hi=1e9, unit="Hz", label="IQ sample rate (Hz)",
                                      help="receiver sample rate: 30.72 MS/s is 9.76 m of propagation per sample")
    iq_adc: str = option("int16", choices=IQ_ADCS, label="IQ ADC", help="ADC sample format of the stored captures")
    iq_lo_ppm: float = option(0.5, lo=0.0, hi=100.0, unit="ppm", label="LO offset σ (ppm)",
                              help="spread of each receiver's fixed local-oscillator offset")
    iq_lo_drift_ppm_s: float = option(0.01, lo=0.0, hi=10.0, unit="ppm/s", label="LO drift σ (ppm/s)",
                                      help="spread of each receiver's oscillator drift")
    iq_jitter_ns: float = option(10.0, lo=0.0, hi=1e4, unit="ns", label="Capture timing jitter σ (ns)",
                                 help="error of each receiver's capture start against GPS time")
    survey: str = option("fixed", choices=SURVEYS, label="Sensors",
                         help="fixed: the scene's sites measure; drone (emitter mode): points along a flight line")
    drone_altitude_m: float = option(40.0, lo=2.0, hi=500.0, unit="m", label="Drone altitude (m)",
                                     help="flight altitude of a drone survey")
    drone_spacing_m: float = option(64.0, lo=4.0, hi=500.0, unit="m", label="Waypoint spacing (m)",
                                    help="waypoint grid spacing")
    drone_points: int = option(16, lo=1, hi=256, label="Points per sample", help="measurement points per sample")
    drone_map_samples_per_tx: int = option(2_000_000, lo=1000, hi=10**9, label="Rays per waypoint",
                                           flag="drone-map-samples", help="rays per waypoint")
    timing_maps: bool = option(False, label="ToA/AoA maps",
                               help="ToA and AoA maps per site from exact paths on a coarser grid, interpolated "
                                    "(costs a PathSolver run over that grid)")
    timing_map_factor: int = option(4, lo=1, hi=32, label="ToA/AoA map coarsening",
                                    help="ToA/AoA maps traced every N radio-map cells per axis")
    phy: bool = option(True, label="PHY/MAC reports",
                       help="RSRQ, SINR, CQI, rank, SSB beams, serving cell, Doppler from the paths (ue mode, "
                            "with timing)")
    phy_scs_khz: int = option(30, lo=15, hi=120, unit="kHz", label="Subcarrier spacing (kHz)",
                              help="OFDM subcarrier spacing: 15, 30, 60 or 120 kHz")
    phy_n_rb: int = option(51, lo=1, hi=275, label="Resource blocks", help="resource blocks measured (N of RSRQ)")
    phy_load: tuple[float, float] = option((0.2, 0.8), lo=0.0, hi=1.0, label="Cell load",
                                           help="share of data resource elements in use, drawn per sample and cell")
    phy_beams: int = option(8, lo=1, hi=64, label="SSB beams per sector", help="DFT beams of each gNB sector")
    phy_gnb_antennas: int = option(4, lo=1, hi=64, label="gNB MIMO antennas", help="MIMO antennas of a gNB sector")
    phy_ue_antennas: int = option(2, lo=1, hi=8, label="UE MIMO antennas", help="MIMO antennas of the device")
    phy_neighbours: int = option(8, lo=0, hi=64, label="Neighbour list (K)",
                                 help="neighbours ranked by RSRP after the serving cell")
    phy_top_beams: int = option(4, lo=1, hi=16, label="Beams reported", help="L1-RSRP of the best beams stored")
    phy_rrc_period: int = option(RRC_PERIOD_REPORTS, lo=1, hi=1000, label="RRC period (reports)",
                                 help="RSRP/RSRQ/neighbours refreshed every k-th report of a sequence and held in "
                                      "between; L1 beams/CQI/rank every report")
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    unseen_scenes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_name(self.name, field="name")
        if not self.scenes:
            msg = "scenes: expected at least one scene name, got none"
            raise InvalidInputError(msg)
        for s in self.scenes:
            validate_name(s, field="scenes")
        for s in self.unseen_scenes:
            if s not in self.scenes:
                msg = f"unseen_scenes: {s!r} is not one of the dataset's scenes {list(self.scenes)}"
                raise InvalidInputError(msg)
        if len(set(self.unseen_scenes)) >= len(set(self.scenes)):
            msg = "unseen_scenes: at least one scene must remain for train/val/test"
            raise InvalidInputError(msg)
        if self.mode is not None and self.mode not in ("ue", "emitter"):
            msg = f"mode: expected 'ue', 'emitter' or None (the scene's mode), got {self.mode!r}"
            raise InvalidInputError(msg)
        # the drone options apply to drone surveys only
        check_options(self, skip=DRONE_OPTIONS)
        if self.min_distance_m is not None and self.max_distance_m is not None and self.min_distance_m >= self.max_distance_m:
            msg = f"min_distance_m: {self.min_distance_m} must be below max_distance_m {self.max_distance_m}"
            raise InvalidInputError(msg)
        if self.survey == "drone":
            if self.mode != "emitter":
                msg = f"survey: a drone survey locates an emitter; expected mode 'emitter', got {self.mode!r}"
                raise InvalidInputError(msg)
            if self.sequence_length != (1, 1):
                msg = f"sequence_length: a drone survey is one pass per sample; expected (1, 1), got {self.sequence_length!r}"
                raise InvalidInputError(msg)
            check_options(self, only=DRONE_OPTIONS)
        if self.timing_maps and self.survey == "drone":
            msg = "timing_maps: ToA/AoA maps are made for the scene's fixed sites; expected survey 'fixed', got 'drone'"
            raise InvalidInputError(msg)
        if self.phy:
            Numerology(scs_khz=self.phy_scs_khz, n_rb=self.phy_n_rb)  # 15/30/60/120 kHz only
        self._check_iq()
        if len(self.split) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            msg = f"split: expected three fractions (train, val, test) >= 0 summing to 1, got {self.split!r}"
            raise InvalidInputError(msg)

    def _check_iq(self) -> None:
        """IQ captures need an emitter, fixed sensors, exact paths and a band below the sample rate."""
        if not self.iq:
            return
        if self.mode == "ue" or self.survey == "drone" or not self.timing:
            msg = (f"iq: IQ captures need mode 'emitter', survey 'fixed' and timing on; got mode {self.mode!r}, "
                   f"survey {self.survey!r}, timing {self.timing}")
            raise InvalidInputError(msg)
        if self.iq_bandwidth_hz >= self.iq_sample_rate_hz:
            msg = (f"iq_bandwidth_hz: expected a bandwidth below the IQ sample rate {self.iq_sample_rate_hz:g} Hz, "
                   f"got {self.iq_bandwidth_hz:g}")
            raise InvalidInputError(msg)

    @property
    def requested_samples(self) -> int:
        """Samples the job asks for: samples per scene x scenes."""
        return self.samples_per_scene * len(self.scenes)

    def check_size(self) -> None:
        """Refuse a job that asks for more samples than :func:`~rflocal_core.settings.max_dataset_samples`.

        Checked when a generation starts (not on construction: a stored configuration stays readable
        after the cap is lowered).

        Raises
        ------
        InvalidInputError
            The message names the request and the cap.
        """
        cap = settings.max_dataset_samples()
        if self.requested_samples > cap:
            msg = (f"samples_per_scene: {self.samples_per_scene:,} samples per scene x {len(self.scenes)} scene(s) = "
                   f"{self.requested_samples:,} samples, more than the {cap:,} samples one job may request (the cap "
                   f"{settings.MAX_DATASET_SAMPLES_ENV}={cap}); ask for fewer samples per scene or fewer scenes")
            raise InvalidInputError(msg)

    @property
    def max_steps(self) -> int:
        return self.sequence_length[1]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def digest(self) -> str:
        """Hash of everything that determines the data (the name excluded)."""
        data = self.to_dict()
        data.pop("name")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        tuples = ("scenes", "sequence_length", "interval_s", "emitter_power_dbm", "split", "unseen_scenes", "phy_load")
        return cls(**{k: (tuple(v) if k in tuples else v) for k, v in data.items()})
