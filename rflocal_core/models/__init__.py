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
    KNNFingerprint,
    LogDistanceMultilateration,
    MapMatching,
    NotFittedError,
    StrongestSite,
    ToAMultilateration,
    WeightedCentroid,
)
from rflocal_core.models.inputs import Inputs, Prediction, SceneMaps, errors_m, load_inputs

# The map-conditioned networks import nets.py, so they join its registry here, where every
# import of rflocal_core.models.* passes first.
from rflocal_core.models.locheatmap import LocHeatmap  # noqa: E402
from rflocal_core.models.mapformer import MapFormer  # noqa: E402
from rflocal_core.models.nets import NETWORKS  # noqa: E402

for _cls in (MapFormer, LocHeatmap):
    NETWORKS.setdefault(_cls.name, _cls)

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
