"""Load a run and predict: the same path for every model, baseline or network.

    run = load_run("setnet-demo-...")                       # rebuilt with weights_only=True
    out = predict_measurements(run, load_measurements("file.json", on_error="collect"))
    out["predictions"][0]   # {"id", "x_m", "y_m", "lat", "lon", "sigma_x_m", "sigma_y_m", "error_m", ...}
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rflocal_core.errors import RFLocalInputError
from rflocal_core.models.inputs import Inputs, Prediction, errors_m
from rflocal_core.models.neural import NeuralModel
from rflocal_core.models.registry import BASELINES, NETWORKS
from rflocal_core.reference import InferenceInputError, RunReference, measurements_to_inputs, run_reference, scene_maps_of
from rflocal_core.train.runs import CheckpointError, load_checkpoint, run_dir

#: Candidate positions listed per sample for models with a posterior.
TOP_CANDIDATES = 5
#: Candidates are at least this far apart; each carries the posterior mass within it (m).
CANDIDATE_RADIUS_M = 10.0


@dataclass
class LoadedRun:
    """A run ready to predict: its configuration and the rebuilt model."""

    run_id: str
    config: dict[str, Any]
    model: Any
    _reference: Any = field(default=None, repr=False)
    _maps: Any = field(default=None, repr=False)

    @property
    def reference(self) -> RunReference:
        """What reading a measurement file needs of the training data (read once)."""
        if self._reference is None:
            self._reference = run_reference(self.run_id)
        return self._reference

    def scene_maps(self) -> dict[str, Any] | None:
        """The training dataset's radio maps for map matching (read once); None for other models."""
        if not self.needs_maps:
            return None
        if self._maps is None:
            self._maps = scene_maps_of(self.reference)
        return self._maps

    @property
    def needs_maps(self) -> bool:
        """Whether predicting needs the radio maps (map matching, map-conditioned networks)."""
        return bool(getattr(self.model, "needs_maps", False))

    def predict(self, x: Inputs) -> Prediction:
        """Positions [N, 2] (and uncertainty) for the samples of ``x``."""
        return self.model.predict(x)


def load_run(run_id: str) -> LoadedRun:
    """Rebuild a run's model from ``config.json`` and ``model.pt`` (``weights_only=True``)."""
    path = run_dir(run_id)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    payload = load_checkpoint(run_id)
    name = payload.get("model")
    if name in NETWORKS:
        try:
            return LoadedRun(run_id, config, NeuralModel.from_checkpoint(payload))
        except (KeyError, RuntimeError, TypeError) as exc:  # state does not fit the configured network
            msg = f"run {run_id!r}: checkpoint does not match its {name} configuration ({type(exc).__name__}: {exc})"
            raise CheckpointError(msg) from None
    if name not in BASELINES:
        msg = f"run {run_id!r}: checkpoint holds model {name!r}, which this version cannot load"
        raise CheckpointError(msg)
    cls = BASELINES[name]
    return LoadedRun(run_id, config, cls.from_state(payload["config"] or None, payload["state"]))


def evaluate(run_id: str, dataset: str, *, split: str = "test") -> dict[str, Any]:
    """Every figure of a run on a dataset split, as one JSON-ready dict (:func:`rflocal_core.metrics.evaluate_run`)."""
    from rflocal_core.metrics import evaluate_run

    return evaluate_run(run_id, dataset, split=split)


def checkpoint_stamp(run_id: str) -> tuple[str, int]:
    """``(run_id, model.pt mtime in ns)``: a cache key that changes when a run is retrained."""
    path = run_dir(run_id) / "model.pt"
    return run_id, path.stat().st_mtime_ns if path.is_file() else 0


def _finite(value: Any, digits: int = 3) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _candidates(heat: np.ndarray, grid: Any, frame: Any, k: int) -> list[dict[str, Any]]:
    """Top-``k`` posterior modes at least :data:`CANDIDATE_RADIUS_M` apart, with the mass around each."""
    flat = heat.ravel()
    order = np.argsort(flat)[::-1]
    order = order[flat[order] > 0][:5000]
    iy, ix = np.unravel_index(order, heat.shape)
    xs, ys = grid.x_m[ix], grid.y_m[iy]
    gx, gy = np.meshgrid(grid.x_m, grid.y_m)
    out: list[dict[str, Any]] = []
    for x, y in zip(xs, ys):
        if any(math.hypot(x - c["x_m"], y - c["y_m"]) < 2 * CANDIDATE_RADIUS_M for c in out):
            continue
        mass = float(heat[(gx - x) ** 2 + (gy - y) ** 2 <= CANDIDATE_RADIUS_M**2].sum())
        lat, lon = frame.to_latlon(x, y)
        out.append({"x_m": round(float(x), 2), "y_m": round(float(y), 2), "lat": float(lat), "lon": float(lon),
                    "p": round(mass, 4)})
        if len(out) == k:
            break
    return out


