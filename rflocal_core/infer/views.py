"""What a map of predictions shows: uncertainty ellipses, posterior cells, a sample's reports, the scene.

:func:`scene_map` gives the scene in scene metres (buildings, nodes, an extent that clips nothing,
a scale bar's length) for the Live Inference map.

Helpers of the Live Inference page, over the results of :mod:`rflocal_core.infer.predict`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rflocal_core.errors import InferenceInputError, RFLocalInputError
from rflocal_core.infer.predict import PredictedSample, RunPrediction
from rflocal_core.infer.run import LoadedRun
from rflocal_core.measurements import MeasurementSet
from rflocal_core.train.runs import run_dir

#: Probability inside the k-sigma ellipse of a 2-D Gaussian: 1 - exp(-k^2 / 2).
ELLIPSE_LEVELS = {1: 1 - math.exp(-0.5), 2: 1 - math.exp(-2.0)}


def ellipse_latlon(row: PredictedSample, frame: Any, *, k: float = 1.0,
                   points: int = 48) -> list[list[float]] | None:
    """The k-sigma ellipse of a predicted sample as ``[[lat, lon], ...]`` (None without an uncertainty).

    The models give one sigma per axis (x east, y north), so the ellipse is axis-aligned.
    """
    sx, sy, x, y = row.sigma_x_m, row.sigma_y_m, row.x_m, row.y_m
    if sx is None or sy is None or x is None or y is None:
        return None
    t = np.linspace(0.0, 2 * np.pi, points)
    lat, lon = frame.to_latlon(x + k * sx * np.cos(t), y + k * sy * np.sin(t))
    return [[float(a), float(b)] for a, b in zip(np.atleast_1d(lat), np.atleast_1d(lon))]


def heat_points(heat: np.ndarray, grid: Any, frame: Any, *, max_points: int = 3000) -> list[list[float]]:
    """The strongest cells of a posterior heatmap as ``[[lat, lon, weight], ...]`` (weight: p / max p)."""
    flat = heat.ravel()
    top = np.argsort(flat)[::-1][:max_points]
    top = top[flat[top] > 1e-4 * flat[top[0]]] if len(top) and flat[top[0]] > 0 else top[:0]
    iy, ix = np.unravel_index(top, heat.shape)
    lat, lon = frame.to_latlon(grid.x_m[ix], grid.y_m[iy])
    w = flat[top] / flat[top[0]] if len(top) else flat[top]
    return [[float(a), float(b), float(c)] for a, b, c in zip(np.atleast_1d(lat), np.atleast_1d(lon), w)]


def report_timeline(ms: MeasurementSet, sample_id: str) -> list[dict[str, Any]]:
    """The reports of one sample as rows ``t_s``, ``node``, ``rss_dbm``, ``toa_ns``, ``aoa_deg`` (time order)."""
    sample = next((s for s in ms.samples if s.id == sample_id), None)
    if sample is None:
        msg = f"sample: no sample {sample_id!r} in the file"
        raise InferenceInputError(msg)
    rows = [{"t_s": r.t_s, "node": r.node or f"mobile-{j}", "rss_dbm": r.rss_dbm, "toa_ns": r.toa_ns,
             "aoa_deg": r.aoa_deg} for j, r in enumerate(sample.reports)]
    return sorted(rows, key=lambda r: (r["t_s"], r["node"]))


def predictions_table(results: list[RunPrediction]) -> list[dict[str, Any]]:
    """Flat rows (one per run and sample) of predictions (:class:`RunPrediction`), for CSV."""
    rows = []
    for res in results:
        for p in res.predictions:
            rows.append({"run_id": res.run_id, "model": res.model, "id": p.id, "x_m": p.x_m, "y_m": p.y_m,
                         "lat": p.lat, "lon": p.lon, "sigma_x_m": p.sigma_x_m, "sigma_y_m": p.sigma_y_m,
                         "truth_x_m": p.truth.x_m if p.truth else None, "truth_y_m": p.truth.y_m if p.truth else None,
                         "error_m": p.error_m, "flags": "; ".join(p.flags)})
            if res.track is not None:  # tracked: the sequence, the time and the filtered position next to the raw one
                rows[-1].update({"sequence": p.sequence, "t_s": p.t_s, "tracked_x_m": p.tracked_x_m,
                                 "tracked_y_m": p.tracked_y_m, "tracked_error_m": p.tracked_error_m})
    return rows


def scene_overlay(run: LoadedRun, scene: str) -> dict[str, Any]:
    """What a map shows around predictions: the run's nodes (lat/lon) and building footprints
    (GeoJSON, WGS84) from the workspace when it holds the very scene the run was trained on, else
    from the run's own ``buildings.geojson`` (the shipped demo runs carry one).

    Returns ``{"centre": (lat, lon), "nodes": [{"id", "lat", "lon"}], "buildings": dict | None}``.
    """
    ref = run.reference_for(scene)
    frame = ref.frame(scene)
    nodes = []
    for row in ref.nodes.get(scene, []):
        if row["x_m"] is not None:
            lat, lon = frame.to_latlon(row["x_m"], row["y_m"])
            nodes.append({"id": row["id"], "lat": float(lat), "lon": float(lon)})
    buildings = None
    try:
        from rflocal_core.scene.store import load_scene_meta, scene_dir

        meta = load_scene_meta(scene)
        same = all(abs(float(meta["frame"][k]) - float(ref.frames[scene][k])) < 1.0
                   for k in ("origin_easting_m", "origin_northing_m"))
        sites = {s["id"]: s for s in meta.get("sites", [])}
        for row in ref.nodes.get(scene, []):  # same frame is not enough: the same sites too
            site = sites.get(row["id"])
            if row["x_m"] is not None and (site is None or math.hypot(site["x_m"] - row["x_m"],
                                                                      site["y_m"] - row["y_m"]) > 1.0):
                same = False
        file = scene_dir(scene) / "buildings.geojson"
        if same and file.is_file():
            buildings = json.loads(file.read_text(encoding="utf-8"))
    except (RFLocalInputError, OSError, KeyError, ValueError):
        buildings = None
    shipped = run_dir(run.run_id) / "buildings.geojson"  # demo runs carry their scene's footprints
    if buildings is None and shipped.is_file():
        buildings = json.loads(shipped.read_text(encoding="utf-8"))
    area = ref.area_m
    clat, clon = frame.to_latlon((area[0] + area[1]) / 2, (area[2] + area[3]) / 2)
    return {"centre": (float(clat), float(clon)), "nodes": nodes, "buildings": buildings}


# --------------------------------------------------------------------------- a map in scene metres


@dataclass(frozen=True)
class SceneMap:
    """What a map of predictions draws around them, in scene metres (x east, y north) of the run's frame.

    ``buildings``: footprint rings, each ``(xs, ys)``; ``nodes``: ``{"id", "x_m", "y_m"}``;
    ``extent_m``: ``(x0, x1, y0, y1)`` holding every building, node, the training area and the
    points asked for, with a margin, so nothing is clipped; ``scale_bar_m``: a round length
    (1, 2 or 5 × 10^k m) about a fifth of the width, for a scale bar; ``focus_m``: the box around
    the points alone (at least :data:`FOCUS_MIN_M` a side), to zoom to a sample, and
    ``focus_scale_bar_m`` its scale bar's length.
    """

    buildings: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]
    nodes: tuple[dict[str, Any], ...]
    extent_m: tuple[float, float, float, float]
    scale_bar_m: float
    focus_m: tuple[float, float, float, float] | None = None
    focus_scale_bar_m: float | None = None


#: Smallest side of the box a map zooms to around a sample's predictions (m).
FOCUS_MIN_M = 120.0


def scale_bar_length(width_m: float) -> float:
    """A round length (1, 2 or 5 × 10^k m) of about a fifth of ``width_m``, at least 1 m."""
    target = max(width_m / 5.0, 1.0)
    power = 10.0 ** math.floor(math.log10(target))
    return max(step * power for step in (1.0, 2.0, 5.0) if step * power <= target)


def _rings_xy(geojson: dict[str, Any] | None, frame: Any) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """The exterior rings of a WGS84 GeoJSON's polygons, in scene metres."""
    rings = []
    for feature in (geojson or {}).get("features", []):
        geom = feature.get("geometry") or {}
        polygons = geom.get("coordinates", [])
        polygons = [polygons] if geom.get("type") == "Polygon" else polygons if geom.get("type") == "MultiPolygon" else []
        for polygon in polygons:
            if polygon and len(polygon[0]) >= 3:
                lon, lat = np.asarray(polygon[0], float)[:, :2].T
                xs, ys = frame.to_xy(lat, lon)
                rings.append((tuple(np.round(xs, 2).tolist()), tuple(np.round(ys, 2).tolist())))
    return rings


