"""Localization models: classical baselines and networks over the Zarr datasets.

Public API::

    from rflocal_core.models import load_inputs, MapMatching
    train, test = load_inputs("ds", "train"), load_inputs("ds", "test")
    pred = MapMatching().fit(train).predict(test)   # pred.position_m [N, 2]

The data types live in :mod:`~rflocal_core.models.inputs`, the registries of models by name
(:data:`BASELINES`, :data:`NETWORKS`, filled by ``@register("name")``) in
:mod:`~rflocal_core.models.registry`.
"""

from __future__ import annotations

from rflocal_core.errors import NotFittedError
from rflocal_core.models.baselines import (
    AoATriangulation,
    KNNFingerprint,
    LogDistanceMultilateration,
    MapMatching,
    StrongestSite,
    TDoAMultilateration,
    ToAMultilateration,
    WeightedCentroid,
)
from rflocal_core.models.inputs import Inputs, Prediction, SceneMaps, errors_m, load_inputs

# Every model module is imported here, where every import of rflocal_core.models.* passes
# first, so each class has registered itself (models.registry) before any lookup by name.
from rflocal_core.models.mapformer import MapFormer
from rflocal_core.models.locheatmap import LocHeatmap  # after mapformer: the registry keeps this order
from rflocal_core.models.fpnet import FPNet, FPNetKNN  # after locheatmap: the registry keeps this order
from rflocal_core.models.registry import BASELINES, NETWORKS, register
from rflocal_core.models.trees import KNNLightGBM, LightGBMFingerprint
from rflocal_core.models.ensemble import Ensemble  # after trees: it combines registered models

__all__ = [
    "BASELINES",
    "Ensemble",
    "FPNet",
    "FPNetKNN",
    "AoATriangulation",
    "Inputs",
    "KNNFingerprint",
    "KNNLightGBM",
    "LightGBMFingerprint",
    "LocHeatmap",
    "LogDistanceMultilateration",
    "MapFormer",
    "MapMatching",
    "NETWORKS",
    "NotFittedError",
    "Prediction",
    "SceneMaps",
    "StrongestSite",
    "TDoAMultilateration",
    "ToAMultilateration",
    "WeightedCentroid",
    "errors_m",
    "load_inputs",
    "register",
]
