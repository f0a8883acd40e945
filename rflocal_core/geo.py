"""Geographic frames: WGS84 lat/lon to local scene metres and back.

A scene uses a local metric frame: the UTM zone of its centre, shifted so that the
centre is the origin. ``x`` points east (UTM easting) and ``y`` north, so a compass
bearing is measured clockwise from +y.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError


@dataclass(frozen=True)
class BBox:
    """A geographic bounding box in degrees (WGS84)."""

    south: float
    west: float
    north: float
    east: float

    def __post_init__(self) -> None:
        for field, value, lo, hi in (
            ("south", self.south, -90.0, 90.0),
            ("north", self.north, -90.0, 90.0),
            ("west", self.west, -180.0, 180.0),
            ("east", self.east, -180.0, 180.0),
        ):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
                msg = f"bbox.{field}: expected a number of degrees in [{lo}, {hi}], got {value!r}"
                raise InvalidInputError(msg)
        if self.north < self.south:
            msg = f"bbox: inverted box, north ({self.north}) is below south ({self.south}); expected south < north"
            raise InvalidInputError(msg)
        if self.east < self.west:
            msg = f"bbox: inverted box, east ({self.east}) is west of west ({self.west}); expected west < east"
            raise InvalidInputError(msg)
        if self.north == self.south or self.east == self.west:
            msg = f"bbox: zero-area box {self.as_tuple()}; expected south < north and west < east"
            raise InvalidInputError(msg)

    @classmethod
    def parse(cls, text: str) -> BBox:
        """Parse ``"S,W,N,E"`` (degrees)."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 4:
            msg = f"bbox: expected four comma-separated numbers S,W,N,E, got {text!r}"
            raise InvalidInputError(msg)
        try:
            values = [float(p) for p in parts]
        except ValueError:
            msg = f"bbox: expected four comma-separated numbers S,W,N,E, got {text!r}"
            raise InvalidInputError(msg) from None
        return cls(*values)

    @classmethod
    def from_geojson(cls, geometry: dict[str, Any]) -> BBox:
        """The box around a GeoJSON geometry (e.g. a rectangle drawn on a web map)."""
        try:
            coords = np.asarray(_flatten_coords(geometry["coordinates"]), dtype=float).reshape(-1, 2)
        except (KeyError, TypeError, ValueError):
            msg = f"bbox: expected a GeoJSON geometry with coordinates, got {geometry!r:.200}"
            raise InvalidInputError(msg) from None
        if coords.size == 0:
            msg = "bbox: the drawn shape has no coordinates"
            raise InvalidInputError(msg)
        return cls(float(coords[:, 1].min()), float(coords[:, 0].min()), float(coords[:, 1].max()), float(coords[:, 0].max()))

    def as_tuple(self) -> tuple[float, float, float, float]:
        """Return ``(south, west, north, east)``."""
        return (self.south, self.west, self.north, self.east)

    @property
    def centre(self) -> tuple[float, float]:
        """Return the centre as ``(lat, lon)``."""
        return ((self.south + self.north) / 2.0, (self.west + self.east) / 2.0)

    def size_m(self) -> tuple[float, float]:
        """Return the box's ``(width_m, height_m)`` measured in its centre's local frame."""
        frame = LocalFrame.at(*self.centre)
        x, y = frame.to_xy(
            np.array([self.south, self.south, self.north]), np.array([self.west, self.east, self.west])
        )
        return (float(abs(x[1] - x[0])), float(abs(y[2] - y[0])))

    def check_size(self, *, max_side_m: float | None = None) -> tuple[float, float]:
        """Raise if a side of the box exceeds ``max_side_m``; return its size in metres."""
        limit = settings.max_bbox_side_m if max_side_m is None else max_side_m
        width, height = self.size_m()
        if width > limit or height > limit:
            msg = (
                f"bbox: {width:.0f} m x {height:.0f} m is too large; expected at most "
                f"{limit:.0f} m x {limit:.0f} m (choose a smaller area)"
            )
            raise InvalidInputError(msg)
        return width, height


