"""Helpers for training under `torchrun` / `accelerate launch` (DDP): which process writes files.

The trainers (transformers' Trainer under sentence-transformers) do the distributed work itself:
gradient all-reduce, sharded batches, and, with `gather_across_devices`, in-batch negatives from every
process. llmr only keeps file writes on one process and makes the others wait for them.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every process (a no-op outside a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
