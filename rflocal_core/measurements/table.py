"""Tabular measurement files (CSV, TSV, Parquet, Excel .xlsx) in the long layout -> :class:`MeasurementSet`.

Real drive-test and sensor logs come as tables with one row per measurement. This module
reads such a table, with a mapping from a fixed vocabulary of *keys* to the table's column
names, into the one exchange format ``rflocal-measurements/1``::

    from rflocal_core.measurements.table import read_table
    table = read_table("Duke_CBRS.csv", columns={"node": "PCI", "lat": "latitude", "lon": "longitude",
                                                 "rss_dbm": "rsrp"},
                       group_by=["latitude", "longitude", "device"])
    table.measurements      # a MeasurementSet (ue mode)
    table.report.to_dict()  # rows read and used, and every row-level problem by reason

Keys (:data:`COLUMN_KEYS` has the help text of each):

- ``sample``: rows with the same sample id form one sample. Without it, ``group_by`` names
  the columns whose values identify a sample (e.g. position + device); its id is then
  ``row-<first row>``.
- ``time``: seconds (numbers) or ISO 8601 timestamps (naive ones read as UTC); a report's
  ``t_s`` counts from the earliest row of its sample.
- ``sequence``: a track id (a walk or a drive): a sample's ``sequence`` is the one of its earliest row, and
  ``t_s`` counts from the earliest row of the track instead, so the samples of a track are ordered in time and
  ``predict --track`` can follow them. Needs ``time``; rows without a sequence id are dropped. A log of one walk
  has no such column: ``sequence_gap_s`` makes tracks of the whole file, a new one wherever more than that many
  seconds pass without a sample (within each sequence id when ``sequence`` is mapped).
- ``node``, ``node_lat``, ``node_lon``, ``node_alt_m``, ``tx_power_dbm``: the node measured
  and, where the table has them, its position and transmit power (one per node: the most
  frequent value; rows placing a node more than 5 m away from it are dropped).
- ``lat``, ``lon``, ``alt_m``: the position of the row. In ``ue`` mode the device that
  measures is located, so this is the device's position, i.e. the truth of the sample. In
  ``emitter`` mode it is the position of a mobile sensor (each row a report with its own
  position); the truth of the emitter is then ``truth_lat``/``truth_lon``.
- ``truth_lat``, ``truth_lon``: the true position of the located device or emitter (in
  ``ue`` mode an alternative to ``lat``/``lon``; giving both is refused).
- Positions are WGS84 degrees unless ``crs`` names the table's coordinate reference system (e.g.
  ``EPSG:32617``, UTM 17N in metres): the ``*lat`` columns then hold y (northing) and the ``*lon`` columns x
  (easting), converted to WGS84 when read.
- ``rss_dbm``, ``toa_ns``, ``ta``, ``aoa_deg``: the measurements (at least one is mapped).
- ``rsrq_db``, ``sinr_db``, ``cqi``, ``ri``, ``beam_id``, ``beam_rsrp_dbm``, ``doppler_hz``,
  ``serving``: optional PHY/MAC fields, kept with a row's measurements (a row with only these
  is not a report).

A wide table (``node_columns``: fingerprint sets with one row per sample and one column per node, such as
Antwerp's ``BS 1`` ... ``BS 72``) is melted to this layout first: each received cell of a node column becomes a
row with the node (the column's name) and its value (``node_value``, default ``rss_dbm``) plus the row's other
mapped cells; empty and ``missing`` cells are not received; ``columns`` maps no node or measurement key; without
``sample`` each row is a sample (``row-<n>``); rows with no received cell are counted (``no_node_heard``). Its
issues count cells, their row numbers name the file's rows, and ``rows_used`` counts file rows. Drive-test exports
write the cells a phone heard as column pairs instead (``node_pairs``: the serving cell's ``PCI``/``RSRP``, then
``NCell1``/``NRxLev1`` ...): each received value cell becomes a row whose node is its pair's id cell; a value whose
id cell is empty or ``missing`` is removed (``pair_without_node``).

A sample's truth is the one of its latest used row (by time, then by row) that has a valid
position, as the format keeps the truth at the last report time. Node positions come from
the ``node_*`` columns, from a nodes table (:func:`read_nodes`), or are unknown.

Never trusting the file: the size and the row count are capped, every cell is read as text
(Parquet: as stored) and converted here; a CSV row with another number of fields than the
header (a stray delimiter, a cut last line) is dropped; a cell that is not a number, a value outside the
format's ranges (e.g. -999 dBm) and a ``missing`` value ("not received") are removed and
counted; rows left without a sample id, node, time or measurement are dropped and counted,
by reason, with their first row numbers (data rows counted from 1, the header not counted).
Several rows of one node at one time in one sample are merged into one report (median;
circular mean for angles), as the format holds one report per node and time.
"""

from __future__ import annotations

import csv
import datetime
import fnmatch
import hashlib
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rflocal_core.errors import InvalidInputError, MeasurementFormatError, TableFormatError
from rflocal_core.geo import equirectangular_m, parse_crs, parse_degrees, to_wgs84
from rflocal_core.measurements.columns import COLUMN_KEYS, MEASUREMENT_KEYS, PHY_KEYS, parse_list
from rflocal_core.measurements.format import (
    ALT_RANGE_M,
    AOA_RANGE_DEG,
    FIELDS,
    LAT_RANGE_DEG,
    LON_RANGE_DEG,
    MODES,
    NODE_KEYS,
    RSS_RANGE_DBM,
    TA_RANGE,
    TOA_RANGE_NS,
    TX_POWER_RANGE_DBM,
    MeasurementSet,
    Node,
    Position,
    Report,
    Sample,
    read_capped,
)
from rflocal_core.measurements.quality import QualityReport

#: Kinds of table read by :func:`read_table`.
TABLE_KINDS: tuple[str, ...] = ("csv", "tsv", "parquet", "xlsx")

#: File name suffix -> table kind.
# .txt: drive-test apps (G-NetTrack) log tab-separated text; read as CSV, whose delimiter is found on the header line
TABLE_SUFFIXES: dict[str, str] = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet",
                                  ".pq": "parquet", ".xlsx": "xlsx"}

#: Largest table file accepted, in bytes (a day of drive tests fits; the Duke file is 1.7 MB).
MAX_TABLE_FILE_BYTES: int = 200 * 2**20

#: Most data rows accepted in one table.
MAX_TABLE_ROWS: int = 2_000_000

#: Largest nodes table (:func:`read_nodes`), in bytes.
MAX_NODES_FILE_BYTES: int = 20 * 2**20

#: Largest dataset a table may turn into: samples x time steps x node slots.
MAX_DATASET_CELLS: int = 100_000_000

#: Rows placing a node farther than this from its most frequent position are dropped.
NODE_POSITION_TOLERANCE_M: float = 5.0

#: Rows giving a node a transmit power farther than this from its most frequent one are counted.
TX_POWER_TOLERANCE_DB: float = 0.5

#: Samples whose rows give truths farther apart than this are counted (the latest is used).
TRUTH_TOLERANCE_M: float = 1.0

#: How many row numbers / values / sample ids an issue lists.
LISTED: int = 5

#: Internal columns of a wide table melted to the long layout: the node (a column's name), its value, the file's
#: row number and the sample id (``row-<n>``) of a table without sample ids.
WIDE_NODE, WIDE_VALUE, WIDE_ROW, WIDE_SAMPLE = "(node column)", "(node columns)", "(row)", "(row id)"

