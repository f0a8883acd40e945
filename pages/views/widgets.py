"""Page widgets made from the config options of the core (:mod:`rflocal_core.options`), that remember.

A widget's label, minimum, maximum, step, default, choices and help come from the config
field, so a page offers exactly the range the core accepts. Not a page itself: app.py's
navigation lists the pages; this module is imported by them (``from pages.views.widgets import ...``).

Forms remember (issue 14): every widget made here keeps its value in the workspace's
``.forms.json`` (:mod:`rflocal_core.formstate`) under its key, in the form named by the key's
prefix (``"dg_samples"``: form ``"dg"``). A widget without a value in this session (a new
session, a reload, or a widget hidden for a while, e.g. the network options while a baseline
was chosen) starts at the saved value when that is still valid, else at the field's default;
a changed value is saved at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from rflocal_core import settings
from rflocal_core.formstate import load_form, rule, save_form
from rflocal_core.options import Option, option_of, option_paths, put_path
from rflocal_core.tracking import TrackConfig

#: Session-state entry holding, per widget key, the value last saved (or found saved) this session.
_SAVED = "_forms_saved"


def form_of(key: str) -> str:
    """The form a widget key belongs to: its prefix before the first ``_`` (``"tm_epochs"``: ``"tm"``)."""
    return key.split("_", 1)[0]


def _cast(kind: str) -> type:
    return int if kind == "int" else float


def _seed(key: str, check: Option, to_widget: Callable[[Any], Any] = lambda v: v) -> None:
    """Before the widget is made: give it its saved value unless it has one in this session."""
    if key in st.session_state:
        return
    saved = load_form(form_of(key), {key: check})
    if key in saved:
        st.session_state[key] = to_widget(saved[key])
        st.session_state.setdefault(_SAVED, {})[key] = saved[key]


def _keep(key: str, value: Any, default: Any) -> None:
    """After: save the widget's value (field units) when it differs from what is saved (or, unsaved, the default)."""
    seen = st.session_state.setdefault(_SAVED, {})
    if value != seen.get(key, default):
        try:
            save_form(form_of(key), {key: value})
        except OSError:  # a read-only workspace: the form still works, it just forgets on reload
            pass
        seen[key] = value


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
    field_default = default
    check = opt if index is None else dataclasses.replace(opt, kind=opt.item, nullable=False)
    _seed(key, check, lambda v: none_value if v is None else cast(v / scale))
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
        result = None
    else:
        result = cast(value * scale) if scale != 1.0 else cast(value)
    _keep(key, result, field_default)
    return result


def choice(where: Any, cls: type, name: str, *, key: str, label: str | None = None,
           none_label: str | None = None) -> Any:
    """A ``selectbox`` of the choices of option ``name`` of ``cls`` (``none_label`` first stands for None)."""
    opt = option_of(cls, name)
    shown = [*([none_label] if none_label is not None else []), *opt.choices]
    _seed(key, opt, lambda v: none_label if v is None else v)
    default = none_label if opt.default is None else opt.default
    value = where.selectbox(label or opt.label, shown, index=shown.index(default), help=opt.help or None, key=key)
    result = None if none_label is not None and value == none_label else value
    _keep(key, result, opt.default)
    return result


def toggle(where: Any, cls: type, name: str, *, key: str, label: str | None = None) -> bool:
    """A ``checkbox`` for the bool option ``name`` of ``cls``, starting at its default."""
    opt = option_of(cls, name)
    _seed(key, opt)
    value = bool(where.checkbox(label or opt.label, value=opt.default, help=opt.help or None, key=key))
    _keep(key, value, opt.default)
    return value


def tracker(key: str) -> TrackConfig | None:
    """A row of "Tracking", "Motion model" and, for kalman, "Smooth (RTS)" (keys ``key``, ``key_motion``,
    ``key_smooth``): the tracker chosen, or None for no tracking."""
    c = st.columns([2, 2, 1])
    method = choice(c[0], TrackConfig, "method", key=key, none_label="none")
    motion = choice(c[1], TrackConfig, "motion", key=f"{key}_motion")
    smooth = toggle(c[2], TrackConfig, "smooth", key=f"{key}_smooth") if method == "kalman" else False
    return None if method is None else TrackConfig(method=method, motion=motion, smooth=smooth)


def select(where: Any, label: str, choices: Sequence[str], *, key: str, index: int = 0, **kwargs: Any) -> Any:
    """A remembered ``selectbox`` of ``choices`` (a saved value no longer among them falls back to ``index``)."""
    choices = list(choices)
    _seed(key, rule("str", choices=choices))
    value = where.selectbox(label, choices, index=index, key=key, **kwargs)
    _keep(key, value, choices[index] if choices else None)
    return value


def radio(where: Any, label: str, choices: Sequence[str], *, key: str, index: int = 0, **kwargs: Any) -> Any:
    """A remembered ``radio`` of ``choices``."""
    choices = list(choices)
    _seed(key, rule("str", choices=choices))
    value = where.radio(label, choices, index=index, key=key, **kwargs)
    _keep(key, value, choices[index])
    return value


def bounded(where: Any, label: str, lo: float, hi: float, default: float, *, key: str, **kwargs: Any) -> Any:
    """A remembered ``number_input`` in [lo, hi] for a value that is no config option (seeds, counts)."""
    _seed(key, rule("int" if isinstance(default, int) else "float", lo=lo, hi=hi))
    value = where.number_input(label, lo, hi, default, key=key, **kwargs)
    _keep(key, value, default)
    return value


