"""Import an existing Sionna / Mitsuba scene (XML + meshes) as a workspace scene.

The scene's own meshes and radio materials are what Sionna RT traces; what the rest of
RFLocal needs from a scene (``buildings.geojson``: footprints with heights and
materials, ``scene.json``: frame, extent, sites) is derived from the meshes by
:mod:`rflocal_core.scene.meshraster`. The result is a folder like a built scene's, so
data generation, the map models, inference and the pages work unchanged.

Geographic origin, in this order: ``origin_lat``/``origin_lon`` given by the caller; the
file's own (Geo2SigMap writes ``<default name="scenegen_center_lat" ...>`` and
``scenegen_center_lon``, ``scenegen_UTM_zone`` and the box); otherwise the scene is not
geo-referenced: it works in scene metres, and its frame is a *nominal* one at
:data:`NOMINAL_ORIGIN` (Point Nemo, the ocean point farthest from any land, never a real
place and never the (0, 0) GPS sentinel), flagged ``"georeferenced": false`` in
``scene.json``; latitudes and longitudes derived from it are placeholders, and custom sites
given by lat/lon are refused.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import mapping

from rflocal_core import __version__, settings
from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import InvalidInputError, SceneExistsError, SceneImportError
from rflocal_core.geo import BBox, LocalFrame
from rflocal_core.options import check_options, option, seed_option
from rflocal_core.results import JsonResult
from rflocal_core.scene.build import scenes_dir, write_geojson
from rflocal_core.scene.footprints import Building
from rflocal_core.scene.meshraster import (
    DerivedBuilding,
    Ground,
    MeshObject,
    RoofRaster,
    Triangles,
    derive_buildings,
    detect_ground,
    ground_height,
    rasterize_top,
)
from rflocal_core.scene.mitsuba_read import GEO2SIGMAP_KEYS, XmlScene, copy_meshes, read_scene_xml, write_xml
from rflocal_core.scene.sites import SiteConfig, place_sites
from rflocal_core.validation import check_number
from rflocal_core.workspace import content_hash, jsonable, staged_dir, subdir, validate_name

#: Origin of the nominal frame of a scene without a geographic origin: Point Nemo
#: (South Pacific), the oceanic pole of inaccessibility. Never a real scene's place.
NOMINAL_ORIGIN = (-48.8767, -123.3933)

#: A ground whose height spans more than this is a terrain (m).
TERRAIN_SPAN_M = 2.0

#: Most triangles an imported scene may have (Sionna's Munich scene has 38,936).
MAX_TRIANGLES = 5_000_000

#: Sionna ITU material -> the building material class of the rasters and map models.
ITU_CLASSES = {
    "concrete": "concrete", "marble": "concrete", "brick": "brick", "glass": "glass", "metal": "metal",
    "wood": "wood", "plywood": "wood", "chipboard": "wood", "floorboard": "wood", "ceiling_board": "wood",
    "plasterboard": "wood", "very_dry_ground": "concrete", "medium_dry_ground": "concrete",
    "wet_ground": "concrete",
}
#: Relative permittivity of each class (ITU-R P.2040 at 1-10 GHz): custom materials
#: take the class of nearest permittivity.
CLASS_PERMITTIVITY = {"concrete": 5.24, "brick": 3.91, "glass": 6.31, "wood": 1.99}

ProgressFn = Callable[[str, float], None]


@dataclass(frozen=True)
class SceneImportConfig:
    """Everything that defines an imported scene.

    Parameters
    ----------
    name : str
        Folder name under ``workspace/scenes``.
    path : str
        The Mitsuba scene XML (its meshes beside it, as the XML references them).
    origin_lat, origin_lon : float or None
        Geographic position of the scene's (0, 0); None: the file's, else not geo-referenced.
    raster_cell_m : float
        Cell of the top-down roof raster (0.25-10 m).
    min_building_height_m : float
        Cells whose roof stands at least this far above the ground are building (0.5-50 m).
    min_footprint_area_m2 : float
        Smaller footprints (lamp posts, cars, kiosks) are dropped and counted.
    sites : SiteConfig
        Site placement, as for built scenes.
    seed : int
        Recorded in ``scene.json`` (site placement has its own seed).
    """

    name: str
    path: str
    origin_lat: float | None = None
    origin_lon: float | None = None
    raster_cell_m: float = option(1.0, lo=0.25, hi=10.0, unit="m", label="Roof raster cell (m)",
                                  help="cell of the roof raster")
    min_building_height_m: float = option(2.0, lo=0.5, hi=50.0, unit="m", label="Min building height (m)",
                                          help="roofs lower than this are not buildings")
    min_footprint_area_m2: float = option(10.0, lo=0.0, hi=10_000.0, unit="m²", label="Min footprint area (m²)",
                                          help="smaller footprints are dropped")
    sites: SiteConfig = field(default_factory=SiteConfig)
    seed: int = seed_option(settings.scene_seed, help="seed of site placement")

    def __post_init__(self) -> None:
        validate_name(self.name, field="name")
        if not self.path or not str(self.path).strip():
            msg = f"path: expected the path of a Mitsuba scene XML, got {self.path!r}"
            raise InvalidInputError(msg)
        if (self.origin_lat is None) != (self.origin_lon is None):
            msg = (f"origin: expected both origin_lat and origin_lon or neither, "
                   f"got {self.origin_lat!r}, {self.origin_lon!r}")
            raise InvalidInputError(msg)
        if self.origin_lat is not None:
            check_number("origin_lat", self.origin_lat, -80.0, 84.0, "degrees")
            check_number("origin_lon", self.origin_lon, -180.0, 180.0, "degrees")
            if self.origin_lat == 0.0 and self.origin_lon == 0.0:
                msg = "origin: (0, 0) is the GPS no-fix sentinel, not a scene's position; give the real origin or none"
                raise InvalidInputError(msg)
        check_options(self)


def parse_origin(text: str | None) -> tuple[float, float] | None:
    """Parse ``"LAT,LON"`` (degrees); None for empty text."""
    if text is None or not str(text).strip():
        return None
    try:
        lat, lon = (float(v) for v in str(text).split(","))
    except ValueError:
        msg = f"origin: expected LAT,LON in degrees, got {text!r}"
        raise InvalidInputError(msg) from None
    return lat, lon


def bundled_scenes() -> dict[str, str]:
    """Scenes shipped inside the sionna-rt package: name -> path of the XML.

    Found on disk (``sionna/rt/scenes/<name>/<name>.xml``, the paths that
    ``sionna.rt.scene.<name>`` holds) without importing Sionna.
    """
    spec = importlib.util.find_spec("sionna")
    if spec is None or not spec.submodule_search_locations:
        return {}
    out = {}
    for location in spec.submodule_search_locations:
        for xml in sorted(Path(location, "rt", "scenes").glob("*/*.xml")):
            if xml.stem == xml.parent.name:
                out.setdefault(xml.stem, str(xml))
    return dict(sorted(out.items()))


@dataclass(frozen=True, kw_only=True)
class SceneImportResult(JsonResult):
    """A Mitsuba scene imported into ``workspace/scenes/<name>/`` (see :func:`import_scene`)."""

    name: str
    path: str
    buildings: int
    sites: int
    #: Width and height of the scene box (m).
    extent_m: tuple[float, float]
    #: Shapes of the scene file, and their triangles.
    objects: int
    triangles: int
    #: How the ground was found (``Ground.to_dict``).
    ground: dict[str, Any]
    georeferenced: bool
    #: Where the geographic origin came from.
    origin_source: str
    #: Roof areas found and dropped on the way to footprints (``counts.to_dict``).
    footprints: dict[str, Any]
    warnings: tuple[str, ...]
    seconds: float


def import_scene(config: SceneImportConfig, *, progress: ProgressFn | None = None,
                 user: User = LOCAL_USER) -> SceneImportResult:
    """Import a Mitsuba scene into ``workspace/scenes/<name>/`` (``user`` must be an editor).

    The folder appears only when complete; a failure leaves nothing behind.

    Returns
    -------
    SceneImportResult
        Summary: ``name``, ``path``, ``buildings``, ``sites``, ``extent_m``, ``objects``,
        ``triangles``, ``ground``, ``georeferenced``, ``origin_source``, ``warnings``
        and ``seconds``.

    Raises
    ------
    SceneImportError
        Not a Mitsuba scene, no geometry, a mesh file missing, Sionna cannot load it,
        an extent above ``settings.max_bbox_side_m`` or no building above the ground.
    """
    require(user, "import_scene")
    t0 = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    final = scenes_dir() / config.name
    if final.exists():
        msg = f"name: a scene named {config.name!r} already exists; choose another name or delete it first"
        raise SceneExistsError(msg)
    report("reading the scene file", 0.0)
    xml = read_scene_xml(config.path)
    frame, origin = scene_origin(config, xml)
    _check_custom_sites(config.sites, georeferenced=origin["georeferenced"])
    warnings: list[str] = []
    with staged_dir(final) as tmp:
        report("copying meshes", 0.05)
        copied = copy_meshes(xml, tmp)
        write_xml(xml, tmp)
        report("loading with Sionna RT", 0.15)
        objects, info, tris, ground, shift = _load_and_level(xml, tmp, config.sites.carriers if config.sites.multiband
                                                                    else config.sites.freq_hz, warnings)
        extent = _check_extent(ground.extent, xml.path.name)
        report("rasterizing roofs", 0.5)
        raster = rasterize_top(tris, ~ground.mask, extent, config.raster_cell_m)
        ground_z = ground_height(tris, ground, raster)
        derived, counts, _ = derive_buildings(
            raster, ground_z, tris, ground, [o.material for o in objects],
            min_building_height_m=config.min_building_height_m, min_footprint_area_m2=config.min_footprint_area_m2,
        )
        if not derived:
            msg = (f"scene_xml: no building found in {xml.path.name!r}: {counts.components} areas stand "
                   f"{config.min_building_height_m:g} m above the ground, {counts.dropped_small} of them smaller "
                   f"than {config.min_footprint_area_m2:g} m²; expected at least one building")
            raise SceneImportError(msg)
        report("placing sites", 0.75)
        table = material_table(info["materials"], objects, tris, ground)
        buildings = _buildings(derived, table)
        sites = place_sites(config.sites, buildings, extent, frame)
        _sites_on_surfaces(sites, raster, ground_z, config.sites)
        report("writing scene files", 0.85)
        write_geojson(tmp / "buildings.geojson", [_feature(b, frame) for b in buildings])
        write_geojson(tmp / "roads.geojson", [])
        meta = _scene_meta(config, xml, frame, origin, extent, buildings, counts, ground, raster, table, sites,
                           {**copied, **info, "shift_z_m": round(shift, 4), "triangles": len(tris.owner)}, warnings)
        meta["content_sha256"] = content_hash(tmp)
        (tmp / "scene.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    report("done", 1.0)
    return SceneImportResult(
        name=config.name, path=str(final), buildings=len(buildings), sites=len(sites),
        extent_m=(round(extent[2] - extent[0], 2), round(extent[3] - extent[1], 2)),
        objects=len(objects), triangles=int(len(tris.owner)), ground=ground.to_dict(),
        georeferenced=origin["georeferenced"], origin_source=origin["source"],
        footprints=counts.to_dict(), warnings=tuple(warnings), seconds=round(time.perf_counter() - t0, 3),
    )


def _load_and_level(xml: XmlScene, folder: Path, freq_hz: float | tuple[float, ...],
                    warnings: list[str]) -> tuple[list[MeshObject], dict[str, Any], Triangles, Ground, float]:
    """Load the copied scene, find its ground and move it to z = 0 (XML and triangles); return the shift."""
    objects, info = load_objects(folder / "scene.xml", freq_hz)
    tris = Triangles.of(objects)
    ground = detect_ground(objects, tris)
    flat = ground.z_span_m <= TERRAIN_SPAN_M
    # Flat ground to z = 0; a terrain's lowest point to z = 0 (the measurement plane is above it).
    level = ground.z_m if flat else float(tris.xyz[ground.mask, :, 2].min())
    shift = -level if ground.detected and abs(level) > 0.05 else 0.0
    if shift:  # the project's scenes stand on z = 0: move the whole scene, not only our copy of it
        write_xml(xml, folder, shift_z_m=shift)
        tris.xyz[..., 2] += shift
        ground.z_m += shift
    if not ground.detected:
        warnings.append("no ground plane detected: heights are measured from the lowest vertex")
    elif not flat:
        warnings.append(f"the ground is a terrain (its height spans {ground.z_span_m:.1f} m): building heights are "
                        "measured from the terrain under them, but radio maps and samples lie on a flat plane above "
                        "z = 0 (the lowest ground), which passes under the terrain where it is higher")
    return objects, info, tris, ground, shift


# --------------------------------------------------------------------------- origin


def scene_origin(config: SceneImportConfig, xml: XmlScene) -> tuple[LocalFrame, dict[str, Any]]:
    """The scene's frame and a record of where its origin comes from (see the module docstring)."""
    stated = _file_origin(xml)
    if config.origin_lat is not None:
        frame = LocalFrame.at(config.origin_lat, config.origin_lon)
        source = "given (--origin)"
        if stated is not None:
            source += f"; the file states {stated[1]['lat']:.6f}, {stated[1]['lon']:.6f} ({stated[1]['keys']})"
        return frame, {"source": source, "georeferenced": True}
    if stated is not None:
        frame, where = stated
        return frame, {"source": f"the file ({where['keys']})", "georeferenced": True}
    frame = replace(LocalFrame.at(*NOMINAL_ORIGIN), georeferenced=False)
    source = ("none: the file states no geographic origin and none was given; the scene works in scene metres and "
              f"its latitudes/longitudes are placeholders around a nominal origin at Point Nemo {NOMINAL_ORIGIN}")
    return frame, {"source": source, "georeferenced": False}


