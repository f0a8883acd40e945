"""Read and check a Mitsuba scene XML before Sionna RT loads it; copy it into a scene folder.

Sionna RT reads scenes with Mitsuba, whose errors on a bad file are long C++ messages.
:func:`read_scene_xml` checks what a user can fix first (not XML, not a ``<scene>``, no
shape, a mesh file missing) and names the first offender; :func:`copy_meshes` and
:func:`write_xml` write a self-contained copy: the XML with every mesh path rewritten to
``meshes/<file>``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from rflocal_core.errors import SceneImportError

#: Largest scene XML accepted, in bytes (Sionna's Munich scene is 0.5 MB).
MAX_XML_BYTES = 64 * 1024 * 1024

#: Shape plugins that read their geometry from a file.
FILE_SHAPES = ("ply", "obj", "serialized", "stl")

#: ``<default>`` names that Geo2SigMap (``scenegen``) writes into its scenes.
GEO2SIGMAP_KEYS = ("scenegen_center_lat", "scenegen_center_lon", "scenegen_UTM_zone", "scenegen_min_lat",
                   "scenegen_max_lat", "scenegen_min_lon", "scenegen_max_lon")

_PARAM_RE = re.compile(r"\$(\w+)")


@dataclass
class XmlShape:
    """A ``<shape>`` element: its id, plugin type and mesh file (resolved, may be missing)."""

    id: str
    type: str
    filename: str | None  # as written in the XML, ``$param`` substituted
    path: Path | None  # resolved against the XML's folder


@dataclass
class XmlScene:
    """What :func:`read_scene_xml` found in a scene file."""

    path: Path
    tree: ET.ElementTree
    shapes: list[XmlShape]
    defaults: dict[str, str]
    sha256: str
    bytes: int
    materials: list[str] = field(default_factory=list)  # ids of top-level <bsdf> elements


def read_scene_xml(path: str | Path) -> XmlScene:
    """Parse a Mitsuba scene file and check it can be imported.

    Raises
    ------
    SceneImportError
        The file is missing, empty, too large, not XML, not a ``<scene>``, uses
        ``<include>``, has no ``<shape>``, has a mesh path that cannot be resolved, or
        references a mesh file that does not exist (the first one is named).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"scene_xml: file not found: {str(path)!r}"
        raise SceneImportError(msg)
    data = path.read_bytes()
    if not data.strip():
        msg = f"scene_xml: {path.name!r} is empty; expected a Mitsuba scene XML (<scene version=...>)"
        raise SceneImportError(msg)
    if len(data) > MAX_XML_BYTES:
        msg = f"scene_xml: {path.name!r} is {len(data) / 1e6:.1f} MB; expected at most {MAX_XML_BYTES / 1e6:.0f} MB"
        raise SceneImportError(msg)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        msg = f"scene_xml: {path.name!r} is not XML ({exc}); expected a Mitsuba scene XML (<scene version=...>)"
        raise SceneImportError(msg) from None
    if root.tag != "scene":
        msg = f"scene_xml: {path.name!r} is XML but its root element is <{root.tag}>; expected a Mitsuba <scene>"
        raise SceneImportError(msg)
    include = root.find(".//include")
    if include is not None:
        msg = (f"scene_xml: {path.name!r} includes another file ({include.get('filename')!r}); "
               "expected one self-contained scene file (merge the included file into it)")
        raise SceneImportError(msg)
    defaults = {el.get("name", ""): el.get("value", "") for el in root.findall("default")}
    shapes = [_shape(el, i, path.parent, defaults) for i, el in enumerate(root.iter("shape"))]
    if not shapes:
        msg = f"scene_xml: {path.name!r} is a Mitsuba scene without geometry (no <shape> element); expected meshes"
        raise SceneImportError(msg)
    missing = next((s for s in shapes if s.path is not None and not s.path.is_file()), None)
    if missing is not None:
        msg = (f"scene_xml: shape {missing.id!r} references the mesh file {missing.filename!r}, which does not exist "
               f"(looked for {str(missing.path)!r}); expected the meshes beside the scene file")
        raise SceneImportError(msg)
    materials = [el.get("id", "") for el in root.findall("bsdf")]
    return XmlScene(path, ET.ElementTree(root), shapes, defaults, hashlib.sha256(data).hexdigest(), len(data),
                    materials)


