"""What a map of predictions shows: uncertainty ellipses, posterior cells, a sample's reports, the scene.

Helpers of the Live Inference page, over the results of :mod:`rflocal_core.infer.predict`.
"""

from __future__ import annotations

import json
import math
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
    return rows


def scene_overlay(run: LoadedRun, scene: str) -> dict[str, Any]:
    """What a map shows around predictions: the run's nodes (lat/lon) and building footprints
    (GeoJSON, WGS84) from the workspace when it holds the very scene the run was trained on, else
    from the run's own ``buildings.geojson`` (the shipped demo runs carry one).

    Returns ``{"centre": (lat, lon), "nodes": [{"id", "lat", "lon"}], "buildings": dict | None}``.
    """
    ref = run.reference
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
