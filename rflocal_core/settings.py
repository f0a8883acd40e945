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

from rflocal_core.errors import InvalidInputError

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

#: Environment variables that override the job quotas and the dataset size cap below.
MAX_JOBS_ENV = "RFLOCAL_MAX_JOBS"
MAX_JOBS_PER_OWNER_ENV = "RFLOCAL_MAX_JOBS_PER_OWNER"
MAX_QUEUED_JOBS_ENV = "RFLOCAL_MAX_QUEUED_JOBS"
MAX_DATASET_SAMPLES_ENV = "RFLOCAL_MAX_DATASET_SAMPLES"

#: Jobs (generation, training, ablation) queued beyond the running ones before further starts are
#: refused; 0: never queue, refuse every start over a running limit.
max_queued_jobs_default: int = 32

#: Most samples one generation job may request (samples per scene x scenes).
max_dataset_samples_default: int = 1_000_000


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


def _env_int(name: str, default: int, *, lo: int) -> int:
    """``int($name)`` (at least ``lo``), or ``default`` when unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < lo:
        msg = f"{name}: expected a whole number >= {lo}, got {raw!r}"
        raise InvalidInputError(msg)
    return value


def max_running_jobs() -> int:
    """Most background jobs running at once (``$RFLOCAL_MAX_JOBS``; default: the number of cores)."""
    return _env_int(MAX_JOBS_ENV, os.cpu_count() or 1, lo=1)


def max_jobs_per_owner(default: int | None = None) -> int:
    """Most background jobs of one owner running at once (``$RFLOCAL_MAX_JOBS_PER_OWNER``; default:
    ``default``, or :func:`max_running_jobs` when None)."""
    return _env_int(MAX_JOBS_PER_OWNER_ENV, max_running_jobs() if default is None else default, lo=1)


def max_queued_jobs() -> int:
    """Most jobs waiting for a free slot (``$RFLOCAL_MAX_QUEUED_JOBS``; default
    :data:`max_queued_jobs_default`); 0 refuses every start that cannot run at once."""
    return _env_int(MAX_QUEUED_JOBS_ENV, max_queued_jobs_default, lo=0)


def max_dataset_samples() -> int:
    """Most samples one generation job may request, samples per scene x scenes
    (``$RFLOCAL_MAX_DATASET_SAMPLES``; default :data:`max_dataset_samples_default`)."""
    return _env_int(MAX_DATASET_SAMPLES_ENV, max_dataset_samples_default, lo=1)