def _file_origin(xml: XmlScene) -> tuple[LocalFrame, dict[str, Any]] | None:
    """The frame a Geo2SigMap scene states: the centre of its box in its UTM zone, or None."""
    d = xml.defaults
    if "scenegen_center_lat" not in d or "scenegen_center_lon" not in d:
        return None
    try:
        lat, lon = float(d["scenegen_center_lat"]), float(d["scenegen_center_lon"])
    except ValueError:
        msg = (f"scene_xml: scenegen_center_lat/lon are {d['scenegen_center_lat']!r}, {d['scenegen_center_lon']!r}; "
               "expected numbers of degrees")
        raise SceneImportError(msg) from None
    if not (-80.0 <= lat <= 84.0 and -180.0 <= lon <= 180.0) or (lat == 0.0 and lon == 0.0):
        msg = f"scene_xml: scenegen_center_lat/lon = ({lat}, {lon}); expected a real position (UTM range, not 0, 0)"
        raise SceneImportError(msg)
    frame = LocalFrame.at(lat, lon)
    keys = "scenegen_center_lat/lon"
    epsg = re.fullmatch(r"EPSG:(32[67]\d\d)", d.get("scenegen_UTM_zone", "").strip())
    box_keys = ("scenegen_min_lat", "scenegen_min_lon", "scenegen_max_lat", "scenegen_max_lon")
    if epsg and all(k in d for k in box_keys):
        # Geo2SigMap centres its meshes on the middle of the box's UTM envelope; use exactly that.
        from pyproj import Transformer

        s, w, n, e = (float(d[k]) for k in box_keys)
        fwd = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg.group(1)}", always_xy=True)
        xs, ys = fwd.transform([w, e, e, w], [s, s, n, n])
        east, north = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
        frame = LocalFrame(int(epsg.group(1)), float(east), float(north), lat, lon)
        keys = ", ".join(k for k in GEO2SIGMAP_KEYS if k in d)
    return frame, {"lat": lat, "lon": lon, "keys": keys}


