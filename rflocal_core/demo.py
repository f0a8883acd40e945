"""The demo that works out of the box: small models trained by this project's own pipeline.

``build_demo()`` (``make demo-model``) runs the whole pipeline in a scratch workspace: the
demo scene (``make demo-scene``: the procedural city of seed 7, 6 rooftop sites at 3.5 GHz), a
ray-traced ``ue`` dataset with RSS, ToA and AoA, a ``setnet`` network and a kNN baseline.
It ships the two runs in ``assets/demo/runs/``, example measurement files from the test
split in ``assets/``, the test split itself as a small dataset (``assets/demo/demo-test``:
its samples, the site positions and the two maps reading them needs) and the errors
measured on them in ``assets/demo/demo.json``.

``install_demo()`` copies the shipped runs and the test split into the workspace so Live
Inference predicts, and Metrics scores the demo runs on their own data, before anything is
trained.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core.progress import ProgressFn, as_progress, sub_progress
from rflocal_core.workspace import atomic_write_text

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEMO_DIR = ASSETS_DIR / "demo"
MANIFEST = DEMO_DIR / "demo.json"
EXAMPLE_FILE = ASSETS_DIR / "example_measurements.json"
EXAMPLE_SINGLE = ASSETS_DIR / "example_single.json"

DEMO_SCENE = "demo"
DEMO_DATASET = "demo-ds"
DEMO_RUNS = ("demo-setnet", "demo-knn")
#: The demo setnet's options: the scene frame, as the shipped run was trained (tests read it as tied to its scene).
DEMO_SETNET_CONFIG = {"frame": "scene"}
#: The demo dataset's test split, shipped as a dataset of its own (every sample in its ``test`` split).
DEMO_TEST_DATASET = "demo-test"
TEST_SPLIT_DIR = DEMO_DIR / DEMO_TEST_DATASET
#: Scene arrays the shipped split keeps: what reading its samples needs (site positions; the
#: transmit power is the RSS map less the path-gain map). The other rasters stay out (size).
SPLIT_SCENE_ARRAYS = ("site_pos_m", "path_gain_db", "rss_dbm", "footprint")
#: Files of a run that are shipped (resume.pt is not: a finished run is not resumed).
RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "model.pt", "reference.json")
#: The demo scene's footprints (WGS84 GeoJSON), shipped with each demo run for its map.
BUILDINGS_FILE = "buildings.geojson"
EXAMPLE_SAMPLES = 25


def demo_scene_config() -> Any:
    """The demo scene, as ``make demo-scene`` builds it: city and materials of seed 7, sites of seed 0.

    The shipped runs were trained on it; sites of seed 0 were the default when they were built.
    """
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig

    return SceneConfig(name=DEMO_SCENE, procedural=ProceduralConfig(seed=7), seed=7, sites=SiteConfig(seed=0))


def build_demo(
    *, samples: int = 8000, epochs: int = 150, max_minutes: float = 5.0, progress: ProgressFn | None = None,
    out_dir: Path = DEMO_DIR, assets_dir: Path = ASSETS_DIR,
) -> dict[str, Any]:
    """Rebuild the shipped demo runs and example files (about 8 minutes on 2 CPU cores).

    Parameters
    ----------
    samples : int
        Samples of the demo dataset (80/10/10 train/val/test).
    epochs, max_minutes : int, float
        Training budget of the ``setnet`` run.
    out_dir, assets_dir : Path
        Where the runs + manifest and the example files go.

    Returns
    -------
    dict
        The manifest written to ``demo.json``.
    """
    from rflocal_core import settings
    from rflocal_core.dataset import GenerationConfig, export_dataset, generate_dataset
    from rflocal_core.measurements import dump_measurements
    from rflocal_core.scene import build_scene
    from rflocal_core.train import train

    report = as_progress(progress)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rflocal-demo-") as tmp:
        with settings.use_workspace(tmp):
            report("scene", 0.0)
            build_scene(demo_scene_config())
            report("ray tracing and dataset", 0.05)
            generate_dataset(GenerationConfig(name=DEMO_DATASET, scenes=(DEMO_SCENE,), samples_per_scene=samples,
                                              seed=0),
                             progress=sub_progress(report, prefix="dataset: ", span=(0.05, 0.5)))
            report("training setnet", 0.5)
            net = train(DEMO_DATASET, "setnet", run_id=DEMO_RUNS[0], seed=0, model_config=DEMO_SETNET_CONFIG,
                        train_config={"epochs": epochs, "max_minutes": max_minutes, "patience": 30},
                        progress=sub_progress(report, prefix="setnet: ", span=(0.5, 0.9)))
            report("fitting knn", 0.9)
            knn = train(DEMO_DATASET, "knn", run_id=DEMO_RUNS[1], seed=0)
            ms = export_dataset(DEMO_DATASET, split="test", limit=EXAMPLE_SAMPLES)
            single = export_dataset(DEMO_DATASET, split="test", limit=1)
            staging = Path(tmp) / "ship"
            for run_id in DEMO_RUNS:
                (staging / run_id).mkdir(parents=True)
                for name in RUN_FILES:
                    shutil.copy2(Path(tmp) / "runs" / run_id / name, staging / run_id / name)
                # The footprints travel with the run so its map shows buildings in any workspace.
                shutil.copy2(Path(tmp) / "scenes" / DEMO_SCENE / BUILDINGS_FILE, staging / run_id / BUILDINGS_FILE)
            test_errors = {r: _test_errors(r, DEMO_DATASET) for r in DEMO_RUNS}
            write_test_split(DEMO_DATASET, Path(tmp) / "ship-split")
        runs_out = out_dir / "runs"
        if runs_out.exists():
            shutil.rmtree(runs_out)
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, runs_out)
        shutil.rmtree(out_dir / DEMO_TEST_DATASET, ignore_errors=True)
        shutil.copytree(Path(tmp) / "ship-split", out_dir / DEMO_TEST_DATASET)
    dump_measurements(ms, assets_dir / EXAMPLE_FILE.name)
    dump_measurements(single, assets_dir / EXAMPLE_SINGLE.name)
    examples = {run_id: _example_errors(run_id, runs_out, [assets_dir / EXAMPLE_FILE.name,
                                                           assets_dir / EXAMPLE_SINGLE.name])
                for run_id in DEMO_RUNS}
    manifest = {
        "runs": list(DEMO_RUNS), "scene": DEMO_SCENE, "dataset": DEMO_DATASET, "samples": samples,
        "scene_config": "procedural, seed 7 (make demo-scene), 6 rooftop sites, 3.5 GHz, 43 dBm",
        "dataset_config": "ue mode, RSS + ToA + AoA, Sionna RT maps at 2 m, 6 dB shadowing + 2 dB noise, seed 0",
        "training": {"setnet": {"median_m": net.summary.median_m, "p95_m": net.summary.p95_m,
                                "best_epoch": net.best_epoch, "epochs_run": net.epochs_run, "seconds": net.seconds},
                     "knn": {"median_m": knn.summary.median_m, "p95_m": knn.summary.p95_m, "seconds": knn.seconds}},
        "test_split": test_errors,
        "examples": examples,
        "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_text(out_dir / MANIFEST.name, json.dumps(manifest, indent=2))
    report("done", 1.0)
    return manifest


def _test_errors(run_id: str, dataset: str) -> dict[str, float]:
    from rflocal_core.infer import load_run
    from rflocal_core.metrics import error_summary
    from rflocal_core.models.inputs import errors_m, load_inputs

    run = load_run(run_id)
    x = load_inputs(dataset, "test", with_maps=False)
    s = error_summary(errors_m(run.predict(x), x))
    return {"count": s.count, "median_m": round(s.median_m, 2), "p95_m": round(s.p95_m, 2),
            "mean_m": round(s.mean_m, 2)}


def _example_errors(run_id: str, runs_root: Path, files: list[Path]) -> dict[str, Any]:
    """Errors of a shipped run on the example files, and the bounds the tests assert."""
    from rflocal_core import settings
    from rflocal_core.infer import predict_file

    with tempfile.TemporaryDirectory(prefix="rflocal-demo-check-") as tmp, settings.use_workspace(tmp):
        shutil.copytree(runs_root / run_id, Path(tmp) / "runs" / run_id)
        out = {}
        for file in files:
            errs = np.array([p.error_m for p in predict_file(run_id, file).runs[0].predictions], float)
            med, p95 = float(np.median(errs)), float(np.percentile(errs, 95))
            # Inference is deterministic on the CPU; the margin covers other BLAS builds.
            out[file.name] = {"count": int(len(errs)), "median_m": round(med, 3), "p95_m": round(p95, 3),
                              "median_bound_m": round(1.1 * med + 0.5, 2), "p95_bound_m": round(1.1 * p95 + 0.5, 2)}
    return out


def write_test_split(dataset: str, out: Path, *, split: str = "test") -> dict[str, Any]:
    """Write the ``split`` of a generated ``dataset`` as a dataset of its own at ``out`` (all in ``test``).

    The samples are copied as they are; of each scene only :data:`SPLIT_SCENE_ARRAYS` are kept.
    The attrs (configuration, config digest, scene digests) are the source's, so the Metrics
    scene check and the runs trained on the source see the same data; ``split_of`` names the source.

    Returns
    -------
    dict
        The ``counts`` written (``samples``, ``splits``).
    """
    import zarr

    from rflocal_core.dataset import store

    src = store.open_dataset(dataset)
    idx = np.asarray(src[f"splits/{split}"][...], dtype=np.int64)
    dst = zarr.open_group(str(out), mode="w")
    for name in src["scenes"]:
        group = dst.require_group(f"scenes/{name}")
        group.attrs.update(dict(src[f"scenes/{name}"].attrs))
        for key in SPLIT_SCENE_ARRAYS:
            if key in src[f"scenes/{name}"]:
                store.write_array(group, key, np.asarray(src[f"scenes/{name}/{key}"][...]))
    samples = dst.require_group("samples")
    samples.attrs.update(dict(src["samples"].attrs))
    for key in src["samples"]:
        store.write_array(samples, key, np.asarray(src[f"samples/{key}"][...])[idx], chunk_rows=store.SAMPLE_CHUNK)
    splits = {k: (np.arange(len(idx), dtype=np.int64) if k == "test" else np.zeros(0, np.int64)) for k in store.SPLITS}
    for key, rows in splits.items():
        store.write_array(dst.require_group("splits"), key, rows, chunk_rows=max(len(rows), 1))
    source_counts = dict(src.attrs).get("counts", {})
    counts = {"samples": len(idx), "splits": {k: len(v) for k, v in splits.items()},
              **{k: source_counts[k] for k in ("sites_max", "steps_max") if k in source_counts}}
    dst.attrs.update({**dict(src.attrs), "counts": counts, "split_of": {"dataset": dataset, "split": split}})
    return counts


def training_datasets(dataset: str) -> tuple[str, ...]:
    """The datasets whose runs are scored on ``dataset`` by default: itself, and for the shipped
    demo test split the demo dataset it was drawn from."""
    return (dataset, DEMO_DATASET) if dataset == DEMO_TEST_DATASET else (dataset,)


def demo_available() -> bool:
    """Whether the shipped demo runs are present in ``assets/demo``."""
    return all((DEMO_DIR / "runs" / r / "model.pt").is_file() for r in DEMO_RUNS)


def install_demo() -> list[str]:
    """Copy the shipped demo runs into the workspace (those missing).

    Returns the run ids installed now (empty when they were all there). No scene is built:
    the runs carry the demo scene's footprints for their maps, and a workspace scene of the
    same name stays the user's own.
    """
    from rflocal_core.train.runs import runs_dir
    from rflocal_core.workspace import staged_dir

    if not demo_available():
        return []
    install_test_split()
    installed = []
    for run_id in DEMO_RUNS:
        final = runs_dir() / run_id
        if (final / "config.json").is_file():
            continue
        try:
            with staged_dir(final) as tmp:
                for name in (*RUN_FILES, BUILDINGS_FILE):
                    if (DEMO_DIR / "runs" / run_id / name).is_file():
                        shutil.copy2(DEMO_DIR / "runs" / run_id / name, tmp / name)
        except OSError:  # another session installed it meanwhile
            continue
        installed.append(run_id)
    return installed


def install_test_split() -> bool:
    """Copy the shipped demo test split into the workspace as dataset :data:`DEMO_TEST_DATASET`.

    Returns True when installed now (False: already there, not shipped, or a dataset of that name
    is the user's own).
    """
    from rflocal_core.dataset.store import dataset_path
    from rflocal_core.workspace import staged_dir

    final = dataset_path(DEMO_TEST_DATASET)
    if not (TEST_SPLIT_DIR / "zarr.json").is_file() or final.exists():
        return False
    try:
        with staged_dir(final) as tmp:
            shutil.copytree(TEST_SPLIT_DIR, tmp, dirs_exist_ok=True)
    except OSError:  # another session installed it meanwhile
        return False
    return True


def shipped_not_installed() -> dict[str, int]:
    """How many shipped demo runs and datasets are not (yet) in the workspace: installed on first use."""
    from rflocal_core.dataset.store import dataset_path
    from rflocal_core.train.runs import runs_dir

    runs = sum(1 for r in DEMO_RUNS if (DEMO_DIR / "runs" / r / "model.pt").is_file()
               and not (runs_dir() / r / "config.json").is_file())
    split = (TEST_SPLIT_DIR / "zarr.json").is_file() and not dataset_path(DEMO_TEST_DATASET).exists()
    return {"runs": runs, "datasets": int(split)}
