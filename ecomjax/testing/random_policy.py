"""Random structured actions (valid and invalid arguments alike) for fuzzing and the random baseline."""

import jax
import jax.numpy as jnp

from ecomjax.catalog.retrieval import NUM_EQ, NUM_RANGE, Filters
from ecomjax.catalog.schema import QUERY_TOKENS
from ecomjax.env import EnvParams
from ecomjax.tasks.action import MSG_ACTS, Action, Answer
from ecomjax.tasks.episode import EpisodeState
from ecomjax.tasks.goal import GENERIC_SLOT, MAX_REC, NUM_TASKS
from ecomjax.world.errors import ToolError
from ecomjax.world.state import ORDER_STATUSES, ToolCall
from ecomjax.world.tools import TOOL_NAMES


def random_action(key: jax.Array, state: EpisodeState, params: EnvParams) -> Action:
    """A uniformly random turn: tool ids in [-1, 17], ids partly out of range, random answer fields."""
    cap, catalog = params.cap, params.catalog
    nc = cap.calls_per_turn
    ks = jax.random.split(key, 24)
    p = catalog.num_products
    ints = lambda k, lo, hi, shape=(nc,): jax.random.randint(k, shape, lo, hi)  # noqa: E731
    calls = ToolCall(
        tool=ints(ks[0], -1, len(TOOL_NAMES) + 1),
        query=ints(ks[1], 0, 1 << 30, (nc, QUERY_TOKENS)) * (jax.random.uniform(ks[2], (nc, QUERY_TOKENS)) < 0.3),
        filters=Filters(
            eq=jnp.where(jax.random.uniform(ks[3], (nc, NUM_EQ)) < 0.2, ints(ks[4], -1, 60, (nc, NUM_EQ)), -1),
            lo=jnp.where(jax.random.uniform(ks[5], (nc, NUM_RANGE)) < 0.1,
                         jax.random.uniform(ks[6], (nc, NUM_RANGE)) * 100, -jnp.inf),
            hi=jnp.where(jax.random.uniform(ks[7], (nc, NUM_RANGE)) < 0.1,
                         jax.random.uniform(ks[8], (nc, NUM_RANGE)) * 500, jnp.inf)),
        top_k=ints(ks[9], -2, 60), product=ints(ks[10], -3, p + 3), variant=ints(ks[11], -2, 9),
        qty=ints(ks[12], -2, 120), order=ints(ks[13], -2, cap.orders + 2), line=ints(ks[14], -2, cap.cart_lines + 2),
        ids=ints(ks[15], -2, p + 3, (nc, cap.rerank)), reason=ints(ks[16], -1, 9), method=ints(ks[17], -1, 4),
        days=ints(ks[18], -5, 400), address=ints(ks[19], -1, 3), payment=ints(ks[20], -1, 3),
        error=jnp.where(jax.random.uniform(ks[20], (nc,)) < 0.05, int(ToolError.BAD_ARGUMENT), 0).astype(jnp.int32),
    )
    ka = jax.random.split(ks[21], 8)
    answer = Answer(
        present=jax.random.uniform(ka[0]) < 0.3, task=jax.random.randint(ka[1], (), -1, NUM_TASKS + 1),
        intent=jax.random.randint(ka[2], (), -1, 6), rec=jax.random.randint(ka[3], (MAX_REC,), -2, p + 3),
        n_rec=jnp.int32(MAX_REC), order=jax.random.randint(ka[4], (), -2, cap.orders + 2),
        line=jax.random.randint(ka[5], (), -2, cap.order_lines + 2),
        status=jax.random.randint(ka[6], (), -1, len(ORDER_STATUSES) + 1),
        policy_num=jnp.where(jax.random.uniform(ka[7]) < 0.2, jnp.nan, jax.random.normal(ka[7]) * 50),
        policy_cat=jax.random.randint(ka[7], (), -1, 50), done=jax.random.uniform(ka[0]) < 0.15,
    )
    return Action(
        msg_act=jax.random.randint(ks[22], (), 0, len(MSG_ACTS)),
        ask_slot=jax.random.randint(ks[23], (), -1, GENERIC_SLOT + 2),
        presented=jax.random.randint(ks[23], (MAX_REC,), -2, p + 3), calls=calls, answer=answer,
        format_ok=jax.random.uniform(ks[22]) < 0.97,
    )