_RANGES: dict[str, tuple[float, float]] = {
    "node_lat": LAT_RANGE_DEG, "node_lon": LON_RANGE_DEG, "node_alt_m": ALT_RANGE_M,
    "lat": LAT_RANGE_DEG, "lon": LON_RANGE_DEG, "alt_m": ALT_RANGE_M,
    "rss_dbm": RSS_RANGE_DBM, "toa_ns": TOA_RANGE_NS, "ta": TA_RANGE, "aoa_deg": AOA_RANGE_DEG,
    "tx_power_dbm": TX_POWER_RANGE_DBM, "truth_lat": LAT_RANGE_DEG, "truth_lon": LON_RANGE_DEG,
    **{key: FIELDS[key].bounds for key in PHY_KEYS},
}
#: Keys whose values are integers.
_INTEGER_KEYS = ("ta", *(key for key in PHY_KEYS if FIELDS[key].kind == "integer"))
_PAIRS = (("lat", "lon"), ("node_lat", "node_lon"), ("truth_lat", "truth_lon"))
_POSITION_KEYS = tuple(key for pair in _PAIRS for key in pair)
# A frame attribute: the CSV is delimited by ';' or tabs, so "51,2134" is a decimal comma (a European locale's
# spreadsheet export), which a comma-delimited file could only hold quoted, as a thousands separator.
_DECIMAL_COMMA = "decimal_comma"
_DECIMAL_COMMA_CELL = r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$"
# A frame attribute: a workbook's sheet names.
_SHEETS = "sheets"
# An integer written as a float ("101.0"): the integer's digits.
_FLOAT_INTEGER = r"^([+-]?\d+)\.0+$"

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TableIssue:
    """One kind of row-level problem met while reading a table.

    Attributes
    ----------
    reason : str
        Machine name, e.g. ``"rss_dbm_not_a_number"``, ``"no_measurement"``.
    count : int
        Cells (value issues), rows (row issues) or samples (sample issues) concerned.
    action : str
        What was done: ``"value removed"``, ``"row dropped"``, ``"rows merged"``, ...
    fault : bool
        Whether this is bad data (``strict`` refuses it) rather than normal processing
        (values marked missing, repeated rows merged).
    detail : str
        What was expected, naming the key and the column.
    rows : tuple of int
        The first data rows concerned (counted from 1, header not counted).
    values : tuple of str
        The first offending values as found.
    samples : tuple of str
        The first sample ids concerned (sample issues).
    """

    reason: str
    count: int
    action: str
    fault: bool
    detail: str
    rows: tuple[int, ...] = ()
    values: tuple[str, ...] = ()
    samples: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "action": self.action, "fault": self.fault,
                               "detail": self.detail}
        for key in ("rows", "values", "samples"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        return out


@dataclass(frozen=True)
class TableReport:
    """What :func:`read_table` read, used and left out.

    ``rows - rows_used`` equals the sum of the counts of the issues whose action is
    ``"row dropped"`` (each dropped row is counted once, under its first reason).
    """

    kind: str
    rows: int
    rows_used: int
    samples: int
    reports: int
    nodes: int
    nodes_unknown_position: tuple[str, ...]
    issues: tuple[TableIssue, ...] = ()

    @property
    def faults(self) -> tuple[TableIssue, ...]:
        """The issues that are bad data (``strict`` refuses them)."""
        return tuple(issue for issue in self.issues if issue.fault)

    def quality(self) -> QualityReport:
        """The faults as a :class:`~rflocal_core.measurements.quality.QualityReport` (reasons ``table_*``).

        Import merges it with the checks of the measurements themselves, so one report (and
        ``strict``) covers the table's bad cells and rows too.
        """
        report = QualityReport()
        for issue in self.faults:
            unit = "samples" if issue.samples and not issue.rows else "reports"
            where = f"row {issue.rows[0]}" if issue.rows else ""
            found = f"got {issue.values[0]!r}" if issue.values else ""
            report.add(f"table_{issue.reason}", count=issue.count, unit=unit, what=f"{issue.detail} ({issue.action})",
                       sample_id=issue.samples[0] if issue.samples else None, where=where, message=found)
        return report

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: counts, and ``issues`` as reason -> {count, action, fault, detail, rows, ...}."""
        return {"kind": self.kind, "rows": self.rows, "rows_used": self.rows_used, "samples": self.samples,
                "reports": self.reports, "nodes": self.nodes,
                "nodes_unknown_position": list(self.nodes_unknown_position),
                "issues": {issue.reason: issue.to_dict() for issue in self.issues}}


@dataclass(frozen=True)
class TableImport:
    """The result of :func:`read_table`.

    Attributes
    ----------
    measurements : MeasurementSet
        Ready for :func:`rflocal_core.dataset.import_measurements` or ``dump_measurements``.
    report : TableReport
        Rows read and used, and the problems by reason.
    input_info : dict
        Provenance for the dataset attributes: file, sha256, kind, columns, mode, group_by,
        missing, nodes file, and the report.
    """

    measurements: MeasurementSet
    report: TableReport
    input_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableHeader:
    """The columns of a table and its first rows (as text), for choosing the column mapping."""

    kind: str
    columns: tuple[str, ...]
    rows: int
    preview: tuple[dict[str, str], ...]
    #: A workbook's sheet names (empty for other kinds); the header is the chosen sheet's.
    sheets: tuple[str, ...] = ()


class _Issues:
    """Collects :class:`TableIssue` in the order met."""

    def __init__(self) -> None:
        self.items: dict[str, TableIssue] = {}

    def add(self, reason: str, rows: np.ndarray, *, action: str, fault: bool, detail: str,
            values: Sequence[Any] = (), samples: Sequence[str] = (), count: int | None = None) -> None:
        n = int(len(rows) if count is None else count)
        if n == 0:
            return
        self.items[reason] = TableIssue(reason, n, action, fault, detail, tuple(int(r) for r in rows[:LISTED]),
                                        tuple(str(v) for v in list(values)[:LISTED]),
                                        tuple(str(s) for s in list(samples)[:LISTED]))

    def dropped(self) -> int:
        return sum(i.count for i in self.items.values() if i.action == "row dropped")


# --------------------------------------------------------------------------- the mapping


@dataclass(frozen=True)
class TableSpec:
    """How to read a table: the column of each key, the mode, the grouping and the missing values.

    Checked on construction (:class:`~rflocal_core.errors.InvalidInputError` naming the
    field); see :func:`read_table` for the meaning of each field.
    """

    columns: Mapping[str, str]
    mode: str = "ue"
    group_by: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    nodes_file: bool = False
    crs: str | None = None
    time_format: str | None = None
    sheet: str | None = None
    sequence_gap_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", _check_columns(self.columns))
        object.__setattr__(self, "sheet", _check_sheet(self.sheet))
        object.__setattr__(self, "crs", parse_crs(self.crs))
        object.__setattr__(self, "time_format", _check_time_format(self.time_format))
        object.__setattr__(self, "sequence_gap_s", _check_gap(self.sequence_gap_s))
        if self.mode not in MODES:
            msg = f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}"
            raise InvalidInputError(msg)
        object.__setattr__(self, "group_by", _check_names(self.group_by, "group_by"))
        object.__setattr__(self, "missing", _check_missing(self.missing))
        _check_key_combination(self)

    @property
    def wanted(self) -> list[str]:
        """Every column the mapping reads, once each, in mapping order then group_by order."""
        out: list[str] = []
        for name in (*self.columns.values(), *self.group_by):
            if name not in out:
                out.append(name)
        return out

    @property
    def mobile(self) -> bool:
        """Whether rows are mobile-sensor reports (emitter mode with lat/lon)."""
        return self.mode == "emitter" and "lat" in self.columns

    @property
    def truth_keys(self) -> tuple[str, str] | None:
        """The keys holding the truth: lat/lon in ue mode, else truth_lat/truth_lon, if mapped."""
        if self.mode == "ue" and "lat" in self.columns:
            return ("lat", "lon")
        return ("truth_lat", "truth_lon") if "truth_lat" in self.columns else None


def _check_columns(columns: Any) -> dict[str, str]:
    if not isinstance(columns, Mapping) or not columns:
        msg = f"columns: expected a mapping of keys to column names ({', '.join(COLUMN_KEYS)}), got {columns!r}"
        raise InvalidInputError(msg)
    unknown = [key for key in columns if key not in COLUMN_KEYS]
    if unknown:
        msg = (f"columns: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
               f"expected keys: {', '.join(COLUMN_KEYS)}")
        raise InvalidInputError(msg)
    for key, name in columns.items():
        if not isinstance(name, str) or not name.strip():
            msg = f"columns: {key}: expected a column name, got {name!r}"
            raise InvalidInputError(msg)
    return {key: columns[key].strip() for key in COLUMN_KEYS if key in columns}


def _check_time_format(fmt: Any) -> str | None:
    """A strftime format that can read back what it writes (None or "" for seconds / ISO 8601)."""
    if fmt is None or (isinstance(fmt, str) and not fmt.strip()):
        return None
    sample = datetime.datetime(2024, 7, 16, 10, 45, 21, tzinfo=datetime.timezone.utc)
    try:
        ok = isinstance(fmt, str) and "%" in fmt and bool(datetime.datetime.strptime(sample.strftime(fmt), fmt))
    except ValueError:
        ok = False
    if not ok:
        msg = (f"time_format: expected a strftime format such as '%Y.%m.%d_%H.%M.%S' or '%d/%m/%Y %H:%M:%S', "
               f"got {fmt!r}")
        raise InvalidInputError(msg)
    return fmt


def _check_gap(gap_s: Any) -> float | None:
    """A time gap in seconds: > 0, inf allowed (one track per sequence id, or the whole file)."""
    if gap_s is None:
        return None
    try:
        value = float(gap_s)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(gap_s, bool) or not value > 0:
        msg = f"sequence_gap_s: expected seconds above 0 (inf: no cut), got {gap_s!r}"
        raise InvalidInputError(msg)
    return value


def _check_sheet(sheet: Any) -> str | None:
    if sheet is None:
        return None
    if not isinstance(sheet, str) or not sheet.strip() or len(sheet.strip()) > 31:
        msg = f"sheet: expected a sheet name (1 to 31 characters, as Excel allows) or number, got {sheet!r}"
        raise InvalidInputError(msg)
    return sheet.strip()


def _check_names(names: Any, what: str) -> tuple[str, ...]:
    names = parse_list(names) if isinstance(names, str) else tuple(names or ())
    for name in names:
        if not isinstance(name, str) or not name.strip():
            msg = f"{what}: expected column names, got {name!r}"
            raise InvalidInputError(msg)
    if len(set(names)) != len(names):
        msg = f"{what}: expected each column once, got {', '.join(names)}"
        raise InvalidInputError(msg)
    return tuple(name.strip() for name in names)


def _check_missing(values: Any) -> tuple[str, ...]:
    values = parse_list(values) if isinstance(values, str) else tuple(values or ())
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
            msg = f"missing: expected values (numbers or text) that mark 'not received', got {value!r}"
            raise InvalidInputError(msg)
        out.append(str(value).strip())
    return tuple(out)


def _check_key_combination(spec: TableSpec) -> None:
    """Refuse mappings whose meaning is not defined (see the module docstring)."""
    keys = spec.columns
    problems = []
    if ("sample" in keys) == bool(spec.group_by):
        problems.append("give either the key sample (a sample id column) or group_by (the columns whose values "
                        "identify a sample, e.g. position and device), not " + ("both" if spec.group_by else "neither"))
    if not any(key in keys for key in MEASUREMENT_KEYS):
        problems.append(f"map at least one measurement key ({', '.join(MEASUREMENT_KEYS)})")
    for first, second in _PAIRS:
        if (first in keys) != (second in keys):
            given, absent = (first, second) if first in keys else (second, first)
            problems.append(f"{given} needs {absent} too")
    if "alt_m" in keys and "lat" not in keys:
        problems.append("alt_m needs lat/lon")
    if ("sequence" in keys or spec.sequence_gap_s is not None) and "time" not in keys:
        problems.append(f"{'sequence' if 'sequence' in keys else 'sequence_gap_s'} needs time (a track's samples "
                        "are ordered by their times)")
    if "node_alt_m" in keys and "node_lat" not in keys:
        problems.append("node_alt_m needs node_lat/node_lon")
    node_keys = [key for key in ("node_lat", "node_alt_m", "tx_power_dbm") if key in keys]
    if node_keys and "node" not in keys:
        problems.append(f"{node_keys[0]} describes a node: map node too")
    if spec.nodes_file and "node" not in keys:
        problems.append("a nodes table gives the positions of nodes: map node too")
    if "node_lat" in keys and spec.nodes_file:
        problems.append("give node positions either as node_lat/node_lon columns or as a nodes table, not both")
    problems += _mode_problems(spec)
    if problems:
        msg = f"columns: {problems[0]}; got {', '.join(f'{k}={v}' for k, v in keys.items())}"
        raise InvalidInputError(msg)


def _mode_problems(spec: TableSpec) -> list[str]:
    keys = spec.columns
    if spec.mode == "ue":
        out = [] if "node" in keys else ["ue mode: map node (the node, e.g. the cell, each row measures)"]
        if "lat" in keys and "truth_lat" in keys:
            out.append("ue mode: lat/lon are the device's position, i.e. the truth; give either lat/lon or "
                       "truth_lat/truth_lon")
        return out
    out = []
    if "tx_power_dbm" in keys:
        out.append("emitter mode: the nodes receive, so tx_power_dbm (a node's transmit power) does not apply")
    if "node" in keys and "lat" in keys:
        out.append("emitter mode: a row is either a fixed node's report (node) or a mobile sensor's report "
                   "(lat/lon), map one of them; a fixed node's position is node_lat/node_lon")
    elif "node" not in keys and "lat" not in keys:
        out.append("emitter mode: map node (fixed receivers) or lat/lon (mobile sensors)")
    return out


# --------------------------------------------------------------------------- reading the file


def table_kind(name: str | os.PathLike[str]) -> str | None:
    """The table kind of a file name by its suffix (``"csv"``, ``"tsv"``, ``"parquet"``), or None."""
    return TABLE_SUFFIXES.get(Path(name).suffix.lower())


def _read_source(source: Any, kind: str | None, max_bytes: int, what: str = "table") -> tuple[bytes, str, str | None]:
    """The bytes of ``source`` (a path or the bytes of an upload), a label for messages, the path."""
    return read_capped(source, max_bytes=max_bytes, what=what, error=TableFormatError,
                       upload_label=f"{what} ({kind or 'upload'})")


def _resolve_kind(kind: str | None, source: Any) -> str:
    if kind is None and isinstance(source, (str, os.PathLike)):
        kind = table_kind(source)
        if kind is None:
            msg = (f"{Path(source).name}: expected a table file ending in {', '.join(TABLE_SUFFIXES)}, "
                   f"got {Path(source).suffix or 'no suffix'!r}")
            raise TableFormatError(msg)
    if kind not in TABLE_KINDS:
        msg = f"kind: expected one of {', '.join(TABLE_KINDS)}, got {kind!r}"
        raise InvalidInputError(msg)
    return kind


def _decode(data: bytes, label: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        msg = (f"{label}: expected UTF-8 text, got byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}); "
               "save the table as UTF-8")
        raise TableFormatError(msg) from None
    if not text.strip():
        msg = f"{label}: expected a header line and rows, got an empty file"
        raise TableFormatError(msg)
    return text


def _csv_header(text: str, kind: str, label: str) -> tuple[str, list[str]]:
    """The delimiter and the header names, as written, of a CSV/TSV text (its first line)."""
    first = text.split("\n", 1)[0].rstrip("\r")
    if kind == "tsv":
        sep = "\t"
    else:  # a CSV saved with a European locale uses ';'
        counts = {sep: first.count(sep) for sep in (",", ";", "\t")}
        sep = max(counts, key=lambda s: (counts[s], s == ","))
    header = next(csv.reader([first], delimiter=sep), [])
    if not any(name.strip() for name in header):
        msg = f"{label}: expected a header line naming the columns on line 1, got {first[:60]!r}"
        raise TableFormatError(msg)
    return sep, header


def _check_wanted(names: Sequence[str], wanted: Sequence[str], spec: TableSpec | None, label: str) -> None:
    """Every mapped column exists, once; the error names the absent ones and the available ones."""
    absent = [name for name in wanted if name not in names]
    if absent:
        owners = {}
        if spec is not None:
            owners = {v: f"{k}={v}" for k, v in spec.columns.items()} | {v: f"group_by {v}" for v in spec.group_by}
        listed = ", ".join(repr(owners.get(name, name)) for name in absent)
        msg = (f"{label}: no column {listed} in the header; the columns are "
               f"{', '.join(repr(n) for n in names if n)}")
        raise TableFormatError(msg)
    twice = sorted({name for name in wanted if names.count(name) > 1})
    if twice:
        msg = f"{label}: column {twice[0]!r} appears {names.count(twice[0])} times in the header; rename the copies"
        raise TableFormatError(msg)


def _load_csv(data: bytes, kind: str, label: str, wanted: Sequence[str] | None, spec: TableSpec | None,
              max_rows: int) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """The wanted columns as text, and which rows have another number of fields than the header.

    Python's csv module reads it (quoted fields, quoted newlines), so a row with a stray
    delimiter, or a truncated last line, is seen rather than silently shifted or padded.
    Blank lines are skipped and not counted. A delimiter that ends every line of some writers
    (one more, empty, field than the header; or a header ending in an empty name) is no fault.
    """
    text = _decode(data, label)
    sep, header = _csv_header(text, kind, label)
    names = [name.strip() for name in header]
    wanted = list(names if wanted is None else wanted)
    _check_wanted(names, wanted, spec, label)
    index = [names.index(name) for name in wanted]
    # a trailing delimiter: after every row (one more empty field), or after the header (an empty last name)
    widths = {len(header), len(header) + 1} | ({len(header) - 1} if len(header) > 1 and not names[-1] else set())
    values: list[list[str]] = [[] for _ in wanted]
    ragged: list[bool] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        next(reader)
        for row in reader:
            if not row:
                continue
            if len(ragged) >= max_rows:
                raise _too_many_rows(label, max_rows + 1, max_rows, at_least=True)
            ok = len(row) in widths and (len(row) <= len(header) or not row[-1].strip())
            ragged.append(not ok)
            for column, k in zip(values, index):
                column.append(row[k] if ok and k < len(row) else "")
    except csv.Error as exc:
        msg = f"{label} line {reader.line_num}: not a readable {kind.upper()} row: {exc}"
        raise TableFormatError(msg) from None
    frame = pd.DataFrame({name: pd.Series(column, dtype=object) for name, column in zip(wanted, values)})
    frame.attrs[_DECIMAL_COMMA] = sep != ","
    return frame, names, np.asarray(ragged, dtype=bool)


def _load_parquet(data: bytes, label: str, wanted: Sequence[str] | None, spec: TableSpec | None,
                  max_rows: int) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        names = [str(n) for n in parquet.schema_arrow.names]
        wanted = list(names if wanted is None else wanted)
        _check_wanted(names, wanted, spec, label)
        if parquet.metadata.num_rows > max_rows:
            raise _too_many_rows(label, parquet.metadata.num_rows, max_rows)
        frame = parquet.read(columns=wanted).to_pandas()
    except TableFormatError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... on a damaged or foreign file
        msg = f"{label}: not a readable Parquet file: {' '.join(str(exc).split())[:200]}"
        raise TableFormatError(msg) from None
    for name in wanted:
        column = frame[name]
        if column.dtype == object and column.map(lambda v: isinstance(v, (list, dict, np.ndarray))).any():
            msg = f"{label}: column {name!r} holds lists or records; expected one value per row"
            raise TableFormatError(msg)
    return frame, names, np.zeros(len(frame), dtype=bool)


def _xlsx_cell(value: Any) -> str:
    """A worksheet cell as the text a CSV would hold: numbers as written, dates as ISO 8601, empty as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return _number_text(float(value))
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return str(value).strip()


def _load_xlsx(data: bytes, label: str, wanted: Sequence[str] | None, spec: TableSpec | None,
               max_rows: int, sheet: str | None = None) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """The wanted columns of an Excel workbook's sheet (``sheet``: a name or a number from 1; None: the first), as
    text (its first row names the columns); ``frame.attrs`` keeps the workbook's sheet names.

    openpyxl streams the sheet (read-only mode) and, with defusedxml installed, refuses XML entity tricks; cells
    hold their stored values (formulas: the value Excel cached). Rows are never ragged in a sheet.
    """
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        chosen = _worksheet(book, sheet, label)
        rows = chosen.iter_rows(values_only=True)
        header = [_xlsx_cell(v) for v in next(rows, ())]
        while header and not header[-1]:  # a sheet's used range may run past the last named column
            header.pop()
        names = header
        wanted = list(names if wanted is None else wanted)
        _check_wanted_in_sheet(names, wanted, spec, label, book, chosen)
        index = [names.index(name) for name in wanted]
        values: list[list[str]] = [[] for _ in wanted]
        count = 0
        for row in rows:
            if not any(v is not None and str(v).strip() for v in row):
                continue  # blank rows are skipped, as in a CSV
            count += 1
            if count > max_rows:
                raise _too_many_rows(label, count, max_rows, at_least=True)
            for column, k in zip(values, index):
                column.append(_xlsx_cell(row[k]) if k < len(row) else "")
        book.close()
    except TableFormatError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, KeyError, XML errors (defusedxml's too) on a foreign file
        cause = exc.__cause__ or exc.__context__  # openpyxl wraps the XML parser's error in a generic one
        why = f"{type(cause).__name__}: {cause}; " if cause is not None else ""
        msg = f"{label}: not a readable Excel workbook (.xlsx): {why}{' '.join(str(exc).split())[:200]}"
        raise TableFormatError(msg) from None
    if not any(names):
        msg = f"{label}: expected a header row naming the columns in the first row of sheet {chosen.title!r}, got none"
        raise TableFormatError(msg)
    frame = pd.DataFrame({name: pd.Series(column, dtype=object) for name, column in zip(wanted, values)})
    frame.attrs[_SHEETS] = tuple(book.sheetnames)
    return frame, names, np.zeros(len(frame), dtype=bool)


def _check_wanted_in_sheet(names: Sequence[str], wanted: Sequence[str], spec: TableSpec | None, label: str,
                           book: Any, chosen: Any) -> None:
    """:func:`_check_wanted`, naming the sheet read and the others when the workbook has several."""
    try:
        _check_wanted(names, wanted, spec, label)
    except TableFormatError as exc:
        if len(book.sheetnames) < 2:
            raise
        msg = (f"{exc} (sheet {chosen.title!r} read; the workbook's sheets are "
               f"{', '.join(repr(n) for n in book.sheetnames)}: choose one with sheet)")
        raise TableFormatError(msg) from None


def _worksheet(book: Any, sheet: str | None, label: str) -> Any:
    """The sheet named ``sheet``, else the one it numbers (from 1); the first without ``sheet``."""
    if sheet is None:
        return book.worksheets[0]
    if sheet in book.sheetnames:
        return book[sheet]
    if sheet.isdigit() and 1 <= int(sheet) <= len(book.worksheets):
        return book.worksheets[int(sheet) - 1]
    msg = (f"{label}: sheet: no sheet named or numbered {sheet!r}; the sheets are "
           f"{', '.join(repr(n) for n in book.sheetnames)}")
    raise TableFormatError(msg)


def _too_many_rows(label: str, rows: int, max_rows: int, *, at_least: bool = False) -> TableFormatError:
    counted = f"more than {max_rows:,} rows" if at_least else f"{rows:,} rows"
    msg = f"{label}: {counted} is more than the limit of {max_rows:,} rows; split the table into several files"
    return TableFormatError(msg)


def _load_frame(data: bytes, kind: str, label: str, wanted: Sequence[str] | None, spec: TableSpec | None,
                max_rows: int, sheet: str | None = None) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """The wanted columns (text for CSV/TSV, as stored for Parquet), the header, and the ragged rows
    (``sheet``: a workbook's sheet)."""
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        msg = f"max_rows: expected a positive integer, got {max_rows!r}"
        raise InvalidInputError(msg)
    if sheet is not None and kind != "xlsx":
        msg = f"sheet: applies to Excel workbooks (.xlsx); {label} is a {kind.upper()} table, got sheet={sheet!r}"
        raise InvalidInputError(msg)
    if kind == "parquet":
        frame, names, ragged = _load_parquet(data, label, wanted, spec, max_rows)
    elif kind == "xlsx":
        frame, names, ragged = _load_xlsx(data, label, wanted, spec, max_rows, sheet)
    else:
        frame, names, ragged = _load_csv(data, kind, label, wanted, spec, max_rows)
    if len(frame) == 0:
        msg = f"{label}: expected at least one row under the header, got none"
        raise TableFormatError(msg)
    return frame.reset_index(drop=True), names, ragged


def read_table_header(source: str | os.PathLike[str] | bytes, *, kind: str | None = None, preview_rows: int = 5,
                      max_bytes: int = MAX_TABLE_FILE_BYTES, max_rows: int = MAX_TABLE_ROWS,
                      sheet: str | None = None) -> TableHeader:
    """The columns of a table, its row count and its first rows as text (for choosing a mapping); of a workbook's
    ``sheet`` (default: the first), with the names of all its sheets.

    Raises
    ------
    TableFormatError
        The file is missing, too large, empty or not a readable table.
    """
    kind = _resolve_kind(kind, source)
    data, label, _ = _read_source(source, kind, max_bytes)
    frame, names, _ = _load_frame(data, kind, label, None, None, max_rows, _check_sheet(sheet))
    head = frame.head(preview_rows)
    preview = tuple({str(k): _show_cell(v) for k, v in row.items()} for row in head.to_dict("records"))
    return TableHeader(kind, tuple(names), len(frame), preview, frame.attrs.get(_SHEETS, ()))


def _show_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)




# --------------------------------------------------------------------------- cells


def _text_cells(column: pd.Series) -> np.ndarray:
    """Stripped text per row, ``""`` where absent (numbers as written: 7, not 7.0)."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return np.array([_number_text(v) for v in column.to_numpy(dtype=np.float64, na_value=np.nan)], dtype=object)
    return column.astype(object).where(column.notna(), "").astype(str).str.strip().to_numpy(dtype=object)


def _id_cells(text: np.ndarray) -> np.ndarray:
    """Node ids from a column's text; an integer written as a float is the integer ("101.0" -> "101"): a numeric id
    column with an empty cell is saved as floats by pandas and spreadsheets, and 101 must stay one node. Other text
    is kept as written ("0042", "1e3", "FF010714")."""
    return pd.Series(text, dtype=object).str.replace(_FLOAT_INTEGER, r"\1", regex=True).to_numpy(dtype=object)


def _number_text(value: float) -> str:
    if not math.isfinite(value):
        return "" if math.isnan(value) else str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _numbers(column: pd.Series, *, decimal_comma: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Values (NaN where absent or not a number), where a cell is not a number, and the text (or None).

    ``decimal_comma``: a cell such as ``-87,5`` is the number -87.5 (a ';'- or tab-delimited CSV).
    """
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(values)
        return np.where(bad, np.nan, values), bad, None
    text = _text_cells(column)
    empty = text == ""
    # U+2212 MINUS SIGN: what typesetting tools and some web tables write for -87
    cells = pd.Series(np.where(empty, None, text), dtype=object).str.replace("\u2212", "-", regex=False)
    values = pd.to_numeric(cells, errors="coerce")
    values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~empty & ~np.isfinite(values)
    if decimal_comma and bad.any():
        cells = cells.fillna("")
        comma = bad & cells.str.fullmatch(_DECIMAL_COMMA_CELL).to_numpy(dtype=bool)
        values = values.copy()  # to_numpy may hand back pandas' read-only buffer
        values[comma] = pd.to_numeric(cells[comma].str.replace(",", ".", regex=False), errors="coerce")
        bad = ~empty & ~np.isfinite(values)
    return np.where(bad, np.nan, values), bad, text


def _column_numbers(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`_numbers` of a loaded column, with the decimal comma its file allows (``;``- or tab-delimited CSV)."""
    return _numbers(frame[name], decimal_comma=frame.attrs.get(_DECIMAL_COMMA, False))


def _numbers_and_text(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A loaded column's numbers (:func:`_column_numbers`) and its cells as text (:func:`_text_cells`)."""
    numbers, _, text = _column_numbers(frame, name)
    return numbers, _text_cells(frame[name]) if text is None else text


def _missing_mask(values: np.ndarray, text: np.ndarray | None, missing: tuple[str, ...]) -> np.ndarray:
    """Cells equal to a ``missing`` value, as text or as a number (-101 matches "-101.0")."""
    numbers = []
    for value in missing:
        try:
            numbers.append(float(value))
        except ValueError:
            pass
    out = np.isin(values, np.array(numbers, dtype=np.float64)) if numbers else np.zeros(len(values), dtype=bool)
    if text is not None:
        out |= np.isin(text, np.array(missing, dtype=object))
    return out


def _in_range(key: str, values: np.ndarray) -> np.ndarray:
    lo, hi = _RANGES[key]
    with np.errstate(invalid="ignore"):
        ok = (values >= lo) & (values <= hi)
        if key in _INTEGER_KEYS:
            ok &= values == np.round(values)
    return ok | np.isnan(values)


def _expected(key: str) -> str:
    lo, hi = _RANGES[key]
    kind = "an integer" if key in _INTEGER_KEYS else "a number"
    return f"{kind} in [{lo:g}, {hi:g}]"


def _file_rows(frame: pd.DataFrame) -> np.ndarray:
    """The file's row number of each row (data rows from 1); a wide table's melted rows name the row they came from."""
    return frame[WIDE_ROW].to_numpy(np.int64) if WIDE_ROW in frame else np.arange(1, len(frame) + 1)


def _number_column(frame: pd.DataFrame, key: str, column: str, spec: TableSpec, issues: _Issues,
                   label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of a numeric key (NaN where removed), where a --missing value was, where a bad value was."""
    rows = _file_rows(frame)
    values, bad, text = _column_numbers(frame, column)
    if key in _POSITION_KEYS and not spec.crs:
        values, bad = _degree_cells(values, bad, text, key)
    shown = text if text is not None else frame[column].astype(str).to_numpy(dtype=object)
    missing = _missing_mask(values, text, spec.missing) if key in MEASUREMENT_KEYS and spec.missing else \
        np.zeros(len(values), dtype=bool)
    bad &= ~missing
    if bad.any() and not np.isfinite(values[~missing]).any():  # a wrong mapping, not a few bad cells
        msg = (f"{label}: column {column!r} ({key}) holds no numbers (e.g. {shown[bad][0]!r}); expected "
               f"{COLUMN_KEYS[key]}; check the column mapping")
        raise TableFormatError(msg)
    where = f"{key} (column {column!r})"
    expected = "a number" + (" of degrees (51.2133, 51.2133N, 51°12'48\"N)" if key in _POSITION_KEYS and not spec.crs
                             else "")
    issues.add(f"{key}_not_a_number", rows[bad], action="value removed", fault=True,
               detail=f"{where}: expected {expected}", values=shown[bad][:LISTED])
    values = np.where(missing, np.nan, values)
    if spec.crs and key in _POSITION_KEYS:  # checked once converted (_convert_positions)
        return values, missing, bad
    outside = ~_in_range(key, values)
    hint = ""
    if key in _POSITION_KEYS and outside.any() and np.nanmax(np.abs(values[outside])) > 360.0:
        hint = "; projected coordinates (metres)? give their crs, e.g. EPSG:32617 (UTM 17N)"
        if not np.isfinite(values[~outside]).any():  # every position is off: the coordinates, not a few cells
            msg = (f"{label}: column {column!r} ({key}) holds no value in degrees (e.g. {shown[outside][0]!r}); "
                   f"expected {_expected(key)}{hint}")
            raise TableFormatError(msg)
    issues.add(f"{key}_out_of_range", rows[outside], action="value removed", fault=True,
               detail=f"{where}: expected {_expected(key)}{hint}", values=shown[outside][:LISTED])
    return np.where(outside, np.nan, values), missing, bad | outside


def _degree_cells(values: np.ndarray, bad: np.ndarray, text: np.ndarray | None,
                  key: str) -> tuple[np.ndarray, np.ndarray]:
    """Position cells that are not plain numbers read as degrees with a hemisphere letter or as degrees, minutes
    and seconds (36°00'14.7"N, 78.9394W; :func:`~rflocal_core.geo.parse_degrees`); the rest stay bad."""
    if text is None or not bad.any():
        return values, bad
    axis = "lat" if key.endswith("lat") else "lon"
    where = np.flatnonzero(bad)
    unique, inverse = np.unique(text[where].astype(str), return_inverse=True)  # positions repeat: parse each once
    parsed = np.array([parse_degrees(cell, axis=axis) for cell in unique], dtype=np.float64)[inverse]
    values, bad = values.copy(), bad.copy()
    values[where], bad[where] = parsed, np.isnan(parsed)
    return values, bad


def _seconds(stamps: pd.Series) -> np.ndarray:
    return ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(np.float64, na_value=np.nan)


def _time_column(frame: pd.DataFrame, column: str, spec: TableSpec, issues: _Issues, label: str) -> np.ndarray:
    """Seconds per row (NaN where absent or unreadable): numbers, ISO 8601 timestamps (naive = UTC), or
    timestamps in ``spec.time_format``.

    Without a format, a text column is read as whichever of the two reads more of its cells; the other cells are
    bad. Numbers above 1e11 are epoch milliseconds (or micro-, nanoseconds): see :func:`_epoch_unit`.
    """
    series = frame[column]
    rows = _file_rows(frame)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return _seconds(pd.to_datetime(series, utc=True))
    if spec.time_format:
        text = _text_cells(series)
        empty = text == ""
        values = _seconds(pd.to_datetime(pd.Series(np.where(empty, None, text), dtype=object), utc=True,
                                         format=spec.time_format, errors="coerce"))
        bad, expected = ~empty & np.isnan(values), f"a timestamp in the format {spec.time_format!r}"
        if bad.any() and not np.isfinite(values).any():
            msg = (f"{label}: column {column!r} (time) holds no timestamp in the format {spec.time_format!r} "
                   f"(e.g. {text[bad][0]!r}); check time_format")
            raise TableFormatError(msg)
    else:
        values, bad, text = _column_numbers(frame, column)
        expected, numeric = "seconds or an ISO 8601 timestamp", True
        if text is not None and bad.any():  # seconds or timestamps: whichever reads more cells
            empty = text == ""
            seconds = _seconds(pd.to_datetime(pd.Series(np.where(empty, None, text), dtype=object), utc=True,
                                              format="ISO8601", errors="coerce"))
            if np.isfinite(seconds).sum() > np.isfinite(values).sum():
                values, bad, numeric = seconds, ~empty & np.isnan(seconds), False
            if not np.isfinite(values).any():
                msg = (f"{label}: column {column!r} (time) holds neither numbers (seconds) nor ISO 8601 timestamps "
                       f"(e.g. {text[bad][0]!r}); give time_format for other timestamps, or check the column mapping")
                raise TableFormatError(msg)
        if numeric:
            values = _epoch_unit(values, column, rows, issues)
    shown = text if text is not None else series.astype(str).to_numpy(dtype=object)
    issues.add("time_not_a_time", rows[bad], action="value removed", fault=True,
               detail=f"time (column {column!r}): expected {expected}", values=shown[bad][:LISTED])
    return values


#: Epoch times in seconds stay below 1e11 (the year 5138); larger numbers are a finer unit since 1970.
_EPOCH_UNITS = ((1e17, 1e9, "nanoseconds"), (1e14, 1e6, "microseconds"), (1e11, 1e3, "milliseconds"))


def _epoch_unit(values: np.ndarray, column: str, rows: np.ndarray, issues: _Issues) -> np.ndarray:
    """Numeric times in seconds: a column whose median is above 1e11 holds epoch ms (1e14: µs, 1e17: ns)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return values
    median = float(np.median(np.abs(finite)))
    for above, per_second, unit in _EPOCH_UNITS:
        if median > above:
            issues.add("time_unit", rows[np.isfinite(values)], action=f"read as {unit}", fault=False,
                       detail=f"time (column {column!r}): numbers around {median:.4g} are {unit} since 1970 (as "
                              f"seconds they would be past the year 5000), converted to seconds")
            return values / per_second
    return values


def _sample_codes(frame: pd.DataFrame, spec: TableSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """Per row the index of its sample (-1 where the id or a group_by cell is empty), and the ids (sample key)."""
    if "sample" in spec.columns:
        ids = _text_cells(frame[spec.columns["sample"]])
        codes, uniques = pd.factorize(pd.Series(np.where(ids == "", None, ids), dtype=object), use_na_sentinel=True)
        return codes.astype(np.int64), np.asarray(uniques, dtype=object)
    texts = {name: _text_cells(frame[name]) for name in spec.group_by}
    empty = np.zeros(len(frame), dtype=bool)
    for text in texts.values():
        empty |= text == ""
    codes = pd.DataFrame(texts).groupby(list(spec.group_by), sort=False).ngroup().to_numpy(np.int64)
    return np.where(empty, -1, codes), None


def _typed(frame: pd.DataFrame, spec: TableSpec, issues: _Issues, label: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """One typed column per key (text ids, float numbers with NaN), plus row, code, missing and bad flags."""
    n = len(frame)
    out: dict[str, Any] = {"row": _file_rows(frame)}
    codes, ids = _sample_codes(frame, spec)
    out["code"] = codes
    missing_cells = np.zeros(n, dtype=np.int64)
    bad_measurement = np.zeros(n, dtype=bool)
    for key, column in spec.columns.items():
        if key == "sample":
            continue
        if key in ("node", "sequence"):
            out[key] = _id_cells(_text_cells(frame[column]))
        elif key == "time":
            out["t"] = _time_column(frame, column, spec, issues, label)
        else:
            values, missing, bad = _number_column(frame, key, column, spec, issues, label)
            out[key] = values
            missing_cells += missing
            if key in MEASUREMENT_KEYS:
                bad_measurement |= bad
    if spec.crs:
        _convert_positions(out, spec, issues, label)
    if spec.missing:
        listed = ", ".join(spec.missing)
        issues.add("missing_value", out["row"][missing_cells > 0], action="value removed (not received)",
                   fault=False, detail=f"measurement cells equal to a missing value ({listed})",
                   count=int(missing_cells.sum()))
    out["missing_any"] = missing_cells > 0
    out["bad_any"] = bad_measurement
    return pd.DataFrame(out), ids


def _convert_positions(out: dict[str, Any], spec: TableSpec, issues: _Issues, label: str) -> None:
    """Position pairs in ``spec.crs`` (lat = y, lon = x) -> WGS84 degrees in place; a point off the Earth is removed."""
    for lat_key, lon_key in _PAIRS:
        if lat_key not in out:
            continue
        y, x = out[lat_key], out[lon_key]
        lat, lon = to_wgs84(x, y, spec.crs)
        bad = np.isfinite(x) & np.isfinite(y) & np.isnan(lat)
        where = f"{lat_key}/{lon_key} (columns {spec.columns[lat_key]!r}, {spec.columns[lon_key]!r})"
        if bad.any() and not np.isfinite(lat).any():  # the wrong crs, or x and y swapped: not a few bad cells
            i = int(np.flatnonzero(bad)[0])
            msg = (f"{label}: {where} hold no point of {spec.crs} in its area of use (e.g. y {y[i]:.10g}, "
                   f"x {x[i]:.10g}); expected y (northing) in the lat column and x (easting) in the lon column, in "
                   "that crs")
            raise TableFormatError(msg)
        issues.add(f"{lat_key}_out_of_range", out["row"][bad], action="value removed", fault=True,
                   detail=f"{where}: expected y/x coordinates of a point in the area of use of {spec.crs}",
                   values=[f"{a:.10g}, {b:.10g}" for a, b in zip(y[bad][:LISTED], x[bad][:LISTED], strict=True)])
        out[lat_key], out[lon_key] = lat, lon


# --------------------------------------------------------------------------- rows


def _drop_rows(t: pd.DataFrame, spec: TableSpec, issues: _Issues, fields: int) -> pd.DataFrame:
    """The rows that can become a report; each dropped row is counted once, under its first reason."""
    keep = np.ones(len(t), dtype=bool)
    rows = t["row"].to_numpy()

    def drop(reason: str, mask: np.ndarray, detail: str, *, fault: bool = True) -> None:
        nonlocal keep
        mask = mask & keep
        issues.add(reason, rows[mask], action="row dropped", fault=fault, detail=detail)
        keep &= ~mask

    drop("wrong_field_count", t["ragged"].to_numpy(),
         f"rows with another number of fields than the header's {fields} (a stray delimiter or a cut line)")
    if "sample" in spec.columns:
        what = f"rows without a sample id (column {spec.columns['sample']!r})"
    else:
        what = f"rows with an empty group_by cell ({', '.join(spec.group_by)})"
    drop("no_sample", t["code"].to_numpy() < 0, what)
    if "t" in t:
        drop("no_time", np.isnan(t["t"].to_numpy()), f"rows without a readable time (column {spec.columns['time']!r})")
    if "sequence" in t:
        drop("no_sequence", t["sequence"].to_numpy() == "",
             f"rows without a sequence id (column {spec.columns['sequence']!r})")
    if spec.mobile:
        ok = np.isfinite(t["lat"].to_numpy()) & np.isfinite(t["lon"].to_numpy())
        drop("no_position", ~ok, "emitter mode, mobile sensors: rows without a valid lat/lon "
             f"(columns {spec.columns['lat']!r}, {spec.columns['lon']!r})")
    else:
        drop("no_node", t["node"].to_numpy() == "", f"rows without a node id (column {spec.columns['node']!r})")
    has = np.zeros(len(t), dtype=bool)
    for key in MEASUREMENT_KEYS:
        if key in t:
            has |= np.isfinite(t[key].to_numpy())
    not_received = ~has & t["missing_any"].to_numpy() & ~t["bad_any"].to_numpy()
    drop("not_received", not_received, "rows whose every measurement is a missing value (not received)",
         fault=False)
    mapped = ", ".join(f"{k} ({spec.columns[k]!r})" for k in MEASUREMENT_KEYS if k in spec.columns)
    drop("no_measurement", ~has, f"rows without a valid measurement in {mapped}")
    return t[keep].reset_index(drop=True)


def _distance_m(lat: np.ndarray, lon: np.ndarray, lat0: np.ndarray, lon0: np.ndarray) -> np.ndarray:
    """Equirectangular distance in metres (exact enough for tolerances of metres)."""
    return np.hypot(*equirectangular_m(lat, lon, lat0, lon0))


def _most_frequent(t: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per node, the most frequent value of ``keys`` among rows where all are finite (first met on ties)."""
    ok = np.ones(len(t), dtype=bool)
    for key in keys:
        ok &= np.isfinite(t[key].to_numpy())
    sub = t.loc[ok, ["node", *keys]]
    if sub.empty:
        return pd.DataFrame({key: pd.Series(dtype=np.float64) for key in keys},
                            index=pd.Index([], dtype=object, name="node"))
    counts = sub.groupby(["node", *keys], sort=False).size().reset_index(name="n")
    best = counts.loc[counts.groupby("node", sort=False)["n"].idxmax()]
    return best.set_index("node")[list(keys)]


def _node_positions(t: pd.DataFrame, spec: TableSpec, issues: _Issues) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Drop rows that place a node elsewhere than its most frequent position; the position per node."""
    out: dict[str, dict[str, float]] = {}
    if "node_lat" not in t:
        return t, out
    best = _most_frequent(t, ("node_lat", "node_lon"))
    ref = best.reindex(t["node"].to_numpy())
    lat, lon = t["node_lat"].to_numpy(), t["node_lon"].to_numpy()
    far = np.isfinite(lat) & np.isfinite(lon) & (
        _distance_m(lat, lon, ref["node_lat"].to_numpy(np.float64), ref["node_lon"].to_numpy(np.float64))
        > NODE_POSITION_TOLERANCE_M)
    issues.add("node_position_conflict", t["row"].to_numpy()[far], action="row dropped", fault=True,
               detail=f"rows placing their node more than {NODE_POSITION_TOLERANCE_M:g} m from its most frequent "
                      f"position (columns {spec.columns['node_lat']!r}, {spec.columns['node_lon']!r}); a node is fixed",
               values=t["node"].to_numpy()[far][:LISTED])
    t = t[~far].reset_index(drop=True)
    for node, row in best.iterrows():
        out[str(node)] = {"lat": float(row["node_lat"]), "lon": float(row["node_lon"])}
    if "node_alt_m" in t:
        alt = t.loc[np.isfinite(t["node_lat"].to_numpy())].groupby("node", sort=False)["node_alt_m"].median()
        for node, value in alt.items():
            if node in out and math.isfinite(value):
                out[node]["alt_m"] = float(value)
    return t, out


def _node_powers(t: pd.DataFrame, spec: TableSpec, issues: _Issues) -> dict[str, float]:
    """The most frequent transmit power per node; rows that disagree are counted (and kept)."""
    if "tx_power_dbm" not in t:
        return {}
    best = _most_frequent(t, ("tx_power_dbm",))["tx_power_dbm"]
    ref = best.reindex(t["node"].to_numpy()).to_numpy(np.float64)
    power = t["tx_power_dbm"].to_numpy()
    with np.errstate(invalid="ignore"):
        off = np.isfinite(power) & (np.abs(power - ref) > TX_POWER_TOLERANCE_DB)
    issues.add("tx_power_conflict", t["row"].to_numpy()[off], action="kept; the node's most frequent power is used",
               fault=True, detail=f"rows giving their node a transmit power more than {TX_POWER_TOLERANCE_DB:g} dB "
                                  f"from its most frequent one (column {spec.columns['tx_power_dbm']!r})",
               values=power[off][:LISTED])
    return {str(node): float(value) for node, value in best.items()}


def _natural_key(text: str) -> tuple:
    parts = []
    for chunk in "".join(ch if ch.isdigit() else f" {ch} " for ch in text).split():
        parts.append((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk))
    return tuple(parts)


def _build_nodes(t: pd.DataFrame, spec: TableSpec, table: Mapping[str, Node] | None, issues: _Issues,
                 label: str) -> tuple[pd.DataFrame, tuple[Node, ...]]:
    """The nodes the rows report (natural id order), positioned from the columns, the nodes table, or unknown."""
    if spec.mobile:
        return t, ()
    t, positions = _node_positions(t, spec, issues)
    powers = _node_powers(t, spec, issues)
    nodes = []
    for node_id in sorted(pd.unique(t["node"].to_numpy()), key=_natural_key):
        given = table.get(node_id) if table is not None else None
        fields: dict[str, Any] = {}
        if given is not None:
            fields = {k: getattr(given, k) for k in ("lat", "lon", "x_m", "y_m", "alt_m", "tx_power_dbm")}
        fields.update(positions.get(node_id, {}))
        if node_id in powers:
            fields["tx_power_dbm"] = powers[node_id]
        try:
            nodes.append(Node(node_id, **fields))
        except MeasurementFormatError as exc:
            msg = f"{label}: node {node_id!r}: {exc}"
            raise TableFormatError(msg) from None
    if table is not None:
        absent = [node.id for node in nodes if node.id not in table]
        issues.add("nodes_not_in_nodes_table", np.zeros(0), action="kept with an unknown position", fault=False,
                   detail="node ids of the table that the nodes table does not list", values=absent,
                   count=len(absent))
    return t, tuple(nodes)


# --------------------------------------------------------------------------- samples


def _with_times(t: pd.DataFrame) -> pd.DataFrame:
    """``t_s``: seconds since the earliest row of the sample, or of its track (``track``: see :func:`_tracks`); 0
    without a time column."""
    if "t" in t:
        t_s = t["t"] - t.groupby("track" if "track" in t else "code", sort=False)["t"].transform("min")
        return t.assign(t_s=t_s.to_numpy(np.float64))
    return t.assign(t_s=np.zeros(len(t)))


def _tracks(t: pd.DataFrame, spec: TableSpec, sample_id: Mapping[int, str],
            issues: _Issues) -> tuple[pd.DataFrame, dict[int, str]]:
    """Each sample's sequence as a ``track`` column, and sample code -> sequence: the ``sequence`` cell of the
    sample's earliest row (by time, then row), cut at time gaps (``sequence_gap_s``); rows naming another sequence
    than their sample's are counted."""
    if "sequence" not in t and spec.sequence_gap_s is None:
        return t, {}
    by_code = t.sort_values(["t", "row"], kind="stable").groupby("code", sort=False)
    first = by_code["sequence"].first() if "sequence" in t else pd.Series("track", index=by_code["t"].first().index)
    if "sequence" in t:
        other = t["sequence"].to_numpy(dtype=object) != t["code"].map(first).to_numpy(dtype=object)
        codes = np.unique(t["code"].to_numpy()[other])
        issues.add("sequence_varies", t["row"].to_numpy()[other], action="the sample's earliest row's sequence is "
                   "kept", fault=True, detail=f"rows whose sequence (column {spec.columns['sequence']!r}) is not "
                   "the one of their sample's earliest row; a sample belongs to one track",
                   samples=[sample_id[int(c)] for c in codes[:LISTED]])
    if spec.sequence_gap_s is not None:
        first = _cut_at_gaps(first, by_code["t"].min(), by_code["t"].max(), spec.sequence_gap_s)
    return t.assign(track=t["code"].map(first).to_numpy(dtype=object)), {int(c): str(q) for c, q in first.items()}


def _cut_at_gaps(base: pd.Series, start: pd.Series, end: pd.Series, gap_s: float) -> pd.Series:
    """Sample code -> track: ``base`` (code -> sequence) with a new track wherever a sample starts more than
    ``gap_s`` after every earlier sample of its sequence ended; a sequence cut in k tracks gives ``<id>-1`` ...
    ``<id>-k``."""
    f = pd.DataFrame({"base": base, "start": start, "end": end}).sort_values(["base", "start"], kind="stable")
    ended = f.groupby("base", sort=False)["end"].cummax().groupby(f["base"], sort=False).shift()
    piece = (f["start"] - ended > gap_s).groupby(f["base"], sort=False).cumsum()
    pieces = piece.groupby(f["base"], sort=False).transform("max")
    named = [str(b) if n == 0 else f"{b}-{k + 1}" for b, k, n in zip(f["base"], piece, pieces, strict=True)]
    return pd.Series(named, index=f.index, dtype=object)


def _sample_ids(t: pd.DataFrame, ids: np.ndarray | None) -> dict[int, str]:
    """Sample code -> id: the sample key, or ``row-<first row>`` for samples grouped by columns."""
    first = t.groupby("code", sort=False)["row"].min()
    if ids is not None:
        return {int(code): str(ids[code]) for code in first.index}
    return {int(code): f"row-{int(row)}" for code, row in first.items()}


def _merge_duplicates(t: pd.DataFrame, sample_id: Mapping[int, str], issues: _Issues) -> pd.DataFrame:
    """One row per (sample, node, time): repeated rows merged (median; circular mean for the angle)."""
    grouped = t.groupby(["code", "node", "t_s"], sort=False)
    size = grouped["row"].transform("size").to_numpy()
    if not (size > 1).any():
        return t
    merged = grouped.cumcount().to_numpy() > 0  # not by row number: a row of node pairs may name a node twice
    codes = np.unique(t["code"].to_numpy()[merged])
    issues.add("duplicate_reports_merged", t["row"].to_numpy()[merged], action="rows merged", fault=False,
               detail="rows repeating a node at the same time in a sample, merged into one report (the median "
                      "of each measurement; the circular mean of angles)",
               samples=[sample_id[int(c)] for c in codes[:LISTED]])
    agg: dict[str, Any] = {"row": "min"}
    work = t
    for key in ("rss_dbm", "toa_ns", "ta", *PHY_KEYS):
        if key in t:
            agg[key] = "median"
    if "aoa_deg" in t:
        rad = np.radians(t["aoa_deg"].to_numpy())
        work = t.assign(_sin=np.sin(rad), _cos=np.cos(rad))
        agg.update(_sin="mean", _cos="mean")
    out = work.groupby(["code", "node", "t_s"], sort=False).agg(agg).reset_index()
    for key in _INTEGER_KEYS:  # the median of an even count of integers may fall between two
        if key in out:
            out[key] = np.round(out[key].to_numpy())
    if "aoa_deg" in t:
        deg = np.degrees(np.arctan2(out.pop("_sin").to_numpy(), out.pop("_cos").to_numpy())) % 360.0
        out["aoa_deg"] = np.where(np.isfinite(deg), np.round(deg, 6) % 360.0, np.nan)
    return out


def _truths(t: pd.DataFrame, spec: TableSpec, sample_id: Mapping[int, str], issues: _Issues) -> dict[int, Position]:
    """Sample code -> truth: the latest row (by time, then row) with a valid position."""
    keys = spec.truth_keys
    if keys is None:
        return {}
    lat, lon = t[keys[0]].to_numpy(), t[keys[1]].to_numpy()
    sub = t[np.isfinite(lat) & np.isfinite(lon)]
    if sub.empty:
        return {}
    ordered = sub.sort_values(["code", "t_s", "row"], kind="stable")
    last = ordered.groupby("code", sort=False).tail(1)
    with_alt = spec.mode == "ue" and keys[0] == "lat" and "alt_m" in t
    out = {}
    for row in last.itertuples(index=False):
        alt = getattr(row, "alt_m") if with_alt else math.nan
        out[int(row.code)] = Position(lat=float(getattr(row, keys[0])), lon=float(getattr(row, keys[1])),
                                      alt_m=float(alt) if math.isfinite(alt) else None)
    spread = sub.groupby("code", sort=False).agg(lat0=(keys[0], "min"), lat1=(keys[0], "max"),
                                                 lon0=(keys[1], "min"), lon1=(keys[1], "max"))
    far = _distance_m(spread["lat1"].to_numpy(), spread["lon1"].to_numpy(), spread["lat0"].to_numpy(),
                      spread["lon0"].to_numpy()) > TRUTH_TOLERANCE_M
    varying = [sample_id[int(code)] for code in spread.index[far]]
    issues.add("truth_varies", np.zeros(0), action="the latest row's position is the truth", fault=False,
               detail=f"samples whose rows give positions ({spec.columns[keys[0]]!r}, {spec.columns[keys[1]]!r}) "
                      f"more than {TRUTH_TOLERANCE_M:g} m apart", samples=varying, count=len(varying))
    return out


def _value(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _reports(t: pd.DataFrame, spec: TableSpec) -> list[Report]:
    """One :class:`Report` per row of ``t`` (node reports, or mobile-sensor reports with their position)."""
    n = len(t)
    col = {key: (t[key].to_numpy() if key in t else np.full(n, np.nan)) for key in
           ("rss_dbm", "toa_ns", "ta", "aoa_deg", "lat", "lon", "alt_m")}
    t_s = t["t_s"].to_numpy()
    out = []
    if spec.mobile:
        for k in range(n):
            out.append(Report(t_s=float(t_s[k]), rss_dbm=_value(col["rss_dbm"][k]), toa_ns=_value(col["toa_ns"][k]),
                              ta=None if np.isnan(col["ta"][k]) else int(col["ta"][k]),
                              aoa_deg=_value(col["aoa_deg"][k]), lat=float(col["lat"][k]), lon=float(col["lon"][k]),
                              alt_m=_value(col["alt_m"][k])))
        return out
    node = t["node"].to_numpy()
    phy = {key: t[key].to_numpy() for key in PHY_KEYS if key in t}
    for k in range(n):
        extra = {key: (_value(v[k]) if FIELDS[key].kind == "number" else None if np.isnan(v[k]) else int(v[k]))
                 for key, v in phy.items()}
        out.append(Report(node=str(node[k]), t_s=float(t_s[k]), rss_dbm=_value(col["rss_dbm"][k]),
                          toa_ns=_value(col["toa_ns"][k]), ta=None if np.isnan(col["ta"][k]) else int(col["ta"][k]),
                          aoa_deg=_value(col["aoa_deg"][k]), **extra))
    return out


def _samples(t: pd.DataFrame, spec: TableSpec, ids: np.ndarray | None, issues: _Issues,
             label: str) -> tuple[Sample, ...]:
    """The samples of the kept rows, in the order of their first row in the file."""
    sample_id = _sample_ids(t, ids)
    t, sequence = _tracks(t, spec, sample_id, issues)
    t = _with_times(t)
    truths = _truths(t, spec, sample_id, issues)
    if not spec.mobile:
        t = _merge_duplicates(t, sample_id, issues)
    t = t.sort_values(["code", "t_s", "row"], kind="stable").reset_index(drop=True)
    try:
        reports = _reports(t, spec)
    except MeasurementFormatError as exc:  # the cells were checked; this guards the checks
        msg = f"{label}: {exc}"
        raise TableFormatError(msg) from None
    codes = t["code"].to_numpy()
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(codes)]])
    out = []
    for k in range(len(starts)):  # codes follow the order of each sample's first row in the file
        code = int(codes[starts[k]])
        out.append(Sample(sample_id[code], tuple(reports[starts[k]:ends[k]]), truths.get(code), sequence.get(code)))
    return tuple(out)


# --------------------------------------------------------------------------- nodes table

_NODE_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "node", "nodeid", "name", "pci", "cell", "cellid", "gateway", "gatewayid", "site", "siteid"),
    "lat": ("lat", "latitude", "nodelat", "northing"),
    "lon": ("lon", "lng", "long", "longitude", "nodelon", "easting"),
    "alt_m": ("altm", "alt", "altitude", "heightm", "height", "nodealtm"),
    "tx_power_dbm": ("txpowerdbm", "txpower"),
    "carrier_hz": ("carrierhz", "carrier", "freqhz", "frequencyhz"),
}


