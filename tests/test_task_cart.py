"""CART task: generator properties, the variant-aware integer unit F1, the oracle at every difficulty,
adversaries (do-nothing, guessed ids, wrong quantity / variant, an extra product, no answer) and the
customer's candidate confirmation and cart feedback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import ecomjax.oracle
from ecomjax.catalog.schema import MAX_VARIANTS
from ecomjax.env import make
from ecomjax.tasks import cart
from ecomjax.tasks.action import PRESENT, noop_action, set_call
from ecomjax.tasks.difficulty import difficulty
from ecomjax.tasks.episode import (
    ACT_CONFIRM,
    ACT_CORRECT,
    AGENT_DONE,
    initial_state,
    intent_goal,
    no_message,
)
from ecomjax.tasks.goal import (
    MAX_INTENTS,
    MAX_ITEMS,
    MAX_REC,
    SLOT_QTY,
    SLOT_VARIANT,
    TASK,
    empty_intent,
)
from ecomjax.testing.rollout import episode
from ecomjax.world.state import (
    Capacities,
    add_seen,
    empty_world,
    make_call,
    product_stock,
)
from ecomjax.world.tools import TOOL_INDEX

pytestmark = pytest.mark.slow          # whole-task oracle/adversary rollouts: CI runs them separately

D = 21                      # difficulties 0..20
N_ORACLE = 200              # oracle episodes per difficulty
N_ADV = 5                   # adversary episodes per difficulty and mode
N_GEN = 40                  # generator draws per difficulty
STEPS = 14                  # T_max(20)
ADD = TOOL_INDEX["cart.add"]
MODES = ("oracle", "noop", "guess", "cheat", "wrong_qty", "wrong_variant", "extra", "no_answer")


def n_items(d):
    return np.minimum(5, 1 + np.asarray(d) // 3)


def t_max(d):
    return 4 + np.asarray(d) // 2


@pytest.fixture(scope="module")
def env_params(small_catalog):
    catalog, _ = small_catalog
    return make("CART", catalog)


# ------------------------------------------------------------------------------------------ generator

def _fill(world, products, variants, qtys):
    """The world with its cart set to the given lines (line j = entry j; -1 products leave it empty)."""
    c = world.cart_product.shape[0]
    pad = lambda x, v: jnp.full((c,), v, jnp.int32).at[: x.shape[0]].set(x)
    p = pad(products, -1)
    return world.replace(cart_product=p, cart_variant=jnp.where(p >= 0, pad(variants, -1), -1),
                         cart_qty=jnp.where(p >= 0, pad(qtys, 0), 0))


def _probe(state, wp):
    """The customer's feedback (cart.feedback) to scripted turns on a fresh CART episode state."""
    goal = intent_goal(state, 0)
    noop = noop_action(wp.cap)
    pres = lambda ids: noop.replace(msg_act=jnp.int32(PRESENT),
                                    presented=jnp.full((MAX_REC,), -1, jnp.int32).at[: ids.shape[0]].set(ids))
    out = {}
    out["present_all"] = cart.feedback(state, 0, pres(goal.items), wp)
    out["present_second"] = cart.feedback(state, 0, pres(goal.items[1:2]), wp)
    distractors = jnp.where(jnp.isin(state.world.visits, goal.items), -1, state.world.visits)[:MAX_REC]
    out["present_other"] = cart.feedback(state, 0, pres(distractors), wp)
    res = state.last_results
    added = state.replace(last_results=res.replace(tool=res.tool.at[0].set(ADD), error=res.error.at[0].set(0)))
    failed = state.replace(last_results=res.replace(tool=res.tool.at[0].set(ADD), error=res.error.at[0].set(7)))
    items, var, qty = goal.items, goal.item_variant, goal.item_qty
    alt_var = jnp.where(var[0] == 0, 1, 0)
    other = distractors[jnp.argmax(distractors >= 0)]
    carts = {
        "perfect": (items, var, qty),
        "too_many": (items, var, qty.at[0].add(1)),
        "too_few": (items, var, qty.at[0].add(-1)),
        "missing": (items.at[0].set(-1), var, qty),
        "wrong_variant": (items, var.at[0].set(alt_var), qty),
        "extra": (jnp.concatenate([items, other[None]]), jnp.concatenate([var, jnp.array([-1])]),
                  jnp.concatenate([qty, jnp.array([1])])),
    }
    for name, (p, v, q) in carts.items():
        out[name] = cart.feedback(added.replace(world=_fill(state.world, p, v, q)), 0, noop, wp)
    out["failed_call"] = cart.feedback(failed.replace(world=_fill(state.world, items, var, qty)), 0, noop, wp)
    return out


