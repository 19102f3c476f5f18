"""SUB (out-of-stock substitution): the oracle is correct at every difficulty; do-nothing, guessed ids,
recommending the out-of-stock original and padding the list with unrelated products all score clearly
below it; the generator keeps the original out of stock in the episode world only, builds a non-empty pool
of available feasible substitutes and is deterministic.

One jitted runner drives every policy: each episode's policy mode (oracle or one adversary) is a function of
its episode key, and the batch is assembled from keys whose mode is known, so the whole module compiles the
environment once (2 CPU cores are shared)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomjax.oracle
from ecomjax.catalog.schema import DISCRETE_ATTRS, RANGE_FIELDS
from ecomjax.env import make
from ecomjax.tasks import constraints as C
from ecomjax.tasks import pd, sub
from ecomjax.tasks.action import PRESENT, noop_action, set_call
from ecomjax.tasks.difficulty import difficulty
from ecomjax.tasks.episode import ACT_CONFIRM, ACT_CORRECT, AGENT_DONE
from ecomjax.tasks.goal import MAX_REC, NUM_SLOTS, TASK
from ecomjax.testing.adversaries import pick, with_rec
from ecomjax.testing.rollout import batch_runner
from ecomjax.world.state import make_call
from ecomjax.world.tools import TOOL_INDEX

pytestmark = pytest.mark.slow          # whole-task oracle/adversary rollouts: CI runs them separately

LEVELS = 21
ORACLE_PER_D = 200
ADV_PER_D = 12                       # episodes per adversary per difficulty
MAX_STEPS = 9                        # oracle episodes need at most ~7 turns; do-nothing runs are cut at 9
MODES = ("oracle", "noop", "guess", "original", "overrec")
ORACLE, NOOP, GUESS, ORIGINAL, OVERREC = range(len(MODES))
DUPLICATES = 21                      # oracle keys run twice in the same batch (determinism)
COMPAT = {C.KEY["connector_type"], C.KEY["size"], C.KEY["material"]}


def episode_key(key):
    """EpisodeState.key of an episode run from runner key `key` (rollout.episode -> ShopEnv.reset)."""
    k_reset, _ = jax.random.split(key)
    return jax.random.split(k_reset, 4)[3]


def mode_of(ep_key):
    return jax.random.randint(jax.random.fold_in(ep_key, 0xAD7), (), 0, len(MODES))


def _compact(ids, width):
    order = jnp.argsort(ids < 0, stable=True)
    return ids[order][:width]


def mixed_policy(key, state, params):
    """The oracle, or (by episode key) an adversary built on it."""
    wp = params.world
    catalog = wp.catalog
    mode = mode_of(state.key)
    act = ecomjax.oracle.act(key, state, params)
    goal = jax.tree.map(lambda x: x[0], state.goal)
    noop = noop_action(params.cap)
    # guess: answer at once with ids that were never shown
    ids = jax.random.randint(jax.random.fold_in(state.key, 1), (MAX_REC,), 0, catalog.num_products)
    ids = jnp.where(jnp.arange(MAX_REC) < goal.k_rec, ids, -1)
    guess = with_rec(noop.replace(answer=noop.answer.replace(present=jnp.asarray(True), task=goal.task,
                                                              done=jnp.asarray(True))), ids)
    # original: the oracle's conversation, then recommend the out-of-stock original itself
    original = with_rec(act, jnp.full((MAX_REC,), -1, jnp.int32).at[0].set(goal.anchor))
    # overrec: first an unfiltered search for the original's brand, then the oracle; the final list puts two
    # seen products of other categories (so infeasible) before the oracle's list
    brand = catalog.brand[jnp.clip(goal.anchor, 0, catalog.num_products - 1)]
    query = jnp.zeros((16,), jnp.int32).at[: catalog.brand_tokens.shape[1]].set(catalog.brand_tokens[brand])
    browse = set_call(noop, 0, make_call(params.cap, TOOL_INDEX["catalog.search"], query=query, top_k=50))
    seen = state.world.seen
    junk = (seen >= 0) & (catalog.category[jnp.clip(seen, 0, catalog.num_products - 1)] != goal.c_value[1].astype(jnp.int32))
    first = jnp.argmax(junk)
    second = jnp.argmax(junk & (jnp.arange(seen.shape[0]) > first))
    extras = jnp.where(jnp.arange(2) < jnp.sum(junk), seen[jnp.stack([first, second])], -1)
    padded = with_rec(act, _compact(jnp.concatenate([extras, act.answer.rec]), MAX_REC))
    overrec = jax.tree.map(lambda b, p: jnp.where(state.turn == 0, b, p), browse, padded)
    return pick(mode, (act, noop, guess, original, overrec))


@pytest.fixture(scope="module")
def setup(small_catalog):
    catalog, _ = small_catalog
    env, params = make("SUB", catalog)
    return env, params


@pytest.fixture(scope="module")
def run(setup):
    """One batch: ORACLE_PER_D oracle episodes and ADV_PER_D per adversary at every d, plus duplicates."""
    env, params = setup
    cand = jax.random.split(jax.random.key(2024), 60_000)
    modes = np.asarray(jax.jit(jax.vmap(lambda k: mode_of(episode_key(k))))(cand))
    picks, ds, want = [], [], []
    pool = {m: list(np.nonzero(modes == m)[0]) for m in range(len(MODES))}
    for d in range(LEVELS):
        for m in range(len(MODES)):
            n = ORACLE_PER_D if m == ORACLE else ADV_PER_D
            take, pool[m] = pool[m][:n], pool[m][n:]
            assert len(take) == n
            picks += take
            ds += [d] * n
            want += [m] * n
    picks += picks[:DUPLICATES]
    ds += ds[:DUPLICATES]
    want += want[:DUPLICATES]
    runner = batch_runner(env, mixed_policy, params, max_steps=MAX_STEPS)
    states, ts = runner(cand[np.asarray(picks)], jnp.asarray(ds, jnp.int32))
    mode = np.asarray(jax.vmap(mode_of)(states.key))
    assert (mode == np.asarray(want)).all(), "episode keys no longer follow rollout.episode/ShopEnv.reset"
    return states, ts, np.asarray(ds), mode


def _np(x):
    return np.asarray(x)


def test_oracle_is_correct_at_every_difficulty(run):
    _, ts, ds, mode = run
    sel = mode == ORACLE
    sel[-DUPLICATES:] = False
    correct = _np(ts.info["is_correct"])[sel]
    d = ds[sel]
    acc = np.array([correct[d == k].mean() for k in range(LEVELS)])
    assert all((d == k).sum() == ORACLE_PER_D for k in range(LEVELS))
    print("SUB oracle accuracy per d:", np.round(acc, 3).tolist(), "worst", acc.min(), "at d =", acc.argmin())
    print("SUB oracle max turns per d:", [int(_np(ts.info["turns"])[sel][d == k].max()) for k in range(LEVELS)])
    assert acc.min() >= 0.99, acc
    r = _np(ts.info["r_task"])[sel]
    assert r.mean() > 0.98


def test_rewards_finite_and_bounded(run):
    _, ts, _, _ = run
    for x in (ts.reward, ts.info["r_task"], ts.info["intent_r_task"], ts.info["parts"]):
        x = _np(x)
        assert np.isfinite(x).all()
    for x in (ts.reward, ts.info["r_task"]):
        x = _np(x)
        assert (x >= -1).all() and (x <= 1).all()


def test_oracle_episodes_end_with_its_answer(run):
    _, ts, _, mode = run
    sel = mode == ORACLE
    assert _np(ts.terminated)[sel].all()
    assert (_np(ts.info["termination_reason"])[sel] == AGENT_DONE).all()


def test_do_nothing_scores_minus_one(run):
    _, ts, _, mode = run
    sel = mode == NOOP
    assert (_np(ts.info["r_task"])[sel] == -1.0).all()
    assert not _np(ts.info["is_correct"])[sel].any()


def test_guessed_ids_are_never_correct(run):
    _, ts, _, mode = run
    sel = mode == GUESS
    assert not _np(ts.info["is_correct"])[sel].any()
    assert (_np(ts.info["hall_rate"])[sel] > 0).all()
    assert _np(ts.info["r_task"])[sel].mean() < 0.0


def test_recommending_the_original_scores_out_of_stock(run):
    _, ts, _, mode = run
    sel = mode == ORIGINAL
    parts = _np(ts.info["parts"])[sel, 0]                   # [r_rank, r_cons, r_oos, oos_rate]
    assert (parts[:, 3] == 1.0).all() and (parts[:, 2] == -1.0).all()
    assert (_np(ts.info["r_task"])[sel] <= -0.99).all()
    assert not _np(ts.info["is_correct"])[sel].any()


def test_over_recommending_scores_below_the_oracle(run):
    _, ts, _, mode = run
    r = _np(ts.info["r_task"])
    ok = _np(ts.info["is_correct"])
    gap = r[mode == ORACLE].mean() - r[mode == OVERREC].mean()
    print("SUB oracle - overrec mean r_task:", gap, "overrec correct rate", ok[mode == OVERREC].mean())
    assert gap >= 0.5
    assert ok[mode == OVERREC].mean() <= 0.03


def _columns(catalog):
    """Every constraint key's column as the search filters read it (NumPy)."""
    cols = {f: _np(catalog.range_values)[:, i] for i, f in enumerate(RANGE_FIELDS)}
    cols.update(brand=_np(catalog.brand), store=_np(catalog.store),
                cat=np.stack([_np(catalog.category), _np(catalog.mid_category), _np(catalog.top_category)], 1))
    cols.update({name: _np(catalog.attr)[:, a] for a, name in enumerate(DISCRETE_ATTRS)})
    return cols


