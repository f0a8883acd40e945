"""Where the > 1 km errors of the best ensemble are: does the gateway physics prefer the truth? (brief Z3)"""
import sys

import numpy as np
from geo2 import fit_gateways, fp_dist, ll_parts, terms

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/antwerp_y1")
from common import errs

z = np.load(sys.argv[1]); e = np.load(sys.argv[2])
gw = z["train_nodepos"][0]; tr, rtr = z["train_truth"], z["train_rss"]
m = fit_gateways(tr, rtr, gw)
m["n"] = np.clip(m["n"], 1.5, 6.0)
mu, lcen = terms(tr, gw, m, 1e-3)
ens = e["test_ens_pos"]; truth = z["test_truth"]
err = errs(ens, truth)
sel = np.where(err > 1000)[0]
print(f"{len(sel)} test messages > 1 km ({len(sel)/len(err):.3f}), {err[sel].sum()/err.sum():.2f} of the error sum")
rss = z["test_rss"][sel]
D = fp_dist(np.where(np.isfinite(rss), rss, -120.0), np.where(np.isfinite(rtr), rtr, -120.0))
lr, ld = ll_parts(rss, mu, lcen, m, 3.0)
dt = np.hypot(*(tr[None] - truth[sel][:, None]).transpose(2, 0, 1))  # [n, C] candidate to truth
de = np.hypot(*(tr[None] - ens[sel][:, None]).transpose(2, 0, 1))
near_t = dt < 100; near_e = de < 100
for name, s in (("fp", -D), ("rss", lr), ("det", ld), ("rss+det", lr + ld)):
    rank = (s[:, :, None] > s[:, :, None]).sum  # placeholder
    best_t = np.where(near_t, s, -np.inf).max(1)
    best_e = np.where(near_e, s, -np.inf).max(1)
    ok = np.isfinite(best_t) & np.isfinite(best_e)
    # rank of the best candidate near the truth among all candidates
    rk = (s > best_t[:, None]).sum(1)
    print(f"{name:8s}: truth-area beats ensemble-area on {np.mean(best_t[ok] > best_e[ok]):.2f} of {ok.sum()}; "
          f"rank of truth-area median {np.median(rk[ok]):.0f}, <30 on {np.mean(rk[ok] < 30):.2f}")
print("candidates within 100 m of truth: median", np.median(near_t.sum(1)), "none:", np.mean(near_t.sum(1) == 0))
print("heard count of tail:", np.bincount(np.isfinite(rss).sum(1)))
allh = np.isfinite(z["test_rss"]).sum(1)
print("heard count all:", np.bincount(allh))
for k in range(3, 8):
    s = allh == k
    print(k, f"mean err {err[s].mean():.0f} share>1km {np.mean(err[s] > 1000):.3f}")
