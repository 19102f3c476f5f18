"""Host-side text of an episode's customer turns, from the structured state (deterministic per key)."""

import functools

import jax
import numpy as np

from ecomjax.catalog.types import Catalog, Vocab
from ecomjax.tasks.difficulty import difficulty
from ecomjax.tasks.episode import EpisodeState
from ecomjax.user.text import opening_message, reply_message, rng_for


def _host(tree):
    return jax.tree.map(lambda x: x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else np.asarray(x),
                        jax.device_get(tree))


@functools.lru_cache(maxsize=None)
def p_noise_at(d: int) -> float:
    """Typo rate of difficulty d (host float, cached: rendering runs per episode and turn)."""
    return float(difficulty(d).p_noise)


def customer_message(state: EpisodeState, catalog: Catalog, vocab: Vocab, asked_slot: int = -1) -> str:
    """The customer's latest message of one (unbatched) episode: the opening at turn 0, else the reply to
    a turn that asked about `asked_slot` (-1: no question)."""
    state = _host(state)
    p_noise = p_noise_at(int(state.d))
    rng = rng_for(state.key, int(state.turn))
    world = jax.device_get(state.world)
    if int(state.turn) == 0:
        goal = jax.tree.map(lambda x: x[0], state.goal)
        text, _ = opening_message(goal, world, catalog, vocab, rng, p_noise=p_noise,
                                  journey_hint=int(state.num_intents) > 1)
        return text
    return reply_message(state.message, state.goal, world, catalog, vocab, rng, p_noise=p_noise,
                         asked_slot=asked_slot)
