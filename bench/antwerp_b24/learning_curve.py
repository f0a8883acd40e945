"""Antwerp: how the radio-map kNN's test error falls with the number of training messages (brief B24, issue 15).

Usage: python learning_curve.py WORKSPACE RUN_ID
RUN_ID: an ``ensemble --refit`` run of bench_real on ``antwerp`` (B23's, ``real-b23-antwerp-ens-searched.json``);
its ``kgm`` (k 15, geometric median) and ``kmap`` (the local radio map, adaptive bandwidth) members, with their
val choices fixed, are fitted again on a random eighth, quarter, half and all of x_val (train + val, 8,306
messages; two draws below all) and answer all of ``x_test``. A study of the data's size, not a choice: nothing is
chosen on test. Prints one line per member and size.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import load_inputs  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402
from rflocal_core.models.registry import BASELINES  # noqa: E402


def main() -> None:
    run = load_run(sys.argv[2])
    ds = run.config["dataset"]
    x = join_inputs(load_inputs(ds, "train"), load_inputs(ds, "val"))
    test = load_inputs(ds, "test")
    st = run.model.state_dict()
    configs = st.get("configs") or {}
    for name in ("kgm", "kmap"):
        i = st["members"].index(name)
        member = BASELINES[st["models"][i]].from_state(configs.get(name), st["states"][i])
        for frac in (0.125, 0.25, 0.5, 1.0):
            t0, figures = time.time(), []
            for draw in range(2 if frac < 1 else 1):
                rows = np.sort(np.random.default_rng(draw).permutation(len(x))[: int(frac * len(x))])
                e = np.hypot(*(member.refit(x.subset(rows)).predict(test).position_m - test.truth_m).T)
                figures.append((np.median(e), e.mean()))
            med, mean = np.mean(figures, 0)
            print(f"{name} n={int(frac * len(x))}: test median {med:.1f} m, mean {mean:.1f} m "
                  f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
