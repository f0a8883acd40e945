"""The figures issue 16 asks of a GPU machine, in one short run (docs/scale-out.md, "What a GPU machine must measure").

On a machine where torch and Dr.Jit see CUDA, each step timed and recorded (a failing step records its
error and the next ones still run):

1. ``backend``: the Mitsuba variant the workbench selects (``cuda_ad_mono_polarized``) and the GPU;
2. ``radio_maps``: the 6 radio maps of the default city (512 m, 6 rooftop sites) at ``--cell`` m with
   ``--map-samples`` rays per site, in this process, cold and warm: seconds per site;
3. ``ray_task``: a local Ray cluster; two probe tasks with the workbench's task options (``num_gpus=1``
   where the cluster has a GPU) report the ``CUDA_VISIBLE_DEVICES`` Ray set before their imports and the
   variant they select; then the 6 maps as Ray tasks (cold, warm), equal bit for bit to step 2's or not;
4. ``ddp_nccl``: ``torchrun --nproc-per-node 1 -m rflocal_core train ... device=cuda``: the run's DDP
   record (NCCL at world size 1) and its training samples/s;
5. ``training``: ``setnet`` on a small generated dataset in one process on CUDA, with bfloat16 autocast
   (``amp``) and without: training samples/s and test median.

Without CUDA it exits 2 with one line on stderr, unless ``--cpu-dry-run``: every step then runs on the
CPU at toy sizes to prove the script before a GPU session spends its minutes (none of its figures
means anything). Prints one JSON object and writes it to ``--out``::

    python bench/gpu_check.py --out "$OUT/gpu_check.json"          # on the GPU machine (about 5 minutes)
    python bench/gpu_check.py --cpu-dry-run --out /tmp/gpu_dry.json  # here
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCENE, DATASET = "gpu-city", "gpu-ds"


def _step(out: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one step; its figures, or its error, under ``out[name]``."""
    t0 = time.perf_counter()
    try:
        out[name] = fn()
    except Exception as exc:  # a step's failure is a result too: the next steps still run
        out[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
    out[name]["step_s"] = round(time.perf_counter() - t0, 2)
    print(name, json.dumps(out[name])[:400], file=sys.stderr, flush=True)


def _backend() -> dict[str, Any]:
    import torch

    from rflocal_core.backend import ensure_backend

    info = ensure_backend()
    cuda = torch.cuda.is_available()
    return {"variant": info.variant, "device": info.device, "torch_cuda": cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "bf16": bool(cuda and torch.cuda.is_bf16_supported()), "torch": torch.__version__}


def _maps(kwargs: dict[str, Any], executor: Any = None) -> tuple[dict[str, Any], Any]:
    """Cold and warm seconds of the 6 maps (in this process, or on Ray); the warm maps."""
    from rflocal_core.raytrace import compute_radio_map

    times, maps = [], None
    for _ in range(2):
        t0 = time.perf_counter()
        maps = compute_radio_map(SCENE, workers=None if executor else 1, executor=executor, **kwargs)
        times.append(time.perf_counter() - t0)
    sites = maps.path_gain_db.shape[0]
    return {"sites": sites, "cold_s": round(times[0], 2), "warm_s": round(times[1], 2),
            "warm_s_per_site": round(times[1] / sites, 3)}, maps


def probe_task(i: int) -> dict[str, Any]:
    """What a Ray worker sees before and after selecting the backend (a Ray task's body)."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    import ray

    from rflocal_core.backend import ensure_backend

    return {"task": i, "cuda_visible_devices": before, "ray_gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "variant": ensure_backend().variant}


def _ray(kwargs: dict[str, Any], local_maps: Any, cpus: int) -> dict[str, Any]:
    from rflocal_core import cluster
    from rflocal_core.cluster import ExecutorConfig

    executor = ExecutorConfig(executor="ray", ray_cpus=cpus)
    resources = cluster.connect(executor)
    probes = cluster.run_tasks(probe_task, [(0,), (1,)], config=executor, names=["probe 0", "probe 1"])
    figures, maps = _maps(kwargs, executor)
    cluster.shutdown()
    same = local_maps is not None and np.array_equal(maps.path_gain_db, local_maps.path_gain_db)
    return {"cluster_resources": {k: v for k, v in resources.items() if k in ("CPU", "GPU")},
            "probes": probes, "maps": figures, "maps_equal_to_in_process": bool(same)}


def _dataset(samples: int) -> None:
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="gpu-small", procedural=ProceduralConfig(size_m=240, seed=4),
                            sites=SiteConfig(count=5)))
    generate_dataset(GenerationConfig(name=DATASET, scenes=("gpu-small",), samples_per_scene=samples,
                                      cell_size_m=4.0, map_samples_per_tx=1_000_000, paths_samples_per_src=10_000,
                                      min_sites=2))


def _throughput(run_id: str) -> dict[str, Any]:
    from rflocal_core.infer import evaluate_run
    from rflocal_core.train import read_metrics

    rows = read_metrics(run_id)
    seconds = sum(r["seconds"] for r in rows)
    test = evaluate_run(run_id, DATASET, split="test").summary
    return {"samples_per_s": round(sum(r["samples"] for r in rows) / seconds, 1), "epochs": len(rows),
            "test_median_m": round(test.median_m, 3)}


def _ddp(device: str, epochs: int) -> dict[str, Any]:
    tc = {"epochs": epochs, "patience": 0, "batch_size": 256, "device": device}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
           "-m", "rflocal_core", "train", "--dataset", DATASET, "--model", "setnet", "--seed", "1",
           "--train-config", json.dumps(tc)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=600)
    if proc.returncode != 0:
        msg = f"torchrun exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"
        raise RuntimeError(msg)
    run_id = json.loads(proc.stdout)["run_id"]
    from rflocal_core.train.runs import run_dir

    config = json.loads((run_dir(run_id) / "config.json").read_text(encoding="utf-8"))
    return {"run_id": run_id, "ddp": config.get("ddp"), **_throughput(run_id)}


def _training(device: str, epochs: int) -> dict[str, Any]:
    from rflocal_core.train import train

    out = {}
    for amp in (True, False):
        tc = {"epochs": epochs, "patience": 0, "batch_size": 256, "device": device, "amp": amp}
        result = train(DATASET, "setnet", train_config=tc, seed=1)
        out["bf16_autocast" if amp else "float32"] = {"run_id": result.run_id, **_throughput(result.run_id)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="no CUDA: run every step on the CPU at toy sizes")
    parser.add_argument("--cell", type=float, default=1.0, help="radio map cell size, m")
    parser.add_argument("--map-samples", type=int, default=10_000_000, help="rays per site")
    parser.add_argument("--samples", type=int, default=3000, help="samples of the training dataset")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--ray-cpus", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print("error: gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False); "
              "run it on a GPU machine, or with --cpu-dry-run to check the script", file=sys.stderr)
        return 2
    if args.cpu_dry_run:
        args.cell, args.map_samples, args.samples, args.epochs, args.ray_cpus = 8.0, 100_000, 300, 2, 2
    device = "cpu" if args.cpu_dry_run else "cuda"
    os.environ["RFLOCAL_WORKSPACE"] = tempfile.mkdtemp(prefix="rflocal-gpu-check-")
    os.environ.pop("RAY_ADDRESS", None)
    out: dict[str, Any] = {"dry_run_on_cpu": args.cpu_dry_run, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                           "cpus": os.cpu_count(), "cell_m": args.cell, "map_samples": args.map_samples}
    from rflocal_core.scene import SceneConfig, build_scene

    _step(out, "backend", _backend)
    build_scene(SceneConfig(name=SCENE))
    kwargs = {"cell_size_m": args.cell, "samples_per_tx": args.map_samples, "max_depth": 3, "diffraction": True,
              "plane_height_m": 1.5}
    local: dict[str, Any] = {}

    def maps_here() -> dict[str, Any]:
        figures, local["maps"] = _maps(kwargs)
        return figures

    _step(out, "radio_maps", maps_here)
    _step(out, "ray_task", lambda: _ray(kwargs, local.get("maps"), args.ray_cpus))
    _step(out, "dataset", lambda: _dataset(args.samples) or {"samples": args.samples})
    _step(out, "ddp_nccl", lambda: _ddp(device, args.epochs))
    _step(out, "training", lambda: _training(device, args.epochs))
    text = json.dumps(out, indent=1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    failed = [k for k, v in out.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