def read_nodes(source: str | os.PathLike[str] | bytes, *, kind: str | None = None,
               max_bytes: int = MAX_NODES_FILE_BYTES, crs: str | None = None) -> tuple[Node, ...]:
    """Read a nodes table: a table (CSV, TSV, TXT, Parquet, Excel) with columns id, lat, lon[, alt_m][, tx_power_dbm]
    [, carrier_hz], or JSON.

    With ``crs``, the lat column holds y (also found as a column named ``northing``) and the lon column x
    (``easting``).

    JSON is a list of node objects as in ``rflocal-measurements/1`` (``id``, ``lat``, ``lon``,
    ``alt_m``, ``tx_power_dbm``, or ``"position": null``), or an object with such a ``nodes``
    list (e.g. an ``rflocal-measurements/1`` file). In a CSV, a node whose lat and lon cells
    are both empty has an unknown position. Column names are matched loosely (``latitude``,
    ``Lon``, ``node_id``, ...). An integer written as a float is the integer (``101.0`` is the node ``101``), as in
    :func:`read_table`, so the two name a node alike.

    Parameters
    ----------
    kind : {"csv", "tsv", "parquet", "xlsx", "json"}, optional
        Needed for bytes; a path's suffix gives it otherwise.
    crs : str, optional
        The coordinates of a table's lat (y) and lon (x) columns (:func:`~rflocal_core.geo.parse_crs`);
        None for WGS84 degrees. JSON nodes are WGS84 by their format.

    Raises
    ------
    TableFormatError
        The file is missing, too large or malformed; the message names the row or entry.
    """
    if kind is None and isinstance(source, (str, os.PathLike)):
        suffix = Path(source).suffix.lower()
        kind = "json" if suffix == ".json" else TABLE_SUFFIXES.get(suffix)
    if kind != "json" and kind not in TABLE_KINDS:
        msg = (f"nodes: expected a .json nodes table or one ending in {', '.join(TABLE_SUFFIXES)}, got "
               f"{kind or Path(str(source)).suffix!r}")
        raise InvalidInputError(msg)
    data, label, _ = _read_source(source, kind, max_bytes, what="nodes table")
    nodes = _nodes_from_json(data, label) if kind == "json" else _nodes_from_csv(data, kind, label, parse_crs(crs))
    seen: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.id in seen:
            msg = f"{label}: node {node.id!r} is listed twice (entries {seen[node.id] + 1} and {i + 1}); expected unique ids"
            raise TableFormatError(msg)
        seen[node.id] = i
    if not nodes:
        msg = f"{label}: expected at least one node, got none"
        raise TableFormatError(msg)
    return tuple(nodes)


