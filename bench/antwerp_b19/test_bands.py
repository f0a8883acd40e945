"""After the fact (nothing is chosen here): two ensemble runs and their ``kmap`` members on Antwerp's x_test, by
how many training messages (train + val) lie within 100 m of the truth (brief B19, B18's bands).

Usage: python test_bands.py WS_A RUN_A WS_B RUN_B
(WS: the workspace holding the run and dataset ``antwerp``; A: before, B: with the adaptive map.)
"""
import os
import sys
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import load_inputs  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402
from rflocal_core.models.registry import BASELINES  # noqa: E402

BANDS = ((0, 1), (1, 5), (5, 20), (20, 50), (50, 200), (200, 10**9))


def line(label: str, e: np.ndarray, dens: np.ndarray) -> None:
    """Median / mean, > 1 km share and the mean per band of ``dens``."""
    by = " / ".join(f"{e[(dens >= a) & (dens < b)].mean():.0f}" for a, b in BANDS)
    print(f"{label}: {np.median(e):.1f} / {e.mean():.1f} m, > 1 km {np.mean(e > 1000) * 100:.1f}%; mean by band {by}",
          flush=True)


def main() -> None:
    errs = []
    for ws, rid in (sys.argv[1:3], sys.argv[3:5]):
        os.environ["RFLOCAL_WORKSPACE"] = ws
        te = load_inputs("antwerp", "test")
        trv = join_inputs(load_inputs("antwerp", "train"), load_inputs("antwerp", "val"))
        dens = np.array([len(r) for r in cKDTree(trv.truth_m).query_ball_point(te.truth_m, 100.0)])
        run = load_run(rid)
        st = run.model.state_dict()
        i = st["members"].index("kmap")
        kmap = BASELINES[st["models"][i]].from_state(st["configs"].get("kmap"), st["states"][i])
        line(f"{rid} kmap", np.hypot(*(kmap.predict(te).position_m - te.truth_m).T), dens)
        errs.append(np.hypot(*(run.model.predict(te).position_m - te.truth_m).T))
        line(f"{rid} ensemble", errs[-1], dens)
    print("rows per band %:", " / ".join(f"{np.mean((dens >= a) & (dens < b)) * 100:.1f}" for a, b in BANDS))
    print(f"rows where B is > 100 m closer: {np.mean(errs[0] - errs[1] > 100) * 100:.1f}%, "
          f"> 100 m farther: {np.mean(errs[1] - errs[0] > 100) * 100:.1f}%")


main()
