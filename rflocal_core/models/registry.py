"""Every model by name: :data:`BASELINES` and :data:`NETWORKS`, filled by :func:`register`.

A model class joins the registry of its kind when its module is imported::

    @register("setnet")
    class SetNet(LocNet): ...

The class's ``kind`` (``"baseline"`` or ``"network"``, set on :class:`~rflocal_core.models.baselines.Baseline`
and :class:`~rflocal_core.models.nets.LocNet`) chooses the registry, and ``name`` is set from the
decorator, so a model's name is written once. :mod:`rflocal_core.models` imports every model
module, so the registries are complete wherever ``rflocal_core.models.*`` is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

from rflocal_core.errors import InvalidInputError
from rflocal_core.options import describe, parse_assignments
from rflocal_core.validation import dataclass_from_dict

#: Classical baselines (:class:`~rflocal_core.models.baselines.Baseline` subclasses) by name.
BASELINES: dict[str, type[Any]] = {}
#: Networks (:class:`~rflocal_core.models.nets.LocNet` subclasses) by name.
NETWORKS: dict[str, type[Any]] = {}

_BY_KIND = {"baseline": BASELINES, "network": NETWORKS}

T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: add a model class to the registry of its ``kind`` under ``name``.

    Raises
    ------
    TypeError
        The class has no ``kind`` of ``"baseline"`` or ``"network"``.
    ValueError
        Another class is registered under ``name`` already (a name is unique across both
        registries, since runs name their model by it alone).
    """

    def add(cls: T) -> T:
        kind = getattr(cls, "kind", None)
        if kind not in _BY_KIND:
            msg = f"register: {cls.__qualname__} has kind {kind!r}; expected one of {', '.join(_BY_KIND)}"
            raise TypeError(msg)
        existing = BASELINES.get(name) or NETWORKS.get(name)
        same = existing is not None and (existing.__module__, existing.__qualname__) == (cls.__module__,
                                                                                           cls.__qualname__)
        if existing is not None and not same:  # a reloaded module may register its class again
            msg = f"register: the name {name!r} is taken by {existing.__module__}.{existing.__qualname__}"
            raise ValueError(msg)
        cls.name = name
        _BY_KIND[kind][name] = cls
        return cls

    return add


def model_class(model: str) -> type[Any]:
    """The registered class of ``model`` (a network or a baseline), else :class:`InvalidInputError`."""
    cls = NETWORKS.get(model) or BASELINES.get(model)
    if cls is None:
        msg = f"model: expected one of {', '.join([*NETWORKS, *BASELINES])}, got {model!r}"
        raise InvalidInputError(msg)
    return cls


def config_class(model: str) -> type[Any]:
    """The configuration dataclass of ``model`` (its ``config_cls``), whose options it takes."""
    return model_class(model).config_cls


def model_config(model: str, base: dict[str, Any] | None = None, assignments: Collection[str] = ()) -> dict[str, Any]:
    """The options of ``model``: ``base`` (a JSON config) with ``KEY=VALUE`` ``assignments`` over it, checked.

    Returns the merged dict (what ``train(model_config=...)`` takes); every value has been
    checked against its option's range and the whole config built once, so a bad value is
    refused here, naming the field, the value and the range.
    """
    cls = config_class(model)
    merged = _merged(base or {}, parse_assignments(cls, assignments, owner=model))
    dataclass_from_dict(cls, merged, field="model_config")
    return merged


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` on top, nested dicts (a nested config's options) merged key by key."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def model_variants(model: str) -> dict[str, dict[str, Any]]:
    """The option sets ``model`` asks model selection (``train --model auto``) to train besides its defaults
    (class attribute ``auto_variants``; none for an unknown model)."""
    return dict(getattr(NETWORKS.get(model) or BASELINES.get(model), "auto_variants", None) or {})


def describe_model(model: str) -> dict[str, Any]:
    """``{"model", "kind", "config", "options": [...], "auto_variants"}``: what ``rflocal models NAME`` prints.

    ``auto_variants``: the option sets model selection (``train --model auto``) trains besides the defaults.
    """
    cls = model_class(model)
    rows = describe(cls.config_cls)
    return {"model": model, "kind": cls.kind, "needs_maps": bool(getattr(cls, "needs_maps", False)),
            "config": cls.config_cls.__name__ if rows else None, "options": rows,
            "auto_variants": model_variants(model)}
