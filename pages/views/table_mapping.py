"""The column mapping of a measurement table (CSV, TSV, Parquet, .xlsx), shared by the import tab and Live Inference."""

from __future__ import annotations

from typing import Any

import streamlit as st

from pages.views.widgets import upload_limit_mib
from rflocal_core.measurements.columns import (
    COLUMN_KEYS,
    CRS_HELP,
    MEASUREMENT_KEYS,
    NODE_PAIRS_HELP,
    SEQUENCE_GAP_HELP,
    TIME_FORMAT_HELP,
    guess_columns,
    guess_group_by,
    parse_list,
)
from rflocal_core.measurements.table import MAX_NODES_FILE_BYTES, TableHeader, read_nodes, read_table_header, table_kind


@st.cache_data(max_entries=4, show_spinner=False)
def table_header(data: bytes, kind: str, sheet: str | None = None) -> TableHeader:
    """The table's columns and first rows (every widget change reruns the page: read the header once)."""
    return read_table_header(data, kind=kind, sheet=sheet)


def table_source(data: bytes, kind: str, *, prefix: str) -> tuple[TableHeader, str | None]:
    """The table's header and, for a workbook of several sheets, the sheet chosen first (key ``{prefix}_sheet``)."""
    header = table_header(data, kind)
    if len(header.sheets) < 2:
        return header, None
    sheet = st.selectbox("Sheet", header.sheets, key=f"{prefix}_sheet",
                         help="the workbook's sheet that holds the measurements; its first row names the columns")
    return (header if sheet == header.sheets[0] else table_header(data, kind, sheet)), sheet


def _guess_anew(columns: tuple[str, ...], prefix: str) -> None:
    """Another file or sheet has other columns: its column widgets are set to its guesses. Set, not left to the
    widgets' defaults: a widget keeps its value while it is still an option, and "(none)" always is (the time
    column of a second file stayed unmapped). Typed options (mode, missing values, CRS, ...) are kept."""
    seen = f"{prefix}_guessed_for"
    if st.session_state.get(seen) == columns:
        return
    guess = guess_columns(columns)
    for key in COLUMN_KEYS:
        st.session_state[f"{prefix}_{key}"] = guess.get(key, "(none)")
    st.session_state[f"{prefix}_group"] = list(guess_group_by(columns, guess))
    st.session_state[seen] = columns


def table_mapping(header: TableHeader, *, prefix: str) -> dict[str, Any]:
    """Widgets (keys ``{prefix}_mode``, ``{prefix}_{column key}``, ...): mode, one column per key (guessed from
    the header), grouping, missing values, nodes table; returns ``read_table``'s keywords."""
    _guess_anew(header.columns, prefix)
    c = st.columns([1, 2, 2, 1])
    mode = c[0].radio("Mode", ["ue", "emitter"], horizontal=True, key=f"{prefix}_mode",
                      help="ue: the device that measures is located (lat/lon are its position, the truth); emitter: "
                           "an unknown transmitter is located (lat/lon are a mobile sensor's position)")
    wide = parse_list(c[1].text_input(
        "Node columns (wide table)", value="", key=f"{prefix}_wide",
        help="a table with one row per sample and one column per node (e.g. BS 1 ... BS 72): those columns, by name "
             "or glob, comma-separated (e.g. BS *); each holds that node's RSS and names it. The node and "
             "measurement keys below and the grouping are then not used: each row is a sample."))
    pairs = parse_list(c[2].text_input("Node column pairs (drive test)", value="", key=f"{prefix}_pairs",
                                       placeholder="e.g. PCI:RSRP, NCell*:NRxLev*", help=NODE_PAIRS_HELP))
    gap = c[3].text_input("Track gap (s)", value="", key=f"{prefix}_gap", placeholder="no tracks",
                          help=SEQUENCE_GAP_HELP).strip() or None
    columns = {}
    grid = st.columns(4)
    for k, (key, meaning) in enumerate(COLUMN_KEYS.items()):
        # the value: the guess (_guess_anew) or the user's choice, from the session state
        chosen = grid[k % 4].selectbox(key, ["(none)", *header.columns], key=f"{prefix}_{key}", help=meaning)
        if chosen != "(none)":
            columns[key] = chosen
    c = st.columns(5)
    group_by = c[0].multiselect("Group rows into samples by", list(header.columns), key=f"{prefix}_group",
                                help="when there is no sample id: the columns whose values identify a sample")
    missing = c[1].text_input("Missing values (not received)", value="", key=f"{prefix}_missing",
                              help="comma-separated, e.g. -101, -200")
    crs = c[2].text_input("Coordinates (CRS)", value="", key=f"{prefix}_crs", placeholder="WGS84 degrees",
                          help=CRS_HELP).strip() or None
    time_format = c[3].text_input("Time format", value="", key=f"{prefix}_time_format",
                                  placeholder="seconds or ISO 8601", help=TIME_FORMAT_HELP).strip() or None
    nodes = c[4].file_uploader("Node positions (optional)", type=["csv", "tsv", "txt", "parquet", "xlsx", "json"],
                               key=f"{prefix}_nodes",
                               help="a table id, lat, lon[, alt_m][, tx_power_dbm]",
                               max_upload_size=upload_limit_mib(MAX_NODES_FILE_BYTES))
    if wide or pairs:  # each row is a sample (or a sample id's rows); the node columns are the nodes and their values
        group_by = []
        columns = {key: name for key, name in columns.items() if key not in ("node", *MEASUREMENT_KEYS)}
    return {"columns": columns, "mode": mode, "node_columns": wide, "node_pairs": pairs,
            "group_by": [] if "sample" in columns else group_by,
            "missing": parse_list(missing), "crs": crs, "time_format": time_format, "sequence_gap_s": gap,
            "nodes": None if nodes is None else read_nodes(nodes.getvalue(), kind=table_kind(nodes.name) or "json",
                                                           crs=crs)}
