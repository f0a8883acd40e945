"""Training that streams its train split (issue 16): ``TrainConfig(data_loading="stream")``.

In memory, a network run reads its whole train split (:func:`~rflocal_core.models.load_inputs`) and
shuffles it every epoch. Streaming, the split stays in the store:

- each epoch's order is :class:`~rflocal_core.dataset.sharding.ChunkShardSampler`'s (chunks in an
  order drawn from the seed and the epoch, shuffled within blocks of ``buffer`` rows), and each rank
  reads only the ``samples/`` chunks of its share (:meth:`StreamedSplit.steps`), a block of whole steps
  (about ``buffer`` rows) at a time: memory holds one block, not the split;
- the feature frame (:class:`~rflocal_core.models.features.FeatureSpec`: the box of the positions and
  the node vocabulary) comes from one pass over the split in blocks before training, each rank reading
  its share of the blocks (:meth:`StreamedSplit.summary`, merged by :func:`merge_summaries`): the same
  frame as in memory;
- validation, calibration and the run's reference read the val split and one block as before.

What differs from memory: the order of the samples (chunk-aligned, remainder rows dropped each epoch),
so the two paths take other steps and reach the same accuracy within noise, not bit for bit. Every
train sample must have a true position (in memory those without are left out). Not streamed: networks
fitted to the whole split beyond their weights (``prepare``, e.g. fpnet, which keeps its fingerprints)
and input transforms that corrupt the maps (drawn once over the split in memory).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rflocal_core.dataset.sharding import ChunkShardSampler, batch_shares
from rflocal_core.dataset.store import open_dataset
from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import Batch, make_batch, split_vocab
from rflocal_core.models.inputs import Inputs, SceneMaps, box_bounds, load_inputs, points_box, read_scene_maps
from rflocal_core.models.maps import MapSource
from rflocal_core.models.transforms import InputTransform, apply_transform

#: Rows of one block of the pass that fits the feature frame (whole chunks of ``SAMPLE_CHUNK``).
SUMMARY_BLOCK = 8192


def split_megabytes(root: Any, split: str) -> float:
    """The split's rows of every ``samples/`` array, uncompressed, in MB (what ``data_loading="auto"`` weighs)."""
    n = int(root[f"splits/{split}"].shape[0])
    g = root["samples"]
    per_row = sum(int(np.dtype(g[k].dtype).itemsize) * math.prod(g[k].shape[1:]) for k in g.array_keys())
    return n * per_row / 1e6


def resolve_loading(data_loading: str, budget_mb: float, dataset: str, *, net: Any, model: str,
                    transform: InputTransform) -> dict[str, Any]:
    """How a run reads its train split: ``{"mode": "memory"|"stream", "asked": ..., "split_mb": ...}``.

    ``"auto"`` streams a split whose arrays exceed ``budget_mb``, unless the network or the transform
    needs the split in memory (then it says why, under ``"why"``); ``"stream"`` there is refused.

    Raises
    ------
    InvalidInputError
        ``data_loading="stream"`` for a network fitted to the whole split, or a transform that corrupts maps.
    """
    split_mb = split_megabytes(open_dataset(dataset), "train")
    out: dict[str, Any] = {"asked": data_loading, "split_mb": round(split_mb, 3)}
    blocker = None
    if getattr(net, "prepare", None) is not None:
        blocker = f"{model} is fitted to the whole train split beyond its weights (prepare)"
    elif transform.map_corruption != "none":
        blocker = f"input_transform.map_corruption {transform.map_corruption!r} is drawn once over the whole split"
    if data_loading == "stream" and blocker:
        msg = f"data_loading: 'stream' cannot be used here: {blocker}; use 'memory' or 'auto'"
        raise InvalidInputError(msg)
    stream = data_loading == "stream" or (data_loading == "auto" and split_mb > budget_mb and blocker is None)
    out["mode"] = "stream" if stream else "memory"
    if data_loading == "auto":
        out["budget_mb"] = budget_mb
        if blocker and split_mb > budget_mb:
            out["why"] = blocker
    return out


@dataclass
class StreamSummary:
    """What the feature frame needs from (a share of) the split: its box, vocabulary and slot count."""

    lo: np.ndarray | None
    hi: np.ndarray | None
    vocab: set[str]
    max_slots: int


