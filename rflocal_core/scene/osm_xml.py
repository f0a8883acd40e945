"""OpenStreetMap XML read one feature at a time: buildings, building parts and roads.

Why not ``osmnx.features_from_xml`` for files: it builds every feature of the file in one
pass and raises on the first it cannot build (a highway relation whose member way is
missing ends in shapely's "Can't create MultiLineString with empty component"), so one
broken relation anywhere cost every building. Here the file is streamed once
(:func:`read_osm_xml`), then buildings (:func:`building_features`) and roads
(:func:`road_lines`) are built separately, each feature inside its own ``try``: a feature
that cannot be built costs only itself and is counted by reason, with its OSM id, in a
:class:`FeatureLog`. osmnx stays for the online download
(:func:`rflocal_core.scene.footprints.from_bbox`), where it builds the Overpass query and
Overpass answers with complete members (the query recurses to every member way and node).

Rules (the README's Scene Builder section says the same):

- Buildings are closed ways and ``type=multipolygon`` relations tagged ``building=*`` (not
  ``building=no``). ``type=building`` relations only group an outline and its parts, which
  are built from their own ways; other relation types tagged ``building`` are skipped.
- A multipolygon's member ways are joined end to end into rings (outer rings split over
  several ways are normal OSM); inner rings are cut out of the outer ring that holds them.
- Skipped, counted with ids: relations with missing member ways or no member ways, features
  with missing nodes, rings that stay open by more than :data:`RING_GAP_TOLERANCE_M`, ways of
  fewer than 3 distinct nodes, features of zero area. Repaired, counted with ids: rings open
  by at most :data:`RING_GAP_TOLERANCE_M` (closed), invalid (self-intersecting) rings
  (``shapely.make_valid``, keeping the polygonal parts), inner rings outside every outer
  ring (ignored).
- ``building:part`` (Simple 3D Buildings): a part belongs to the building outline holding
  most of its area; where parts exist they replace the outline they cover, and what the
  parts leave of the outline (at least :data:`OUTLINE_REMAINDER_FRACTION` of it) stays a
  building with the outline's tags. A part without ``height`` / ``building:levels`` takes the
  outline's; ``min_height`` / ``building:min_level`` (never inherited) lift its base. A part
  outside every outline is a building on its own.
- Roads are ways tagged ``highway`` (not closed areas); a road with missing nodes keeps its
  runs of present nodes.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.errors import GEOSException
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon

from rflocal_core.errors import OSMFormatError
from rflocal_core.geo import BBox

#: An open ring whose ends are at most this far apart (metres) is closed, not skipped.
RING_GAP_TOLERANCE_M = 1.0

#: What building parts leave of their outline is kept when at least this fraction of it.
OUTLINE_REMAINDER_FRACTION = 0.02

#: Ids listed per reason in reports (the counts are complete).
MAX_IDS = 5

#: Closed ``highway`` ways with these values are areas, not roads (as osmnx reads them).
HIGHWAY_AREAS = frozenset({"elevator", "escape", "rest_area", "services"})

#: What each reason means, for messages: skipped features, then repaired ones.
SKIP_LABELS = {
    "missing_member_ways": "relations with missing member ways",
    "empty_relation": "empty relations (no member ways)",
    "no_outer_ring": "relations without an outer ring",
    "not_multipolygon": "building relations that are not multipolygons",
    "missing_nodes": "features with missing nodes",
    "unclosed_ring": f"features with a ring open by more than {RING_GAP_TOLERANCE_M:g} m",
    "too_few_nodes": "ways with fewer than 3 distinct nodes",
    "zero_area": "features of zero area",
    "invalid_geometry": "features whose geometry could not be built",
    "base_not_below_top": "parts whose min_height is not below their height",
    "no_geometry": "features without a geometry",
    "not_lonlat": "features with coordinates outside lon/lat degrees",
    "road_no_nodes": "roads with fewer than 2 present nodes",
    "outer_way_of_relation": "building ways that are the outer ring of a building relation (built once, as the relation)",
}
REPAIR_LABELS = {
    "closed_gap": f"rings closed across a gap of at most {RING_GAP_TOLERANCE_M:g} m",
    "self_intersecting": "invalid (self-intersecting) rings fixed with make_valid",
    "inner_outside_outer": "relations with inner rings outside every outer ring (ignored)",
    "road_missing_nodes": "roads cut to their present nodes",
}


@dataclass
class FeatureLog:
    """What reading a footprint source saw, skipped and repaired.

    ``seen`` counts elements by kind; ``skipped`` and ``repaired`` map a reason (a key of
    :data:`SKIP_LABELS` / :data:`REPAIR_LABELS`) to the ids of the features concerned.
    """

    seen: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    repaired: dict[str, list[str]] = field(default_factory=dict)
    parts: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, feature_id: str) -> None:
        ids = self.skipped.setdefault(reason, [])
        if feature_id not in ids[-1:]:  # a feature is counted once per reason
            ids.append(feature_id)

    def repair(self, reason: str, feature_id: str) -> None:
        ids = self.repaired.setdefault(reason, [])
        if feature_id not in ids[-1:]:
            ids.append(feature_id)

    def count(self, kind: str, n: int = 1) -> None:
        self.seen[kind] = self.seen.get(kind, 0) + n

    def to_dict(self) -> dict[str, Any]:
        """JSON form: counts and the first :data:`MAX_IDS` ids per reason."""
        def by_reason(table: dict[str, list[str]]) -> dict[str, Any]:
            return {k: {"count": len(v), "ids": v[:MAX_IDS]} for k, v in sorted(table.items())}

        return {"seen": dict(self.seen), "skipped": by_reason(self.skipped),
                "repaired": by_reason(self.repaired), "parts": dict(self.parts)}


def describe(report: dict[str, Any], *, max_ids: int = 3) -> list[str]:
    """One line per reason, e.g. ``"skipped: 3 relations with missing member ways (relation/1, …)"``.

    ``report`` is :meth:`FeatureLog.to_dict` (or a scene's ``buildings.footprints``).
    """
    lines = []
    for verb, labels in (("skipped", SKIP_LABELS), ("repaired", REPAIR_LABELS)):
        for reason, entry in (report.get(verb) or {}).items():
            ids = ", ".join(entry["ids"][:max_ids]) + (", …" if entry["count"] > max_ids else "")
            lines.append(f"{verb}: {entry['count']} {labels.get(reason, reason)} ({ids})")
    parts = report.get("parts") or {}
    if parts.get("parts"):
        lines.append(f"building:part: {parts['parts']} parts replaced {parts['outlines_with_parts']} outlines "
                     f"({parts['outline_remainders']} outline remainders kept, {parts['standalone_parts']} parts "
                     "outside any outline kept on their own)")
    return lines


@dataclass
class Feature:
    """A footprint in WGS84 (lon, lat) with its tags; ``osm_id`` like ``"way/123"``."""

    osm_id: str
    geometry: Polygon | MultiPolygon
    tags: dict[str, str]
    is_part: bool = False


@dataclass
class OSMData:
    """The elements of an OSM XML file that geometry needs."""

    nodes: dict[int, tuple[float, float]] = field(default_factory=dict)  # id -> (lon, lat)
    ways: dict[int, tuple[list[int | None], dict[str, str]]] = field(default_factory=dict)
    relations: dict[int, tuple[list[tuple[str, int | None, str]], dict[str, str]]] = field(default_factory=dict)
    bounds: BBox | None = None
    log: FeatureLog = field(default_factory=FeatureLog)
    inline_ids: dict[tuple[float, float], int] = field(default_factory=dict)  # coordinates -> made-up node id

    def inline_node(self, ref: int | None, coord: tuple[float, float]) -> int:
        """Record a node given inline (Overpass ``out geom``); return its id, made up when it has none.

        Made-up ids are negative below any JOSM id and shared by equal coordinates, so
        member ways still join at their ends.
        """
        if ref is None:
            ref = self.inline_ids.setdefault(coord, -(2**62) - len(self.inline_ids))
        self.nodes.setdefault(ref, coord)
        return ref


# --------------------------------------------------------------------------- parsing


def read_osm_xml(path: Path) -> OSMData:
    """Stream an OSM XML file into nodes, ways and relations.

    Elements marked deleted (``action="delete"`` in JOSM files, ``visible="false"``) are
    left out; nodes without a valid id or lon/lat are counted as ``bad_nodes`` and left
    out, so ways using them have missing nodes. Coordinates given inline (Overpass
    ``out geom``: ``<nd ref lat lon>`` in ways, ``<nd lat lon>`` in relation members) are
    used as nodes.

    Raises
    ------
    OSMFormatError
        The file is not well-formed XML, its root is not ``<osm>``, or its ``<bounds>``
        is not numeric.
    """
    data = OSMData()
    for kind in ("nodes", "ways", "relations", "building_ways", "building_relations", "building_parts",
                 "building_nodes", "highway_ways", "bad_nodes", "deleted"):
        data.log.seen[kind] = 0
    try:
        context = ET.iterparse(path, events=("start", "end"))
        _, root = next(context)
        if root.tag != "osm":
            msg = f"osm_file: {path.name!r} is not OpenStreetMap XML (root element <{root.tag}>; expected <osm>)"
            raise OSMFormatError(msg)
        depth = 1
        for event, elem in context:
            depth += 1 if event == "start" else -1
            if event == "start" or depth != 1:
                continue  # only direct children of <osm> (Overpass puts <bounds> inside ways too)
            if elem.tag in ("node", "way", "relation"):
                _store(elem, data)
                root.clear()  # streaming: drop what is stored
            elif elem.tag == "bounds" and data.bounds is None:
                data.bounds = BBox(*(float(elem.get(k)) for k in ("minlat", "minlon", "maxlat", "maxlon")))
    except OSMFormatError:
        raise
    except (ET.ParseError, StopIteration, TypeError, ValueError) as exc:
        msg = f"osm_file: {path.name!r} is not valid OpenStreetMap XML ({exc or type(exc).__name__})"
        raise OSMFormatError(msg) from None
    return data


def _int(value: str | None) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _store(elem: ET.Element, data: OSMData) -> None:
    """Keep one ``<node>``, ``<way>`` or ``<relation>`` and count what it is."""
    log = data.log
    if elem.get("action") == "delete" or elem.get("visible") == "false":
        log.count("deleted")
        return
    tags = {t.get("k"): t.get("v") or "" for t in elem.iter("tag") if t.get("k")}
    element_id = _int(elem.get("id"))
    if elem.tag == "node":
        log.count("nodes")
        coord = _coord(elem)
        if element_id is None or coord is None:
            log.count("bad_nodes")
            return
        data.nodes[element_id] = coord
        if is_building(tags):
            log.count("building_nodes")
        return
    log.count(f"{elem.tag}s")
    if element_id is None:
        return
    if elem.tag == "way":
        data.ways[element_id] = (_node_refs(elem, data), tags)
        log.count("highway_ways", int("highway" in tags))
        log.count("building_ways", int(is_building(tags)))
    else:
        members = [(m.get("type") or "", _int(m.get("ref")), m.get("role") or "") for m in elem.iter("member")]
        for m, (kind, ref, _) in zip(elem.iter("member"), members):
            if kind == "way" and ref is not None and ref not in data.ways and m.find("nd") is not None:
                data.ways[ref] = (_node_refs(m, data), {})  # member geometry given inline
        data.relations[element_id] = (members, tags)
        log.count("building_relations", int(is_building(tags)))
    log.count("building_parts", int(is_part(tags)))


def _coord(elem: ET.Element) -> tuple[float, float] | None:
    """``(lon, lat)`` of an element's attributes, or None when absent or out of range."""
    try:
        lon, lat = float(elem.get("lon")), float(elem.get("lat"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return (lon, lat) if -180 <= lon <= 180 and -90 <= lat <= 90 else None  # NaN fails too


def _node_refs(elem: ET.Element, data: OSMData) -> list[int | None]:
    """Node ids of the ``<nd>`` children; inline coordinates become nodes."""
    refs: list[int | None] = []
    for nd in elem.iter("nd"):
        ref, coord = _int(nd.get("ref")), _coord(nd)
        refs.append(data.inline_node(ref, coord) if coord is not None else ref)
    return refs


def is_building(tags: dict[str, Any]) -> bool:
    """True for ``building=*`` other than ``building=no``."""
    return str(tags.get("building", "no")).strip().lower() != "no"


def is_part(tags: dict[str, Any]) -> bool:
    """True for ``building:part=*`` other than ``building:part=no``."""
    return str(tags.get("building:part", "no")).strip().lower() != "no"


# --------------------------------------------------------------------------- geometry helpers


def polygons_of(geom: Any) -> list[Polygon]:
    """The polygons (of positive area) inside any shapely geometry."""
    if isinstance(geom, Polygon):
        return [geom] if not geom.is_empty and geom.area > 0 else []
    out: list[Polygon] = []
    for part in getattr(geom, "geoms", ()):
        out.extend(polygons_of(part))
    return out


def clean_polygon(geom: Any, feature_id: str, log: FeatureLog) -> Polygon | MultiPolygon | None:
    """Return ``geom``'s polygonal part, repaired if invalid; None (logged) if nothing is left."""
    fixed = not geom.is_valid
    if fixed:
        geom = shapely.make_valid(geom)
    parts = polygons_of(geom)
    if not parts:
        log.skip("zero_area", feature_id)
        return None
    if fixed:
        log.repair("self_intersecting", feature_id)
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def gap_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance in metres between two (lon, lat) points (equirectangular; fine for metres)."""
    lat = math.radians((a[1] + b[1]) / 2)
    dx = math.radians(b[0] - a[0]) * math.cos(lat) * 6_371_008.8
    dy = math.radians(b[1] - a[1]) * 6_371_008.8
    return math.hypot(dx, dy)


def join_rings(chains: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """Join node-id chains end to end into closed rings.

    Returns
    -------
    rings : list of list of int
        Closed chains (first id == last id).
    open_chains : list of list of int
        What could not be closed by joining.
    """
    rings = [list(c) for c in chains if len(c) > 1 and c[0] == c[-1]]
    pending = [list(c) for c in chains if not (len(c) > 1 and c[0] == c[-1])]
    open_chains = []
    while pending:
        chain = pending.pop(0)
        while chain[0] != chain[-1] or len(chain) < 2:
            for i, other in enumerate(pending):
                if other[0] == chain[-1]:
                    chain = chain + other[1:]
                elif other[-1] == chain[-1]:
                    chain = chain + other[-2::-1]
                elif other[-1] == chain[0]:
                    chain = other[:-1] + chain
                elif other[0] == chain[0]:
                    chain = other[:0:-1] + chain
                else:
                    continue
                del pending[i]
                break
            else:
                break
        (rings if len(chain) > 1 and chain[0] == chain[-1] else open_chains).append(chain)
    return rings, open_chains


def ring_coords(chain: list[int], nodes: dict[int, tuple[float, float]], feature_id: str,
                log: FeatureLog) -> list[tuple[float, float]] | None:
    """Coordinates of a closed ring, closing a small gap; None (logged) if it cannot be a ring."""
    if len(chain) < 2:
        log.skip("too_few_nodes", feature_id)
        return None
    coords = [nodes[n] for n in chain]
    if chain[0] != chain[-1]:
        if len(coords) < 2 or gap_m(coords[0], coords[-1]) > RING_GAP_TOLERANCE_M:
            log.skip("unclosed_ring", feature_id)
            return None
        log.repair("closed_gap", feature_id)
        coords.append(coords[0])
    if len(set(coords)) < 3:
        log.skip("too_few_nodes", feature_id)
        return None
    return coords


# --------------------------------------------------------------------------- buildings


def way_polygon(way_id: int, data: OSMData, log: FeatureLog) -> Polygon | MultiPolygon | None:
    """The footprint of a building way, or None (logged) when it cannot be built."""
    feature_id = f"way/{way_id}"
    refs, _ = data.ways[way_id]
    if any(ref not in data.nodes for ref in refs):
        log.skip("missing_nodes", feature_id)
        return None
    coords = ring_coords(refs, data.nodes, feature_id, log)  # type: ignore[arg-type]
    if coords is None:
        return None
    return clean_polygon(Polygon(coords), feature_id, log)


def relation_polygon(relation_id: int, data: OSMData, log: FeatureLog) -> Polygon | MultiPolygon | None:
    """The footprint of a multipolygon relation (outer rings minus inner rings), or None (logged)."""
    feature_id = f"relation/{relation_id}"
    members = [(ref, role) for kind, ref, role in data.relations[relation_id][0] if kind == "way"]
    if not members:
        log.skip("empty_relation", feature_id)
        return None
    if any(ref not in data.ways for ref, _ in members):
        log.skip("missing_member_ways", feature_id)
        return None
    if any(ref not in data.nodes for way, _ in members for ref in data.ways[way][0]):
        log.skip("missing_nodes", feature_id)
        return None
    shells: dict[str, list[Polygon]] = {"outer": [], "inner": []}
    for role in shells:  # an empty role counts as outer, as most renderers read it
        chains = [data.ways[way][0] for way, r in members if (r or "outer") == role]
        rings, open_chains = join_rings(chains)  # type: ignore[arg-type]
        for chain in rings + open_chains:
            coords = ring_coords(chain, data.nodes, feature_id, log)
            if coords is None:
                return None  # an open ring: outer or hole unknown, so the whole relation goes
            ring = Polygon(coords)
            if not ring.is_valid:
                log.repair("self_intersecting", feature_id)
                ring = shapely.make_valid(ring)
            shells[role].extend(polygons_of(ring))
    if not shells["outer"]:
        log.skip("no_outer_ring", feature_id)
        return None
    return _cut_holes(shells["outer"], shells["inner"], feature_id, log)


def _cut_holes(outers: list[Polygon], inners: list[Polygon], feature_id: str, log: FeatureLog) -> Any:
    """Each outer ring minus the inner rings inside it (islands in holes survive)."""
    used = set()
    pieces = []
    for outer in outers:
        holes = [i for i, inner in enumerate(inners) if outer.contains(inner.representative_point())]
        used.update(holes)
        pieces.append(outer.difference(shapely.unary_union([inners[i] for i in holes])) if holes else outer)
    if len(used) < len(inners):
        log.repair("inner_outside_outer", feature_id)
    return clean_polygon(shapely.unary_union(pieces), feature_id, log)


def building_features(data: OSMData) -> list[Feature]:
    """Every building and building part of the file, each built on its own.

    A feature that cannot be built is logged in ``data.log`` and left out; the others are
    returned in the order osmnx gives them (relations, then ways, by id).
    """
    log = data.log
    candidates = [("relation", rid, tags) for rid, (_, tags) in data.relations.items()]
    candidates += [("way", wid, tags) for wid, (_, tags) in data.ways.items()]
    candidates = [c for c in candidates if is_building(c[2]) or is_part(c[2])]
    features = []
    built_outers: set[int] = set()  # relations sort before ways, so this is filled before ways are read
    for kind, element_id, tags in sorted(candidates, key=lambda c: (c[0], c[1])):
        feature_id = f"{kind}/{element_id}"
        if kind == "way" and element_id in built_outers and is_building(tags):
            log.skip("outer_way_of_relation", feature_id)  # old-style tagging: one building, not two
            continue
        if kind == "relation" and tags.get("type") != "multipolygon":
            if tags.get("type") != "building":  # type=building only groups ways built on their own
                log.skip("not_multipolygon", feature_id)
            continue
        build = relation_polygon if kind == "relation" else way_polygon
        try:
            geom = build(element_id, data, log)
        except (GEOSException, ValueError, TypeError, IndexError):  # one bad feature costs only itself
            log.skip("invalid_geometry", feature_id)
            continue
        if geom is not None:
            if kind == "relation" and is_building(tags):
                built_outers.update(ref for k, ref, role in data.relations[element_id][0]
                                    if k == "way" and (role or "outer") == "outer" and ref is not None)
            part = is_part(tags) and not is_building(tags)
            features.append(Feature(feature_id, geom, {**tags, "osm_id": feature_id}, is_part=part))
    return features


#: Tags that set a part's top, and the ones that lift its base (never inherited from the outline).
HEIGHT_KEYS = ("height", "building:levels")
BASE_KEYS = ("min_height", "building:min_level")


def apply_parts(features: list[Feature], log: FeatureLog) -> list[Feature]:
    """Let ``building:part`` features replace the outline they cover (Simple 3D Buildings).

    A part belongs to the outline holding most of its area. Such an outline is replaced
    by its parts plus what they leave of it (when at least
    :data:`OUTLINE_REMAINDER_FRACTION` of the outline). A part with no ``height`` or
    ``building:levels`` takes the outline's. Parts outside every outline stay as they are.
    Counts go to ``log.parts``.
    """
    outlines = [f for f in features if not f.is_part]
    parts = [f for f in features if f.is_part]
    if not parts:
        return features
    tree = shapely.STRtree([o.geometry for o in outlines])
    owned: dict[int, list[Feature]] = {}
    standalone = []
    for part in parts:
        overlaps = [(part.geometry.intersection(outlines[i].geometry).area, int(i))
                    for i in tree.query(part.geometry, predicate="intersects")]
        area, owner = max(overlaps, default=(0.0, -1))
        if area > 0.5 * part.geometry.area:
            owned.setdefault(owner, []).append(part)
        else:
            standalone.append(part)
    out, remainders = list(standalone), 0
    for i, outline in enumerate(outlines):
        mine = owned.get(i, [])
        if not mine:
            out.append(outline)
            continue
        rest = polygons_of(outline.geometry.difference(shapely.unary_union([p.geometry for p in mine])))
        if sum(p.area for p in rest) >= OUTLINE_REMAINDER_FRACTION * outline.geometry.area:
            out.append(Feature(outline.osm_id, rest[0] if len(rest) == 1 else MultiPolygon(rest), outline.tags))
            remainders += 1
        out.extend(Feature(p.osm_id, p.geometry, part_tags(p.tags, outline.tags), is_part=True) for p in mine)
    log.parts = {"parts": len(parts), "outlines_with_parts": len(owned), "outline_remainders": remainders,
                 "standalone_parts": len(standalone)}
    return sorted(out, key=lambda f: (f.osm_id.split("/")[0], int(f.osm_id.split("/")[1])))


def part_tags(part: dict[str, str], outline: dict[str, str]) -> dict[str, str]:
    """A part's tags over its outline's; the outline's height only when the part has none."""
    tags = {k: v for k, v in outline.items() if k not in HEIGHT_KEYS + BASE_KEYS}
    if not any(k in part for k in HEIGHT_KEYS):
        tags.update({k: outline[k] for k in HEIGHT_KEYS if k in outline})
    tags.update(part)
    tags["part_of"] = outline.get("osm_id", "")
    return tags


# --------------------------------------------------------------------------- roads


def road_lines(data: OSMData) -> list[LineString | MultiLineString]:
    """Ways tagged ``highway`` (not closed areas, not buildings) as lines in WGS84.

    A road with missing nodes keeps its runs of present nodes (logged as repaired); one
    with fewer than 2 present nodes is logged as skipped.
    """
    roads: list[LineString | MultiLineString] = []
    for way_id in sorted(w for w, (_, tags) in data.ways.items() if "highway" in tags and "building" not in tags):
        refs, tags = data.ways[way_id]
        closed = len(refs) > 2 and refs[0] == refs[-1]
        if closed and (tags.get("area") == "yes" or tags["highway"] in HIGHWAY_AREAS):
            continue
        runs: list[list[tuple[float, float]]] = [[]]
        for ref in refs:
            if ref in data.nodes:
                runs[-1].append(data.nodes[ref])  # type: ignore[index]
            elif runs[-1]:
                runs.append([])
        runs = [run for run in runs if len(set(run)) >= 2]
        if not runs:
            data.log.skip("road_no_nodes", f"way/{way_id}")
            continue
        if any(ref not in data.nodes for ref in refs):
            data.log.repair("road_missing_nodes", f"way/{way_id}")
        roads.append(LineString(runs[0]) if len(runs) == 1 else MultiLineString(runs))
    return roads
