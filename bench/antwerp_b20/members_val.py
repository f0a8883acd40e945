"""The Antwerp ensemble's members on the 10% val split, out of fold where possible (brief B20, density gate).

Usage: python members_val.py WORKSPACE RUN_ID OOF.npz KMAP.npy OUT.npz
RUN_ID: B19's ``ensemble --refit`` run (real-b19-antwerp-ens-adaptive.json). Its network and booster members
(lgbm, fpnet_knn, fpnet: fitted on train, stopped on val) answer the val split; its knn members were refitted on
train + val, so their val answers would be in-sample: their out-of-fold answers are taken instead (OOF.npz:
bench/antwerp_b17/oof.py, kgm and kmap100; KMAP.npy: bench/antwerp_b19/adaptive.py's positions of the adaptive
kmap, same folds). Writes positions [6, 831, 2] in the run's member order, the truth and the training messages
of all of x_val (the reference of a density at predict time after --refit). Test is not touched.
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import load_inputs  # noqa: E402
from rflocal_core.models.neural import NeuralModel  # noqa: E402
from rflocal_core.models.registry import BASELINES  # noqa: E402


def main() -> None:
    run = load_run(sys.argv[2])
    ds = run.config["dataset"]
    tr, va = load_inputs(ds, "train"), load_inputs(ds, "val")
    st = run.model.state_dict()
    oof = np.load(sys.argv[3])
    oof_names = list(oof["names"])
    is_val = oof["is_val"]
    assert np.allclose(oof["truth"][is_val], va.truth_m), "OOF rows are not the run's val split"
    pos = np.full((len(st["members"]), len(va), 2), np.nan)
    for i, (name, model, kind, state) in enumerate(zip(st["members"], st["models"], st["kinds"], st["states"])):
        if name == "kmap":
            pos[i] = np.load(sys.argv[4])[is_val]
        elif kind == "baseline" and BASELINES[model].can_refit:
            pos[i] = oof["pos"][oof_names.index(name)][is_val]
        else:
            m = (NeuralModel.from_checkpoint({"model": model, "config": state["config"], "state": state["state"]})
                 if kind == "network" else BASELINES[model].from_state((st.get("configs") or {}).get(name), state))
            pos[i] = m.predict(va).position_m
        e = np.hypot(*(pos[i] - va.truth_m).T)
        print(f"{name}: val {np.median(e):.1f} / {e.mean():.1f} m", flush=True)
    np.savez(sys.argv[5], names=np.array(st["members"]), pos=pos, truth=va.truth_m, weights=np.array(st["weights"]),
             ref=oof["truth"], val_rows=np.flatnonzero(is_val))
    print("ok", st["members"], st["weights"])


if __name__ == "__main__":
    main()
