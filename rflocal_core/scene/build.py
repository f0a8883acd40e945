"""Build a scene folder from footprints: meshes, Mitsuba XML and ``scene.json``."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import box, mapping

from rflocal_core import __version__, settings
from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import InvalidInputError, MeshError, OSMFormatError, SceneExistsError
from rflocal_core.geo import BBox, LocalFrame
from rflocal_core.options import check_options, option, seed_option
from rflocal_core.progress import ProgressFn
from rflocal_core.results import JsonResult
from rflocal_core.scene import footprints as fp
from rflocal_core.scene import procedural
from rflocal_core.scene.materials import MaterialConfig, assign_materials
from rflocal_core.scene.mesh import extrude, ground_plane, write_ply
from rflocal_core.scene.mitsuba_xml import scene_xml
from rflocal_core.scene.sites import SiteConfig, place_sites
from rflocal_core.workspace import content_hash, jsonable, staged_dir, subdir, validate_name

SOURCES = ("procedural", "osm_file", "geojson_file", "file", "bbox")

#: Centre of procedural cities unless told otherwise (Marienplatz, Munich).
DEFAULT_ORIGIN = (48.1372, 11.5755)


@dataclass(frozen=True)
class SceneConfig:
    """Everything that defines a scene.

    Parameters
    ----------
    name : str
        Folder name under ``workspace/scenes``.
    source : str
        ``"procedural"``, ``"osm_file"``, ``"geojson_file"``, ``"file"`` (either, by
        extension) or ``"bbox"`` (online).
    procedural : ProceduralConfig
        Used when ``source == "procedural"``.
    origin_lat, origin_lon : float
        Geographic centre of a procedural city.
    path : str or None
        The OSM or GeoJSON file for the file sources.
    bbox : BBox or None
        The box to download for ``source == "bbox"``.
    default_height_m, storey_height_m : float
        Height rules for buildings without a ``height`` tag.
    materials : MaterialConfig
    sites : SiteConfig
    seed : int
        Seed of material assignment and randomization.
    """

    name: str
    source: str = "procedural"
    procedural: procedural.ProceduralConfig = field(default_factory=procedural.ProceduralConfig)
    origin_lat: float = option(DEFAULT_ORIGIN[0], lo=-80.0, hi=84.0, flag=None, help="latitude of the centre")
    origin_lon: float = option(DEFAULT_ORIGIN[1], lo=-180.0, hi=180.0, flag=None, help="longitude of the centre")
    path: str | None = None
    bbox: BBox | None = None
    default_height_m: float = option(settings.default_building_height_m, lo=1.0, hi=500.0, unit="m",
                                     label="Default height (m)",
                                     help="for buildings without height or building:levels tags")
    storey_height_m: float = option(settings.storey_height_m, lo=1.0, hi=10.0, unit="m", label="Storey height (m)",
                                    help="height of a storey, for buildings with building:levels only")
    materials: MaterialConfig = field(default_factory=MaterialConfig)
    sites: SiteConfig = field(default_factory=SiteConfig)
    seed: int = seed_option(settings.scene_seed, help="seed of city, materials and site placement")

    def __post_init__(self) -> None:
        validate_name(self.name, field="name")
        if self.source not in SOURCES:
            msg = f"source: expected one of {', '.join(SOURCES)}, got {self.source!r}"
            raise InvalidInputError(msg)
        if self.source in ("osm_file", "geojson_file", "file") and not self.path:
            msg = f"path: source {self.source!r} needs a file path, got {self.path!r}"
            raise InvalidInputError(msg)
        if self.source == "bbox" and self.bbox is None:
            msg = "bbox: source 'bbox' needs a bounding box S,W,N,E, got none"
            raise InvalidInputError(msg)
        check_options(self)


@dataclass(frozen=True, kw_only=True)
class SceneBuildResult(JsonResult):
    """A scene built into ``workspace/scenes/<name>/`` (see :func:`build_scene`)."""

    name: str
    path: str
    buildings: int
    sites: int
    #: Width and height of the scene box (m).
    extent_m: tuple[float, float]
    #: Buildings per height rule (``height``, ``levels``, ``default``, ...).
    height_rules: dict[str, int]
    dropped_degenerate: int
    clipped: int
    #: Footprints skipped and repaired, by reason: ``count`` and the first ``ids`` (as in ``scene.json``).
    skipped: dict[str, Any]
    repaired: dict[str, Any]
    #: One line per reason something was skipped or repaired.
    notes: tuple[str, ...]
    seconds: float


def scenes_dir() -> Path:
    """Return ``<workspace>/scenes``."""
    return subdir("scenes")


def build_scene(config: SceneConfig, *, progress: ProgressFn | None = None,
                user: User = LOCAL_USER) -> SceneBuildResult:
    """Build a scene and write it to ``workspace/scenes/<name>/`` (``user`` must be an editor).

    The folder appears only when complete; a failure leaves nothing behind.

    Returns
    -------
    SceneBuildResult
        Summary: ``name``, ``path``, ``buildings``, ``sites``, ``extent_m``
        (``[width, height]``), ``height_rules``, ``dropped_degenerate``, ``clipped``,
        ``skipped`` and ``repaired`` (by reason: ``count`` and the first ``ids``, as in
        ``scene.json``'s ``buildings.footprints``), ``notes`` (one line per reason) and
        ``seconds``.
    """
    require(user, "build_scene")
    t0 = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    final = scenes_dir() / config.name
    if final.exists():
        msg = f"name: a scene named {config.name!r} already exists; choose another name or delete it first"
        raise SceneExistsError(msg)

    report("reading footprints", 0.0)
    buildings, frame, bbox, box_m, roads_m, fp_report, source = _footprints(config)
    extent = tuple(float(v) for v in box_m.bounds)  # x_min, y_min, x_max, y_max

    report("assigning materials", 0.25)
    table = _assign_building_materials(config, buildings)

    report("placing sites", 0.3)
    sites = place_sites(config.sites, buildings, extent, frame)

    with staged_dir(final) as tmp:
        meshes = tmp / "meshes"
        meshes.mkdir()
        kept, shapes = _write_building_meshes(meshes, buildings, report)
        fp_report.dropped_degenerate += len(buildings) - len(kept)
        fp_report.kept = len(kept)
        ground_row = _write_ground(meshes, extent, config.materials)
        shapes.append(("mesh-ground", "meshes/ground.ply", "ground-material"))
        used = {b.material for b in kept}
        table = [row for row in table if row["id"] in used]

        report("writing scene files", 0.9)
        (tmp / "scene.xml").write_text(scene_xml([*table, ground_row], shapes), encoding="utf-8")
        write_geojson(tmp / "buildings.geojson", [_building_feature(b, frame) for b in kept])
        write_geojson(tmp / "roads.geojson", [_line_feature(r, frame) for r in roads_m])

        width, height = extent[2] - extent[0], extent[3] - extent[1]
        meta = _scene_meta(config, source=source, bbox=bbox, frame=frame, extent=extent, kept=kept,
                           fp_report=fp_report, roads=len(roads_m), table=table, ground_row=ground_row, sites=sites)
        meta["content_sha256"] = content_hash(tmp)
        (tmp / "scene.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    report("done", 1.0)
    footprints = meta["buildings"]["footprints"]
    return SceneBuildResult(
        name=config.name,
        path=str(final),
        buildings=len(kept),
        sites=len(sites),
        extent_m=(round(width, 2), round(height, 2)),
        height_rules=meta["buildings"]["height_rules"],
        dropped_degenerate=fp_report.dropped_degenerate,
        clipped=fp_report.clipped,
        skipped=footprints["skipped"],
        repaired=footprints["repaired"],
        notes=tuple(fp_report.describe()),
        seconds=round(time.perf_counter() - t0, 3),
    )


def _footprints(config: SceneConfig) -> tuple[Any, ...]:
    if config.source == "procedural":
        frame = LocalFrame.at(config.origin_lat, config.origin_lon)
        buildings, roads = procedural.generate(config.procedural)
        half = config.procedural.size_m / 2.0
        lat, lon = frame.to_latlon(np.array([-half, half]), np.array([-half, half]))
        bbox = BBox(float(lat[0]), float(lon[0]), float(lat[1]), float(lon[1]))
        report = fp.FootprintReport(read=len(buildings), kept=len(buildings))
        report.height_rules = {"procedural": len(buildings)}
        source = {"kind": "procedural", **jsonable(asdict(config.procedural))}
        return buildings, frame, bbox, box(-half, -half, half, half), roads, report, source

    if config.source == "bbox":
        raw = fp.from_bbox(config.bbox)
    elif config.source == "osm_file":
        raw = fp.from_osm_file(config.path)
    elif config.source == "geojson_file":
        raw = fp.from_geojson(config.path)
    else:
        raw = fp.from_path(config.path)
    raw.bbox.check_size()
    frame = LocalFrame.at(*raw.bbox.centre)
    buildings, report, box_m, roads = fp.to_scene_frame(
        raw, frame, default_height_m=config.default_height_m, storey_height_m=config.storey_height_m
    )
    if not buildings:
        skipped = "; ".join(report.describe())
        msg = (
            f"{config.source}: no usable building inside the box ({report.read} read, "
            f"{report.dropped_outside} outside, {report.dropped_degenerate} degenerate"
            f"{'; ' + skipped if skipped else ''})"
        )
        raise OSMFormatError(msg)
    return buildings, frame, raw.bbox, box_m, roads, report, raw.source


def _assign_building_materials(config: SceneConfig, buildings: list[fp.Building]) -> list[dict[str, Any]]:
    """Set each building's material; return the material table. Refuses a frequency the ITU models lack."""
    rng = np.random.default_rng(config.seed)
    names, table = assign_materials([b.tags for b in buildings], config.materials, rng)
    for b, name in zip(buildings, names):
        b.material = name
    lo, hi = config.materials.valid_freq_range_ghz({row.get("itu_type") for row in table if row["kind"] == "itu"})
    field = "sites.bands" if config.sites.multiband else "sites.freq_hz"
    for freq in config.sites.carriers:  # materials must be defined at every band a cell transmits on
        if not lo <= freq / 1e9 <= hi:
            msg = (
                f"{field}: {freq:.4g} Hz is outside [{lo:g}, {hi:g}] GHz, where the ITU "
                "models of the chosen materials are defined; pick another frequency or materials"
            )
            raise InvalidInputError(msg)
    return table


def _write_building_meshes(
    meshes: Path, buildings: list[fp.Building], report: ProgressFn,
) -> tuple[list[fp.Building], list[tuple[str, str, str]]]:
    """Extrude each building into ``meshes/``; return those meshed and their (id, file, material) shapes."""
    shapes: list[tuple[str, str, str]] = []
    kept = []
    for i, b in enumerate(buildings):
        if i % 16 == 0:
            report("extruding buildings", 0.35 + 0.5 * i / max(len(buildings), 1))
        try:
            vertices, faces = extrude(b.footprint, b.height_m - b.base_m, base_z_m=b.base_m)
        except MeshError:
            continue  # counted as degenerate by the caller
        write_ply(meshes / f"building_{b.id:05d}.ply", vertices, faces)
        shapes.append((f"mesh-building-{b.id}", f"meshes/building_{b.id:05d}.ply", b.material))
        kept.append(b)
    if not kept:
        msg = "footprints: no building could be meshed; expected at least one valid polygon"
        raise InvalidInputError(msg)
    return kept, shapes


def _write_ground(meshes: Path, extent: tuple[float, ...], materials: MaterialConfig) -> dict[str, Any]:
    """Write the ground plane (the extent plus a margin) to ``meshes/ground.ply``; return its material row."""
    margin = settings.ground_margin_m
    gv, gf = ground_plane(extent[0] - margin, extent[1] - margin, extent[2] + margin, extent[3] + margin)
    write_ply(meshes / "ground.ply", gv, gf)
    return {"id": "ground-material", "kind": "itu", "itu_type": materials.ground,
            "thickness_m": settings.wall_thickness_m, "buildings": 0}


def _scene_meta(
    config: SceneConfig, *, source: dict[str, Any], bbox: BBox, frame: LocalFrame, extent: tuple[float, ...],
    kept: list[fp.Building], fp_report: fp.FootprintReport, roads: int, table: list[dict[str, Any]],
    ground_row: dict[str, Any], sites: list[dict[str, Any]],
) -> dict[str, Any]:
    """The content of ``scene.json`` (without its ``content_sha256``)."""
    heights = np.array([b.height_m for b in kept])
    width, height = extent[2] - extent[0], extent[3] - extent[1]
    return {
        "schema_version": settings.scene_schema_version,
        "name": config.name,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rflocal_version": __version__,
        "source": source,
        "bbox": dict(zip(("south", "west", "north", "east"), bbox.as_tuple())),
        "frame": frame.to_dict(),
        "extent_m": {"x_min": extent[0], "y_min": extent[1], "x_max": extent[2], "y_max": extent[3],
                     "width": width, "height": height},
        "buildings": {
            "count": len(kept),
            "footprint_area_m2": float(sum(b.footprint.area for b in kept)),
            "height_m": {"min": float(heights.min()), "max": float(heights.max()),
                         "mean": float(heights.mean()), "median": float(np.median(heights))},
            "height_rules": _rules(kept),
            "default_height_m": config.default_height_m,
            "storey_height_m": config.storey_height_m,
            "footprints": fp_report.to_dict(),
        },
        "roads": roads,
        "materials": {"config": jsonable(asdict(config.materials)), "table": table, "ground": ground_row},
        "mode": config.sites.mode,
        "site_config": jsonable(asdict(config.sites)),
        "sites": sites,
        "files": {"xml": "scene.xml", "buildings": "buildings.geojson", "roads": "roads.geojson", "meshes": "meshes/"},
        "seed": config.seed,
    }


def _rules(buildings: list[fp.Building]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for b in buildings:
        counts[b.height_rule] = counts.get(b.height_rule, 0) + 1
    return counts


def _building_feature(b: fp.Building, frame: LocalFrame) -> dict[str, Any]:
    props = {"id": b.id, "height_m": b.height_m, "height_rule": b.height_rule, "material": b.material,
             "area_m2": round(float(b.footprint.area), 3)}
    if b.base_m > 0:  # a building part lifted by min_height: extruded from base to roof
        props["min_height_m"] = b.base_m
    if "osm_id" in b.tags:
        props["osm_id"] = b.tags["osm_id"]
    return {"type": "Feature", "geometry": mapping(frame.geometry_to_lonlat(b.footprint)), "properties": props}


def _line_feature(line: Any, frame: LocalFrame) -> dict[str, Any]:
    return {"type": "Feature", "geometry": mapping(frame.geometry_to_lonlat(line)), "properties": {}}


def write_geojson(path: Path, features: list[dict[str, Any]]) -> None:
    """Write ``features`` as a GeoJSON FeatureCollection (inside a staged scene folder)."""
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")


