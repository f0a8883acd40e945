"""The regions of a partial store that one generation task fills: a site's map, a path batch (issue 16).

With the Ray executor the workers write their own chunks when they see the store (a folder, a shared
mount, an fsspec URL such as ``s3://`` or ``file://``: :func:`~rflocal_core.dataset.location.worker_location`):
each task's region is whole chunks of arrays the driver made beforehand (a site's map is one chunk of
``site_maps/gain``, a path batch is one chunk of rows, ``PATH_BATCH``, of every ``paths/`` array), so two
tasks never write the same chunk. The driver writes the metadata (it makes the arrays), each task's
``done`` flag once the task has returned (the flags share one chunk: only the driver writes them), the
attributes, the samples, and the final rename. A ``memory://`` store lives in the driver's process
alone: there the workers return their arrays and the driver writes them, as before.

Each worker returns a receipt: the SHA-256 of its region as it reads it back. The driver reads the
same region before it sets the ``done`` flag; a store the driver sees differently (a folder that is
not one shared mount on a cluster of several machines) fails the job naming the location, instead of
a dataset with holes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from rflocal_core.dataset.location import open_group
from rflocal_core.errors import InvalidInputError

#: Group of a scene's partial store holding single-site maps until all the scene's maps are done.
SITE_MAPS = "site_maps"


def site_map_store(group: Any, num_sites: int, shape: tuple[int, int]) -> Any:
    """The ``site_maps`` group of a scene: ``gain`` [num_sites, ny, nx] (a chunk per site), ``centres``
    [ny, nx, 3] (stored with site 0's map), ``done`` [num_sites]; made unless it holds these already."""
    kept = group.get(SITE_MAPS)
    whole = kept is not None and all(k in kept for k in ("gain", "centres", "done"))
    if whole and kept["gain"].shape == (num_sites, *shape):
        return kept
    kept = group.require_group(SITE_MAPS)
    kept.create_array("gain", shape=(num_sites, *shape), chunks=(1, *shape), dtype=np.float64, fill_value=np.nan,
                      overwrite=True)
    kept.create_array("centres", shape=(*shape, 3), chunks=(*shape, 3), dtype=np.float32, fill_value=np.nan,
                      overwrite=True)
    kept.create_array("done", shape=(num_sites,), chunks=(num_sites,), dtype=bool, fill_value=False, overwrite=True)
    return kept


def put_site_map(kept: Any, k: int, gain: np.ndarray, centres: np.ndarray) -> None:
    """Site ``k``'s linear gain map (and, for site 0, the cell centres) into ``kept`` (not its ``done`` flag)."""
    if gain.shape != kept["gain"].shape[1:]:
        msg = (f"site map {k}: the solver made a {gain.shape} map, the store was made for "
               f"{kept['gain'].shape[1:]} (raytrace.map_shape disagrees with Sionna's grid)")
        raise ValueError(msg)
    kept["gain"][k] = gain
    if k == 0:  # one task writes the centres: site 0 done means centres stored
        kept["centres"][...] = centres


def receipt(arrays: Iterable[np.ndarray]) -> str:
    """SHA-256 of arrays' bytes, in order: what a worker wrote, as it reads it back."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def check_receipt(group: Any, what: str, expected: str, found: str) -> None:
    """Refuse a region the driver reads differently from the worker that wrote it, naming the store."""
    if expected != found:
        where = getattr(group.store, "root", None) or getattr(group.store, "path", None) or group.store
        msg = (f"out: a Ray worker wrote {what} into {str(where)!r}, but this process reads other data there; on "
               "a cluster of several machines the store must be one every node sees (a shared mount, s3://, gs://)")
        raise InvalidInputError(msg)


def write_site_map(location: str, k: int, gain: np.ndarray, centres: np.ndarray) -> str:
    """In a Ray worker: site ``k``'s map into the ``site_maps`` group at ``location`` (a folder or URL);
    its :func:`receipt`."""
    kept = open_group(location, mode="r+")
    put_site_map(kept, k, gain, centres)
    return receipt([kept["gain"][k]])


def check_site_map(kept: Any, k: int, worker_receipt: str) -> None:
    """Site ``k``'s map as the driver reads it is what its worker wrote (:func:`check_receipt`)."""
    check_receipt(kept, f"the radio map of site {k}", worker_receipt, receipt([kept["gain"][k]]))


def read_site_maps(location: str) -> tuple[np.ndarray, np.ndarray]:
    """Every site's linear gain map [num_sites, ny, nx] and the cell centres, from the group at ``location``."""
    kept = open_group(location)
    return np.asarray(kept["gain"][...]), np.asarray(kept["centres"][...])


def path_rows_receipt(paths: Any, b: int, batch: int) -> str:
    """:func:`receipt` of batch ``b``'s rows of every array of ``paths`` but ``done``."""
    sl = slice(b * batch, (b + 1) * batch)
    return receipt(paths[key][sl] for key in sorted(paths.array_keys()) if key != "done")


def put_path_rows(paths: Any, b: int, features: Any, *, batch: int, phy_keys: tuple[str, ...]) -> None:
    """Batch ``b``'s exact-path features (rows ``b * batch`` on) into every array of ``paths`` but ``done``."""
    sl = slice(b * batch, b * batch + len(features.toa_ns))
    for key in paths.array_keys():  # the exact-path arrays, and the IQ taps when the store has them
        if key in phy_keys:
            paths[key][sl] = getattr(features.channel, key)
        elif key != "done":
            paths[key][sl] = getattr(features.taps, key[4:]) if key.startswith("tap_") else getattr(features, key)


def path_batch_write_task(location: str, b: int, batch: int, phy_keys: tuple[str, ...], workspace: str, scene: str,
                          positions_m: np.ndarray, options: dict[str, Any]) -> str:
    """A Ray task: :func:`~rflocal_core.raytrace.path_batch_task`, its features written by the worker into
    the ``paths`` group at ``location`` (batch ``b``'s rows: whole chunks); returns their :func:`receipt`."""
    from rflocal_core.raytrace import path_batch_task

    features = path_batch_task(workspace, scene, positions_m, options)
    paths = open_group(location, mode="r+")
    put_path_rows(paths, b, features, batch=batch, phy_keys=phy_keys)
    return path_rows_receipt(paths, b, batch)