@pytest.fixture(scope="module")
def generated(env_params):
    """Two CART intents generated in sequence on one world (JOURNEY style) for 21 d × N_GEN keys, and the
    customer's feedback on an episode state made from the first (one compile)."""
    _, params = env_params
    wp = params.world

    @jax.jit
    def gen(keys, d):
        def one(k, dd):
            diff = difficulty(dd)
            k1, k2, k3 = jax.random.split(k, 3)
            g1, w1 = cart.generate(k1, diff, empty_world(wp.cap, 0), wp)
            g2, w2 = cart.generate(k2, diff, w1, wp)
            goals = jax.tree.map(lambda a, e: jnp.stack([a] + [e] * (MAX_INTENTS - 1)), g1, empty_intent())
            state = initial_state(k3, TASK["CART"], dd, goals, 1, w1, wp.cap, goals.mentioned, no_message())
            return (g1, w1, g2, w2), _probe(state, wp)
        return jax.vmap(one)(keys, d)

    keys = jax.random.split(jax.random.key(7), D * N_GEN)
    d = jnp.repeat(jnp.arange(D), N_GEN)
    out, probe = gen(keys, d)
    again, _ = gen(keys, d)
    other, _ = gen(jax.random.split(jax.random.key(8), D * N_GEN), d)
    return jax.tree.map(np.asarray, (out, again, other, probe)), np.asarray(d)


def _check_intent(catalog, g, visits, d_row):
    """Properties of one generated intent against the visit list it lives in."""
    items = g.items[g.items >= 0]
    n = len(items)
    leaf, brand = np.asarray(catalog.category), np.asarray(catalog.brand)
    assert np.all(g.items[:n] >= 0) and np.all(g.items[n:] == -1)                   # packed at the front
    assert len({(leaf[p], brand[p]) for p in items}) == n                            # distinct (leaf, brand)
    assert np.all(np.asarray(catalog.stock)[items] >= cart.QTY_MAX)
    assert not np.any(np.asarray(catalog.denied)[items])
    assert np.all(np.isin(items, visits))
    for p in items:                                                                  # unique description
        same = [q for q in visits if q >= 0 and leaf[q] == leaf[p] and brand[q] == brand[p]]
        assert same == [p]
    qty = g.item_qty[:n]
    assert np.all((qty == 1) | ((qty >= cart.QTY_MIN) & (qty <= cart.QTY_MAX)))
    assert np.all(g.item_qty[n:] == 0) and np.all(g.item_variant[n:] == -1)
    var = g.item_variant[:n]
    vv, vs = np.asarray(catalog.var_value), np.asarray(catalog.var_stock)
    for p, v, q in zip(items, var, qty):
        if v >= 0:
            assert vv[p, v] >= 0 and vs[p, v] >= q and np.sum(vv[p] >= 0) >= 2
    k = np.arange(MAX_ITEMS)
    assert np.array_equal(g.needed[SLOT_VARIANT + k], g.item_variant >= 0)
    assert np.array_equal(g.needed[SLOT_QTY + k], g.item_qty > 1)
    assert g.needed.sum() == (g.item_variant >= 0).sum() + (g.item_qty > 1).sum()
    assert np.all(g.mentioned <= g.needed)
    assert (g.needed & ~g.mentioned).sum() <= t_max(d_row) - 2                       # askable in time
    assert g.task == TASK["CART"]
    return n


