"""The base of the typed results at the core/UI boundary: dataclasses with ``to_json()``.

What a long operation returns (a scene build, an import, a training run, a prediction, an
evaluation) is a dataclass deriving from :class:`JsonResult`: pages and tests read its
attributes, and the command line prints ``result.to_json()``, a plain dict with the keys the
fields name, in their order::

    @dataclass(frozen=True)
    class TrainResult(JsonResult):
        run_id: str
        summary: ErrorSummary = json_field(flatten=True)      # its keys inline, not nested
        warnings: tuple[str, ...] = json_field(default=(), omit_empty=True)

Nested results, lists and dicts of them, objects with ``to_dict()`` (quality and table
reports), numpy values, tuples, NaN and inf are converted on the way (:func:`to_plain`);
:meth:`JsonResult.from_json` rebuilds a result from its JSON (nested results included).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
import typing
from typing import Any, Self, Union

from rflocal_core.workspace import jsonable

_MISSING: Any = dataclasses.MISSING


def json_field(*, default: Any = _MISSING, default_factory: Any = _MISSING, flatten: bool = False,
               omit_empty: bool = False, omit_none: bool = False, json: bool = True) -> Any:
    """A dataclass field with its JSON behaviour.

    Parameters
    ----------
    flatten : bool
        Put the keys of this nested result into the parent's JSON instead of under its name.
    omit_empty, omit_none : bool
        Leave the key out when the value is empty (falsy) or None.
    json : bool
        False: never in the JSON (e.g. arrays for a page's plots).
    """
    meta = {"flatten": flatten, "omit_empty": omit_empty, "omit_none": omit_none, "json": json}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def to_plain(value: Any) -> Any:
    """``value`` as plain JSON values: results through ``to_json()``, reports through ``to_dict()``."""
    if isinstance(value, JsonResult):
        return value.to_json()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return jsonable(value.to_dict())
    return jsonable(value)


class JsonResult:
    """Mixin of the result dataclasses: :meth:`to_json` and :meth:`from_json`."""

    def to_json(self) -> dict[str, Any]:
        """A plain dict (JSON-ready) with one key per field, in field order (see :func:`json_field`)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            meta = f.metadata
            value = getattr(self, f.name)
            if meta.get("json") is False or (meta.get("omit_empty") and not value) or (
                    meta.get("omit_none") and value is None):
                continue
            plain = to_plain(value)
            if meta.get("flatten") and isinstance(plain, dict):
                out.update(plain)
            else:
                out[f.name] = plain
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """The result whose :meth:`to_json` is ``data`` (missing keys take the field defaults)."""
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.metadata.get("flatten"):
                kwargs[f.name] = _convert(hints[f.name], data)
            elif f.name in data:
                kwargs[f.name] = _convert(hints[f.name], data[f.name])
        return cls(**kwargs)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


def _convert(hint: Any, value: Any) -> Any:
    """``value`` (plain JSON) as the type ``hint`` names, for the shapes results use."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if isinstance(hint, type) and issubclass(hint, JsonResult) and isinstance(value, dict):
        return hint.from_json(value)
    if isinstance(hint, type) and hasattr(hint, "from_dict") and isinstance(value, dict):
        return hint.from_dict(value)
    if origin in (list, tuple) and isinstance(value, list):
        item = args[0] if args else Any
        items = [_convert(item, v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _convert(args[1], v) for k, v in value.items()}
    return value
