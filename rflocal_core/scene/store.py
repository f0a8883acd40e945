"""Scenes in the workspace: list, open, delete, and data for 3D views."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from rflocal_core import audit
from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import SceneNotFoundError
from rflocal_core.geo import LocalFrame
from rflocal_core.scene.build import scenes_dir
from rflocal_core.scene.sites import band_label
from rflocal_core.workspace import TEMP_PREFIX, validate_name


def scene_dir(name: str) -> Path:
    """Return the folder of an existing scene, or raise :class:`SceneNotFoundError`."""
    validate_name(name, field="scene")
    path = scenes_dir() / name
    if not (path / "scene.json").is_file():
        known = ", ".join(s["name"] for s in list_scenes()) or "none"
        msg = f"scene: no scene named {name!r} in {scenes_dir()}; existing scenes: {known}"
        raise SceneNotFoundError(msg)
    return path


def load_scene_meta(name: str) -> dict[str, Any]:
    """Return the parsed ``scene.json`` of a scene."""
    return json.loads((scene_dir(name) / "scene.json").read_text(encoding="utf-8"))


def scene_frame(meta: dict[str, Any]) -> LocalFrame:
    """Return the local frame recorded in a scene's metadata."""
    return LocalFrame.from_dict(meta["frame"])


def list_scenes() -> list[dict[str, Any]]:
    """Summaries of all complete scenes, sorted by name.

    Folders still being written (``.tmp-*``) or without ``scene.json`` are skipped.
    """
    rows = []
    for path in sorted(scenes_dir().iterdir()):
        meta_path = path / "scene.json"
        if path.name.startswith(TEMP_PREFIX) or not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        rows.append(
            {
                "name": meta["name"],
                "source": meta["source"]["kind"],
                "mode": meta.get("mode"),
                "buildings": meta["buildings"]["count"],
                "sites": len(meta["sites"]),
                "extent_m": [round(meta["extent_m"]["width"], 1), round(meta["extent_m"]["height"], 1)],
                "created_utc": meta.get("created_utc"),
            }
        )
    return rows


def delete_scene(name: str, *, user: User = LOCAL_USER, actor: str | None = None) -> None:
    """Delete a scene folder (``user`` must be an editor); ``actor`` (who deleted it, default the user's
    name) goes to the audit log (:mod:`rflocal_core.audit`)."""
    require(user, "delete_scene")
    actor = user.name if actor is None else actor
    shutil.rmtree(scene_dir(name))
    audit.record(actor, "delete", f"scene:{name}")


_HEIGHT_COLOURS = [  # viridis, 8 stops
    (68, 1, 84), (70, 50, 127), (54, 92, 141), (39, 127, 142),
    (31, 161, 135), (74, 194, 109), (159, 218, 58), (253, 231, 37),
]
MATERIAL_COLOURS = {
    "concrete": (160, 160, 160), "brick": (178, 84, 56), "glass": (90, 160, 220),
    "metal": (90, 90, 110), "wood": (150, 110, 60),
}


def height_legend(h_min: float, h_max: float) -> list[dict[str, Any]]:
    """Legend rows (``label``, ``colour``) of the height colours, as :func:`view_data` colours buildings.

    One row when every building has the same height (all of them take the first colour);
    otherwise one row per colour bin, with as many decimals as the bin width needs and a
    bin whose ends print alike shown as one value (never "11-11 m").
    """
    if h_max - h_min <= 0:
        return [{"label": f"{h_min:g} m", "colour": list(_HEIGHT_COLOURS[0])}]
    step = (h_max - h_min) / len(_HEIGHT_COLOURS)
    decimals = max(0, math.ceil(-math.log10(step))) if step < 1 else 0
    rows = []
    for i, colour in enumerate(_HEIGHT_COLOURS):
        lo, hi = f"{h_min + i * step:.{decimals}f}", f"{h_min + (i + 1) * step:.{decimals}f}"
        rows.append({"label": f"{lo} m" if lo == hi else f"{lo}-{hi} m", "colour": list(colour)})
    return rows


#: Leading columns of :func:`site_table`, in order; the other keys of a site record follow.
SITE_TABLE_COLUMNS = ("id", "mast", "band", "freq_hz", "x_m", "y_m", "z_m", "mount", "pattern", "tx_power_dbm",
                      "azimuth_deg", "downtilt_deg")


def site_table(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The sites of a scene as table rows: :data:`SITE_TABLE_COLUMNS` first, then the record's other keys.

    ``band`` names each node's carrier (``"3.5G"``, ``"28G"``; a multi-band scene's co-sited cells are one row
    each, their ``mast`` the site's id) and ``mast`` is the id itself for a site of one band.
    """
    rows = []
    for site in meta.get("sites", []):
        freq = site.get("freq_hz")
        row = {**site, "mast": site.get("mast", site.get("id")),
               "band": band_label(float(freq)) if freq is not None else None}
        rows.append({**{k: row.get(k) for k in SITE_TABLE_COLUMNS}, **{k: v for k, v in row.items()
                                                                       if k not in SITE_TABLE_COLUMNS}})
    return rows


def view_data(name: str, *, colour_by: str = "height") -> dict[str, Any]:
    """Data for a 3D view of a scene (pydeck or any deck.gl client).

    Returns
    -------
    dict
        ``buildings``: rows with ``polygon`` (list of rings of [lon, lat]), ``height_m``,
        ``material``, ``colour`` ([r, g, b]); ``sites``: rows with ``lon``, ``lat``,
        ``z_m``, ``id``; ``site_table``: every site's record (:func:`site_table`: with its band);
        ``centre``: (lat, lon); ``legend``: colour legend rows.
    """
    if colour_by not in ("height", "material"):
        msg = f"colour_by: expected 'height' or 'material', got {colour_by!r}"
        raise ValueError(msg)
    path = scene_dir(name)
    meta = json.loads((path / "scene.json").read_text(encoding="utf-8"))
    features = json.loads((path / "buildings.geojson").read_text(encoding="utf-8"))["features"]
    materials = {row["id"]: row for row in meta["materials"]["table"]}
    h_min, h_max = meta["buildings"]["height_m"]["min"], meta["buildings"]["height_m"]["max"]
    rows = []
    for feature in features:
        props = feature["properties"]
        geom = feature["geometry"]
        polygons = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
        base = materials.get(props["material"], {})
        material = base.get("itu_type") or base.get("base_material") or props["material"]
        if colour_by == "height":
            t = 0.0 if h_max <= h_min else (props["height_m"] - h_min) / (h_max - h_min)
            colour = _HEIGHT_COLOURS[min(int(t * len(_HEIGHT_COLOURS)), len(_HEIGHT_COLOURS) - 1)]
        else:
            colour = MATERIAL_COLOURS.get(material, (200, 200, 200))
        for rings in polygons:
            rows.append({"polygon": rings, "height_m": props["height_m"], "material": material,
                         "building": props["id"], "colour": list(colour)})
    if colour_by == "height":
        legend = height_legend(h_min, h_max)
    else:
        legend = [{"label": m, "colour": list(c)} for m, c in MATERIAL_COLOURS.items()]
    sites = [{"id": s["id"], "lon": s["lon"], "lat": s["lat"], "z_m": s["z_m"], "mount": s["mount"]} for s in meta["sites"]]
    bbox = meta["bbox"]
    return {
        "buildings": rows,
        "sites": sites,
        "site_table": site_table(meta),
        "centre": ((bbox["south"] + bbox["north"]) / 2, (bbox["west"] + bbox["east"]) / 2),
        "legend": legend,
        "meta": meta,
    }
