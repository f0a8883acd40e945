"""Zarr datasets in the workspace: layout, listing, opening, deleting.

Layout of ``workspace/datasets/<name>/`` (a Zarr v3 group)::

    attrs: format, complete, config, scene hashes, versions, counts, seconds per stage
    scenes/<scene>/             per scene, on its own grid (attrs: grid, site ids, mode, frame)
        path_gain_db [S, ny, nx]   ray-traced path gain per site (-inf: no ray)
        rss_dbm      [S, ny, nx]   ue mode: site power + path gain
        sinr_db      [S, ny, nx]   ue mode: each cell's SINR against the others (each at the load in
                                   attrs ``sinr_load`` [S]) and the noise of a resource element, as
                                   a report's (``rflocal_core.phy.sinr_map_db``)
        shadowing_db [S, ny, nx]   the shadow-fading field that was applied
        toa_ns, aoa_deg [S, ny, nx]  optional (``timing_maps``): first-path delay (ns) and the strongest
                                   path's bearing at the site (degrees) from PathSolver on the coarser
                                   grid of attrs ``timing_grid``, interpolated; NaN where no path
        mask_timing  [S, ny, nx]   True where toa_ns/aoa_deg hold a value
        building_height_m, footprint, material, roads [ny, nx]
        site_pos_m   [S, 3]
    samples/                    one row per sample, T report times, S node slots
        scene_idx [N], pos_m [N, T, 3], latlon [N, T, 2], t_s [N, T], step_mask [N, T]
        node_pos_m [N, S, 3], node_mask [N, S], tx_power_dbm [N], carrier_hz [N] (the band of the sample's
        scene, NaN when the scene carries several; datasets before it lack it), node_carrier_hz [N, S]
        (the carrier of each node slot: a multi-band scene's co-sited cells are nodes of their own;
        older datasets lack it)
        rss_dbm, snr_db, toa_ns, aoa_deg, delay_spread_ns, pg_true_db [N, T, S] (NaN: missing)
        ta [N, T, S] (-1: missing), los [N, T, S] (1 LoS, 0 NLoS, -1 unknown)
        mask_rss_dbm, mask_toa_ns, mask_ta, mask_aoa_deg, mask_snr_db [N, T, S] bool (True: present)
        optional IQ captures (``data generate --iq``, or an import with ``iq`` objects; attrs ``iq``:
        sample rate, samples, adc, ...): iq [N, T, S, 2, n] int16/int8 codes, iq_scale [N, T, S]
        (sqrt(mW) per code), iq_t0_s [N, T, S] capture start on the common clock, mask_iq [N, T, S];
        generated ones also iq_snr_db, iq_power_dbm, iq_freq_offset_hz [N, T, S] and iq_psd_db
        [N, T, S, 16], estimated from the captures (``rflocal_core.dataset.iqgen``)
    splits/train, splits/val, splits/test, splits/test_unseen   sample indices

Imported datasets (``data import``, attrs ``source: "import"``; see ``exchange.py``) have no
``scenes/``. Node slots: the file's nodes (same every sample; attrs ``node_ids``, ``nodes``), then
per-sample mobile-sensor slots. Also ``node_pos_known [N, S]`` (False: position unknown, node_pos_m
NaN; absent in generated datasets: all known) and ``node_latlon [N, S, 2]``. pos_m/latlon hold the
truth at the last step only (NaN elsewhere; z NaN without alt_m); t_s is float64. Samples without
truth are in no split. samples attrs ``sample_ids``: the file's sample ids.

A dataset is written under ``.partial-<name>`` and renamed when complete, so a
folder named ``<name>`` is always complete; the partial folder holds the finished
stages of an interrupted generation, which a rerun with the same config resumes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rflocal_core import audit
from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import DatasetNotFoundError
from rflocal_core.workspace import subdir, validate_name

FORMAT = "rflocal-dataset/1"
PARTIAL_PREFIX = ".partial-"
SAMPLE_CHUNK = 512
#: Rows per chunk of ``samples/iq`` (a capture is 4 kB in int16: 32 rows of 8 receivers make 1 MB).
IQ_CHUNK = 32
SPLITS = ("train", "val", "test", "test_unseen")


def datasets_dir() -> Path:
    """Return ``<workspace>/datasets``."""
    return subdir("datasets")


def dataset_path(name: str) -> Path:
    validate_name(name, field="dataset")
    return datasets_dir() / name


def partial_path(name: str) -> Path:
    validate_name(name, field="dataset")
    return datasets_dir() / f"{PARTIAL_PREFIX}{name}"


def open_dataset(name: str) -> zarr.Group:
    """Open a complete dataset read-only."""
    path = dataset_path(name)
    if not (path / "zarr.json").is_file():
        known = ", ".join(d["name"] for d in list_datasets()) or "none"
        msg = f"dataset: no dataset named {name!r} in {datasets_dir()}; existing datasets: {known}"
        raise DatasetNotFoundError(msg)
    group = zarr.open_group(str(path), mode="r")
    if not group.attrs.get("complete"):
        msg = f"dataset: {name!r} is incomplete (its generation did not finish); regenerate it"
        raise DatasetNotFoundError(msg)
    return group


def list_datasets() -> list[dict[str, Any]]:
    """Summaries of complete datasets, and of partial ones marked as such, with their ``owner`` (who
    generated or imported them; None for datasets from before owners were kept)."""
    rows = []
    for path in sorted(datasets_dir().iterdir()):
        if not (path / "zarr.json").is_file():
            continue
        try:
            attrs = dict(zarr.open_group(str(path), mode="r").attrs)
        except Exception:  # an unreadable folder is listed as broken, not fatal
            rows.append({"name": path.name, "state": "unreadable"})
            continue
        partial = path.name.startswith(PARTIAL_PREFIX)
        config = attrs.get("config", {})
        rows.append({
            "name": path.name[len(PARTIAL_PREFIX):] if partial else path.name,
            "state": "partial (resumable)" if partial else ("complete" if attrs.get("complete") else "incomplete"),
            "scenes": config.get("scenes"),
            "mode": attrs.get("mode"),
            "samples": attrs.get("counts", {}).get("samples"),
            "splits": attrs.get("counts", {}).get("splits"),
            "created_utc": attrs.get("created_utc"),
            "owner": attrs.get("owner"),
        })
    return rows


def delete_dataset(name: str, *, partial: bool = False, user: User = LOCAL_USER, actor: str | None = None) -> None:
    """Delete a dataset (or the partial folder of an interrupted generation); ``user`` must be an editor;
    ``actor`` (who deleted it, default the user's name) goes to the audit log (:mod:`rflocal_core.audit`)
    with the dataset's owner."""
    require(user, "delete_dataset")
    actor = user.name if actor is None else actor
    path = partial_path(name) if partial else dataset_path(name)
    if not path.exists():
        msg = f"dataset: nothing to delete at {path}"
        raise DatasetNotFoundError(msg)
    try:
        owner = zarr.open_group(str(path), mode="r").attrs.get("owner")
    except Exception:  # noqa: BLE001 - a broken folder is deleted all the same
        owner = None
    shutil.rmtree(path)
    audit.record(actor, "delete", f"dataset:{name}", partial=partial, owner=owner)


def write_array(group: zarr.Group, name: str, data: np.ndarray, *, chunk_rows: int | None = None) -> zarr.Array:
    """Write ``data`` as a new array, chunked along the first axis (whole maps per site)."""
    data = np.asarray(data)
    if chunk_rows is None:
        chunks = (1, *data.shape[1:]) if data.ndim == 3 else data.shape
    else:
        chunks = (max(1, min(chunk_rows, data.shape[0])), *data.shape[1:])
    chunks = tuple(max(1, c) for c in chunks)
    fill = np.nan if data.dtype.kind == "f" else 0
    arr = group.create_array(name, shape=data.shape, chunks=chunks, dtype=data.dtype, fill_value=fill, overwrite=True)
    if data.size:
        arr[...] = data
    return arr


#: Report fields that get an explicit presence mask ``mask_<field>`` in ``samples/``.
MASKED_FIELDS = ("rss_dbm", "toa_ns", "ta", "aoa_deg", "snr_db")
#: PHY/MAC report fields (ue mode, :mod:`rflocal_core.phy`), masked the same way when present.
PHY_MASKED_FIELDS = ("rsrq_db", "sinr_db", "cqi", "ri", "beam_id", "beam_rsrp_dbm", "doppler_hz", "serving",
                     "neighbour_rank", "event_a3", "event_a5")


def write_samples(group: zarr.Group, arrays: dict[str, np.ndarray]) -> None:
    """Write the ``samples/`` arrays, plus a presence mask for each report field."""
    for key, value in arrays.items():
        write_array(group, key, value, chunk_rows=IQ_CHUNK if key == "iq" else SAMPLE_CHUNK)
    for key in (*MASKED_FIELDS, *PHY_MASKED_FIELDS):
        if key in arrays:
            values = np.asarray(arrays[key])
            present = values >= 0 if values.dtype.kind in "iu" else np.isfinite(values)
            write_array(group, f"mask_{key}", present, chunk_rows=SAMPLE_CHUNK)


def position_extent_m(name: str) -> dict[str, Any]:
    """The box around where a dataset's targets and moving sensors are, per scene frame.

    Counts the true positions and the known positions of the node slots, except the fixed
    nodes of an imported dataset (attrs ``nodes``): fixed infrastructure such as a LoRaWAN
    gateway legitimately lies far outside the measured area (and the quality checks of
    :mod:`rflocal_core.measurements.quality` limit how far). Positions of different scenes
    are in their own frames and never compared.

    Returns
    -------
    dict
        ``extent_m``: the longer side of the largest box (0 without positions); ``x_m`` and
        ``y_m``: that box's sides; ``scene``: its scene index.
    """
    root = open_dataset(name)
    samples = root["samples"]
    fixed = len(root.attrs.get("nodes") or []) if root.attrs.get("source") == "import" else 0
    n = samples["pos_m"].shape[0]
    lo: dict[int, np.ndarray] = {}
    hi: dict[int, np.ndarray] = {}
    for start in range(0, n, 8 * SAMPLE_CHUNK):  # chunk by chunk: node_pos_m of a large import is big
        rows = slice(start, min(start + 8 * SAMPLE_CHUNK, n))
        scene = np.asarray(samples["scene_idx"][rows])
        truth = np.asarray(samples["pos_m"][rows][..., :2], dtype=np.float64)
        nodes = np.asarray(samples["node_pos_m"][rows][:, fixed:, :2], dtype=np.float64)
        if "node_pos_known" in samples:
            nodes[~np.asarray(samples["node_pos_known"][rows][:, fixed:], dtype=bool)] = np.nan
        for k in np.unique(scene).tolist():
            pts = np.concatenate([truth[scene == k].reshape(-1, 2), nodes[scene == k].reshape(-1, 2)])
            pts = pts[np.isfinite(pts).all(1)]
            if len(pts):
                lo[k] = np.minimum(lo.get(k, pts.min(0)), pts.min(0))
                hi[k] = np.maximum(hi.get(k, pts.max(0)), pts.max(0))
    best = {"extent_m": 0.0, "x_m": 0.0, "y_m": 0.0, "scene": None}
    for k in lo:
        side = hi[k] - lo[k]
        if float(side.max()) >= best["extent_m"]:
            best = {"extent_m": float(side.max()), "x_m": float(side[0]), "y_m": float(side[1]), "scene": int(k)}
    return best
