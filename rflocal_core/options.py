"""One definition per option: default, range, unit, choices and help live on the config field.

A configuration dataclass declares each user-facing option once::

    cell_size_m: float = option(2.0, lo=0.5, hi=20.0, unit="m", label="Cell size (m)", help="radio-map grid")

and everything else is derived from that field:

- the checks: :func:`check_options` (called from ``__post_init__``) raises
  ``InvalidInputError("cell_size_m: expected a number in [0.5, 20.0] m, got 0.1")``;
- the command line: :func:`add_flags` adds ``--cell-size-m`` to a parser and
  :func:`flag_values` returns the options given there (the others keep the field default,
  so the command line and the API cannot disagree on a default);
- the page widgets: ``pages/views/widgets.py`` reads :func:`option_of` for a widget's
  label, minimum, maximum, step, default, choices and help.

Cross-field rules (``min_distance_m < max_distance_m``, a drone survey needs emitter mode)
stay in each ``__post_init__``; an option marked ``check=False`` is checked there by hand
(a message of its own, or a check that depends on another field).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Collection
from typing import Any

import numpy as np

from rflocal_core.errors import InvalidInputError

#: Largest seed accepted anywhere (the pages offered this limit first).
MAX_SEED = 2**31 - 1

#: Kinds of option values: scalars, an ordered (min, max) pair, a list of numbers, or anything else.
KINDS = ("int", "float", "bool", "str", "pair", "list", "other")


@dataclasses.dataclass(frozen=True)
class Option:
    """What a config field declares about itself (see :func:`option`), resolved by :func:`options`.

    Attributes
    ----------
    lo, hi : float or None
        Inclusive range (``lo`` exclusive when ``lo_open``); for ``pair`` options the range of
        both ends, the second at least the first. ``hi`` None: no upper bound.
    unit : str
        Unit named in messages and help (``"m"``, ``"dBm"``, ...).
    choices : tuple of str
        Allowed values of a ``str`` option.
    help, label : str
        One-line help (command line and widget tooltip) and the widget label.
    flag : str or None
        Command-line flag without the dashes; ``""`` derives it from the name (``cell_size_m``:
        ``cell-size-m``; a bool that defaults to true: ``no-<name>``); None: no flag.
    step : float or None
        Widget step.
    lo_open : bool
        ``lo`` itself is not allowed.
    check : bool
        Checked by :func:`check_options`; False: checked by hand in ``__post_init__``.
    none_means : str
        For options that may be None: what None does (help text, widget's "none" entry).
    name, kind, item, nullable, default
        Filled in by :func:`options`: the field name, one of :data:`KINDS`, the kind of the
        items of a ``pair``/``list``, whether None is allowed, and the field's default.
    """

    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    choices: tuple[str, ...] = ()
    help: str = ""
    label: str = ""
    flag: str | None = ""
    step: float | None = None
    lo_open: bool = False
    check: bool = True
    none_means: str = ""
    name: str = ""
    kind: str = ""
    item: str = ""
    nullable: bool = False
    default: Any = None

    @property
    def flag_name(self) -> str | None:
        """The command-line flag with its dashes (``--cell-size-m``), or None."""
        if self.flag is None:
            return None
        if self.flag:
            return f"--{self.flag}"
        stem = self.name.replace("_", "-")
        return f"--no-{stem}" if self.kind == "bool" and self.default is True else f"--{stem}"

    def range_text(self) -> str:
        """``"a number in [0.5, 20.0] m"``, ``"an integer >= 1"``, ``"one of a, b"``: what is expected."""
        if self.kind == "bool":
            return "true or false"
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.kind == "str":
            return "a text"
        kind = self.item if self.kind in ("pair", "list") else self.kind
        noun = "an integer" if kind == "int" else "a number"
        if self.kind == "pair":
            noun = f"MIN <= MAX, each {noun}"
        elif self.kind == "list":
            noun = f"a comma-separated list of {'integers' if kind == 'int' else 'numbers'}"
        if self.lo is None and self.hi is None:
            return noun
        if self.lo is None:
            return f"{noun} <= {self.hi}{' ' + self.unit if self.unit else ''}"
        if self.hi is None:
            return f"{noun} {'>' if self.lo_open else '>='} {self.lo}{' ' + self.unit if self.unit else ''}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{noun} in {'(' if self.lo_open else '['}{self.lo}, {self.hi}]{unit}"



def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **spec: Any) -> Any:
    """A dataclass field that carries its :class:`Option` (range, unit, choices, help, flag, label).

    Parameters
    ----------
    default, default_factory
        As for :func:`dataclasses.field`.
    **spec
        The :class:`Option` attributes a field declares: ``lo``, ``hi``, ``unit``, ``choices``,
        ``help``, ``label``, ``flag``, ``step``, ``lo_open``, ``check``, ``none_means``.
    """
    unknown = set(spec) - {"lo", "hi", "unit", "choices", "help", "label", "flag", "step", "lo_open", "check",
                           "none_means"}
    if unknown:
        msg = f"option: unknown attribute(s) {sorted(unknown)}"
        raise TypeError(msg)
    if "choices" in spec:
        spec["choices"] = tuple(spec["choices"])
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"option": Option(**spec)})


def seed_option(default: int, *, help: str, flag: str | None = "") -> Any:
    """A random seed: an integer in [0, :data:`MAX_SEED`]."""
    return option(default, lo=0, hi=MAX_SEED, label="Seed", help=help, flag=flag)


def redefault(base: type, name: str, default: Any) -> Any:
    """The option ``name`` of the dataclass ``base`` with another default (for a subclass)."""
    inherited = {f.name: f for f in dataclasses.fields(base)}[name]
    return dataclasses.field(default=default, metadata=inherited.metadata)


def _kind(hint: Any) -> tuple[str, str, bool]:
    """(kind, item kind, nullable) of a resolved type hint."""
    nullable = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else Any
    scalar = {bool: "bool", int: "int", float: "float", str: "str"}
    if hint in scalar:
        return scalar[hint], "", nullable
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[0] is args[1] and args[0] in (int, float):
            return "pair", scalar[args[0]], nullable
        if len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float):
            return "list", scalar[args[0]], nullable
    return "other", "", nullable


@functools.cache
def options(cls: type) -> dict[str, Option]:
    """The options of the dataclass ``cls`` by field name, in field order, with name, kind and default filled in."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Option] = {}
    for f in dataclasses.fields(cls):
        declared = f.metadata.get("option")
        if declared is None:
            continue
        kind, item, nullable = _kind(hints[f.name])
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        out[f.name] = dataclasses.replace(declared, name=f.name, kind=kind, item=item, nullable=nullable,
                                          default=default)
    return out


def option_paths(cls: type) -> list[tuple[str, type, str]]:
    """``(path, owner, name)`` of every option of ``cls`` and of the option-bearing configs nested in it.

    A nested config field (``LogDistanceConfig.centroid``, a ``WeightedCentroidConfig``) gives
    dotted paths (``"centroid.offset_db"``), whose option is ``option_of(owner, name)``.
    """
    out = [(name, cls, name) for name in options(cls)]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        sub = hints[f.name]
        if "option" not in f.metadata and isinstance(sub, type) and dataclasses.is_dataclass(sub) and options(sub):
            out += [(f"{f.name}.{path}", owner, name) for path, owner, name in option_paths(sub)]
    return out


def put_path(values: dict[str, Any], path: str, value: Any) -> None:
    """Set ``values[a][b] = value`` for the dotted ``path`` ``"a.b"`` (the nested dicts made as needed)."""
    *parents, leaf = path.split(".")
    for part in parents:
        values = values.setdefault(part, {})
    values[leaf] = value


def option_of(cls: type, name: str) -> Option:
    """The :class:`Option` of field ``name`` of ``cls`` (KeyError names the known ones)."""
    known = options(cls)
    if name not in known:
        msg = f"{cls.__name__} has no option {name!r}; options: {', '.join(known)}"
        raise KeyError(msg)
    return known[name]


# --------------------------------------------------------------------------- checks


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _in_range(value: Any, lo: float | None, hi: float | None, *, lo_open: bool = False) -> bool:
    if lo is not None and (value <= lo if lo_open else value < lo):
        return False
    return hi is None or value <= hi


def _check_scalar(field: str, value: Any, opt: Option, kind: str, lo: float | None) -> None:
    """Raise naming ``field``, ``value`` and the range unless ``value`` is a valid ``kind`` in [lo, opt.hi]."""
    if kind == "int":
        ok = _is_int(value) and _in_range(value, lo, opt.hi, lo_open=opt.lo_open)
    elif kind == "float":
        ok = _is_number(value) and math.isfinite(value) and _in_range(value, lo, opt.hi, lo_open=opt.lo_open)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif opt.choices:
        ok = isinstance(value, str) and value in opt.choices
    else:
        ok = isinstance(value, str)
    if not ok:
        expected = dataclasses.replace(opt, lo=lo, kind=kind).range_text()
        msg = f"{field}: expected {'None or ' if opt.nullable else ''}{expected}, got {value!r}"
        raise InvalidInputError(msg)


def check_value(field: str, value: Any, opt: Option) -> None:
    """Check one option's ``value`` against ``opt``; raise :class:`InvalidInputError` naming ``field``.

    Messages keep the project's form: ``"cell_size_m: expected a number in [0.5, 20.0] m, got 0.1"``
    (``"None or a number ..."`` where None is allowed). A pair is checked end by end, the second
    end at least the first: ``"sequence_length[1]: expected an integer in [5, 100], got 2"``.
    """
    if value is None and opt.nullable:
        return
    if opt.kind == "pair":
        ends = tuple(value) if isinstance(value, (tuple, list)) else ()
        if len(ends) != 2:
            msg = f"{field}: expected a pair (min, max), got {value!r}"
            raise InvalidInputError(msg)
        _check_scalar(f"{field}[0]", ends[0], opt, opt.item, opt.lo)
        _check_scalar(f"{field}[1]", ends[1], opt, opt.item, ends[0])
        return
    if opt.kind in ("int", "float", "bool", "str"):
        _check_scalar(field, value, opt, opt.kind, opt.lo)


def check_options(config: Any, *, prefix: str = "", skip: Collection[str] = (),
                  only: Collection[str] | None = None) -> None:
    """Check every option of the dataclass instance ``config`` (those marked ``check=False`` excepted).

    Parameters
    ----------
    prefix : str
        Put before each field name in messages (``"sites."``).
    skip, only : collection of str
        Leave these options out, or check only these (options that apply in one case only).
    """
    for name, opt in options(type(config)).items():
        if not opt.check or name in skip or (only is not None and name not in only):
            continue
        check_value(f"{prefix}{name}", getattr(config, name), opt)


# --------------------------------------------------------------------------- command line


def _dest(cls: type, name: str) -> str:
    return f"{cls.__name__}.{name}"


def _shown(value: Any, opt: Option) -> str:
    if value is None:
        return f"none: {opt.none_means}" if opt.none_means else "none"
    if isinstance(value, (tuple, list)):
        if not value:
            return "none"
        value = ",".join(str(v) for v in value)
    return f"{value}{' ' + opt.unit if opt.unit else ''}"


def flag_help(opt: Option) -> str:
    """The help of ``opt``'s flag: its help text, the allowed values and the default."""
    if opt.kind == "bool":  # a flag that turns on or off what the option describes
        return f"{'turn off' if (opt.flag_name or '').startswith('--no-') else 'turn on'} {opt.help}"
    allowed = "" if opt.kind == "other" or (opt.kind == "str" and not opt.choices) else opt.range_text()
    parts = [p for p in (opt.help, allowed, f"default {_shown(opt.default, opt)}") if p]
    return "; ".join(parts)


def add_flags(parser: Any, cls: type, *, skip: Collection[str] = ()) -> None:
    """Add a flag to ``parser`` (or argument group) for every option of ``cls`` that has one.

    A flag not given leaves no value (``argparse.SUPPRESS``), so :func:`flag_values` returns
    only what the user typed and the field's own default applies to the rest.
    """
    for name, opt in options(cls).items():
        flag = opt.flag_name
        if flag is None or name in skip:
            continue
        common = {"dest": _dest(cls, name), "default": argparse.SUPPRESS, "help": flag_help(opt)}
        if opt.kind == "bool":
            parser.add_argument(flag, action="store_false" if flag.startswith("--no-") else "store_true", **common)
        elif opt.kind in ("int", "float"):
            metavar = flag[2:].upper().replace("-", "_")
            parser.add_argument(flag, type=int if opt.kind == "int" else float, metavar=metavar, **common)
        elif opt.kind in ("pair", "list"):
            parser.add_argument(flag, metavar="MIN,MAX" if opt.kind == "pair" else "A,B,...", **common)
        else:
            parser.add_argument(flag, metavar=flag[2:].upper().replace("-", "_"), **common)


def _parse_numbers(text: str, opt: Option) -> tuple[Any, ...]:
    cast = int if opt.item == "int" else float
    field = opt.flag_name[2:].replace("-", "_") if opt.flag_name else opt.name
    try:
        values = tuple(cast(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if opt.kind == "pair" and len(values) != 2 or not values:
        msg = f"{field}: expected {'MIN,MAX' if opt.kind == 'pair' else 'comma-separated numbers'}, got {text!r}"
        raise InvalidInputError(msg)
    return values


def flag_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The options of ``cls`` given on the command line, by field name (pairs parsed from ``MIN,MAX``)."""
    out: dict[str, Any] = {}
    for name, opt in options(cls).items():
        dest = _dest(cls, name)
        if not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        out[name] = _parse_numbers(value, opt) if opt.kind in ("pair", "list") and isinstance(value, str) else value
    return out



# --------------------------------------------------------------------------- text values (--set KEY=VALUE, saved forms)

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null", "")


def _refuse(field: str, opt: Option, text: Any) -> None:
    expected = "a JSON value (use the JSON config)" if opt.kind == "other" else opt.range_text()
    msg = f"{field}: expected {'None or ' if opt.nullable else ''}{expected}, got {text!r}"
    raise InvalidInputError(msg)


def _from_text(field: str, text: str, opt: Option) -> Any:
    """The value ``text`` stands for, by ``opt``'s kind (unchecked; :func:`parse_text` checks it)."""
    cleaned = text.strip()
    if opt.nullable and cleaned.lower() in _NONE:
        return None
    try:
        if opt.kind == "int":
            return int(cleaned)
        if opt.kind == "float":
            return float(cleaned)
        if opt.kind in ("pair", "list"):
            cast = int if opt.item == "int" else float
            return tuple(cast(v) for v in cleaned.split(",") if v.strip())
    except ValueError:
        _refuse(field, opt, text)
    if opt.kind == "bool":
        if cleaned.lower() not in (*_TRUE, *_FALSE):
            _refuse(field, opt, text)
        return cleaned.lower() in _TRUE
    if opt.kind == "other":
        _refuse(field, opt, text)
    return cleaned


def parse_text(field: str, text: str, opt: Option) -> Any:
    """The value of option ``opt`` written as text, checked against its range.

    ``"12"`` for an int, ``"0.5"`` for a float, ``true``/``false`` (also ``1``/``0``,
    ``yes``/``no``) for a bool, ``"a,b"`` for a pair or a list, ``none`` where None is allowed.

    Raises
    ------
    InvalidInputError
        Naming ``field``, the value and what is expected: ``"k: expected None or an integer >= 1, got 'x'"``.
    """
    value = _from_text(field, text, opt)
    if opt.kind == "list" and not value:
        _refuse(field, opt, text)
    if opt.check:
        check_value(field, value, opt)
    return value


def parse_assignments(cls: type, items: Collection[str], *, owner: str = "") -> dict[str, Any]:
    """``{name: value}`` from ``["KEY=VALUE", ...]`` for the options of ``cls`` (``--set`` on the command line).

    A key of a nested config is dotted (``centroid.offset_db=3``) and its value lands in a
    nested dict (``{"centroid": {"offset_db": 3.0}}``).

    Parameters
    ----------
    owner : str
        What the options belong to, for messages (``"knn"``); default the class name.

    Raises
    ------
    InvalidInputError
        An item without ``=``, an unknown key (the message lists the known ones) or a value
        outside its option's range (:func:`parse_text`).
    """
    known = {path: option_of(owner, name) for path, owner, name in option_paths(cls)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            msg = f"set: expected KEY=VALUE, got {item!r}"
            raise InvalidInputError(msg)
        if key not in known:
            msg = (f"set: {owner or cls.__name__} has no option {key!r}; "
                   f"expected one of {', '.join(known) or '(none)'}")
            raise InvalidInputError(msg)
        put_path(out, key, parse_text(key, text, known[key]))
    return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def describe(cls: type) -> list[dict[str, Any]]:
    """One row per option of ``cls`` (nested ones dotted): name, kind, default, allowed values, unit, help
    (``rflocal models NAME``)."""
    rows = []
    for name, owner, leaf in option_paths(cls):
        opt = option_of(owner, leaf)
        allowed = "" if opt.kind == "other" or (opt.kind == "str" and not opt.choices) else opt.range_text()
        rows.append({"name": name, "kind": opt.kind, "default": _plain(opt.default),
                     "allowed": f"{'None or ' if opt.nullable else ''}{allowed}", "lo": opt.lo, "hi": opt.hi,
                     "choices": list(opt.choices), "unit": opt.unit, "help": opt.help,
                     "none_means": opt.none_means or None})
    return rows
