"""ShopEnv across all tasks: conformance, do-nothing, random actions, determinism, JOURNEY, make()."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ecomjax
from ecomjax import oracle
from ecomjax.env import INFO_KEYS, AutoReset
from ecomjax.tasks.action import noop_action
from ecomjax.tasks.goal import TASK, TASK_NAMES
from ecomjax.testing.conformance import check_env
from ecomjax.testing.random_policy import random_action
from ecomjax.testing.rollout import batch_runner, run_batch

ALL_TASKS = tuple(range(len(TASK_NAMES)))
LEVELS = 21                  # d = 0..20
JOURNEY_PER_D = 200
QUICK_PER_TASK = 4           # quick tests share one batch shape (4 x 8 tasks x 3 levels): one compile per policy


@pytest.fixture(scope="module")
def c8(small_catalog):
    catalog, vocab = small_catalog
    env, params = ecomjax.make("C8", catalog=catalog)
    return env, params, vocab


@pytest.fixture(scope="module")
def oracle_runner(c8):
    env, params, _ = c8
    return batch_runner(env, oracle.act, params)


@pytest.fixture(scope="module")
def adversary(c8):
    """`run(keys, d, tasks, noop)`: the do-nothing agent (noop True) or random actions, one compile for both."""
    env, params, _ = c8

    def run(keys, d, tasks, noop):
        def policy(key, state, p):
            return jax.lax.cond(noop, lambda: noop_action(p.cap), lambda: random_action(key, state, p))
        return run_batch(env, policy, keys, params, d, tasks)

    return jax.jit(run)


def _grid(n_per, difficulties, tasks=ALL_TASKS, seed=0):
    d = np.repeat(np.asarray(difficulties), n_per * len(tasks))
    t = np.tile(np.repeat(np.asarray(tasks), n_per), len(difficulties))
    return jax.random.split(jax.random.key(seed), len(d)), jnp.asarray(d), jnp.asarray(t)


def test_make_ids_and_errors(small_catalog):
    catalog, _ = small_catalog
    assert ecomjax.make("C4", catalog=catalog)[1].tasks == tuple(TASK[t] for t in ("PD", "SUB", "CART", "RETURN"))
    assert ecomjax.make("JOURNEY", catalog=catalog)[1].base_tasks == tuple(range(7))
    with pytest.raises(ValueError, match="unknown env id 'C3'"):
        ecomjax.make("C3", catalog=catalog)


@pytest.mark.slow      # the quick suite runs this check in tests/test_verifier_guard.py
def test_do_nothing_scores_minus_one_on_every_task(adversary):
    keys, d, t = _grid(QUICK_PER_TASK, (0, 10, 20))
    _, ts = adversary(keys, d, t, True)
    assert np.all(np.asarray(ts.info["r_task"]) == -1.0)
    assert not np.any(np.asarray(ts.info["is_correct"]))
    assert np.all(np.asarray(ts.terminated))
    assert set(ts.info) == set(INFO_KEYS) | {"reward"}


@pytest.mark.slow
def test_journey_oracle_is_correct_at_every_difficulty(oracle_runner):
    """DESIGN §1.4: the oracle is correct on >= 99% of JOURNEY_PER_D episodes at every d in 0..20 (one
    batch per d keeps memory bounded; every batch has the same shape, so one compile)."""
    correct = {}
    for d in range(LEVELS):
        keys, dd, t = _grid(JOURNEY_PER_D, (d,), tasks=(TASK["JOURNEY"],), seed=100 + d)
        _, ts = oracle_runner(keys, dd, t)
        correct[d] = float(np.mean(np.asarray(ts.info["is_correct"])))
        assert np.asarray(ts.info["intent_correct"]).shape == (JOURNEY_PER_D, 5)
    assert min(correct.values()) >= 0.99, correct


@pytest.mark.slow      # the quick suite runs this check in tests/test_verifier_guard.py
@settings(max_examples=3, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_random_actions_keep_rewards_finite_and_bounded(adversary, seed):
    keys, d, t = _grid(QUICK_PER_TASK, (0, 5, 20), seed=seed)
    _, ts = adversary(keys, d, t, False)
    for name in ("reward", "r_task", "r_eff", "r_hall"):
        x = np.asarray(ts.info[name] if name != "reward" else ts.reward)
        assert np.isfinite(x).all() and (x >= -1).all() and (x <= 1).all(), name
    assert not np.any(np.asarray(ts.info["is_correct"]) & (np.asarray(ts.info["hall_rate"]) > 0))


@pytest.mark.slow      # the quick suite runs this check in tests/test_verifier_guard.py
def test_same_key_same_episode(adversary):
    """Random actions drawn from the episode key: the same keys replay the same episodes, different ones don't."""
    keys, d, t = _grid(QUICK_PER_TASK, (3, 12, 20), seed=7)

    def leaves(out):
        return [np.asarray(jax.random.key_data(z) if jax.dtypes.issubdtype(z.dtype, jax.dtypes.prng_key) else z)
                for z in jax.tree.leaves(out)]

    first, again = adversary(keys, d, t, False), adversary(keys, d, t, False)
    for x, y in zip(leaves(first), leaves(again), strict=True):
        np.testing.assert_array_equal(x, y)
    goal = leaves(first[0].goal)                             # what the episode asks for, not the keys themselves
    other = leaves(adversary(*_grid(QUICK_PER_TASK, (3, 12, 20), seed=8), False)[0].goal)
    assert any(not np.array_equal(x, y) for x, y in zip(goal, other, strict=True))


