"""Does `--model auto` choose within the noise of its validation split? (brief B26, issue 15)

Usage: python select_noise.py WORKSPACE AUTO_RUN_ID [AUTO_RUN_ID ...]
Each AUTO_RUN_ID: a ``train --model auto --keep-candidates`` run. Every kept candidate predicts the val split
again (per-sample errors); the val samples are grouped into 200 m squares of their true positions and the squares
are resampled (2,000 paired bootstrap draws). Printed per candidate: val median, the bootstrap standard error of
its median's difference to the chosen (lowest val median) candidate, the share of draws where it beats the chosen
one; then the candidate a one-standard-error rule would choose (the first in the table's order whose median is
within one standard error of the lowest) and the test median / mean of the chosen and of that one.
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import evaluate_run, load_run  # noqa: E402
from rflocal_core.models.inputs import errors_m  # noqa: E402
from rflocal_core.models.transforms import InputTransform, load_transformed  # noqa: E402
from rflocal_core.train.auto import auto_table  # noqa: E402

DRAWS, SQUARE_M = 2000, 200.0


def val_errors(run_id: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    run = load_run(run_id)
    x = load_transformed(dataset, "val", InputTransform.from_dict(run.config.get("input_transform")),
                         with_maps=run.needs_maps)
    return errors_m(run.predict(x), x), x.truth_m[:, :2]


def main() -> None:
    rng = np.random.default_rng(0)
    for auto_id in sys.argv[2:]:
        table = auto_table(auto_id)
        ds = load_run(auto_id).config["dataset"]
        rows = [r for r in table["candidates"] if r["status"] == "trained" and r.get("run_id")]
        names = [r["model"] + (":" + r["variant"] if r.get("variant") else "") for r in rows]
        errs, truth = zip(*(val_errors(r["run_id"], ds) for r in rows), strict=True)
        e = np.stack(errs)  # [C, N]
        sq = np.floor(truth[0] / SQUARE_M).astype(np.int64)
        _, group = np.unique(sq, axis=0, return_inverse=True)
        members = [np.flatnonzero(group.ravel() == g) for g in range(group.max() + 1)]
        meds = np.median(e, 1)
        best = int(np.argmin(meds))
        boot = np.empty((DRAWS, len(rows)))
        for b in range(DRAWS):
            idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
            boot[b] = np.median(e[:, idx], 1)
        diff = boot - boot[:, [best]]
        se = diff.std(0)
        one_se = next(i for i in range(len(rows)) if meds[i] - meds[best] <= se[i])
        print(f"{auto_id} ({ds}; {e.shape[1]} val samples in {len(members)} squares of {SQUARE_M:.0f} m)")
        for i, n in enumerate(names):
            print(f"  {n:16s} val median {meds[i]:7.1f} m  SE of the difference {se[i]:6.1f} m  "
                  f"beats the lowest in {np.mean(diff[:, i] < 0) * 100:5.1f}% of draws")
        for label, i in (("lowest val median", best), ("one-SE rule", one_se)):
            t = evaluate_run(rows[i]["run_id"], ds, split="test").summary
            print(f"  {label}: {names[i]}; test median {t.median_m:.1f} / mean {t.mean_m:.1f} m")


if __name__ == "__main__":
    main()