def merge_summaries(parts: list[StreamSummary]) -> tuple[list[float], set[str], int]:
    """The split's :func:`~rflocal_core.models.inputs.search_bounds`, vocabulary and slot count from every share's."""
    boxes = [p for p in parts if p.lo is not None]
    if not boxes:
        msg = "train: the train split has neither true positions nor known node positions"
        raise InvalidInputError(msg)
    lo = np.min([p.lo for p in boxes], axis=0)
    hi = np.max([p.hi for p in boxes], axis=0)
    return box_bounds(lo, hi), set().union(*(p.vocab for p in parts)), max(p.max_slots for p in parts)


class StreamedSplit:
    """A split of a dataset read a block of rows at a time (as :class:`~rflocal_core.models.inputs.Inputs`).

    Parameters
    ----------
    dataset, split : str
    transform : InputTransform
        Applied to every block (its draws are per block: a feature dropout differs from the in-memory run's).
    with_maps : bool
        Blocks carry the scenes' radio maps (read once here).
    root : zarr.Group, optional
        The dataset, already open (default: the workspace's ``dataset``).
    """

    def __init__(self, dataset: str, split: str, transform: InputTransform, *, with_maps: bool,
                 root: Any = None) -> None:
        self.dataset, self.split, self.transform, self.with_maps = dataset, split, transform, with_maps
        self.root = open_dataset(dataset) if root is None else root
        self.indices = np.asarray(self.root[f"splits/{split}"][...], dtype=np.int64)
        self.chunk_rows = int(self.root["samples/pos_m"].chunks[0])
        names = tuple((dict(self.root.attrs).get("config") or {}).get("scenes") or ())
        # the slot -> site match reads every scene's maps: read once, not per block
        self.maps: dict[str, SceneMaps] | None = ({n: read_scene_maps(self.root, n) for n in names}
                                                  if "scenes" in self.root else None)

    def __len__(self) -> int:
        return len(self.indices)

    def chunk_of(self) -> np.ndarray:
        """The ``samples/`` chunk of each position of the split (:class:`ChunkShardSampler` reads this)."""
        return self.indices // self.chunk_rows

    def read(self, rows: np.ndarray) -> Inputs:
        """The samples at ``rows`` (positions in the split), in that order; only their chunks are read."""
        t = self.transform
        x = load_inputs(self.dataset, self.split, with_maps=self.with_maps, max_steps=t.max_steps,
                        rows=np.asarray(rows, dtype=np.int64), root=self.root, split_index=self.indices,
                        scene_maps=self.maps)
        return apply_transform(x, t)

    def summary(self, *, rank: int = 0, world: int = 1) -> StreamSummary:
        """The :class:`StreamSummary` of this rank's blocks (every ``world``-th block of the split, in store order)."""
        lo = hi = None
        vocab: set[str] = set()
        slots = 0
        order = np.argsort(self.indices, kind="stable")  # store order: each block is whole chunks
        for b, start in enumerate(range(0, len(order), SUMMARY_BLOCK)):
            if b % world != rank:
                continue
            x = self.read(order[start:start + SUMMARY_BLOCK])
            box = points_box(x)
            if box is not None:
                lo = box[0] if lo is None else np.minimum(lo, box[0])
                hi = box[1] if hi is None else np.maximum(hi, box[1])
            vocab |= split_vocab(x)
            slots = max(slots, int(x.node_mask.shape[1]))
        return StreamSummary(lo, hi, vocab, slots)

    def steps(self, sampler: ChunkShardSampler, batch_size: int, model: Any
              ) -> Iterator[tuple[Batch, MapSource | None, torch.Tensor]]:
        """This rank's share of each global batch of the sampler's epoch: ``(batch, map source, rows)``
        (``rows``: the batch's rows of the source's block), read a block of whole steps at a time."""
        mine = batch_shares(batch_size, sampler.world)[sampler.rank]
        for block in sampler.step_blocks(batch_size):
            x = self.read(block)
            b = make_batch(x, model.spec)
            missing = ~torch.isfinite(b.truth).all(1)
            if bool(missing.any()):
                k = int(x.indices[int(torch.nonzero(missing)[0, 0])])
                msg = (f"data_loading: streaming needs a true position in every train sample, but sample {k} of "
                       f"{self.dataset!r} has none; use data_loading='memory' (which leaves such samples out)")
                raise InvalidInputError(msg)
            src = model.map_source(x)
            for start in range(0, len(block), mine):
                rows = torch.arange(start, start + mine)
                yield b.index(rows), src, rows