def test_generator_properties(generated, small_catalog):
    catalog, _ = small_catalog
    (out, again, other, _), d = generated
    g1, w1, g2, w2 = out
    h = w1.visits.shape[1]
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(again)):                 # determinism (NaN == NaN)
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(out[0].items, other[0].items)
    cap_visits = h
    qty_multi, var_req = np.zeros(D), np.zeros(D)
    for b in range(len(d)):
        a, b1, c, b2 = jax.tree.map(lambda x, b=b: x[b], (g1, w1, g2, w2))
        n1 = _check_intent(catalog, a, b1.visits, d[b])
        assert n1 == n_items(d[b])
        vis1 = b1.visits[b1.visits >= 0]
        assert len(vis1) == n1 + max(3, 2 * n1) and len(set(vis1)) == len(vis1)
        assert np.all(b1.visits[: len(vis1)] >= 0)                                   # contiguous
        assert not np.any(np.asarray(catalog.denied)[vis1])
        # second intent appends: the first intent's visits stay, and both stay uniquely described
        assert np.array_equal(b2.visits[: len(vis1)], vis1)
        n2 = _check_intent(catalog, c, b2.visits, d[b])
        assert n2 == min(n_items(d[b]), cap_visits - len(vis1))
        _check_intent(catalog, a, b2.visits, d[b])
        assert not np.any(np.isin(c.items[c.items >= 0], a.items))
        vis2 = b2.visits[b2.visits >= 0]
        assert len(set(vis2)) == len(vis2)
        qty_multi[d[b]] += np.sum(a.item_qty > 1) / n1 / N_GEN
        var_req[d[b]] += np.sum(a.item_variant >= 0) / n1 / N_GEN
    assert qty_multi[0] == 0 and 0.3 <= qty_multi[20] <= 0.7                         # p_qty 0 / 0.5
    assert var_req[0] < 0.45 and var_req[20] > 0.9                                   # p_var 0.21 / ~1


# ------------------------------------------------------------------------------------------- verifier

@pytest.fixture(scope="module")
def verify_fn():
    cap = Capacities()

    @jax.jit
    def run(cart_product, cart_variant, cart_qty, items, item_variant, item_qty, present, seen_all):
        world = empty_world(cap).replace(cart_product=cart_product, cart_variant=cart_variant, cart_qty=cart_qty)
        world = add_seen(world, jnp.where(seen_all, cart_product, -1))
        goal = empty_intent().replace(items=items, item_variant=item_variant, item_qty=item_qty)
        answer = noop_action(cap).answer.replace(present=present)
        return cart.verify(None, world, goal, answer, difficulty(0))

    return run


def reference_f1(lines, goal):
    """NumPy reference: variant-aware unit F1 with exact rationals. lines/goal: lists of (p, v, q)."""
    matched = 0
    for p, v, q in goal:
        units = sum(lq for lp, lv, lq in lines if lp == p and (v < 0 or lv == v))
        matched += min(q, units)
    cart_units = sum(q for _, _, q in lines)
    req = sum(q for _, _, q in goal)
    prec = matched / cart_units if cart_units else 0.0
    rec = matched / req if req else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return f1, prec, rec, matched, matched == cart_units == req


cart_lines = st.lists(st.tuples(st.integers(0, 7), st.integers(-1, MAX_VARIANTS - 1), st.integers(1, 6)),
                      min_size=0, max_size=16)
goal_items = st.lists(st.tuples(st.integers(-1, MAX_VARIANTS - 1), st.integers(1, 4)), min_size=1, max_size=5)


@given(lines=cart_lines, goal=goal_items, present=st.booleans(), seen_all=st.booleans(),
       perm=st.permutations(range(8)))
@example(lines=[(0, -1, 1)], goal=[(-1, 1)], present=True, seen_all=True, perm=list(range(8)))   # 1 unit
@example(lines=[(0, 2, 1), (1, -1, 1)], goal=[(2, 1), (-1, 1)], present=True, seen_all=True,
         perm=list(range(8)))                                                                   # 2 units
