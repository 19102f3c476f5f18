"""`ecomjax.oracle.act`: the scripted careful agent for every task (jit- and vmap-able), and `act_batch`, the
same agent for a batch by task-homogeneous sub-batches."""

import jax
import jax.numpy as jnp

from ecomjax.env import JOURNEY, EnvParams, dispatch, dispatch_batch
from ecomjax.tasks.action import Action, noop_action
from ecomjax.tasks.difficulty import episode_difficulty
from ecomjax.tasks.episode import EpisodeState
from ecomjax.tasks.goal import MAX_INTENTS


def _open_intent(state: EpisodeState):
    """(intent to work on: the earliest introduced, unanswered one; whether none is open)."""
    open_ = (jnp.arange(MAX_INTENTS) < state.introduced) & ~state.answered
    return jnp.argmax(open_), ~jnp.any(open_)


def _finish(state: EpisodeState, i, waiting, action: Action, params: EnvParams) -> Action:
    """Tag the task's action with its intent; `done` only with the last intent's answer; wait (no-op) when
    no intent is open."""
    last = i == state.num_intents - 1
    answer = action.answer.replace(intent=i.astype(jnp.int32), done=action.answer.done & last,
                                   task=jnp.where(state.task == JOURNEY, JOURNEY, action.answer.task))
    action = action.replace(answer=answer)
    return jax.tree.map(lambda a, b: jnp.where(waiting, b, a), action, noop_action(params.world.cap))


def act(key: jax.Array, state: EpisodeState, params: EnvParams) -> Action:
    """The oracle's next turn: work on the earliest introduced, unanswered intent; say `done` with the
    answer to the last intent."""
    wp = params.world
    diff = episode_difficulty(state.d, state.num_intents)
    i, waiting = _open_intent(state)
    action = dispatch(state.goal.task[i], params.base_tasks,
                      lambda m: (lambda k, s: m.oracle(k, s, i, wp, diff)), key, state)
    return _finish(state, i, waiting, action, params)


def act_batch(keys: jax.Array, states: EpisodeState, params: EnvParams) -> Action:
    """`vmap(act)` for a batch [B], each task's oracle run only on the episodes working on that task (not
    vmappable itself)."""
    wp = params.world
    i, waiting = jax.vmap(_open_intent)(states)
    tasks = jnp.where(waiting, -1, jnp.take_along_axis(states.goal.task, i[:, None], axis=1)[:, 0])

    def oracle_of(m):
        def run(k, s, ii):
            return m.oracle(k, s, ii, wp, episode_difficulty(s.d, s.num_intents))
        return run

    default = jax.vmap(lambda _: noop_action(wp.cap))(keys)
    actions = dispatch_batch(tasks, params.base_tasks, oracle_of, (keys, states, i), default)
    return jax.vmap(lambda s, ii, w, a: _finish(s, ii, w, a, params))(states, i, waiting, actions)


act.batch = act_batch          # the batch form rollouts use (ecomjax.testing.rollout.run_batch)
