"""The measurement exchange format ``rflocal-measurements/1``: data model, validation, reading, writing.

One file holds one or many *samples*. A sample is what a localizer turns into one position
estimate: a list of *reports*, each the measurements (RSS, time of arrival, timing advance,
angle of arrival, SNR) of one known *node* (a base station, gateway or receiver) or of a
mobile sensor that carries its own position. The ``mode`` says who transmits:

``"ue"``
    the known nodes transmit and the device that measures them is located;
``"emitter"``
    the known nodes receive and an unknown transmitter is located.

Example::

    {"format": "rflocal-measurements/1", "mode": "ue", "scene": "demo",
     "nodes": [{"id": "site-0", "lat": 48.1371, "lon": 11.5754, "alt_m": 25.0, "tx_power_dbm": 43.0}],
     "samples": [{"id": "s-1",
                  "reports": [{"node": "site-0", "t_s": 0.0, "rss_dbm": -87.0, "toa_ns": 812.5}],
                  "truth": {"lat": 48.1375, "lon": 11.5761}}]}

A simpler *survey* format used by some teams is read as well (emitter mode, one sample per
source, every report a mobile-sensor report)::

    {"<source_id>": {"features": {"x": [lat, ...], "y": [lon, ...], "rssi": [dBm, ...]},
                     "targets": {"source_x": lat, "source_y": lon}}}

Every error is a :class:`MeasurementFormatError` naming the offending field by its JSON path,
what was expected and what was found, e.g.
``samples[3].reports[0].rss_dbm: expected a number in [-200, 30], got "abc"``. A document with
several problems raises one error that lists them all (the first of each node and sample, up to
:data:`MAX_LISTED_PROBLEMS`; its ``problems`` attribute holds them one by one), e.g.
``2 problems: mode: expected "ue" ... got nothing; samples: expected a non-empty list of samples, got "oops"``.
The user documentation is ``docs/measurement-format.md``. Field ranges and meanings are
defined once, in :data:`FIELDS`: the checks here and the published JSON Schema
(``docs/rflocal-measurements-1.schema.json``, written by :mod:`rflocal_core.measurements.schema`)
both come from it.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from rflocal_core.errors import InvalidInputError, MeasurementFormatError, join_path
from rflocal_core.workspace import atomic_write_text

if TYPE_CHECKING:
    from rflocal_core.geo import LocalFrame

#: The format identifier written in (and required of) every file.
FORMAT_ID = "rflocal-measurements/1"

#: Localization settings: known nodes transmit (``ue``) or receive (``emitter``).
MODES: tuple[str, ...] = ("ue", "emitter")

#: Largest measurement file accepted by :func:`load_measurements`, in bytes.
MAX_MEASUREMENT_FILE_BYTES: int = 20 * 1024 * 1024

#: Most problems one error lists when a document has several; the others are counted ("and 5 more").
MAX_LISTED_PROBLEMS: int = 20

#: Accepted values of ``on_error``.
ON_ERROR: tuple[str, ...] = ("raise", "collect")

#: Accepted values of ``on_fault``.
ON_FAULT: tuple[str, ...] = ("raise", "drop")

#: Measurement fields whose out-of-range numbers are real-world faults (``on_fault="drop"``
#: leaves the report out) rather than malformed input: receivers write -999 dBm for "not
#: received", loggers write a ToA of -1 or a huge counter value.
FAULT_FIELDS: tuple[str, ...] = ("rss_dbm", "toa_ns")

#: Measurement fields of a report; a report carries at least one of them.
MEASUREMENT_FIELDS: tuple[str, ...] = ("rss_dbm", "toa_ns", "ta", "aoa_deg", "snr_db")

#: Optional PHY/MAC fields of a report (a 5G/LTE network's own reports, :mod:`rflocal_core.phy`);
#: they come with at least one of :data:`MEASUREMENT_FIELDS`.
PHY_FIELDS: tuple[str, ...] = ("rsrq_db", "sinr_db", "cqi", "ri", "beam_id", "beam_rsrp_dbm", "doppler_hz",
                               "serving", "neighbour_rank", "event_a3", "event_a5")

# Accepted ranges (inclusive); ``None`` means unbounded on that side.
LAT_RANGE_DEG = (-90.0, 90.0)
LON_RANGE_DEG = (-180.0, 180.0)
#: Scene metres: a local frame never spans more than this from its origin.
XY_RANGE_M = (-1e7, 1e7)
ALT_RANGE_M = (-1000.0, 1e5)
TX_POWER_RANGE_DBM = (-100.0, 100.0)
#: A node's carrier frequency, Hz (100 MHz to 100 GHz: what RFLocal's scenes trace).
CARRIER_RANGE_HZ = (1e8, 1e11)
RSS_RANGE_DBM = (-200.0, 30.0)
TOA_RANGE_NS = (0.0, 1e7)
#: Timing-advance index, in units of 16 Ts (LTE / NR).
TA_RANGE = (0, 65535)
AOA_RANGE_DEG = (0.0, 360.0)
SNR_RANGE_DB = (-50.0, 100.0)
T_RANGE_S = (0.0, None)
#: NR SS-RSRQ and SS-SINR reporting ranges (TS 38.133), dB.
RSRQ_RANGE_DB = (-43.0, 20.0)
SINR_RANGE_DB = (-23.0, 40.0)
CQI_RANGE = (0, 15)
RI_RANGE = (1, 8)
BEAM_ID_RANGE = (0, 4095)
DOPPLER_RANGE_HZ = (-1e5, 1e5)
SERVING_RANGE = (0, 1)
#: Place of a cell in the device's measurement report: 0 serving, 1..K the K strongest neighbours.
NEIGHBOUR_RANK_RANGE = (0, 255)
EVENT_RANGE = (0, 1)
IQ_SAMPLE_RATE_RANGE_HZ = (1.0, 1e11)
IQ_T0_RANGE_S = (None, None)
#: Samples of an IQ capture (``i`` and ``q`` each).
IQ_SAMPLES_RANGE = (1, 65536)


@dataclass(frozen=True)
class FieldSpec:
    """One value of the format: its JSON type, accepted range (inclusive) and meaning.

    :data:`FIELDS` holds one per field name; the reader's checks take their ranges from it
    and :func:`rflocal_core.measurements.schema.measurement_schema` writes it as JSON Schema.
    """

    #: ``"number"`` (finite, not a boolean) or ``"integer"`` (``3.0`` counts as 3).
    kind: Literal["number", "integer"]
    #: Lower and upper bound; ``None`` means unbounded on that side.
    bounds: tuple[float | None, float | None]
    #: What the value means, with its unit.
    description: str


#: Every number field of nodes, reports and truths, by name: the one definition of its range.
FIELDS: dict[str, FieldSpec] = {
    "lat": FieldSpec("number", LAT_RANGE_DEG, "WGS84 latitude, degrees."),
    "lon": FieldSpec("number", LON_RANGE_DEG, "WGS84 longitude, degrees."),
    "x_m": FieldSpec("number", XY_RANGE_M, "Scene metres east of the scene's origin (its centre)."),
    "y_m": FieldSpec("number", XY_RANGE_M, "Scene metres north of the scene's origin (its centre)."),
    "alt_m": FieldSpec("number", ALT_RANGE_M, "Height, metres."),
    "tx_power_dbm": FieldSpec("number", TX_POWER_RANGE_DBM, "Transmit power of the node (ue mode), dBm."),
    "carrier_hz": FieldSpec("number", CARRIER_RANGE_HZ, "Carrier frequency of the node's cell, Hz: co-sited "
                                                        "cells on several bands are nodes of their own."),
    "t_s": FieldSpec("number", T_RANGE_S, "Time of the report, seconds (default 0); reports of a node at "
                                          "different times form a sequence."),
    "rss_dbm": FieldSpec("number", RSS_RANGE_DBM, "Received signal strength, dBm."),
    "toa_ns": FieldSpec("number", TOA_RANGE_NS, "Time of arrival, nanoseconds."),
    "ta": FieldSpec("integer", TA_RANGE, "Timing-advance index, in units of 16 Ts (LTE / NR)."),
    "aoa_deg": FieldSpec("number", AOA_RANGE_DEG, "Angle of arrival: compass bearing, degrees clockwise from north, "
                                                  "of the direction from the node to the target as seen at the node."),
    "snr_db": FieldSpec("number", SNR_RANGE_DB, "Signal-to-noise ratio, dB."),
    "rsrq_db": FieldSpec("number", RSRQ_RANGE_DB, "Reference signal received quality N·RSRP/RSSI of the node's "
                                                  "cell, dB."),
    "sinr_db": FieldSpec("number", SINR_RANGE_DB, "Signal-to-interference-plus-noise ratio of the node's cell, dB."),
    "cqi": FieldSpec("integer", CQI_RANGE, "Channel quality indicator (TS 38.214 Table 5.2.2.1-2), 0-15."),
    "ri": FieldSpec("integer", RI_RANGE, "Rank indicator: MIMO layers the device asks for, 1-8."),
    "beam_id": FieldSpec("integer", BEAM_ID_RANGE, "Best SSB beam of the node's cell (its index)."),
    "beam_rsrp_dbm": FieldSpec("number", RSS_RANGE_DBM, "L1-RSRP of the best SSB beam, dBm."),
    "doppler_hz": FieldSpec("number", DOPPLER_RANGE_HZ, "Doppler shift of the strongest path, Hz (positive: "
                                                        "moving towards it)."),
    "serving": FieldSpec("integer", SERVING_RANGE, "1 if the node's cell serves the device, 0 for a neighbour."),
    "neighbour_rank": FieldSpec("integer", NEIGHBOUR_RANK_RANGE, "Place of the node's cell in the measurement "
                                                                 "report: 0 serving, 1..K the strongest neighbours."),
    "event_a3": FieldSpec("integer", EVENT_RANGE, "1 if an A3 event (neighbour offset better than the serving "
                                                  "cell, TS 38.331) fired for the node's cell at this report."),
    "event_a5": FieldSpec("integer", EVENT_RANGE, "1 if an A5 event (serving below and neighbour above their "
                                                  "thresholds, TS 38.331) fired for the node's cell at this report."),
    "sample_rate_hz": FieldSpec("number", IQ_SAMPLE_RATE_RANGE_HZ, "IQ capture: sample rate, Hz."),
    "t0_s": FieldSpec("number", IQ_T0_RANGE_S, "IQ capture: time of its first sample on the receivers' common "
                                               "clock (e.g. GPS), seconds."),
}

#: Survey columns and targets: the field of :data:`FIELDS` whose range they take, and what they hold.
SURVEY_FIELDS: dict[str, tuple[str, str]] = {
    "x": ("lat", "latitude"), "y": ("lon", "longitude"), "rssi": ("rss_dbm", "dBm"),
    "source_x": ("lat", "latitude"), "source_y": ("lon", "longitude"),
}

#: Top-level keys that make an object an ``rflocal-measurements/1`` document (else it is read as a survey).
DOCUMENT_KEYS: tuple[str, ...] = ("format", "mode", "nodes", "samples")

_MEASUREMENT_RANGES: dict[str, tuple[float | None, float | None]] = {
    name: FIELDS[name].bounds for name in MEASUREMENT_FIELDS if FIELDS[name].kind == "number"
}

# Allowed keys, in the order they are written.
TOP_KEYS: tuple[str, ...] = ("format", "mode", "scene", "notes", "nodes", "samples")
NODE_KEYS: tuple[str, ...] = ("id", "lat", "lon", "x_m", "y_m", "alt_m", "tx_power_dbm", "carrier_hz", "position")
SAMPLE_KEYS: tuple[str, ...] = ("id", "reports", "truth", "sequence")
POSITION_KEYS: tuple[str, ...] = ("lat", "lon", "x_m", "y_m", "alt_m")
#: A position field and the one it must come with.
POSITION_PAIRS: tuple[tuple[str, str], ...] = (("lat", "lon"), ("lon", "lat"), ("x_m", "y_m"), ("y_m", "x_m"))
REPORT_KEYS: tuple[str, ...] = ("node", "t_s", *MEASUREMENT_FIELDS, *POSITION_KEYS, "iq", *PHY_FIELDS)
#: Keys of a report's optional IQ capture, in the order written.
IQ_KEYS: tuple[str, ...] = ("sample_rate_hz", "t0_s", "i", "q")
SURVEY_SOURCE_KEYS: tuple[str, ...] = ("features", "targets")
SURVEY_FEATURE_KEYS: tuple[str, ...] = ("x", "y", "rssi")
SURVEY_TARGET_KEYS: tuple[str, ...] = ("source_x", "source_y")

OnError = Literal["raise", "collect"]
OnFault = Literal["raise", "drop"]


# --------------------------------------------------------------------------- errors


class SampleError(NamedTuple):
    """A sample skipped by lenient loading (``on_error="collect"``)."""

    #: Position of the sample in the file's ``samples`` list (or among the survey's sources).
    index: int
    #: The sample's id (``"s-<index>"`` when it has none or it is unusable).
    id: str
    #: The full error message, path included.
    message: str


class Dropped(NamedTuple):
    """A sample or report left out by reading with ``on_fault="drop"`` (a real-world fault, not malformed input).

    :func:`rflocal_core.measurements.quality.check_quality` counts them by reason.
    """

    #: ``"duplicate_sample_id"``, ``"rss_out_of_range"``, ``"toa_out_of_range"`` or ``"too_few_reports"``.
    reason: str
    #: What was left out: ``"samples"`` or ``"reports"``.
    unit: str
    #: Id of the sample concerned (``"s-<index>"`` when it has none).
    sample_id: str
    #: JSON path of the offending field, e.g. ``"samples[3].reports[0].rss_dbm"``.
    path: str
    #: What was expected and what was found.
    message: str


class _Problems:
    """The problems found in one document, raised together as one error (:meth:`raise_any`).

    A reader sees every problem at once instead of fixing them one run at a time; at most
    :data:`MAX_LISTED_PROBLEMS` are listed, the rest counted.
    """

    def __init__(self, cap: int | None = None) -> None:
        self.cap = MAX_LISTED_PROBLEMS if cap is None else cap
        self.errors: list[MeasurementFormatError] = []
        self.found = 0

    def add(self, exc: MeasurementFormatError) -> None:
        self.found += 1
        if len(self.errors) < self.cap:
            self.errors.append(exc)

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        """Add the :class:`MeasurementFormatError` raised in the block instead of letting it through."""
        try:
            yield
        except MeasurementFormatError as exc:
            self.add(exc)

    def raise_any(self) -> None:
        """Raise one error listing the problems found (the error itself when there is one)."""
        if self.found:
            raise MeasurementFormatError.combined(self.errors, found=self.found)


class _JSONConstant:
    """Stands in for a JSON ``NaN`` / ``Infinity`` literal so validation can name its path."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_MISSING = object()
