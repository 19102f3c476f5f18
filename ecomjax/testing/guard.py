"""The verifier guard: the oracle and adversaries built on it, every task, one compiled runner.

`guard_runner(env, params)` runs a batch whose every episode has its own task, difficulty and policy mode
(`GUARD_MODES`): the oracle, or the oracle's own turns with one field made wrong. Each adversary applies to
the tasks in `MODE_TASKS`, where its change must make the episode incorrect. One compilation serves every
task and mode, so CI can check all eight verifiers in one program.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ecomjax import oracle
from ecomjax.env import EnvParams, ShopEnv
from ecomjax.tasks import discovery as D
from ecomjax.tasks.action import Action, noop_action
from ecomjax.tasks.episode import EpisodeState
from ecomjax.tasks.goal import MAX_REC, TASK
from ecomjax.testing.random_policy import random_action
from ecomjax.testing.rollout import run_batch
from ecomjax.world.state import ORDER_STATUSES, was_seen
from ecomjax.world.tools import TOOL_INDEX

GUARD_MODES: tuple[str, ...] = (
    "oracle", "do_nothing", "guessed_ids", "over_long_list", "wrong_order", "wrong_line", "wrong_status",
    "wrong_policy_value", "wrong_cart_quantity", "ignore_priority", "random_actions",
)
MODE = {name: i for i, name in enumerate(GUARD_MODES)}
# The tasks where each adversary's change must make every episode incorrect (random_actions: uniformly random
# turns, not built on the oracle, whose rewards must stay finite and bounded).
MODE_TASKS: dict[str, tuple[str, ...]] = {
    "oracle": tuple(TASK),
    "do_nothing": tuple(TASK),
    "guessed_ids": ("PD", "SUB", "BUNDLE"),
    "over_long_list": ("PD", "SUB"),
    "wrong_order": ("RETURN", "STATUS"),
    "wrong_line": ("RETURN",),
    "wrong_status": ("STATUS",),
    "wrong_policy_value": ("POLICY",),
    "wrong_cart_quantity": ("CART",),
    "ignore_priority": ("PD", "SUB"),
    "random_actions": tuple(TASK),
}
# Difficulties of a mode other than the grid's: the priority rule applies at d ≥ 1 and only when more than
# k_rec products are feasible, which is common at low d only.
MODE_DIFFICULTIES: dict[str, tuple[int, ...]] = {"ignore_priority": (1, 3, 5)}
GUESS_DRAWS = 4 * MAX_REC             # random ids drawn per guessed list; the ones the agent has seen are skipped
CART_QTY_TOOLS = (TOOL_INDEX["cart.add"], TOOL_INDEX["cart.set_quantity"])


def _unseen_ids(key: jax.Array, state: EpisodeState, params: EnvParams, n) -> jnp.ndarray:
    """n product ids the agent was never shown (so citing them is a hallucination), -1 pads. # [MAX_REC]"""
    cand = jax.random.randint(key, (GUESS_DRAWS,), 0, params.catalog.num_products)
    fresh = ~was_seen(state.world, cand)
    fresh &= ~jnp.any(cand[:, None] == cand[None, :], axis=1, where=jnp.tri(GUESS_DRAWS, k=-1, dtype=bool))
    picked = cand[jnp.argsort(~fresh, stable=True)][:MAX_REC]
    ok = jnp.sort(~fresh)[:MAX_REC] == 0
    return jnp.where(ok & (jnp.arange(MAX_REC) < n), picked, -1).astype(jnp.int32)