def _satisfies(cols, products, key, op, value):
    name = C.CONSTRAINT_KEYS[key]
    x = cols[name][products]
    if name == "cat":
        return (x == int(value)).any(axis=1)
    if op == C.EQ:
        return x == (value if name in RANGE_FIELDS else int(value))
    return (x <= np.float32(value)) if op == C.LTE else (x >= np.float32(value))


def test_generator_original_out_of_stock_pool_feasible(run, setup):
    states, _, ds, _ = run
    _, params = setup
    catalog = params.catalog
    goal = jax.tree.map(lambda x: _np(x)[:, 0], states.goal)
    oos = _np(states.world.oos)
    anchor = goal.anchor
    assert (goal.task == TASK["SUB"]).all()
    # the original: in stock and allowed in the catalog (search shows it), out of stock in the episode
    assert (_np(catalog.stock)[anchor] > 0).all() and not _np(catalog.denied)[anchor].any()
    assert (oos == anchor[:, None]).any(axis=1).all()
    # pool: non-empty, never the original, available and feasible (checked here in NumPy); IDCG > 0
    pool = goal.pool
    assert ((pool >= 0).sum(axis=1) >= 1).all() and (goal.idcg > 0).all()
    assert not (pool == anchor[:, None]).any()
    cols = _columns(catalog)
    stock, denied = _np(catalog.stock), _np(catalog.denied)
    mask = goal.c_mask
    for b in range(len(ds)):
        members = pool[b][pool[b] >= 0]
        assert ((stock[members] > 0) & ~denied[members] & ~np.isin(members, oos[b])).all()
        for j in np.nonzero(mask[b])[0]:
            k, o, v = goal.c_key[b, j], goal.c_op[b, j], goal.c_value[b, j]
            assert _satisfies(cols, members, k, o, v).all()
            # constraints come from the original (all but the price bound, which may be tightened or raised)
            assert j == 0 or _satisfies(cols, anchor[b:b + 1], k, o, v).all(), (b, j, C.CONSTRAINT_KEYS[k])
    assert (goal.c_key[:, 0] == C.KEY["price"]).all() and (goal.c_key[:, 1] == C.KEY["cat"]).all()
    assert (mask.sum(axis=1) <= np.minimum(_np(difficulty(jnp.asarray(ds)).m) + 1, mask.shape[1])).all()
    # compatibility: when the original has connector_type / size / material, a constraint on one of them
    # comes right after the category (unless no substitute shares it)
    has_compat = np.stack([cols[C.CONSTRAINT_KEYS[k]][anchor] >= 0 for k in sorted(COMPAT)], axis=1).any(axis=1)
    compat_at_2 = mask[:, 2] & np.isin(goal.c_key[:, 2], sorted(COMPAT))
    print("SUB compatibility constraint kept:", compat_at_2[has_compat].mean())
    assert compat_at_2[has_compat].mean() >= 0.9, compat_at_2[has_compat].mean()
    # slots: the constraints; price and category always stated; the original is not a slot
    needed = goal.needed
    assert needed.shape[1] == NUM_SLOTS
    assert (needed[:, : mask.shape[1]] == mask).all() and not needed[:, mask.shape[1]:].any()
    assert (goal.mentioned <= needed).all() and goal.mentioned[:, :2].all()
    assert (goal.k_rec == _np(difficulty(jnp.asarray(ds)).k_rec)).all()
    hi = ds >= 10
    assert (~goal.mentioned & needed)[hi].any(axis=1).mean() > 0.3          # omissions happen at high d


