#!/usr/bin/env bash
# Issue 15, brief B23: the networks' hyperparameter search (train --search-trials) for fpnet_knn and fpnet on
# Antwerp's val split, seven searches side by side on one GPU (4 fpnet_knn, 3 fpnet; seeds 0-3 / 0-2).
# Usage: bash bench/antwerp_b23/gpu_search.sh WS OUT [SEARCH_MINUTES [FINAL_MINUTES]]
#   WS: a workspace holding bench_real's Antwerp import (dataset "antwerp"); OUT: a folder for the logs and
#   summary.json (every run's config, its search and its status). Measured on an H200 with 5.5 and 2:
#   433 s for all seven (bench/results/real-b23-antwerp-gpu-search.json).
set -u
WS=$1; OUT=$2; SM=${3:-5.5}; FM=${4:-2}
export RFLOCAL_WORKSPACE=$WS OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
mkdir -p "$OUT"
t0=$(date +%s)
for job in fpnet_knn:0 fpnet_knn:1 fpnet_knn:2 fpnet_knn:3 fpnet:0 fpnet:1 fpnet:2; do
  m=${job%:*}; s=${job#*:}
  $PY -m rflocal_core train --dataset antwerp --model "$m" --seed "$s" --device cuda --search-trials 8 \
    --search-minutes "$SM" --max-minutes "$FM" --epochs 80 --patience 20 --select-on mean > "$OUT/log-$m-$s.txt" 2>&1 &
done
wait
echo "all done in $(( $(date +%s) - t0 )) s"
$PY - "$WS" "$OUT" <<'PY'
import json, pathlib, sys
runs, out = pathlib.Path(sys.argv[1]) / "runs", {}
for r in sorted(runs.iterdir()):
    c = json.loads((r / "config.json").read_text())
    st = json.loads((r / "status.json").read_text()) if (r / "status.json").exists() else {}
    out[r.name] = {"model": c["model"], "seed": c["seed"], "model_config": c["model_config"],
                   "train_config": c["train_config"], "search": c.get("search"), "status": st}
pathlib.Path(sys.argv[2], "summary.json").write_text(json.dumps(out, indent=1))
for k, v in out.items():
    s = v["search"] or {}
    print(k, "best val", s.get("best_value"), s.get("best_params"), "final", (v["status"].get("best") or {}).get("mean_m"))
PY