def corrupt(key: jax.Array, state: EpisodeState, action: Action, mode: jnp.ndarray, params: EnvParams) -> Action:
    """The oracle's `action` with the field of adversary `mode` (a traced index into GUARD_MODES) made wrong."""
    answer = action.answer
    k_rec = jnp.maximum(state.goal.k_rec[jnp.clip(answer.intent, 0)], 1)
    n_rec = jnp.maximum(answer.n_rec, 1)
    guessed = _unseen_ids(key, state, params, n_rec)
    over = _over_long(key, state, params, answer.rec, k_rec)
    num_lines = state.world.line_product.shape[1]
    shuffled = _ignore_priority(key, state, params, answer)
    changed = {
        MODE["ignore_priority"]: answer.replace(rec=shuffled, n_rec=jnp.sum(shuffled >= 0).astype(jnp.int32)),
        MODE["guessed_ids"]: answer.replace(rec=guessed, n_rec=jnp.sum(guessed >= 0).astype(jnp.int32)),
        MODE["over_long_list"]: answer.replace(rec=over, n_rec=jnp.sum(over >= 0).astype(jnp.int32)),
        MODE["wrong_order"]: answer.replace(order=_other_order(state, answer.order)),
        MODE["wrong_line"]: answer.replace(line=(answer.line + 1) % num_lines),
        MODE["wrong_status"]: answer.replace(status=(answer.status + 1) % len(ORDER_STATUSES)),
        MODE["wrong_policy_value"]: answer.replace(policy_num=answer.policy_num * 2.0 + 1.0,
                                                   policy_cat=answer.policy_cat + 1),
    }
    new_answer = answer
    for m, a in changed.items():
        new_answer = jax.tree.map(lambda x, y, m=m: jnp.where((mode == m) & answer.present, x, y), a, new_answer)
    calls = action.calls
    bump = (mode == MODE["wrong_cart_quantity"]) & jnp.isin(calls.tool, jnp.asarray(CART_QTY_TOOLS))
    calls = calls.replace(qty=jnp.where(bump, calls.qty + 1, calls.qty))
    out = action.replace(answer=new_answer, calls=calls)
    out = jax.tree.map(lambda x, y: jnp.where(mode == MODE["random_actions"], x, y),
                       random_action(jax.random.fold_in(key, 2), state, params), out)
    return jax.tree.map(lambda x, y: jnp.where(mode == MODE["do_nothing"], x, y), noop_action(params.cap), out)


def _over_long(key: jax.Array, state: EpisodeState, params: EnvParams, rec: jnp.ndarray, k_rec) -> jnp.ndarray:
    """`rec` (a prefix of ids) extended to k_rec + 1 ids, one more than asked for: first with results the last
    search showed that `rec` leaves out (shown, usually feasible), else with ids never shown. # [MAX_REC]"""
    shown = state.last_results.ids[0]                                                 # [K]
    spare = (shown >= 0) & ~jnp.any(shown[:, None] == rec[None, :], axis=1)
    unseen = _unseen_ids(jax.random.fold_in(key, 1), state, params, MAX_REC)
    pool = jnp.concatenate([jnp.where(spare, shown, -1), unseen])
    pool = pool[jnp.argsort(pool < 0, stable=True)]
    listed = rec >= 0
    out = jnp.where(listed, rec, pool[jnp.clip(jnp.cumsum(~listed) - 1, 0, pool.shape[0] - 1)])
    return jnp.where(jnp.arange(MAX_REC) < k_rec + 1, out, -1)


def _ignore_priority(key: jax.Array, state: EpisodeState, params: EnvParams, answer) -> jnp.ndarray:
    """A PD/SUB list of as many feasible, in-stock products from the last search as the oracle's, in a random
    order: right products, the customer's priority ignored. # [MAX_REC]"""
    goal = jax.tree.map(lambda x: x[jnp.clip(answer.intent, 0)], state.goal)
    ids = state.last_results.ids[0]                                                   # [K]
    sub = goal.task == TASK["SUB"]
    rel = jnp.where(sub, D.relevance(params.world, state.world, goal, ids, True),
                    D.relevance(params.world, state.world, goal, ids, False))
    order = jnp.argsort(jnp.where(rel > 0, jax.random.uniform(key, ids.shape), 2.0))
    picked = jnp.where((rel[order] > 0) & (jnp.arange(ids.shape[0]) < jnp.sum(answer.rec >= 0)), ids[order], -1)
    return picked[:MAX_REC].astype(jnp.int32)


def _other_order(state: EpisodeState, order: jnp.ndarray) -> jnp.ndarray:
    """The next valid order after `order` (cyclically), or an id past the orders when it is the only one."""
    size = state.world.order_valid.shape[0]
    steps = (jnp.arange(1, size) + order) % size
    valid = state.world.order_valid[steps]
    return jnp.where(jnp.any(valid), steps[jnp.argmax(valid)], size).astype(jnp.int32)