def _check_custom_sites(sites: SiteConfig, *, georeferenced: bool) -> None:
    if georeferenced or sites.placement != "custom":
        return
    for i, site in enumerate(sites.custom):
        if site.x_m is None and site.lat is not None:
            msg = (f"sites[{i}]: given by lat/lon ({site.lat}, {site.lon}), but the scene has no geographic origin; "
                   "give x_m/y_m in scene metres, or the scene's origin (--origin LAT,LON)")
            raise InvalidInputError(msg)


# --------------------------------------------------------------------------- Sionna


def load_objects(xml_path: Path, freq_hz: float | tuple[float, ...]) -> tuple[list[MeshObject], dict[str, Any]]:
    """Load the scene with Sionna RT (one object per shape) and return its triangles and materials.

    ``freq_hz``: the carrier, or every band of a multi-band scene (each one checked against the materials).
    """
    from rflocal_core.backend import ensure_backend

    ensure_backend()
    from sionna.rt import load_scene

    try:
        scene = load_scene(str(xml_path), merge_shapes=False)
    except Exception as exc:  # Mitsuba/Sionna raise RuntimeError, ValueError, TypeError... with long texts
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"scene_xml: Sionna RT cannot load the scene: {first[:400]}"
        raise SceneImportError(msg) from None
    for freq in (freq_hz,) if isinstance(freq_hz, (int, float)) else freq_hz:  # materials defined at every band
        try:
            scene.frequency = float(freq)
        except ValueError as exc:
            field = "sites.freq_hz" if isinstance(freq_hz, (int, float)) else "sites.bands"
            msg = f"{field}: {freq:.4g} Hz: {exc}; {_itu_ranges(scene)}"
            raise InvalidInputError(msg) from None
    objects, materials = [], {}
    for name, obj in scene.objects.items():
        mesh = obj.mi_mesh
        vertices = np.array(mesh.vertex_positions_buffer(), dtype=np.float64).reshape(-1, 3)
        faces = np.array(mesh.faces_buffer(), dtype=np.int64).reshape(-1, 3)
        material = obj.radio_material
        if not np.isfinite(vertices).all():
            msg = f"scene_xml: object {name!r} has non-finite vertex coordinates (NaN or Inf); expected finite metres"
            raise SceneImportError(msg)
        objects.append(MeshObject(str(name), str(material.name), vertices, faces))
        materials.setdefault(str(material.name), material)
    triangles = sum(len(o.faces) for o in objects)
    if triangles == 0:
        msg = f"scene_xml: {xml_path.name!r} loads without a single triangle; expected meshes with geometry"
        raise SceneImportError(msg)
    if triangles > MAX_TRIANGLES:
        msg = f"scene_xml: {triangles:,} triangles; expected at most {MAX_TRIANGLES:,} (simplify or cut the scene)"
        raise SceneImportError(msg)
    return objects, {"objects": len(objects), "materials": {k: _material_row(k, m) for k, m in materials.items()}}


