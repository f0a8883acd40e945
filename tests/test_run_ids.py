"""Run ids stay unique and valid whatever the length of the model and dataset names."""

from __future__ import annotations

import re

from rflocal_core.train.runs import new_run_id
from rflocal_core.workspace import validate_name


def test_run_ids_of_a_long_dataset_name_keep_their_time_and_hex() -> None:
    """bench_any_city's held-out datasets have 50-character names: the id's time and hex were cut off
    (two runs of one second's difference collided with FileExistsError)."""
    dataset = "ac-all-500-4m-lo-ac0-osm-bavaria-village-48-135-1"
    run_id = new_run_id("heimdall", dataset)
    assert validate_name(run_id) == run_id
    assert run_id.startswith("heimdall-ac-all-500")
    assert re.search(r"-\d{8}T\d{6}-[0-9a-f]{4}$", run_id), run_id
