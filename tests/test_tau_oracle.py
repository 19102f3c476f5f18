"""Every task on real data: the oracle is correct on >= 99% of episodes at every difficulty 0..20 on the τ-bench
retail catalog and order history (200 episodes per task and difficulty), order tasks run on real orders, and
the env passes the conformance suite with a real order history in its params."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomjax
from ecomjax import oracle
from ecomjax.catalog import load_tau_retail
from ecomjax.tasks.goal import TASK, TASK_NAMES
from ecomjax.testing.conformance import check_env
from ecomjax.testing.rollout import batch_runner

TAU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tau-retail"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (TAU / "products.json").is_file(),
                       reason=f"τ-bench retail data not found at {TAU} (shared/data/tau-retail)"),
]
LEVELS = 21
EPISODES = 200
BAR = 0.99
SEED = 9
ORDER_TASKS = frozenset({"RETURN", "STATUS", "JOURNEY"})


@pytest.fixture(scope="module")
def tau_catalog():
    return load_tau_retail(TAU)[0]


TASKS = list(TASK_NAMES)


@pytest.mark.parametrize("task", TASKS)
def test_oracle_is_correct_at_every_difficulty_on_tau_retail(tau_catalog, task):
    env, params = ecomjax.make(task, catalog=tau_catalog)
    run = batch_runner(env, oracle.act, params, task=TASK[task])
    acc, real = [], []
    for d in range(LEVELS):
        keys = jax.random.split(jax.random.fold_in(jax.random.key(SEED), TASK[task] * 100 + d), EPISODES)
        states, ts = run(keys, jnp.int32(d))
        acc.append(float(np.asarray(ts.info["is_correct"]).mean()))
        valid = np.asarray(states.world.order_valid)
        real.append(bool(np.all(np.asarray(states.world.order_source)[valid] >= 0)) and valid.any())
    print(f"{task} oracle accuracy on tau-retail per d: {np.round(acc, 3).tolist()} (worst {min(acc):.3f} at "
          f"d={int(np.argmin(acc))}, {EPISODES} episodes per d)")
    assert min(acc) >= BAR, dict(enumerate(np.round(acc, 3)))
    if task in ORDER_TASKS:
        assert all(real), "order tasks must run on the real order history"


def test_conformance_on_tau_retail(tau_catalog):
    """jit == no-jit, vmap == loop, no retracing, stable pytrees and determinism with a real order history."""
    env, params = ecomjax.make("C8", catalog=tau_catalog)
    check_env(env, params, tuple(TASK[t] for t in ("RETURN", "STATUS", "CART")), oracle.act, difficulties=(7,))
