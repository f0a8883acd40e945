"""Page widgets made from the config options of the core (:mod:`rflocal_core.options`).

A widget's label, minimum, maximum, step, default, choices and help come from the config
field, so a page offers exactly the range the core accepts. Not a page itself: app.py's
navigation lists the pages; this module is imported by them (``from pages.views.widgets import ...``).
"""

from __future__ import annotations

from typing import Any

from rflocal_core.options import Option, option_of, options


def _cast(kind: str) -> type:
    return int if kind == "int" else float


def number(where: Any, cls: type, name: str, *, key: str, label: str | None = None, index: int | None = None,
           none_value: float | None = None, scale: float = 1.0, format: str | None = None) -> Any:
    """A ``number_input`` for the option ``name`` of ``cls``; returns the value in the field's unit.

    Parameters
    ----------
    where
        ``st`` or a container (a column, an expander).
    index : int, optional
        For a (min, max) pair option: which end (0 or 1).
    none_value : float, optional
        For an option that may be None: the widget value that means None (below the range,
        e.g. -1 or 0); the widget then starts there when the default is None.
    scale : float
        Field units per widget unit (1e9 shows a frequency in Hz as GHz).
    format : str, optional
        Display format (``"%.4f"``).
    """
    opt = option_of(cls, name)
    cast = _cast(opt.item or opt.kind)
    default = opt.default if index is None else opt.default[index]
    lo = opt.lo
    if none_value is not None:
        lo = none_value * scale
        default = none_value * scale if default is None else default
    step = None if opt.step is None else cast(opt.step / scale)
    value = where.number_input(
        label or opt.label, min_value=None if lo is None else cast(lo / scale),
        max_value=None if opt.hi is None else cast(opt.hi / scale),
        value=cast(default / scale), step=step, help=opt.help or None, key=key, format=format,
    )
    if none_value is not None and value == none_value:
        return None
    return cast(value * scale) if scale != 1.0 else cast(value)


def choice(where: Any, cls: type, name: str, *, key: str, label: str | None = None,
           none_label: str | None = None) -> Any:
    """A ``selectbox`` of the choices of option ``name`` of ``cls`` (``none_label`` first stands for None)."""
    opt = option_of(cls, name)
    options = [*([none_label] if none_label is not None else []), *opt.choices]
    default = none_label if opt.default is None else opt.default
    value = where.selectbox(label or opt.label, options, index=options.index(default), help=opt.help or None, key=key)
    return None if none_label is not None and value == none_label else value


def toggle(where: Any, cls: type, name: str, *, key: str, label: str | None = None) -> bool:
    """A ``checkbox`` for the bool option ``name`` of ``cls``, starting at its default."""
    opt = option_of(cls, name)
    return bool(where.checkbox(label or opt.label, value=opt.default, help=opt.help or None, key=key))


def none_value(opt: Option) -> float:
    """The widget value that stands for None in a number widget of a nullable option: just below its range
    (``lo - 1`` for an int, ``lo`` itself where ``lo`` is excluded, else ``lo - 1``)."""
    lo = 0.0 if opt.lo is None else opt.lo
    if opt.kind == "float" and opt.lo_open:
        return float(lo)
    return int(lo) - 1 if opt.kind == "int" else float(lo) - 1.0


def option_label(opt: Option) -> str:
    """A widget label of an option without one: its name, unit and what the None value means."""
    label = opt.label or f"{opt.name}{f' ({opt.unit})' if opt.unit else ''}"
    if opt.nullable and opt.kind in ("int", "float"):
        label += f" ({none_value(opt):g} = {opt.none_means or 'none'})"
    return label


def option_widgets(where: Any, cls: type, *, key: str, columns: int = 3) -> tuple[dict[str, Any], list[str]]:
    """One widget per option of the config dataclass ``cls`` (a model's options), laid out in columns.

    Numbers get the field's range, default and help (a nullable one its :func:`none_value`),
    bools a checkbox, choices a select box, lists (``node_dropout``) a text field of
    comma-separated values. Widget keys are ``f"{key}_{name}"``.

    Returns
    -------
    values : dict
        The scalar options in field units (None where the widget shows the none value).
    assignments : list of str
        The list options as ``"name=text"``, for the core to parse and check
        (:func:`rflocal_core.models.registry.model_config`).
    """
    cols = where.columns(columns)
    values: dict[str, Any] = {}
    assignments: list[str] = []
    shown = [(name, opt) for name, opt in options(cls).items() if opt.kind != "other"]
    for i, (name, opt) in enumerate(shown):
        at, wkey, label = cols[i % columns], f"{key}_{name}", option_label(opt)
        if opt.kind == "bool":
            values[name] = toggle(at, cls, name, key=wkey, label=label)
        elif opt.choices:
            values[name] = choice(at, cls, name, key=wkey, label=label)
        elif opt.kind in ("int", "float"):
            values[name] = number(at, cls, name, key=wkey, label=label, format="%g" if opt.kind == "float" else None,
                                  none_value=none_value(opt) if opt.nullable else None)
        else:
            text = at.text_input(label, value=",".join(str(v) for v in opt.default), key=wkey,
                                 help=f"{opt.help}; comma-separated" if opt.help else "comma-separated")
            assignments.append(f"{name}={text}")
    return values, assignments
