"""Building blocks of adversarial policies for the task tests: fixed recommendation lists, mode selection."""

import jax
import jax.numpy as jnp

from ecomjax.tasks.action import Action


def with_rec(action: Action, rec: jnp.ndarray) -> Action:
    """`action` presenting and answering with the recommendation list `rec` [MAX_REC] (-1 pads)."""
    rec = rec.astype(jnp.int32)
    return action.replace(presented=rec, answer=action.answer.replace(rec=rec, n_rec=jnp.sum(rec >= 0).astype(jnp.int32)))


def pick(mode: jnp.ndarray, options: tuple[Action, ...]) -> Action:
    """options[mode] for a traced mode (every option is computed)."""
    out = options[0]
    for m, option in enumerate(options[1:], start=1):
        out = jax.tree.map(lambda a, b, m=m: jnp.where(mode == m, a, b), option, out)
    return out
