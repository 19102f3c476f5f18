"""Multi-process runs (TPU pods, multi-GPU hosts, or CPU processes with gloo collectives): start-up, gathers
of host values in process order and the gradient all-reduce.

Each process keeps its own copy of the policy (sharded over its own devices by the trainer's mesh), plays
its share of the problems and computes gradients on its rows; gradients are summed over processes so every
process applies the same update. With one process every function is the identity."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """`jax.distributed.initialize` (all None: the platform's auto-detection, e.g. on TPU pods)."""
    if coordinator is None:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)


def process() -> tuple[int, int]:
    """(index of this process, number of processes)."""
    return jax.process_index(), jax.process_count()


def gather(x: np.ndarray) -> np.ndarray:
    """Every process's `x` [n, ...] concatenated in process order (shapes must match across processes)."""
    if jax.process_count() == 1:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))


def global_max(x: int) -> int:
    return int(gather(np.asarray([x])).max())


def global_sum(x: float) -> float:
    return float(gather(np.asarray([x], np.float64)).sum())


def allreduce_sum(tree):
    """The elementwise sum of a pytree of arrays over processes, placed like the input (data parallelism
    across processes by host all-reduce: every process then applies the same update to its own copy)."""
    if jax.process_count() == 1:
        return tree
    return jax.tree.map(lambda x: jax.device_put(gather(np.asarray(x)[None]).sum(0).astype(x.dtype), x.sharding),
                        tree)
