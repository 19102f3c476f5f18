"""PD (product discovery) as a whole task: the oracle at every difficulty, and adversaries that must score low."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomjax
from ecomjax.env import make
from ecomjax.tasks.action import noop_action, set_call
from ecomjax.tasks.goal import MAX_REC
from ecomjax.testing.adversaries import pick, with_rec
from ecomjax.testing.rollout import run_batch
from ecomjax.world.state import make_call
from ecomjax.world.tools import TOOL_INDEX

pytestmark = pytest.mark.slow          # whole-task rollouts at every difficulty

LEVELS = 21
ORACLE_PER_D = 200
ADV_PER_D = 16
ORACLE, NOOP, GUESS, OVERREC = range(4)


def policy_for(mode):
    """The oracle, or an adversary built on it: do nothing, answer at once with guessed ids never shown, or
    browse unfiltered first and then put two seen products of other categories before the oracle's list
    (over-recommending infeasible items)."""
    def policy(key, state, params):
        catalog = params.world.catalog
        act = ecomjax.oracle.act(key, state, params)
        goal = jax.tree.map(lambda x: x[0], state.goal)
        noop = noop_action(params.cap)
        ids = jax.random.randint(jax.random.fold_in(state.key, 1), (MAX_REC,), 0, catalog.num_products)
        ids = jnp.where(jnp.arange(MAX_REC) < goal.k_rec, ids, -1)
        guess = with_rec(noop.replace(answer=noop.answer.replace(present=jnp.asarray(True), task=goal.task,
                                                                  done=jnp.asarray(True))), ids)
        seen = state.world.seen
        leaf = goal.c_value[1].astype(jnp.int32)
        junk = (seen >= 0) & (catalog.category[jnp.clip(seen, 0, catalog.num_products - 1)] != leaf)
        first = jnp.argmax(junk)
        second = jnp.argmax(junk & (jnp.arange(seen.shape[0]) > first))
        extras = jnp.where(jnp.arange(2) < jnp.sum(junk), seen[jnp.stack([first, second])], -1)
        listed = jnp.concatenate([extras, act.answer.rec])
        listed = listed[jnp.argsort(listed < 0, stable=True)][:MAX_REC]
        padded = jax.tree.map(lambda a, b: jnp.where(act.answer.present, a, b), with_rec(act, listed), act)
        brand = catalog.brand[jnp.clip(goal.anchor, 0, catalog.num_products - 1)]           # first turn: an
        query = jnp.zeros((16,), jnp.int32).at[: catalog.brand_tokens.shape[1]].set(catalog.brand_tokens[brand])
        browse = set_call(noop, 0, make_call(params.cap, TOOL_INDEX["catalog.search"], query=query, top_k=50))
        over = jax.tree.map(lambda b, p: jnp.where(state.turn == 0, b, p), browse, padded)  # unfiltered search
        return pick(mode, (act, noop, guess, over))
    return policy


@pytest.fixture(scope="module")
def runs(small_catalog):
    """mode -> (timesteps, d) for ORACLE_PER_D oracle and ADV_PER_D adversary episodes at every d."""
    env, params = make("PD", small_catalog[0])

    @jax.jit
    def run(keys, d, mode):
        return run_batch(env, policy_for(mode), keys, params, d)[1]           # to the end: T_max(d)

    out = {}
    for mode, n in ((ORACLE, ORACLE_PER_D), (NOOP, ADV_PER_D), (GUESS, ADV_PER_D), (OVERREC, ADV_PER_D)):
        d = np.repeat(np.arange(LEVELS), n)
        keys = jax.random.split(jax.random.key(100 + mode), len(d))
        out[mode] = (run(keys, jnp.asarray(d, jnp.int32), jnp.int32(mode)), d)
    return out


def test_oracle_is_correct_at_every_difficulty(runs):
    ts, d = runs[ORACLE]
    correct = np.asarray(ts.info["is_correct"])
    acc = np.array([correct[d == k].mean() for k in range(LEVELS)])
    print("PD oracle accuracy per d:", np.round(acc, 3).tolist())
    assert acc.min() >= 0.99, acc


def test_adversaries_score_low(runs):
    oracle_r = np.asarray(runs[ORACLE][0].info["r_task"])
    noop = runs[NOOP][0].info
    assert (np.asarray(noop["r_task"]) == -1.0).all() and not np.asarray(noop["is_correct"]).any()
    guess = runs[GUESS][0].info
    assert not np.asarray(guess["is_correct"]).any()                     # ids never shown are never correct
    assert np.asarray(guess["r_task"]).mean() < oracle_r.mean() - 0.5
    over = runs[OVERREC][0].info
    assert np.asarray(over["is_correct"]).mean() < 0.5
    assert np.asarray(over["r_task"]).mean() < oracle_r.mean() - 0.1