def _nodes_from_json(data: bytes, label: str) -> list[Node]:
    import json

    try:
        doc = json.loads(_decode(data, label))
    except json.JSONDecodeError as exc:
        msg = f"{label}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise TableFormatError(msg) from None
    items = doc.get("nodes") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        msg = f'{label}: expected a list of nodes, or an object with a "nodes" list, got a {type(doc).__name__}'
        raise TableFormatError(msg)
    out = []
    for i, item in enumerate(items):
        where = f"{label}: nodes[{i}]"
        if not isinstance(item, dict):
            msg = f'{where}: expected an object {{"id": ..., "lat": ..., "lon": ...}}, got {type(item).__name__}'
            raise TableFormatError(msg)
        unknown = [key for key in item if key not in NODE_KEYS]
        if unknown:
            msg = f"{where}: unknown key {unknown[0]!r}; expected {', '.join(NODE_KEYS)}"
            raise TableFormatError(msg)
        if item.get("position", None) is not None:
            msg = f'{where}.position: expected null (position unknown), got {item["position"]!r}'
            raise TableFormatError(msg)
        fields = {key: item[key] for key in NODE_KEYS if key in item and key != "position"}
        try:
            out.append(Node(**fields))
        except (MeasurementFormatError, TypeError) as exc:
            path = getattr(exc, "path", "")
            msg = f"{where}{'.' + path if path else ''}: {getattr(exc, 'detail', exc)}"
            raise TableFormatError(msg) from None
    return out


