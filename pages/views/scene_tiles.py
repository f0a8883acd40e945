"""Scene Builder's "Tile set" tab: many tiles of different morphology for one dataset (issue 19).

The same call as ``python -m rflocal_core scene tiles``: :func:`rflocal_core.scene.tiles.build_tiles`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from rflocal_core.errors import RFLocalInputError
from rflocal_core.scene import bundled_scenes
from rflocal_core.scene.tiles import TilesConfig, TilesResult, build_tiles

from pages.views.widgets import multi, number, text

#: Range options drawn per procedural tile: (field, label).
RANGES = (("size_m", "Side (m)"), ("block_m", "Block (m)"), ("street_width_m", "Street (m)"),
          ("mean_height_m", "Median height (m)"), ("site_count", "Sites"))


def _ranges() -> dict[str, tuple[Any, Any]]:
    """A (min, max) pair of number widgets per range option, both ends from the option's one definition."""
    values = {}
    cols = st.columns(len(RANGES))
    for col, (name, label) in zip(cols, RANGES):
        lo = number(col, TilesConfig, name, key=f"sbt_{name}_lo", index=0, label=f"{label} min")
        hi = number(col, TilesConfig, name, key=f"sbt_{name}_hi", index=1, label=f"{label} max")
        values[name] = (lo, hi)
    return values


def _config() -> TilesConfig:
    """The widgets of the tab, as one :class:`TilesConfig` (its checks raise on bad values)."""
    c = st.columns(4)
    count = number(c[0], TilesConfig, "count", key="sbt_count")
    seed = number(c[1], TilesConfig, "seed", key="sbt_seed")
    unseen = number(c[2], TilesConfig, "unseen", key="sbt_unseen")
    prefix = text(c[3], "Name prefix", value="tile", key="sbt_prefix", help="tile names start with PREFIX<seed>-")
    ranges = _ranges()
    osm = text(st, "OSM extracts (.osm files or folders on this machine, comma-separated)", value="",
               key="sbt_osm", help="each .osm file becomes a tile, e.g. ../shared/data/osm")
    bundled = multi(st, "Scenes shipped with Sionna RT", sorted(bundled_scenes()), default=[], key="sbt_bundled")
    return TilesConfig(count=int(count), seed=int(seed), unseen=int(unseen), prefix=prefix.strip(),
                       osm=tuple(p.strip() for p in osm.split(",") if p.strip()), bundled=tuple(bundled),
                       **ranges)


def _show(result: TilesResult) -> None:
    """The tiles built (or kept) and the command that generates a dataset over them."""
    rows = [{"name": t.name, "kind": t.kind, "buildings": t.buildings, "sites": t.sites,
             "extent (m)": f"{t.extent_m[0]:.0f} × {t.extent_m[1]:.0f}", "median height (m)": t.median_height_m,
             "built now": t.built, "held out": t.unseen} for t in result.tiles]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.markdown("Generate a dataset over them on **Data Generation** (choose these scenes, hold out the "
                "marked ones), or with:")
    st.code(result.generate_command, language="bash")


def render_tiles_tab(user: Any) -> None:
    """Body of the "Tile set" tab."""
    st.markdown("Procedural cities whose size, blocks, streets, heights and sites are drawn per tile, the real "
                "OSM extracts of a folder and Sionna's scenes: one dataset over all of them, whole tiles held "
                "out as the unseen-city test. Tiles already built under their names are kept.")
    try:
        config = _config()
    except RFLocalInputError as exc:
        st.error(str(exc))
        return
    if not st.button("Build tiles", type="primary", key="sbt_build"):
        return
    bar = st.progress(0.0, text="starting")
    try:
        result = build_tiles(config, progress=lambda stage, f: bar.progress(min(f, 1.0), text=stage), user=user)
    except RFLocalInputError as exc:
        bar.empty()
        st.error(str(exc))
        return
    built = sum(t.built for t in result.tiles)
    st.success(f"{len(result.tiles)} tiles ({built} built now, {len(result.tiles) - built} kept), "
               f"{len(result.unseen)} held out, in {result.seconds:.1f} s.")
    _show(result)
