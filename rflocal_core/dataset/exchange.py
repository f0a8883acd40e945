"""Datasets <-> measurement files: export a split as ``rflocal-measurements/1``, import real data.

:func:`export_dataset` writes the samples of one split of a dataset (generated or imported)
as a :class:`~rflocal_core.measurements.MeasurementSet`, so a localizer that reads measurement
files can be evaluated on generated data. A measurement file belongs to one scene, so the
export of a multi-scene dataset is per scene: pass ``scene`` when the split holds samples of
several scenes (a split of one scene needs no ``scene``).

:func:`import_measurements` turns a measurement file (real data such as the Antwerp LoRaWAN
set) into a dataset in the same Zarr layout as generated ones, without radio maps, so the
same training code (:class:`rflocal_core.dataset.torch_data.ZarrSamples`) reads both. How
the file's nodes, mobile sensors, times and truths map onto the arrays is documented in
:mod:`rflocal_core.dataset.store` and below.

Representation of an import
---------------------------
- Node axis ``S`` = the file's nodes (slot ``s`` is ``nodes[s]`` for every sample, ids in
  attrs ``node_ids``, the node table with tx powers in attrs ``nodes``) followed by
  per-sample mobile-sensor slots: each report with its own position gets a slot of its
  own in its sample (``S`` = nodes + the most such reports in one sample).
  ``node_mask`` is True for every file node and for the used mobile slots;
  ``node_pos_known`` is False for nodes whose position is unknown (their ``node_pos_m``
  and ``node_latlon`` are NaN; their measurements are kept for fingerprinting).
- Time axis ``T`` = the most distinct ``t_s`` in one sample; a sample's steps are its
  distinct times in increasing order (``t_s`` stored as float64; padding 0, step_mask False).
  Two reports of one node at one time in one sample are refused.
- ``pos_m`` / ``latlon`` hold the truth at the sample's last step only (NaN elsewhere):
  the file gives one truth per sample. An unknown altitude is a NaN ``z``.
- ``tx_power_dbm`` [N] is NaN (the format has no emitter power; node tx powers are in
  attrs ``nodes``); ``los`` is -1 and ``delay_spread_ns``, ``pg_true_db`` are NaN (not in
  the format); missing report values are NaN (``ta``: -1) as in generated datasets.
- Samples without truth are kept but are in no split (``counts.unlabeled`` says how many).
- Positions use the frame's metres: with a scene's frame a given ``x_m``/``y_m`` is used
  as is, else lat/lon are projected; with a centroid frame lat/lon are projected (a
  position given only as ``x_m``/``y_m`` then has no frame and is refused).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rflocal_core import __version__
from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.dataset import iqexchange, store
from rflocal_core.dataset.splits import block_splits, sequence_splits
from rflocal_core.errors import DatasetExistsError, InvalidInputError, SceneNotFoundError
from rflocal_core.geo import LocalFrame
from rflocal_core.measurements.format import (
    AOA_RANGE_DEG,
    FIELDS,
    PHY_FIELDS,
    RSS_RANGE_DBM,
    SNR_RANGE_DB,
    TA_RANGE,
    TOA_RANGE_NS,
    MeasurementFormatError,
    MeasurementSet,
    Node,
    Position,
    Report,
    Sample,
    load_measurements,
)
from rflocal_core.measurements.quality import QualityReport, check_quality
from rflocal_core.measurements.table import TableReport
from rflocal_core.results import JsonResult, json_field
from rflocal_core.workspace import validate_name

#: Value of the ``source`` attribute of an imported dataset.
IMPORT_SOURCE = "import"

#: Default train / val / test fractions of an import.
DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)

#: Float report fields stored as ``[N, T, S]`` arrays, with the format's accepted range.
_FLOAT_FIELDS: dict[str, tuple[float, float]] = {
    "rss_dbm": RSS_RANGE_DBM,
    "toa_ns": TOA_RANGE_NS,
    "aoa_deg": AOA_RANGE_DEG,
    "snr_db": SNR_RANGE_DB,
}

#: Storage dtype of the PHY/MAC report fields (:data:`~rflocal_core.measurements.format.PHY_FIELDS`), as generated.
_PHY_DTYPES: dict[str, Any] = {"rsrq_db": np.float32, "sinr_db": np.float32, "cqi": np.int8, "ri": np.int8,
                               "beam_id": np.int16, "beam_rsrp_dbm": np.float32, "doppler_hz": np.float32,
                               "serving": np.int8, "neighbour_rank": np.int8, "event_a3": np.int8,
                               "event_a5": np.int8}

#: Arrays of generated datasets that a measurement file cannot fill (written as missing on import).
_UNKNOWN_FLOAT_FIELDS = ("delay_spread_ns", "pg_true_db")


# --------------------------------------------------------------------------- export


def export_dataset(
    name: str, *, split: str = "test", limit: int | None = None, scene: str | None = None
) -> MeasurementSet:
    """Return the samples of one split of a dataset as an ``rflocal-measurements/1`` set.

    Parameters
    ----------
    name : str
        A complete dataset in ``workspace/datasets``.
    split : {"train", "val", "test", "test_unseen"}
        Which split to export.
    limit : int, optional
        Export only the first ``limit`` samples of the split (in dataset order).
    scene : str, optional
        Export only the samples of this scene. Required when the split holds samples of
        several scenes (a measurement file names one scene).

    Returns
    -------
    MeasurementSet
        Generated datasets: ``scene`` is the scene's name; the nodes are the scene's sites
        (ids, ``lat``/``lon`` from the scene frame, ``x_m``/``y_m``, ``alt_m`` = site height,
        and in ue mode ``tx_power_dbm``); a sample (id ``"<dataset>-<row>"``) has one report
        per (time step, node) with a measurement, carrying ``t_s`` and those of ``rss_dbm``,
        ``toa_ns``, ``ta``, ``aoa_deg``, ``snr_db`` that are present; its truth is the position
        (lat/lon, x_m/y_m, alt_m) at the last step. Imported datasets: the file's nodes and
        sample ids, mobile-sensor reports with their own ``lat``/``lon``.
        Write it with :func:`rflocal_core.measurements.dump_measurements` (atomic).

    Raises
    ------
    DatasetNotFoundError
        No complete dataset of that name.
    InvalidInputError
        Bad ``split``, ``limit`` or ``scene``, or nothing to export.
    """
    if split not in store.SPLITS:
        msg = f"split: expected one of {', '.join(store.SPLITS)}, got {split!r}"
        raise InvalidInputError(msg)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        msg = f"limit: expected a positive integer or None, got {limit!r}"
        raise InvalidInputError(msg)
    root = store.open_dataset(name)
    attrs = dict(root.attrs)
    if f"splits/{split}" not in root:
        msg = f"split: dataset {name!r} has no {split!r} split"
        raise InvalidInputError(msg)
    indices = np.sort(np.asarray(root[f"splits/{split}"][...], dtype=np.int64))
    if attrs.get("source") == IMPORT_SOURCE:
        return _export_imported(root, attrs, name, split, indices, limit, scene)
    return _export_generated(root, attrs, name, split, indices, limit, scene)


def _short(value: Any) -> float:
    """A float32 value as the shortest decimal that reads back as the same float32."""
    return float(str(np.float32(value)))


def _in_range(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values >= bounds[0]) & (values <= bounds[1])


def _read_rows(samples: zarr.Group, indices: np.ndarray, keys: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for key in keys:
        arr = samples[key]
        out[key] = np.asarray(arr.oindex[indices]) if len(indices) else np.zeros((0, *arr.shape[1:]), arr.dtype)
    return out


def _reports_of(
    rows: dict[str, np.ndarray], i: int, slots: np.ndarray, dropped: dict[str, int]
) -> list[tuple[int, int, dict[str, Any]]]:
    """``(step, slot, measurements)`` of row ``i`` for every present (step, slot) in ``slots``."""
    step_mask = rows["step_mask"][i]
    fields: dict[str, np.ndarray] = {}
    present = np.zeros(rows["rss_dbm"][i].shape, dtype=bool)
    for key, bounds in _FLOAT_FIELDS.items():
        values = rows[key][i]
        ok = _in_range(values, bounds)
        dropped[key] = dropped.get(key, 0) + int((np.isfinite(values) & ~ok)[step_mask][:, slots].sum())
        fields[key] = np.where(ok, values, np.nan)
        present |= ok
    ta = rows["ta"][i]
    ta_ok = (ta >= TA_RANGE[0]) & (ta <= TA_RANGE[1])
    present |= ta_ok
    out = []
    for t in np.flatnonzero(step_mask):
        for s in slots:
            if not present[t, s]:
                continue
            values: dict[str, Any] = {key: _short(fields[key][t, s]) for key in _FLOAT_FIELDS
                                      if np.isfinite(fields[key][t, s])}
            if ta_ok[t, s]:
                values["ta"] = int(ta[t, s])
            values.update(_phy_values(rows, i, t, s, dropped))
            out.append((int(t), int(s), values))
    return out


def _phy_keys(samples: zarr.Group) -> tuple[str, ...]:
    """The PHY/MAC report fields a dataset holds (generated in ue mode with timing, or imported with them)."""
    return tuple(key for key in PHY_FIELDS if key in samples)


def _phy_values(rows: dict[str, np.ndarray], i: int, t: int, s: int, dropped: dict[str, int]) -> dict[str, Any]:
    """The PHY/MAC fields of one report that are present and within the format's ranges (others counted)."""
    out: dict[str, Any] = {}
    for key in PHY_FIELDS:
        if key not in rows:
            continue
        value = rows[key][i, t, s]
        integer = FIELDS[key].kind == "integer"
        if (value < 0) if integer else not np.isfinite(value):
            continue
        lo, hi = FIELDS[key].bounds
        if not lo <= value <= hi:
            dropped[key] = dropped.get(key, 0) + 1
            continue
        out[key] = int(value) if integer else _short(value)
    return out


