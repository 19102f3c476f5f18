"""BUNDLE (project planning): the oracle (search every required leaf category, ask the budget, take the
cheapest seen available product per category) is correct at every difficulty; do-nothing, guessed ids, a
missing category, two products of one category and the most expensive products (over budget) all fail;
required categories are distinct available leaf categories of the catalog; the budget is always feasible.

One jitted runner drives every policy: each episode's mode (oracle or one adversary) is a function of its
episode key, and the batch is assembled from keys whose mode is known (one environment compile)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomjax.oracle
from ecomjax.env import make
from ecomjax.tasks import bundle
from ecomjax.tasks import discovery as D
from ecomjax.tasks.action import no_answer, noop_action
from ecomjax.tasks.difficulty import difficulty
from ecomjax.tasks.episode import AGENT_DONE
from ecomjax.tasks.goal import MAX_CATEGORIES, MAX_REC, NUM_SLOTS, SLOT_BUDGET, TASK
from ecomjax.testing.adversaries import pick, with_rec
from ecomjax.testing.rollout import batch_runner
from ecomjax.world.state import add_seen, empty_world, was_seen

pytestmark = pytest.mark.slow          # whole-task oracle/adversary rollouts: CI runs them separately

LEVELS = 21
ORACLE_PER_D = 200
ADV_PER_D = 10
MAX_STEPS = 6                        # the oracle needs at most 4-5 turns; do-nothing runs are cut at 6
MODES = ("oracle", "noop", "guess", "missing", "duplicate", "overbudget")
ORACLE, NOOP, GUESS, MISSING, DUPLICATE, OVERBUDGET = range(len(MODES))
DUPLICATES = 21
INT_MAX = np.iinfo(np.int32).max


def episode_key(key):
    """EpisodeState.key of an episode run from runner key `key` (rollout.episode -> ShopEnv.reset)."""
    k_reset, _ = jax.random.split(key)
    return jax.random.split(k_reset, 4)[3]


def mode_of(ep_key):
    return jax.random.randint(jax.random.fold_in(ep_key, 0xAD7), (), 0, len(MODES))


def mixed_policy(key, state, params):
    catalog = params.catalog
    mode = mode_of(state.key)
    act = ecomjax.oracle.act(key, state, params)
    goal = jax.tree.map(lambda x: x[0], state.goal)
    noop = noop_action(params.cap)
    n = goal.k_rec
    pos = jnp.arange(MAX_REC)
    ids = jax.random.randint(jax.random.fold_in(state.key, 1), (MAX_REC,), 0, catalog.num_products)
    guess = with_rec(noop.replace(answer=noop.answer.replace(present=jnp.asarray(True), task=goal.task,
                                                              done=jnp.asarray(True))), jnp.where(pos < n, ids, -1))
    rec = act.answer.rec
    missing = with_rec(act, jnp.where(pos == n - 1, -1, rec))
    seen = state.world.seen
    avail = D.available(state.world, catalog, seen)
    leaf = catalog.category[jnp.clip(seen, 0, catalog.num_products - 1)]
    price = catalog.price_cents[jnp.clip(seen, 0, catalog.num_products - 1)]
    ok = avail[None, :] & (leaf[None, :] == goal.cats[:, None]) & (goal.cats[:, None] >= 0)   # [NCAT, S]
    second = ok[0] & (seen != rec[0])
    extra = jnp.where(jnp.any(second), seen[jnp.argmin(jnp.where(second, price, INT_MAX))], -1)
    duplicate = with_rec(act, rec.at[jnp.minimum(n, MAX_REC - 1)].set(extra))
    dearest = jnp.where(jnp.any(ok, axis=1), seen[jnp.argmax(jnp.where(ok, price, -1), axis=1)], -1)
    overbudget = with_rec(act, dearest[:MAX_REC])
    return pick(mode, (act, noop, guess, missing, duplicate, overbudget))


@pytest.fixture(scope="module")
def setup(small_catalog):
    catalog, _ = small_catalog
    return make("BUNDLE", catalog)


@pytest.fixture(scope="module")
def run(setup):
    env, params = setup
    cand = jax.random.split(jax.random.key(2026), 60_000)
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


def _goal(states):
    return jax.tree.map(lambda x: _np(x)[:, 0], states.goal)


def test_oracle_is_correct_at_every_difficulty(run):
    _, ts, ds, mode = run
    sel = mode == ORACLE
    sel[-DUPLICATES:] = False
    correct = _np(ts.info["is_correct"])[sel]
    d = ds[sel]
    acc = np.array([correct[d == k].mean() for k in range(LEVELS)])
    print("BUNDLE oracle accuracy per d:", np.round(acc, 3).tolist(), "worst", acc.min(), "at d =", acc.argmin())
    print("BUNDLE oracle max turns per d:", [int(_np(ts.info["turns"])[sel][d == k].max()) for k in range(LEVELS)])
    assert acc.min() >= 0.99, acc
    assert (_np(ts.info["termination_reason"])[sel] == AGENT_DONE).all()


def test_oracle_answer_one_cheap_seen_product_per_category(run, setup):
    states, _, _, mode = run
    _, params = setup
    catalog = params.catalog
    goal = _goal(states)
    rec = _np(states.answers.rec[:, 0])
    sel = np.nonzero(mode == ORACLE)[0]
    seen = _np(jax.vmap(was_seen)(states.world, states.answers.rec[:, 0]))
    leaf, price = _np(catalog.category), _np(catalog.price_cents)
    for b in sel:
        n = goal.k_rec[b]
        listed = rec[b][rec[b] >= 0]
        assert len(listed) == n and sorted(leaf[listed].tolist()) == sorted(goal.cats[b][:n].tolist())
        assert seen[b][rec[b] >= 0].all()
        if goal.budget[b] >= 0:
            assert price[listed].sum() <= goal.budget[b]


def test_rewards_finite_and_bounded(run):
    _, ts, _, _ = run
    for x in (ts.reward, ts.info["r_task"], ts.info["intent_r_task"], ts.info["parts"]):
        assert np.isfinite(_np(x)).all()
    for x in (ts.reward, ts.info["r_task"]):
        x = _np(x)
        assert (x >= -1).all() and (x <= 1).all()


def test_do_nothing_and_guessed_ids(run):
    _, ts, _, mode = run
    r, ok = _np(ts.info["r_task"]), _np(ts.info["is_correct"])
    assert (r[mode == NOOP] == -1.0).all() and not ok[mode == NOOP].any()
    assert not ok[mode == GUESS].any() and (_np(ts.info["hall_rate"])[mode == GUESS] > 0).all()
    assert r[mode == GUESS].mean() < -0.5


def test_missing_category_is_incorrect(run):
    states, ts, _, mode = run
    sel = mode == MISSING
    n = _goal(states).k_rec[sel].astype(np.float64)
    f1 = 2 * (n - 1) / (2 * n - 1)                     # precision 1, recall (n-1)/n; cheaper, so no penalty
    np.testing.assert_allclose(_np(ts.info["r_task"])[sel], 2 * f1 - 1, atol=1e-5)
    assert not _np(ts.info["is_correct"])[sel].any()


def test_two_products_of_one_category_is_incorrect(run, setup):
    states, ts, _, mode = run
    _, params = setup
    leaf = _np(params.catalog.category)
    rec = _np(states.answers.rec[:, 0])
    n = _goal(states).k_rec
    sel = np.nonzero(mode == DUPLICATE)[0]
    dup = np.array([len(set(leaf[rec[b][rec[b] >= 0]].tolist())) < (rec[b] >= 0).sum() for b in sel])
    assert dup.mean() >= 0.9
    sel = sel[dup]
    nn = n[sel].astype(np.float64)
    f1 = np.where(nn < MAX_REC, 2 * nn / (2 * nn + 1), (nn - 1) / nn)   # one extra unit, or one replaced
    r = _np(ts.info["r_task"])[sel]
    assert (r <= 2 * f1 - 1 + 1e-5).all()
    np.testing.assert_allclose(_np(ts.info["parts"])[sel, 0, 0], f1, atol=1e-5)
    assert not _np(ts.info["is_correct"])[sel].any()


def test_over_budget_is_incorrect(run):
    states, ts, _, mode = run
    budget = _goal(states).budget
    sel = (mode == OVERBUDGET) & (budget >= 0)
    assert sel.sum() >= 60
    r, ok = _np(ts.info["r_task"]), _np(ts.info["is_correct"])
    gap = r[mode == ORACLE].mean() - r[sel].mean()
    print("BUNDLE over-budget correct rate", ok[sel].mean(), "gap", gap)
    assert ok[sel].mean() <= 0.03 and gap >= 0.5
    assert (_np(ts.info["parts"])[sel, 0, 3] > 0).mean() >= 0.95        # penalised for the excess


def test_generator_categories_and_budget(run, setup):
    states, _, ds, _ = run
    _, params = setup
    catalog = params.catalog
    goal = _goal(states)
    assert (goal.task == TASK["BUNDLE"]).all()
    n = np.minimum(_np(difficulty(jnp.asarray(ds)).n_categories), MAX_REC)
    assert (goal.k_rec == n).all() and n.max() == MAX_REC           # n_categories(20) = 12 capped at MAX_REC
    cats = goal.cats
    assert cats.shape[1] == MAX_CATEGORIES
    assert ((cats >= 0).sum(axis=1) == n).all() and (cats[:, :1] >= 0).all()
    assert ((cats >= 0) == (np.arange(MAX_CATEGORIES)[None, :] < n[:, None])).all()
    level = _np(catalog.category_level)
    leaf, stock, denied, price = (_np(x) for x in (catalog.category, catalog.stock, catalog.denied, catalog.price_cents))
    cheapest = np.full(level.shape[0], INT_MAX, np.int64)
    for p in np.nonzero((stock > 0) & ~denied)[0]:
        cheapest[leaf[p]] = min(cheapest[leaf[p]], price[p])
    floor = np.zeros(len(ds))
    for b in range(len(ds)):
        c = cats[b][cats[b] >= 0]
        assert len(set(c.tolist())) == len(c)                                   # distinct
        assert (level[c] == 2).all()                                            # leaf categories
        assert (cheapest[c] < INT_MAX).all()                                    # not denied, something in stock
        floor[b] = cheapest[c].sum()
    budget = goal.budget
    has = budget >= 0
    assert not has[ds < 2].any()
    share = has[ds >= 2].mean()
    assert 0.5 <= share <= 0.7, share
    assert (budget[has] >= np.floor(1.1 * floor[has]) - 1).all() and (budget[has] <= np.ceil(1.5 * floor[has]) + 1).all()
    # slots: only the budget, needed iff there is one; mentioned ⊆ needed; omissions happen at high d
    assert goal.needed.shape[1] == NUM_SLOTS
    assert (goal.needed[:, SLOT_BUDGET] == has).all() and goal.needed.sum(axis=1).max() == 1
    assert (goal.mentioned <= goal.needed).all()
    hi = has & (ds >= 10)
    assert 0.5 <= (~goal.mentioned[hi, SLOT_BUDGET]).mean() <= 0.95


def test_verify_unit_counts_and_budget(setup):
    """Direct checks of the scoring on hand-made answers: exact integer F1, unknown and out-of-stock ids,
    the clipped budget penalty, unseen ids."""
    _, params = setup
    catalog, wp = params.catalog, params.world
    world = empty_world(params.cap, 20_000)
    goal, world = jax.jit(bundle.generate)(jax.random.key(11), difficulty(4), world, wp)     # 5 categories
    cats = _np(goal.cats)[: int(goal.k_rec)]
    leaf, stock, price = _np(catalog.category), _np(catalog.stock), _np(catalog.price_cents)
    in_leaf = [np.nonzero((leaf == c) & (stock > 0))[0] for c in cats]
    cheapest = [int(p[np.argmin(price[p])]) for p in in_leaf]
    dear = [int(p[np.argmax(price[p])]) for p in in_leaf]
    gone = int(next(q for q in in_leaf[0] if q != cheapest[0]))              # out of stock in this episode
    world = world.replace(oos=world.oos.at[0].set(gone))
    budget = int(sum(price[p] for p in cheapest) * 1.2)
    goal = goal.replace(budget=jnp.int32(budget))

    def score(rec, seen_all):
        rec = jnp.full((MAX_REC,), -1, jnp.int32).at[: len(rec)].set(jnp.asarray(rec, jnp.int32))
        w = add_seen(world, jnp.where(seen_all, rec, -1))
        ans = no_answer().replace(present=jnp.asarray(True), task=goal.task, rec=rec, n_rec=jnp.sum(rec >= 0))
        r, ok, parts = bundle.verify(wp, w, goal, ans, difficulty(4))
        return float(r), bool(ok), _np(parts)

    assert score(cheapest, True)[:2] == (1.0, True)
    assert score(cheapest, False)[:2] == (1.0, False)                           # unseen ids: not correct
    r, ok, parts = score(cheapest[1:] + [gone], True)                          # out-of-stock product: no match
    assert not ok and parts[1] == pytest.approx(0.8) and parts[2] == pytest.approx(0.8)
    r, ok, parts = score(cheapest[:4] + [catalog.num_products + 5], True)      # unknown id
    assert not ok and parts[0] == pytest.approx(0.8)
    r, ok, parts = score(cheapest + [cheapest[0]], True)                       # the same product twice
    assert not ok and parts[1] == pytest.approx(5 / 6) and parts[2] == 1.0
    r, ok, parts = score(cheapest[:4], True)                                   # one category missing
    assert not ok and parts[0] == pytest.approx(8 / 9) and r == pytest.approx(7 / 9, abs=1e-6)
    cost = price[dear].sum()
    r, ok, parts = score(dear, True)
    assert not ok and parts[0] == 1.0 and parts[3] == pytest.approx(min(1.0, (cost - budget) / budget), rel=1e-5)
    assert r == pytest.approx(1.0 - parts[3], abs=1e-6)


def test_determinism(run, setup):
    states, ts, _, _ = run
    _, params = setup
    n = len(ts.reward)
    a = jax.tree.map(lambda x: _np(x)[:DUPLICATES], (states.goal, states.world, ts.info))
    b = jax.tree.map(lambda x: _np(x)[n - DUPLICATES:], (states.goal, states.world, ts.info))
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), a, b)
    world = empty_world(params.cap, 20_000)
    gen = jax.jit(bundle.generate)
    g1, w1 = gen(jax.random.key(5), difficulty(20), world, params.world)
    g2, w2 = gen(jax.random.key(5), difficulty(20), world, params.world)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(_np(x), _np(y)), (g1, w1), (g2, w2))
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(_np(x), _np(y)), w1, world)
