"""Outlines of a footprint file as GeoJSON, for drawing a box over them on a map.

The Scene Builder's box map shows these when no map tiles can be loaded (offline), so a
box can be drawn where the file's buildings are. Reading uses the same readers as a
build (:func:`rflocal_core.scene.footprints.from_path`); the outlines are simplified to
:data:`SIMPLIFY_DEG` and rounded to :data:`DECIMALS` decimals, and at most
:data:`MAX_FEATURES` buildings (and as many roads) are kept, so a large file stays a
small message to the browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely.geometry import mapping

from rflocal_core.results import JsonResult, json_field
from rflocal_core.scene.footprints import from_path

#: Most buildings (and, separately, roads) sent to the map.
MAX_FEATURES = 20_000
#: Simplification tolerance in degrees (about 0.3 m), far below what a map at street zoom shows.
SIMPLIFY_DEG = 3e-6
#: Decimals kept of each coordinate (1e-6 degree is about 0.1 m).
DECIMALS = 6


@dataclass(frozen=True)
class Outlines(JsonResult):
    """Building outlines (and roads) of a footprint file in WGS84.

    Attributes
    ----------
    file : str
        The file's name.
    buildings, roads : int
        How many the file holds.
    shown_buildings, shown_roads : int
        How many are in :attr:`geojson` (at most :data:`MAX_FEATURES` each).
    bbox : tuple of float
        The file's box ``(south, west, north, east)`` in degrees.
    geojson : dict
        A FeatureCollection; each feature's ``properties.kind`` is ``"building"`` or ``"road"``.
    """

    file: str
    buildings: int
    roads: int
    shown_buildings: int
    shown_roads: int
    bbox: tuple[float, float, float, float]
    geojson: dict[str, Any] = json_field(json=False)


def _rounded(coords: Any) -> Any:
    """GeoJSON coordinates with every number rounded to :data:`DECIMALS` decimals."""
    if isinstance(coords, (int, float)):
        return round(float(coords), DECIMALS)
    return [_rounded(c) for c in coords]


def _feature(geometry: Any, kind: str) -> dict[str, Any] | None:
    simple = geometry.simplify(SIMPLIFY_DEG, preserve_topology=True)
    if simple.is_empty:
        return None
    geo = mapping(simple)
    return {"type": "Feature", "properties": {"kind": kind},
            "geometry": {"type": geo["type"], "coordinates": _rounded(geo["coordinates"])}}


def file_outlines(path: str | Path) -> Outlines:
    """Read an OSM XML or GeoJSON footprint file and return its outlines for a map.

    Parameters
    ----------
    path : str or Path
        An ``.osm``/``.xml`` or ``.geojson``/``.json`` file (the same files a scene is built from).

    Returns
    -------
    Outlines
        The outlines as GeoJSON, with counts and the file's box.

    Raises
    ------
    OSMFormatError
        The file is missing, too large, of an unknown kind or holds no buildings (as for a build).
    """
    raw = from_path(path)
    buildings = [f for g in raw.geometries[:MAX_FEATURES] if (f := _feature(g, "building")) is not None]
    roads = [f for g in raw.roads[:MAX_FEATURES] if (f := _feature(g, "road")) is not None]
    return Outlines(
        file=Path(path).name, buildings=len(raw.geometries), roads=len(raw.roads),
        shown_buildings=len(buildings), shown_roads=len(roads), bbox=raw.bbox.as_tuple(),
        geojson={"type": "FeatureCollection", "features": buildings + roads},
    )