def _nodes_from_csv(data: bytes, kind: str, label: str, crs: str | None) -> list[Node]:
    frame, names, ragged = _load_frame(data, kind, label, None, None, MAX_TABLE_ROWS)
    if ragged.any():
        row = int(np.flatnonzero(ragged)[0]) + 1
        msg = f"{label} row {row}: expected {len(names)} fields like the header, got another number"
        raise TableFormatError(msg)
    normal = {"".join(ch for ch in name.lower() if ch.isalnum()): name for name in names}
    chosen = {key: next((normal[g] for g in guesses if g in normal), None)
              for key, guesses in _NODE_TABLE_COLUMNS.items()}
    absent = [key for key in ("id", "lat", "lon") if chosen[key] is None]
    if absent:
        msg = (f"{label}: expected columns id, lat, lon[, alt_m][, tx_power_dbm]; found no {', '.join(absent)} "
               f"column among {', '.join(repr(n) for n in names)}")
        raise TableFormatError(msg)
    ids = _id_cells(_text_cells(frame[chosen["id"]]))
    values = {key: _column_numbers(frame, name) for key, name in chosen.items() if key != "id" and name is not None}
    if crs:
        values = _nodes_to_wgs84(values, crs, label, chosen)
    else:  # 51°12'48"N in a site list typed by hand
        for key in ("lat", "lon"):
            numbers, bad, text = values[key]
            values[key] = (*_degree_cells(numbers, bad, text, key), text)
    out = []
    for i in range(len(frame)):
        where = f"{label} row {i + 1}"
        if not ids[i]:
            msg = f"{where}, column {chosen['id']!r}: expected a node id, got an empty cell"
            raise TableFormatError(msg)
        fields: dict[str, float | None] = {}
        for key, (numbers, bad, text) in values.items():
            if bad[i]:
                msg = f"{where}, column {chosen[key]!r}: expected a number, got {text[i]!r}"
                raise TableFormatError(msg)
            fields[key] = None if np.isnan(numbers[i]) else float(numbers[i])
        try:
            out.append(Node(str(ids[i]), **fields))
        except MeasurementFormatError as exc:
            msg = f"{where}, column {chosen.get(exc.path) or exc.path!r}: {exc.detail}"
            raise TableFormatError(msg) from None
    return out