def test_unit_f1_matches_reference(verify_fn, lines, goal, present, seen_all, perm):
    products = [100 + 7 * p for p in perm]                      # 8 distinct product ids, goal uses the first
    goal = [(products[n], v, q) for n, (v, q) in enumerate(goal)]
    lines = [(products[p], v, q) for p, v, q in lines]
    c = 16
    cp = np.full(c, -1, np.int32); cv = np.full(c, -1, np.int32); cq = np.zeros(c, np.int32)
    for j, (p, v, q) in enumerate(lines):
        cp[j], cv[j], cq[j] = p, v, q
    it = np.full(MAX_ITEMS, -1, np.int32); iv = np.full(MAX_ITEMS, -1, np.int32); iq = np.zeros(MAX_ITEMS, np.int32)
    for n, (p, v, q) in enumerate(goal):
        it[n], iv[n], iq[n] = p, v, q
    r, ok, parts = verify_fn(cp, cv, cq, it, iv, iq, present, seen_all)
    f1, prec, rec, matched, exact = reference_f1(lines, goal)
    np.testing.assert_allclose(np.asarray(parts), [f1, prec, rec, matched], rtol=1e-6, atol=1e-6)
    expect_r = 2 * f1 - 1 if present else -1.0
    np.testing.assert_allclose(float(r), expect_r, rtol=0, atol=1e-6)
    assert -1.0 <= float(r) <= 1.0 and np.isfinite(float(r))
    guessed = not seen_all and len(lines) > 0
    assert bool(ok) == (exact and present and not guessed)
    if exact and present:
        assert float(r) == 1.0                                  # exactly, no epsilon (R§4.3 bug)


# ------------------------------------------------------------------------------- oracle and adversaries

def policy(key, state, params, mode):
    """`ecomjax.oracle.act` (mode 0) or one of the adversaries MODES[1:], chosen by the traced int `mode`.
    All but noop / guess / cheat start from the oracle's action."""
    wp = params.world
    catalog, cap = wp.catalog, wp.cap
    goal = intent_goal(state, 0)
    base = ecomjax.oracle.act(key, state, params)
    noop = noop_action(cap)
    calls = base.calls
    is_add = calls.tool == ADD

    guess_id = jax.random.randint(key, (), 0, catalog.num_products)
    guess = set_call(noop, 0, make_call(cap, ADD, product=guess_id))
    guess = guess.replace(answer=guess.answer.replace(
        present=True, task=TASK["CART"], rec=guess.answer.rec.at[0].set(guess_id), n_rec=1, done=True))

    cheat = noop                       # adds the hidden targets without ever being shown them
    for j in range(MAX_ITEMS):
        c = make_call(cap, ADD, product=goal.items[j], variant=goal.item_variant[j], qty=goal.item_qty[j])
        cheat = set_call(cheat, j, jax.tree.map(lambda a, b, j=j: jnp.where(goal.items[j] >= 0, a, b[j]),
                                                c, noop.calls))
    cheat_answer = noop.replace(answer=noop.answer.replace(present=True, task=TASK["CART"], done=True))
    cheat = jax.tree.map(lambda a, b: jnp.where(state.turn == 0, a, b), cheat, cheat_answer)

    wrong_qty = base.replace(calls=calls.replace(
        qty=jnp.where(is_add & (calls.product == goal.items[0]), calls.qty + 1, calls.qty)))

    k = jnp.argmax(goal.item_variant >= 0)
    p, v = goal.items[k], goal.item_variant[k]
    slots = jnp.arange(MAX_VARIANTS)
    alt = jnp.argmax((catalog.var_value[jnp.clip(p, 0)] >= 0) & (slots != v))
    wrong_variant = base.replace(calls=calls.replace(
        variant=jnp.where(is_add & (calls.product == p) & (v >= 0), alt, calls.variant)))

    vis = state.world.visits
    stock = jax.vmap(lambda q: product_stock(state.world, catalog, q))(vis)
    other = vis[jnp.argmax((vis >= 0) & ~jnp.isin(vis, goal.items) & (stock > 0))]
    extra_call = jax.tree.map(lambda a, b: jnp.where(base.answer.present, a, b),
                              make_call(cap, ADD, product=other), jax.tree.map(lambda x: x[0], calls))
    extra = set_call(base, 0, extra_call)

    no_answer = base.replace(answer=base.answer.replace(present=False, done=False))
    options = (base, noop, guess, cheat, wrong_qty, wrong_variant, extra, no_answer)
    return jax.tree.map(lambda *xs: jnp.select([mode == m for m in range(len(xs) - 1)], list(xs[:-1]), xs[-1]),
                        *options)


