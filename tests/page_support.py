"""What the AppTest page tests of the measurement import share: the Data Generation page with a file uploaded on
its import tab, and an import with some text inputs set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def import_tab(name: str, data: bytes, mime: str) -> Any:
    """The Data Generation page (through the app's router) with ``data`` uploaded on its import tab."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/views/data_generation.py")
    at.run()
    at.file_uploader(key="dg_import_file").set_value((name, data, mime))
    at.run()
    return at


def import_with(at: Any, **texts: str) -> Any:
    """Set the text inputs ``texts`` (widget key -> value), press Import, rerun; the page raised nothing."""
    for key, value in texts.items():
        at.text_input(key=key).set_value(value)
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception, at.exception
    return at
