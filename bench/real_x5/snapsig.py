import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from tail import knn_smooth

from rflocal_core.metrics import calibration
from rflocal_core.models.inputs import Prediction
from rflocal_core.train.calibrate import fit_sigma_scale, scale_sigma

z = np.load(sys.argv[1]); tr = z["train_truth"]; tr = tr[np.isfinite(tr).all(1)]; sc = float(z["sigma_scale"])
out = {}
for sp in ("val", "test"):
    c = z[f"{sp}_ens_pos"]; s = z[f"{sp}_ens_sig"] / sc
    c2 = knn_smooth(c, tr, 10); d = c2 - c
    out[sp] = {"pos": c2, "plain": s, "quad": np.sqrt(s**2 + d**2), "quad_half": np.sqrt(s**2 + 0.5 * np.hypot(*d.T)[:, None] ** 2)}
for k in ("plain", "quad", "quad_half"):
    for method in ("coverage", "power"):
        cal = fit_sigma_scale(out["val"]["pos"] - z["val_truth"], out["val"][k], method=method)
        q = scale_sigma(Prediction(out["test"]["pos"], out["test"][k]), cal.scale, power=cal.power, ref_m=cal.ref_m)
        cc = calibration(q.position_m - z["test_truth"], q.sigma_m)
        print(k, method, f"p={cal.power:g} val {100*cal.inside_1sigma_after:.1f}/{100*cal.inside_2sigma_after:.1f} test {100*cc.inside_1sigma:.1f}/{100*cc.inside_2sigma:.1f}")
