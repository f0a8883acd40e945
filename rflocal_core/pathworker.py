"""Child process tracing exact-path batches: ``python -m rflocal_core.pathworker JOB.pkl``.

Started by :mod:`rflocal_core.dataset.generate` so that reproducible (one-thread) path solves
still use every core, as :mod:`rflocal_core.mapworker` does for the radio maps. The job is a
pickle the parent wrote into its own temporary folder (never a user's file): workspace, scene,
solver options and ``batches`` [(index, positions [P, 3] m)]. For each batch it writes
``batch-INDEX.pkl`` (the :class:`~rflocal_core.raytrace.PathFeatures`; a temporary name, then renamed)
and prints ``batch-done INDEX``.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path


def main(job_path: str) -> int:
    from rflocal_core.raytrace import path_batch_task
    from rflocal_core.workspace import atomic_write_bytes

    job = pickle.loads(Path(job_path).read_bytes())  # our parent's own file, see the module docstring
    out_dir = Path(job["out_dir"])
    for index, positions_m in job["batches"]:
        features = path_batch_task(job["workspace"], job["scene"], positions_m, job["options"])
        atomic_write_bytes(out_dir / f"batch-{index}.pkl", pickle.dumps(features))
        print(f"batch-done {index}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
