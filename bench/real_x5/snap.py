import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from tail import errs, knn_smooth

from rflocal_core.models.baselines import knn_criterion

for path in sys.argv[1:]:
    z = np.load(path); tr = z["train_truth"]; tr = tr[np.isfinite(tr).all(1)]
    cv, ct = z["val_ens_pos"], z["test_ens_pos"]
    row = [path.split("/")[-1]]
    for K in (0, 5, 10, 20, 30, 50, 100):
        pv = cv if K == 0 else knn_smooth(cv, tr, K); pt = ct if K == 0 else knn_smooth(ct, tr, K)
        ev, et = errs(pv, z["val_truth"]), errs(pt, z["test_truth"])
        row.append(f"K{K}: val {knn_criterion(ev, 'median_mean'):.0f} test {np.median(et):.0f}/{et.mean():.0f}")
    print(" | ".join(row))