def _material_row(name: str, material: Any) -> dict[str, Any]:
    itu = getattr(material, "itu_type", None)
    row = {"id": name, "kind": "itu" if itu else "custom", "itu_type": itu,
           "relative_permittivity": round(_scalar(material.relative_permittivity), 4),
           "conductivity_s_per_m": round(_scalar(material.conductivity), 6),
           "thickness_m": round(_scalar(material.thickness), 4)}
    row["class"] = material_class(row)
    return row


def _scalar(value: Any) -> float:
    return float(np.asarray(value).reshape(-1)[0])


def material_class(row: dict[str, Any]) -> str:
    """The material class (concrete, brick, glass, metal, wood) of a scene material row.

    ITU materials by :data:`ITU_CLASSES`; others: metal above 1e4 S/m, else the class of
    nearest relative permittivity.
    """
    if row.get("itu_type") in ITU_CLASSES:
        return ITU_CLASSES[row["itu_type"]]
    if row["conductivity_s_per_m"] >= 1e4:
        return "metal"
    return min(CLASS_PERMITTIVITY, key=lambda c: abs(CLASS_PERMITTIVITY[c] - row["relative_permittivity"]))


def _itu_ranges(scene: Any) -> str:
    from sionna.rt.radio_materials.itu import ITU_MATERIALS_PROPERTIES

    types = sorted({getattr(o.radio_material, "itu_type", None) for o in scene.objects.values()} - {None})
    parts = [f"{t}: " + ", ".join(f"{lo:g}-{hi:g}" for lo, hi in ITU_MATERIALS_PROPERTIES.get(t, {})) + " GHz"
             for t in types]
    return "expected a frequency where every ITU material of the scene is defined (" + "; ".join(parts) + ")"


