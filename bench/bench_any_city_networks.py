"""Issue 19: networks in a scene larger than any they were trained on, scene frame against sample frame.

setnet and heimdall learn from samples each in its own 512 m scene (four nodes and the target drawn
uniformly, noise-free ToA and free-space RSS, no ray tracing), then predict in a 1.5 km scene whose
four nodes sit near its corners, on targets drawn over the whole scene. The scene frame encodes
positions in the training square (a 1.5 km scene is squeezed into it); the sample frame encodes each
sample relative to its own nodes (see rflocal_core/models/features.py). One run, medians and P95::

    PYTHONPATH=$PWD python bench/bench_any_city_networks.py [--steps 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_any_city_networks import BIG_NODES, _inputs, _small_scenes  # noqa: E402

from rflocal_core.models.features import FeatureSpec, make_batch  # noqa: E402
from rflocal_core.models.nets import build_network  # noqa: E402
from rflocal_core.models.neural import NeuralModel  # noqa: E402

CONFIGS = {"setnet": {"d_model": 32, "layers": 2},
           "heimdall": {"d_model": 32, "node_embedding_dim": 0, "node_dropout": [0.0], "rss_noise_db": 0.0,
                        "position_jitter_m": 0.0}}


def train(name: str, frame: str, data, steps: int) -> NeuralModel:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    data, seen = _small_scenes(4000, rng), _small_scenes(500, rng)
    targets = rng.uniform(-740, 740, (500, 2))
    unseen = _inputs(np.broadcast_to(BIG_NODES, (len(targets), 4, 3)).copy(), targets)
    print(f"| model | frame | seen 512 m median / P95 | unseen 1.5 km median / P95 | train s |")
    print("|---|---|---|---|---|")
    for name in CONFIGS:
        for frame in ("scene", "sample"):
            t0 = time.perf_counter()
            model = train(name, frame, data, args.steps)
            secs = time.perf_counter() - t0
            cells = []
            for x in (seen, unseen):
                err = np.hypot(*(model.predict(x).position_m - x.truth_m).T)
                cells.append(f"{np.median(err):.0f} / {np.percentile(err, 95):.0f} m")
            print(f"| {name} | {frame} | {cells[0]} | {cells[1]} | {secs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
