"""Where the big errors are: distance of the truth to the nearest training position, nearest fingerprint."""
import sys

import numpy as np
from common import errs, fill, topk

z = np.load(sys.argv[1])
tr = z["train_truth"]; ok = np.isfinite(tr).all(1)
tr = tr[ok]; ftr = fill(z["train_rss"][ok], -120.0)
tt = z["test_truth"]; ft = fill(z["test_rss"], -120.0)
e = errs(z["test_ens_pos"], tt)
print("test", len(tt), "ens median/mean", np.median(e), e.mean(), "nan rss frac", np.isnan(z["test_rss"]).mean())
# nearest training position to the truth
dpos = np.empty(len(tt))
for s in range(0, len(tt), 2048):
    d = np.hypot(tt[s:s+2048, None, 0] - tr[None, :, 0], tt[s:s+2048, None, 1] - tr[None, :, 1])
    dpos[s:s+2048] = d.min(1)
idx, dist = topk(ft, ftr, 20)
heard = np.isfinite(z["test_rss"]).sum(1)
big = e > 1000
for name, m in [("all", np.ones(len(e), bool)), (">1km", big), ("<=1km", ~big)]:
    print(f"{name:6s} n={m.sum():5d} truth->nearest train pos median {np.median(dpos[m]):.0f} m, P90 {np.percentile(dpos[m],90):.0f};"
          f" nearest fp dist median {np.median(dist[m,0]):.1f} dB; heard mean {heard[m].mean():.2f}")
# how much of the mean is in messages whose truth is > 300 m from any training position
for thr in (100, 200, 300, 500, 1000):
    m = dpos > thr
    print(f"truth > {thr} m from train: {m.mean()*100:.1f}% of msgs, {e[m].sum()/e.sum()*100:.1f}% of mean; ens err median {np.median(e[m]) if m.any() else 0:.0f}")
# nearest neighbour's position error vs truth (oracle: best of 20 neighbours)
nbpos = tr[idx]
oracle = np.hypot(*(nbpos - tt[:, None]).transpose(2, 0, 1)).min(1)
print("oracle best of 20 nn positions: median", np.median(oracle), "mean", oracle.mean(), "on >1km:", np.median(oracle[big]))
# by gateways heard
for h in range(3, 11):
    m = heard == h
    if m.sum():
        print(f"heard {h}: n={m.sum()} ens {np.median(e[m]):.0f}/{e[m].mean():.0f}  >1km {np.mean(e[m]>1000)*100:.1f}%")