def text(where: Any, label: str, *, value: str, key: str, **kwargs: Any) -> str:
    """A remembered ``text_input`` starting at ``value``."""
    _seed(key, rule("str"))
    result = where.text_input(label, value=value, key=key, **kwargs)
    _keep(key, result, value)
    return result


def text_option(where: Any, cls: type, name: str, *, key: str, label: str | None = None) -> str | None:
    """A ``text_input`` for the free-text option ``name`` of ``cls``; empty stands for None where allowed."""
    opt = option_of(cls, name)
    _seed(key, opt, lambda v: "" if v is None else v)
    default = "" if opt.default is None else opt.default
    hint = f"{opt.help}; empty: {opt.none_means}" if opt.nullable and opt.none_means else opt.help
    typed = where.text_input(label or opt.label, value=default, help=hint or None, key=key).strip()
    result = None if opt.nullable and not typed else typed
    _keep(key, result, opt.default)
    return result


def multi(where: Any, label: str, choices: Sequence[str], *, default: Sequence[str], key: str,
          **kwargs: Any) -> list[str]:
    """A remembered ``multiselect`` (a saved item no longer among ``choices`` drops the saved value)."""
    choices = list(choices)
    _seed(key, rule("other", choices=choices))
    value = list(where.multiselect(label, choices, default=list(default), key=key, **kwargs))
    _keep(key, value, list(default))
    return value


def none_value(opt: Option) -> float:
    """The widget value that stands for None in a number widget of a nullable option: just below its range
    (``lo - 1`` for an int, ``lo`` itself where ``lo`` is excluded, else ``lo - 1``)."""
    lo = 0.0 if opt.lo is None else opt.lo
    if opt.kind == "float" and opt.lo_open:
        return float(lo)
    return int(lo) - 1 if opt.kind == "int" else float(lo) - 1.0


def option_label(opt: Option, path: str | None = None) -> str:
    """A widget label of an option without one: its name (or dotted path), unit and what the None value means."""
    label = opt.label or f"{path or opt.name}{f' ({opt.unit})' if opt.unit else ''}"
    if opt.nullable and opt.kind in ("int", "float"):
        label += f" ({none_value(opt):g} = {opt.none_means or 'none'})"
    return label


def option_widgets(where: Any, cls: type, *, key: str, columns: int = 3) -> tuple[dict[str, Any], list[str]]:
    """One widget per option of the config dataclass ``cls`` (a model's options), laid out in columns.

    Numbers get the field's range, default and help (a nullable one its :func:`none_value`),
    bools a checkbox, choices a select box, lists (``node_dropout``) a text field of
    comma-separated values; a nested config's options are dotted (``centroid.offset_db``). Widget
    keys are ``f"{key}_{path}"``.

    Returns
    -------
    values : dict
        The scalar options in field units (None where the widget shows the none value), a nested
        config's in a nested dict.
    assignments : list of str
        The list options as ``"name=text"``, for the core to parse and check
        (:func:`rflocal_core.models.registry.model_config`).
    """
    cols = where.columns(columns)
    values: dict[str, Any] = {}
    assignments: list[str] = []
    shown = [(path, owner, name) for path, owner, name in option_paths(cls) if option_of(owner, name).kind != "other"]
    for i, (path, owner, name) in enumerate(shown):
        opt = option_of(owner, name)
        at, wkey, label = cols[i % columns], f"{key}_{path}", option_label(opt, path)
        if opt.kind == "bool":
            put_path(values, path, toggle(at, owner, name, key=wkey, label=label))
        elif opt.choices:
            put_path(values, path, choice(at, owner, name, key=wkey, label=label))
        elif opt.kind in ("int", "float"):
            put_path(values, path, number(at, owner, name, key=wkey, label=label, none_value=none_value(opt)
                                          if opt.nullable else None, format="%g" if opt.kind == "float" else None))
        elif opt.kind == "str":
            put_path(values, path, text_option(at, owner, name, key=wkey, label=label))
        else:
            _seed(wkey, opt)
            default = ",".join(str(v) for v in opt.default)
            typed = at.text_input(label, value=default, key=wkey,
                                  help=f"{opt.help}; comma-separated" if opt.help else "comma-separated")
            _keep(wkey, typed, default)
            assignments.append(f"{path}={typed}")
    return values, assignments


def error_text(exc: BaseException) -> str:
    """An error's message for ``st.error``: as it is, or a bulleted list when it names several problems.

    A measurement file with several problems raises one error listing them all
    (:meth:`rflocal_core.errors.MeasurementFormatError.combined`); the page shows one per line.
    """
    problems = getattr(exc, "problems", ())
    if len(problems) <= 1:
        return str(exc)
    head = str(exc).split(":", 1)[0]  # "3 problems"
    return f"{head}:\n" + "\n".join(f"- {p}" for p in problems)


def upload_limit_mib(max_bytes: int) -> int:
    """The size, in whole MiB, an uploader takes for files the core caps at ``max_bytes``.

    Passed as ``st.file_uploader(max_upload_size=...)`` and written in the label, so the page names
    one number; never above what the server takes (:data:`rflocal_core.settings.max_upload_mib`).
    """
    return max(1, min(max_bytes // 2**20, settings.max_upload_mib))
