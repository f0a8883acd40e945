#!/usr/bin/env bash
# brief B26: `train --model auto` (select one_se, the default since bdae4d5) on the three Duke area splits and
# Antwerp, each evaluated on test. Usage: bash bench/auto_b26/auto_runs.sh WORKSPACE [extra train flags]
# (the datasets as bench_real imports them: antwerp, duke-b200-s0..2)
set -euo pipefail
export RFLOCAL_WORKSPACE=$1 OMP_NUM_THREADS=1
shift
for ds in duke-b200-s0 duke-b200-s1 duke-b200-s2 antwerp; do
  run=$(.venv/bin/python -m rflocal_core train --dataset "$ds" --model auto --max-minutes 5 \
        --candidates knn,knn:radio_map,lgbm,knn_lgbm,ensemble "$@" | .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['run_id'])")
  .venv/bin/python - "$run" "$ds" <<'PY'
import sys
from rflocal_core.infer import evaluate_run
from rflocal_core.train.auto import auto_table
run, ds = sys.argv[1:3]
t = auto_table(run)
cands = ", ".join(f"{c['model']}{':' + c['variant'] if c.get('variant') else ''} {c['val_median_m']:.0f}"
                  f" (SE {c.get('val_se_m') or 0:.0f})" for c in t["candidates"] if c["status"] == "trained")
e = evaluate_run(run, ds, split="test")
s, cal = e.summary, e.calibration
print(f"{ds}: val median (SE of the gap to the lowest): {cands} -> {t['chosen']}; test {s.median_m:.1f} / "
      f"{s.mean_m:.1f} m; inside 1σ / 2σ {100 * cal.inside_1sigma:.1f} / {100 * cal.inside_2sigma:.1f}%  ({run})")
PY
done