def material_table(found: dict[str, dict[str, Any]], objects: list[MeshObject], tris: Triangles,
                   ground: Ground) -> dict[str, Any]:
    """``scene.json`` materials: the scene's radio materials with their use, and the ground's."""
    rows = []
    for name, row in sorted(found.items()):
        idx = [i for i, o in enumerate(objects) if o.material == name]
        sel = np.isin(tris.owner, idx)
        rows.append({**row, "objects": len(idx), "triangles": int(sel.sum()),
                     "area_m2": round(float(tris.area_m2[sel].sum()), 1),
                     "ground_triangles": int((sel & ground.mask).sum())})
    return {"scene": rows, "by_name": {r["id"]: r for r in rows}}


def _buildings(derived: list[DerivedBuilding], table: dict[str, Any]) -> list[Building]:
    out = []
    for i, d in enumerate(derived):
        row = table["by_name"][d.material]
        tags = {"sionna_material": d.material, "height_max_m": round(d.height_max_m, 2), "cells": d.cells}
        out.append(Building(i, d.footprint, round(d.height_m, 2), "mesh_median", tags, row["class"]))
    return out


def _sites_on_surfaces(sites: list[dict[str, Any]], raster: RoofRaster, ground_z: np.ndarray,
                       config: SiteConfig) -> None:
    """Put each antenna its height above the real surface under it, in scene z (what Sionna places).

    Rooftop: above the highest roof in the 3 x 3 cells around it (a footprint's median
    height may be lower; sloped roofs, edges). Ground: above the ground's cell (a terrain).
    """
    top = np.where(np.isfinite(raster.top_z_m), raster.top_z_m, -np.inf)
    masts = list(dict.fromkeys(s.get("mast", s["id"]) for s in sites))  # co-sited band cells share a mast
    for site in sites:
        i = masts.index(site.get("mast", site["id"]))
        above = config.custom[i].height_m if config.placement == "custom" else config.height_m
        iy, ix = raster.cell_of(site["x_m"], site["y_m"])
        if site["mount"] == "rooftop":
            surface = float(top[max(iy - 1, 0): iy + 2, max(ix - 1, 0): ix + 2].max())
        else:
            surface = float(ground_z[iy, ix])
        site["z_m"] = round(max(surface, float(ground_z[iy, ix])) + above, 3)


