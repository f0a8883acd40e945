"""Converter for the real Antwerp LoRaWAN RSSI dataset (Aernouts et al. 2018, CC-BY-4.0).

The folder holds ``x_<split>.csv`` (columns ``BS 1`` ... ``BS 72``: RSSI in dBm at each
gateway column, ``-200`` = not received), ``y_<split>.csv`` (``Latitude``, ``Longitude`` of the
device) and ``bs_to_gateway_crosswalk_from_anantarj.csv`` (column number -> gateway id ->
lat/lon; some gateways have no published coordinates).

This is the emitter setting: the gateways are the known receiving nodes, the device is the
unknown transmitter (its transmit power is unknown). Public API: :func:`convert_antwerp`.
"""

from __future__ import annotations

import dataclasses

import csv
import math
import os
import re
from pathlib import Path

import numpy as np

from rflocal_core.errors import InvalidInputError
from rflocal_core.measurements.format import (
    MeasurementFormatError,
    MeasurementSet,
    Node,
    Position,
    Report,
    Sample,
    SampleError,
)

#: Splits shipped with the dataset.
ANTWERP_SPLITS: tuple[str, ...] = ("test", "val")

#: RSSI value meaning "this gateway did not receive the message".
ANTWERP_MISSING_RSSI_DBM: float = -200.0

#: File mapping gateway columns to gateway ids and coordinates.
ANTWERP_CROSSWALK_FILE = "bs_to_gateway_crosswalk_from_anantarj.csv"

_CROSSWALK_COLUMNS = ("bs", "gateway_id", "catalogue_latitude", "catalogue_longitude")
_BS_COLUMN_RE = re.compile(r"^BS\s*(\d+)$")


def convert_antwerp(
    folder: str | os.PathLike[str], *, split: str = "test", limit: int | None = None
) -> MeasurementSet:
    """Convert one split of the Antwerp LoRaWAN dataset to a :class:`MeasurementSet` (emitter mode).

    Parameters
    ----------
    folder : str or Path
        The dataset folder (e.g. ``../shared/data/real/antwerp_lorawan``).
    split : {"test", "val", "all"}
        Which ``x_<split>.csv`` / ``y_<split>.csv`` pair to read; ``"all"`` reads both (val
        first), sample ids keep their file (``"val-<row>"``, ``"test-<row>"``) so the
        published test file can stay the test split (``import_measurements(fixed_splits=...)``).
    limit : int, optional
        Read only the first ``limit`` messages.

    Returns
    -------
    MeasurementSet
        Nodes: every gateway of the crosswalk (id = gateway id), those without published
        coordinates with an unknown position (listed in ``notes``). One sample per message
        (id ``"<split>-<row>"``, row counted from 0) with a report (``rss_dbm``) per gateway
        that received it, and the device's GPS position as truth. A message no gateway
        received would be listed in ``errors`` instead of becoming a sample.

    Raises
    ------
    InvalidInputError
        Bad ``split`` / ``limit``, or the folder or one of its files is missing.
    MeasurementFormatError
        A file's content is malformed (the message names file, line and column).
    """
    if split == "all":
        parts = [convert_antwerp(folder, split=s, limit=limit) for s in ("val", "test")]
        seen = {n.id for n in parts[0].nodes}
        nodes = parts[0].nodes + tuple(n for n in parts[1].nodes if n.id not in seen)
        return dataclasses.replace(parts[0], nodes=nodes, samples=parts[0].samples + parts[1].samples,
                                   errors=parts[0].errors + parts[1].errors, notes=parts[0].notes + parts[1].notes[:1])
    if split not in ANTWERP_SPLITS:
        msg = f"split: expected one of {', '.join(ANTWERP_SPLITS)} or all, got {split!r}"
        raise InvalidInputError(msg)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        msg = f"limit: expected a positive integer or None, got {limit!r}"
        raise InvalidInputError(msg)
    x_path, y_path, crosswalk_path = _split_files(Path(folder), split)

    gateways = _read_crosswalk(crosswalk_path)
    columns, rss = _read_rss(x_path, limit)
    truths = _read_truth(y_path, limit)
    if len(truths) != rss.shape[0]:
        msg = f"expected as many positions as messages in {x_path.name} ({rss.shape[0]}), got {len(truths)}"
        raise MeasurementFormatError(msg, path=y_path.name)

    samples, errors, extra_nodes = _samples(split, columns, rss, truths, gateways, x_name=x_path.name,
                                            y_name=y_path.name)
    nodes = [gateways[bs] for bs in sorted(gateways)] + list(extra_nodes.values())
    notes = _notes(split, len(samples), len(errors), gateways, extra_nodes, x_name=x_path.name, y_name=y_path.name,
                   crosswalk_name=crosswalk_path.name)
    return MeasurementSet("emitter", None, tuple(nodes), tuple(samples), tuple(errors), tuple(notes))


