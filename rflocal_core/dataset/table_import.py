"""Tables (CSV, TSV, Parquet, .xlsx) -> datasets: :func:`read_table`, then the same store as JSON imports.

::

    from rflocal_core.dataset.table_import import import_table
    summary = import_table("Duke_CBRS.csv", name="duke",
                           columns={"node": "PCI", "lat": "latitude", "lon": "longitude", "rss_dbm": "rsrp"},
                           group_by=["latitude", "longitude", "device"])
    summary.table         # TableReport: rows read / used and the row-level problems by reason

The table's reading (keys, grouping, node positions, missing values, caps) is documented in
:mod:`rflocal_core.measurements.table`; the dataset it becomes is the one
:func:`~rflocal_core.dataset.exchange.import_measurements` writes for a JSON file, with the
table's description and report in the ``input`` attribute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace

from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.dataset.exchange import DEFAULT_SPLIT_FRACTIONS, ImportResult, import_measurements
from rflocal_core.measurements.format import Node
from rflocal_core.measurements.table import MAX_TABLE_FILE_BYTES, MAX_TABLE_ROWS, read_table


def import_table(
    source: str | os.PathLike[str] | bytes,
    *,
    name: str,
    columns: Mapping[str, str],
    mode: str = "ue",
    group_by: Sequence[str] = (),
    missing: Sequence[str | float] = (),
    nodes: str | os.PathLike[str] | bytes | Sequence[Node] | None = None,
    kind: str | None = None,
    strict: bool = False,
    min_reports: int = 1,
    scene: str | None = None,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = 0,
    split_block_m: float | None = None,
    max_bytes: int = MAX_TABLE_FILE_BYTES,
    max_rows: int = MAX_TABLE_ROWS,
    owner: str | None = None,
    user: User = LOCAL_USER,
    node_columns: Sequence[str] = (),
    node_value: str = "rss_dbm",
    node_pairs: Sequence[str] = (),
    crs: str | None = None,
    time_format: str | None = None,
    sheet: str | None = None,
    sequence_gap_s: float | None = None,
    split_by_sequence: bool = False,
) -> ImportResult:
    """Read a table (long layout, or wide with ``node_columns`` or ``node_pairs``) and store it as the dataset
    ``workspace/datasets/<name>``.

    Parameters are those of :func:`rflocal_core.measurements.table.read_table` (the table)
    and of :func:`rflocal_core.dataset.import_measurements` (``name``, ``scene``,
    ``split_fractions``, ``seed``, ``strict``, ``min_reports``, ``owner``, ``user``). The table's faulty cells and
    rows join the quality report of the import (reasons ``table_*``).

    split_block_m : float, optional
        Split by squares of this many metres instead of by sample
        (:func:`rflocal_core.dataset.splits.block_splits`): neighbouring points of one walk
        then stay on one side.
    split_by_sequence : bool
        Split by track instead (:func:`rflocal_core.dataset.splits.sequence_splits`): each ``sequence`` (a
        ``sequence`` column or ``sequence_gap_s``) goes whole to one split.

    Returns
    -------
    ImportResult
        The result of :func:`~rflocal_core.dataset.import_measurements`, with ``table``: the
        :class:`~rflocal_core.measurements.table.TableReport` (rows read and used, samples,
        reports, nodes, nodes of unknown position, issues by reason); with ``split_block_m``,
        ``split``: the block size and the blocks per split (``split_by_sequence``: the tracks per split).

    Raises
    ------
    RFLocalInputError
        Any refusal of the table (:class:`~rflocal_core.measurements.table.TableFormatError`,
        :class:`~rflocal_core.errors.InvalidInputError`) or of the import.
    """
    require(user, "import_dataset")  # before reading the table: a viewer's upload costs nothing
    table = read_table(source, columns=columns, mode=mode, group_by=group_by, missing=missing, nodes=nodes,
                       kind=kind, strict=strict, max_bytes=max_bytes, max_rows=max_rows, node_columns=node_columns,
                       node_value=node_value, node_pairs=node_pairs, crs=crs, time_format=time_format,
                       sheet=sheet, sequence_gap_s=sequence_gap_s)
    # The blocks are drawn after the quality checks: a (0, 0) fix or an outlier makes no square of its own.
    summary = import_measurements(table.measurements, name=name, scene=scene, split_fractions=split_fractions,
                                  seed=seed, input_info=dict(table.input_info), strict=strict,
                                  min_reports=min_reports, quality=table.report.quality(), owner=owner, user=user,
                                  split_block_m=split_block_m, split_by_sequence=split_by_sequence)
    return replace(summary, table=table.report)