def _dropped_note(dropped: dict[str, int]) -> list[str]:
    bad = {key: n for key, n in dropped.items() if n}
    if not bad:
        return []
    listed = ", ".join(f"{n} {key}" for key, n in bad.items())
    return [f"values outside the ranges of rflocal-measurements/1 were left out: {listed}."]


def _export_generated(
    root: zarr.Group, attrs: dict[str, Any], name: str, split: str, indices: np.ndarray,
    limit: int | None, scene: str | None,
) -> MeasurementSet:
    scene, indices = _scene_rows(root, attrs, name, split, indices, scene)
    total = len(indices)
    if limit is not None:
        indices = indices[:limit]
    group = root[f"scenes/{scene}"]
    mode = dict(group.attrs).get("mode") or attrs.get("mode")
    frame = LocalFrame.from_dict(dict(group.attrs)["frame"])
    geo = frame.georeferenced  # a scene in metres only: its lat/lon are placeholders, not written
    nodes = _site_nodes(group, frame, mode)
    site_ids = [node.id for node in nodes]

    samples = root["samples"]
    captures = iqexchange.has_captures(samples)
    rows = _read_rows(samples, indices, ("pos_m", "latlon", "t_s", "step_mask", "ta", *_FLOAT_FIELDS,
                                         *(iqexchange.ROWS if captures else ()), *_phy_keys(samples)))
    rate = dict(samples.attrs).get("iq", {}).get("sample_rate_hz")
    slots = np.arange(len(site_ids))
    dropped: dict[str, int] = {}
    out: list[Sample] = []
    empty = 0
    for i, k in enumerate(indices):
        reports = [
            Report(node=site_ids[s], t_s=_short(rows["t_s"][i, t]), **values,
                   **(iqexchange.capture_of(rows, i, t, s, rate) if captures else {}))
            for t, s, values in _reports_of(rows, i, slots, dropped)
        ]
        if not reports:
            empty += 1
            continue
        steps = np.flatnonzero(rows["step_mask"][i])
        last = int(steps[-1]) if len(steps) else 0
        pos, latlon = rows["pos_m"][i, last], rows["latlon"][i, last]
        truth = Position(lat=float(latlon[0]) if geo else None, lon=float(latlon[1]) if geo else None,
                         x_m=_short(pos[0]), y_m=_short(pos[1]), alt_m=_short(pos[2]) if np.isfinite(pos[2]) else None)
        out.append(Sample(f"{name}-{int(k)}", tuple(reports), truth))
    if not out:
        msg = f"split: none of the {len(indices)} exported samples of {name!r} has a report; nothing to export"
        raise InvalidInputError(msg)

    notes = [
        f"Exported from the generated RFLocal dataset {name!r} (synthetic: ray-traced with Sionna RT), "
        f"split {split}, scene {scene}: {len(out)} of the split's {total} samples of this scene; "
        f"sample ids are <dataset>-<row>; truth is the position at the last report time.",
        "Not in this format and left out: line of sight, delay spread, true path gain"
        + (", the emitter's transmit power." if mode == "emitter" else "."),
    ]
    if empty:
        notes.append(f"{empty} samples without any report were left out.")
    if not geo:
        notes.append(f"Scene {scene!r} is not geo-referenced: positions are given in scene metres (x_m/y_m) only.")
    notes += _dropped_note(dropped)
    return MeasurementSet(mode, scene, nodes, tuple(out), (), tuple(notes))


