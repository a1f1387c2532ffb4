"""Data parallelism for training: torchrun and ``accelerate launch`` both set RANK / WORLD_SIZE / LOCAL_RANK."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _average_gradients(model: torch.nn.Module, world: Dist) -> None:
    """Data parallelism by hand: the embedder is tiny, so one all-reduce per step is cheap and
    spares us DDP's wrapper around a model whose inputs come from frozen networks."""
    if world.world <= 1:
        return
    import torch.distributed as dist

    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world.world


def _average_metrics(totals: dict[str, float], world: Dist) -> dict[str, float]:
    """The logged loss is the mean over all processes, not rank 0's share alone."""
    if world.world <= 1:
        return totals
    import torch.distributed as dist

    names = sorted(totals)
    values = torch.tensor([totals[name] for name in names], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        values = values.cuda()
    dist.all_reduce(values)
    return {name: float(value) / world.world for name, value in zip(names, values.cpu())}


def is_main_process() -> bool:
    """Rank 0, or not distributed at all: the process that writes and reports."""
    return int(os.environ.get("RANK", "0")) == 0