def _nodes_to_wgs84(values: dict[str, tuple], crs: str, label: str, chosen: Mapping[str, str | None]) -> dict:
    """A nodes table's lat (y) / lon (x) numbers in ``crs`` -> WGS84; a point off the Earth is refused."""
    (y, y_bad, y_text), (x, x_bad, x_text) = values["lat"], values["lon"]
    lat, lon = to_wgs84(x, y, crs)
    off = np.flatnonzero(np.isfinite(x) & np.isfinite(y) & np.isnan(lat))
    if off.size:
        i = int(off[0])
        msg = (f"{label} row {i + 1}, columns {chosen['lat']!r}/{chosen['lon']!r}: expected y/x coordinates in {crs} "
               f"of a point in its area of use, got {y[i]:.10g}, {x[i]:.10g}")
        raise TableFormatError(msg)
    return values | {"lat": (lat, y_bad, y_text), "lon": (lon, x_bad, x_text)}


# --------------------------------------------------------------------------- the reader


def read_table(
    source: str | os.PathLike[str] | bytes,
    *,
    columns: Mapping[str, str], mode: str = "ue", group_by: Sequence[str] = (), missing: Sequence[str | float] = (),
    nodes: str | os.PathLike[str] | bytes | Sequence[Node] | None = None, kind: str | None = None, strict: bool = False,
    max_bytes: int = MAX_TABLE_FILE_BYTES, max_rows: int = MAX_TABLE_ROWS,
    node_columns: Sequence[str] = (), node_value: str = "rss_dbm", node_pairs: Sequence[str] = (),
    crs: str | None = None, time_format: str | None = None, sheet: str | None = None,
    sequence_gap_s: float | None = None,
) -> TableImport:
    """Read a table into a :class:`MeasurementSet`: long (one row per measurement) or wide (``node_columns``,
    ``node_pairs``).

    Parameters
    ----------
    source : str, Path or bytes
        A ``.csv``, ``.tsv``, ``.txt``, ``.parquet`` or ``.xlsx`` file, or its bytes (then give ``kind``).
    columns : mapping of str to str
        Key -> column name; keys from :data:`COLUMN_KEYS` (see the module docstring).
    mode : {"ue", "emitter"}
        ``ue``: the device that measures is located (``lat``/``lon`` are its position, the
        truth); ``emitter``: an unknown transmitter is located (``lat``/``lon`` are a mobile
        sensor's position, the truth is ``truth_lat``/``truth_lon``).
    group_by : sequence of str
        Columns whose values identify a sample, when the table has no sample id.
    missing : sequence of str or float
        Measurement values that mean "not received" (e.g. -101, -200, "NA"); removed and counted.
    nodes : path, bytes or sequence of Node, optional
        A nodes table (:func:`read_nodes`; bytes are read as CSV) or the nodes themselves.
        Without it (and without ``node_lat``/``node_lon``) the nodes' positions are unknown.
    kind, strict, max_bytes, max_rows : str, bool, int, int
        The table kind (csv, tsv, parquet, xlsx; default from the suffix); refuse the table at its first fault (a
        bad cell or a dropped row), naming it; caps on the file (200 MiB) and on its data rows (2,000,000).
    node_columns, node_value, node_pairs : sequence of str, str, sequence of str
        A wide table (one row per sample, e.g. Antwerp's ``BS 1`` ... ``BS 72``): the columns (names or globs,
        ``"BS *"``) each holding one node's ``node_value``, named by the column. Or (drive-test exports: the
        serving cell, neighbours 1..N) column pairs of a node's id and its ``node_value``: ``"PCI:RSRP"``, or
        ``"NCell*:NRxLev*"`` (``NCell1`` with ``NRxLev1``); the node is the id cell's text. See the module docstring.
    crs, time_format, sheet : str, optional
        The sheet of an ``.xlsx`` workbook to read (a name, or a number from 1; default the first); the position
        columns' and a CSV nodes table's CRS (None: WGS84 degrees; e.g. ``"EPSG:32617"``: ``*lat``
        columns hold y, ``*lon`` columns x, converted to WGS84; points off the CRS's area are removed), and the
        strftime format of timestamps that are not ISO 8601 (:mod:`~rflocal_core.measurements.columns` helps).
    sequence_gap_s : float, optional
        Tracks (needs ``time``): a new one where more than this many seconds pass without a sample, within each
        ``sequence`` id, or over the file (``track-1``, ``track-2`` ...; ``inf``: no cut). See the module docstring.

    Returns
    -------
    TableImport
        ``measurements`` (samples in the order of their first row; nodes in natural id order),
        ``report`` (:class:`TableReport`) and ``input_info``.

    Raises
    ------
    InvalidInputError
        A bad mapping: unknown key, missing pair, an undefined combination (named).
    TableFormatError
        The file cannot be read, a mapped column is absent (the message lists the header), a numeric column holds
        no numbers, no row is usable, the dataset would be too large, or (``strict``) a fault.
    """
    layout = (node_columns, node_pairs)
    columns = _wide_columns(columns, node_value, group_by, mode, layout) if any(layout) else columns
    spec = TableSpec(columns, mode=mode, group_by=tuple(group_by), missing=tuple(missing),
                     nodes_file=nodes is not None, crs=crs, time_format=time_format, sheet=sheet,
                     sequence_gap_s=sequence_gap_s)
    kind = _resolve_kind(kind, source)
    data, label, path = _read_source(source, kind, max_bytes)
    node_table = _node_table(nodes, spec.crs)
    issues = _Issues()
    frame, header, ragged, rows, wide = _load_rows(data, kind, label, spec, max_rows, layout, issues)
    t, node_list, samples = _rows_to_samples(frame, ragged, len(header), rows, spec, node_table, issues, label)
    used = int(t["row"].nunique()) if wide else rows - issues.dropped()  # a wide table's issues count cells
    report = _report(kind, rows, used, samples, node_list, issues)
    if strict and report.faults:
        raise _strict_error(report.faults[0], label)
    ms = MeasurementSet(spec.mode, None, node_list, samples, (), tuple(_notes(spec, report, label, wide)))
    return TableImport(ms, report, _input_info(spec, report, data, path, nodes) | _wide_info(spec, wide, node_value))


