"""The workspace folder, safe names and all-or-nothing folder writes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: Prefix of folders still being written; listings skip them.
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
    tmp = final.parent / f"{TEMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        # os.rename refuses to replace a non-empty folder: a concurrent writer of the
        # same name loses instead of overwriting.
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
