"""The vocabulary of a measurement table's columns: the keys of ``--columns`` and guesses of them.

A table (:mod:`rflocal_core.measurements.table`) is read through a mapping from these keys to
its column names, e.g. ``{"node": "PCI", "lat": "latitude", "lon": "longitude",
"rss_dbm": "rsrp"}`` (``--columns node=PCI,lat=latitude,lon=longitude,rss_dbm=rsrp`` on the
command line). This module is light (no pandas), so the command line can list the keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rflocal_core.errors import InvalidInputError

#: The vocabulary of ``columns`` keys, with the help text of each.
COLUMN_KEYS: dict[str, str] = {
    "sample": "sample id: rows with the same id form one sample (else give group_by)",
    "time": "time of the row: seconds (numbers) or ISO 8601 timestamps; t_s counts from the sample's first row",
    "sequence": ("track id: the samples with one id are one moving device's track (a walk or drive, one sample per "
                 "report time), which predict --track follows; needs time, and t_s then counts from the track's "
                 "first row"),
    "node": "id of the node measured (cell, base station, gateway, fixed receiver)",
    "node_lat": "latitude of the node (WGS84 degrees); one position per node",
    "node_lon": "longitude of the node (WGS84 degrees)",
    "node_alt_m": "height of the node's antenna in metres",
    "lat": "latitude of the row's position: ue mode the device's (= the truth), emitter mode a mobile sensor's",
    "lon": "longitude of the row's position (see lat)",
    "alt_m": "height of the row's position in metres (see lat)",
    "rss_dbm": "received signal strength (RSS, RSRP, RSSI) in dBm, in [-200, 30]",
    "toa_ns": "time of arrival in nanoseconds, in [0, 1e7]",
    "ta": "timing-advance index in units of 16 Ts, an integer in [0, 65535]",
    "aoa_deg": "angle of arrival: compass bearing in degrees, clockwise from north, in [0, 360]",
    "tx_power_dbm": "transmit power of the node in dBm (ue mode), in [-100, 100]",
    "truth_lat": "true latitude of the located device (ue) or emitter (emitter)",
    "truth_lon": "true longitude of the located device or emitter",
    "rsrq_db": "PHY: RSRQ of the node's cell in dB, in [-43, 20] (optional, with a measurement)",
    "sinr_db": "PHY: SINR of the node's cell in dB, in [-23, 40]",
    "cqi": "PHY: channel quality indicator, an integer in [0, 15]",
    "ri": "PHY: rank indicator, an integer in [1, 8]",
    "beam_id": "PHY: best SSB beam index, an integer in [0, 4095]",
    "beam_rsrp_dbm": "PHY: L1-RSRP of the best SSB beam in dBm, in [-200, 30]",
    "doppler_hz": "PHY: Doppler shift in Hz, in [-1e5, 1e5]",
    "serving": "PHY: 1 if the node's cell serves the device, 0 for a neighbour",
    "neighbour_rank": "MAC: place of the cell in the measurement report, 0 serving, 1..K the strongest neighbours",
    "event_a3": "MAC: 1 if an A3 event fired for the cell at this report",
    "event_a5": "MAC: 1 if an A5 event fired for the cell at this report",
}

#: Help of a table's ``crs`` option (the ``--crs`` flag and the import widgets).
CRS_HELP: str = ("coordinates of the position columns (lat/lon, node_lat/node_lon, truth_lat/truth_lon): empty for "
                 "WGS84 degrees, else a coordinate reference system, e.g. EPSG:32617 (UTM 17N) or EPSG:3857 (web "
                 "Mercator); the lat columns then hold y (northing) and the lon columns x (easting), converted to "
                 "WGS84 on reading")

#: Help of a table's ``time_format`` option (the ``--time-format`` flag and the import widgets).
TIME_FORMAT_HELP: str = ("the format of the time column's timestamps when they are not ISO 8601, in strftime codes, "
                         "e.g. %Y.%m.%d_%H.%M.%S (G-NetTrack) or %d/%m/%Y %H:%M:%S; read as UTC unless the format "
                         "has %z; empty: seconds or ISO 8601 (numbers above 1e11 are read as epoch milliseconds)")

#: Help of a table's ``node_pairs`` option (the ``--node-pairs`` flag and the import widgets).
NODE_PAIRS_HELP: str = ("a wide table whose columns come in pairs, a node's id and its value, as drive-test apps export "
                        "the serving cell and its neighbours: ID:VALUE pairs, comma-separated, two column names "
                        "(PCI:RSRP) or two patterns with one * each, paired by what the * matches (NCell*:NRxLev*: "
                        "NCell1 with NRxLev1); the node is the id cell's text, the value its RSS. The node and "
                        "measurement keys and the grouping are then not used: each row is a sample")

#: Help of a table's ``sequence_gap_s`` option (the ``--sequence-gap-s`` flag and the import widgets).
SEQUENCE_GAP_HELP: str = ("tracks for predict --track from a timed log (needs the time column): a new track starts "
                          "where more than this many seconds pass without a sample, within each sequence id, or over "
                          "the whole file when no sequence column is mapped (tracks track-1, track-2, ...); inf: one "
                          "track per sequence id, or the whole file")

#: Measurement keys; at least one is mapped, and a row keeps at least one to be used.
MEASUREMENT_KEYS: tuple[str, ...] = ("rss_dbm", "toa_ns", "ta", "aoa_deg")

#: Optional PHY/MAC keys (the format's ``PHY_FIELDS``): carried with a row's measurements.
PHY_KEYS: tuple[str, ...] = ("rsrq_db", "sinr_db", "cqi", "ri", "beam_id", "beam_rsrp_dbm", "doppler_hz", "serving",
                              "neighbour_rank", "event_a3", "event_a5")

# Header names (lower case, letters and digits only) that guess_columns maps to each key.
_GUESSES: dict[str, tuple[str, ...]] = {
    "sample": ("sample", "sampleid", "messageid", "msgid", "measurementid", "scanid"),
    "time": ("time", "timestamp", "ts", "datetime", "date", "utc", "times", "tsec"),
    "sequence": ("sequence", "sequenceid", "seq", "track", "trackid", "trip", "tripid", "walk", "walkid"),
    "node": ("node", "nodeid", "pci", "cell", "cellid", "cid", "ecgi", "gateway", "gatewayid", "gwid", "bs",
             "bsid", "site", "siteid", "enb", "gnb", "sensor", "sensorid"),
    "node_lat": ("nodelat", "celllat", "bslat", "sitelat", "gatewaylat", "gwlat", "sensorlat", "txlat"),
    "node_lon": ("nodelon", "celllon", "bslon", "sitelon", "gatewaylon", "gwlon", "sensorlon", "txlon", "nodelng"),
    "node_alt_m": ("nodealtm", "nodealt", "cellalt", "sitealt", "antennaheight", "siteheight", "bsalt"),
    "lat": ("lat", "latitude", "gpslat", "northing", "utmnorthing"),
    "lon": ("lon", "lng", "long", "longitude", "gpslon", "gpslng", "easting", "utmeasting"),
    "alt_m": ("altm", "alt", "altitude", "height", "elevation", "heightm"),
    "rss_dbm": ("rssdbm", "rss", "rsrp", "rssi", "rsrpdbm", "rssidbm", "rxpower", "rxlev", "signal",
                "signalstrength", "level", "powerdbm"),
    "toa_ns": ("toans", "toa", "tof"),
    "ta": ("ta", "timingadvance"),
    "aoa_deg": ("aoadeg", "aoa", "doa", "bearing", "angle"),
    "tx_power_dbm": ("txpowerdbm", "txpower", "eirp", "txdbm"),
    "rsrq_db": ("rsrqdb", "rsrq", "ssrsrq"),
    "sinr_db": ("sinrdb", "sinr", "sssinr"),
    "cqi": ("cqi", "cqiindex"),
    "ri": ("ri", "rank", "rankindicator"),
    "beam_id": ("beamid", "beam", "ssbindex", "ssbidx", "ssbid"),
    "beam_rsrp_dbm": ("beamrsrpdbm", "beamrsrp", "l1rsrp", "ssbrsrp"),
    "doppler_hz": ("dopplerhz", "doppler"),
    "serving": ("serving", "isserving", "servingcell"),
    "neighbour_rank": ("neighbourrank", "neighborrank", "ncellrank"),
    "event_a3": ("eventa3", "a3"),
    "event_a5": ("eventa5", "a5"),
    "truth_lat": ("truthlat", "truelat", "gtlat", "reflat", "targetlat", "sourcelat", "emitterlat", "sourcex"),
    "truth_lon": ("truthlon", "truelon", "gtlon", "reflon", "targetlon", "sourcelon", "emitterlon", "sourcey"),
}
_DEVICE_GUESSES = ("device", "deviceid", "phone", "ue", "ueid", "imei", "imsi", "handset", "model")


def parse_columns(text: str | Sequence[str]) -> dict[str, str]:
    """Parse ``"node=PCI,lat=latitude"`` (or a list of such strings) into ``{key: column}``.

    Raises
    ------
    InvalidInputError
        A pair is not ``KEY=COLUMN``, or a key is given twice.
    """
    parts = [text] if isinstance(text, str) else list(text)
    out: dict[str, str] = {}
    for part in parts:
        for pair in str(part).split(","):
            if not pair.strip():
                continue
            key, sep, column = pair.partition("=")
            key, column = key.strip(), column.strip()
            if not sep or not key or not column:
                msg = f"columns: expected KEY=COLUMN pairs separated by commas, got {pair.strip()!r}"
                raise InvalidInputError(msg)
            if key in out:
                msg = f"columns: key {key!r} is given twice ({out[key]!r} and {column!r}); expected each key once"
                raise InvalidInputError(msg)
            out[key] = column
    return out


def parse_list(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Split comma-separated values (``--group-by a,b``, ``--missing -101,-200``); lists are joined."""
    if text is None:
        return ()
    parts = [text] if isinstance(text, str) else list(text)
    return tuple(v.strip() for part in parts for v in str(part).split(",") if v.strip())


def guess_columns(columns: Sequence[str]) -> dict[str, str]:
    """A guess of the mapping from common header names (lat/latitude, rsrp/rssi/rss, PCI, ...).

    Each column is used for at most one key; keys without a likely column are left out.
    """
    normal = {name: "".join(ch for ch in str(name).lower() if ch.isalnum()) for name in columns}
    out: dict[str, str] = {}
    for key, guesses in _GUESSES.items():
        for guess in guesses:
            match = next((name for name in columns if normal[name] == guess and name not in out.values()), None)
            if match is not None:
                out[key] = match
                break
    if "time" not in out:  # a track is ordered by time: without a time column the guess would be refused
        out.pop("sequence", None)
    return out


def guess_group_by(columns: Sequence[str], mapping: Mapping[str, str]) -> list[str]:
    """A guess of the columns identifying a sample when there is no sample id: the position and a device column."""
    if "sample" in mapping:
        return []
    out = [mapping[key] for key in ("lat", "lon", "truth_lat", "truth_lon") if key in mapping]
    out += [name for name in columns
            if "".join(ch for ch in str(name).lower() if ch.isalnum()) in _DEVICE_GUESSES and name not in out][:1]
    return out
