"""Who started, cancelled or deleted what: an append-only log, ``workspace/audit.jsonl``.

One JSON object per line: ``time_utc``, ``actor`` (a user name; ``"local"`` for the command line
and Python), ``action`` (``start``, ``refuse``, ``cancel``, ``delete``), ``target`` (e.g.
``job:train-1a2b3c4d``, ``run:<id>``, ``dataset:<name>``, ``scene:<name>``) and ``details``.
Lines are only ever appended, under a lock held across threads and (where the platform has
``fcntl``) processes, so two writers never interleave a line; the file is never rewritten.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError
from rflocal_core.workspace import jsonable

try:  # POSIX: also keeps other processes (the command line) from interleaving a line
    import fcntl
except ImportError:  # pragma: no cover - Windows: the thread lock alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["AUDIT_FILE", "audit_path", "read_audit", "record"]

#: File name of the log inside the workspace.
AUDIT_FILE = "audit.jsonl"

_LOCK = threading.Lock()


def audit_path() -> Path:
    """``<workspace>/audit.jsonl``."""
    return settings.workspace_dir() / AUDIT_FILE


def record(actor: str, action: str, target: str, **details: Any) -> dict[str, Any]:
    """Append one entry to the log and return it.

    Parameters
    ----------
    actor : str
        Who did it (a signed-in user's name, or ``"local"``).
    action : str
        What: ``start``, ``refuse``, ``cancel`` or ``delete`` (others are kept as given).
    target : str
        What it was done to, ``kind:name`` (``job:...``, ``run:...``, ``dataset:...``, ``scene:...``).
    **details
        Anything else worth keeping (JSON-serializable after :func:`~rflocal_core.workspace.jsonable`).
    """
    for field, value in (("actor", actor), ("action", action), ("target", target)):
        if not isinstance(value, str) or not value.strip():
            msg = f"audit: {field} must be a non-empty string, got {value!r}"
            raise InvalidInputError(msg)
    entry = {"time_utc": datetime.now(UTC).isoformat(timespec="milliseconds"), "actor": actor,
             "action": action, "target": target, "details": jsonable(details)}
    line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
    path = audit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(path, "a", encoding="utf-8") as file:
        if fcntl is not None:
            fcntl.flock(file, fcntl.LOCK_EX)
        try:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())  # a record that a crash can lose is no record
        finally:
            if fcntl is not None:
                fcntl.flock(file, fcntl.LOCK_UN)
    return entry


def read_audit(*, actor: str | None = None, action: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
    """The entries of the log, oldest first, optionally only those of one actor, action or target.

    A line that is not a JSON object (a torn write after a crash) is returned as
    ``{"action": "unreadable", "line": <number>}`` rather than hidden.
    """
    path = audit_path()
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as file:
        for number, text in enumerate(file, start=1):
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
            except json.JSONDecodeError:
                entry = None
            if not isinstance(entry, dict):
                entry = {"action": "unreadable", "line": number}
            if ((actor is None or entry.get("actor") == actor) and (action is None or entry.get("action") == action)
                    and (target is None or entry.get("target") == target)):
                out.append(entry)
    return out