def scene_map(run: LoadedRun, scene: str, points_m: list[tuple[float, float]] = ()) -> SceneMap:
    """The scene around predictions in scene metres: buildings, nodes, an extent that clips none of them
    (nor ``points_m``: predictions, truths, ellipse points), and a scale bar's length.

    The buildings are those :func:`scene_overlay` finds (the workspace's scene when it is the
    run's own, else the run's shipped ``buildings.geojson``).
    """
    ref = run.reference_for(scene)
    frame = ref.frame(scene)
    overlay = scene_overlay(run, scene)
    rings = _rings_xy(overlay["buildings"], frame)
    nodes = tuple({"id": row["id"], "x_m": float(row["x_m"]), "y_m": float(row["y_m"])}
                  for row in ref.nodes.get(scene, []) if row["x_m"] is not None)
    px, py = [], []
    for x, y in points_m:
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
            px.append(float(x))
            py.append(float(y))
    xs = [*ref.area_m[:2], *(x for ring in rings for x in ring[0]), *(n["x_m"] for n in nodes), *px]
    ys = [*ref.area_m[2:], *(y for ring in rings for y in ring[1]), *(n["y_m"] for n in nodes), *py]
    margin = 0.03 * max(max(xs) - min(xs), max(ys) - min(ys), 10.0)
    extent = tuple(round(v, 2) for v in (min(xs) - margin, max(xs) + margin, min(ys) - margin, max(ys) + margin))
    focus = None
    if px:
        half = max(max(px) - min(px), max(py) - min(py), FOCUS_MIN_M / 1.2) * 0.6
        cx, cy = (max(px) + min(px)) / 2, (max(py) + min(py)) / 2
        focus = tuple(round(v, 2) for v in (cx - half, cx + half, cy - half, cy + half))
    return SceneMap(tuple(rings), nodes, extent, scale_bar_length(extent[1] - extent[0]), focus,
                    scale_bar_length(focus[1] - focus[0]) if focus else None)


def ellipse_k(row: PredictedSample, level: int) -> float:
    """The multiple of the 1σ ellipse that draws ``level`` (1 or 2): 2σ is the run's fitted ratio where it has one."""
    if level == 2 and row.ratio_2sigma is not None:
        return float(row.ratio_2sigma)
    return float(level)


def ellipse_xy(row: PredictedSample, *, k: float = 1.0, points: int = 48) -> tuple[list[float], list[float]] | None:
    """The k-sigma ellipse of a predicted sample in scene metres, ``(xs, ys)`` (None without an uncertainty)."""
    sx, sy, x, y = row.sigma_x_m, row.sigma_y_m, row.x_m, row.y_m
    if sx is None or sy is None or x is None or y is None:
        return None
    t = np.linspace(0.0, 2 * np.pi, points)
    return (x + k * sx * np.cos(t)).tolist(), (y + k * sy * np.sin(t)).tolist()
