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

    def __init__(self, name: str, split: str = "train") -> None:
        if split not in SPLITS:
            msg = f"split: expected one of {', '.join(SPLITS)}, got {split!r}"
            raise InvalidInputError(msg)
        group = open_dataset(name)
        self.name = name
        self.split = split
        self.indices = np.asarray(group[f"splits/{split}"][...], dtype=np.int64)
        self._path = str(dataset_path(name))
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

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = self._samples()
        k = int(self.indices[i])
        step_mask = np.asarray(g["step_mask"][k])
        pos = np.asarray(g["pos_m"][k])
        last = int(np.flatnonzero(step_mask)[-1]) if step_mask.any() else 0
        item: dict[str, torch.Tensor] = {
            "index": torch.tensor(k),
            "scene_idx": torch.tensor(int(g["scene_idx"][k])),
            "target_m": torch.from_numpy(pos[last].astype(np.float32)),
            "pos_m": torch.from_numpy(pos.astype(np.float32)),
            "t_s": torch.from_numpy(np.asarray(g["t_s"][k], dtype=np.float32)),
            "step_mask": torch.from_numpy(step_mask),
            "node_pos_m": torch.from_numpy(np.asarray(g["node_pos_m"][k], dtype=np.float32)),
            "node_mask": torch.from_numpy(np.asarray(g["node_mask"][k])),
        }
        for field in REPORT_FIELDS:
            values = np.asarray(g[field][k], dtype=np.float32)
            item[field] = torch.from_numpy(values)
            item[f"mask_{field}"] = torch.from_numpy(np.isfinite(values))
        return item
