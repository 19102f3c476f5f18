"""Public conformance suite: properties every ecomjax task must satisfy (used by ecomjax's own tests).

`check_env(env, params, task, policy)` runs, for a handful of keys and difficulties:
jit == no-jit for reset and step, vmap == Python loop, the batch forms (`reset_batch`, `step_batch`, the
policy's `.batch`) == vmap, no retracing across steps, a stable pytree structure and `info` keys from
reset to the end, same key -> same episode, rewards finite in [-1, 1]. `params` is a jit argument
throughout, as in every ecomjax program.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ecomjax.env import INFO_KEYS, EnvParams, ShopEnv
from ecomjax.testing.rollout import Policy

STEPS = 3


FLOAT_RTOL, FLOAT_ATOL = 1e-5, 1e-6   # jit fusion may round floats differently; ints and bools are exact


def _key_data(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                        else x, tree)


def _assert_same(a, b, what: str) -> None:
    try:
        chex.assert_trees_all_close(_key_data(a), _key_data(b), rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
    except AssertionError as err:
        raise AssertionError(f"{what}: {err}") from None


def _assert_structure(tree, reference, what: str) -> None:
    if jax.tree.structure(tree) != jax.tree.structure(reference):
        raise AssertionError(f"{what}: pytree structure changed")
    for x, y in zip(jax.tree.leaves(tree), jax.tree.leaves(reference)):
        if x.shape != y.shape or x.dtype != y.dtype:
            raise AssertionError(f"{what}: leaf {x.shape}/{x.dtype} != {y.shape}/{y.dtype}")


def check_env(env: ShopEnv, params: EnvParams, tasks, policy: Policy, difficulties=(7,), num_keys: int = 2,
              seed: int = 0) -> None:
    """Raise AssertionError naming the first property that fails, for every task id in `tasks`.

    The task is a traced argument, so one compilation of reset and step serves every task."""
    jit_reset = jax.jit(lambda p, k, d, t: env.reset(k, p, d, t))
    jit_reset_b = jax.jit(jax.vmap(lambda p, k, d, t: env.reset(k, p, d, t), in_axes=(None, 0, None, None)))
    jit_reset_batch = jax.jit(lambda p, k, d, t: env.reset_batch(k, p, d, t))
    reset = lambda k, d, t: jit_reset(params, k, d, t)            # noqa: E731
    reset_b = lambda k, d, t: jit_reset_b(params, k, d, t)        # noqa: E731
    policy_batch = getattr(policy, "batch", None) or (lambda k, s, p: jax.vmap(lambda kk, ss: policy(kk, ss, p))(k, s))

    def turn(p, k, state):
        k_act, k_step = jax.random.split(k)
        return env.step(k_step, state, policy(k_act, state, p), p)

    def turn_batch(p, keys, states):
        split = jax.vmap(jax.random.split)(keys)
        return env.step_batch(split[:, 1], states, policy_batch(split[:, 0], states, p), p)

    traces = []

    def counted(p, k, state):
        traces.append(1)
        return turn(p, k, state)

    jit_step, jit_step_b = jax.jit(counted), jax.jit(jax.vmap(turn, in_axes=(None, 0, 0)))
    jit_step_batch = jax.jit(turn_batch)
    step = lambda k, state: jit_step(params, k, state)            # noqa: E731
    step_b = lambda k, states: jit_step_b(params, k, states)      # noqa: E731
    keys = jax.random.split(jax.random.key(seed), num_keys)
    for task in tasks:
        t_arr = jnp.int32(task)
        for d in difficulties:
            where = f"task {task} d={d}"
            state, ts = reset(keys[0], d, t_arr)
            with jax.disable_jit():
                state_nj, ts_nj = env.reset(keys[0], params, d, t_arr)
            _assert_same((state, ts), (state_nj, ts_nj), f"reset jit != no-jit ({where})")
            if set(ts.info) != set(INFO_KEYS) | {"reward"}:
                raise AssertionError(f"info keys {sorted(ts.info)} != {sorted(INFO_KEYS)} + reward")
            first = (state, ts)
            batched = reset_b(keys, d, t_arr)
            _assert_same(jit_reset_batch(params, keys, d, t_arr), batched, f"reset_batch != vmap(reset) ({where})")
            for i in range(num_keys):
                _assert_same(jax.tree.map(lambda x: x[i], batched), reset(keys[i], d, t_arr),
                             f"reset vmap != loop ({where})")
            states = batched[0]
            for t, k in enumerate(jax.random.split(jax.random.key(seed + 1 + d), STEPS)):
                new, ts = step(k, state)
                if t == 0:                                 # op-by-op execution is slow: check one step
                    with jax.disable_jit():
                        new_nj, ts_nj = turn(params, k, state)
                    _assert_same((new, ts), (new_nj, ts_nj), f"step jit != no-jit ({where}, t={t})")
                _assert_structure((new, ts), first, f"step {t} ({where})")
                reward = float(ts.reward)
                if not np.isfinite(reward) or not -1.0 <= reward <= 1.0:
                    raise AssertionError(f"reward {reward} outside [-1, 1] ({where}, t={t})")
                kk = jax.random.split(k, num_keys)
                out_b = step_b(kk, states)
                _assert_same(jit_step_batch(params, kk, states), out_b, f"step_batch != vmap(step) ({where}, t={t})")
                for i in range(num_keys):
                    want = step(kk[i], jax.tree.map(lambda x: x[i], states))
                    _assert_same(jax.tree.map(lambda x: x[i], out_b), want, f"step vmap != loop ({where}, t={t})")
                states, state = out_b[0], new
            again, _ = reset(keys[0], d, t_arr)
            _assert_same(again, first[0], f"same key, different episode ({where})")
    if len(traces) != 1:
        raise AssertionError(f"step was traced {len(traces)} times for same-shaped inputs (retracing)")