@pytest.fixture(scope="module")
def rollouts(env_params):
    """Every episode of the module in ONE jitted call: the oracle (N_ORACLE per d) and each adversary
    (N_ADV per d), all 21 difficulties. Returns ({info key: {mode: [B_mode]}}, {mode: goal of intent 0})."""
    env, params = env_params

    @jax.jit
    def run(keys, d, mode):
        def one(k, dd, m):
            return episode(env, lambda kk, s, p: policy(kk, s, p, m), k, params, dd, None, STEPS)
        return jax.vmap(one)(keys, d, mode)

    counts = [N_ORACLE] + [N_ADV] * (len(MODES) - 1)
    d = np.concatenate([np.repeat(np.arange(D), n) for n in counts])
    mode = np.concatenate([np.full(D * n, m) for m, n in enumerate(counts)])
    keys = jax.random.split(jax.random.key(1), len(d))
    states, ts = run(keys, jnp.asarray(d), jnp.asarray(mode))
    info = jax.tree.map(np.asarray, ts.info)
    goal = jax.tree.map(lambda x: np.asarray(x)[:, 0], states.goal)
    split = lambda x: {name: x[mode == m] for m, name in enumerate(MODES)}
    return {k: split(v) for k, v in info.items()}, jax.tree.map(split, goal)


def test_oracle_correct_at_every_difficulty(rollouts):
    info, _ = rollouts
    ok = info["is_correct"]["oracle"]
    acc = ok.reshape(D, N_ORACLE).mean(axis=1)
    worst = int(np.argmin(acc))
    print(f"CART oracle accuracy per d: {np.round(acc, 3).tolist()} (worst d={worst}: {acc[worst]:.3f})")
    assert np.all(acc >= 0.99), acc
    assert np.all(info["r_task"]["oracle"][ok] == 1.0)
    turns = info["turns"]["oracle"].reshape(D, N_ORACLE)
    assert np.all(turns <= t_max(np.arange(D))[:, None])
    assert np.all(info["tool_errors"]["oracle"] == 0)
    assert np.all(info["termination_reason"]["oracle"][ok] == AGENT_DONE)     # the customer never quit


def test_rewards_finite_and_bounded(rollouts):
    info, _ = rollouts
    for m in MODES:
        print(f"CART {m:13s} r_task mean {info['r_task'][m].mean():+.3f}  correct {info['is_correct'][m].mean():.3f}")
        r = info["r_task"][m]
        assert np.all(np.isfinite(r)) and np.all(np.abs(r) <= 1.0), m
        assert np.all(np.isfinite(info["reward"][m])) and np.all(np.abs(info["reward"][m]) <= 1.0), m


def test_do_nothing_and_no_answer_score_minus_one(rollouts):
    info, _ = rollouts
    for m in ("noop", "no_answer"):
        assert np.all(info["r_task"][m] == -1.0), m
        assert not np.any(info["is_correct"][m]), m


def test_guessed_ids_never_correct(rollouts):
    info, _ = rollouts
    assert not np.any(info["is_correct"]["guess"])
    assert np.all(info["hall_rate"]["guess"] > 0)
    assert info["r_task"]["guess"].mean() <= 1.0 - 0.5
    # adding the exact hidden targets without ever seeing them fills a perfect cart, yet is not correct
    assert not np.any(info["is_correct"]["cheat"])
    assert np.mean(info["r_task"]["cheat"] == 1.0) > 0.95


def _units(goal, m):
    return goal.item_qty[m].sum(axis=1).astype(np.float64)