def _rows_to_samples(frame: pd.DataFrame, ragged: np.ndarray, fields: int, rows: int, spec: TableSpec,
                     node_table: Mapping[str, Node] | None, issues: _Issues,
                     label: str) -> tuple[pd.DataFrame, tuple[Node, ...], tuple[Sample, ...]]:
    """The typed rows that are kept, the nodes and the samples (refusing a table with no usable row)."""
    t, ids = _typed(frame, spec, issues, label)
    t = _drop_rows(t.assign(ragged=ragged), spec, issues, fields)
    _check_usable(t, rows, issues, label)
    t, node_list = _build_nodes(t, spec, node_table, issues, label)
    _check_usable(t, rows, issues, label)
    samples = _samples(t, spec, ids, issues, label)
    _check_size(samples, node_list, label)
    return t, node_list, samples


def _report(kind: str, rows: int, rows_used: int, samples: Sequence[Sample], node_list: Sequence[Node],
            issues: _Issues) -> TableReport:
    """The report of a read table (``rows_used``: file rows that gave at least one report)."""
    unknown = tuple(node.id for node in node_list if not node.has_position)
    return TableReport(kind, rows, rows_used, len(samples), sum(len(s.reports) for s in samples), len(node_list),
                       unknown, tuple(issues.items.values()))


def _wide_columns(columns: Any, node_value: str, group_by: Sequence[str], mode: str,
                  layout: tuple[Sequence[str], Sequence[str]]) -> dict[str, str]:
    """The mapping of a wide table with its internal node, value and sample columns (``layout``: the node columns
    and the node pairs, one of them given)."""
    if all(layout):
        msg = f"node_pairs: give node columns or node pairs, not both; got node_columns={list(layout[0])!r}"
        raise InvalidInputError(msg)
    if node_value not in MEASUREMENT_KEYS:
        msg = f"node_value: expected one of {', '.join(MEASUREMENT_KEYS)}, got {node_value!r}"
        raise InvalidInputError(msg)
    mapped = _check_columns(columns) if columns else {}
    taken = [key for key in ("node", *MEASUREMENT_KEYS) if key in mapped]
    if taken:
        msg = (f"columns: {taken[0]}: in a wide table the node columns name the nodes and hold their {node_value}; "
               f"map no node or measurement key, got {taken[0]}={mapped[taken[0]]}")
        raise InvalidInputError(msg)
    if mode == "emitter" and "lat" in mapped:
        msg = (f"columns: lat: in an emitter-mode wide table the node columns are fixed receivers and lat/lon would be "
               f"a mobile sensor's; map the emitter's true position as truth_lat/truth_lon, got lat={mapped['lat']}")
        raise InvalidInputError(msg)
    own = "sample" in mapped or bool(group_by)
    return {**mapped, "node": WIDE_NODE, node_value: WIDE_VALUE, **({} if own else {"sample": WIDE_SAMPLE})}


def _wide_info(spec: TableSpec, wide: Sequence[tuple[str | None, str]], node_value: str) -> dict[str, Any]:
    """What the import records of a wide table's layout (nothing for a long table)."""
    if not wide:
        return {}
    key = "node_columns" if wide[0][0] is None else "node_pairs"
    return {"columns": _user_columns(spec), key: _wide_labels(wide), "node_value": node_value}


def _wide_labels(wide: Sequence[tuple[str | None, str]]) -> list[str]:
    """A wide table's node columns by name, or its node pairs as ``ID:VALUE``."""
    return [name if node is None else f"{node}:{name}" for node, name in wide]


def _user_columns(spec: TableSpec) -> dict[str, str]:
    """The mapping as the user gave it (without a wide table's internal columns)."""
    internal = (WIDE_NODE, WIDE_VALUE, WIDE_SAMPLE)
    return {key: name for key, name in spec.columns.items() if name not in internal}


def _load_rows(data: bytes, kind: str, label: str, spec: TableSpec, max_rows: int,
               layout: tuple[Sequence[str], Sequence[str]], issues: _Issues,
               ) -> tuple[pd.DataFrame, list[str], np.ndarray, int, tuple[tuple[str | None, str], ...]]:
    """The rows to read (a wide table melted to one row per received cell), the header, the ragged rows, the
    file's row count and the wide table's (id column or None, value column) pairs (empty for a long table).
    ``layout``: the node columns and the node pairs (at most one of them given)."""
    node_columns, node_pairs = layout
    if not node_columns and not node_pairs:
        frame, header, ragged = _load_frame(data, kind, label, spec.wanted, spec, max_rows, spec.sheet)
        return frame, header, ragged, len(frame), ()
    frame, header, ragged = _load_frame(data, kind, label, None, spec, max_rows, spec.sheet)
    own = [name for name in spec.wanted if name not in (WIDE_NODE, WIDE_VALUE, WIDE_SAMPLE)]
    _check_wanted(header, own, spec, label)
    wide = (tuple((None, name) for name in _expand_node_columns(header, node_columns, own, label)) if node_columns
            else _expand_node_pairs(header, node_pairs, own, label))
    long, long_ragged = _melt(frame, own, wide, ragged, spec, issues)
    if len(long) > max_rows:  # the cap holds for the received cells too: they are the rows read from here on
        msg = (f"{label}: {len(long):,} received node cells is more than the limit of {max_rows:,}; "
               "split the table into several files")
        raise TableFormatError(msg)
    return long, header, long_ragged, len(frame), wide


def _expand_node_columns(header: Sequence[str], patterns: Sequence[str], own: Sequence[str],
                         label: str) -> tuple[str, ...]:
    """The node columns named or matched (globs) in header order, without the columns mapped to keys."""
    patterns = _check_names(patterns, "node_columns")
    out: list[str] = []
    for pattern in patterns:
        matched = [name for name in header if name and fnmatch.fnmatchcase(name, pattern) and name not in own]
        if not matched:
            msg = (f"{label}: node_columns: no column matches {pattern!r} (mapped columns excluded); the columns are "
                   f"{', '.join(repr(n) for n in header if n)}")
            raise TableFormatError(msg)
        out += [name for name in matched if name not in out]
    return tuple(name for name in header if name in out)