def _check_extent(extent: tuple[float, ...], file_name: str) -> tuple[float, float, float, float]:
    width, height = extent[2] - extent[0], extent[3] - extent[1]
    limit = settings.max_bbox_side_m
    if width > limit or height > limit:
        msg = (f"scene_xml: {file_name!r} spans {width:.0f} m x {height:.0f} m; expected at most "
               f"{limit:.0f} m x {limit:.0f} m (settings.max_bbox_side_m; cut the scene)")
        raise SceneImportError(msg)
    if width <= 0 or height <= 0:
        msg = f"scene_xml: {file_name!r} has a flat extent ({width:.1f} m x {height:.1f} m); expected an area"
        raise SceneImportError(msg)
    return tuple(float(v) for v in extent)


# --------------------------------------------------------------------------- writing


def _feature(b: Building, frame: LocalFrame) -> dict[str, Any]:
    props = {"id": b.id, "height_m": b.height_m, "height_rule": b.height_rule, "material": b.material,
             "area_m2": round(float(b.footprint.area), 3), **b.tags}
    return {"type": "Feature", "geometry": mapping(frame.geometry_to_lonlat(b.footprint)), "properties": props}



def _scene_meta(config: SceneImportConfig, xml: XmlScene, frame: LocalFrame, origin: dict[str, Any],
                extent: tuple[float, ...], buildings: list[Building], counts: Any, ground: Ground, raster: RoofRaster,
                table: dict[str, Any], sites: list[dict[str, Any]], info: dict[str, Any],
                warnings: list[str]) -> dict[str, Any]:
    heights = np.array([b.height_m for b in buildings])
    width, height = extent[2] - extent[0], extent[3] - extent[1]
    lat, lon = frame.to_latlon(np.array([extent[0], extent[2]]), np.array([extent[1], extent[3]]))
    bbox = BBox(float(lat[0]), float(lon[0]), float(lat[1]), float(lon[1]))
    classes: dict[str, dict[str, Any]] = {}
    for b in buildings:
        row = classes.setdefault(b.material, {"id": b.material, "kind": "class", "base_material": b.material,
                                              "buildings": 0, "scene_materials": []})
        row["buildings"] += 1
        if b.tags["sionna_material"] not in row["scene_materials"]:
            row["scene_materials"].append(b.tags["sionna_material"])
    ground_row = {"id": ground.material, "kind": "scene", "objects": ground.objects[:20]}
    tallest = max(b.tags["height_max_m"] for b in buildings)
    return {
        "schema_version": settings.scene_schema_version,
        "name": config.name,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rflocal_version": __version__,
        "source": {"kind": "sionna_xml", "file": xml.path.name, "path": str(xml.path.resolve()),
                   "sha256": xml.sha256, "bytes": xml.bytes, **{k: v for k, v in info.items() if k != "materials"}},
        "bbox": dict(zip(("south", "west", "north", "east"), bbox.as_tuple())),
        "frame": {**frame.to_dict(), "georeferenced": origin["georeferenced"], "origin_source": origin["source"]},
        "extent_m": {"x_min": extent[0], "y_min": extent[1], "x_max": extent[2], "y_max": extent[3],
                     "width": width, "height": height},
        "buildings": {
            "count": len(buildings),
            "footprint_area_m2": float(sum(b.footprint.area for b in buildings)),
            "height_m": {"min": float(heights.min()), "max": float(heights.max()),
                         "mean": float(heights.mean()), "median": float(np.median(heights))},
            "height_rules": {"mesh_median": len(buildings)},
            "default_height_m": None,
            "storey_height_m": None,
            "footprints": {"read": counts.components, "kept": counts.kept, "clipped": 0,
                           "dropped_degenerate": counts.dropped_degenerate, "dropped_outside": 0,
                           "dropped_small": counts.dropped_small, "height_rules": {"mesh_median": len(buildings)}},
        },
        "raster": {"cell_m": raster.cell_m, "nx": raster.shape[1], "ny": raster.shape[0],
                   "min_building_height_m": config.min_building_height_m,
                   "min_footprint_area_m2": config.min_footprint_area_m2, "tallest_m": round(tallest, 3)},
        "ground": ground.to_dict(),
        "roads": 0,
        "materials": {"config": {"source": "the scene file's radio materials"},
                      "table": sorted(classes.values(), key=lambda r: r["id"]),
                      "scene": table["scene"], "ground": ground_row},
        "mode": config.sites.mode,
        "site_config": jsonable(asdict(config.sites)),
        "sites": sites,
        "files": {"xml": "scene.xml", "buildings": "buildings.geojson", "roads": "roads.geojson", "meshes": "meshes/"},
        "seed": config.seed,
        "warnings": warnings,
    }