_PLAIN_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _key(name: Any) -> str:
    """Path element for an object key: ``name`` or ``["odd name"]``."""
    text = str(name)
    return text if _PLAIN_KEY_RE.match(text) else f"[{json.dumps(text, ensure_ascii=False)}]"


def _show(value: Any) -> str:
    """Render a found value for an error message, JSON-style (``"abc"``, ``true``, ``null``)."""
    if value is _MISSING:
        return "nothing"
    if isinstance(value, _JSONConstant):
        return value.name
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, numbers.Real):
        as_float = float(value)
        if math.isnan(as_float):
            return "NaN"
        if math.isinf(as_float):
            return "Infinity" if as_float > 0 else "-Infinity"
        return str(value)
    if isinstance(value, Mapping):
        return "{}" if not value else f"an object (keys {', '.join(map(str, list(value)[:6]))})"
    if isinstance(value, (list, tuple)):
        return "[]" if not value else f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"a {type(value).__name__}"


def _fmt(number: float) -> str:
    """Format a range bound: ``-200``, ``30``, ``0.5``, ``1e7``."""
    if float(number).is_integer() and abs(number) < 1e6:
        return str(int(number))
    text = f"{number:g}"
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _range_text(lo: float | None, hi: float | None, kind: str = "a number") -> str:
    if lo is not None and hi is not None:
        return f"{kind} in [{_fmt(lo)}, {_fmt(hi)}]"
    if lo is not None:
        return f"{kind} >= {_fmt(lo)}"
    if hi is not None:
        return f"{kind} <= {_fmt(hi)}"
    return f"a finite {kind.removeprefix('a ').removeprefix('an ')}"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: Any, path: str, bounds: tuple[float | None, float | None], *, extra: str = "") -> float:
    """Return ``value`` as a float if it is a finite number within ``bounds``, else raise."""
    lo, hi = bounds
    if (
        not _is_number(value)
        or not math.isfinite(value)
        or (lo is not None and value < lo)
        or (hi is not None and value > hi)
    ):
        msg = f"expected {_range_text(lo, hi)}{extra}, got {_show(value)}"
        raise MeasurementFormatError(msg, path=path)
    return float(value)