def _expand_node_pairs(header: Sequence[str], pairs: Sequence[str], own: Sequence[str],
                       label: str) -> tuple[tuple[str, str], ...]:
    """The (id column, value column) pairs named or matched by ``ID:VALUE`` patterns, in header order."""
    pairs = _check_names(pairs, "node_pairs")
    names = [name for name in header if name and name not in own]
    out: list[tuple[str, str]] = []
    for pair in pairs:
        node, sep, value = (part.strip() for part in pair.partition(":"))
        if not sep or not node or not value or (node.count("*"), value.count("*")) not in ((0, 0), (1, 1)):
            msg = (f"node_pairs: expected ID:VALUE, two column names or two patterns with one * each (e.g. "
                   f"NCell*:NRxLev*), got {pair!r}")
            raise InvalidInputError(msg)
        found = _pair_columns(names, node, value)
        if not found:
            msg = (f"{label}: node_pairs: no column pair matches {pair!r} (mapped columns excluded); the columns are "
                   f"{', '.join(repr(n) for n in header if n)}")
            raise TableFormatError(msg)
        out += [p for p in found if p not in out]
    used = [name for p in out for name in p]
    twice = next((name for name in used if used.count(name) > 1), None)
    if twice is not None:
        msg = f"node_pairs: column {twice!r} is in two pairs; expected each column in one pair, got {', '.join(pairs)}"
        raise InvalidInputError(msg)
    return tuple(sorted(out, key=lambda p: header.index(p[1])))


def _pair_columns(names: Sequence[str], node: str, value: str) -> list[tuple[str, str]]:
    """The columns ``node`` and ``value`` name, or those their ``*`` match with the same text (NCell1, NRxLev1)."""
    if "*" not in node:
        return [(node, value)] if node in names and value in names else []
    pattern = re.compile(re.escape(node).replace(r"\*", "(.+)"))
    present = set(names)
    matched = ((name, pattern.fullmatch(name)) for name in names)
    return [(name, value.replace("*", m.group(1))) for name, m in matched
            if m and value.replace("*", m.group(1)) in present]


def _melt(frame: pd.DataFrame, own: Sequence[str], wide: Sequence[tuple[str | None, str]], ragged: np.ndarray,
          spec: TableSpec, issues: _Issues) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per received cell of the node columns, or of the value columns of node pairs (the node: the pair's
    id cell). Empty and ``missing`` cells are not received; a value whose id cell is empty or missing is removed."""
    rows, nodes, values = [], [], []
    absent_any = np.zeros(len(frame), dtype=bool)
    orphans = np.zeros(len(frame), dtype=np.int64)
    missing = 0
    for id_column, name in wide:
        numbers, text = _numbers_and_text(frame, name)
        absent = _missing_mask(numbers, text, spec.missing)
        missing += int(absent.sum())
        absent_any |= absent
        received = (text != "") & ~absent
        ids = np.full(len(frame), name, dtype=object) if id_column is None else _node_cells(frame, id_column, spec)
        orphans += received & (ids == "")
        r = np.flatnonzero(received & (ids != ""))
        rows.append(r)
        nodes.append(ids[r])
        values.append(text[r])
    r, node, value = np.concatenate(rows), np.concatenate(nodes), np.concatenate(values)
    order = np.argsort(r, kind="stable")  # by file row, then node column order
    r, node, value = r[order], node[order], value[order]
    if spec.missing:
        issues.add("missing_value", np.flatnonzero(absent_any) + 1, action="value removed (not received)", fault=False,
                   detail=f"node cells equal to a missing value ({', '.join(spec.missing)})", count=missing)
    issues.add("pair_without_node", np.flatnonzero(orphans) + 1, action="value removed", fault=True,
               detail="values of a node pair whose id cell is empty or a missing value", count=int(orphans.sum()))
    silent = np.setdiff1d(np.arange(len(frame)), r)
    cut = ragged[silent]  # a ragged row's cells are all empty: name it for what it is
    issues.add("wrong_field_count", silent[cut] + 1, action="row dropped", fault=True,
               detail="rows with another number of fields than the header (a stray delimiter or a cut line)")
    issues.add("no_node_heard", silent[~cut] + 1, action="row dropped", fault=False,
               detail="rows in which no node column holds a received value")
    long = frame.loc[r, list(own)].reset_index(drop=True)
    long[WIDE_NODE], long[WIDE_VALUE], long[WIDE_ROW] = node, value, r + 1
    long[WIDE_SAMPLE] = np.array([f"row-{i}" for i in r + 1], dtype=object)
    long.attrs.update(frame.attrs)
    return long, ragged[r]


def _node_cells(frame: pd.DataFrame, column: str, spec: TableSpec) -> np.ndarray:
    """A node pair's id cells (:func:`_id_cells`), ``""`` where empty or a ``missing`` value."""
    numbers, text = _numbers_and_text(frame, column)
    return np.where(_missing_mask(numbers, text, spec.missing), "", _id_cells(text))


def _input_info(spec: TableSpec, report: TableReport, data: bytes, path: str | None, nodes: Any) -> dict[str, Any]:
    """Where the measurements came from and how they were read, for the dataset's ``input`` attribute."""
    return {"file": path, "sha256": hashlib.sha256(data).hexdigest(), "kind": report.kind,
            "columns": dict(spec.columns), "mode": spec.mode, "group_by": list(spec.group_by),
            "missing": list(spec.missing), "crs": spec.crs, "time_format": spec.time_format, "sheet": spec.sheet,
            "sequence_gap_s": spec.sequence_gap_s,
            "nodes_file": str(Path(nodes).resolve()) if isinstance(nodes, (str, os.PathLike)) else None,
            "table": report.to_dict()}


def _check_usable(t: pd.DataFrame, rows: int, issues: _Issues, label: str) -> None:
    if t.empty:
        listed = "; ".join(f"{i.count} {i.reason} ({i.detail})" for i in issues.items.values())
        msg = f"{label}: none of its {rows:,} rows is usable: {listed}"
        raise TableFormatError(msg)


def _node_table(nodes: Any, crs: str | None) -> dict[str, Node] | None:
    if nodes is None:
        return None
    if isinstance(nodes, (str, os.PathLike, bytes, bytearray, memoryview)):
        listed = read_nodes(nodes, kind=None if isinstance(nodes, (str, os.PathLike)) else "csv", crs=crs)
    elif isinstance(nodes, Sequence) and all(isinstance(n, Node) for n in nodes):
        listed = tuple(nodes)
    else:
        msg = f"nodes: expected a nodes table (path or bytes) or a list of Node, got a {type(nodes).__name__}"
        raise InvalidInputError(msg)
    return {node.id: node for node in listed}


def _check_size(samples: Sequence[Sample], nodes: Sequence[Node], label: str) -> None:
    """Refuse a table whose dataset arrays (samples x time steps x node slots) would be too large."""
    steps = max((len({r.t_s for r in s.reports}) for s in samples), default=1)
    mobile = max((sum(r.node is None for r in s.reports) for s in samples), default=0)
    cells = len(samples) * steps * (len(nodes) + mobile)
    if cells > MAX_DATASET_CELLS:
        msg = (f"{label}: {len(samples):,} samples x {steps:,} time steps x {len(nodes) + mobile:,} node slots "
               f"= {cells:,} cells is more than the limit of {MAX_DATASET_CELLS:,}; group the rows into smaller "
               "samples (sample / group_by) or split the table")
        raise TableFormatError(msg)


def _strict_error(issue: TableIssue, label: str) -> TableFormatError:
    where = f" row {issue.rows[0]}" if issue.rows else ""
    found = f", got {issue.values[0]!r}" if issue.values else ""
    msg = (f"{label}{where}: {issue.detail}{found} ({issue.count} {issue.reason}; refused because strict, "
           f"otherwise: {issue.action})")
    return TableFormatError(msg)


def _notes(spec: TableSpec, report: TableReport, label: str,
           wide: Sequence[tuple[str | None, str]] = ()) -> list[str]:
    grouping = (f"samples by the sample id in column {spec.columns['sample']!r}" if "sample" in spec.columns
                else f"samples grouped by the columns {', '.join(spec.group_by)} (ids row-<first row>)")
    layout = "one row per measurement"
    if wide:
        value_key = next(key for key, name in spec.columns.items() if name == WIDE_VALUE)
        shown = ", ".join(_wide_labels(wide[:5])) + (", ..." if len(wide) > 5 else "")
        layout = (f"wide: one column per node ({len(wide)} node columns: {shown}), each holding its {value_key}"
                  if wide[0][0] is None else
                  f"wide: node columns in pairs ({len(wide)} pairs: {shown}), a node's id and its {value_key}")
        if spec.columns.get("sample") == WIDE_SAMPLE:
            grouping = "one sample per row (ids row-<n>)"
    if spec.mode == "ue":
        where = ("lat/lon of a row is the position of the device that measures, i.e. the truth"
                 if "lat" in spec.columns else "the truth is truth_lat/truth_lon")
    else:
        where = ("lat/lon of a row is a mobile sensor's position" if spec.mobile else "rows are fixed nodes' reports")
        where += "; the truth is truth_lat/truth_lon" if "truth_lat" in spec.columns else "; no truth is given"
    notes = [
        f"Read from the {report.kind.upper()} table {label}: {report.rows:,} rows, {report.rows_used:,} used, "
        f"{layout}; {grouping}; mode {spec.mode}: {where}; the truth of a sample is its latest "
        f"row's. Columns: {', '.join(f'{k}={v}' for k, v in _user_columns(spec).items())}.",
    ]
    if "sequence" in spec.columns or spec.sequence_gap_s is not None:
        by = f"the sequence id in column {spec.columns['sequence']!r}" if "sequence" in spec.columns else "time"
        cut = "" if spec.sequence_gap_s is None else f", cut where {spec.sequence_gap_s:g} s pass without a sample"
        notes.append(f"Samples belong to tracks by {by}{cut}; t_s counts from each track's first row, so predict "
                     "--track can follow them.")
    if spec.crs:
        notes.append(f"Positions were given in {spec.crs} (lat columns y, lon columns x) and converted to WGS84.")
    if spec.missing:
        notes.append(f"Measurement values {', '.join(spec.missing)} mean 'not received' and were left out.")
    for issue in report.issues:
        notes.append(f"{issue.count:,} {issue.reason}: {issue.action} ({issue.detail}).")
    if report.nodes_unknown_position:
        notes.append(
            f"{len(report.nodes_unknown_position)} nodes have an unknown position: "
            f"{', '.join(report.nodes_unknown_position[:20])}; fingerprinting models (knn, heimdall) use their "
            "measurements, models that need node positions cannot.")
    return notes


def preview_samples(ms: MeasurementSet, *, limit: int = 5) -> list[dict[str, Any]]:
    """The first ``limit`` samples as flat rows (id, truth, reports, nodes, times, RSS), for a preview table."""
    rows = []
    tracks = any(sample.sequence is not None for sample in ms.samples)
    for sample in ms.samples[:limit]:
        rss = [r.rss_dbm for r in sample.reports if r.rss_dbm is not None]
        times = sorted({r.t_s for r in sample.reports})
        rows.append({
            "sample": sample.id,
            **({"sequence": sample.sequence} if tracks else {}),
            "truth_lat": sample.truth.lat if sample.truth is not None else None,
            "truth_lon": sample.truth.lon if sample.truth is not None else None,
            "reports": len(sample.reports),
            "nodes": ", ".join(dict.fromkeys(r.node if r.node is not None else f"({r.lat:.5f}, {r.lon:.5f})"
                                             for r in sample.reports)),
            "times": len(times),
            "t_s_last": times[-1],
            "rss_dbm": ", ".join(f"{v:g}" for v in rss[:8]) + (", ..." if len(rss) > 8 else ""),
        })
    return rows
