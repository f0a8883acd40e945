"""Geographic frames: WGS84 lat/lon to local scene metres and back.

A scene uses a local metric frame: the UTM zone of its centre, shifted so that the
centre is the origin. ``x`` points east (UTM easting) and ``y`` north, so a compass
bearing is measured clockwise from +y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer

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


_TRANSFORMERS: dict[tuple[int, int], Transformer] = {}


def _transformer(src: int, dst: int) -> Transformer:
    key = (src, dst)
    if key not in _TRANSFORMERS:
        _TRANSFORMERS[key] = Transformer.from_crs(CRS.from_epsg(src), CRS.from_epsg(dst), always_xy=True)
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
