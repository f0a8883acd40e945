"""A streaming ``DistributedSampler`` over :class:`~rflocal_core.dataset.torch_data.ZarrSamples` (issue 16).

``torch.utils.data.DistributedSampler`` shuffles the whole split and deals every rank a strided share,
so each rank reads rows from every chunk of the store: every rank reads the whole dataset. This
sampler shuffles at chunk granularity instead, so a rank reads only the chunks of its share:

1. the chunks the split touches (``SAMPLE_CHUNK`` rows of ``samples/``) are put in an order drawn
   from ``(seed, epoch)`` - the same on every rank, nothing is exchanged;
2. the split's rows, chunk after chunk in that order, are cut into ``world`` contiguous parts of
   ``len // world`` rows each: equal counts on every rank, the last ``len % world`` rows (fewer than
   ``world``) are **dropped** for the epoch (other rows each epoch, as the chunk order changes).
   A rank's part covers about ``1/world`` of the chunks; at most the two chunks at its ends are
   shared with a neighbouring rank (each reads its own rows of them);
3. within its part a rank shuffles blocks of ``buffer`` rows (drawn from ``(seed, epoch, rank)``):
   a shuffle buffer, so memory is ``buffer`` samples, not the split.

Global batches: step ``b`` of an epoch takes the next ``share`` rows of every rank's part
(:meth:`ChunkShardSampler.batches`, shares as :meth:`~rflocal_core.train.distributed.Dist.share`
deals a global batch of ``batch_size``): the global batch size is kept. A one-process run over the
same global batches (:func:`global_batches`) takes the same optimizer steps as the ``world``-rank
DDP run; it does not take the steps of the in-memory path (one shuffled order of the whole split,
whose every batch touches nearly every chunk: the reads this sampler exists to avoid).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from rflocal_core.errors import InvalidInputError

#: Rows a rank shuffles together by default (4 chunks of ``SAMPLE_CHUNK``).
DEFAULT_BUFFER = 2048


def shard_plan(chunk_of: np.ndarray, *, world: int, seed: int, epoch: int, buffer: int = DEFAULT_BUFFER,
               shuffle: bool = True) -> list[np.ndarray]:
    """Every rank's positions (into the split) for one epoch, in the order the rank visits them.

    Parameters
    ----------
    chunk_of : ndarray of int, [n]
        The chunk of the store holding each position's sample.
    world : int
        Number of ranks.
    seed, epoch : int
        The chunk order and the buffer shuffles are drawn from these (alike on every rank).
    buffer : int
        Rows shuffled together within a rank's part.
    shuffle : bool
        False: chunks in store order, rows in split order (validation).

    Returns
    -------
    list of ndarray
        ``world`` arrays of ``len(chunk_of) // world`` positions each, disjoint.
    """
    chunk_of = np.asarray(chunk_of, dtype=np.int64)
    if world < 1 or buffer < 1:
        msg = f"world, buffer: expected both >= 1, got world={world}, buffer={buffer}"
        raise InvalidInputError(msg)
    chunks = np.unique(chunk_of)
    if shuffle:
        chunks = np.random.default_rng([seed, epoch]).permutation(chunks)
    order_of_chunk = np.empty(int(chunks.max()) + 1 if len(chunks) else 0, dtype=np.int64)
    order_of_chunk[chunks] = np.arange(len(chunks))
    # stable: rows of one chunk keep their split order
    seq = np.argsort(order_of_chunk[chunk_of], kind="stable") if len(chunk_of) else chunk_of
    per = len(seq) // world
    parts = []
    for rank in range(world):
        part = seq[rank * per:(rank + 1) * per].copy()
        if shuffle:
            rng = np.random.default_rng([seed, epoch, 1 + rank])
            for start in range(0, per, buffer):
                part[start:start + buffer] = rng.permutation(part[start:start + buffer])
        parts.append(part)
    return parts


def batch_shares(batch_size: int, world: int) -> list[int]:
    """Rows each rank takes of a global batch (``torch.tensor_split``'s sizes: they differ by at most one)."""
    if batch_size < world:
        msg = f"batch_size: a global batch of {batch_size} cannot give each of {world} ranks a sample"
        raise InvalidInputError(msg)
    return [len(part) for part in torch.tensor_split(torch.arange(batch_size), world)]


def global_batches(chunk_of: np.ndarray, *, world: int, seed: int, epoch: int, batch_size: int,
                   buffer: int = DEFAULT_BUFFER) -> list[np.ndarray]:
    """The global batches of one epoch: what ``world`` ranks train on together, rank 0's rows first.

    Rank ``r``'s rows of batch ``b`` are :meth:`ChunkShardSampler.batches`'s ``b``-th list on that rank;
    one process stepping over these batches takes the optimizer steps of the DDP run. Rows that do not
    fill a step on every rank are dropped, as there.
    """
    parts = shard_plan(chunk_of, world=world, seed=seed, epoch=epoch, buffer=buffer)
    shares = batch_shares(batch_size, world)
    steps = len(parts[0]) // max(shares)
    return [np.concatenate([parts[r][b * shares[r]:(b + 1) * shares[r]] for r in range(world)])
            for b in range(steps)]


class ChunkShardSampler(torch.utils.data.Sampler[int]):
    """A ``DistributedSampler`` whose ranks read only the chunks of their share (see the module).

    Parameters
    ----------
    dataset : ZarrSamples
        The split to sample (its :meth:`~rflocal_core.dataset.torch_data.ZarrSamples.chunk_of`).
    num_replicas, rank : int, optional
        Default: the process group's (1 and 0 outside one), as ``DistributedSampler``.
    seed : int
        Common to every rank.
    buffer : int
        Rows shuffled together on a rank.
    shuffle : bool
        False: every rank's part in store order (validation).

    Call :meth:`set_epoch` at every epoch's start, as with ``DistributedSampler``.
    """

    def __init__(self, dataset: Any, *, num_replicas: int | None = None, rank: int | None = None, seed: int = 0,
                 buffer: int = DEFAULT_BUFFER, shuffle: bool = True) -> None:
        dist = torch.distributed
        on = dist.is_available() and dist.is_initialized()
        self.world = num_replicas if num_replicas is not None else (dist.get_world_size() if on else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if on else 0)
        if not 0 <= self.rank < self.world:
            msg = f"rank: expected 0 <= rank < {self.world}, got {self.rank}"
            raise InvalidInputError(msg)
        self.chunk_of = np.asarray(dataset.chunk_of())
        self.seed, self.buffer, self.shuffle = seed, buffer, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def positions(self) -> np.ndarray:
        """This rank's positions of the current epoch, in visiting order."""
        return shard_plan(self.chunk_of, world=self.world, seed=self.seed, epoch=self.epoch, buffer=self.buffer,
                          shuffle=self.shuffle)[self.rank]

    def chunks(self) -> set[int]:
        """The store chunks this rank reads in the current epoch."""
        return {int(c) for c in np.unique(self.chunk_of[self.positions()])}

    def __iter__(self) -> Iterator[int]:
        return iter(int(p) for p in self.positions())

    def __len__(self) -> int:
        return len(self.chunk_of) // self.world

    def batches(self, batch_size: int) -> list[list[int]]:
        """This rank's share of each global batch of ``batch_size`` (a ``batch_sampler`` for a DataLoader).

        Every rank gets the same number of steps: rows that do not fill a step on every rank are dropped.
        """
        share = batch_shares(batch_size, self.world)
        mine, steps = share[self.rank], math.floor(len(self) / max(share))
        rows = self.positions()
        return [rows[b * mine:(b + 1) * mine].tolist() for b in range(steps)]

    def stream(self, dataset: Any, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's batches of :meth:`batches`, collated, read one shuffle buffer at a time.

        A ``DataLoader`` over :meth:`batches` reads every array once per batch, so a chunk is decoded
        once for each batch that holds some of its rows (16 times per epoch for 512-row chunks and 32
        rows per rank and step); here each buffer block of ``buffer`` rows is read at once (a chunk is
        decoded about once per epoch, twice where it straddles two blocks), at the memory of one block.
        """
        from torch.utils.data import default_collate

        steps = self.batches(batch_size)
        mine = len(steps[0]) if steps else 0
        rows = self.positions()[:len(steps) * mine]
        pending: list[Any] = []
        done = 0
        for start in range(0, len(rows), self.buffer):
            pending.extend(dataset.__getitems__(rows[start:start + self.buffer].tolist()))
            while len(pending) >= mine and done < len(steps):
                yield default_collate(pending[:mine])
                pending, done = pending[mine:], done + 1

    def step_blocks(self, batch_size: int) -> Iterator[np.ndarray]:
        """This rank's rows of :meth:`batches`, a whole number of steps at a time (about ``buffer`` rows).

        What a reader that turns each block into one array set reads (training's streaming path,
        :mod:`rflocal_core.train.stream`): the rows of :meth:`stream`'s buffer blocks, cut at step
        boundaries instead of carrying a step's rows over to the next block.
        """
        steps = self.batches(batch_size)
        mine = len(steps[0]) if steps else 0
        rows = self.positions()[:len(steps) * mine]
        per = max(1, self.buffer // max(mine, 1)) * mine
        for start in range(0, len(rows), max(per, 1)):
            yield rows[start:start + per]
