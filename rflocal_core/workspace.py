"""The workspace folder, safe names, all-or-nothing writes and JSON-ready values."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: Prefix of files and folders still being written; listings skip them.
TEMP_PREFIX = ".tmp-"


def validate_name(name: str, *, field: str = "name") -> str:
    """Return ``name`` if it is safe to use as a folder name, else raise.

    Parameters
    ----------
    name : str
        1 to 64 characters: letters, digits, ``_``, ``-``, ``.``; starting with a
        letter or digit (so never ``..`` or a hidden folder).
    field : str
        Field name used in the error message.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        msg = (
            f"{field}: expected 1-64 characters of letters, digits, '_', '-' or '.', "
            f"starting with a letter or digit, got {name!r}"
        )
        raise InvalidInputError(msg)
    return name


def name_from_file(filename: str | Path, *, fallback: str = "scene") -> str:
    """A safe name (see :func:`validate_name`) made from a file's stem, e.g. for a scene built from it.

    Characters other than letters, digits, ``_``, ``-`` and ``.`` become ``_``; leading ones
    that cannot start a name are dropped; runs of dots shrink to one; at most 64 characters.
    ``fallback`` when nothing is left.
    """
    stem = Path(str(filename).replace("\\", "/")).stem
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9_.-]+", "_", stem))
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:64].rstrip("._-")
    return name if name and _NAME_RE.match(name) else fallback


def subdir(kind: str) -> Path:
    """Return ``<workspace>/<kind>``, creating it if needed."""
    path = settings.workspace_dir() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final`` and rename it into place on success.

    On any exception the temporary folder is removed, so a failure never leaves a
    half-written result under the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    tmp.mkdir()
    try:
        yield tmp
        # os.rename refuses to replace a non-empty folder: a concurrent writer of the
        # same name loses instead of overwriting.
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def rename_dir(src: Path, final: Path) -> None:
    """Give a finished folder its final name (one rename: never half there).

    Refuses (``OSError``) where ``final`` exists and is not empty, so a concurrent writer of
    the same name loses instead of overwriting.
    """
    os.rename(src, final)


def temp_path(final: Path) -> Path:
    """A fresh temporary name beside ``final``: ``.tmp-<name>-<8 hex digits>`` (files and folders alike)."""
    return final.parent / f"{TEMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it onto ``path`` when the block succeeds.

    For writers that want a path or open the file themselves (``torch.save(obj, tmp)``).
    On any exception, the rename's included, the temporary file is removed and ``path`` is
    left as it was: never a half-written file under the final name.
    """
    final = Path(path)
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename (see :func:`atomic_path`); return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` through a temporary file and a rename; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python values, tuples as lists, NaN and inf as None.

    What ``json.dumps(..., allow_nan=False)`` accepts; dict keys become strings.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def content_hash(folder: Path, *, exclude: tuple[str, ...] = ("scene.json",)) -> str:
    """SHA-256 of every file under ``folder`` (paths and bytes, in sorted order) but those named in ``exclude``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in exclude:
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
