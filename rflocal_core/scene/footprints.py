"""Building footprints from OpenStreetMap (file or online) and GeoJSON.

Everything here ends in :class:`Footprints`: polygons in WGS84 with their tags, the
bounding box they belong to and a :class:`~rflocal_core.scene.osm_xml.FeatureLog` of what
was skipped or repaired. OSM files are read feature by feature
(:mod:`rflocal_core.scene.osm_xml`), GeoJSON feature by feature here, so one bad feature
costs only itself. :func:`to_scene_frame` projects the footprints into scene metres,
clips them to the box, drops degenerate parts and picks heights (and the base of
``building:part`` features lifted by ``min_height``).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import shapely
from shapely.errors import GEOSException
from shapely.geometry import MultiPolygon, Polygon, box, shape

from rflocal_core import settings
from rflocal_core.errors import OSMDownloadError, OSMFormatError
from rflocal_core.geo import BBox, LocalFrame
from rflocal_core.scene import osm_xml
from rflocal_core.scene.osm_xml import FeatureLog, clean_polygon, polygons_of
from rflocal_core.workspace import atomic_write_bytes, subdir


@dataclass
class Footprints:
    """Raw footprints in WGS84 (lon/lat coordinates, as GeoJSON orders them)."""

    geometries: list[Polygon | MultiPolygon]
    tags: list[dict[str, Any]]
    bbox: BBox
    source: dict[str, Any]
    roads: list[Any] = field(default_factory=list)  # LineStrings in WGS84
    log: FeatureLog = field(default_factory=FeatureLog)


@dataclass
class Building:
    """A building in scene metres, ready to extrude."""

    id: int
    footprint: Polygon | MultiPolygon
    height_m: float  # the roof, above the ground
    height_rule: str  # "height", "levels", "default" or "procedural"
    tags: dict[str, Any]
    material: str = ""
    base_m: float = 0.0  # the floor, above the ground (min_height of a building part)


@dataclass
class FootprintReport:
    """What reading and :func:`to_scene_frame` did, for the user to see.

    ``log`` holds the counts by reason of features skipped or repaired while reading
    (and of parts dropped here because their base is not below their top).
    """

    read: int = 0
    kept: int = 0
    clipped: int = 0
    dropped_degenerate: int = 0
    dropped_outside: int = 0
    height_rules: dict[str, int] = field(default_factory=lambda: {"height": 0, "levels": 0, "default": 0})
    log: FeatureLog = field(default_factory=FeatureLog)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; ``seen``, ``skipped``, ``repaired`` and ``parts`` come from :attr:`log`."""
        return {
            "read": self.read,
            "kept": self.kept,
            "clipped": self.clipped,
            "dropped_degenerate": self.dropped_degenerate,
            "dropped_outside": self.dropped_outside,
            "height_rules": dict(self.height_rules),
            **self.log.to_dict(),
        }

    def describe(self) -> list[str]:
        """One line per skip or repair reason (see :func:`rflocal_core.scene.osm_xml.describe`)."""
        return osm_xml.describe(self.log.to_dict())


# --------------------------------------------------------------------------- sources


def _check_file(path: Path, *, kind: str) -> Path:
    path = Path(path)
    if not path.is_file():
        msg = f"{kind}: file not found: {str(path)!r}"
        raise OSMFormatError(msg)
    size = path.stat().st_size
    if size == 0:
        msg = f"{kind}: file {path.name!r} is empty; expected OpenStreetMap XML or GeoJSON"
        raise OSMFormatError(msg)
    if size > settings.max_osm_file_bytes:
        msg = (
            f"{kind}: file {path.name!r} is {size / 1e6:.1f} MB; expected at most "
            f"{settings.max_osm_file_bytes / 1e6:.0f} MB (cut a smaller extract)"
        )
        raise OSMFormatError(msg)
    return path


