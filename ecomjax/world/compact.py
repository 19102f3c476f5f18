"""Batch compaction: run a costly per-row function on the selected rows of a batch only."""

from collections.abc import Callable

import jax
import jax.numpy as jnp


def map_selected(selected: jnp.ndarray, fn: Callable[[jnp.ndarray], object], default, chunk: int):
    """`default` with each selected row replaced by `fn`'s output for it.

    selected [N] bool; default: a pytree of [N, ...] arrays; fn: rows [chunk] int32 -> a pytree like
    `default` with leading [chunk], each output row depending only on its own row. The selected rows are
    gathered `chunk` at a time, as many chunks as needed (none when nothing is selected), so the cost follows
    the number selected, not N. Not vmappable: the loop's trip count depends on the data.
    """
    n = selected.shape[0]
    chunk = max(1, min(chunk, n))
    num_chunks = -(-n // chunk)
    order = jnp.argsort(~selected, stable=True)                                     # selected rows first [N]
    order = jnp.concatenate([order, jnp.full((num_chunks * chunk - n,), n, order.dtype)])
    count = jnp.sum(selected)

    def body(i, out):
        pos = i * chunk + jnp.arange(chunk)                                          # [chunk]
        rows = jnp.where(pos < count, order[pos], n)                                 # n: padding, dropped
        values = fn(jnp.minimum(rows, n - 1))
        return jax.tree.map(lambda o, v: o.at[rows].set(v, mode="drop"), out, values)

    return jax.lax.fori_loop(0, (count + chunk - 1) // chunk, body, default)