@dataclass(frozen=True)
class _GuardPolicy:
    """The batch policy of `guard_runner`: the oracle's turns corrupted per episode by `modes` [B]."""

    modes: jnp.ndarray

    def batch(self, keys: jax.Array, states: EpisodeState, params: EnvParams) -> Action:
        actions = oracle.act_batch(keys, states, params)
        k_adv = jax.vmap(lambda k: jax.random.fold_in(k, 0x6A7D))(keys)
        return jax.vmap(lambda k, s, a, m: corrupt(k, s, a, m, params))(k_adv, states, actions, self.modes)

    def __call__(self, key, state, params):
        raise TypeError("the guard policy runs on batches only (run_batch with batched_tools=True)")


def guard_runner(env: ShopEnv, params: EnvParams):
    """A function (keys [B], d [B], tasks [B], modes [B]) -> (final states, final timesteps), jitted once with
    `params` as an argument: every task, difficulty and mode share one program."""
    jitted = jax.jit(lambda p, keys, d, tasks, modes: run_batch(env, _GuardPolicy(modes), keys, p, d, tasks))
    return lambda keys, d, tasks, modes: jitted(params, keys, d, tasks, modes)


def guard_grid(oracle_per: int, adversary_per: int, difficulties=(0, 10, 20), priority_per: int = 32):
    """The episodes of a guard run as numpy arrays (the caller makes their keys): the oracle on
    every task `oracle_per` times per difficulty, then each adversary on each of its tasks `adversary_per`
    times per difficulty (its own MODE_DIFFICULTIES where set, `priority_per` times for ignore_priority).
    Returns (task, d, mode) each [N]; the oracle's episodes come first, task-major."""
    rows = []
    for name, tasks in MODE_TASKS.items():
        per = {"oracle": oracle_per, "ignore_priority": priority_per}.get(name, adversary_per)
        for task in tasks:
            for d in MODE_DIFFICULTIES.get(name, difficulties):
                rows += [(TASK[task], d, MODE[name])] * per
    task, d, mode = (np.asarray(c, np.int32) for c in zip(*rows))
    return task, d, mode


def to_host(tree):
    """A pytree of device arrays as numpy (PRNG keys as their key data)."""
    return jax.tree.map(lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(
        x.dtype, jax.dtypes.prng_key) else x), tree)


def fixture_arrays(states: EpisodeState, info: dict, reward) -> dict[str, np.ndarray]:
    """The recorded view of whole episodes (host arrays [N, ...]): goal and final world fields (the seen-id
    set as a SHA-256 digest), intent count, turns, termination and outcomes."""
    out = {}
    for prefix, tree in (("goal", states.goal), ("world", states.world)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            name = prefix + jax.tree_util.keystr(path)
            leaf = np.asarray(leaf)
            if name == "world.seen":
                out["world.seen_sha256"] = np.stack(
                    [np.frombuffer(hashlib.sha256(np.sort(r).tobytes()).digest(), np.uint8) for r in leaf])
            else:
                out[name] = leaf
    for k in ("num_intents", "turn", "termination"):
        out["state." + k] = np.asarray(getattr(states, k))
    out["reward"] = np.asarray(reward)
    for k in ("is_correct", "r_task", "r_eff", "r_hall", "intent_correct"):
        out["info." + k] = np.asarray(info[k])
    return out


def fixture_mismatches(got: dict, want, tasks: np.ndarray, skip=lambda name, task: False,
                       tol: float = 1e-5) -> list[str]:
    """Fields of `got` that differ from the recorded `want` (ints exactly, floats within `tol`), each with
    the number of episodes and their task names; `skip(name, task)` leaves a field out for a task."""
    from ecomjax.tasks.goal import TASK_NAMES

    problems = []
    for name, value in got.items():
        ref = want[name]
        if value.dtype.kind == "f":
            differ = ~np.isclose(value, ref, rtol=tol, atol=tol, equal_nan=True)
        else:
            differ = value != ref
        rows = np.any(differ.reshape(len(differ), -1), axis=1)
        rows &= ~np.asarray([skip(name, TASK_NAMES[t]) for t in tasks])
        if rows.any():
            problems.append(f"{name}: {int(rows.sum())} episodes ({sorted({TASK_NAMES[t] for t in tasks[rows]})})")
    return problems
