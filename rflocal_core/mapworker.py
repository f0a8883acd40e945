"""Child process computing radio maps for some sites: ``python -m rflocal_core.mapworker JOB.json``.

Started by :func:`rflocal_core.raytrace.compute_radio_map` so that reproducible
(single-threaded) solver runs still use every core. Prints ``site-done`` per site and
writes ``gain`` [num_sites, ny, nx] (linear path gain) and ``centres`` [ny, nx, 3].
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(job_path: str) -> int:
    from rflocal_core.raytrace import solve_sites_here

    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    gain, centres = solve_sites_here(job["name"], job["sites"], job["solve"],
                                     on_site=lambda done, total: print("site-done", flush=True))
    np.savez(job["out"], gain=gain, centres=centres)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
