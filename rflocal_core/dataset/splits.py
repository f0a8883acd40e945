"""Spatial-block and track splits of measurements: whole squares of the map, or whole tracks, go to train, val or
test.

A random split of a drive test puts neighbouring points of one walk on both sides, so a
fingerprinting model is tested where it was trained. Assigning whole blocks (squares of
``block_m`` metres) to one split tests it on ground it has not seen; assigning whole tracks (the samples' ``sequence``
ids: walks, drives) tests it on walks it has not seen, as a user's next drive test. The assignment is given
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
#: What a block split does, for the command line's ``--split-block-m`` and the import page.
BLOCK_SPLIT_HELP = ("split by squares of this many metres instead of by sample: whole squares go to train, val "
                    "or test, so neighbouring points of one walk stay on one side "
                    f"({BLOCK_RANGE_M[0]:g}-{BLOCK_RANGE_M[1]:g} m)")
#: What a track split does, for the command line's ``--split-by-sequence`` and the import page.
SEQUENCE_SPLIT_HELP = ("split by track instead of by sample: each track (the samples' sequence id: a walk or a drive; "
                       "a table's sequence column or track gap) goes whole to train, val or test, so models are "
                       "tested on walks they have not seen")


def block_splits(
    ms: MeasurementSet, *, block_m: float, fractions: Sequence[float], seed: int = 0
) -> tuple[dict[str, str], dict[str, Any]]:
    """Assign every sample with a lat/lon truth to a split by the square of ``block_m`` metres it lies in.

    The blocks are shuffled (``seed``) and each in turn goes to the split that lacks the most
    samples to reach its share (``fractions``: train, val, test), so every split ends near its
    share even when some blocks are large. Samples without a lat/lon truth are left to the import.

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
    fractions = _fractions(fractions)
    labeled = _labeled(ms)
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
    assigned, per_split = _deal(labeled, block_of, len(blocks), fractions, seed)
    return assigned, {"kind": "spatial blocks", "block_m": float(block_m), "blocks": per_split}


def sequence_splits(ms: MeasurementSet, *, fractions: Sequence[float],
                    seed: int = 0) -> tuple[dict[str, str], dict[str, Any]]:
    """Assign every sample with a lat/lon truth to a split by its track (``sequence``), whole tracks to one split.

    The tracks are shuffled (``seed``) and dealt as :func:`block_splits` deals squares.

    Returns
    -------
    dict, dict
        Sample id -> ``"train"``/``"val"``/``"test"``, and a description (``sequences`` per split).

    Raises
    ------
    InvalidInputError
        A sample with a truth has no sequence (the first is named), or fewer than three tracks.
    """
    fractions = _fractions(fractions)
    labeled = _labeled(ms)
    alone = [s.id for s in labeled if s.sequence is None]
    if alone:
        msg = (f"split_by_sequence: {len(alone)} of the {len(labeled)} samples with a truth have no sequence (first: "
               f"sample {alone[0]!r}); expected each sample's track id (a table's sequence column or sequence_gap_s)")
        raise InvalidInputError(msg)
    tracks, track_of = np.unique(np.array([str(s.sequence) for s in labeled], dtype=object), return_inverse=True)
    if len(tracks) < 3:
        msg = (f"split_by_sequence: the {len(labeled)} samples with a truth form {len(tracks)} track(s); expected at "
               "least 3 (one per split): split by sample or by squares")
        raise InvalidInputError(msg)
    assigned, per_split = _deal(labeled, track_of, len(tracks), fractions, seed)
    return assigned, {"kind": "sequences", "sequences": per_split}


def _deal(labeled: list, group_of: np.ndarray, groups: int, fractions: Sequence[float],
          seed: int) -> tuple[dict[str, str], dict[str, int]]:
    """Sample id -> split, the groups (squares or tracks; ``group_of`` [N] each sample's) shuffled with ``seed`` and
    dealt by :func:`_assign_blocks`; and the groups per split."""
    order = np.random.default_rng(int(seed)).permutation(groups)
    split_of_group = _assign_blocks(np.bincount(group_of, minlength=groups), order, fractions)
    assigned = {s.id: str(split_of_group[group_of[i]]) for i, s in enumerate(labeled)}
    return assigned, {k: int((split_of_group == k).sum()) for k in ("train", "val", "test")}


def _fractions(fractions: Sequence[float]) -> list[float]:
    try:
        out = [float(f) for f in fractions]
    except (TypeError, ValueError):
        out = []
    if len(out) != 3:
        msg = f"split_fractions: expected three fractions (train, val, test), got {fractions!r}"
        raise InvalidInputError(msg)
    return out


def _labeled(ms: MeasurementSet) -> list:
    """The samples with a finite lat/lon truth (any other truth is unlabeled to the import, not a square here)."""
    return [s for s in ms.samples if s.truth is not None and s.truth.lat is not None and s.truth.lon is not None
            and math.isfinite(s.truth.lat) and math.isfinite(s.truth.lon)]


def _assign_blocks(counts: np.ndarray, order: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Split name per block: each block in ``order`` goes to the split furthest below its share.

    "Furthest" is relative (missing samples / target samples), so val and test get blocks from
    the start rather than only the last ones. Taking blocks in turn into train, then val, then
    test let one large block carry a split far past its share (200 m squares of the Duke walk:
    67/22/11 % for 80/10/10); this keeps every split near its share (77/13/10 %).
    """
    names = np.array(["train", "val", "test"], dtype=object)
    target = np.asarray(fractions, dtype=float) * counts.sum()
    held = np.zeros(3)
    split_of_block = np.empty(len(counts), dtype=object)
    for block in order:
        with np.errstate(divide="ignore", invalid="ignore"):
            k = int(np.argmax(np.where(target > 0, (target - held) / target, -np.inf)))
        split_of_block[block] = names[k]
        held[k] += counts[block]
    return split_of_block
