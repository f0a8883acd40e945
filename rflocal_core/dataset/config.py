"""Configuration of a generated dataset (frozen, validated on construction)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from rflocal_core.errors import InvalidInputError
from rflocal_core.validation import check_int, check_number
from rflocal_core.workspace import validate_name

MOTIONS = ("stationary", "pedestrian", "vehicular")
SURVEYS = ("fixed", "drone")
SAMPLINGS = ("uniform", "coverage")

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
    survey : str
        ``"fixed"``: the scene's sites measure. ``"drone"`` (``emitter`` mode): a drone
        measures at ``drone_points`` waypoints along a flight line at ``drone_altitude_m``,
        each report carrying its own position. Waypoints lie on a grid of
        ``drone_spacing_m``; their radio maps (reciprocity: the waypoint as transmitter)
        use ``drone_map_samples_per_tx`` rays each.
    drone_altitude_m, drone_spacing_m : float
    drone_points : int
    drone_map_samples_per_tx : int
    split : tuple of float
        Train / val / test fractions of the samples of the seen scenes.
    unseen_scenes : tuple of str
        Scenes held out entirely as the ``test_unseen`` split.
    """

    name: str
    scenes: tuple[str, ...]
    samples_per_scene: int = 2000
    mode: str | None = None
    seed: int = 0
    cell_size_m: float = 2.0
    plane_height_m: float = 1.5
    map_samples_per_tx: int = 10_000_000
    map_max_depth: int = 3
    map_diffraction: bool = True
    sensitivity_dbm: float = -120.0
    min_sites: int = 3
    min_distance_m: float | None = None
    max_distance_m: float | None = None
    sampling: str = "uniform"
    shadowing_sigma_db: float = 6.0
    shadowing_corr_m: float = 20.0
    rss_quantization_db: float = 1.0
    rss_noise_db: float = 2.0
    timing: bool = True
    paths_samples_per_src: int = 30_000
    paths_max_depth: int = 3
    paths_diffraction: bool = True
    toa_noise_ns: float = 10.0
    nlos_bias_mean_ns: float = 50.0
    aoa_noise_deg: float = 5.0
    bandwidth_hz: float = 20e6
    noise_figure_db: float = 7.0
    top_k: int = 8
    dropout: float = 0.0
    sequence_length: tuple[int, int] = (1, 1)
    interval_s: tuple[float, float] = (0.1, 0.5)
    motion: str = "stationary"
    emitter_power_dbm: tuple[float, float] = (10.0, 30.0)
    survey: str = "fixed"
    drone_altitude_m: float = 40.0
    drone_spacing_m: float = 64.0
    drone_points: int = 16
    drone_map_samples_per_tx: int = 2_000_000
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
        check_int("samples_per_scene", self.samples_per_scene, 1, 1_000_000)
        if self.mode is not None and self.mode not in ("ue", "emitter"):
            msg = f"mode: expected 'ue', 'emitter' or None (the scene's mode), got {self.mode!r}"
            raise InvalidInputError(msg)
        check_int("seed", self.seed, 0, 2**31 - 1)
        check_number("cell_size_m", self.cell_size_m, 0.5, 20.0, "m")
        check_number("plane_height_m", self.plane_height_m, 0.1, 300.0, "m")
        check_int("map_samples_per_tx", self.map_samples_per_tx, 1000, 10**9)
        check_int("map_max_depth", self.map_max_depth, 0, 10)
        check_number("sensitivity_dbm", self.sensitivity_dbm, -200.0, 0.0, "dBm")
        check_int("min_sites", self.min_sites, 1, 64)
        for field in ("min_distance_m", "max_distance_m"):
            if getattr(self, field) is not None:
                check_number(field, getattr(self, field), 0.0, 1e5, "m")
        if self.min_distance_m is not None and self.max_distance_m is not None and self.min_distance_m >= self.max_distance_m:
            msg = f"min_distance_m: {self.min_distance_m} must be below max_distance_m {self.max_distance_m}"
            raise InvalidInputError(msg)
        if self.sampling not in SAMPLINGS:
            msg = f"sampling: expected one of {', '.join(SAMPLINGS)}, got {self.sampling!r}"
            raise InvalidInputError(msg)
        check_number("shadowing_sigma_db", self.shadowing_sigma_db, 0.0, 30.0, "dB")
        check_number("shadowing_corr_m", self.shadowing_corr_m, 0.1, 1000.0, "m")
        check_number("rss_quantization_db", self.rss_quantization_db, 0.0, 10.0, "dB")
        check_number("rss_noise_db", self.rss_noise_db, 0.0, 20.0, "dB")
        check_int("paths_samples_per_src", self.paths_samples_per_src, 1000, 10**8)
        check_int("paths_max_depth", self.paths_max_depth, 0, 10)
        check_number("toa_noise_ns", self.toa_noise_ns, 0.0, 1e4, "ns")
        check_number("nlos_bias_mean_ns", self.nlos_bias_mean_ns, 0.0, 1e4, "ns")
        check_number("aoa_noise_deg", self.aoa_noise_deg, 0.0, 180.0, "degrees")
        check_number("bandwidth_hz", self.bandwidth_hz, 1e3, 1e10, "Hz")
        check_number("noise_figure_db", self.noise_figure_db, 0.0, 30.0, "dB")
        check_int("top_k", self.top_k, 0, 64)
        check_number("dropout", self.dropout, 0.0, 0.9)
        lo, hi = self.sequence_length
        check_int("sequence_length[0]", lo, 1, 100)
        check_int("sequence_length[1]", hi, lo, 100)
        check_number("interval_s[0]", self.interval_s[0], 0.001, 60.0, "s")
        check_number("interval_s[1]", self.interval_s[1], self.interval_s[0], 60.0, "s")
        if self.motion not in MOTIONS:
            msg = f"motion: expected one of {', '.join(MOTIONS)}, got {self.motion!r}"
            raise InvalidInputError(msg)
        check_number("emitter_power_dbm[0]", self.emitter_power_dbm[0], -50.0, 80.0, "dBm")
        check_number("emitter_power_dbm[1]", self.emitter_power_dbm[1], self.emitter_power_dbm[0], 80.0, "dBm")
        if self.survey not in SURVEYS:
            msg = f"survey: expected one of {', '.join(SURVEYS)}, got {self.survey!r}"
            raise InvalidInputError(msg)
        if self.survey == "drone":
            if self.mode != "emitter":
                msg = f"survey: a drone survey locates an emitter; expected mode 'emitter', got {self.mode!r}"
                raise InvalidInputError(msg)
            if self.sequence_length != (1, 1):
                msg = f"sequence_length: a drone survey is one pass per sample; expected (1, 1), got {self.sequence_length!r}"
                raise InvalidInputError(msg)
            check_number("drone_altitude_m", self.drone_altitude_m, 2.0, 500.0, "m")
            check_number("drone_spacing_m", self.drone_spacing_m, 4.0, 500.0, "m")
            check_int("drone_points", self.drone_points, 1, 256)
            check_int("drone_map_samples_per_tx", self.drone_map_samples_per_tx, 1000, 10**9)
        if len(self.split) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            msg = f"split: expected three fractions (train, val, test) >= 0 summing to 1, got {self.split!r}"
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
        tuples = ("scenes", "sequence_length", "interval_s", "emitter_power_dbm", "split", "unseen_scenes")
        return cls(**{k: (tuple(v) if k in tuples else v) for k, v in data.items()})
