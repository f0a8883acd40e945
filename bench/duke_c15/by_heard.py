"""Duke (brief C15): the fitted-cell model alone (tau 1, uniform prior, geometric median) against kNN on test,
by the number of cells heard, and how far each answer is from the nearest walked (train) position.
Usage from the project root: ``python3 bench/duke_c15/by_heard.py DUMP_DIR 0 1 2`` (after study.py)."""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import cellfit as cf  # noqa: E402
import study as st  # noqa: E402

dump = Path(sys.argv[1])
for s in [int(a) for a in sys.argv[2:]]:
    z = dict(np.load(dump / f"duke_s{s}.npz"))
    cells = json.loads((dump / f"c15_s{s}_cells.json").read_text())
    g = cf.grid(z["train_xy"], st.STEP_M, st.MARGIN_M)
    xy, rss = z["test_xy"], z["test_rss"]
    est = st.answer(g, cf.grid_loglik(cells, g, rss), "gmed")
    e_m = np.linalg.norm(est - xy, axis=1)
    e_k = np.linalg.norm(z["test_knn"] - xy, axis=1)
    walk = np.array([np.min(np.linalg.norm(z["train_xy"] - p, axis=1)) for p in est])
    nh = np.isfinite(rss).sum(1)
    parts = []
    for lo, hi, name in ((1, 1, "1"), (2, 2, "2"), (3, 6, "3+")):
        m = (nh >= lo) & (nh <= hi)
        parts.append(f"{name} cell(s) {m.mean():.0%}: model {np.median(e_m[m]):.0f} / kNN {np.median(e_k[m]):.0f} m")
    print(f"split {s} test: model {np.median(e_m):.0f} / {e_m.mean():.0f} m, "
          f"kNN {np.median(e_k):.0f} / {e_k.mean():.0f} m; " + "; ".join(parts)
          + f"; model answers off walked ground (> 50 m from any train position): {np.mean(walk > 50):.0%}")
