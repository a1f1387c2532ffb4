"""Many processes over one list of files (torchrun, ``accelerate launch``): who does which file,
and how rank 0 learns what the others did.

Files are dealt round-robin by input index (rank r takes files r, r+W, r+2W, ...), so each
file's outputs are exactly one process's, and rank r's k-th result is input k·W + r: rank 0
restores input order by interleaving. Only Python objects travel (results, counts), so the
process group is gloo even on GPUs: the models never communicate.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from audiotoken_cli.files import FileResult

_FILES_KEY = "audiotoken/files_done"
_RANKS_KEY = "audiotoken/ranks_done"


def launched_world() -> int:
    """WORLD_SIZE as torchrun and accelerate set it; 1 when run plainly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class Shards:
    """This process's share of the files and the few collectives a batch command needs."""

    def __init__(self):
        import torch

        from audiotoken_cli.training.distributed import init_distributed

        self.dist = init_distributed(torch.device("cpu"))
        if self.dist.world > 1 and torch.cuda.is_available():
            # One GPU per process: "cuda" then means this rank's own device.
            torch.cuda.set_device(self.dist.local_rank % torch.cuda.device_count())
        self._store = _default_store() if self.dist.world > 1 else None

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world(self) -> int:
        return self.dist.world

    @property
    def main(self) -> bool:
        return self.dist.main

    def file_done(self) -> None:
        if self._store is not None:
            self._store.add(_FILES_KEY, 1)

    def wait_for_others(self, on_count=lambda files: None, poll: float = 0.2) -> None:
        """Rank 0 shows every rank's finished files until all ranks are through."""
        if self._store is None:
            return
        self._store.add(_RANKS_KEY, 1)
        if not self.main:
            return
        while True:
            on_count(self._store.add(_FILES_KEY, 0))
            if self._store.add(_RANKS_KEY, 0) >= self.world:
                return
            time.sleep(poll)

    def gather(self, results: Sequence[FileResult]) -> list[FileResult]:
        """Every rank's results on rank 0, in input order (other ranks get their own back)."""
        if self.world <= 1:
            return list(results)
        import torch.distributed as dist

        shards = [None] * self.world if self.main else None
        dist.gather_object(list(results), shards, dst=0)
        if not self.main:
            return list(results)
        merged = []
        for k in range(max(len(shard) for shard in shards)):
            merged += [shard[k] for shard in shards if k < len(shard)]
        return merged

    def total_failures(self, failures: int) -> int:
        """The failure count summed over ranks, on every rank (so every exit code agrees)."""
        if self.world <= 1:
            return failures
        import torch
        import torch.distributed as dist

        count = torch.tensor([failures], dtype=torch.int64)
        dist.all_reduce(count)
        return int(count.item())

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


def _default_store():
    """The key-value store torchrun's rendezvous already made: ranks bump shared counters in it
    without a collective (ranks finish files at different times). Private in torch, hence the
    fallback: without it rank 0 shows only its own files."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError):
        return None
