"""A torchrun entry point for tests/test_ddp.py: ranks that differ as separate machines can.

``python -m torch.distributed.run ... tests/ddp_ranks.py MODE ARGS...``

- ``cli EMPTY_WS ARGV...``: the command line ``rflocal ARGV`` on every rank, rank 1 seeing the
  workspace ``EMPTY_WS`` (a machine where the dataset is missing); exits with its status.
- ``cancel DATASET RUN_ID TRAIN_CONFIG_JSON MODEL_CONFIG_JSON``: train, rank 0's progress callback
  cancelling after the first validated epoch; prints ``cancelled`` on rank 0.
- ``models DATASET``: train every network for one epoch; rank 0 prints ``{model: run_id}``.
"""

from __future__ import annotations

import json
import os
import sys

from rflocal_core import settings
from rflocal_core.cli import main
from rflocal_core.progress import JobCancelled
from rflocal_core.train import train


def _cancel(dataset: str, run_id: str, train_config: str, model_config: str) -> int:
    def progress(stage: str, fraction: float, *, step: object = None) -> None:
        if "val median" in stage:
            raise JobCancelled(stage)

    try:
        train(dataset, "setnet", model_config=json.loads(model_config), train_config=json.loads(train_config),
              seed=5, run_id=run_id, progress=progress)
    except JobCancelled:
        if os.environ["RANK"] == "0":
            print("cancelled")
        return 0
    return 1


def _models(dataset: str) -> int:
    from rflocal_core.models.registry import NETWORKS

    runs = {m: train(dataset, m, train_config={"epochs": 1, "batch_size": 64}, seed=1).run_id for m in NETWORKS}
    if os.environ["RANK"] == "0":
        print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "cli":
        if os.environ["RANK"] == "1":
            os.environ[settings.WORKSPACE_ENV] = rest[0]
        sys.exit(main(rest[1:]))
    sys.exit(_models(*rest) if mode == "models" else _cancel(*rest))
