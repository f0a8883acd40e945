"""Duke (brief C15): where the fitted-cell model alone is more than 500 m off on test (splits 1 and 2), which cells
those samples hear, and the same model with the second source kept for cell B only (a diagnostic, not a choice).
Usage from the project root: ``python3 bench/duke_c15/big_errors.py DUMP_DIR`` (after study.py)."""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import cellfit as cf  # noqa: E402
import study as st  # noqa: E402

dump = Path(sys.argv[1])
for s in (1, 2):
    z = dict(np.load(dump / f"duke_s{s}.npz"))
    cells = json.loads((dump / f"c15_s{s}_cells.json").read_text())
    g = cf.grid(z["train_xy"], 20, 200)
    xy, rss = z["test_xy"], z["test_rss"]
    est = st.answer(g, cf.grid_loglik(cells, g, rss), "gmed")
    big = np.linalg.norm(est - xy, axis=1) > 500
    print(s, "test x range", xy[:, 0].min().round(), xy[:, 0].max().round(), "big errors", big.mean().round(2),
          "est x of big: pct", np.percentile(est[big, 0], [10, 50, 90]).round() if big.any() else "",
          "truth x of big", np.percentile(xy[big, 0], [10, 50, 90]).round() if big.any() else "")
    nh = np.isfinite(rss)
    print("  cells heard by big-error samples", nh[big].sum(0), "of", big.sum())
    one = [{k: v for k, v in c.items() if k not in ("x2_m", "y2_m", "p02_dbm")} if i != 1 else c
           for i, c in enumerate(cells)]
    est1 = st.answer(g, cf.grid_loglik(one, g, rss), "gmed")
    e1 = np.linalg.norm(est1 - xy, axis=1)
    print("  second source kept for B only:", np.median(e1).round(), e1.mean().round())