def _scene_rows(root: zarr.Group, attrs: dict[str, Any], name: str, split: str, indices: np.ndarray,
                scene: str | None) -> tuple[str, np.ndarray]:
    """The scene to export (the split's only one when not given) and the split's rows of that scene."""
    scenes = list(attrs.get("config", {}).get("scenes", []))
    if "scenes" not in root or not scenes:
        msg = f"dataset: {name!r} has neither scenes/ maps nor source 'import'; it cannot be exported"
        raise InvalidInputError(msg)
    if len(indices) == 0:
        msg = f"split: the {split!r} split of {name!r} is empty; expected a split with samples"
        raise InvalidInputError(msg)
    scene_idx = np.asarray(root["samples"]["scene_idx"][...])[indices]
    present_scenes = [scenes[k] for k in sorted(set(scene_idx.tolist()))]
    if scene is None:
        if len(present_scenes) > 1:
            msg = (
                f"scene: the {split!r} split of {name!r} holds samples of {len(present_scenes)} scenes "
                f"({', '.join(present_scenes)}); a measurement file belongs to one scene, so choose one "
                "(--scene) and export each scene to its own file"
            )
            raise InvalidInputError(msg)
        scene = present_scenes[0]
    elif scene not in scenes:
        msg = f"scene: dataset {name!r} has the scenes {', '.join(scenes)}, got {scene!r}"
        raise InvalidInputError(msg)
    indices = indices[scene_idx == scenes.index(scene)]
    if len(indices) == 0:
        msg = f"scene: the {split!r} split of {name!r} holds no samples of scene {scene!r}"
        raise InvalidInputError(msg)
    return scene, indices


def _site_nodes(group: zarr.Group, frame: LocalFrame, mode: str | None) -> tuple[Node, ...]:
    """The scene's sites as nodes (lat/lon only when the scene is geo-referenced; tx power in ue mode)."""
    site_ids = list(dict(group.attrs)["site_ids"])
    site_pos = np.asarray(group["site_pos_m"][...], dtype=np.float64)
    lat, lon = frame.to_latlon(site_pos[:, 0], site_pos[:, 1])
    tx_power = _site_tx_power(group, len(site_ids)) if mode == "ue" else [None] * len(site_ids)
    carrier = dict(group.attrs).get("site_freq_hz") or [None] * len(site_ids)  # datasets before bands: unknown
    geo = frame.georeferenced
    return tuple(
        Node(site_ids[s], lat=float(lat[s]) if geo else None, lon=float(lon[s]) if geo else None,
             x_m=_short(site_pos[s, 0]), y_m=_short(site_pos[s, 1]), alt_m=_short(site_pos[s, 2]),
             tx_power_dbm=tx_power[s], carrier_hz=carrier[s])
        for s in range(len(site_ids))
    )


def _site_tx_power(group: zarr.Group, num_sites: int) -> list[float | None]:
    """Per-site transmit power of a ue-mode scene: its RSS map minus its path-gain map."""
    if "rss_dbm" not in group or "path_gain_db" not in group:
        return [None] * num_sites
    out: list[float | None] = []
    for s in range(num_sites):
        rss = np.asarray(group["rss_dbm"][s], dtype=np.float64)
        pg = np.asarray(group["path_gain_db"][s], dtype=np.float64)
        ok = np.isfinite(rss) & np.isfinite(pg)
        out.append(round(float(np.median(rss[ok] - pg[ok])), 3) if ok.any() else None)
    return out