def _field(name: str, value: Any, path: str | None = None, *, extra: str = "") -> float | int:
    """``value`` checked against ``FIELDS[name]`` (kind and range), else raise naming ``path`` (default ``name``)."""
    spec = FIELDS[name]
    path = name if path is None else path
    if spec.kind == "integer":
        return _integer(value, path, spec.bounds)
    return _number(value, path, spec.bounds, extra=extra)


def _opt_field(name: str, value: Any) -> float | int | None:
    """:func:`_field`, with ``None`` (absent) allowed."""
    return None if value is None else _field(name, value)


def _survey_value(key: str, value: Any, path: str) -> float:
    """A survey column value or target, checked against the field of :data:`SURVEY_FIELDS` it stands for."""
    name, what = SURVEY_FIELDS[key]
    return float(_field(name, value, path, extra=f" ({what})"))


def _integer(value: Any, path: str, bounds: tuple[float | None, float | None]) -> int:
    """Return ``value`` as an int (``3.0`` is accepted as 3) within ``bounds``, else raise."""
    lo, hi = bounds
    if (
        not _is_number(value)
        or not math.isfinite(value)
        or not float(value).is_integer()
        or not lo <= value <= hi
    ):
        msg = f"expected {_range_text(lo, hi, 'an integer')}, got {_show(value)}"
        raise MeasurementFormatError(msg, path=path)
    return int(value)


def _text(value: Any, path: str, what: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"expected {what}, got {_show(value)}"
        raise MeasurementFormatError(msg, path=path)
    return value


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _check_position_fields(obj: Any, *, required: bool, what: str = "") -> bool:
    """Validate and normalize lat/lon/x_m/y_m/alt_m of ``obj``; return whether it has a position.

    Pairs are complete (lat with lon, x_m with y_m); ``alt_m`` needs a horizontal position;
    with ``required`` at least one pair must be given.
    """
    for name in POSITION_KEYS:
        _set(obj, name, _opt_field(name, getattr(obj, name)))
    for first, second in POSITION_PAIRS:
        if getattr(obj, first) is not None and getattr(obj, second) is None:
            msg = f"expected {_range_text(*FIELDS[second].bounds)} together with {first}, got nothing"
            raise MeasurementFormatError(msg, path=second)
    has_position = obj.lat is not None or obj.x_m is not None
    if obj.alt_m is not None and not has_position:
        msg = f"expected lat/lon or x_m/y_m with alt_m{what}, got only alt_m"
        raise MeasurementFormatError(msg, path="")
    if required and not has_position:
        msg = f"expected a position as lat/lon or x_m/y_m{what}, got neither"
        raise MeasurementFormatError(msg, path="")
    return has_position


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Position:
    """A position as WGS84 ``lat``/``lon`` (degrees) and/or scene metres ``x_m`` (east) / ``y_m`` (north).

    At least one complete pair is required; :meth:`MeasurementSet.fill_positions` completes
    the other one. ``alt_m`` is the height in metres (optional).
    """

    lat: float | None = None
    lon: float | None = None
    x_m: float | None = None
    y_m: float | None = None
    alt_m: float | None = None

    def __post_init__(self) -> None:
        _check_position_fields(self, required=True)


@dataclass(frozen=True)
class Node:
    """A node at a known place (base station, gateway, receiver), or one whose position is unknown.

    Parameters
    ----------
    id : str
        Unique id, referenced by :attr:`Report.node`.
    lat, lon : float, optional
        WGS84 degrees.
    x_m, y_m : float, optional
        Scene metres (x east, y north).
    alt_m : float, optional
        Antenna height in metres.
    tx_power_dbm : float, optional
        Transmit power (ue mode), in dBm.
    carrier_hz : float, optional
        Carrier frequency of the node's cell, Hz (a site with cells on several bands is one node per band).

    A node with neither lat/lon nor x_m/y_m has an unknown position (written as
    ``"position": null``): fingerprinting can still use its measurements.
    """

    id: str
    lat: float | None = None
    lon: float | None = None
    x_m: float | None = None
    y_m: float | None = None
    alt_m: float | None = None
    tx_power_dbm: float | None = None
    carrier_hz: float | None = None

    def __post_init__(self) -> None:
        _text(self.id, "id")
        _check_position_fields(self, required=False)
        _set(self, "tx_power_dbm", _opt_field("tx_power_dbm", self.tx_power_dbm))
        _set(self, "carrier_hz", _opt_field("carrier_hz", self.carrier_hz))

    @property
    def has_position(self) -> bool:
        """Whether the node's position is known."""
        return self.lat is not None or self.x_m is not None

    @property
    def position(self) -> Position | None:
        """The node's position, or None when it is unknown."""
        if not self.has_position:
            return None
        return Position(self.lat, self.lon, self.x_m, self.y_m, self.alt_m)


def _samples(values: Any, path: str) -> tuple[float, ...]:
    """IQ samples: a list of finite numbers of an accepted length, as floats."""
    lo, hi = IQ_SAMPLES_RANGE
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence) or not lo <= len(values) <= hi:
        msg = f"expected a list of {lo} to {hi} numbers, got {_show(values)}"
        raise MeasurementFormatError(msg, path=path)
    bad = next((k for k, v in enumerate(values) if not _is_number(v) or not math.isfinite(v)), None)
    if bad is not None:
        msg = f"expected a finite number, got {_show(values[bad])}"
        raise MeasurementFormatError(msg, path=f"{path}[{bad}]")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class IQCapture:
    """A report's raw capture: complex baseband samples ``i + j q`` from ``t0_s`` at ``sample_rate_hz``.

    Parameters
    ----------
    sample_rate_hz : float
        In [1, 1e11] Hz.
    t0_s : float
        Time of the first sample on the receivers' common clock (GPS), seconds.
    i, q : sequence of float
        In-phase and quadrature samples, as many of each (1 to 65536). RFLocal writes them in √mW
        (``i² + q²`` is the instantaneous power in mW); uncalibrated captures (ADC counts) are
        read all the same, their band power is then relative.
    """

    sample_rate_hz: float
    t0_s: float
    i: tuple[float, ...]
    q: tuple[float, ...]

    def __post_init__(self) -> None:
        _set(self, "sample_rate_hz", _field("sample_rate_hz", self.sample_rate_hz))
        _set(self, "t0_s", _field("t0_s", self.t0_s))
        for name in ("i", "q"):
            _set(self, name, _samples(getattr(self, name), name))
        if len(self.i) != len(self.q):
            msg = f"expected as many q samples as i samples ({len(self.i)}), got {len(self.q)}"
            raise MeasurementFormatError(msg, path="q")

    def to_dict(self) -> dict[str, Any]:
        """The ``iq`` object of the format."""
        return {"sample_rate_hz": self.sample_rate_hz, "t0_s": self.t0_s, "i": list(self.i), "q": list(self.q)}