@dataclass(frozen=True)
class LocalFrame:
    """A local metric frame: a UTM zone shifted to an origin.

    Parameters
    ----------
    epsg : int
        EPSG code of the UTM zone (326xx north, 327xx south).
    origin_easting_m, origin_northing_m : float
        UTM coordinates of the frame's origin.
    origin_lat, origin_lon : float
        The origin in degrees (kept for display; the transform uses the UTM values).
    georeferenced : bool
        False for a scene known in metres only (an imported Sionna scene that states no
        origin): its latitudes/longitudes are placeholders, so positions given only as
        lat/lon cannot be placed in it (:meth:`check_latlon_input` says so).
    """

    epsg: int
    origin_easting_m: float
    origin_northing_m: float
    origin_lat: float
    origin_lon: float
    georeferenced: bool = True

    def check_latlon_input(self, where: str, *, scene: str | None = None) -> None:
        """Refuse a position given only as lat/lon when the frame is not geo-referenced.

        Raises
        ------
        InvalidInputError
            Naming ``where`` (e.g. a JSON path) and how to fix it.
        """
        if self.georeferenced:
            return
        what = f"scene {scene!r}" if scene else "the scene"
        msg = (f"{where}: a position given only as lat/lon cannot be placed in {what}, which is not geo-referenced "
               "(it was imported without a geographic origin; its lat/lon are placeholders); give x_m/y_m in scene "
               "metres, or re-import the scene with --origin LAT,LON")
        raise InvalidInputError(msg)

    @classmethod
    def at(cls, lat: float, lon: float) -> LocalFrame:
        """Return the frame whose origin is ``(lat, lon)``, in that point's UTM zone."""
        zone = int((lon + 180.0) // 6.0) % 60 + 1
        epsg = (32600 if lat >= 0 else 32700) + zone
        fwd = _transformer(4326, epsg)
        easting, northing = fwd.transform(lon, lat)
        return cls(epsg, float(easting), float(northing), float(lat), float(lon))

    @property
    def utm_zone(self) -> str:
        """Return the UTM zone as text, e.g. ``"32N"``."""
        return f"{self.epsg % 100}{'N' if self.epsg < 32700 else 'S'}"

    def to_xy(self, lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map degrees to scene metres. Arrays of any (equal) shape."""
        easting, northing = _transformer(4326, self.epsg).transform(np.asarray(lon, float), np.asarray(lat, float))
        return np.asarray(easting) - self.origin_easting_m, np.asarray(northing) - self.origin_northing_m

    def to_latlon(self, x_m: Any, y_m: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map scene metres to degrees ``(lat, lon)``. Arrays of any (equal) shape."""
        lon, lat = _transformer(self.epsg, 4326).transform(
            np.asarray(x_m, float) + self.origin_easting_m, np.asarray(y_m, float) + self.origin_northing_m
        )
        return np.asarray(lat), np.asarray(lon)

    def geometry_to_xy(self, geom: Any) -> Any:
        """A shapely geometry in WGS84 (lon, lat order, as GeoJSON) in scene metres."""
        return shapely.transform(geom, lambda c: np.column_stack(self.to_xy(c[:, 1], c[:, 0])))

    def geometry_to_lonlat(self, geom: Any) -> Any:
        """A shapely geometry in scene metres in WGS84 (lon, lat order, as GeoJSON)."""

        def fn(c: np.ndarray) -> np.ndarray:
            lat, lon = self.to_latlon(c[:, 0], c[:, 1])
            return np.column_stack([lon, lat])

        return shapely.transform(geom, fn)

    def to_dict(self) -> dict[str, Any]:
        """Serialize for ``scene.json``."""
        return {
            "crs": f"EPSG:{self.epsg}",
            "epsg": self.epsg,
            "utm_zone": self.utm_zone,
            "origin_easting_m": self.origin_easting_m,
            "origin_northing_m": self.origin_northing_m,
            "origin_lat": self.origin_lat,
            "origin_lon": self.origin_lon,
            **({} if self.georeferenced else {"georeferenced": False}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalFrame:
        """Rebuild a frame written by :meth:`to_dict`."""
        return cls(
            int(data["epsg"]),
            float(data["origin_easting_m"]),
            float(data["origin_northing_m"]),
            float(data["origin_lat"]),
            float(data["origin_lon"]),
            bool(data.get("georeferenced", True)),
        )


def _flatten_coords(coords: Any) -> list[float]:
    if isinstance(coords, (int, float)):
        return [float(coords)]
    out: list[float] = []
    for item in coords:
        out.extend(_flatten_coords(item))
    return out


_TRANSFORMERS: dict[tuple[int | str, int | str], Transformer] = {}


def _transformer(src: int | str, dst: int | str) -> Transformer:
    """A cached x/y-ordered transformer between two CRSs (EPSG codes, or anything pyproj reads)."""
    key = (src, dst)
    if key not in _TRANSFORMERS:
        _TRANSFORMERS[key] = Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)
    return _TRANSFORMERS[key]


def bearing_deg(dx_m: Any, dy_m: Any) -> np.ndarray:
    """Compass bearing of a direction, clockwise from north (+y), in [0, 360)."""
    return np.mod(np.degrees(np.arctan2(dx_m, dy_m)), 360.0)


#: Metres per degree of latitude (mean; equirectangular approximations only).
M_PER_DEG_LAT: float = 111_320.0


def equirectangular_m(lat: Any, lon: Any, lat0: Any, lon0: Any) -> tuple[np.ndarray, np.ndarray]:
    """East and north offsets in metres of ``(lat, lon)`` from ``(lat0, lon0)``, equirectangular.

    Exact enough for tolerances of metres to kilometres (quality thresholds, position
    conflicts); longitudes wrap at the antimeridian. Use :class:`LocalFrame` for geometry.
    """
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    dlon = (lon - np.asarray(lon0, dtype=float) + 180.0) % 360.0 - 180.0
    east = dlon * M_PER_DEG_LAT * np.cos(np.radians(lat0))
    return east, (lat - np.asarray(lat0, dtype=float)) * M_PER_DEG_LAT


def parse_crs(text: str | None) -> str | None:
    """The coordinate reference system of a table's position columns, checked; None for WGS84 degrees.

    ``text`` is anything pyproj reads as a two-dimensional CRS: ``"EPSG:32617"`` (UTM 17N,
    metres), ``"EPSG:3857"`` (web Mercator), a PROJ string such as ``"+proj=aeqd +lat_0=51.2
    +lon_0=4.4"`` (metres from a point). None, ``""``, ``"WGS84"`` and ``"EPSG:4326"`` mean
    WGS84 degrees (no conversion).

    Raises
    ------
    InvalidInputError
        ``crs`` is not a known coordinate reference system, or not a 2-D one.
    """
    if text is None or not str(text).strip():
        return None
    try:
        crs = CRS.from_user_input(str(text).strip())
    except CRSError:
        msg = (f"crs: {text!r} is not a known coordinate reference system; expected e.g. EPSG:32617 (UTM 17N), "
               "EPSG:3857 (web Mercator) or a PROJ string, or nothing for WGS84 degrees")
        raise InvalidInputError(msg) from None
    if len(crs.axis_info) != 2 or not (crs.is_projected or crs.is_geographic):
        msg = (f"crs: {text!r} ({crs.name}) is not a two-dimensional map projection or geographic system; expected "
               "e.g. EPSG:32617 (UTM 17N) or EPSG:3857 (web Mercator)")
        raise InvalidInputError(msg)
    return None if crs.equals(CRS.from_epsg(4326)) else crs.to_string()


#: How far (degrees) outside a CRS's published area of use a converted point may lie (UTM zones are 6 degrees
#: wide and data often spill over a zone's edge; a point farther out comes from swapped or wrong coordinates).
CRS_AREA_MARGIN_DEG: float = 5.0


@functools.lru_cache(maxsize=8)
def _area_of_use(crs: str) -> tuple[float, float, float, float] | None:
    area = CRS.from_user_input(crs).area_of_use
    return None if area is None else (area.west, area.south, area.east, area.north)


def _in_area(lat: np.ndarray, lon: np.ndarray, crs: str) -> np.ndarray:
    """Whether each point lies in ``crs``'s area of use, widened by :data:`CRS_AREA_MARGIN_DEG` (True without one)."""
    area = _area_of_use(crs)
    if area is None:
        return np.ones(lat.shape, dtype=bool)
    west, south, east, north = area
    m = CRS_AREA_MARGIN_DEG
    ok = (lat >= south - m) & (lat <= north + m)
    if west <= east and east - west < 360.0 - 2 * m:  # an area across the antimeridian: latitude only
        ok &= (lon >= west - m) & (lon <= east + m)
    return ok


def to_wgs84(x: Any, y: Any, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """``(lat, lon)`` in WGS84 degrees of points ``x`` (easting, or longitude) and ``y`` (northing, or latitude) in
    ``crs`` (a :func:`parse_crs` result). NaN stays NaN; a point the CRS cannot place on the Earth is NaN too.

    The inverse projection of a point far outside its domain can wrap to a wrong place on the Earth (UTM with a
    northing of 1e12 gives 32 N), so each point must come back within 1e-7 of itself through the forward one; and
    it must lie in the CRS's area of use (widened by :data:`CRS_AREA_MARGIN_DEG`): UTM 17N with easting and northing
    swapped gives points in South America.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    inverse, forward = _transformer(crs, 4326), _transformer(4326, crs)
    lon, lat = (np.asarray(v, dtype=float) for v in inverse.transform(x, y))
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0) & (np.abs(lon) <= 180.0)
        x2, y2 = (np.asarray(v, dtype=float) for v in forward.transform(np.where(ok, lon, 0.0), np.where(ok, lat, 0.0)))
        ok &= (np.abs(x2 - x) <= 1e-7 * (1.0 + np.abs(x))) & (np.abs(y2 - y) <= 1e-7 * (1.0 + np.abs(y)))
        ok &= _in_area(lat, lon, crs)
    return np.where(ok, lat, np.nan), np.where(ok, lon, np.nan)


# A coordinate as people write it: 36°00'14.7"N, 36 00 14.7 N, 36:00:14.7, 36°00.245'N, N36.0040, 78.9394W.
_DEGREES = re.compile(
    r"""^\s*(?P<pre>[NSEW])?\s*(?P<sign>[+-])?\s*
    (?P<deg>\d+(?:\.\d+)?)\s*(?:[°º˚d:]\s*|\s+)?
    (?:(?P<min>\d+(?:\.\d+)?)\s*(?:['′’m:]\s*|\s+)?)?
    (?:(?P<sec>\d+(?:\.\d+)?)\s*(?:["″”s]|'')?)?
    \s*(?P<post>[NSEW])?\s*$""", re.VERBOSE | re.IGNORECASE)


def parse_degrees(cell: str, *, axis: str) -> float:
    """Decimal degrees of a coordinate written with a hemisphere letter or in degrees, minutes and seconds.

    ``axis`` is ``"lat"`` (N/S) or ``"lon"`` (E/W). S and W are negative. NaN where the text is not such a
    coordinate: the wrong letter for the axis (36.1E as a latitude), minutes or seconds of 60 or more, a decimal
    degree followed by minutes. Plain numbers are not this function's job (they are read as they are).
    """
    match = _DEGREES.match(str(cell))
    if match is None:
        return math.nan
    pre, post = (match["pre"] or "").upper(), (match["post"] or "").upper()
    letters = {"lat": "NS", "lon": "EW"}[axis]
    if (pre and post) or any(h and h not in letters for h in (pre, post)):
        return math.nan
    parts = [match["deg"], match["min"], match["sec"]]
    if parts[2] is not None and parts[1] is None:
        return math.nan
    given = [p for p in parts if p is not None]
    if any("." in p for p in given[:-1]) or any(float(p) >= 60 for p in given[1:]):
        return math.nan
    value = sum(float(p) / 60**i for i, p in enumerate(given))
    negative = (match["sign"] == "-") or (pre or post) in ("S", "W")
    return -value if negative else value