@pytest.mark.slow
def test_conformance_oracle_every_task(c8):
    env, params, _ = c8
    check_env(env, params, ALL_TASKS, oracle.act, difficulties=(7,))


@pytest.mark.slow
def test_conformance_random_actions(c8):
    env, params, _ = c8
    check_env(env, params, (TASK["CART"], TASK["RETURN"], TASK["JOURNEY"]), random_action, difficulties=(11,))


def test_auto_reset_step_batch_equals_vmapped_step(small_catalog):
    """The batched auto-reset (new episodes only for finished envs, a chunk at a time) equals vmap(step)."""
    catalog, _ = small_catalog
    env, params = ecomjax.make("PD", catalog=catalog)
    auto = AutoReset(env, reset_fraction=4)                                   # 8 envs: chunks of 2
    b = 8
    d = jnp.arange(b, dtype=jnp.int32)                                        # T_max(d) differs: staggered ends
    states, _ = jax.vmap(lambda k, dd: auto.reset(k, params, dd))(jax.random.split(jax.random.key(0), b), d)
    noop = jax.tree.map(lambda x: jnp.broadcast_to(x, (b, *x.shape)), noop_action(params.cap))
    batched = jax.jit(lambda k, s: auto.step_batch(k, s, noop, params, d))
    looped = jax.jit(jax.vmap(lambda k, s, a, dd: auto.step(k, s, a, params, dd)))
    ends = []
    for i in range(6):
        keys = jax.random.split(jax.random.key(i + 1), b)
        got, ts = batched(keys, states)
        want, ts_want = looped(keys, states, noop, d)
        chex.assert_trees_all_equal(got, want)
        chex.assert_trees_all_equal(ts, ts_want)
        ends.append(np.asarray(ts.terminated))
        assert not np.asarray(got.done).any()                 # every finished env got a new episode
        states = got
    ends = np.stack(ends)                                     # [step, env]
    assert ends[:, 0].tolist() == [False, False, False, True, False, False]     # T_max(0) = 4 turns
    assert ends.sum() >= 4 and ends.sum(axis=1).max() >= 2    # several ends, some in the same step


@pytest.mark.slow
def test_customer_text_is_deterministic_and_has_no_placeholders(c8):
    from ecomjax.user.transcript import customer_message

    env, params, vocab = c8
    host_catalog = jax.device_get(params.catalog)
    step = jax.jit(lambda k, s: env.step(k, s, oracle.act(k, s, params), params))
    reset = jax.jit(lambda k, t: env.reset(k, params, 6, t))
    for task in ALL_TASKS:
        for seed in range(3):
            state, _ = reset(jax.random.key(seed), jnp.int32(task))
            texts = []
            for t in range(3):
                text = customer_message(state, host_catalog, vocab)
                assert text and "{" not in text and "}" not in text, (task, seed, t, text)
                assert text == customer_message(state, host_catalog, vocab)
                texts.append(text)
                if bool(state.done):
                    break
                state, _ = step(jax.random.key(100 + t), state)
