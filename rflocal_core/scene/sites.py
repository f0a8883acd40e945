"""Sites: the radio nodes whose positions are known.

In ``ue`` mode they are base stations that transmit and the device to locate
receives; in ``emitter`` mode they are sensors that receive and the transmitter to
locate is unknown. Either way the radio map of a site is computed with the site as
the transmitter (reciprocity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Point, Polygon
from shapely.ops import nearest_points

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError
from rflocal_core.geo import LocalFrame
from rflocal_core.options import check_options, option, seed_option
from rflocal_core.scene.footprints import Building
from rflocal_core.validation import check_choice, check_number

MODES = ("ue", "emitter")
PLACEMENTS = ("rooftop", "grid", "random", "custom")
MOUNTS = ("rooftop", "ground")
PATTERNS = ("iso", "tr38901")


@dataclass(frozen=True)
class CustomSite:
    """A site given by the user: ``x_m``/``y_m`` or ``lat``/``lon``.

    ``height_m`` is above the ground (mount ``ground``) or above the roof (``rooftop``).
    """

    x_m: float | None = None
    y_m: float | None = None
    lat: float | None = None
    lon: float | None = None
    height_m: float = 10.0
    mount: str = "ground"
    id: str | None = None
    bands: tuple[float, ...] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, index: int) -> CustomSite:
        known = {"x_m", "y_m", "lat", "lon", "height_m", "mount", "id", "bands"}
        unknown = set(data) - known
        if unknown:
            msg = f"sites[{index}]: unknown field(s) {sorted(unknown)}; expected some of {sorted(known)}"
            raise InvalidInputError(msg)
        clean = {k: (None if _missing(v) else v) for k, v in data.items()}
        if clean.get("bands") is not None:
            clean["bands"] = parse_bands(clean["bands"], field=f"sites[{index}].bands")
        return cls(**clean)


def parse_bands(value: Any, *, field: str = "sites.bands") -> tuple[float, ...]:
    """Carriers in Hz from a list or a comma-separated text (``"3.5e9,28e9"``), each checked, none twice.

    Raises
    ------
    InvalidInputError
        Naming ``field``, the value and the range ([1e8, 1e11] Hz).
    """
    items = str(value).split(",") if isinstance(value, str) else list(value)
    try:
        bands = tuple(float(v) for v in items if not (isinstance(v, str) and not v.strip()))
    except (TypeError, ValueError):
        msg = f"{field}: expected comma-separated carriers in Hz (e.g. 3.5e9,28e9), got {value!r}"
        raise InvalidInputError(msg) from None
    for k, f in enumerate(bands):
        check_number(f"{field}[{k}]", f, 1e8, 1e11, "Hz")
    if len(set(bands)) != len(bands):
        msg = f"{field}: expected distinct carriers, got {list(bands)}"
        raise InvalidInputError(msg)
    return bands


def band_label(freq_hz: float) -> str:
    """A short name of a carrier for cell ids: ``3.5e9`` -> ``"3.5G"``, ``868e6`` -> ``"868M"``."""
    return f"{freq_hz / 1e9:g}G" if freq_hz >= 1e9 else f"{freq_hz / 1e6:g}M"


@dataclass(frozen=True)
class SiteConfig:
    """How sites are placed and what they radiate.

    Parameters
    ----------
    mode : str
        ``"ue"`` or ``"emitter"``.
    placement : str
        ``"rooftop"`` (spread over roofs), ``"grid"``, ``"random"`` or ``"custom"``.
    count : int
        Number of sites for the automatic placements (1-64).
    mount : str
        ``"rooftop"`` or ``"ground"`` for grid and random placements.
    height_m : float
        Antenna height above the ground (ground mount) or above the roof (rooftop).
    freq_hz : float
        Carrier frequency.
    tx_power_dbm : float
        Transmit power per site (``ue`` mode; in ``emitter`` mode the sites only receive).
    pattern : str
        Antenna pattern, ``"iso"`` or ``"tr38901"`` (3GPP TR 38.901 sector).
    azimuth_deg : float or None
        Sector boresight as a compass bearing (clockwise from north); None points each
        sector at the scene centre.
    downtilt_deg : float
        Electrical/mechanical downtilt below the horizon.
    custom : tuple of CustomSite
        Sites for ``placement="custom"``.
    seed : int
        Seed for random and rooftop placement.
    """

    mode: str = option("ue", choices=MODES, label="Mode",
                       help="ue: base stations transmit, the device is located; "
                            "emitter: sensors receive, an unknown transmitter is located")
    placement: str = option("rooftop", choices=PLACEMENTS, label="Placement", help="how sites are placed")
    count: int = option(6, lo=1, hi=64, label="Number of sites", flag="sites", help="number of sites")
    mount: str = option("rooftop", choices=MOUNTS, label="Mount", help="for grid and random placement")
    height_m: float = option(3.0, lo=0.5, hi=300.0, unit="m", label="Height (m)", flag="site-height-m",
                             help="antenna height above the ground, or above the roof (rooftop)")
    freq_hz: float = option(3.5e9, lo=1e8, hi=1e11, unit="Hz", label="Frequency (Hz)", help="carrier frequency")
    tx_power_dbm: float = option(43.0, lo=-30.0, hi=80.0, unit="dBm", label="Tx power (dBm)",
                                 help="transmit power per site (ue mode)")
    pattern: str = option("iso", choices=PATTERNS, label="Antenna", help="antenna pattern (tr38901: a 3GPP sector)")
    azimuth_deg: float | None = option(None, lo=0.0, hi=360.0, unit="degrees", label="Azimuth (° from N)",
                                       none_means="towards the scene centre",
                                       help="sector bearing, clockwise from north")
    downtilt_deg: float = option(6.0, lo=-90.0, hi=90.0, unit="degrees", label="Downtilt (°)",
                                 help="downtilt below the horizon")
    bands: tuple[float, ...] = option((), lo=1e8, hi=1e11, unit="Hz", label="Bands (Hz)", check=False,
                                      help="carriers of every site, one cell per site and band (e.g. 3.5e9,28e9; "
                                           "empty: one cell at freq_hz)")
    custom: tuple[CustomSite, ...] = field(default_factory=tuple)
    seed: int = seed_option(settings.scene_seed, flag="site-seed",
                            help="seed of random and rooftop placement (when not given: --seed)")

    def __post_init__(self) -> None:
        # the count of custom sites is the length of their list
        check_options(self, prefix="sites.", skip=("count",) if self.placement == "custom" else ())
        if self.placement == "custom" and not self.custom:
            msg = "sites.custom: placement 'custom' needs at least one site, got none"
            raise InvalidInputError(msg)
        object.__setattr__(self, "bands", parse_bands(self.bands))

    def site_bands(self, index: int) -> tuple[float, ...]:
        """The carriers of site ``index``: its own list (custom sites), else :attr:`bands`, else ``(freq_hz,)``."""
        own = self.custom[index].bands if self.placement == "custom" and index < len(self.custom) else None
        return tuple(own) if own else (self.bands or (self.freq_hz,))

    @property
    def carriers(self) -> tuple[float, ...]:
        """Every carrier some site of this configuration transmits on, ascending."""
        count = len(self.custom) if self.placement == "custom" else self.count
        return tuple(sorted({f for i in range(count) for f in self.site_bands(i)}))

    @property
    def multiband(self) -> bool:
        """Whether sites carry cells on their own band lists (``bands`` or a custom site's ``bands``)."""
        return bool(self.bands) or (self.placement == "custom" and any(c.bands for c in self.custom))


#: A site placed in the scene, before its record: x, y, z (m), mount, and the building it stands on.
_Placed = tuple[float, float, float, str, Building | None]


def place_sites(
    config: SiteConfig, buildings: list[Building], extent: tuple[float, float, float, float], frame: LocalFrame
) -> list[dict[str, Any]]:
    """Place sites in the scene and return their records for ``scene.json``.

    Each record has ``id``, ``x_m``, ``y_m``, ``z_m`` (antenna height above the
    scene's ground, z = 0), ``lat``, ``lon``, ``mount``, ``building`` (id or None),
    and the radio parameters.
    """
    rng = np.random.default_rng(config.seed)
    footprints = [b.footprint for b in buildings]
    tree = shapely.STRtree(footprints) if footprints else None

    if config.placement == "rooftop":
        placed = [_on_roof(b, config.height_m) for b in _spread_buildings(buildings, config.count, rng)]
    elif config.placement in ("grid", "random"):
        placed = _automatic_sites(config, buildings, tree, extent, rng)
    else:
        placed = [_custom_site(site, i, buildings, tree, extent, frame) for i, site in enumerate(config.custom)]

    records = [_site_record(config, i, site, extent, frame) for i, site in enumerate(placed)]
    if config.multiband:
        records = band_cells(records, [config.site_bands(i) for i in range(len(records))])
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        msg = f"sites: duplicate site ids {sorted({i for i in ids if ids.count(i) > 1})}; expected unique ids"
        raise InvalidInputError(msg)
    return records


def band_cells(records: list[dict[str, Any]], bands: list[tuple[float, ...]]) -> list[dict[str, Any]]:
    """One cell record per site and band: id ``"<site>/<band>"`` (``site-0/28G``), ``mast`` the site's id.

    Each cell is a node of its own, with the site's position and antenna and its own carrier
    (``freq_hz``): a network's co-sited cells on several bands.
    """
    return [{**r, "id": f"{r['id']}/{band_label(f)}", "mast": r["id"], "freq_hz": float(f)}
            for r, fs in zip(records, bands) for f in fs]


def site_carriers(sites: list[dict[str, Any]]) -> list[float]:
    """The distinct carriers (``freq_hz``) of site records, in the order they first appear."""
    return list(dict.fromkeys(float(s["freq_hz"]) for s in sites))


def _building_at(tree: shapely.STRtree | None, buildings: list[Building], x: float, y: float) -> Building | None:
    """The building whose footprint contains (or touches) the point, if any."""
    if tree is None:
        return None
    for idx in tree.query(Point(x, y), predicate="intersects"):
        return buildings[int(idx)]
    return None


def _on_roof(building: Building, height_m: float) -> _Placed:
    """A site ``height_m`` above the roof of ``building``."""
    p = _roof_point(building.footprint)
    return (p.x, p.y, building.height_m + height_m, "rooftop", building)


def _automatic_sites(
    config: SiteConfig, buildings: list[Building], tree: shapely.STRtree | None,
    extent: tuple[float, float, float, float], rng: np.random.Generator,
) -> list[_Placed]:
    """Grid or random points, each moved onto the nearest roof or out of any building (``config.mount``)."""
    x_min, y_min, x_max, y_max = extent
    if config.placement == "grid":
        points = _grid_points(config.count, extent)
    else:
        points = [
            (rng.uniform(x_min + 0.05 * (x_max - x_min), x_max - 0.05 * (x_max - x_min)),
             rng.uniform(y_min + 0.05 * (y_max - y_min), y_max - 0.05 * (y_max - y_min)))
            for _ in range(config.count)
        ]
    footprints = [b.footprint for b in buildings]
    placed: list[_Placed] = []
    for x, y in points:
        b = _building_at(tree, buildings, x, y)
        if config.mount == "rooftop":
            if b is None:
                b = _nearest_building(buildings, x, y)
                if b is None:
                    msg = "sites.mount: 'rooftop' needs buildings, but the scene has none; use mount 'ground'"
                    raise InvalidInputError(msg)
            placed.append(_on_roof(b, config.height_m))
        else:
            if b is not None:
                x, y = _outdoor_point_near(footprints, x, y)
            placed.append((x, y, config.height_m, "ground", None))
    return placed


def _custom_site(
    site: CustomSite, index: int, buildings: list[Building], tree: shapely.STRtree | None,
    extent: tuple[float, float, float, float], frame: LocalFrame,
) -> _Placed:
    """A user's site, checked: inside the extent, outdoors when on the ground, on a building when on a roof."""
    x_min, y_min, x_max, y_max = extent
    x, y = _custom_xy(site, index, frame)
    if not (x_min <= x <= x_max and y_min <= y <= y_max):
        msg = (
            f"sites[{index}]: position ({x:.1f}, {y:.1f}) m is outside the scene extent "
            f"x in [{x_min:.1f}, {x_max:.1f}], y in [{y_min:.1f}, {y_max:.1f}]"
        )
        raise InvalidInputError(msg)
    check_number(f"sites[{index}].height_m", site.height_m, 0.5, 300.0, "m")
    mount = check_choice(f"sites[{index}].mount", site.mount, MOUNTS)
    b = _building_at(tree, buildings, x, y)
    if mount == "ground" and b is not None:
        msg = (
            f"sites[{index}]: position ({x:.1f}, {y:.1f}) m is inside building {b.id}; "
            "expected an outdoor position, or set mount to 'rooftop'"
        )
        raise InvalidInputError(msg)
    if mount == "rooftop" and b is None:
        msg = f"sites[{index}]: mount 'rooftop' at ({x:.1f}, {y:.1f}) m, but no building is there"
        raise InvalidInputError(msg)
    z = site.height_m + (b.height_m if mount == "rooftop" else 0.0)
    return (x, y, z, mount, b)


def _site_record(
    config: SiteConfig, index: int, site: _Placed, extent: tuple[float, float, float, float], frame: LocalFrame,
) -> dict[str, Any]:
    """The ``scene.json`` record of a placed site; sectors point at the scene centre unless told otherwise."""
    x, y, z, mount, b = site
    x_min, y_min, x_max, y_max = extent
    centre = ((x_min + x_max) / 2, (y_min + y_max) / 2)
    lat, lon = frame.to_latlon(x, y)
    custom_id = config.custom[index].id if config.placement == "custom" and config.custom[index].id else None
    site_id = custom_id or f"site-{index}"
    if config.azimuth_deg is not None:
        azimuth = config.azimuth_deg
    else:
        azimuth = float(np.mod(np.degrees(np.arctan2(centre[0] - x, centre[1] - y)), 360.0))
    return {
        "id": str(site_id),
        "x_m": round(float(x), 3),
        "y_m": round(float(y), 3),
        "z_m": round(float(z), 3),
        "lat": float(lat),
        "lon": float(lon),
        "mount": mount,
        "building": None if b is None else int(b.id),
        "role": "transmitter" if config.mode == "ue" else "receiver",
        "freq_hz": config.freq_hz,
        "tx_power_dbm": config.tx_power_dbm if config.mode == "ue" else None,
        "pattern": config.pattern,
        "azimuth_deg": round(azimuth, 2),
        "downtilt_deg": config.downtilt_deg,
    }


def _missing(value: Any) -> bool:
    """True for None, NaN and pandas' NA (empty cells of an edited table)."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, float) and math.isnan(value)


def _custom_xy(site: CustomSite, index: int, frame: LocalFrame) -> tuple[float, float]:
    if site.x_m is not None and site.y_m is not None:
        return (check_number(f"sites[{index}].x_m", site.x_m, -1e5, 1e5, "m"),
                check_number(f"sites[{index}].y_m", site.y_m, -1e5, 1e5, "m"))
    if site.lat is not None and site.lon is not None:
        lat = check_number(f"sites[{index}].lat", site.lat, -90.0, 90.0, "degrees")
        lon = check_number(f"sites[{index}].lon", site.lon, -180.0, 180.0, "degrees")
        x, y = frame.to_xy(lat, lon)
        return float(x), float(y)
    msg = f"sites[{index}]: expected x_m and y_m, or lat and lon, got {site!r}"
    raise InvalidInputError(msg)


def _grid_points(count: int, extent: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    x_min, y_min, x_max, y_max = extent
    cols = int(math.ceil(math.sqrt(count)))
    rows = int(math.ceil(count / cols))
    points = []
    for r in range(rows):
        for c in range(cols):
            if len(points) == count:
                break
            points.append((x_min + (c + 0.5) / cols * (x_max - x_min), y_min + (r + 0.5) / rows * (y_max - y_min)))
    return points


def _spread_buildings(buildings: list[Building], count: int, rng: np.random.Generator) -> list[Building]:
    """Pick ``count`` buildings spread over the scene (farthest-point sampling)."""
    # Prefer roofs big enough for a mast; fall back to any roof in small scenes.
    candidates = [b for b in buildings if b.footprint.area >= 50.0]
    if len(candidates) < count:
        candidates = list(buildings)
    if len(candidates) < count:
        msg = f"sites.count: {count} rooftop sites need as many buildings, but the scene has {len(candidates)}"
        raise InvalidInputError(msg)
    centres = np.array([[b.footprint.centroid.x, b.footprint.centroid.y] for b in candidates])
    # Start from the building nearest a random point so the seed matters but the
    # spread stays good.
    start = rng.uniform(centres.min(0), centres.max(0))
    chosen = [int(np.argmin(((centres - start) ** 2).sum(1)))]
    dist = ((centres - centres[chosen[0]]) ** 2).sum(1)
    while len(chosen) < count:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((centres - centres[nxt]) ** 2).sum(1))
    return [candidates[i] for i in chosen]


def _roof_point(footprint: Any) -> Point:
    """A point on the roof, away from its edges and outside courtyards."""
    largest = max(footprint.geoms, key=lambda g: g.area) if hasattr(footprint, "geoms") else footprint
    centroid = largest.centroid
    return centroid if largest.contains(centroid) else largest.representative_point()


def _nearest_building(buildings: list[Building], x: float, y: float) -> Building | None:
    if not buildings:
        return None
    p = Point(x, y)
    return min(buildings, key=lambda b: b.footprint.distance(p))


def _outdoor_point_near(footprints: list[Polygon], x: float, y: float) -> tuple[float, float]:
    """Move a point that fell inside a building 1 m beyond its nearest wall."""
    union = shapely.unary_union(footprints)
    p = Point(x, y)
    nearest = nearest_points(union.boundary, p)[0]
    direction = np.array([nearest.x - x, nearest.y - y])
    norm = float(np.linalg.norm(direction)) or 1.0
    q = np.array([nearest.x, nearest.y]) + direction / norm * 1.0
    return float(q[0]), float(q[1])


def sionna_orientation_rad(azimuth_deg: float, downtilt_deg: float) -> tuple[float, float, float]:
    """Sionna's (yaw, pitch, roll) for a compass azimuth and a downtilt.

    Sionna measures yaw counter-clockwise from +x (east); a compass bearing is
    clockwise from north, so yaw = 90° - azimuth. A positive pitch tilts the
    boresight below the horizon.
    """
    return (math.radians(90.0 - azimuth_deg), math.radians(downtilt_deg), 0.0)