def _split_files(root: Path, split: str) -> tuple[Path, Path, Path]:
    """``x_<split>.csv``, ``y_<split>.csv`` and the crosswalk in ``root``, which must all exist."""
    x_path, y_path, crosswalk_path = root / f"x_{split}.csv", root / f"y_{split}.csv", root / ANTWERP_CROSSWALK_FILE
    if not root.is_dir():
        msg = f"folder: expected the Antwerp LoRaWAN dataset folder, got {str(root)!r} (no such folder)"
        raise InvalidInputError(msg)
    missing = [p.name for p in (x_path, y_path, crosswalk_path) if not p.is_file()]
    if missing:
        msg = f"folder: expected {', '.join(missing)} in {root}, got no such file"
        raise InvalidInputError(msg)
    return x_path, y_path, crosswalk_path


def _samples(
    split: str, columns: list[int], rss: np.ndarray, truths: list[tuple[float, float]], gateways: dict[int, Node],
    *, x_name: str, y_name: str,
) -> tuple[list[Sample], list[SampleError], dict[str, Node]]:
    """One sample per message received by some gateway, the messages received by none, and the gateway
    columns missing from the crosswalk (as nodes of unknown position)."""
    node_of_column = [gateways[bs].id if bs in gateways else f"BS {bs}" for bs in columns]
    received = rss != ANTWERP_MISSING_RSSI_DBM
    samples: list[Sample] = []
    errors: list[SampleError] = []
    extra_nodes: dict[str, Node] = {}
    for i in range(rss.shape[0]):
        sample_id = f"{split}-{i}"
        cols = np.flatnonzero(received[i])
        if cols.size == 0:
            msg = f"{x_name} line {i + 2}: expected at least one gateway with RSSI != -200, got none"
            errors.append(SampleError(i, sample_id, msg))
            continue
        reports = []
        for j in cols:
            node_id = node_of_column[j]
            if columns[j] not in gateways and node_id not in extra_nodes:
                extra_nodes[node_id] = Node(node_id)
            try:
                reports.append(Report(node=node_id, rss_dbm=float(rss[i, j])))
            except MeasurementFormatError as exc:
                msg = f"{exc.detail} (RSSI in dBm, -200 = not received)"
                raise MeasurementFormatError(msg, path=f'{x_name} line {i + 2}, "BS {columns[j]}"') from None
        lat, lon = truths[i]
        try:
            truth = Position(lat=lat, lon=lon)
        except MeasurementFormatError as exc:
            column = "Latitude" if exc.path == "lat" else "Longitude"
            raise MeasurementFormatError(exc.detail, path=f"{y_name} line {i + 2}, {column}") from None
        samples.append(Sample(sample_id, tuple(reports), truth))
    return samples, errors, extra_nodes


def _notes(
    split: str, num_samples: int, num_errors: int, gateways: dict[int, Node], extra_nodes: dict[str, Node], *,
    x_name: str, y_name: str, crosswalk_name: str,
) -> list[str]:
    """Where the data comes from, and which gateways have no known position."""
    notes = [
        f"Antwerp LoRaWAN dataset (Aernouts et al., Data 3(2):13, 2018; CC-BY-4.0), split {split}: "
        f"{num_samples} messages from {x_name} and {y_name}; a report per gateway that received "
        f"the message (RSSI -200 = not received is left out); truth is the device's GPS position; "
        f"the device's transmit power is unknown.",
    ]
    unknown = [(bs, node) for bs, node in sorted(gateways.items()) if not node.has_position]
    if unknown:
        listed = ", ".join(f"{node.id} (BS {bs})" for bs, node in unknown)
        notes.append(
            f"{len(unknown)} gateways have no published coordinates (position unknown): {listed}; "
            f"a localizer that needs node positions must skip them, fingerprinting can still use their RSSI."
        )
    if extra_nodes:
        notes.append(
            f"{len(extra_nodes)} gateway columns are not in {crosswalk_name} and were kept with an "
            f"unknown position: {', '.join(extra_nodes)}."
        )
    if num_errors:
        notes.append(f"{num_errors} messages received by no gateway were skipped (see errors).")
    return notes