def test_wrong_quantity_variant_and_extra_product(rollouts):
    info, goal = rollouts
    req = _units(goal, "wrong_qty")
    bound = (2 * req - 1) / (2 * req + 1)                       # one surplus unit: F1 = 2R / (2R + 1)
    assert not np.any(info["is_correct"]["wrong_qty"])
    assert np.all(info["r_task"]["wrong_qty"] <= bound + 1e-6)

    req = _units(goal, "extra")
    assert not np.any(info["is_correct"]["extra"])
    assert np.all(info["r_task"]["extra"] <= (2 * req - 1) / (2 * req + 1) + 1e-6)

    g = goal.item_variant["wrong_variant"]
    has = np.any(g >= 0, axis=1)
    assert has.sum() > 50
    k = np.argmax(g >= 0, axis=1)
    q = goal.item_qty["wrong_variant"][np.arange(len(k)), k].astype(np.float64)
    req = _units(goal, "wrong_variant")
    bound = (2 * req - 3 * q) / (2 * req - q)                   # the item's units never match
    r = info["r_task"]["wrong_variant"]
    assert not np.any(info["is_correct"]["wrong_variant"][has])
    assert np.all(r[has] <= bound[has] + 1e-6)
    assert np.all(info["is_correct"]["wrong_variant"][~has])    # nothing to get wrong: the oracle's cart
    assert r[has].mean() <= 1.0 - 0.5


# ------------------------------------------------------------------------------------------- customer

@pytest.fixture(scope="module")
def probe(generated):
    (out, _, _, fb), _ = generated
    g1 = out[0]
    return fb, g1, g1.mentioned          # a fresh episode has revealed exactly the mentioned slots


def test_candidate_confirmation(probe):
    out, goal, revealed = probe
    n = (goal.items >= 0).sum(axis=1)
    pending = goal.needed & ~revealed
    fb = out["present_all"]
    assert np.all(fb.applies) and np.all(fb.act == ACT_CONFIRM) and np.all(fb.item == 0)
    np.testing.assert_allclose(fb.satisfaction, 1.0)
    expect = np.where(pending[:, SLOT_VARIANT], SLOT_VARIANT, np.where(pending[:, SLOT_QTY], SLOT_QTY, -1))
    assert np.array_equal(fb.reveal, expect)
    assert np.any(expect >= 0)
    fb = out["present_second"]
    multi = n >= 2
    assert np.array_equal(fb.applies, multi) and np.all(fb.item[multi] == 1)
    np.testing.assert_allclose(fb.satisfaction[multi], 1.0 / n[multi], rtol=1e-6)
    assert not np.any(out["present_other"].applies)


def test_cart_feedback(probe):
    out, goal, _ = probe
    n = (goal.items >= 0).sum(axis=1)
    fb = out["perfect"]
    assert np.all(fb.applies) and np.all(fb.act == ACT_CONFIRM) and np.all(fb.issue == cart.ISSUE_NONE)
    np.testing.assert_allclose(fb.satisfaction, 1.0)
    for name, code, rows in (
        ("too_many", cart.ISSUE_TOO_MANY, np.ones_like(n, bool)),
        ("too_few", cart.ISSUE_TOO_FEW, goal.item_qty[:, 0] > 1),
        ("missing", cart.ISSUE_MISSING, np.ones_like(n, bool)),
        ("wrong_variant", cart.ISSUE_WRONG_VARIANT, goal.item_variant[:, 0] >= 0),
    ):
        fb = out[name]
        assert rows.sum() > 10, name
        assert np.all(fb.act[rows] == ACT_CORRECT), name
        assert np.all(fb.issue[rows] == code) and np.all(fb.item[rows] == 0), name
        np.testing.assert_allclose(fb.satisfaction[rows], (n[rows] - 1) / n[rows], rtol=1e-6, err_msg=name)
    fb = out["extra"]
    assert np.all(fb.act == ACT_CORRECT) and np.all(fb.issue == cart.ISSUE_EXTRA) and np.all(fb.item == -1)
    np.testing.assert_allclose(fb.satisfaction, 1.0)
    assert not np.any(out["failed_call"].applies)                # no successful cart call, no cart feedback