def _export_imported(
    root: zarr.Group, attrs: dict[str, Any], name: str, split: str, indices: np.ndarray,
    limit: int | None, scene: str | None,
) -> MeasurementSet:
    own_scene = attrs.get("scene")
    if scene is not None and scene != own_scene:
        msg = f"scene: the imported dataset {name!r} belongs to scene {own_scene!r}, got {scene!r}"
        raise InvalidInputError(msg)
    if len(indices) == 0:
        msg = f"split: the {split!r} split of {name!r} is empty; expected a split with samples"
        raise InvalidInputError(msg)
    total = len(indices)
    if limit is not None:
        indices = indices[:limit]
    samples = root["samples"]
    scene_frame = str(attrs.get("frame_source", "")).startswith("scene")
    geo = LocalFrame.from_dict(attrs["frame"]).georeferenced  # False: lat/lon are placeholders, not written
    nodes = tuple(Node(**row) for row in attrs.get("nodes", []))
    num_nodes = len(nodes)
    sample_ids = list(samples.attrs.get("sample_ids", []))
    sequences = list(samples.attrs.get("sample_sequences", []))
    captures = iqexchange.has_captures(samples)
    rows = _read_rows(samples, indices, ("pos_m", "latlon", "t_s", "step_mask", "node_mask", "node_pos_m",
                                         "node_latlon", "ta", *_FLOAT_FIELDS, *(iqexchange.ROWS if captures else ()),
                                         *_phy_keys(samples)))
    rate = dict(samples.attrs).get("iq", {}).get("sample_rate_hz")
    dropped: dict[str, int] = {}
    out: list[Sample] = []
    for i, k in enumerate(indices):
        slots = np.flatnonzero(rows["node_mask"][i])
        reports = []
        for t, s, values in _reports_of(rows, i, slots, dropped):
            t_s = float(rows["t_s"][i, t])
            if captures:
                values = {**values, **iqexchange.capture_of(rows, i, t, s, rate)}
            if s < num_nodes:
                reports.append(Report(node=nodes[s].id, t_s=t_s, **values))
                continue
            xyz, latlon = rows["node_pos_m"][i, s], rows["node_latlon"][i, s]
            place: dict[str, Any] = {"lat": float(latlon[0]), "lon": float(latlon[1])} if geo else {}
            if scene_frame:
                place.update(x_m=_short(xyz[0]), y_m=_short(xyz[1]))
            if np.isfinite(xyz[2]):
                place["alt_m"] = _short(xyz[2])
            reports.append(Report(t_s=t_s, **place, **values))
        if not reports:
            continue
        steps = np.flatnonzero(rows["step_mask"][i])
        last = int(steps[-1]) if len(steps) else 0
        pos, latlon = rows["pos_m"][i, last], rows["latlon"][i, last]
        truth = None
        if np.isfinite(latlon).all():
            extra: dict[str, Any] = {"x_m": _short(pos[0]), "y_m": _short(pos[1])} if scene_frame else {}
            if geo:
                extra.update(lat=float(latlon[0]), lon=float(latlon[1]))
            truth = Position(alt_m=_short(pos[2]) if np.isfinite(pos[2]) else None, **extra)
        sample_id = sample_ids[k] if k < len(sample_ids) else f"{name}-{int(k)}"
        out.append(Sample(sample_id, tuple(reports), truth, sequences[k] if k < len(sequences) else None))
    notes = list(attrs.get("notes", []))
    notes.append(f"Exported from the imported RFLocal dataset {name!r}, split {split}: {len(out)} of {total} samples.")
    notes += _dropped_note(dropped)
    return MeasurementSet(attrs.get("mode", "emitter"), own_scene, nodes, tuple(out), (), tuple(notes))


# --------------------------------------------------------------------------- import


def parse_split_fractions(text: str) -> tuple[float, float, float]:
    """Parse ``"0.8,0.1,0.1"`` (train, val, test) and check it; see :func:`import_measurements`."""
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        msg = f"split_fractions: expected three comma-separated numbers TRAIN,VAL,TEST, got {text!r}"
        raise InvalidInputError(msg)
    return _check_fractions(values)


def _check_fractions(values: Any) -> tuple[float, float, float]:
    try:
        fractions = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        fractions = ()
    if (
        len(fractions) != 3
        or any(isinstance(v, bool) for v in values)
        or not all(math.isfinite(f) and 0.0 <= f <= 1.0 for f in fractions)
        or abs(sum(fractions) - 1.0) > 1e-6
    ):
        msg = f"split_fractions: expected three fractions in [0, 1] (train, val, test) summing to 1, got {values!r}"
        raise InvalidInputError(msg)
    return fractions  # type: ignore[return-value]


def _check_fixed_splits(fixed: Mapping[str, str] | None, ms: MeasurementSet) -> dict[str, str]:
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping):
        msg = f"fixed_splits: expected a mapping of sample id to split, got {type(fixed).__name__}"
        raise InvalidInputError(msg)
    ids = {s.id for s in ms.samples}
    for sid, split in fixed.items():
        if split not in ("train", "val", "test"):
            msg = f"fixed_splits[{sid!r}]: expected 'train', 'val' or 'test', got {split!r}"
            raise InvalidInputError(msg)
        if sid not in ids:
            msg = f"fixed_splits: sample id {sid!r} is not in the measurements"
            raise InvalidInputError(msg)
    return dict(fixed)


@dataclass(frozen=True, kw_only=True)
class ImportResult(JsonResult):
    """A dataset made from measurements (see :func:`import_measurements` and
    :func:`~rflocal_core.dataset.table_import.import_table`)."""

    name: str
    path: str
    samples: int
    #: Samples per split (``train``, ``val``, ``test``, ``test_unseen``).
    splits: dict[str, int]
    #: Samples without truth (kept, in no split).
    unlabeled: int
    nodes: int
    unknown_position_nodes: int
    mobile_slots: int
    steps: int
    mode: str
    scene: str | None
    frame_source: str
    seconds: dict[str, float]
    #: What the quality checks dropped, by reason (also in the dataset's attributes).
    quality: QualityReport
    #: Tables: rows read and used, and the row-level problems by reason.
    table: TableReport | None = json_field(default=None, omit_none=True)
    #: Splits drawn by blocks (``split_block_m``: the block size and the blocks per split) or by tracks
    #: (``split_by_sequence``: the tracks per split).
    split: dict[str, Any] | None = json_field(default=None, omit_none=True)


