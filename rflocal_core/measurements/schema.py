"""The JSON Schema (draft 2020-12) of ``rflocal-measurements/1``, generated from the reader's own definitions.

Field ranges come from :data:`~rflocal_core.measurements.format.FIELDS`, allowed keys from
the ``*_KEYS`` tuples, modes and format id from the same constants the reader checks, so
the schema cannot drift from :func:`~rflocal_core.measurements.format.load_measurements`.
The published copy is ``docs/rflocal-measurements-1.schema.json``; regenerate it with::

    python -m rflocal_core.measurements.schema docs/rflocal-measurements-1.schema.json

The schema accepts exactly the files the reader accepts, except for the rules listed in
:data:`NOT_IN_SCHEMA`, which JSON Schema cannot express; the reader's messages
(``samples[3].reports[0].rss_dbm: expected a number in [-200, 30], got "abc"``) stay the
reference for users.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rflocal_core.measurements.format import (
    DOCUMENT_KEYS,
    FIELDS,
    FORMAT_ID,
    IQ_KEYS,
    IQ_SAMPLES_RANGE,
    MAX_MEASUREMENT_FILE_BYTES,
    MEASUREMENT_FIELDS,
    MODES,
    NODE_KEYS,
    PHY_FIELDS,
    POSITION_KEYS,
    POSITION_PAIRS,
    REPORT_KEYS,
    SAMPLE_KEYS,
    SURVEY_FEATURE_KEYS,
    SURVEY_FIELDS,
    SURVEY_SOURCE_KEYS,
    SURVEY_TARGET_KEYS,
    TOP_KEYS,
)
from rflocal_core.workspace import atomic_write_text

#: Where the published schema lives, relative to the repository root.
SCHEMA_FILE = "docs/rflocal-measurements-1.schema.json"

#: Rules of the format that JSON Schema cannot express: only RFLocal's reader checks them.
NOT_IN_SCHEMA: tuple[str, ...] = (
    "node ids are unique",
    "sample ids are unique (given or defaulted to s-<index>)",
    'a report\'s "node" is the id of a node listed in "nodes"',
    "a survey source's features.x, features.y and features.rssi have the same length",
    "numbers are finite (NaN and Infinity are not JSON; a literal such as 1e999 overflows to infinity)",
    f"a file is UTF-8 and at most {MAX_MEASUREMENT_FILE_BYTES // 2**20} MiB",
)

_TEXT_PATTERN = r"\S"  # not empty and not only white space


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _present(name: str) -> dict[str, Any]:
    """Holds when ``name`` is given and not null (the reader treats null as absent)."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _absent(*names: str) -> dict[str, Any]:
    """Holds when none of ``names`` is given, or each is null."""
    return {"properties": {name: {"type": "null"} for name in names}}


def _any_present(names: tuple[str, ...]) -> dict[str, Any]:
    return {"anyOf": [_present(name) for name in names]}


def _number_def(name: str) -> dict[str, Any]:
    """A field of FIELDS as a schema: its kind and range; null stands for "absent"."""
    spec = FIELDS[name]
    out: dict[str, Any] = {"description": f"{spec.description} Null or absent: not given.",
                           "type": [spec.kind, "null"]}
    lo, hi = spec.bounds
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


