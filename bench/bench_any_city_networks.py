"""Issue 19: networks in a scene larger than any they were trained on, scene frame against sample/window frame.

setnet and heimdall learn from samples each in its own 512 m scene (four nodes and the target drawn
uniformly, noise-free ToA and free-space RSS, no ray tracing); mapformer and locheatmap from eight
512 m scenes with free-space radio maps (the same reports, plus exact bearings). Then each predicts in
a 1.5 km scene (its own free-space maps) whose four nodes sit near its corners, on targets drawn over
the whole scene. The scene frame encodes positions (and, for the map networks, one map grid) in the
training square, so a 1.5 km scene is squeezed into it; the sample frame encodes each sample relative
to its own nodes; the window frame cuts each sample's maps at a fixed cell size around a first
estimate from its reports (see rflocal_core/models/features.py, maps.py, window.py). ``--noise`` adds
measurement noise (ToA: 3 m Gaussian plus, on half the links, an exponential 30 m NLoS excess; AoA 5°;
RSS 4 dB) to training and test alike. One run, medians and P95::

    PYTHONPATH=$PWD python bench/bench_any_city_networks.py [--steps 2000] [--map-steps 300]
        [--models setnet,heimdall,mapformer,locheatmap] [--noise]

``--raytraced`` instead generates (Sionna, in a temporary workspace) two 256 m procedural cities for
training and a 768 m one held out whole, trains mapformer and locheatmap in both frames through
``train`` (``--epochs``) and scores them with ``evaluate_run`` on ``test`` and ``test_unseen``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rflocal_core.constants import C_M_PER_NS
from rflocal_core.models import Inputs
from rflocal_core.models.features import FeatureSpec, make_batch
from rflocal_core.models.nets import build_network
from rflocal_core.models.neural import NeuralModel
from tests.test_any_city_networks import (
    BIG_NODES,
    MAP_NETS,
    _inputs,
    _map_scenes,
    _small_map_scenes,
    _small_scenes,
    train_map_network,
)

CONFIGS = {"setnet": {"d_model": 32, "layers": 2},
           "heimdall": {"d_model": 32, "node_embedding_dim": 0, "node_dropout": [0.0], "rss_noise_db": 0.0,
                        "position_jitter_m": 0.0}}
#: The map networks as the benchmark trains them: mapformer 64 cells of 8 m, locheatmap 32 of 16 m (512 m).
MAP_CONFIGS = {"mapformer": {"d_model": 32, "heads": 2, "layers": 1, "map_layers": 1, "map_res": 64, "cell_m": 8.0,
                             "patch_size": 8, "grid_cells": 16, "top_k": 4},
               "locheatmap": {**MAP_NETS["locheatmap"], "completion_channels": [8, 16], "unet_channels": [8, 16, 32],
                              "latent_dim": 32}}


def train(name: str, frame: str, data: Inputs, steps: int) -> NeuralModel:
    torch.manual_seed(0)
    spec = FeatureSpec.fit(data, frame=frame)
    net = build_network(name, {**CONFIGS[name], "frame": frame}, vocab_size=len(spec.node_keys))
    batch = make_batch(data, spec)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    for _ in range(steps):
        part = batch.index(torch.randint(0, len(batch), (64,)))
        loss, _ = net.loss(part, net(part))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return NeuralModel(name, net.eval(), spec)


def noisy(x: Inputs, rng: np.random.Generator) -> Inputs:
    """``x`` with measurement noise (see the module doc); node positions, maps and truth unchanged."""
    nlos = np.where(rng.random(x.toa_ns.shape) < 0.5, rng.exponential(30.0, x.toa_ns.shape), 0.0)
    toa_m = x.toa_ns * C_M_PER_NS + np.abs(rng.normal(0, 3.0, x.toa_ns.shape)) + nlos
    return dataclasses.replace(x, toa_ns=toa_m / C_M_PER_NS, aoa_deg=(x.aoa_deg + rng.normal(0, 5.0, x.aoa_deg.shape)) % 360,
                               rss_dbm=x.rss_dbm + rng.normal(0, 4.0, x.rss_dbm.shape))


def cells(model: NeuralModel, *xs: Inputs) -> list[str]:
    out = []
    for x in xs:
        err = np.hypot(*(model.predict(x).position_m - x.truth_m).T)
        out.append(f"{np.median(err):.0f} / {np.percentile(err, 95):.0f} m")
    return out


def raytraced(models: list[str], epochs: int, samples: int) -> None:
    """The ray-traced check (see the module doc): seen and unseen medians through the real pipeline."""
    import tempfile

    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.infer import evaluate_run
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene
    from rflocal_core.settings import use_workspace
    from rflocal_core.train import train as train_run

    with tempfile.TemporaryDirectory() as tmp, use_workspace(tmp):
        t0 = time.perf_counter()
        for name, size, seed, sites in (("a", 256, 1, 4), ("b", 256, 2, 4), ("c", 768, 3, 8)):
            build_scene(SceneConfig(name=name, procedural=ProceduralConfig(size_m=size, seed=seed),
                                    sites=SiteConfig(count=sites)))
        generate_dataset(GenerationConfig(name="ac", scenes=("a", "b", "c"), unseen_scenes=("c",),
                                          samples_per_scene=samples, cell_size_m=8.0, min_sites=3))
        print(f"dataset: {time.perf_counter() - t0:.0f} s (2 x 256 m training cities, a 768 m one held out)")
        print("| model | frame | seen test median / P95 | unseen 768 m median / P95 | train s |")
        print("|---|---|---|---|---|")
        for name in (m for m in models if m in MAP_CONFIGS):
            for frame in ("scene", "window"):
                cfg = {**MAP_CONFIGS[name], "frame": frame}
                t0 = time.perf_counter()
                run_id = train_run("ac", name, model_config=cfg, train_config={"epochs": epochs, "batch_size": 64}).run_id
                secs = time.perf_counter() - t0
                row = []
                for split in ("test", "test_unseen"):
                    summary = evaluate_run(run_id, "ac", split=split).summary
                    row.append(f"{summary.median_m:.0f} / {summary.p95_m:.0f} m")
                print(f"| {name} | {frame} | {' | '.join(row)} | {secs:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="training steps of setnet and heimdall")
    ap.add_argument("--map-steps", type=int, default=300, help="training steps of mapformer and locheatmap")
    ap.add_argument("--models", default="setnet,heimdall,mapformer,locheatmap")
    ap.add_argument("--noise", action="store_true", help="measurement noise on training and test reports")
    ap.add_argument("--raytraced", action="store_true", help="the ray-traced check through train and evaluate")
    ap.add_argument("--epochs", type=int, default=20, help="--raytraced: training epochs")
    ap.add_argument("--samples", type=int, default=400, help="--raytraced: samples per city")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    torch.set_num_threads(1)
    if args.raytraced:
        raytraced(models, args.epochs, args.samples)
        return
    rng = np.random.default_rng(0)
    add = (lambda x: noisy(x, rng)) if args.noise else (lambda x: x)
    targets = rng.uniform(-740, 740, (500, 2))
    print("| model | frame | seen 512 m median / P95 | unseen 1.5 km median / P95 | train s |")
    print("|---|---|---|---|---|")
    if any(m in CONFIGS for m in models):
        data, seen = add(_small_scenes(4000, rng)), add(_small_scenes(500, rng))
        unseen = add(_inputs(np.broadcast_to(BIG_NODES, (len(targets), 4, 3)).copy(), targets))
        for name in (m for m in models if m in CONFIGS):
            for frame in ("scene", "sample"):
                t0 = time.perf_counter()
                model = train(name, frame, data, args.steps)
                secs = time.perf_counter() - t0
                print(f"| {name} | {frame} | {' | '.join(cells(model, seen, unseen))} | {secs:.0f} |", flush=True)
    if any(m in MAP_CONFIGS for m in models):
        scenes = _small_map_scenes(8, 400, rng)
        data = add(scenes)
        seen = add(_map_scenes([(name, scenes.maps[name].site_pos_m, 256.0, rng.uniform(-243, 243, (60, 2)))
                                for name in scenes.scenes]))
        unseen = add(_map_scenes([("big", BIG_NODES, 750.0, targets)]))
        for name in (m for m in models if m in MAP_CONFIGS):
            for frame in ("scene", "window"):
                t0 = time.perf_counter()
                model = train_map_network(name, frame, data, args.map_steps, MAP_CONFIGS[name])
                secs = time.perf_counter() - t0
                print(f"| {name} | {frame} | {' | '.join(cells(model, seen, unseen))} | {secs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