def import_measurements(
    ms_or_path: MeasurementSet | str | os.PathLike[str] | bytes, *, name: str, scene: str | None = None,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, seed: int = 0, split_block_m: float | None = None,
    split_by_sequence: bool = False, fixed_splits: Mapping[str, str] | None = None, strict: bool = False,
    min_reports: int = 1, quality: QualityReport | None = None, input_info: Mapping[str, Any] | None = None,
    owner: str | None = None, user: User = LOCAL_USER) -> ImportResult:
    """Turn measurements into a dataset ``workspace/datasets/<name>`` (same Zarr layout, no maps).

    The measurements go through the quality checks first
    (:func:`~rflocal_core.measurements.quality.check_quality`): GPS sentinels, positions
    outside the file's robust extent, RSS sentinels and floors, implausible ToA, duplicate
    sample ids are dropped and counted (``quality`` in the result and in the attributes), so
    the frame, the splits and every model's extent come from the cleaned positions. How the
    file becomes arrays is in this module's docstring ("Representation of an import").

    Parameters
    ----------
    ms_or_path : MeasurementSet, path or bytes
        The measurements, or a file (read with :func:`~rflocal_core.measurements.load_measurements`).
    name : str
        Name of the new dataset; it must not exist.
    scene : str, optional
        A workspace scene whose local frame to use. Default: the scene the file names, if it
        is in the workspace; else a frame at the centroid of the positions given as lat/lon.
    split_fractions, seed, split_block_m : sequence of three floats, int, float or None
        Train / val / test fractions (in [0, 1], sum 1) of the samples with a truth; shuffle seed; with
        ``split_block_m``, whole squares of that many metres of the cleaned truths (not with ``fixed_splits``);
        with ``split_by_sequence``, whole tracks (the samples' ``sequence`` ids; not with the other two).
    fixed_splits : mapping of str to str, optional
        Sample id -> ``"train"``, ``"val"`` or ``"test"`` for samples whose split is given.
    strict : bool
        Refuse measurements with any fault (:class:`~rflocal_core.errors.MeasurementQualityError`).
    min_reports : int
        Samples left with fewer reports after cleaning are dropped (``too_few_reports``).
    quality : QualityReport, optional
        Faults counted before (e.g. by a table reader): merged into the report.
    input_info : mapping, optional
        Where a :class:`MeasurementSet` came from, kept as the dataset's ``input`` attribute
        (a file given by path or bytes is described automatically).
    owner : str, optional
        Who imported it (default the user's name; ``"local"``: the command line): the ``owner`` attribute.
    user : User
        Who asks (default: the command line's :data:`~rflocal_core.access.LOCAL_USER`); a viewer is refused.

    Returns
    -------
    ImportResult
        Counts (samples, splits, unlabeled, nodes, ...), the frame used and ``quality``.

    Raises
    ------
    DatasetExistsError, MeasurementFormatError, MeasurementQualityError, SceneNotFoundError, InvalidInputError
        The name is taken; the file is invalid (or a sample has two reports of a node at one time);
        ``strict`` and a fault; ``scene`` is not in the workspace; bad name, fractions or seed, or
        positions without a usable frame.
    """
    started = time.perf_counter()
    fractions = _check_import_args(name, split_fractions, seed, user)
    final, partial = _free_paths(name)
    ms, report, fixed, loaded_info = _read_and_check(ms_or_path, fixed_splits, strict, min_reports, quality)
    fixed, block = _drawn_splits(ms, fixed, (split_block_m, split_by_sequence), fractions, seed)
    frame, frame_source, scene_name = _choose_frame(ms, scene)
    arrays, info = _build_arrays(ms, frame, frame_source.startswith("scene"))
    splits = _assign_splits(ms, info["has_truth"], fixed, fractions, seed)
    counts = _import_counts(ms, arrays, info, splits)
    attrs = {
        "mode": ms.mode, "scene": scene_name or ms.scene, "frame": frame.to_dict(), "frame_source": frame_source,
        "notes": list(ms.notes), "assumptions": _assumptions(ms, counts, info, report, frame_source, scene_name),
        "input": _input_attr(input_info, loaded_info, block),
        "owner": user.name if owner is None else owner, **_node_attrs(ms),
        **_scene_attrs(scene_name), "config": {"name": name, "scenes": [scene_name] if scene_name else [],
                                               "source": IMPORT_SOURCE, "split": list(fractions), "seed": int(seed)},
        **({"iq": info["iq"]} if info["iq"] is not None else {}),  # written on samples/, as in generated datasets
    }
    seconds = _write_import(partial, final, name, ms, arrays, splits, attrs, counts, report, started)
    return ImportResult(
        name=name, path=str(final), samples=counts["samples"], splits=counts["splits"], unlabeled=counts["unlabeled"],
        nodes=len(ms.nodes), unknown_position_nodes=sum(not node.has_position for node in ms.nodes),
        mobile_slots=info["mobile_slots"], steps=counts["steps_max"], mode=ms.mode, scene=scene_name or ms.scene,
        frame_source=frame_source, seconds={"import": seconds}, quality=report, split=block)


def _drawn_splits(ms: MeasurementSet, fixed: dict[str, str], drawn: tuple[float | None, bool],
                  fractions: tuple[float, float, float], seed: int) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The fixed splits and, with a block size or by tracks (``drawn``), the squares' or tracks' description: drawn
    from the cleaned samples, so a GPS sentinel or an outlier the checks dropped makes no square of its own."""
    block_m, by_sequence = drawn
    if block_m is None and not by_sequence:
        return fixed, None
    given = "split_block_m" if block_m is not None else "split_by_sequence"
    if fixed or (block_m is not None and by_sequence):
        msg = f"{given}: expected one of split_block_m, split_by_sequence and fixed_splits, got {given} and another"
        raise InvalidInputError(msg)
    if by_sequence:
        return sequence_splits(ms, fractions=fractions, seed=seed)
    return block_splits(ms, block_m=block_m, fractions=fractions, seed=seed)


def _input_attr(given: Mapping[str, Any] | None, loaded: dict[str, Any] | None,
                block: dict[str, Any] | None) -> dict[str, Any] | None:
    """The dataset's ``input`` attribute: where the measurements came from and, if drawn, the squares of the split."""
    source = dict(given) if given is not None else loaded
    return source if block is None else {**(source or {}), "split": block}


def _check_import_args(name: str, split_fractions: Sequence[float], seed: Any,
                       user: User) -> tuple[float, float, float]:
    """Check the user's role, the name, fractions and seed of an import; return the fractions."""
    require(user, "import_dataset")
    validate_name(name, field="name")
    fractions = _check_fractions(split_fractions)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        msg = f"seed: expected a non-negative integer, got {seed!r}"
        raise InvalidInputError(msg)
    return fractions


def _read_and_check(ms_or_path: Any, fixed_splits: Mapping[str, str] | None, strict: bool, min_reports: int,
                    prior: QualityReport | None,
                    ) -> tuple[MeasurementSet, QualityReport, dict[str, str], dict[str, Any] | None]:
    """The measurements after the quality checks, their report, the fixed splits and where the file came from."""
    ms, loaded_info = _load(ms_or_path)
    # Fixed splits name samples of the file as given; those the checks drop are simply gone.
    fixed = _check_fixed_splits(fixed_splits, ms)
    ms, report = check_quality(ms, strict=strict, min_reports=min_reports, prior=prior)
    if not ms.samples:
        msg = (f"samples: expected at least one valid sample to import, got none ({len(ms.errors)} were invalid; "
               f"{report.summary()})")
        raise InvalidInputError(msg)
    return ms, report, fixed, loaded_info