def _read_crosswalk(path: Path) -> dict[int, Node]:
    """Gateway column number -> :class:`Node` (unknown position where the coordinates are empty)."""
    gateways: dict[int, Node] = {}
    seen_ids: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in _CROSSWALK_COLUMNS if name not in header]
        if missing:
            msg = f"expected the columns {', '.join(_CROSSWALK_COLUMNS)}, got {', '.join(header) or 'no header'}"
            raise MeasurementFormatError(msg, path=f"{path.name} line 1")
        reader.fieldnames = header
        for line, row in enumerate(reader, start=2):
            where = f"{path.name} line {line}"
            bs_text = (row["bs"] or "").strip()
            if not bs_text.isdigit() or int(bs_text) < 1:
                msg = f"expected a gateway column number >= 1, got {bs_text!r}"
                raise MeasurementFormatError(msg, path=f"{where}, bs")
            bs = int(bs_text)
            if bs in gateways:
                msg = f"expected each column number once, got {bs} again"
                raise MeasurementFormatError(msg, path=f"{where}, bs")
            gateway_id = (row["gateway_id"] or "").strip()
            if not gateway_id:
                msg = "expected a gateway id, got an empty cell"
                raise MeasurementFormatError(msg, path=f"{where}, gateway_id")
            if gateway_id in seen_ids:
                msg = f"expected each gateway id once, got {gateway_id!r} again (first for BS {seen_ids[gateway_id]})"
                raise MeasurementFormatError(msg, path=f"{where}, gateway_id")
            seen_ids[gateway_id] = bs
            lat_text = (row["catalogue_latitude"] or "").strip()
            lon_text = (row["catalogue_longitude"] or "").strip()
            if not lat_text and not lon_text:
                gateways[bs] = Node(gateway_id)
                continue
            coords = {}
            for column, text in (("catalogue_latitude", lat_text), ("catalogue_longitude", lon_text)):
                try:
                    coords[column] = float(text)
                except ValueError:
                    msg = f"expected a number of degrees (or both coordinates empty), got {text!r}"
                    raise MeasurementFormatError(msg, path=f"{where}, {column}") from None
            try:
                gateways[bs] = Node(gateway_id, lat=coords["catalogue_latitude"], lon=coords["catalogue_longitude"])
            except MeasurementFormatError as exc:
                column = "catalogue_latitude" if exc.path == "lat" else "catalogue_longitude"
                raise MeasurementFormatError(exc.detail, path=f"{where}, {column}") from None
    return gateways


def _read_rss(path: Path, limit: int | None) -> tuple[list[int], np.ndarray]:
    """Gateway column numbers and the RSSI matrix (messages x columns) of ``x_<split>.csv``."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
        columns = []
        for k, name in enumerate(header):
            match = _BS_COLUMN_RE.match(name.strip())
            if not match:
                msg = f'expected gateway columns "BS 1", "BS 2", ..., got {name!r} as column {k + 1}'
                raise MeasurementFormatError(msg, path=f"{path.name} line 1")
            columns.append(int(match.group(1)))
        if not columns:
            msg = 'expected a header of gateway columns "BS 1", "BS 2", ..., got an empty file'
            raise MeasurementFormatError(msg, path=path.name)
        try:
            rss = np.loadtxt(fh, delimiter=",", dtype=float, ndmin=2, max_rows=limit)
        except ValueError as exc:
            raise _loadtxt_error(exc, path, columns) from None
    if rss.size == 0:
        rss = rss.reshape(0, len(columns))
    if rss.shape[1] != len(columns):
        msg = f"expected {len(columns)} values per line (one per header column), got {rss.shape[1]}"
        raise MeasurementFormatError(msg, path=path.name)
    bad = np.argwhere(~np.isfinite(rss))
    if bad.size:
        i, j = bad[0]
        msg = f"expected an RSSI in dBm (-200 = not received), got {rss[i, j]}"
        raise MeasurementFormatError(msg, path=f'{path.name} line {i + 2}, "BS {columns[j]}"')
    return columns, rss


def _loadtxt_error(exc: ValueError, path: Path, columns: list[int]) -> MeasurementFormatError:
    """Turn numpy's "... at row R, column C" (data rows from 0, columns from 1) into file lines."""
    text = str(exc)
    cell = re.search(r"could not convert string (.*) to \w+ at row (\d+), column (\d+)", text)
    if cell:
        line, column = int(cell.group(2)) + 2, int(cell.group(3))
        name = f"BS {columns[column - 1]}" if 1 <= column <= len(columns) else f"column {column}"
        msg = f"expected an RSSI in dBm (-200 = not received), got {cell.group(1)}"
        return MeasurementFormatError(msg, path=f'{path.name} line {line}, "{name}"')
    ragged = re.search(r"number of columns changed from (\d+) to (\d+) at row (\d+)", text)
    if ragged:
        msg = f"expected {len(columns)} values per line (one per header column), got {ragged.group(2)}"
        return MeasurementFormatError(msg, path=f"{path.name} line {int(ragged.group(3)) + 1}")
    msg = f"expected {len(columns)} RSSI values in dBm per line (-200 = not received): {text}"
    return MeasurementFormatError(msg, path=path.name)


def _read_truth(path: Path, limit: int | None) -> list[tuple[float, float]]:
    """``(lat, lon)`` per message from ``y_<split>.csv``."""
    out: list[tuple[float, float]] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [name.strip().lower() for name in next(reader, [])]
        if "latitude" not in header or "longitude" not in header:
            msg = f"expected the columns Latitude, Longitude, got {', '.join(header) or 'no header'}"
            raise MeasurementFormatError(msg, path=f"{path.name} line 1")
        ilat, ilon = header.index("latitude"), header.index("longitude")
        for line, row in enumerate(reader, start=2):
            if limit is not None and len(out) >= limit:
                break
            if not row:
                continue
            values = []
            for column, k in (("Latitude", ilat), ("Longitude", ilon)):
                text = row[k].strip() if k < len(row) else ""
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    msg = f"expected a number of degrees, got {text!r}"
                    raise MeasurementFormatError(msg, path=f"{path.name} line {line}, {column}")
                values.append(value)
            out.append((values[0], values[1]))
    return out