@dataclass(frozen=True)
class Report:
    """The measurements of one node (or one mobile sensor) at one time.

    Parameters
    ----------
    node : str, optional
        Id of the node measured; exactly one of ``node`` and an own position is given.
    t_s : float
        Time in seconds (>= 0); reports of a node at different times form a sequence.
    rss_dbm : float, optional
        Received signal strength in dBm, in [-200, 30].
    toa_ns : float, optional
        Time of arrival in nanoseconds, in [0, 1e7].
    ta : int, optional
        Timing-advance index in units of 16 Ts, in [0, 65535].
    aoa_deg : float, optional
        Angle of arrival as a compass bearing in degrees, clockwise from north, of the
        direction from the node to the target as seen at the node; in [0, 360].
    snr_db : float, optional
        Signal-to-noise ratio in dB, in [-50, 100].
    lat, lon, x_m, y_m, alt_m : float, optional
        The report's own position (a mobile sensor, e.g. a drone survey) instead of ``node``.
    rsrq_db, sinr_db, cqi, ri, beam_id, beam_rsrp_dbm, doppler_hz, serving, neighbour_rank, event_a3, event_a5 : optional
        PHY/MAC fields (:data:`PHY_FIELDS`, ranges in :data:`FIELDS`), with at least one measurement.
    iq : IQCapture, optional
        The raw capture the measurements came from (complex baseband samples).
    """

    node: str | None = None
    t_s: float = 0.0
    rss_dbm: float | None = None
    toa_ns: float | None = None
    ta: int | None = None
    aoa_deg: float | None = None
    snr_db: float | None = None
    lat: float | None = None
    lon: float | None = None
    x_m: float | None = None
    y_m: float | None = None
    alt_m: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    cqi: int | None = None
    ri: int | None = None
    beam_id: int | None = None
    beam_rsrp_dbm: float | None = None
    doppler_hz: float | None = None
    serving: int | None = None
    neighbour_rank: int | None = None
    event_a3: int | None = None
    event_a5: int | None = None
    iq: IQCapture | None = None

    def __post_init__(self) -> None:
        if self.node is not None:
            _text(self.node, "node", "a node id (a non-empty string)")
        for name in PHY_FIELDS:
            _set(self, name, _opt_field(name, getattr(self, name)))
        if self.iq is not None and not isinstance(self.iq, IQCapture):
            msg = f"expected an IQCapture or None, got {_show(self.iq)}"
            raise MeasurementFormatError(msg, path="iq")
        _set(self, "t_s", _field("t_s", self.t_s))
        for name in _MEASUREMENT_RANGES:
            _set(self, name, _opt_field(name, getattr(self, name)))
        _set(self, "ta", _opt_field("ta", self.ta))
        if self.node is not None and any(getattr(self, key) is not None for key in POSITION_KEYS):
            msg = (
                f"expected either a node id or the report's own position (lat/lon, x_m/y_m, alt_m), "
                f"got both (node {_show(self.node)})"
            )
            raise MeasurementFormatError(msg, path="")
        has_own = _check_position_fields(self, required=False)
        if self.node is None and not has_own:
            msg = "expected a node id or the report's own position (lat/lon or x_m/y_m), got neither"
            raise MeasurementFormatError(msg, path="node")
        if all(getattr(self, name) is None for name in MEASUREMENT_FIELDS) and self.iq is None:
            msg = f"expected at least one measurement ({', '.join(MEASUREMENT_FIELDS)}), got none"
            raise MeasurementFormatError(msg, path="")

    @property
    def has_own_position(self) -> bool:
        """Whether the report carries its own position (a mobile sensor) instead of a node."""
        return self.node is None

    @property
    def position(self) -> Position | None:
        """The report's own position, or None when it refers to a node."""
        if self.node is not None:
            return None
        return Position(self.lat, self.lon, self.x_m, self.y_m, self.alt_m)

    @property
    def measurements(self) -> dict[str, float | int]:
        """The measurement fields that are present, e.g. ``{"rss_dbm": -87.0}``."""
        return {name: getattr(self, name) for name in MEASUREMENT_FIELDS if getattr(self, name) is not None}

    @property
    def phy(self) -> dict[str, float | int]:
        """The PHY/MAC fields that are present, e.g. ``{"rsrq_db": -11.5, "cqi": 9}``."""
        return {name: getattr(self, name) for name in PHY_FIELDS if getattr(self, name) is not None}


@dataclass(frozen=True)
class Sample:
    """One localization problem: reports (one or many per node) and, if known, the true position.

    ``sequence``: the id of the track the sample belongs to (a moving device's reports over time,
    one sample per report time; ``predict --track`` filters each sequence); None for a snapshot.
    """

    id: str
    reports: tuple[Report, ...]
    truth: Position | None = None
    sequence: str | None = None

    def __post_init__(self) -> None:
        _text(self.id, "id")
        if isinstance(self.reports, (str, bytes, Mapping)) or not isinstance(self.reports, Sequence):
            msg = f"expected a non-empty list of reports, got {_show(self.reports)}"
            raise MeasurementFormatError(msg, path="reports")
        _set(self, "reports", tuple(self.reports))
        if not self.reports:
            msg = "expected a non-empty list of reports, got []"
            raise MeasurementFormatError(msg, path="reports")
        for i, report in enumerate(self.reports):
            if not isinstance(report, Report):
                msg = f"expected a Report, got {_show(report)}"
                raise MeasurementFormatError(msg, path=f"reports[{i}]")
        if self.truth is not None and not isinstance(self.truth, Position):
            msg = f"expected a Position or None, got {_show(self.truth)}"
            raise MeasurementFormatError(msg, path="truth")
        if self.sequence is not None:
            _text(self.sequence, "sequence", "a sequence id (a non-empty string) or null")