def _import_counts(ms: MeasurementSet, arrays: dict[str, np.ndarray], info: dict[str, Any],
                   splits: dict[str, np.ndarray]) -> dict[str, Any]:
    """The ``counts`` attribute of an imported dataset."""
    return {
        "samples": len(ms.samples),
        "splits": {k: int(len(v)) for k, v in splits.items()},
        "unlabeled": int((~info["has_truth"]).sum()),
        "sites_max": int(arrays["node_mask"].shape[1]),
        "steps_max": int(arrays["step_mask"].shape[1]),
        "reports_per_sample_mean": info["reports_mean"],
    }


def _free_paths(name: str) -> tuple[Path, Path]:
    """The dataset's path and its temporary one, after checking the name is free (removing the leftovers
    of an interrupted import; an interrupted generation is refused)."""
    final = store.dataset_path(name)
    if final.exists():
        msg = f"name: a dataset named {name!r} already exists; choose another name or delete it first"
        raise DatasetExistsError(msg)
    partial = store.partial_path(name)
    if partial.exists():
        try:
            source = zarr.open_group(str(partial), mode="r").attrs.get("source")
        except Exception:  # unreadable leftovers of an import are replaced as well
            source = IMPORT_SOURCE
        if source != IMPORT_SOURCE:
            msg = (
                f"name: an interrupted generation of {name!r} exists ({partial}); resume or delete it "
                f"(data delete {name} --partial) or choose another name"
            )
            raise DatasetExistsError(msg)
        shutil.rmtree(partial)
    return final, partial


