"""Dump the best Antwerp ensemble's members and its radio-map posterior for val and test (brief B16).

Usage: python dump.py WORKSPACE RUN_ID OUT.npz [K]
RUN_ID: the ``ensemble`` run trained with ``--refit`` (README "Refit on train + val"). Val is predicted by
the run's members fitted on train alone (``refit(train)``: the model before the refit, as the run's own σ map
was fitted), test by the run itself. Per split: each member's position and σ, the weights, the combined
answer before and after the snap, the ensemble's σ, and the ``kmap`` member's posterior over its K best
training positions (positions and softmin weights; K = 1000 by default).
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import KNNFingerprint, load_inputs  # noqa: E402
from rflocal_core.models.ensemble import combine_positions  # noqa: E402

run = load_run(sys.argv[2])
K = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
ds = run.config["dataset"]
X = {sp: load_inputs(ds, sp) for sp in ("train", "val", "test")}
models = {"val": run.model.refit(X["train"]), "test": run.model}
out = {"sigma_map": np.array([run.sigma_map["scale"], run.sigma_map["power"], run.sigma_map["ref_m"] or np.nan])}
for sp, model in models.items():
    x = X[sp]
    st = model.state_dict()
    names = st["members"]
    preds = model._member_predictions(x)  # noqa: SLF001 (a study script: the members' own answers)
    w = np.asarray(st["weights"], dtype=np.float64)
    pos = np.stack([p.position_m for p in preds])
    centre = combine_positions(pos, w, model.config.combine)
    full = model.predict(x)
    i = names.index("kmap")
    kst = dict(st["states"][i], k=K)
    km = KNNFingerprint.from_state((st.get("configs") or {}).get("kmap"), kst)
    pp, pw = [], []
    for s in range(0, len(x), 512):
        a, b, _ = km.neighbours(x.subset(slice(s, s + 512)))
        pp.append(a.astype(np.float32))
        pw.append(b.astype(np.float32))
        print(sp, s, flush=True)
    out.update({f"{sp}_member_pos": pos, f"{sp}_member_sigma": np.stack([p.sigma_m for p in preds]),
                f"{sp}_weights": w, f"{sp}_centre": centre, f"{sp}_answer": full.position_m,
                f"{sp}_sigma": full.sigma_m, f"{sp}_truth": x.truth_m, f"{sp}_post_pos": np.concatenate(pp),
                f"{sp}_post_w": np.concatenate(pw), f"{sp}_heard": np.isfinite(x.rss_dbm[:, : x.fixed_slots]).sum(1)})
    e = np.hypot(*(full.position_m - x.truth_m).T)
    print(sp, names, w.round(2), f"answer {np.median(e):.1f} / {e.mean():.1f} m", flush=True)
np.savez(sys.argv[3], **out)
print("ok", {k: np.shape(v) for k, v in out.items()})