def predict_measurements(
    run: LoadedRun, ms: Any, *, heatmaps: bool = False, top_k: int = TOP_CANDIDATES,
) -> dict[str, Any]:
    """Predict every sample of a measurement file with one run.

    Parameters
    ----------
    run : LoadedRun
        From :func:`load_run`.
    ms : MeasurementSet
        A validated file; samples skipped by lenient reading (``ms.errors``) are listed as bad.
    heatmaps : bool
        Also return the posterior heatmap of each sample where the model has one (map
        matching), under ``"heatmaps"`` (not JSON: arrays).
    top_k : int
        Candidate positions per sample for models with a posterior.

    Returns
    -------
    dict
        ``run_id``, ``model``, ``scene``, ``mode``; ``predictions``: per predicted sample
        ``id``, ``x_m``, ``y_m``, ``lat``, ``lon``, ``sigma_x_m``, ``sigma_y_m`` (None where the
        model has no uncertainty), ``truth`` (``x_m``, ``y_m``, ``lat``, ``lon``) and
        ``error_m`` when the file gives the truth, ``flags`` (what is unusual: measurements
        outside the training range, a position outside the training area), ``candidates``;
        ``bad_samples`` (``index``, ``id``, ``message``); ``warnings``; ``predict_ms`` (model
        time for the whole file) and ``predict_ms_per_sample``.

    Raises
    ------
    InferenceInputError
        The file's mode or scene is not the run's, or its nodes do not fit.
    """
    ref = run.reference
    x, bad, warnings, flags = measurements_to_inputs(ms, ref, run_id=run.run_id, maps=run.scene_maps())
    out: dict[str, Any] = {
        "run_id": run.run_id, "model": run.config.get("model"), "mode": ref.mode, "scene": None, "predictions": [],
        "bad_samples": [{"index": b.index, "id": b.id, "message": b.message} for b in sorted(bad, key=lambda b: b.index)],
        "warnings": warnings, "predict_ms": 0.0, "predict_ms_per_sample": None,
    }
    if x is None:
        return out
    scene = x.scenes[int(x.scene_idx[0])]
    frame = ref.frame(scene)
    out["scene"] = scene
    if not frame.georeferenced:
        out["georeferenced"] = False
        warnings.append(f"scene {scene!r} is not geo-referenced: positions are in scene metres (x_m, y_m); "
                        "lat/lon are placeholders around a nominal origin, not places on Earth")
    t0 = time.perf_counter()
    pred = run.predict(x)
    elapsed_ms = 1000 * (time.perf_counter() - t0)
    lat, lon = frame.to_latlon(pred.position_m[:, 0], pred.position_m[:, 1])
    lat, lon = np.atleast_1d(lat), np.atleast_1d(lon)
    errors = errors_m(pred, x)
    area = ref.area_m
    margin = 0.1 * max(area[1] - area[0], area[3] - area[2], 10.0)
    maps_out: dict[str, Any] = {}
    sample_ids = [ms.samples[int(i)].id for i in x.indices]
    for r, sid in enumerate(sample_ids):
        px, py = (float(v) for v in pred.position_m[r])
        row_flags = list(flags[r])
        if not (math.isfinite(px) and math.isfinite(py)):
            row_flags.append("the model gave no position")
        elif not (area[0] - margin <= px <= area[1] + margin and area[2] - margin <= py <= area[3] + margin):
            row_flags.append("predicted position outside the area the model was trained on")
        row: dict[str, Any] = {
            "id": sid, "x_m": _finite(px, 2), "y_m": _finite(py, 2), "lat": _finite(lat[r], 7),
            "lon": _finite(lon[r], 7), "sigma_x_m": _finite(pred.sigma_m[r, 0], 2),
            "sigma_y_m": _finite(pred.sigma_m[r, 1], 2), "truth": None, "error_m": None, "flags": row_flags,
            "candidates": [],
        }
        if "residual_db" in pred.info:  # physics residual at the prediction: a confidence signal (mapformer)
            row["residual_db"] = _finite(pred.info["residual_db"][r], 2)
        if np.isfinite(x.truth_m[r]).all():
            tlat, tlon = frame.to_latlon(x.truth_m[r, 0], x.truth_m[r, 1])
            row["truth"] = {"x_m": _finite(x.truth_m[r, 0], 2), "y_m": _finite(x.truth_m[r, 1], 2),
                            "lat": _finite(tlat, 7), "lon": _finite(tlon, 7)}
            row["error_m"] = _finite(errors[r], 2)
        if hasattr(run.model, "posterior") and (heatmaps or top_k > 0):
            heat, grid = run.model.posterior(x, r)
            row["candidates"] = _candidates(heat, grid, frame, top_k) if top_k > 0 else []
            if heatmaps:
                maps_out[sid] = {"p": heat, "grid": grid}
        out["predictions"].append(row)
    out["predict_ms"] = round(elapsed_ms, 3)
    out["predict_ms_per_sample"] = round(elapsed_ms / len(sample_ids), 4)
    if heatmaps:
        out["heatmaps"] = maps_out
    return out