# --------------------------------------------------------------------------- uploads

#: Largest zip of a scene (XML + meshes) accepted from an upload, in bytes, unpacked.
MAX_ZIP_BYTES = 512 * 1024 * 1024


def save_scene_zip(filename: str, data: bytes) -> Path:
    """Unpack an uploaded zip (a scene XML and its meshes) under ``workspace/uploads`` and return the XML's path.

    Raises
    ------
    SceneImportError
        Not a zip, an entry escaping the folder, more than ``MAX_ZIP_BYTES`` unpacked, or
        not exactly one ``.xml`` file at its shallowest level.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        msg = f"scene_zip: {filename!r} is not a zip archive; expected a .zip of the scene XML and its meshes"
        raise SceneImportError(msg) from None
    names = [i.filename for i in archive.infolist() if not i.is_dir()]
    bad = next((n for n in names if n.startswith(("/", "\\")) or ".." in Path(n).parts or ":" in n), None)
    if bad is not None:
        msg = f"scene_zip: entry {bad!r} points outside the archive's folder; expected relative paths"
        raise SceneImportError(msg)
    total = sum(i.file_size for i in archive.infolist())
    if total > MAX_ZIP_BYTES:
        msg = f"scene_zip: {filename!r} unpacks to {total / 1e6:.0f} MB; expected at most {MAX_ZIP_BYTES / 1e6:.0f} MB"
        raise SceneImportError(msg)
    xmls = [n for n in names if n.lower().endswith(".xml") and not Path(n).name.startswith(".")]
    depth = min((len(Path(n).parts) for n in xmls), default=0)
    top = [n for n in xmls if len(Path(n).parts) == depth]
    if len(top) != 1:
        msg = f"scene_zip: {filename!r} holds {len(top)} scene XML files at its top level ({top[:5]}); expected one"
        raise SceneImportError(msg)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(filename).stem).strip("._") or "scene"
    folder = subdir("uploads") / f"scene-{stem[:50]}-{int(time.time() * 1000) % 10**8}"
    with staged_dir(folder) as tmp:  # a failed extraction leaves no half-unpacked scene behind
        archive.extractall(tmp)
    return folder / top[0]


__all__ = ["NOMINAL_ORIGIN", "SceneImportConfig", "bundled_scenes", "import_scene", "material_class",
           "parse_origin", "save_scene_zip", "scene_origin"]
