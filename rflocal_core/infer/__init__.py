"""Inference: load a run, predict measurement files, evaluate a run on a dataset split.

    run = load_run("setnet-demo-...")                        # infer.run
    out = predict_measurements(run, load_measurements("file.json", on_error="collect"))
    out.predictions[0].x_m                                   # infer.predict: typed results
    evaluate_run(run.run_id, "ds", split="test").summary.median_m     # infer.evaluate

Every model, baseline or network, goes the same way. :mod:`~rflocal_core.infer.views` holds
what a map of predictions shows (ellipses, posterior cells, the scene around them).
"""

from __future__ import annotations

from rflocal_core.infer.evaluate import EvaluationResult, evaluate_run, evaluation_cache_path
from rflocal_core.infer.predict import (
    CANDIDATE_RADIUS_M,
    TOP_CANDIDATES,
    Candidate,
    FilePrediction,
    FileSummary,
    Heatmap,
    Place,
    PredictedSample,
    RunPrediction,
    predict_file,
    predict_measurements,
    read_input,
    sample_heatmap,
)
from rflocal_core.infer.run import LoadedRun, OnnxExport, calibrate_run, checkpoint_stamp, export_onnx, load_run
from rflocal_core.infer.scene_check import SceneCheck, check_scene
from rflocal_core.infer.track import (
    predict_tracked_file,
    run_outdoor_mask,
    sample_times,
    sequence_lines,
    track_prediction,
)
from rflocal_core.infer.views import (
    ELLIPSE_LEVELS,
    FOCUS_MIN_M,
    SceneMap,
    ellipse_k,
    ellipse_latlon,
    ellipse_xy,
    heat_points,
    predictions_table,
    report_timeline,
    scale_bar_length,
    scene_map,
    scene_overlay,
)

__all__ = [
    "CANDIDATE_RADIUS_M", "ELLIPSE_LEVELS", "FOCUS_MIN_M", "TOP_CANDIDATES", "Candidate", "EvaluationResult",
    "FilePrediction", "FileSummary", "Heatmap", "LoadedRun", "OnnxExport", "Place", "PredictedSample",
    "RunPrediction", "SceneCheck", "SceneMap", "calibrate_run", "check_scene", "checkpoint_stamp", "ellipse_k",
    "ellipse_latlon", "ellipse_xy", "evaluate_run", "evaluation_cache_path", "export_onnx", "heat_points", "load_run",
    "predict_file",
    "predict_measurements", "predict_tracked_file", "predictions_table", "read_input", "report_timeline",
    "run_outdoor_mask",
    "sample_heatmap", "sample_times", "scale_bar_length", "scene_map", "scene_overlay", "sequence_lines",
    "track_prediction",
]
