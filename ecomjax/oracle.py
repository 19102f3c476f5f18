"""`ecomjax.oracle.act`: the scripted careful agent for every task (jit- and vmap-able)."""

import jax
import jax.numpy as jnp

from ecomjax.env import JOURNEY, EnvParams, dispatch
from ecomjax.tasks.action import Action, noop_action
from ecomjax.tasks.difficulty import episode_difficulty
from ecomjax.tasks.episode import EpisodeState
from ecomjax.tasks.goal import MAX_INTENTS


def act(key: jax.Array, state: EpisodeState, params: EnvParams) -> Action:
    """The oracle's next turn: work on the earliest introduced, unanswered intent; say `done` with the
    answer to the last intent."""
    wp = params.world
    diff = episode_difficulty(state.d, state.num_intents)
    open_ = (jnp.arange(MAX_INTENTS) < state.introduced) & ~state.answered
    i = jnp.argmax(open_)
    task = state.goal.task[i]
    action = dispatch(task, params.base_tasks, lambda m: (lambda k, s: m.oracle(k, s, i, wp, diff)), key, state)
    last = i == state.num_intents - 1
    answer = action.answer.replace(intent=i.astype(jnp.int32), done=action.answer.done & last,
                                   task=jnp.where(state.task == JOURNEY, JOURNEY, action.answer.task))
    action = action.replace(answer=answer)
    waiting = ~jnp.any(open_)
    return jax.tree.map(lambda a, b: jnp.where(waiting, b, a), action, noop_action(wp.cap))