@dataclass(frozen=True)
class MeasurementSet:
    """The content of one measurement file.

    Parameters
    ----------
    mode : {"ue", "emitter"}
        ``"ue"``: known nodes transmit, the device is located; ``"emitter"``: known nodes
        receive, an unknown transmitter is located.
    scene : str, optional
        Name of the scene the measurements belong to.
    nodes : tuple of Node
        Known nodes, unique ids.
    samples : tuple of Sample
        Unique ids; at least one unless ``errors`` lists skipped samples.
    errors : tuple of SampleError
        Samples skipped by lenient loading (never written to a file).
    notes : tuple of str
        Free-text remarks (provenance, assumptions), kept in the file.
    dropped : tuple of Dropped
        Samples and reports left out by reading with ``on_fault="drop"`` (never written to a
        file); :func:`~rflocal_core.measurements.quality.check_quality` reports them.
    """

    mode: str
    scene: str | None = None
    nodes: tuple[Node, ...] = ()
    samples: tuple[Sample, ...] = ()
    errors: tuple[SampleError, ...] = ()
    notes: tuple[str, ...] = ()
    dropped: tuple[Dropped, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            msg = f'expected "ue" or "emitter", got {_show(self.mode)}'
            raise MeasurementFormatError(msg, path="mode")
        if self.scene is not None:
            _text(self.scene, "scene", "a scene name (a non-empty string) or null")
        _set(self, "nodes", _tuple_of(self.nodes, Node, "nodes"))
        _set(self, "samples", _tuple_of(self.samples, Sample, "samples"))
        _set(self, "errors", tuple(SampleError(*e) for e in self.errors))
        _set(self, "notes", tuple(self.notes))
        _set(self, "dropped", tuple(Dropped(*d) for d in self.dropped))
        for i, note in enumerate(self.notes):
            _text(note, f"notes[{i}]")
        first_node: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.id in first_node:
                msg = f"expected unique node ids, got {_show(node.id)} again (first at nodes[{first_node[node.id]}])"
                raise MeasurementFormatError(msg, path=f"nodes[{i}].id")
            first_node[node.id] = i
        first_sample: dict[str, int] = {}
        for i, sample in enumerate(self.samples):
            if sample.id in first_sample:
                msg = (
                    f"expected unique sample ids, got {_show(sample.id)} again "
                    f"(first at samples[{first_sample[sample.id]}])"
                )
                raise MeasurementFormatError(msg, path=f"samples[{i}].id")
            first_sample[sample.id] = i
            for j, report in enumerate(sample.reports):
                if report.node is not None and report.node not in first_node:
                    raise _unknown_node(report.node, list(first_node)).within(f"samples[{i}].reports[{j}]")
        if not self.samples and not self.errors and not self.dropped:
            msg = "expected a non-empty list of samples, got []"
            raise MeasurementFormatError(msg, path="samples")

    @cached_property
    def nodes_by_id(self) -> dict[str, Node]:
        """The nodes keyed by id."""
        return {node.id: node for node in self.nodes}

    @property
    def unknown_position_nodes(self) -> tuple[Node, ...]:
        """Nodes whose position is unknown (``"position": null``)."""
        return tuple(node for node in self.nodes if not node.has_position)

    def fill_positions(self, frame: LocalFrame) -> MeasurementSet:
        """Return a copy where lat/lon is completed from x_m/y_m and vice versa.

        Applies to nodes, reports with their own position and truths. Positions that
        already have both pairs are kept as they are (not checked for consistency).

        Parameters
        ----------
        frame : LocalFrame
            The scene's frame (``frame.to_xy`` / ``frame.to_latlon``).
        """
        items: list[Any] = list(self.nodes)
        for sample in self.samples:
            items.extend(sample.reports)
            if sample.truth is not None:
                items.append(sample.truth)
        need_xy = [i for i, item in enumerate(items) if item.lat is not None and item.x_m is None]
        need_ll = [i for i, item in enumerate(items) if item.x_m is not None and item.lat is None]
        updates: dict[int, dict[str, float]] = {}
        if need_xy:
            xs, ys = frame.to_xy([items[i].lat for i in need_xy], [items[i].lon for i in need_xy])
            xs, ys = np.asarray(xs, float).reshape(-1), np.asarray(ys, float).reshape(-1)
            for k, i in enumerate(need_xy):
                updates[i] = {"x_m": float(xs[k]), "y_m": float(ys[k])}
        if need_ll:
            lats, lons = frame.to_latlon([items[i].x_m for i in need_ll], [items[i].y_m for i in need_ll])
            lats, lons = np.asarray(lats, float).reshape(-1), np.asarray(lons, float).reshape(-1)
            for k, i in enumerate(need_ll):
                updates[i] = {"lat": float(lats[k]), "lon": float(lons[k])}
        if not updates:
            return self
        filled = [replace(item, **updates[i]) if i in updates else item for i, item in enumerate(items)]
        pos = len(self.nodes)
        samples = []
        for sample in self.samples:
            reports = tuple(filled[pos:pos + len(sample.reports)])
            pos += len(sample.reports)
            truth = None
            if sample.truth is not None:
                truth = filled[pos]
                pos += 1
            samples.append(replace(sample, reports=reports, truth=truth))
        return replace(self, nodes=tuple(filled[: len(self.nodes)]), samples=tuple(samples))


def _tuple_of(values: Any, cls: type, path: str) -> tuple[Any, ...]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        msg = f"expected a list of {cls.__name__}, got {_show(values)}"
        raise MeasurementFormatError(msg, path=path)
    for i, value in enumerate(values):
        if not isinstance(value, cls):
            msg = f"expected a {cls.__name__}, got {_show(value)}"
            raise MeasurementFormatError(msg, path=f"{path}[{i}]")
    return tuple(values)


def _unknown_node(node_id: str, known: list[str]) -> MeasurementFormatError:
    if not known:
        msg = f'expected the id of a node listed in "nodes", got {_show(node_id)} (the file lists no nodes)'
    else:
        shown = ", ".join(known[:10]) + (f", ... ({len(known)} in all)" if len(known) > 10 else "")
        msg = f'expected the id of a node listed in "nodes" ({shown}), got {_show(node_id)}'
    return MeasurementFormatError(msg, path="node")


# --------------------------------------------------------------------------- parsing


def _check_on_error(on_error: Any) -> None:
    if on_error not in ON_ERROR:
        msg = f'on_error: expected "raise" or "collect", got {on_error!r}'
        raise InvalidInputError(msg)


def _check_on_fault(on_fault: Any) -> None:
    if on_fault not in ON_FAULT:
        msg = f'on_fault: expected "raise" or "drop", got {on_fault!r}'
        raise InvalidInputError(msg)


def _fault(raw_report: Mapping[str, Any], rpath: str) -> tuple[str, str, str] | None:
    """``(reason, path, message)`` if a report's RSS or ToA is a finite number outside the format's range."""
    for key in FAULT_FIELDS:
        value = raw_report.get(key)
        if _is_number(value) and math.isfinite(value):
            lo, hi = _MEASUREMENT_RANGES[key]
            if not lo <= value <= hi:
                return (f"{key.split('_')[0]}_out_of_range", f"{rpath}.{key}",
                        f"expected {_range_text(lo, hi)}, got {_show(value)}")
    return None


def _object(value: Any, path: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        msg = f"expected {what}, got {_show(value)}"
        raise MeasurementFormatError(msg, path=path)
    return value


def _unknown_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> list[MeasurementFormatError]:
    """One problem per key of ``obj`` not in ``allowed``."""
    msg = f"unknown key; expected one of {', '.join(allowed)}"
    return [MeasurementFormatError(msg, path=join_path(path, _key(key))) for key in obj if key not in allowed]


def _known_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
    unknown = _unknown_keys(obj, allowed, path)
    if unknown:
        raise unknown[0]


def _list(value: Any, path: str, what: str) -> list[Any]:
    if not isinstance(value, (list, tuple)) or not value:
        msg = f"expected {what}, got {_show(value)}"
        raise MeasurementFormatError(msg, path=path)
    return list(value)


def _build(cls: type, path: str, **fields: Any) -> Any:
    """``cls(**fields)`` with validation errors placed under ``path``."""
    try:
        return cls(**fields)
    except MeasurementFormatError as exc:
        raise exc.within(path) from None


def _position_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: raw.get(key) for key in POSITION_KEYS}


def parse_measurements(obj: Any, *, on_error: OnError = "raise", on_fault: OnFault = "raise") -> MeasurementSet:
    """Validate a decoded JSON document and return its :class:`MeasurementSet`.

    The format is detected: ``rflocal-measurements/1`` (an object with ``"format"``) or the
    survey format (``{"<source_id>": {"features": {...}, "targets": {...}}}``).

    Parameters
    ----------
    obj : dict
        The decoded JSON document.
    on_error : {"raise", "collect"}
        ``"raise"``: any problem raises, all of them listed in one error (the first of each
        node and sample, up to :data:`MAX_LISTED_PROBLEMS`). ``"collect"``: problems of the
        document as a whole still raise (listed together), but a sample with an error is
        skipped and listed in :attr:`MeasurementSet.errors` as ``(index, id, message)``.
    on_fault : {"raise", "drop"}
        What to do with the faults of real logs that the format can name but a reader can
        survive: a sample id seen before, a report whose ``rss_dbm`` or ``toa_ns`` is a finite
        number outside the format's range (``-999`` dBm). ``"raise"``: they are errors like
        any other. ``"drop"``: the later sample, or the report, is left out and listed in
        :attr:`MeasurementSet.dropped` (a sample left with no report is left out too).

    Raises
    ------
    MeasurementFormatError
        Naming each offending field by its JSON path, what was expected and what was found
        (``problems``: one entry per problem).
    """
    _check_on_error(on_error)
    _check_on_fault(on_fault)
    if not isinstance(obj, Mapping):
        msg = f'expected a JSON object ({{"format": "{FORMAT_ID}", ...}} or a survey), got {_show(obj)}'
        raise MeasurementFormatError(msg)
    if any(key in obj for key in DOCUMENT_KEYS):
        return _parse_document(obj, on_error, on_fault)
    if any(isinstance(value, Mapping) and "features" in value for value in obj.values()):
        return _parse_survey(obj, on_error, on_fault)
    msg = (
        f'expected an {FORMAT_ID} document ({{"format": "{FORMAT_ID}", "mode": ..., "samples": [...]}}) '
        f'or a survey ({{"<source_id>": {{"features": {{"x": [...], "y": [...], "rssi": [...]}}}}}}), '
        f"got {_show(obj)}"
    )
    raise MeasurementFormatError(msg)


def _parse_document(obj: Mapping[str, Any], on_error: str, on_fault: str = "raise") -> MeasurementSet:
    fmt = obj.get("format", _MISSING)
    if fmt != FORMAT_ID:  # another format: its other fields cannot be judged
        msg = f'expected "{FORMAT_ID}", got {_show(fmt)}'
        raise MeasurementFormatError(msg, path="format")
    problems = _Problems()
    mode, scene, notes = _parse_header(obj, problems)
    nodes, node_index = _parse_nodes(obj.get("nodes"), problems)
    samples, errors, dropped = _parse_samples(obj.get("samples", _MISSING), node_index, on_error, on_fault, problems)
    if problems.found:  # the document is refused: name its bad samples too, not only after the next try
        for error in errors:
            problems.add(MeasurementFormatError(error.message))
    problems.raise_any()
    return MeasurementSet(mode, scene, tuple(nodes), tuple(samples), tuple(errors), tuple(notes), tuple(dropped))


def _parse_header(obj: Mapping[str, Any], problems: _Problems) -> tuple[str, str | None, list[str]]:
    """``mode``, ``scene`` and ``notes`` of a document, and its unknown keys (problems are added, not raised)."""
    for exc in _unknown_keys(obj, TOP_KEYS, ""):
        problems.add(exc)
    mode = obj.get("mode", _MISSING)
    if mode not in MODES or not isinstance(mode, str):
        msg = (
            f'expected "ue" (known nodes transmit, the device is located) or "emitter" '
            f"(known nodes receive, an unknown transmitter is located), got {_show(mode)}"
        )
        problems.add(MeasurementFormatError(msg, path="mode"))
        mode = MODES[0]  # a stand-in: the problem is raised before the set is built
    scene = obj.get("scene")
    if scene is not None:
        with problems.check():
            _text(scene, "scene", "a scene name (a non-empty string) or null")
    raw_notes = obj.get("notes")
    notes: list[str] = []
    if raw_notes is not None and not isinstance(raw_notes, list):
        msg = f"expected a list of strings, got {_show(raw_notes)}"
        problems.add(MeasurementFormatError(msg, path="notes"))
    elif raw_notes is not None:
        for i, note in enumerate(raw_notes):
            with problems.check():
                notes.append(_text(note, f"notes[{i}]"))
    return mode, scene, notes


def _parse_nodes(raw_nodes: Any, problems: _Problems) -> tuple[list[Node], dict[str, int]]:
    """The nodes of a document and their index by id (problems are added, not raised).

    When a node has a problem, the reports are not checked against the node ids: which node a
    report meant is then unknown, and a report naming it would only repeat the node's problem.
    """
    if raw_nodes is None:
        raw_nodes = []
    if not isinstance(raw_nodes, list):
        msg = f"expected a list of nodes, got {_show(raw_nodes)}"
        problems.add(MeasurementFormatError(msg, path="nodes"))
        return [], _EveryId()
    nodes: list[Node] = []
    node_index: dict[str, int] = {}
    found = problems.found
    for i, raw in enumerate(raw_nodes):
        try:
            node = _parse_node(raw, f"nodes[{i}]")
        except MeasurementFormatError as exc:
            problems.add(exc)
            continue
        if node.id in node_index:
            msg = f"expected unique node ids, got {_show(node.id)} again (first at nodes[{node_index[node.id]}])"
            problems.add(MeasurementFormatError(msg, path=f"nodes[{i}].id"))
            continue
        node_index[node.id] = i
        nodes.append(node)
    return nodes, (node_index if problems.found == found else _EveryId())


class _EveryId(dict):
    """The node index of a document whose nodes have a problem: reports naming any node add no problem."""

    def __contains__(self, key: object) -> bool:
        return True


def _parse_samples(
    value: Any, node_index: dict[str, int], on_error: str, on_fault: str, problems: _Problems,
) -> tuple[list[Sample], list[SampleError], list[Dropped]]:
    """The samples of a document; a sample's problem is added to ``problems`` (``on_error="raise"``) or
    listed as a :class:`SampleError` (``"collect"``)."""
    samples: list[Sample] = []
    errors: list[SampleError] = []
    dropped: list[Dropped] = []
    try:
        raw_samples = _list(value, "samples", "a non-empty list of samples")
    except MeasurementFormatError as exc:
        problems.add(exc)
        return samples, errors, dropped
    first_sample: dict[str, int] = {}
    known = list(node_index)
    for i, raw in enumerate(raw_samples):
        raw_id = raw.get("id") if isinstance(raw, Mapping) else None
        sample_id = raw_id if isinstance(raw_id, str) and raw_id.strip() else f"s-{i}"
        if on_fault == "drop" and sample_id in first_sample:  # the first sample of an id wins
            first = first_sample[sample_id]
            msg = f"expected unique sample ids, got {_show(sample_id)} again (first at samples[{first}])"
            dropped.append(Dropped("duplicate_sample_id", "samples", sample_id, f"samples[{i}].id", msg))
            continue
        faults: list[Dropped] | None = [] if on_fault == "drop" else None
        try:
            sample = _parse_sample(raw, i, node_index, known, first_sample, faults)
        except MeasurementFormatError as exc:
            if on_error == "raise":
                problems.add(exc)
            else:
                errors.append(SampleError(i, sample_id, str(exc)))
            continue
        dropped.extend(faults or ())
        if sample is not None:
            samples.append(sample)
    return samples, errors, dropped


def _parse_node(raw: Any, path: str) -> Node:
    raw = _object(raw, path, 'a node object {"id": ..., "lat": ..., "lon": ...}')
    _known_keys(raw, NODE_KEYS, path)
    if raw.get("id") is None:
        msg = "expected a non-empty string, got nothing"
        raise MeasurementFormatError(msg, path=f"{path}.id")
    coords = [key for key in ("lat", "lon", "x_m", "y_m") if raw.get(key) is not None]
    if "position" in raw:
        if raw["position"] is not None:
            msg = (
                "expected null (the node's position is unknown); give a known position as lat/lon "
                f"or x_m/y_m, got {_show(raw['position'])}"
            )
            raise MeasurementFormatError(msg, path=f"{path}.position")
        if coords or raw.get("alt_m") is not None:
            given = coords or ["alt_m"]
            msg = f'expected either "position": null or a position, got both ("position": null and {given[0]})'
            raise MeasurementFormatError(msg, path=f"{path}.position")
    elif not coords:
        msg = 'expected lat/lon or x_m/y_m, or "position": null if the node\'s position is unknown, got neither'
        raise MeasurementFormatError(msg, path=path)
    return _build(Node, path, id=raw["id"], tx_power_dbm=raw.get("tx_power_dbm"), carrier_hz=raw.get("carrier_hz"),
                  **_position_fields(raw))


def _parse_sample(
    raw: Any, index: int, node_index: Mapping[str, int], known: list[str], first_sample: dict[str, int],
    faults: list[Dropped] | None = None,
) -> Sample | None:
    """One sample; with ``faults`` (a list), faulty reports are left out and listed there (None: no report left)."""
    path = f"samples[{index}]"
    raw = _object(raw, path, 'a sample object {"id": ..., "reports": [...]}')
    _known_keys(raw, SAMPLE_KEYS, path)
    sample_id = raw.get("id")
    if sample_id is None:
        sample_id = f"s-{index}"
    _text(sample_id, f"{path}.id", "a non-empty string (or no id: s-<index> is used)")
    if sample_id in first_sample:
        msg = f"expected unique sample ids, got {_show(sample_id)} again (first at samples[{first_sample[sample_id]}])"
        raise MeasurementFormatError(msg, path=f"{path}.id")
    first_sample[sample_id] = index
    raw_reports = _list(raw.get("reports", _MISSING), f"{path}.reports", "a non-empty list of reports")
    reports = []
    for j, raw_report in enumerate(raw_reports):
        rpath = f"{path}.reports[{j}]"
        raw_report = _object(raw_report, rpath, 'a report object {"node": ..., "rss_dbm": ...}')
        _known_keys(raw_report, REPORT_KEYS, rpath)
        fault = _fault(raw_report, rpath) if faults is not None else None
        if fault is not None:
            faults.append(Dropped(fault[0], "reports", sample_id, fault[1], fault[2]))
            continue
        t_s = raw_report.get("t_s")
        fields = {key: raw_report.get(key) for key in REPORT_KEYS}
        fields["t_s"] = 0.0 if t_s is None else t_s
        if fields["iq"] is not None:
            fields["iq"] = _parse_iq(fields["iq"], f"{rpath}.iq")
        report = _build(Report, rpath, **fields)
        if report.node is not None and report.node not in node_index:
            raise _unknown_node(report.node, known).within(rpath)
        reports.append(report)
    truth = None
    raw_truth = raw.get("truth")
    if raw_truth is not None:
        tpath = f"{path}.truth"
        raw_truth = _object(raw_truth, tpath, 'a position object {"lat": ..., "lon": ...} or null')
        _known_keys(raw_truth, POSITION_KEYS, tpath)
        truth = _build(Position, tpath, **_position_fields(raw_truth))
    if not reports and faults:
        msg = f"expected at least one report left, got none ({len(faults)} had faulty values)"
        faults.append(Dropped("too_few_reports", "samples", sample_id, f"{path}.reports", msg))
        return None
    return _build(Sample, path, id=sample_id, reports=tuple(reports), truth=truth, sequence=raw.get("sequence"))


def _parse_iq(raw: Any, path: str) -> IQCapture:
    raw = _object(raw, path, 'an IQ capture {"sample_rate_hz": ..., "t0_s": ..., "i": [...], "q": [...]}')
    _known_keys(raw, IQ_KEYS, path)
    missing = [key for key in IQ_KEYS if raw.get(key) is None]
    if missing:
        msg = f"expected {', '.join(IQ_KEYS)}, got no {', '.join(missing)}"
        raise MeasurementFormatError(msg, path=path)
    return _build(IQCapture, path, **{key: raw[key] for key in IQ_KEYS})


def _parse_survey(obj: Mapping[str, Any], on_error: str, on_fault: str = "raise") -> MeasurementSet:
    samples: list[Sample] = []
    errors: list[SampleError] = []
    dropped: list[Dropped] = []
    problems = _Problems()
    for i, (source_id, raw) in enumerate(obj.items()):
        faults: list[Dropped] | None = [] if on_fault == "drop" else None
        try:
            sample = _parse_survey_source(source_id, raw, faults)
        except MeasurementFormatError as exc:
            if on_error == "raise":
                problems.add(exc)
                continue
            sample_id = source_id if isinstance(source_id, str) and source_id.strip() else f"s-{i}"
            errors.append(SampleError(i, sample_id, str(exc)))
            continue
        dropped.extend(faults or ())
        if sample is not None:
            samples.append(sample)
    problems.raise_any()
    return MeasurementSet("emitter", None, (), tuple(samples), tuple(errors), dropped=tuple(dropped))


def _parse_survey_source(source_id: Any, raw: Any, faults: list[Dropped] | None = None) -> Sample | None:
    path = _key(source_id)
    if not isinstance(source_id, str) or not source_id.strip():
        msg = f"expected a source id (a non-empty string), got {_show(source_id)}"
        raise MeasurementFormatError(msg, path=path)
    raw = _object(raw, path, 'a survey source {"features": {"x": [...], "y": [...], "rssi": [...]}}')
    _known_keys(raw, SURVEY_SOURCE_KEYS, path)
    fpath = f"{path}.features"
    features = _object(raw.get("features", _MISSING), fpath, 'an object {"x": [...], "y": [...], "rssi": [...]}')
    _known_keys(features, SURVEY_FEATURE_KEYS, fpath)
    what = {"x": "a non-empty list of latitudes", "y": "a non-empty list of longitudes",
            "rssi": "a non-empty list of RSSI values in dBm"}
    columns = {key: _list(features.get(key, _MISSING), f"{fpath}.{key}", what[key]) for key in SURVEY_FEATURE_KEYS}
    n = len(columns["x"])
    for key in ("y", "rssi"):
        if len(columns[key]) != n:
            msg = f"expected a list as long as features.x ({n} values), got {len(columns[key])} values"
            raise MeasurementFormatError(msg, path=f"{fpath}.{key}")
    reports = []
    for k, (lat, lon, rss) in enumerate(zip(columns["x"], columns["y"], columns["rssi"])):
        fault = _fault({"rss_dbm": rss}, f"{fpath}.rssi[{k}]") if faults is not None else None
        if fault is not None:
            faults.append(Dropped(fault[0], "reports", source_id, fault[1].removesuffix(".rss_dbm"), fault[2]))
            continue
        reports.append(Report(
            lat=_survey_value("x", lat, f"{fpath}.x[{k}]"),
            lon=_survey_value("y", lon, f"{fpath}.y[{k}]"),
            rss_dbm=_survey_value("rssi", rss, f"{fpath}.rssi[{k}]"),
        ))
    truth = None
    raw_targets = raw.get("targets")
    if raw_targets is not None:
        tpath = f"{path}.targets"
        targets = _object(raw_targets, tpath, 'an object {"source_x": latitude, "source_y": longitude} or null')
        _known_keys(targets, SURVEY_TARGET_KEYS, tpath)
        lat = _survey_value("source_x", targets.get("source_x", _MISSING), f"{tpath}.source_x")
        lon = _survey_value("source_y", targets.get("source_y", _MISSING), f"{tpath}.source_y")
        truth = Position(lat=lat, lon=lon)
    if not reports and faults:
        msg = f"expected at least one report left, got none ({len(faults)} had faulty values)"
        faults.append(Dropped("too_few_reports", "samples", source_id, f"{fpath}.rssi", msg))
        return None
    return Sample(source_id, tuple(reports), truth)


# --------------------------------------------------------------------------- files


def load_measurements(
    source: str | os.PathLike[str] | bytes,
    *,
    on_error: OnError = "raise",
    max_bytes: int = MAX_MEASUREMENT_FILE_BYTES,
    on_fault: OnFault = "raise",
) -> MeasurementSet:
    """Read, validate and return a measurement file (``rflocal-measurements/1`` or survey).

    Parameters
    ----------
    source : str, Path or bytes
        A file path (``str`` is always a path), or the file's content as bytes (an upload).
    on_error : {"raise", "collect"}
        See :func:`parse_measurements`. File-level problems (size, encoding, JSON syntax,
        format, nodes) raise in both modes.
    on_fault : {"raise", "drop"}
        See :func:`parse_measurements`: ``"drop"`` leaves out later duplicate sample ids and
        reports with RSS or ToA outside the format's range, listed in ``dropped``.
    max_bytes : int
        Largest accepted size (default :data:`MAX_MEASUREMENT_FILE_BYTES`, 20 MiB).

    Raises
    ------
    MeasurementFormatError
        The file is missing, too large, not UTF-8, not JSON, or not a valid measurement file.
    """
    _check_on_error(on_error)
    _check_on_fault(on_fault)
    data, label, _ = read_capped(source, max_bytes=max_bytes, what="measurement file")
    return parse_measurements(_decode_json(data, label), on_error=on_error, on_fault=on_fault)


def read_capped(
    source: str | os.PathLike[str] | bytes, *, max_bytes: int, what: str,
    error: type[MeasurementFormatError] = MeasurementFormatError, upload_label: str | None = None,
) -> tuple[bytes, str, str | None]:
    """The bytes of a file given by path (read no further than the cap) or as the bytes of an upload.

    Returns
    -------
    data : bytes
    label : str
        The file name (or ``upload_label`` / ``what`` for bytes), for messages.
    path : str or None
        The resolved path, None for bytes.

    Raises
    ------
    MeasurementFormatError (or ``error``)
        No such file, a folder, or more than ``max_bytes``.
    InvalidInputError
        ``max_bytes`` is not a positive integer, or ``source`` is neither a path nor bytes.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        msg = f"max_bytes: expected a positive integer number of bytes, got {max_bytes!r}"
        raise InvalidInputError(msg)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label, resolved = bytes(source), upload_label or what, None
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label, resolved = path.name or str(path), str(path.resolve())
        if not path.is_file():
            msg = f"{path}: expected a {what}, got {'a folder' if path.is_dir() else 'no such file'}"
            raise error(msg)
        if path.stat().st_size > max_bytes:
            raise _too_large(label, path.stat().st_size, max_bytes, what, error)
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    else:
        msg = f"source: expected a file path or the file's bytes, got a {type(source).__name__}"
        raise InvalidInputError(msg)
    if len(data) > max_bytes:
        raise _too_large(label, len(data), max_bytes, what, error)
    return data, label, resolved


def _too_large(label: str, size: int, max_bytes: int, what: str,
               error: type[MeasurementFormatError]) -> MeasurementFormatError:
    unit = "the measurements" if what == "measurement file" else f"the {what.removesuffix(' file')}"
    msg = (
        f"{label}: {size:,} bytes ({size / 2**20:.1f} MiB) is too large; expected at most "
        f"{max_bytes:,} bytes ({max_bytes / 2**20:.1f} MiB); split {unit} into several files"
    )
    return error(msg)


def _decode_json(data: bytes, label: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        msg = (
            f"{label}: expected UTF-8 encoded JSON, got byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"(line {line}) that is not UTF-8"
        )
        raise MeasurementFormatError(msg) from None
    if not text.strip():
        msg = f"{label}: expected a JSON object, got an empty file"
        raise MeasurementFormatError(msg)
    try:
        return json.loads(text, parse_constant=_JSONConstant)
    except json.JSONDecodeError as exc:
        msg = f"{label}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise MeasurementFormatError(msg) from None
    except RecursionError:
        msg = f"{label}: invalid JSON: nested too deeply"
        raise MeasurementFormatError(msg) from None


def to_json_dict(ms: MeasurementSet) -> dict[str, Any]:
    """Return ``ms`` as an ``rflocal-measurements/1`` document (``errors`` are not written).

    Missing values are left out; a node whose position is unknown is written with
    ``"position": null``.
    """
    if not isinstance(ms, MeasurementSet):
        msg = f"ms: expected a MeasurementSet, got a {type(ms).__name__}"
        raise InvalidInputError(msg)
    if not ms.samples:
        msg = "expected at least one sample to write, got none (every sample was skipped)"
        raise MeasurementFormatError(msg, path="samples")
    doc: dict[str, Any] = {"format": FORMAT_ID, "mode": ms.mode}
    if ms.scene is not None:
        doc["scene"] = ms.scene
    if ms.notes:
        doc["notes"] = list(ms.notes)
    doc["nodes"] = [_node_dict(node) for node in ms.nodes]
    doc["samples"] = [_sample_dict(sample) for sample in ms.samples]
    return doc


def _present(obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: getattr(obj, key) for key in keys if getattr(obj, key) is not None}


def _node_dict(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node.id}
    out.update(_present(node, ("lat", "lon", "x_m", "y_m", "alt_m", "tx_power_dbm", "carrier_hz")))
    if not node.has_position:
        out["position"] = None
    return out


def _sample_dict(sample: Sample) -> dict[str, Any]:
    out: dict[str, Any] = {"id": sample.id, "reports": []}
    for report in sample.reports:
        item: dict[str, Any] = {"node": report.node} if report.node is not None else _present(report, POSITION_KEYS)
        item["t_s"] = report.t_s
        item.update(_present(report, MEASUREMENT_FIELDS))
        item.update(_present(report, PHY_FIELDS))
        if report.iq is not None:
            item["iq"] = report.iq.to_dict()
        out["reports"].append(item)
    if sample.truth is not None:
        out["truth"] = _present(sample.truth, POSITION_KEYS)
    if sample.sequence is not None:
        out["sequence"] = sample.sequence
    return out


def dumps_measurements(ms: MeasurementSet) -> str:
    """Return ``ms`` as ``rflocal-measurements/1`` JSON text: one node and one sample per line."""
    doc = to_json_dict(ms)

    def one(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)

    lines = ["{"]
    for key, value in doc.items():
        if key in ("nodes", "samples", "notes") and value:
            items = ",\n".join(f"    {one(item)}" for item in value)
            lines.append(f"  {one(key)}: [\n{items}\n  ],")
        else:
            lines.append(f"  {one(key)}: {one(value)},")
    lines[-1] = lines[-1].rstrip(",")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dump_measurements(ms: MeasurementSet, path: str | os.PathLike[str]) -> Path:
    """Write ``ms`` to ``path`` atomically (a temporary file in the same folder, then a rename).

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    text = dumps_measurements(ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)
