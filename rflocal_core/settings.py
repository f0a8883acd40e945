"""Typed settings with their defaults and limits.

Every number a user may wonder about ("how big a box may I draw?") lives here, with
its unit in the name. Values that depend on the environment are read when asked for,
so a test can change an environment variable and see the effect.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

#: Environment variable naming the workspace folder.
WORKSPACE_ENV = "RFLOCAL_WORKSPACE"

#: Environment variable that overrides the Overpass API endpoint used by osmnx.
OVERPASS_URL_ENV = "RFLOCAL_OVERPASS_URL"

#: Largest bounding box side accepted for a scene, in metres.
max_bbox_side_m: float = 2000.0

#: Largest OSM / GeoJSON file accepted, in bytes (uploads and paths alike).
max_osm_file_bytes: int = 50 * 1024 * 1024

#: Largest upload the workbench's server takes, in MiB: ``server.maxUploadSize`` in
#: ``.streamlit/config.toml`` is this number (a test holds them equal). Each uploader asks for
#: the cap of its own kind of file, at most this (``st.file_uploader(max_upload_size=...)``), so
#: the limit Streamlit shows under it is the one the core applies.
max_upload_mib: int = 50

#: Seconds before an online OpenStreetMap request is given up.
osm_request_timeout_s: float = 60.0

#: Height of a building storey, used when only ``building:levels`` is known.
storey_height_m: float = 3.0

#: Height used when a building has neither ``height`` nor ``building:levels``.
default_building_height_m: float = 10.0

#: Seed of a scene (its procedural city, material draw and site placement) unless one is given:
#: ``scene build --procedural`` and ``SceneConfig(name=...)`` build the same default city.
scene_seed: int = 7

#: Footprint parts smaller than this (after clipping) are dropped as degenerate.
min_footprint_area_m2: float = 1.0

#: Margin of ground plane around the scene extent, in metres.
ground_margin_m: float = 20.0

#: Wall thickness given to radio materials, in metres.
wall_thickness_m: float = 0.2

#: Ranges of domain-randomized material parameters.
permittivity_range: tuple[float, float] = (2.0, 15.0)
conductivity_range_s_per_m: tuple[float, float] = (0.001, 10.0)

#: Largest extent (the longer side of the box around the true positions and mobile-sensor
#: positions) of a dataset that training accepts without ``allow_large_extent``, in metres:
#: a larger one is almost always a GPS fault that cleaning did not catch.
max_dataset_extent_m: float = 50_000.0

#: Scene schema version written in ``scene.json``.
scene_schema_version: int = 1


def workspace_dir() -> Path:
    """Return the workspace folder (``$RFLOCAL_WORKSPACE`` or ``./workspace``)."""
    return Path(os.environ.get(WORKSPACE_ENV, "workspace")).expanduser().resolve()


@contextlib.contextmanager
def use_workspace(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Point ``$RFLOCAL_WORKSPACE`` at ``path`` for the duration of the block, then restore it.

    The environment, not a module variable, so child processes (ray-tracing workers) see it too.
    """
    old = os.environ.get(WORKSPACE_ENV)
    os.environ[WORKSPACE_ENV] = str(path)
    try:
        yield Path(path)
    finally:
        if old is None:
            os.environ.pop(WORKSPACE_ENV, None)
        else:
            os.environ[WORKSPACE_ENV] = old


def overpass_url() -> str | None:
    """Return an Overpass endpoint override, or None for the osmnx default."""
    return os.environ.get(OVERPASS_URL_ENV) or None