def sample_heatmap(run: LoadedRun, ms: Any, sample_id: str) -> dict[str, Any] | None:
    """The posterior heatmap of one sample (``{"p": [ny, nx], "grid": Grid}``), or None if the model has none.

    A file of many samples is predicted without heatmaps; the one shown gets its own.
    """
    if not hasattr(run.model, "posterior"):
        return None
    one = replace(ms, samples=tuple(s for s in ms.samples if s.id == sample_id), errors=())
    if not one.samples:
        msg = f"sample: no sample {sample_id!r} in the file"
        raise InferenceInputError(msg)
    return predict_measurements(run, one, heatmaps=True, top_k=0).get("heatmaps", {}).get(sample_id)


def predict_file(
    run_ids: list[str] | str, source: str | os.PathLike[str] | bytes, *, heatmaps: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """Read a measurement file leniently, check its quality and predict it with one or several runs.

    Invalid samples are listed as bad samples; the faults of real logs (GPS and RSS sentinels,
    positions outside the file's extent, duplicate ids, ...) are dropped before predicting
    (:func:`~rflocal_core.measurements.quality.check_quality`), or refused with ``strict``.

    Returns ``{"file": {"samples", "invalid", "mode", "scene", "quality"}, "runs":
    [predict_measurements(...), ...]}`` (``quality``: what was dropped, by reason); a
    file-level problem (not JSON, wrong format) raises
    :class:`~rflocal_core.measurements.MeasurementFormatError`, a fault with ``strict``
    :class:`~rflocal_core.errors.MeasurementQualityError`.
    """
    from rflocal_core.measurements import check_quality, load_measurements

    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    if not ids:
        msg = "run: expected at least one run id, got none"
        raise InferenceInputError(msg)
    raw = load_measurements(source, on_error="collect", on_fault="drop")
    ms, quality = check_quality(raw, strict=strict)
    runs = [predict_measurements(load_run(r), ms, heatmaps=heatmaps) for r in ids]
    read = len(raw.samples) + len(raw.errors) + sum(d.unit == "samples" for d in raw.dropped)
    return {"file": {"samples": read, "invalid": len(ms.errors), "mode": ms.mode, "scene": ms.scene,
                     "quality": quality.to_dict()}, "runs": runs}


# --------------------------------------------------------------------------- for map views

#: Probability inside the k-sigma ellipse of a 2-D Gaussian: 1 - exp(-k^2 / 2).
ELLIPSE_LEVELS = {1: 1 - math.exp(-0.5), 2: 1 - math.exp(-2.0)}


def ellipse_latlon(row: dict[str, Any], frame: Any, *, k: float = 1.0, points: int = 48) -> list[list[float]] | None:
    """The k-sigma ellipse of a prediction row as ``[[lat, lon], ...]`` (None without an uncertainty).

    The models give one sigma per axis (x east, y north), so the ellipse is axis-aligned.
    """
    sx, sy, x, y = row.get("sigma_x_m"), row.get("sigma_y_m"), row.get("x_m"), row.get("y_m")
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


def report_timeline(ms: Any, sample_id: str) -> list[dict[str, Any]]:
    """The reports of one sample as rows ``t_s``, ``node``, ``rss_dbm``, ``toa_ns``, ``aoa_deg`` (time order)."""
    sample = next((s for s in ms.samples if s.id == sample_id), None)
    if sample is None:
        msg = f"sample: no sample {sample_id!r} in the file"
        raise InferenceInputError(msg)
    rows = [{"t_s": r.t_s, "node": r.node or f"mobile-{j}", "rss_dbm": r.rss_dbm, "toa_ns": r.toa_ns,
             "aoa_deg": r.aoa_deg} for j, r in enumerate(sample.reports)]
    return sorted(rows, key=lambda r: (r["t_s"], r["node"]))


def predictions_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows (one per run and sample) of :func:`predict_measurements` results, for CSV."""
    rows = []
    for res in results:
        for p in res["predictions"]:
            truth = p.get("truth") or {}
            rows.append({"run_id": res["run_id"], "model": res["model"], "id": p["id"], "x_m": p["x_m"],
                         "y_m": p["y_m"], "lat": p["lat"], "lon": p["lon"], "sigma_x_m": p["sigma_x_m"],
                         "sigma_y_m": p["sigma_y_m"], "truth_x_m": truth.get("x_m"), "truth_y_m": truth.get("y_m"),
                         "error_m": p["error_m"], "flags": "; ".join(p["flags"])})
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
