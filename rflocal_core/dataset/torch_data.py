"""A PyTorch ``Dataset`` over a Zarr dataset split, safe with ``DataLoader`` workers.

The Zarr group is opened lazily in each process (never pickled across a fork), which
is what keeps multi-worker loading from sharing file handles between processes.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import zarr

from rflocal_core.dataset.store import SPLITS, dataset_path, open_dataset
from rflocal_core.errors import InvalidInputError

#: Per-report fields returned as float tensors [T, S] (NaN where missing).
REPORT_FIELDS = ("rss_dbm", "toa_ns", "aoa_deg", "snr_db")


class ZarrSamples(torch.utils.data.Dataset):
    """Samples of one split; each item is a dict of tensors.

    Keys: ``index`` (int), ``scene_idx`` (int), ``target_m`` [3] (position at the last
    report), ``pos_m`` [T, 3], ``t_s`` [T], ``step_mask`` [T], ``node_pos_m`` [S, 3],
    ``node_mask`` [S], and for each of :data:`REPORT_FIELDS` a [T, S] tensor plus
    ``mask_<field>`` [T, S] (True where present).
    """

    def __init__(self, name: str, split: str = "train", *, store: Any = None) -> None:
        if split not in SPLITS:
            msg = f"split: expected one of {', '.join(SPLITS)}, got {split!r}"
            raise InvalidInputError(msg)
        # ``store``: where the dataset is, if not the workspace's ``name`` (a folder, an fsspec URL, a Zarr store)
        group = open_dataset(name) if store is None else zarr.open_group(store, mode="r")
        self.name = name
        self.split = split
        self.indices = np.asarray(group[f"splits/{split}"][...], dtype=np.int64)
        self.chunk_rows = int(group["samples/pos_m"].chunks[0])
        self._path: Any = str(dataset_path(name)) if store is None else store
        self._group: zarr.Group | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def _samples(self) -> zarr.Group:
        if self._group is None or self._pid != os.getpid():
            self._group = zarr.open_group(self._path, mode="r")["samples"]
            self._pid = os.getpid()
        return self._group

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_group"] = None  # reopened in the worker
        return state

    def chunk_of(self) -> np.ndarray:
        """The chunk of ``samples/`` (``chunk_rows`` rows) holding each item: what a rank reads for it."""
        return self.indices // self.chunk_rows

    def __getitems__(self, items: list[int]) -> list[dict[str, torch.Tensor]]:
        """Items read a batch at a time (``DataLoader`` calls this): each array is read once per batch,
        touching only the chunks that hold the batch's samples (no chunk is read once per sample)."""
        g = self._samples()
        ks = self.indices[np.asarray(items, dtype=np.int64)]
        order = np.argsort(ks, kind="stable")
        unique, back = np.unique(ks[order], return_inverse=True)
        keys = ("step_mask", "pos_m", "scene_idx", "t_s", "node_pos_m", "node_mask", *REPORT_FIELDS)
        read = {key: np.asarray(g[key].get_orthogonal_selection((unique,))) for key in keys}
        rows = np.empty(len(ks), dtype=np.int64)
        rows[order] = back
        return [self._item(int(k), {key: value[r] for key, value in read.items()}) for k, r in zip(ks, rows)]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = self._samples()
        k = int(self.indices[i])
        keys = ("step_mask", "pos_m", "scene_idx", "t_s", "node_pos_m", "node_mask", *REPORT_FIELDS)
        return self._item(k, {key: np.asarray(g[key][k]) for key in keys})

    @staticmethod
    def _item(k: int, row: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """The tensors of sample ``k`` from its rows of the arrays."""
        step_mask = np.asarray(row["step_mask"])
        pos = np.asarray(row["pos_m"])
        last = int(np.flatnonzero(step_mask)[-1]) if step_mask.any() else 0
        item: dict[str, torch.Tensor] = {
            "index": torch.tensor(k),
            "scene_idx": torch.tensor(int(row["scene_idx"])),
            "target_m": torch.from_numpy(pos[last].astype(np.float32)),
            "pos_m": torch.from_numpy(pos.astype(np.float32)),
            "t_s": torch.from_numpy(np.asarray(row["t_s"], dtype=np.float32)),
            "step_mask": torch.from_numpy(step_mask),
            "node_pos_m": torch.from_numpy(np.asarray(row["node_pos_m"], dtype=np.float32)),
            "node_mask": torch.from_numpy(np.asarray(row["node_mask"])),
        }
        for field in REPORT_FIELDS:
            values = np.asarray(row[field], dtype=np.float32)
            item[field] = torch.from_numpy(values)
            item[f"mask_{field}"] = torch.from_numpy(np.isfinite(values))
        return item
