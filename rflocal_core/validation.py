"""Checks of user-given values, with messages that name the field, the value and the range."""

from __future__ import annotations

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
