"""RFLocal core: a plain-Python library for radio localization.

The Streamlit pages are a thin layer over this package; everything the UI can do,
the library and its command line (``python -m rflocal_core``) can do too.
"""

from __future__ import annotations

__version__ = "0.1.0"
