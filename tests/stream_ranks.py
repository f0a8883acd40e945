"""A torchrun entry point for tests/test_sharding.py: DDP over the streaming sampler.

``python -m torch.distributed.run --nproc-per-node 2 tests/stream_ranks.py DATASET OUT``: every rank
reads its share of the train split of ``DATASET`` through :class:`ChunkShardSampler` (2 epochs), trains
a small float64 linear model under DDP (gloo), and writes ``OUT/rank<r>.json`` (the sample indices it
read and the chunks it was given, per epoch); rank 0 also writes ``OUT/params.pt``. :func:`fit` is also the one-process reference.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

SEED, BUFFER, BATCH, EPOCHS = 3, 256, 256, 2


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2, dtype=torch.float64)


def step(net: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor], weight: float) -> None:
    """One SGD step on ``batch``; its squared error summed and scaled by ``weight`` (1/global batch x ranks)."""
    x = batch["rss_dbm"][:, -1].nan_to_num(-150.0).double() / 100.0
    y = batch["target_m"][:, :2].double() / 100.0
    loss = ((net(x) - y) ** 2).sum() * weight
    opt.zero_grad()
    loss.backward()
    opt.step()


def fit(net: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], weight: float,
        opt: torch.optim.Optimizer) -> None:
    for batch in batches:
        step(net, opt, batch, weight)


def main(dataset: str, out: str) -> None:
    import torch.distributed as dist

    from rflocal_core.dataset.sharding import ChunkShardSampler
    from rflocal_core.dataset.torch_data import ZarrSamples

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ds = ZarrSamples(dataset, "train")
    sampler = ChunkShardSampler(ds, seed=SEED, buffer=BUFFER)
    net = torch.nn.parallel.DistributedDataParallel(model())
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    seen, chunks = [], []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler.batches(BATCH))
        batches = list(loader)
        seen.append([int(i) for b in batches for i in b["index"]])
        chunks.append(sorted(sampler.chunks()))
        fit(net, batches, world / BATCH, opt)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"seen": seen, "chunks": chunks}))
    if rank == 0:
        torch.save(net.module.state_dict(), Path(out, "params.pt"))
    # Both ranks leave together: a rank that tore gloo down while the other was still in its last
    # collective aborted at exit once ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
