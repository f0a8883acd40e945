"""The Scene Builder's box map: draw the S,W,N,E box on a Leaflet map that works offline.

Leaflet and Leaflet.draw are served by Streamlit from ``pages/components/boxmap/node_modules``
(installed by ``scripts/setup.sh`` with ``npm ci`` from the committed lock file), never from
a CDN. Map tiles load when the internet is there; offline the map is a plain background with
a degree grid and the outlines of a file loaded here. The browser enforces the side limit
(``settings.max_bbox_side_m``) while the box is dragged and shows its corners and area; the
drawn box fills the page's S,W,N,E field, and the build checks it again in the core.
Not a page itself: imported by the Scene Builder (``from pages.views import boxmap``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError, RFLocalInputError
from rflocal_core.geo import BBox
from rflocal_core.scene.footprints import UPLOAD_SUFFIXES, save_upload
from rflocal_core.scene.outlines import Outlines, file_outlines

COMPONENT_DIR = Path(__file__).resolve().parents[1] / "components" / "boxmap"
#: What ``npm ci`` in COMPONENT_DIR installs and index.html loads.
VENDORED = ("node_modules/leaflet/dist/leaflet.js", "node_modules/leaflet-draw/dist/leaflet.draw.js")
TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
#: Where the map opens with no box and no outlines (Munich's centre).
DEFAULT_CENTRE = (48.1372, 11.5755)
DEFAULT_ZOOM = 15

_component = components.declare_component("boxmap", path=str(COMPONENT_DIR))


def missing_files() -> list[str]:
    """The vendored Leaflet files that are not installed (``[]`` once setup has run)."""
    return [name for name in VENDORED if not (COMPONENT_DIR / name).is_file()]


def box_text(box: BBox) -> str:
    """``"S,W,N,E"`` with 6 decimals (about 0.1 m), as the page's field shows it."""
    return ",".join(f"{v:.6f}" for v in box.as_tuple())


def drawn_box(value: Any) -> BBox:
    """The box of a value the map sent (``{"box": [S, W, N, E], ...}``), size-checked.

    Raises
    ------
    InvalidInputError
        The value holds no four numbers, or a side exceeds ``settings.max_bbox_side_m``.
    """
    try:
        south, west, north, east = (float(v) for v in value["box"])
    except (KeyError, TypeError, ValueError):
        msg = f"bbox: expected the map to send [S, W, N, E], got {value!r:.200}"
        raise InvalidInputError(msg) from None
    box = BBox(south, west, north, east)
    box.check_size()
    return box


def _typed_box(text: str) -> BBox | None:
    try:
        return BBox.parse(text) if text and text.strip() else None
    except RFLocalInputError:
        return None  # the field says what is wrong when the scene is built


@st.cache_data(show_spinner=False, max_entries=8)
def _outlines(path: str, mtime_ns: int, size: int) -> Outlines:  # mtime_ns, size: cache key only
    return file_outlines(path)


def outlines_picker(*, key: str) -> Outlines | None:
    """An optional OSM / GeoJSON file whose outlines the map draws; its outlines or None."""
    c = st.columns(2)
    upload = c[0].file_uploader("Outlines to draw the box over (optional): OSM XML or GeoJSON",
                                type=[s.lstrip(".") for s in UPLOAD_SUFFIXES], key=f"{key}_file")
    typed = c[1].text_input("…or a path on this machine", key=f"{key}_path")
    try:
        if upload is not None:
            saved = st.session_state.get(f"{key}_saved")
            if not saved or saved[0] != upload.file_id:  # store each upload once, not on every rerun
                saved = (upload.file_id, str(save_upload(upload.name, upload.getvalue())))
                st.session_state[f"{key}_saved"] = saved
            path = Path(saved[1])
        elif typed:
            path = Path(typed)
        else:
            return None
        stat = path.stat() if path.is_file() else None
        outlines = _outlines(str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
    except RFLocalInputError as exc:
        st.error(str(exc))
        return None
    cut = " (the first of them)" if (outlines.shown_buildings, outlines.shown_roads) != (
        outlines.buildings, outlines.roads) else ""
    st.caption(f"{outlines.file}: {outlines.buildings} buildings and {outlines.roads} roads on the map{cut}.")
    return outlines


def box_map(*, key: str, field: str, outlines: Outlines | None = None, height: int = 420) -> None:
    """The map; a box drawn on it is written into the text field with key ``field`` (S,W,N,E).

    Call before the field is created: a new box drawn (the map's value on this rerun) is
    put into ``st.session_state[field]`` first, then the map shows the field's box.
    """
    missing = missing_files()
    if missing:
        st.warning(f"The box map is not installed ({', '.join(missing)} missing in {COMPONENT_DIR}): run "
                   "`make setup` (scripts/setup.sh runs `npm ci` there). Type the box's corners below instead.")
        return
    value = st.session_state.get(key)
    if isinstance(value, dict) and value.get("id") != st.session_state.get(f"{key}_taken"):
        st.session_state[f"{key}_taken"] = value.get("id")  # each drawing fills the field once
        try:
            st.session_state[field] = box_text(drawn_box(value))
        except RFLocalInputError as exc:
            st.error(str(exc))
    box = _typed_box(st.session_state.get(field, ""))
    if box is not None:
        centre = box.centre
    elif outlines is not None:
        centre = BBox(*outlines.bbox).centre
    else:
        centre = DEFAULT_CENTRE
    _component(
        center=list(centre), zoom=DEFAULT_ZOOM, box=list(box.as_tuple()) if box else None,
        fit=list(outlines.bbox) if outlines else None, outlines=outlines.geojson if outlines else None,
        max_side_m=float(settings.max_bbox_side_m), tiles=TILES, attribution=ATTRIBUTION, height=height,
        key=key, default=None,
    )
