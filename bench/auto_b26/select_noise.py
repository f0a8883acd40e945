"""Does `--model auto` choose within the noise of its validation split? (brief B26, issue 15)

Usage: python select_noise.py WORKSPACE AUTO_RUN_ID [AUTO_RUN_ID ...]
Each AUTO_RUN_ID: a ``train --model auto --keep-candidates`` run. Every kept candidate predicts the val split
again (``auto.candidate_val_errors``); the core's ``metrics.median_difference_se`` (what ``--select one_se``
reads) gives each candidate's standard error of its median minus the lowest one, for bootstrap seeds 0-5.
Printed per candidate: val median, those standard errors; then what each seed's one-SE rule chooses, and the
test median / mean of the lowest and of the seed-0 choice.
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import evaluate_run, load_run  # noqa: E402
from rflocal_core.metrics import median_difference_se  # noqa: E402
from rflocal_core.train.auto import SELECT_DRAWS, SELECT_SQUARE_M, auto_table, candidate_val_errors  # noqa: E402

SEEDS = range(6)


def main() -> None:
    for auto_id in sys.argv[2:]:
        ds = load_run(auto_id).config["dataset"]
        rows = [r for r in auto_table(auto_id)["candidates"] if r["status"] == "trained" and r.get("run_id")]
        names = [r["model"] + (":" + r["variant"] if r.get("variant") else "") for r in rows]
        errs, truth = zip(*(candidate_val_errors(r["run_id"], ds) for r in rows), strict=True)
        e = np.stack(errs)
        meds = np.median(e, 1)
        best = int(np.argmin(meds))
        se = np.stack([median_difference_se(e, truth[0], best, square_m=SELECT_SQUARE_M, draws=SELECT_DRAWS,
                                            seed=s) for s in SEEDS])  # [seeds, C]
        picks = [next(i for i in range(len(rows)) if meds[i] - meds[best] <= se[s, i]) for s in SEEDS]
        print(f"{auto_id} ({ds}; {e.shape[1]} val samples)")
        for i, n in enumerate(names):
            print(f"  {n:16s} val median {meds[i]:7.1f} m (gap {meds[i] - meds[best]:5.1f})  SE over seeds "
                  f"{se[:, i].min():5.1f}-{se[:, i].max():5.1f} m")
        print(f"  one-SE choice by seed: {', '.join(names[p] for p in picks)}")
        for label, i in (("lowest val median", best), ("one-SE rule, seed 0", picks[0])):
            t = evaluate_run(rows[i]["run_id"], ds, split="test").summary
            print(f"  {label}: {names[i]}; test median {t.median_m:.1f} / mean {t.mean_m:.1f} m")


if __name__ == "__main__":
    main()
