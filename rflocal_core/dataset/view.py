"""Data for looking at a dataset: maps, sample positions, distributions."""

from __future__ import annotations

from typing import Any

import numpy as np

from rflocal_core.dataset.rasters import MATERIAL_CLASSES, Grid
from rflocal_core.dataset.store import open_dataset

#: Largest map side sent to a plot (maps are strided down to it).
MAX_MAP_SIDE = 256


def dataset_overview(name: str, *, max_points: int = 3000, seed: int = 0) -> dict[str, Any]:
    """Summary, per-scene maps and subsampled sample data of a dataset.

    Returns
    -------
    dict
        ``attrs`` (the dataset's attributes), ``scenes``: list of dicts with ``name``,
        ``x_m``/``y_m`` (axis values), ``path_gain_db`` [S, ny, nx] (NaN: no signal),
        ``building_height_m`` [ny, nx] (the footprint, 0/1, where a dataset has no heights: the shipped demo
        split), ``site_ids``, ``site_xy`` [S, 2] (all maps
        strided to at most :data:`MAX_MAP_SIDE` cells a side), ``extent_m`` (x_min, y_min,
        x_max, y_max: the area the maps cover, i.e. the scene); ``samples``: ``x_m``,
        ``y_m``, ``scene`` per shown sample and ``split``; ``values``: finite
        ``rss_dbm``, ``toa_ns``, ``aoa_deg`` (each at most 20,000 values); ``phy_values``:
        the same for the PHY/MAC fields the dataset holds (:data:`PHY_HISTOGRAMS`; empty without).
    """
    root = open_dataset(name)
    attrs = dict(root.attrs)
    scenes = []
    if "scenes" in root:
        for scene_name in sorted(root["scenes"].group_keys()):
            g = root["scenes"][scene_name]
            if "path_gain_db" not in g:
                continue
            grid = Grid.from_dict(g.attrs["grid"])
            step = max(1, int(np.ceil(max(grid.nx, grid.ny) / MAX_MAP_SIDE)))
            pg = np.asarray(g["path_gain_db"][:, ::step, ::step], dtype=np.float32)
            scenes.append({
                "name": scene_name,
                "x_m": grid.x_m[::step], "y_m": grid.y_m[::step],
                "extent_m": grid.extent_m,
                "path_gain_db": np.where(np.isfinite(pg), pg, np.nan),
                # the shipped demo split keeps the footprint (0/1) alone: enough to draw the buildings
                "building_height_m": np.asarray(g["building_height_m" if "building_height_m" in g else "footprint"]
                                                [::step, ::step], dtype=np.float32),
                "material_classes": MATERIAL_CLASSES,
                "site_ids": list(g.attrs["site_ids"]),
                "site_xy": np.asarray(g["site_pos_m"][:, :2]),
            })
    s = root["samples"]
    n = s["scene_idx"].shape[0]
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(n, size=min(n, max_points), replace=False)) if n else np.array([], dtype=int)
    split_of = np.full(n, "", dtype=object)
    for split in ("train", "val", "test", "test_unseen"):
        if split in root["splits"]:
            split_of[np.asarray(root["splits"][split][...])] = split
    pos = np.asarray(s["pos_m"][...])
    first = pos[:, 0, :]
    names = attrs.get("config", {}).get("scenes", [])
    scene_idx = np.asarray(s["scene_idx"][...])
    values = {key: _present_values(s, key, rng) for key in ("rss_dbm", "toa_ns", "aoa_deg")}
    phy_values = {key: _present_values(s, key, rng) for key in PHY_HISTOGRAMS if key in s}
    return {
        "attrs": attrs,
        "scenes": scenes,
        "samples": {
            "x_m": first[shown, 0], "y_m": first[shown, 1],
            "scene": [names[i] if i < len(names) else str(i) for i in scene_idx[shown]],
            "split": list(split_of[shown]),
        },
        "values": values,
        "phy_values": phy_values,
    }


#: PHY/MAC report fields shown as histograms, with their axis labels.
PHY_HISTOGRAMS: dict[str, str] = {"rsrq_db": "RSRQ (dB)", "sinr_db": "SINR (dB)", "cqi": "CQI", "ri": "Rank (RI)",
                                  "beam_id": "Best SSB beam", "beam_rsrp_dbm": "Beam L1-RSRP (dBm)",
                                  "doppler_hz": "Doppler (Hz)"}


def _present_values(samples: Any, key: str, rng: np.random.Generator) -> np.ndarray:
    """The present values of a report field (finite; integers >= 0), at most 20,000 drawn at random."""
    v = np.asarray(samples[key][...]).ravel()
    v = v[v >= 0] if v.dtype.kind in "iu" else v[np.isfinite(v)]
    return rng.choice(v, size=min(len(v), 20_000), replace=False) if len(v) else v


#: Generation stages as a summary names them, in the order they run.
STAGE_LABELS = {
    "radio_maps": "radio maps (Sionna RT)", "rasters": "rasters", "paths": "paths (Sionna RT)",
    "sampling": "positions", "reports": "reports", "write": "writing samples",
}


def _share(part: float, total: float) -> float:
    return round(100.0 * part / total, 1) if total > 0 else 0.0


def split_rows(splits: dict[str, int] | None) -> list[dict[str, Any]]:
    """Rows of a table of samples per split: ``split``, ``samples``, ``share (%)``; a ``total`` row last."""
    splits = {k: int(v) for k, v in (splits or {}).items()}
    total = sum(splits.values())
    rows = [{"split": k, "samples": v, "share (%)": _share(v, total)} for k, v in splits.items()]
    return [*rows, {"split": "total", "samples": total, "share (%)": 100.0 if total else 0.0}] if rows else []


def stage_rows(seconds: dict[str, float] | None) -> list[dict[str, Any]]:
    """Rows of a table of time per generation stage: ``stage``, ``time (s)``, ``share (%)``; a ``total`` row last."""
    seconds = {k: float(v) for k, v in (seconds or {}).items()}
    order = [k for k in STAGE_LABELS if k in seconds] + [k for k in seconds if k not in STAGE_LABELS]
    total = sum(seconds.values())
    rows = [{"stage": STAGE_LABELS.get(k, k), "time (s)": round(seconds[k], 2), "share (%)": _share(seconds[k], total)}
            for k in order]
    return [*rows, {"stage": "total", "time (s)": round(total, 2), "share (%)": 100.0 if total else 0.0}] if rows else []


def split_text(splits: dict[str, int] | None) -> str:
    """Samples per split on one line, e.g. ``train 280 · val 60 · test 60`` ("" when unknown)."""
    return " · ".join(f"{k} {int(v):,}" for k, v in (splits or {}).items())