def _assign_splits(ms: MeasurementSet, has_truth: np.ndarray, fixed: dict[str, str],
                   fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Sample rows per split: the fixed ones where given, the other labeled samples shuffled by ``fractions``."""
    sample_split = np.array([fixed.get(s.id, "") for s in ms.samples], dtype=object)
    labeled = np.flatnonzero(has_truth & (sample_split == ""))
    perm = np.random.default_rng(int(seed)).permutation(labeled)
    n_train = int(round(fractions[0] * len(perm)))
    n_val = int(round(fractions[1] * len(perm)))
    given = {k: np.flatnonzero(has_truth & (sample_split == k)) for k in ("train", "val", "test")}
    return {"train": np.sort(np.concatenate([perm[:n_train], given["train"]])),
            "val": np.sort(np.concatenate([perm[n_train:n_train + n_val], given["val"]])),
            "test": np.sort(np.concatenate([perm[n_train + n_val:], given["test"]])),
            "test_unseen": np.zeros(0, dtype=np.int64)}


def _assumptions(ms: MeasurementSet, counts: dict[str, Any], info: dict[str, Any], report: QualityReport,
                 frame_source: str, scene_name: str | None) -> list[str]:
    """What the import assumed or left out, one line each, for the dataset's attributes."""
    assumptions = [f"local frame: {frame_source}"]
    unknown = [node.id for node in ms.nodes if not node.has_position]
    if unknown:
        assumptions.append(
            f"{len(unknown)} nodes have an unknown position (node_pos_known False, node_pos_m NaN): "
            + ", ".join(unknown)
        )
    if counts["unlabeled"]:
        assumptions.append(f"{counts['unlabeled']} samples have no truth; they are kept but are in no split")
    if ms.errors:
        assumptions.append(f"{len(ms.errors)} samples of the file were invalid and skipped when it was read")
    if ms.scene is not None and scene_name != ms.scene:
        assumptions.append(f"the file names scene {ms.scene!r}, which is not in the workspace")
    if info["no_alt"]:
        assumptions.append("positions without alt_m have z = NaN")
    if report.faulty:
        assumptions.append(report.summary())
    return assumptions


def _write_import(partial: Path, final: Path, name: str, ms: MeasurementSet, arrays: dict[str, np.ndarray],
                  splits: dict[str, np.ndarray], attrs: dict[str, Any], counts: dict[str, Any],
                  report: QualityReport, started: float) -> float:
    """Write the store at ``partial`` and rename it to ``final`` (nothing is left on a failure); the seconds taken."""
    try:
        root = zarr.open_group(str(partial), mode="w")
        root.attrs.update({"format": store.FORMAT, "complete": False, "source": IMPORT_SOURCE})
        group = root.require_group("samples")
        store.write_samples(group, arrays)
        group.attrs["sample_ids"] = [sample.id for sample in ms.samples]
        if any(sample.sequence is not None for sample in ms.samples):  # tracks: an export can be tracked again
            group.attrs["sample_sequences"] = [sample.sequence for sample in ms.samples]
        if "iq" in attrs:
            group.attrs["iq"] = attrs.pop("iq")
        split_group = root.require_group("splits")
        for key, idx in splits.items():
            store.write_array(split_group, key, idx.astype(np.int64), chunk_rows=max(len(idx), 1))
        seconds = round(time.perf_counter() - started, 3)
        root.attrs.update({
            "complete": True,
            **attrs,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "counts": counts,
            "quality": report.to_dict(),
            "seconds": {"import": seconds},
            "versions": {"rflocal": __version__, "zarr": zarr.__version__, "numpy": np.__version__},
        })
        try:
            os.rename(partial, final)
        except OSError:
            msg = f"name: a dataset named {name!r} was created meanwhile; choose another name"
            raise DatasetExistsError(msg) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return seconds


def _load(ms_or_path: Any) -> tuple[MeasurementSet, dict[str, Any] | None]:
    if isinstance(ms_or_path, MeasurementSet):
        return ms_or_path, None
    if isinstance(ms_or_path, (bytes, bytearray, memoryview)):
        data = bytes(ms_or_path)
        return load_measurements(data, on_fault="drop"), {"file": None, "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(ms_or_path, (str, os.PathLike)):
        path = Path(ms_or_path)
        ms = load_measurements(path, on_fault="drop")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return ms, {"file": str(path.resolve()), "sha256": digest}
    msg = (
        "ms_or_path: expected a MeasurementSet, a measurement file path or its bytes, "
        f"got a {type(ms_or_path).__name__}"
    )
    raise InvalidInputError(msg)


def _node_attrs(ms: MeasurementSet) -> dict[str, Any]:
    """``node_ids`` and ``nodes`` (the node table with positions and tx powers) of an imported dataset."""
    return {"node_ids": [node.id for node in ms.nodes], "nodes": [_node_row(node) for node in ms.nodes]}


def _node_row(node: Node) -> dict[str, Any]:
    keys = ("id", "lat", "lon", "x_m", "y_m", "alt_m", "tx_power_dbm", "carrier_hz")
    return {key: getattr(node, key) for key in keys if getattr(node, key) is not None}


def _positions(ms: MeasurementSet) -> list[tuple[str, Any]]:
    """``(json path, object)`` of every node with a position, mobile report and truth."""
    items: list[tuple[str, Any]] = [(f"nodes[{i}]", n) for i, n in enumerate(ms.nodes) if n.has_position]
    for i, sample in enumerate(ms.samples):
        items += [(f"samples[{i}].reports[{j}]", r) for j, r in enumerate(sample.reports) if r.node is None]
        if sample.truth is not None:
            items.append((f"samples[{i}].truth", sample.truth))
    return items


def _scene_attrs(scene_name: str | None) -> dict[str, Any]:
    """``scene_hashes``: the content digest of the workspace scene whose frame an import uses (the Metrics
    scene check compares it with a run's)."""
    from rflocal_core.scene.store import load_scene_meta

    digest = load_scene_meta(scene_name).get("content_sha256") if scene_name is not None else None
    return {"scene_hashes": {scene_name: str(digest)} if digest else {}}


def _choose_frame(ms: MeasurementSet, scene: str | None) -> tuple[LocalFrame, str, str | None]:
    """The local frame, a description of where it comes from, and the workspace scene used (if any)."""
    from rflocal_core.scene.store import load_scene_meta, scene_frame

    items = _positions(ms)
    if scene is not None:
        meta = load_scene_meta(scene)  # raises SceneNotFoundError naming the existing scenes
        return _checked_frame(scene_frame(meta), items, scene), f"scene {scene!r}", scene
    if ms.scene is not None:
        try:
            meta = load_scene_meta(ms.scene)
        except (SceneNotFoundError, InvalidInputError):
            meta = None
        if meta is not None:
            frame = _checked_frame(scene_frame(meta), items, ms.scene)
            return frame, f"scene {ms.scene!r} (named by the file)", ms.scene
    xy_only = next((path for path, item in items if item.lat is None), None)
    if xy_only is not None:
        where = f"the file's scene {ms.scene!r} is not in the workspace" if ms.scene else "the file names no scene"
        msg = (
            f"{xy_only}: a position given only as x_m/y_m needs its scene's frame, but {where}; "
            "build or name the scene (scene=...), or give lat/lon"
        )
        raise InvalidInputError(msg)
    if not items:
        msg = "samples: no node, mobile sensor or truth has a position; expected at least one to place a local frame"
        raise InvalidInputError(msg)
    lat = float(np.mean([item.lat for _, item in items]))
    lon = float(np.mean([item.lon for _, item in items]))
    frame = LocalFrame.at(lat, lon)
    return frame, f"centroid of the file's positions ({lat:.6f}, {lon:.6f}), UTM {frame.utm_zone}", None


def _checked_frame(frame: LocalFrame, items: list[tuple[str, Any]], scene: str) -> LocalFrame:
    """``frame``, after refusing positions given only as lat/lon if it is not geo-referenced."""
    latlon_only = next((path for path, item in items if item.x_m is None), None)
    if latlon_only is not None:
        frame.check_latlon_input(latlon_only, scene=scene)
    return frame


def _place(items: Sequence[Any], frame: LocalFrame, use_xy: bool) -> tuple[np.ndarray, np.ndarray]:
    """Metres ``[n, 3]`` (z = alt_m or NaN) and degrees ``[n, 2]`` of position-like objects."""
    n = len(items)
    lat = np.array([np.nan if it.lat is None else it.lat for it in items], dtype=np.float64)
    lon = np.array([np.nan if it.lon is None else it.lon for it in items], dtype=np.float64)
    x = np.array([np.nan if it.x_m is None else it.x_m for it in items], dtype=np.float64)
    y = np.array([np.nan if it.y_m is None else it.y_m for it in items], dtype=np.float64)
    z = np.array([np.nan if it.alt_m is None else it.alt_m for it in items], dtype=np.float64)
    if not use_xy:
        x[:], y[:] = np.nan, np.nan
    project = np.isnan(x) & np.isfinite(lat)
    if project.any():
        px, py = frame.to_xy(lat[project], lon[project])
        x[project], y[project] = px, py
    unproject = np.isnan(lat) & np.isfinite(x)
    if unproject.any():
        plat, plon = frame.to_latlon(x[unproject], y[unproject])
        lat[unproject], lon[unproject] = plat, plon
    return np.column_stack([x, y, z]).reshape(n, 3), np.column_stack([lat, lon]).reshape(n, 2)


def _build_arrays(ms: MeasurementSet, frame: LocalFrame, use_xy: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    num_nodes = len(ms.nodes)
    n = len(ms.samples)
    times = [sorted({r.t_s for r in sample.reports}) for sample in ms.samples]
    steps = max((len(t) for t in times), default=1)
    mobile_slots = max((sum(r.node is None for r in sample.reports) for sample in ms.samples), default=0)
    slots = num_nodes + mobile_slots

    shape = (n, steps, slots)
    a: dict[str, np.ndarray] = {key: np.full(shape, np.nan, dtype=np.float32)
                                for key in (*_FLOAT_FIELDS, *_UNKNOWN_FLOAT_FIELDS)}
    a.update(ta=np.full(shape, -1, dtype=np.int32), t_s=np.zeros((n, steps), dtype=np.float64),
             step_mask=np.zeros((n, steps), dtype=bool), node_mask=np.zeros((n, slots), dtype=bool),
             node_pos_m=np.full((n, slots, 3), np.nan, dtype=np.float64),
             node_latlon=np.full((n, slots, 2), np.nan, dtype=np.float64),
             node_pos_known=np.zeros((n, slots), dtype=bool),
             pos_m=np.full((n, steps, 3), np.nan, dtype=np.float64),
             latlon=np.full((n, steps, 2), np.nan, dtype=np.float64))
    a["node_mask"][:, :num_nodes] = True
    known = [s for s, node in enumerate(ms.nodes) if node.has_position]
    if known:
        xyz, ll = _place([ms.nodes[s] for s in known], frame, use_xy)
        a["node_pos_m"][:, known], a["node_latlon"][:, known], a["node_pos_known"][:, known] = xyz[None], ll[None], True

    phy = [key for key in PHY_FIELDS if any(getattr(r, key) is not None for smp in ms.samples for r in smp.reports)]
    for key in phy:
        a[key] = np.full(shape, -1 if np.dtype(_PHY_DTYPES[key]).kind == "i" else np.nan, dtype=_PHY_DTYPES[key])
    where: list[tuple[int, int, int, int]] = []
    mobile_items, mobile_where, truth_items, truth_where = _fill_reports(ms, times, a, where)
    captures, iq_attrs = iqexchange.import_arrays(ms, where, shape)
    if mobile_items:
        xyz, ll = _place(mobile_items, frame, use_xy)
        rows, cols = np.array(mobile_where).T
        a["node_pos_m"][rows, cols], a["node_latlon"][rows, cols], a["node_pos_known"][rows, cols] = xyz, ll, True
    has_truth = np.zeros(n, dtype=bool)
    if truth_items:
        xyz, ll = _place(truth_items, frame, use_xy)
        rows, cols = np.array(truth_where).T
        a["pos_m"][rows, cols], a["latlon"][rows, cols], has_truth[rows] = xyz, ll, True
    node_pos, pos = a["node_pos_m"], a["pos_m"]
    no_alt = bool(np.isnan(pos[has_truth][..., 2]).any() if has_truth.any() else False) or bool(
        np.isnan(node_pos[a["node_pos_known"]][..., 2]).any())

    arrays = {
        "scene_idx": np.zeros(n, dtype=np.int16),
        "pos_m": pos.astype(np.float32),
        "latlon": a["latlon"],
        "t_s": a["t_s"],
        "step_mask": a["step_mask"],
        "node_pos_m": node_pos.astype(np.float32),
        "node_mask": a["node_mask"],
        "node_pos_known": a["node_pos_known"],
        "node_latlon": a["node_latlon"],
        "tx_power_dbm": np.full(n, np.nan, dtype=np.float32),
        **{key: a[key] for key in (*_FLOAT_FIELDS, *_UNKNOWN_FLOAT_FIELDS)},
        "ta": a["ta"],
        "los": np.full(shape, -1, dtype=np.int8),
        **{key: a[key] for key in phy},
        **captures,
    }
    if any(node.carrier_hz is not None for node in ms.nodes):  # each file node's band (mobile slots: unknown)
        carrier = np.full((n, shape[2]), np.nan)
        carrier[:, :num_nodes] = [np.nan if node.carrier_hz is None else node.carrier_hz for node in ms.nodes]
        arrays["node_carrier_hz"] = carrier
    if phy:  # where a report carries any PHY/MAC field, as generated datasets' phy_mask
        arrays["phy_mask"] = np.any([a[k] >= 0 if a[k].dtype.kind == "i" else np.isfinite(a[k]) for k in phy], 0)
    # As for generated datasets: the mean number of node slots with an RSS report per sample.
    with_rss = np.isfinite(a["rss_dbm"]).any(1).sum(-1)
    info = {"has_truth": has_truth, "mobile_slots": int(mobile_slots), "no_alt": no_alt,
            "reports_mean": float(with_rss.mean()) if n else 0.0, "iq": iq_attrs}
    return arrays, info


def _fill_reports(ms: MeasurementSet, times: list[list[float]], a: dict[str, np.ndarray],
                  where: list[tuple[int, int, int, int]] | None = None,
                  ) -> tuple[list[Report], list[tuple[int, int]], list[Position], list[tuple[int, int]]]:
    """Put every report's values into ``a`` (at its time step and node or mobile slot).

    Returns the mobile reports and the truths with their (sample, slot) and (sample, last
    step), to be placed in the frame all at once; ``where`` (a list) gets each report's
    (sample, report, step, slot).
    """
    num_nodes = len(ms.nodes)
    node_index = {node.id: s for s, node in enumerate(ms.nodes)}
    mobile_items: list[Report] = []
    mobile_where: list[tuple[int, int]] = []
    truth_items: list[Position] = []
    truth_where: list[tuple[int, int]] = []
    for i, sample in enumerate(ms.samples):
        step_of = {t: k for k, t in enumerate(times[i])}
        a["t_s"][i, :len(times[i])] = times[i]
        a["step_mask"][i, :len(times[i])] = True
        seen: dict[tuple[int, int], int] = {}
        m = 0
        for j, report in enumerate(sample.reports):
            k = step_of[report.t_s]
            if report.node is not None:
                s = node_index[report.node]
                if (k, s) in seen:
                    msg = (
                        f"expected at most one report per node and time in a sample, got a second report of node "
                        f"{report.node!r} at t_s={report.t_s:g} (first at reports[{seen[(k, s)]}])"
                    )
                    raise MeasurementFormatError(msg, path=f"samples[{i}].reports[{j}]")
                seen[(k, s)] = j
            else:
                s = num_nodes + m
                m += 1
                mobile_items.append(report)
                mobile_where.append((i, s))
            if where is not None:
                where.append((i, j, k, s))
            for key in _FLOAT_FIELDS:
                value = getattr(report, key)
                if value is not None:
                    a[key][i, k, s] = value
            if report.ta is not None:
                a["ta"][i, k, s] = report.ta
            for key, value in report.phy.items():
                a[key][i, k, s] = value
        a["node_mask"][i, num_nodes:num_nodes + m] = True
        if sample.truth is not None:
            truth_items.append(sample.truth)
            truth_where.append((i, len(times[i]) - 1))
    return mobile_items, mobile_where, truth_items, truth_where
