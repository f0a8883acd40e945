"""Clean the fingerprint pool: drop training messages whose leave-one-out kNN estimate is more than T m off
(GPS outliers, or fingerprints that contradict their neighbours). Measured with kNN (k=7 softmin, -120) and nn1."""
import sys

import numpy as np
from common import errs, fig, fill, topk

z = np.load(sys.argv[1])
tr = z["train_truth"]; ok = np.isfinite(tr).all(1)
tr = tr[ok]
ftr = fill(z["train_rss"][ok], -120.0)
fv, ft = fill(z["val_rss"], -120.0), fill(z["test_rss"], -120.0)
il, dl = topk(ftr, ftr, 8, exclude_self=True)


def knn(idx, dist, pos, k, tau=1.7):
    w = np.exp(-(dist[:, :k] - dist[:, :1]) / tau); w /= w.sum(1, keepdims=True)
    return (w[..., None] * pos[idx[:, :k]]).sum(1)


loo = errs(knn(il, dl, tr, 7), tr)
print("LOO knn err train median/mean", fig(loo), "share > 1 km", (loo > 1000).mean())
for T in (np.inf, 3000, 2000, 1500, 1000, 700):
    keep = loo <= T
    ref, pos = ftr[keep], tr[keep]
    out = [f"T {T}: keep {keep.mean()*100:.1f}%"]
    for k in (1, 7):
        iv, dv = topk(fv, ref, k); it, dt = topk(ft, ref, k)
        ev, et = errs(knn(iv, dv, pos, k), z["val_truth"]), errs(knn(it, dt, pos, k), z["test_truth"])
        out.append(f"k{k} val {fig(ev)} test {fig(et)}")
    print(" | ".join(out))
