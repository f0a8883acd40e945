"""Where a generated dataset is written: the workspace, another folder, or an fsspec URL (issue 16).

A store every Ray worker sees: a local path (one machine, or a shared mount) or a URL that Zarr v3
opens through fsspec (``s3://bucket/datasets``, ``gs://...``, ``memory://`` and ``file://`` for
tests). The layout is the workspace's: ``<out>/.partial-<name>`` while generating, ``<out>/<name>``
once complete. On an object store the final "rename" is fsspec's move (a copy and a delete: not
atomic, but the ``complete`` attribute is written before it, and readers open ``<name>`` only).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rflocal_core.dataset.store import PARTIAL_PREFIX, dataset_path, partial_path
from rflocal_core.errors import InvalidInputError
from rflocal_core.workspace import validate_name


def is_url(text: str) -> bool:
    """``scheme://...``: an fsspec URL (``file://`` included), not a plain path."""
    return "://" in text


@dataclass(frozen=True)
class StoreLocation:
    """The final and the partial store of one dataset: folders or URLs.

    Attributes
    ----------
    final, partial : str
        ``<out>/<name>`` and ``<out>/.partial-<name>`` (paths or URLs).
    in_workspace : bool
        The workspace's own datasets folder (deleting a partial run is audited there).
    """

    final: str
    partial: str
    in_workspace: bool

    @property
    def url(self) -> bool:
        return is_url(self.final)


def store_location(name: str, out: str | None = None) -> StoreLocation:
    """Where dataset ``name`` goes: ``out`` (a folder or an fsspec URL), default the workspace's datasets.

    Raises
    ------
    InvalidInputError
        ``out`` is a URL whose scheme has no installed fsspec implementation (naming the package to
        install), or no folder or URL at all.
    """
    if out is None:
        return StoreLocation(str(dataset_path(name)), str(partial_path(name)), True)
    validate_name(name, field="dataset")
    out = str(out).strip().rstrip("/")
    if not out:
        msg = f"out: expected a folder or an fsspec URL (s3://bucket/datasets), got {out!r}"
        raise InvalidInputError(msg)
    if is_url(out):
        check_scheme(out)
    return StoreLocation(f"{out}/{name}", f"{out}/{PARTIAL_PREFIX}{name}", False)


def check_scheme(url: str) -> None:
    """Refuse a URL whose scheme fsspec cannot open here, naming the package that would."""
    import fsspec
    from fsspec.registry import known_implementations

    scheme = url.split("://", 1)[0].lower()
    try:
        fsspec.get_filesystem_class(scheme)
    except ImportError as exc:
        known = known_implementations.get(scheme, {})
        package = known.get("class", "").split(".", 1)[0] or "its fsspec implementation"
        msg = (f"out: the scheme {scheme!r} of {url!r} needs the package {package}, which is not installed; "
               f"install it (pip install {package}) or write to a folder")
        raise InvalidInputError(msg) from exc
    except ValueError as exc:
        msg = (f"out: no fsspec implementation knows the scheme {scheme!r} of {url!r}; expected a folder or a URL "
               f"such as s3://bucket/datasets, gs://..., file:///path, memory://name")
        raise InvalidInputError(msg) from exc


def open_group(location: str, *, mode: str = "r") -> Any:
    """The Zarr group at a folder or URL; ``file://`` stores make their folders as chunks are written."""
    import zarr

    options = {"auto_mkdir": True} if location.lower().startswith("file://") and mode != "r" else None
    return zarr.open_group(location, mode=mode, storage_options=options)


#: fsspec file systems that live in one process: another process (a Ray worker) cannot write there.
PROCESS_LOCAL = ("memory",)


def worker_location(group: Any) -> str | None:
    """A folder or URL where another process (a Ray worker) opens ``group`` to write into it; None
    where only this process sees it (``memory://``, or a store of another kind)."""
    from zarr.storage import FsspecStore, LocalStore

    store = group.store
    if isinstance(store, LocalStore):
        base = str(store.root)
    elif isinstance(store, FsspecStore):
        protocols = store.fs.protocol if isinstance(store.fs.protocol, tuple) else (store.fs.protocol,)
        if any(p in PROCESS_LOCAL for p in protocols):
            return None
        base = store.fs.unstrip_protocol(store.path)
    else:
        return None
    return f"{base.rstrip('/')}/{group.path}" if group.path else base


def _fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def exists(location: str) -> bool:
    """A Zarr group is stored at ``location`` (its ``zarr.json``)."""
    if not is_url(location):
        return Path(location).exists()
    fs, path = _fs(location)
    return bool(fs.exists(f"{path}/zarr.json"))


def remove(location: str) -> None:
    """Delete the store at ``location`` and everything in it."""
    if not is_url(location):
        shutil.rmtree(location)
        return
    fs, path = _fs(location)
    fs.rm(path, recursive=True)


def rename(source: str, target: str) -> None:
    """Move a finished store to its final place (an atomic rename on a folder, a move on a URL)."""
    if not is_url(source):
        os.rename(source, target)
        return
    fs, src = _fs(source)
    _, dst = _fs(target)
    fs.mv(src, dst, recursive=True)
