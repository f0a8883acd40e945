"""Checks of user-given values, with messages that name the field, the value and the range."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rflocal_core.errors import InvalidInputError


def check_number(field: str, value: Any, lo: float, hi: float, unit: str = "") -> float:
    """Return ``value`` as a float if it is a finite number in [lo, hi], else raise."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not lo <= value <= hi:
        msg = f"{field}: expected a number in [{lo}, {hi}]{' ' + unit if unit else ''}, got {value!r}"
        raise InvalidInputError(msg)
    return float(value)


def check_int(field: str, value: Any, lo: int, hi: int) -> int:
    """Return ``value`` if it is an integer in [lo, hi], else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        msg = f"{field}: expected an integer in [{lo}, {hi}], got {value!r}"
        raise InvalidInputError(msg)
    return int(value)


def check_choice(field: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming them."""
    if value not in choices:
        msg = f"{field}: expected one of {', '.join(choices)}, got {value!r}"
        raise InvalidInputError(msg)
    return value


def json_object(field: str, text: str | None) -> dict[str, Any] | None:
    """Parse ``text`` as a JSON object (None for empty text), else raise naming ``field``."""
    if not text or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{field}: expected a JSON object, got {text!r} ({exc})"
        raise InvalidInputError(msg) from None
    if not isinstance(value, dict):
        msg = f"{field}: expected a JSON object, got {text!r}"
        raise InvalidInputError(msg)
    return value


def dataclass_from_dict(cls: type, values: dict[str, Any] | None, *, field: str) -> Any:
    """Build the (validating) dataclass ``cls`` from a dict, refusing unknown keys by name."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(values) - names)
    if extra:
        msg = f"{field}: unknown option(s) {extra}; expected some of {sorted(names)}"
        raise InvalidInputError(msg)
    return cls(**values)