def test_determinism(run):
    """Same key, same goal, world and outcome (the first episodes run again at the end of the batch)."""
    states, ts, _, _ = run
    n = len(ts.reward)
    a = jax.tree.map(lambda x: _np(x)[:DUPLICATES], (states.goal, states.world, ts.info))
    b = jax.tree.map(lambda x: _np(x)[n - DUPLICATES:], (states.goal, states.world, ts.info))
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), a, b)


def test_presenting_the_original_is_corrected(run, setup):
    states, _, _, mode = run
    _, params = setup
    i = int(np.nonzero(mode == ORACLE)[0][0])
    state = jax.tree.map(lambda x: x[i], states)
    goal = jax.tree.map(lambda x: x[0], state.goal)
    act = noop_action(params.cap).replace(msg_act=jnp.int32(PRESENT),
                                          presented=jnp.full((MAX_REC,), -1, jnp.int32).at[0].set(goal.anchor))
    fb = sub.feedback(state, 0, act, params.world)
    assert bool(fb.applies) and int(fb.act) == ACT_CORRECT and float(fb.satisfaction) == 0.0
    good = jnp.full((MAX_REC,), -1, jnp.int32).at[0].set(goal.pool[jnp.argmax(goal.pool_util)])
    fb = pd.presentation_feedback(state, 0, act.replace(presented=good), params.world, sim_anchor=True)
    assert int(fb.act) == ACT_CONFIRM and float(fb.satisfaction) == 1.0
