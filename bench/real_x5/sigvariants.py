import sys

import numpy as np

from rflocal_core.metrics import calibration
from rflocal_core.models.inputs import Prediction
from rflocal_core.train.calibrate import fit_sigma_scale, scale_sigma

for path in sys.argv[1:]:
    z = np.load(path); w = z["weights"]
    by_split = {}
    for sp in ("val", "test"):
        P, S, c = z[f"{sp}_pos"], z[f"{sp}_sig"], z[f"{sp}_ens_pos"]
        spread = np.sqrt((w[:, None, None] * (P - c[None]) ** 2).sum(0))
        has = np.isfinite(S).all(-1); ws = np.where(has, w[:, None], 0.0)
        own = np.sqrt((ws[..., None] * np.where(has[..., None], S, 0) ** 2).sum(0) / np.maximum(ws.sum(0), 1e-12)[:, None])
        eq = np.full(len(w), 1 / len(w))
        spread_eq = np.sqrt((eq[:, None, None] * (P - c[None]) ** 2).sum(0))
        by_split[sp] = {"mixture": np.sqrt(spread**2 + own**2), "spread": spread + 1.0, "own": own,
                        "spread_eq_mix": np.sqrt(spread_eq**2 + own**2), "maxmix": np.maximum(spread_eq, own)}
    val, test = by_split["val"], by_split["test"]
    row = [path.split("/")[-1]]
    for k in val:
        cal = fit_sigma_scale(z["val_ens_pos"] - z["val_truth"], val[k])
        q = scale_sigma(Prediction(z["test_ens_pos"], test[k]), cal.scale, power=cal.power, ref_m=cal.ref_m)
        cc = calibration(q.position_m - z["test_truth"], q.sigma_m)
        row.append(f"{k} p={cal.power:g} val {100*cal.inside_1sigma_after:.0f}/{100*cal.inside_2sigma_after:.0f} test {100*cc.inside_1sigma:.0f}/{100*cc.inside_2sigma:.0f}")
    print(" | ".join(row))
