"""Page widgets made from the config options of the core (:mod:`rflocal_core.options`).

A widget's label, minimum, maximum, step, default, choices and help come from the config
field, so a page offers exactly the range the core accepts. Not a page itself: app.py's
navigation lists the pages; this module is imported by them (``from pages.views.widgets import ...``).
"""

from __future__ import annotations

from typing import Any

from rflocal_core import settings
from rflocal_core.options import option_of


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
        label or opt.label, min_value=cast(lo / scale), max_value=None if opt.hi is None else cast(opt.hi / scale),
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
