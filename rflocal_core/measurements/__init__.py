"""Measurements: the one exchange format ``rflocal-measurements/1`` and converters of real datasets.

Public API::

    from rflocal_core.measurements import load_measurements, dump_measurements, convert_antwerp
    ms = load_measurements("measurements.json")                 # strict: first error raises
    ms = load_measurements(upload_bytes, on_error="collect")     # bad samples listed in ms.errors
    dump_measurements(convert_antwerp("../shared/data/real/antwerp_lorawan"), "antwerp_test.json")
    ms = load_measurements("log.json", on_fault="drop")          # duplicate ids, -999 dBm: dropped, listed
    clean, report = check_quality(ms)                             # GPS / RSS sentinels, outliers: dropped, counted

The format is documented for users in ``docs/measurement-format.md``.
"""

from __future__ import annotations

from rflocal_core.measurements.antwerp import ANTWERP_MISSING_RSSI_DBM, ANTWERP_SPLITS, convert_antwerp
from rflocal_core.measurements.format import (
    FORMAT_ID,
    MAX_MEASUREMENT_FILE_BYTES,
    MEASUREMENT_FIELDS,
    MODES,
    PHY_FIELDS,
    Dropped,
    MeasurementFormatError,
    MeasurementSet,
    Node,
    Position,
    Report,
    Sample,
    SampleError,
    dump_measurements,
    dumps_measurements,
    load_measurements,
    parse_measurements,
    to_json_dict,
)
from rflocal_core.measurements.quality import (
    NodePositions,
    QualityLimits,
    QualityReport,
    check_quality,
    fixed_node_positions,
)

__all__ = [
    "ANTWERP_MISSING_RSSI_DBM",
    "ANTWERP_SPLITS",
    "FORMAT_ID",
    "MAX_MEASUREMENT_FILE_BYTES",
    "MEASUREMENT_FIELDS",
    "MODES",
    "PHY_FIELDS",
    "Dropped",
    "MeasurementFormatError",
    "MeasurementSet",
    "Node",
    "NodePositions",
    "Position",
    "QualityLimits",
    "QualityReport",
    "Report",
    "Sample",
    "SampleError",
    "check_quality",
    "convert_antwerp",
    "dump_measurements",
    "dumps_measurements",
    "fixed_node_positions",
    "load_measurements",
    "parse_measurements",
    "to_json_dict",
]
