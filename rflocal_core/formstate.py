"""Form values kept per workspace, so each page's form comes back as it was left (issue 14: forms forget).

The values of a form (a page's start form: ``"sb"`` Scene Builder, ``"dg"`` Data Generation,
``"tm"`` Training Monitor, ``"ab"`` Ablations) are saved in ``workspace/.forms.json``::

    {"format": "rflocal-forms/1", "forms": {"tm": {"tm_epochs": 5, "tm_minutes": 1.0, ...}}}

by widget key, in the field's own units. The file is written atomically, merged value by
value; it is a convenience, so a missing, unreadable or foreign file reads as empty. Values
are checked when read, against the :class:`~rflocal_core.options.Option` of their field
(or a rule made with :func:`rule`): an unknown key or a value outside today's range is left
out and the widget starts at the field's default.

No Streamlit here: the page side is ``pages/views/widgets.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError
from rflocal_core.options import Option, check_value, parse_text
from rflocal_core.workspace import atomic_write_text, jsonable

FORMS_FILE = ".forms.json"
FORMAT = "rflocal-forms/1"

# one writer at a time in this process (the pages of every browser session share the file)
_LOCK = threading.Lock()


def forms_file() -> Path:
    """``workspace/.forms.json``."""
    return settings.workspace_dir() / FORMS_FILE


def read_forms() -> dict[str, dict[str, Any]]:
    """Every saved form by name (``{}`` when the file is missing, unreadable or not ours)."""
    try:
        data = json.loads(forms_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("forms"), dict):
        return {}
    return {name: values for name, values in data["forms"].items() if isinstance(values, dict)}


def rule(kind: str, *, lo: float | None = None, hi: float | None = None, choices: Collection[str] = (),
         nullable: bool = False) -> Option:
    """A check for a value that is no config option (a dataset name, a seed): kind, range, choices.

    ``kind="other"`` with ``choices``: a list whose items are all among the choices (a multiselect).
    """
    return Option(lo=lo, hi=hi, choices=tuple(choices), kind=kind, nullable=nullable)


def is_valid(key: str, value: Any, check: Option) -> bool:
    """Whether a saved ``value`` passes ``check`` (its option's range, choices and kind)."""
    try:
        if check.kind in ("pair", "list") and isinstance(value, str):  # a list option typed as text
            parse_text(key, value, check)
            return True
        if check.kind in ("pair", "list"):
            value = tuple(value) if isinstance(value, list) else value
        if check.kind == "other":
            return isinstance(value, list) and all(isinstance(v, str) and v in check.choices for v in value)
        if check.kind == "str" and not check.choices:
            return isinstance(value, str) or (value is None and check.nullable)
        check_value(key, value, check)
    except (InvalidInputError, TypeError):
        return False
    return True


def load_form(form: str, checks: Mapping[str, Option]) -> dict[str, Any]:
    """The saved values of ``form`` that pass their check, by key; the others are left out (default applies).

    Parameters
    ----------
    checks : mapping of str to Option
        The keys wanted and the check of each (the field's option, or a :func:`rule`).
    """
    saved = read_forms().get(form, {})
    out: dict[str, Any] = {}
    for key, check in checks.items():
        if key in saved and is_valid(key, saved[key], check):
            value = saved[key]
            out[key] = tuple(value) if check.kind in ("pair", "list") and isinstance(value, list) else value
    return out


def save_form(form: str, values: Mapping[str, Any]) -> Path:
    """Merge ``values`` (by key) into the saved ``form``, atomically; returns the file."""
    with _LOCK:
        forms = read_forms()
        forms[form] = {**forms.get(form, {}), **jsonable(dict(values))}
        return _write_forms(forms)


def forget_form(form: str) -> None:
    """Drop the saved values of ``form`` (its widgets start at their defaults again)."""
    with _LOCK:
        forms = read_forms()
        if forms.pop(form, None) is not None:
            _write_forms(forms)


def _write_forms(forms: dict[str, Any]) -> Path:
    """Write every form's values atomically (the caller holds the lock)."""
    path = forms_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps({"format": FORMAT, "forms": forms}, indent=1, sort_keys=True))
