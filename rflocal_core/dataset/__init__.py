"""Data Generation: ray-traced radio maps and measurement datasets in Zarr.

Public API::

    from rflocal_core.dataset import GenerationConfig, generate_dataset, open_dataset
    generate_dataset(GenerationConfig(name="ds", scenes=("demo",), samples_per_scene=2000))
"""

from __future__ import annotations

from rflocal_core.dataset.config import GenerationConfig
from rflocal_core.dataset.exchange import ImportResult, export_dataset, import_measurements
from rflocal_core.dataset.generate import generate_dataset
from rflocal_core.dataset.store import delete_dataset, list_datasets, open_dataset
from rflocal_core.errors import DatasetExistsError, DatasetNotFoundError

__all__ = [
    "DatasetExistsError",
    "DatasetNotFoundError",
    "GenerationConfig",
    "ImportResult",
    "delete_dataset",
    "export_dataset",
    "generate_dataset",
    "import_measurements",
    "list_datasets",
    "open_dataset",
]
