"""The regions of a partial store that one generation task fills: a site's map, a path batch (issue 16).

With the Ray executor the workers write their own chunks when they see the store (a folder, a shared
mount, an fsspec URL such as ``s3://`` or ``file://``: :func:`~rflocal_core.dataset.location.worker_location`):
each task's region is whole chunks of arrays the driver made beforehand (a site's map is one chunk of
``site_maps/gain``, a path batch is one chunk of rows, ``PATH_BATCH``, of every ``paths/`` array), so two
tasks never write the same chunk. The driver writes the metadata (it makes the arrays), each task's
``done`` flag once the task has returned (the flags share one chunk: only the driver writes them), the
attributes, the samples, and the final rename. A ``memory://`` store lives in the driver's process
alone: there the workers return their arrays and the driver writes them, as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rflocal_core.dataset.location import open_group

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


def write_site_map(location: str, k: int, gain: np.ndarray, centres: np.ndarray) -> None:
    """In a Ray worker: site ``k``'s map into the ``site_maps`` group at ``location`` (a folder or URL)."""
    put_site_map(open_group(location, mode="r+"), k, gain, centres)


def read_site_maps(location: str) -> tuple[np.ndarray, np.ndarray]:
    """Every site's linear gain map [num_sites, ny, nx] and the cell centres, from the group at ``location``."""
    kept = open_group(location)
    return np.asarray(kept["gain"][...]), np.asarray(kept["centres"][...])


def put_path_rows(paths: Any, b: int, features: Any, *, batch: int, phy_keys: tuple[str, ...]) -> None:
    """Batch ``b``'s exact-path features (rows ``b * batch`` on) into every array of ``paths`` but ``done``."""
    sl = slice(b * batch, b * batch + len(features.toa_ns))
    for key in paths.array_keys():  # the exact-path arrays, and the IQ taps when the store has them
        if key in phy_keys:
            paths[key][sl] = getattr(features.channel, key)
        elif key != "done":
            paths[key][sl] = getattr(features.taps, key[4:]) if key.startswith("tap_") else getattr(features, key)


def path_batch_write_task(location: str, b: int, batch: int, phy_keys: tuple[str, ...], workspace: str, scene: str,
                          positions_m: np.ndarray, options: dict[str, Any]) -> None:
    """A Ray task: :func:`~rflocal_core.raytrace.path_batch_task`, its features written by the worker into
    the ``paths`` group at ``location`` (batch ``b``'s rows: whole chunks); returns nothing."""
    from rflocal_core.raytrace import path_batch_task

    features = path_batch_task(workspace, scene, positions_m, options)
    put_path_rows(open_group(location, mode="r+"), b, features, batch=batch, phy_keys=phy_keys)