def _gdf_to_lists(gdf: Any) -> tuple[list[Any], list[dict[str, Any]], int]:
    """Keep polygonal rows of an osmnx GeoDataFrame; count the rest."""
    geometries, tags = [], []
    skipped = 0
    columns = [c for c in gdf.columns if c != "geometry"]
    for row in gdf.itertuples(index=True):
        geom = row.geometry
        if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon"):
            skipped += 1
            continue
        values = {c: gdf.at[row.Index, c] for c in columns}
        geometries.append(geom)
        tags.append({k: v for k, v in values.items() if _present(v)})
        tags[-1]["osm_id"] = "/".join(str(part) for part in row.Index) if isinstance(row.Index, tuple) else str(row.Index)
    return geometries, tags, skipped


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not isinstance(value, (list, dict))


def _bbox_of(geometries: list[Any]) -> BBox:
    west, south, east, north = shapely.total_bounds(np.asarray(geometries, dtype=object))
    return BBox(float(south), float(west), float(north), float(east))


def from_osm_file(path: str | Path) -> Footprints:
    """Read building footprints (and roads) from an ``.osm`` XML file, one feature at a time.

    The file's ``<bounds>`` element is the scene box when present; otherwise the
    bounds of its buildings are. Features that cannot be built are skipped or repaired
    and counted in ``Footprints.log`` (rules: :mod:`rflocal_core.scene.osm_xml`).

    Raises
    ------
    OSMFormatError
        The file is not OSM XML, or not one building in it can be built (the message
        names what was seen and skipped).
    """
    path = _check_file(Path(path), kind="osm_file")
    data = osm_xml.read_osm_xml(path)
    features = osm_xml.apply_parts(osm_xml.building_features(data), data.log)
    if not features:
        msg = (
            f"osm_file: {path.name!r} holds no buildings ({seen_summary(data.log)}); "
            "expected closed ways or multipolygon relations tagged building=*"
        )
        raise OSMFormatError(msg)
    roads = osm_xml.road_lines(data)
    geometries = [f.geometry for f in features]
    bbox = data.bounds or _bbox_of(geometries)
    return Footprints(geometries, [f.tags for f in features], bbox, {"kind": "osm_file", "file": path.name},
                      roads, data.log)


def seen_summary(log: FeatureLog) -> str:
    """``"seen 12 nodes, 3 ways, ...; skipped: ..."`` on one line, for "holds no buildings" messages."""
    seen = log.seen
    parts = [f"{seen.get(k, 0)} {k.replace('_', ' ')}" for k in ("nodes", "ways", "relations")]
    parts.append(f"{seen.get('building_ways', 0) + seen.get('building_relations', 0)} tagged building "
                 f"({seen.get('building_ways', 0)} ways, {seen.get('building_relations', 0)} relations)")
    parts += [f"{seen[k]} {k.replace('_', ' ')}" for k in ("building_parts", "building_nodes", "bad_nodes", "deleted")
              if seen.get(k)]
    lines = osm_xml.describe(log.to_dict())
    return "seen " + ", ".join(parts) + ("; " + "; ".join(lines) if lines else "; nothing skipped")