def _object(description: str, keys: tuple[str, ...], properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A closed object: exactly the keys the reader allows (it refuses unknown ones), in its order."""
    if sorted(properties) != sorted(keys):  # a key added to the reader must be described here too
        msg = f"schema: properties {sorted(properties)} differ from the reader's keys {sorted(keys)}"
        raise RuntimeError(msg)
    return {"description": description, "type": "object",
            "properties": {key: properties[key] for key in keys}, "additionalProperties": False, **more}


def _position_rules() -> dict[str, Any]:
    pairs = [{"if": _present(first), "then": _present(second)} for first, second in POSITION_PAIRS]
    alt = {"if": _present("alt_m"), "then": _any_present(("lat", "x_m"))}
    return {"description": "Pairs are complete (lat with lon, x_m with y_m); alt_m needs one of them.",
            "allOf": [*pairs, alt]}


def _defs() -> dict[str, Any]:
    text = {"type": "string", "pattern": _TEXT_PATTERN}
    position_props = {key: _ref(key) for key in POSITION_KEYS}
    has_position = {"description": "At least one pair: lat/lon or x_m/y_m.", **_any_present(("lat", "x_m"))}
    defs: dict[str, Any] = {name: _number_def(name) for name in FIELDS}
    defs["text"] = {"description": "A non-empty string (not only white space).", **text}
    defs["position_rules"] = _position_rules()
    defs["has_position"] = has_position
    defs["position"] = _object(
        "A position: WGS84 lat/lon and/or scene metres x_m/y_m, optional alt_m.", POSITION_KEYS, position_props,
        allOf=[_ref("position_rules"), _ref("has_position")],
    )
    defs["node"] = _object(
        'A known node (base station, gateway, receiver). A node whose position is unknown says so with '
        '"position": null.', NODE_KEYS,
        {"id": {"description": "Unique among nodes (not checked by this schema).", **text},
         **position_props, "tx_power_dbm": _ref("tx_power_dbm"), "carrier_hz": _ref("carrier_hz"),
         "position": {"description": "Only null: the node's position is unknown.", "type": "null"}},
        required=["id"],
        allOf=[_ref("position_rules"),
               {"if": {"required": ["position"]}, "then": _absent(*POSITION_KEYS), "else": _ref("has_position")}],
    )
    samples = {"type": "array", "minItems": IQ_SAMPLES_RANGE[0], "maxItems": IQ_SAMPLES_RANGE[1],
               "items": {"type": "number"}}
    defs["iq"] = _object(
        "A raw IQ capture: complex baseband samples i + j q from t0_s at sample_rate_hz (RFLocal writes them in "
        "sqrt(mW): i^2 + q^2 is the instantaneous power in mW).", IQ_KEYS,
        {"sample_rate_hz": _ref("sample_rate_hz"), "t0_s": _ref("t0_s"),
         "i": {"description": "In-phase samples.", **samples},
         "q": {"description": "Quadrature samples, as many as i (not checked by this schema).", **samples}},
        required=list(IQ_KEYS), allOf=[_present(key) for key in IQ_KEYS],
    )
    defs["report"] = _object(
        "The measurements of one node (node) or of a mobile sensor at its own position (lat/lon or x_m/y_m), "
        "with at least one measurement.", REPORT_KEYS,
        {"node": {"description": 'Id of a node listed in "nodes" (not checked by this schema).',
                  "type": ["string", "null"], "pattern": _TEXT_PATTERN},
         **{key: _ref(key) for key in ("t_s", *MEASUREMENT_FIELDS)}, **position_props,
         "iq": {"description": "The raw capture the measurements came from (optional).",
                "anyOf": [_ref("iq"), {"type": "null"}]},
         **{key: _ref(key) for key in PHY_FIELDS}},
        allOf=[_ref("position_rules"),
               {"if": _present("node"), "then": _absent(*POSITION_KEYS), "else": _ref("has_position")},
               {"description": f"At least one of {', '.join(MEASUREMENT_FIELDS)}, or an iq capture.",
                **_any_present((*MEASUREMENT_FIELDS, "iq"))}],
    )
    defs["sample"] = _object(
        "One localization problem: reports and, if known, the true position.", SAMPLE_KEYS,
        {"id": {"description": "Unique among samples (not checked by this schema); default s-<index>.",
                "type": ["string", "null"], "pattern": _TEXT_PATTERN},
         "reports": {"type": "array", "minItems": 1, "items": _ref("report")},
         "truth": {"description": "The true position, for evaluation.", "anyOf": [_ref("position"), {"type": "null"}]},
         "sequence": {"description": "Id of the track the sample belongs to (one sample per report time of a "
                                     "moving device); tracking filters each sequence.",
                      "type": ["string", "null"], "pattern": _TEXT_PATTERN}},
        required=["reports"],
    )
    defs["document"] = _object(
        f"An {FORMAT_ID} document.", TOP_KEYS,
        {"format": {"const": FORMAT_ID},
         "mode": {"description": "ue: the known nodes transmit and the device is located; emitter: the known "
                                 "nodes receive and an unknown transmitter is located.", "enum": list(MODES)},
         "scene": {"description": "Name of the scene the measurements belong to.",
                   "type": ["string", "null"], "pattern": _TEXT_PATTERN},
         "notes": {"description": "Free-text remarks (provenance, assumptions).",
                   "type": ["array", "null"], "items": _ref("text")},
         "nodes": {"description": "The known nodes (default: none).", "type": ["array", "null"], "items": _ref("node")},
         "samples": {"type": "array", "minItems": 1, "items": _ref("sample")}},
        required=["format", "mode", "samples"],
    )
    defs.update(_survey_defs())
    return defs


def _survey_defs() -> dict[str, Any]:
    def value(key: str) -> dict[str, Any]:
        name, what = SURVEY_FIELDS[key]
        return {"description": what, "$ref": f"#/$defs/{name}", "type": "number"}  # type: not null here

    features = _object(
        "One measurement point per index: x latitudes, y longitudes, rssi in dBm (equal lengths, not checked "
        "by this schema).", SURVEY_FEATURE_KEYS,
        {key: {"type": "array", "minItems": 1, "items": value(key)} for key in SURVEY_FEATURE_KEYS},
        required=list(SURVEY_FEATURE_KEYS),
    )
    targets = _object(
        "The source's true position: source_x latitude, source_y longitude.", SURVEY_TARGET_KEYS,
        {key: value(key) for key in SURVEY_TARGET_KEYS}, required=list(SURVEY_TARGET_KEYS),
    )
    targets["type"] = ["object", "null"]
    source = _object("One source (one sample, emitter mode).", SURVEY_SOURCE_KEYS,
                     {"features": features, "targets": targets}, required=["features"])
    survey = {"description": 'The survey format: {"<source_id>": {"features": {...}, "targets": {...}}}, read in '
                             "emitter mode.", "type": "object", "minProperties": 1,
              "propertyNames": {"pattern": _TEXT_PATTERN}, "additionalProperties": _ref("survey_source")}
    return {"survey_source": source, "survey": survey}


def measurement_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``rflocal-measurements/1`` and of the survey format it reads.

    An object with any of ``format``, ``mode``, ``nodes``, ``samples`` is a document, any
    other a survey, as the reader decides. See :data:`NOT_IN_SCHEMA` for the rules only the
    reader checks.
    """
    limits = "; ".join(NOT_IN_SCHEMA)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": FORMAT_ID,
        "description": (
            f"RFLocal measurement files ({FORMAT_ID}, or the survey format it also reads); see "
            "docs/measurement-format.md. Generated from rflocal_core/measurements/format.py by "
            "python -m rflocal_core.measurements.schema. Not expressible in JSON Schema and checked only by "
            f"RFLocal's reader (rflocal_core.measurements.load_measurements): {limits}."
        ),
        "if": {"anyOf": [{"required": [key]} for key in DOCUMENT_KEYS]},
        "then": _ref("document"),
        "else": _ref("survey"),
        "$defs": _defs(),
    }


def dumps_schema() -> str:
    """:func:`measurement_schema` as the text of the published file."""
    return json.dumps(measurement_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the schema, or write it (atomically) to the path given."""
    parser = argparse.ArgumentParser(prog="python -m rflocal_core.measurements.schema",
                                     description=f"Print the JSON Schema of {FORMAT_ID} or write it to a file.")
    parser.add_argument("out", nargs="?", help=f"file to write (e.g. {SCHEMA_FILE}); default: standard output")
    args = parser.parse_args(argv)
    if args.out:
        atomic_write_text(Path(args.out), dumps_schema())
    else:
        sys.stdout.write(dumps_schema())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
