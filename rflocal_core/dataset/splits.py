"""Spatial-block splits of measurements: whole squares of the map go to train, val or test.

A random split of a drive test puts neighbouring points of one walk on both sides, so a
fingerprinting model is tested where it was trained. Assigning whole blocks (squares of
``block_m`` metres) to one split tests it on ground it has not seen. The assignment is given
to :func:`~rflocal_core.dataset.import_measurements` as ``fixed_splits``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rflocal_core.errors import InvalidInputError
from rflocal_core.geo import LocalFrame
from rflocal_core.measurements.format import MeasurementSet

#: Smallest and largest accepted block side, in metres.
BLOCK_RANGE_M: tuple[float, float] = (1.0, 100_000.0)


def block_splits(
    ms: MeasurementSet, *, block_m: float, fractions: Sequence[float], seed: int = 0
) -> tuple[dict[str, str], dict[str, Any]]:
    """Assign every sample with a lat/lon truth to a split by the square of ``block_m`` metres it lies in.

    The blocks are shuffled (``seed``) and taken in turn into train until it holds
    ``fractions[0]`` of the samples, then into val up to ``fractions[0] + fractions[1]``,
    the rest into test. Samples without a lat/lon truth are left to the import.

    Returns
    -------
    dict, dict
        Sample id -> ``"train"``/``"val"``/``"test"``, and a description (``block_m``,
        ``blocks`` per split) for the dataset's attributes.

    Raises
    ------
    InvalidInputError
        ``block_m`` outside [1, 100000] m, or fewer than three blocks with samples.
    """
    if isinstance(block_m, bool) or not isinstance(block_m, (int, float)) or not (
            math.isfinite(block_m) and BLOCK_RANGE_M[0] <= block_m <= BLOCK_RANGE_M[1]):
        msg = f"split_block_m: expected a number of metres in [{BLOCK_RANGE_M[0]:g}, {BLOCK_RANGE_M[1]:g}], got {block_m!r}"
        raise InvalidInputError(msg)
    try:
        fractions = [float(f) for f in fractions]
    except (TypeError, ValueError):
        fractions = []
    if len(fractions) != 3:
        msg = f"split_fractions: expected three fractions (train, val, test), got {fractions!r}"
        raise InvalidInputError(msg)
    labeled = [s for s in ms.samples if s.truth is not None and s.truth.lat is not None]
    if not labeled:
        return {}, {"kind": "spatial blocks", "block_m": float(block_m), "blocks": {}}
    lat = np.array([s.truth.lat for s in labeled])
    lon = np.array([s.truth.lon for s in labeled])
    x, y = LocalFrame.at(float(lat.mean()), float(lon.mean())).to_xy(lat, lon)
    cells = np.floor(np.column_stack([x, y]) / block_m).astype(np.int64)
    blocks, block_of = np.unique(cells, axis=0, return_inverse=True)
    block_of = block_of.reshape(-1)
    if len(blocks) < 3:
        msg = (f"split_block_m: {block_m:g} m blocks put the {len(labeled)} samples with truth into {len(blocks)} "
               "block(s); expected at least 3 (one per split): choose smaller blocks")
        raise InvalidInputError(msg)
    order = np.random.default_rng(int(seed)).permutation(len(blocks))
    counts = np.bincount(block_of, minlength=len(blocks))[order]
    reached = np.cumsum(counts) / len(labeled)
    split_of_block = np.empty(len(blocks), dtype=object)
    split_of_block[order] = np.where(reached <= fractions[0] + 1e-9, "train",
                                     np.where(reached <= fractions[0] + fractions[1] + 1e-9, "val", "test"))
    first = order[0]
    if fractions[0] > 0 and not (split_of_block == "train").any():  # one block larger than the train share
        split_of_block[first] = "train"
    assigned = {s.id: str(split_of_block[block_of[i]]) for i, s in enumerate(labeled)}
    info = {"kind": "spatial blocks", "block_m": float(block_m),
            "blocks": {k: int((split_of_block == k).sum()) for k in ("train", "val", "test")}}
    return assigned, info