def from_geojson(path: str | Path) -> Footprints:
    """Read building footprints from a GeoJSON FeatureCollection (WGS84 lon/lat), feature by feature.

    Properties ``height`` and ``building:levels`` are used as in OSM. A feature without a
    usable polygon is skipped and counted (``features[i]`` in ``Footprints.log``); only a
    file whose polygons all lie outside lon/lat degrees (a projected file) is refused.
    """
    path = _check_file(Path(path), kind="geojson_file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"geojson_file: {path.name!r} is not valid JSON ({exc})"
        raise OSMFormatError(msg) from None
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        msg = f"geojson_file: {path.name!r} has no 'features' list; expected a GeoJSON FeatureCollection"
        raise OSMFormatError(msg)
    log = FeatureLog(seen={"features": len(features), "non_polygon": 0})
    read, outside = [], []
    for i, feature in enumerate(features):
        geom = _geojson_polygon(feature, f"features[{i}]", log)
        if geom is None:
            continue
        minx, miny, maxx, maxy = geom.bounds
        if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
            outside.append((i, geom.bounds))
            continue
        props = feature.get("properties")
        read.append((i, geom, {k: v for k, v in (props if isinstance(props, dict) else {}).items() if _present(v)}))
    if outside and not read:
        i, bounds = outside[0]
        msg = f"geojson_file: features[{i}] has coordinates outside lon/lat degrees (bounds {bounds}); expected WGS84"
        raise OSMFormatError(msg)
    for i, _ in outside:
        log.skip("not_lonlat", f"features[{i}]")
    geometries, tags = [], []
    for i, geom, props in read:
        cleaned = clean_polygon(geom, f"features[{i}]", log)
        if cleaned is not None:
            geometries.append(cleaned)
            tags.append(props)
    if not geometries:
        lines = osm_xml.describe(log.to_dict())
        msg = (f"geojson_file: {path.name!r} holds no Polygon or MultiPolygon features ({len(features)} features, "
               f"{log.seen['non_polygon']} not polygons{'; ' + '; '.join(lines) if lines else ''})")
        raise OSMFormatError(msg)
    return Footprints(geometries, tags, _bbox_of(geometries), {"kind": "geojson_file", "file": path.name}, log=log)


def _geojson_polygon(feature: Any, feature_id: str, log: FeatureLog) -> Polygon | MultiPolygon | None:
    """The (Multi)Polygon of one GeoJSON feature; None (logged or counted) otherwise."""
    geometry = feature.get("geometry") if isinstance(feature, dict) else None
    if not geometry:
        log.skip("no_geometry", feature_id)
        return None
    try:
        geom = shape(geometry)
    except (GEOSException, ValueError, TypeError, KeyError, IndexError, AttributeError):
        log.skip("invalid_geometry", feature_id)
        return None
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        log.count("non_polygon")  # points and lines are not footprints; not an error
        return None
    return geom


# osmnx 2.1 takes no per-call options: its functions read the module-global ``ox.settings``
# while they run. Background jobs may download at the same time, so a download sets them,
# holds this lock for its whole duration and restores them (see osmnx_settings).
_OSMNX_LOCK = threading.RLock()


@contextlib.contextmanager
def osmnx_settings(**values: Any) -> Iterator[Any]:
    """Set attributes of ``osmnx.settings`` for the block and restore them after it, under a lock.

    osmnx 2.1 accepts no per-call settings, so they are set globally; the lock keeps a
    concurrent download (another job's thread) from seeing or changing them midway.

    Parameters
    ----------
    **values
        ``osmnx.settings`` attribute names and their values for the block, e.g. ``use_cache=False``.

    Yields
    ------
    module
        ``osmnx.settings``, as set.
    """
    import osmnx as ox

    unknown = [name for name in values if not hasattr(ox.settings, name)]
    if unknown:
        msg = f"osmnx_settings: unknown osmnx setting {unknown[0]!r}"
        raise AttributeError(msg)
    with _OSMNX_LOCK:
        old = {name: getattr(ox.settings, name) for name in values}
        try:
            for name, value in values.items():
                setattr(ox.settings, name, value)
            yield ox.settings
        finally:
            for name, value in old.items():
                setattr(ox.settings, name, value)


def from_bbox(bbox: BBox) -> Footprints:
    """Download building footprints inside ``bbox`` from OpenStreetMap (needs internet)."""
    bbox.check_size()
    values: dict[str, Any] = {"requests_timeout": settings.osm_request_timeout_s, "use_cache": False}
    if settings.overpass_url():
        values["overpass_url"] = settings.overpass_url()
    with osmnx_settings(**values) as ox_settings:
        offline = _unreachable(ox_settings.overpass_url)
        if offline:
            msg = (
                f"bbox: could not reach OpenStreetMap ({offline}); this machine seems to be offline. "
                "Load an OSM file or build a procedural city instead."
            )
            raise OSMDownloadError(msg)
        gdf = _download_buildings(bbox)
    geometries, tags, non_polygons = _gdf_to_lists(gdf)
    if not geometries:
        msg = f"bbox: OpenStreetMap has no building polygons in {bbox.as_tuple()}"
        raise OSMFormatError(msg)
    log = FeatureLog(seen={"features": len(gdf), "non_polygon": non_polygons})
    return Footprints(geometries, tags, bbox, {"kind": "bbox", "bbox": list(bbox.as_tuple())}, log=log)


def _download_buildings(bbox: BBox) -> Any:
    """The osmnx GeoDataFrame of the buildings in ``bbox`` (call within :func:`osmnx_settings`)."""
    import osmnx as ox
    import requests

    try:
        return ox.features_from_bbox((bbox.west, bbox.south, bbox.east, bbox.north), tags={"building": True})
    except (requests.exceptions.RequestException, OSError) as exc:
        msg = (
            "bbox: could not download buildings from OpenStreetMap; this machine seems to be offline "
            f"({type(exc).__name__}). Load an OSM file or build a procedural city instead."
        )
        raise OSMDownloadError(msg) from None
    except Exception as exc:  # osmnx: InsufficientResponseError when the box is empty
        msg = f"bbox: OpenStreetMap has no buildings in {bbox.as_tuple()} ({type(exc).__name__}: {exc})"
        raise OSMFormatError(msg) from None


def _unreachable(url: str, *, timeout_s: float = 5.0) -> str | None:
    """Return why ``url``'s host cannot be reached, or None if a TCP connection opens.

    osmnx waits a minute before its first request when the Overpass status check
    fails; probing first lets an offline user hear so at once.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{parts.hostname}:{port}: {exc.strerror or type(exc).__name__}"


UPLOAD_SUFFIXES = (".osm", ".xml", ".geojson", ".json")


def save_upload(filename: str, data: bytes) -> Path:
    """Store an uploaded OSM/GeoJSON file in ``workspace/uploads`` and return its path.

    The name is reduced to safe characters; size and extension are checked.
    """
    suffix = Path(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        msg = f"osm_file: unsupported extension {suffix!r} of {filename!r}; expected one of {', '.join(UPLOAD_SUFFIXES)}"
        raise OSMFormatError(msg)
    if len(data) > settings.max_osm_file_bytes:
        msg = (
            f"osm_file: {filename!r} is {len(data) / 1e6:.1f} MB; expected at most "
            f"{settings.max_osm_file_bytes / 1e6:.0f} MB (cut a smaller extract)"
        )
        raise OSMFormatError(msg)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(filename).stem).strip("._") or "upload"
    return atomic_write_bytes(subdir("uploads") / f"{stem[:60]}{suffix}", data)


def from_path(path: str | Path) -> Footprints:
    """Read footprints from ``.osm``/``.xml`` or ``.geojson``/``.json`` by extension."""
    suffix = Path(path).suffix.lower()
    if suffix in (".geojson", ".json"):
        return from_geojson(path)
    if suffix in (".osm", ".xml"):
        return from_osm_file(path)
    msg = f"osm_file: unsupported extension {suffix!r} of {Path(path).name!r}; expected .osm, .xml, .geojson or .json"
    raise OSMFormatError(msg)


# --------------------------------------------------------------------------- heights

_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")
_FEET_INCHES = re.compile(r"^(\d+(?:\.\d+)?)\s*'\s*(\d+(?:\.\d+)?)\s*\"$")


def parse_height_m(value: Any) -> float | None:
    """Parse an OSM ``height`` value (``"12"``, ``"12.5 m"``, ``"40'"``, ``"40'6\""``, ``"40 ft"``) to metres."""
    if value is None:
        return None
    text = str(value).strip().lower()
    match = _NUMBER.search(text)
    if not match:
        return None
    number = float(match.group().replace(",", "."))
    feet_inches = _FEET_INCHES.match(text)
    if feet_inches:  # the OSM wiki's feet-and-inches form
        number = float(feet_inches.group(1)) * 0.3048 + float(feet_inches.group(2)) * 0.0254
    elif "'" in text or "ft" in text or "feet" in text:
        number *= 0.3048
    return number if math.isfinite(number) and 0 < number < 1000 else None


def parse_levels(value: Any) -> float | None:
    """Parse ``building:levels`` to a positive number of storeys."""
    if value is None:
        return None
    match = _NUMBER.search(str(value))
    if not match:
        return None
    levels = float(match.group().replace(",", "."))
    return levels if 0 < levels < 300 else None


def pick_height(tags: dict[str, Any], *, default_height_m: float, storey_height_m: float) -> tuple[float, str]:
    """Height of a building from its tags, and the rule that gave it."""
    height = parse_height_m(tags.get("height"))
    if height is not None:
        return height, "height"
    levels = parse_levels(tags.get("building:levels"))
    if levels is not None:
        return levels * storey_height_m, "levels"
    return default_height_m, "default"


def pick_base_m(tags: dict[str, Any], *, storey_height_m: float) -> float:
    """Height of a building's (or part's) floor above the ground, in metres.

    ``min_height``, else ``building:min_level`` × ``storey_height_m``, else 0.
    """
    base = parse_height_m(tags.get("min_height"))
    if base is not None:
        return base
    levels = parse_levels(tags.get("building:min_level"))
    return levels * storey_height_m if levels is not None else 0.0


# --------------------------------------------------------------------------- projection


def to_scene_frame(
    raw: Footprints, frame: LocalFrame, *, default_height_m: float, storey_height_m: float
) -> tuple[list[Building], FootprintReport, Polygon, list[Any]]:
    """Project footprints to scene metres, clip to the box, pick heights.

    Returns
    -------
    buildings : list of Building
    report : FootprintReport
    box_m : Polygon
        The scene box in metres (the clip region).
    roads_m : list of LineString
        Roads clipped to the box, in metres.
    """

    corners_x, corners_y = frame.to_xy(
        np.array([raw.bbox.south, raw.bbox.south, raw.bbox.north, raw.bbox.north]),
        np.array([raw.bbox.west, raw.bbox.east, raw.bbox.east, raw.bbox.west]),
    )
    # Clip in degrees (the box the user chose), then project. The projected box is a
    # slightly rotated quadrilateral; the scene extent is the rectangle around it.
    box_deg = box(raw.bbox.west, raw.bbox.south, raw.bbox.east, raw.bbox.north)
    box_m = box(corners_x.min(), corners_y.min(), corners_x.max(), corners_y.max())

    report = FootprintReport(log=raw.log)
    buildings: list[Building] = []
    for index, (geom, tags) in enumerate(zip(raw.geometries, raw.tags)):
        height, rule = pick_height(tags, default_height_m=default_height_m, storey_height_m=storey_height_m)
        base = pick_base_m(tags, storey_height_m=storey_height_m)
        if base >= height:  # a part lifted to or above its own top has no volume
            report.log.skip("base_not_below_top", str(tags.get("osm_id", f"#{index}")))
            continue
        report.read += 1
        geom = shapely.make_valid(geom)
        clipped = geom.intersection(box_deg)
        if clipped.is_empty:
            report.dropped_outside += 1
            continue
        if clipped.area < geom.area * (1 - 1e-9):
            report.clipped += 1
        clipped = shapely.set_precision(shapely.make_valid(frame.geometry_to_xy(clipped)), 1e-3)
        parts = [p for p in polygons_of(clipped) if p.area >= settings.min_footprint_area_m2]
        if not parts:
            report.dropped_degenerate += 1
            continue
        footprint = parts[0] if len(parts) == 1 else MultiPolygon(parts)
        report.height_rules[rule] += 1
        buildings.append(Building(len(buildings), footprint, height, rule, tags, base_m=base))
    report.kept = len(buildings)
    roads_m = []
    for road in raw.roads:
        clipped = road.intersection(box_deg)
        if not clipped.is_empty and clipped.length > 0:
            roads_m.append(frame.geometry_to_xy(clipped))
    return buildings, report, box_m, roads_m

