"""Whole batches of episodes under one jit: a policy driven through reset/step until every episode ends."""

from typing import Callable

import jax
import jax.numpy as jnp

from ecomjax.env import EnvParams, ShopEnv, TimeStep
from ecomjax.tasks.action import Action
from ecomjax.tasks.episode import EpisodeState

Policy = Callable[[jax.Array, EpisodeState, EnvParams], Action]
MAX_STEPS = 72                      # 5 intents x T_max(20) = 70, plus slack


def run_batch(env: ShopEnv, policy: Policy, keys: jax.Array, params: EnvParams, d, task=None,
              max_steps: int = MAX_STEPS, trial=0, batched_tools: bool = True) -> tuple[EpisodeState, TimeStep]:
    """Run B episodes to their ends; finished episodes are frozen while others go on.

    keys [B]; d and task [] or [B] (task None: drawn from the collection). `trial` re-runs the same
    episodes (same resets) with other policy and customer randomness. `batched_tools` steps with
    `env.step_batch` (retrieval skipped when unused); False uses `vmap(env.step)`, safe under an outer vmap.
    Returns final states and steps."""
    b = keys.shape[0]
    d = jnp.broadcast_to(jnp.asarray(d, jnp.int32), (b,))
    split = jax.vmap(jax.random.split)(keys)
    k_reset, k_run = split[:, 0], jax.vmap(lambda k: jax.random.fold_in(k, trial))(split[:, 1])
    tasks = None if task is None else jnp.broadcast_to(jnp.asarray(task, jnp.int32), (b,))
    if batched_tools:
        states, ts = env.reset_batch(k_reset, params, d, tasks)
    elif tasks is None:
        states, ts = jax.vmap(lambda k, dd: env.reset(k, params, dd))(k_reset, d)
    else:
        states, ts = jax.vmap(lambda k, dd, tt: env.reset(k, params, dd, tt))(k_reset, d, tasks)
    batch_policy = getattr(policy, "batch", None) if batched_tools else None

    def freeze(keep, old, new):
        return jax.tree.map(lambda o, n: jnp.where(keep.reshape(keep.shape + (1,) * (o.ndim - 1)), o, n), old, new)

    def cond(carry):
        t, states, _ = carry
        return (t < max_steps) & ~jnp.all(states.done)

    def body(carry):
        t, states, ts = carry
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(k_run)
        split = jax.vmap(jax.random.split)(step_keys)
        if batch_policy is not None:
            actions = batch_policy(split[:, 0], states, params)
        else:
            actions = jax.vmap(lambda k, s: policy(k, s, params))(split[:, 0], states)
        if batched_tools:
            new_states, new_ts = env.step_batch(split[:, 1], states, actions, params)
        else:
            new_states, new_ts = jax.vmap(lambda k, st, a: env.step(k, st, a, params))(split[:, 1], states, actions)
        return t + 1, freeze(states.done, states, new_states), freeze(states.done, ts, new_ts)

    _, states, ts = jax.lax.while_loop(cond, body, (jnp.int32(0), states, ts))
    return states, ts


def batch_runner(env: ShopEnv, policy: Policy, params: EnvParams, task=None, max_steps: int = MAX_STEPS):
    """A function (keys [B], d [] or [B], tasks [] or [B] optional, trial) -> (states, timesteps), jitted with
    `params` as an argument (a runner for other params of the same shapes compiles nothing new).

    `task` given at build time is fixed; otherwise it may be passed per call (traced, so one compile serves
    every task of the collection) or left out to draw from the collection."""
    jitted = jax.jit(lambda p, keys, d, tasks, trial: run_batch(env, policy, keys, p, d, tasks, max_steps, trial))

    def run(keys, d, tasks=None, trial=0):
        return jitted(params, keys, d, task if tasks is None else tasks, trial)

    return run


def episode(env: ShopEnv, policy: Policy, key: jax.Array, params: EnvParams, d, task=None,
            max_steps: int = MAX_STEPS, trial=0) -> tuple[EpisodeState, TimeStep]:
    """One episode to its end (`run_batch` with a batch of one; vmappable)."""
    task = None if task is None else jnp.asarray(task, jnp.int32)[None]
    out = run_batch(env, policy, key[None], params, jnp.asarray(d, jnp.int32)[None], task, max_steps, trial,
                    batched_tools=False)
    return jax.tree.map(lambda x: x[0], out)
