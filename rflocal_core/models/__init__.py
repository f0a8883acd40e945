"""Localization models: classical baselines over the Zarr datasets.

Public API::

    from rflocal_core.models import load_inputs, MapMatching
    train, test = load_inputs("ds", "train"), load_inputs("ds", "test")
    pred = MapMatching().fit(train).predict(test)   # pred.position_m [N, 2]
"""

from __future__ import annotations

from rflocal_core.models.baselines import (
    BASELINES,
    AoATriangulation,
    Inputs,
    KNNFingerprint,
    LogDistanceMultilateration,
    MapMatching,
    NotFittedError,
    Prediction,
    SceneMaps,
    StrongestSite,
    ToAMultilateration,
    WeightedCentroid,
    errors_m,
    load_inputs,
)

__all__ = [
    "BASELINES",
    "AoATriangulation",
    "Inputs",
    "KNNFingerprint",
    "LogDistanceMultilateration",
    "MapMatching",
    "NotFittedError",
    "Prediction",
    "SceneMaps",
    "StrongestSite",
    "ToAMultilateration",
    "WeightedCentroid",
    "errors_m",
    "load_inputs",
]