def _shape(el: ET.Element, index: int, folder: Path, defaults: dict[str, str]) -> XmlShape:
    shape_id = el.get("id") or f"shape #{index}"
    kind = el.get("type", "")
    name_el = next((c for c in el.findall("string") if c.get("name") == "filename"), None)
    if kind not in FILE_SHAPES or name_el is None:
        return XmlShape(shape_id, kind, None, None)
    raw = name_el.get("value", "")
    filename = _PARAM_RE.sub(lambda m: defaults.get(m.group(1), m.group(0)), raw)
    if "$" in filename or not filename.strip():
        msg = (f"scene_xml: shape {shape_id!r} has the mesh path {raw!r}, which cannot be resolved; "
               "expected a file name (or a $parameter with a <default> value)")
        raise SceneImportError(msg)
    resolved = Path(filename) if Path(filename).is_absolute() else folder / filename
    return XmlShape(shape_id, kind, filename, resolved)


def copy_meshes(scene: XmlScene, folder: Path) -> dict[str, int]:
    """Copy every mesh file of ``scene`` to ``folder/meshes`` and point the XML tree there.

    Each file becomes ``meshes/<its name>`` (``<stem>-<n><suffix>`` when two share a
    name), so the folder is self-contained. Write the XML with :func:`write_xml`.

    Returns
    -------
    dict
        ``meshes`` (files copied) and ``mesh_bytes``.
    """
    meshes = folder / "meshes"
    meshes.mkdir(exist_ok=True)
    taken: dict[Path, str] = {}
    used: set[str] = set()
    copied_bytes = 0
    for el, shape in zip(scene.tree.getroot().iter("shape"), scene.shapes):
        if shape.path is None:
            continue
        source = shape.path.resolve()
        if source not in taken:
            taken[source] = _unique_name(source, used)
            shutil.copyfile(source, meshes / taken[source])
            copied_bytes += source.stat().st_size
        name_el = next(c for c in el.findall("string") if c.get("name") == "filename")
        name_el.set("value", f"meshes/{taken[source]}")
        shape.filename, shape.path = f"meshes/{taken[source]}", meshes / taken[source]
    return {"meshes": len(taken), "mesh_bytes": copied_bytes}


def write_xml(scene: XmlScene, folder: Path, *, shift_z_m: float = 0.0) -> None:
    """Write ``folder/scene.xml`` from the (rewritten) tree of ``scene``.

    A non-zero ``shift_z_m`` adds ``<translate z=...>`` at the end of every shape's
    ``to_world`` (applied last, so in world coordinates); the tree itself is not changed.
    """
    root = scene.tree.getroot()
    if shift_z_m:
        root = ET.fromstring(ET.tostring(root))
        for el in root.iter("shape"):
            _append_translate(el, shift_z_m)
    ET.ElementTree(root).write(folder / "scene.xml", encoding="utf-8", xml_declaration=False)


def _unique_name(source: Path, used: set[str]) -> str:
    name = source.name
    n = 1
    while name.lower() in used:
        name = f"{source.stem}-{n}{source.suffix}"
        n += 1
    used.add(name.lower())
    return name


def _append_translate(el: ET.Element, dz_m: float) -> None:
    transform = next((c for c in el.findall("transform") if c.get("name") == "to_world"), None)
    if transform is None:
        transform = ET.SubElement(el, "transform", name="to_world")
    ET.SubElement(transform, "translate", x="0", y="0", z=f"{dz_m:.6g}")
