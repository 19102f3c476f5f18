"""The 17 tools: dispatch, error codes, budget, return windows, seen ids, jit/vmap equivalence, no retracing."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomjax.catalog.lexical import hash_text
from ecomjax.catalog.schema import QUERY_TOKENS
from ecomjax.world import (
    TOOL_INDEX, TOOL_NAMES, Capacities, ToolError, WorldParams, empty_world, make_call, run_calls_batch, run_turn,
)
from ecomjax.world.orders import generate_orders
from ecomjax.world.policy_kb import kb_arrays
from ecomjax.world.state import CANCELLED, DELIVERED, ORDER_STATUSES, add_seen, was_seen

CAP = Capacities(cart_lines=6, orders=6, order_lines=3, returns=4, seen=64, calls_per_turn=4, results=10)
T = TOOL_INDEX
NC = CAP.calls_per_turn


@pytest.fixture(scope="module")
def env(small_catalog):
    catalog, vocab = small_catalog
    params = WorldParams(catalog=catalog, policy_tokens=jnp.asarray(kb_arrays()["tokens"]), cap=CAP)
    run = jax.jit(run_turn)
    return catalog, vocab, params, run


def _world(catalog, seed=0, n_orders=4):
    w = empty_world(CAP, today=20_000)
    w = generate_orders(jax.random.key(seed), w, catalog, jnp.int32(n_orders))
    return w.replace(visits=w.visits.at[:3].set(jnp.array([5, 6, 7])))


def _calls(*calls):
    """Stack up to NC calls, padding with empty slots."""
    pad = [make_call(CAP, -1)] * (NC - len(calls))
    return jax.tree.map(lambda *x: jnp.stack(x), *(list(calls) + pad))


def _q(text):
    return hash_text(text, QUERY_TOKENS)


def _turn(run, params, world, calls, budget=NC, d_depth=200, eps=0.0, key=0):
    return run(jax.random.key(key), world, calls, params, jnp.int32(budget), jnp.int32(d_depth), jnp.float32(eps))


def _in_stock(catalog, n=2):
    return [int(i) for i in np.nonzero(np.asarray(catalog.stock) > 5)[0][:n]]


def test_registry_has_the_17_tools():
    assert len(TOOL_NAMES) == 17 and len(set(TOOL_NAMES)) == 17
    assert {"catalog.search", "cart.add", "return.exchange", "policy.search", "datetime.now",
            "user.get_visit_history"} <= set(TOOL_NAMES)


def test_search_shows_results_and_marks_them_seen(env):
    catalog, vocab, params, run = env
    world = _world(catalog)
    call = make_call(CAP, T["catalog.search"], query=_q(vocab.title(42)), top_k=5)
    new, res = _turn(run, params, world, _calls(call))
    ids = np.asarray(res.ids[0])
    assert int(res.error[0]) == 0 and ids[0] == 42 and (ids[:5] >= 0).all() and (ids[5:] == -1).all()
    assert set(ids[:5]) <= set(np.asarray(new.seen).tolist()) and int(new.seen_count) == 5
    rerank = make_call(CAP, T["catalog.rerank"], query=_q(vocab.title(42)),
                       ids=jnp.full((CAP.rerank,), -1).at[:3].set(jnp.array([900, 42, 901])), top_k=2)
    new2, res2 = _turn(run, params, world, _calls(rerank))
    assert np.asarray(res2.ids[0])[:3].tolist() == [42, np.asarray(res2.ids[0])[1], -1]
    assert int(new2.seen_count) == 0                                             # rerank shows no new cards


@pytest.mark.parametrize("name,args,code", [
    ("catalog.search", dict(query=np.zeros(QUERY_TOKENS, np.int32)), ToolError.EMPTY_QUERY),
    ("catalog.search", dict(query=_q("shirt"), top_k=0), ToolError.BAD_ARGUMENT),
    ("catalog.search", dict(query=_q("shirt"), top_k=51), ToolError.BAD_ARGUMENT),
    ("catalog.get_product", dict(product=2000), ToolError.UNKNOWN_PRODUCT),
    ("catalog.get_product", dict(product=-7), ToolError.UNKNOWN_PRODUCT),
    ("catalog.get_variants", dict(product=10**9), ToolError.UNKNOWN_PRODUCT),
    ("catalog.rerank", dict(query=_q("shirt"), ids=np.full(20, -1).astype(np.int32)), ToolError.BAD_ARGUMENT),
    ("cart.add", dict(product=2000), ToolError.UNKNOWN_PRODUCT),
    ("cart.add", dict(product=0, qty=-1), ToolError.BAD_QUANTITY),
    ("cart.add", dict(product=0, qty=10**6), ToolError.BAD_QUANTITY),
    ("cart.add", dict(product=0, variant=9), ToolError.UNKNOWN_VARIANT),
    ("cart.remove", dict(line=3), ToolError.UNKNOWN_LINE),
    ("cart.set_quantity", dict(line=-1, qty=1), ToolError.UNKNOWN_LINE),
    ("order.list", dict(days=0), ToolError.BAD_ARGUMENT),
    ("order.list", dict(days=366), ToolError.BAD_ARGUMENT),
    ("order.get_status", dict(order=5), ToolError.UNKNOWN_ORDER),
    ("order.get_status", dict(order=99), ToolError.UNKNOWN_ORDER),
    ("order.checkout", dict(address=0, payment=0), ToolError.EMPTY_CART),
    ("return.check_eligibility", dict(order=0, line=7), ToolError.UNKNOWN_ORDER_LINE),
    ("return.initiate", dict(order=9, line=0), ToolError.UNKNOWN_ORDER),
    ("return.initiate", dict(order=0, line=0, reason=8), ToolError.BAD_ARGUMENT),
    ("return.initiate", dict(order=0, line=0, method=3), ToolError.BAD_ARGUMENT),
    ("return.exchange", dict(order=0, line=0, product=2000), ToolError.UNKNOWN_PRODUCT),
    ("policy.search", dict(query=_q("return window electronics"), top_k=21), ToolError.BAD_ARGUMENT),
])
def test_invalid_arguments_give_named_errors_and_change_nothing(env, name, args, code):
    catalog, _, params, run = env
    world = _world(catalog)
    world = world.replace(order_day=world.order_day.at[0].set(world.today - 1),
                          order_status=world.order_status.at[0].set(DELIVERED))
    new, res = _turn(run, params, world, _calls(make_call(CAP, T[name], **args)))
    assert int(res.error[0]) == code, ToolError(int(res.error[0])).name
    for field in ("cart_product", "cart_qty", "order_valid", "ret_order", "seen"):
        assert np.array_equal(np.asarray(getattr(new, field)), np.asarray(getattr(world, field)))
    assert int(new.tool_errors) == 1 and int(new.tool_calls) == 1


def test_budget_and_unknown_tool(env):
    catalog, _, params, run = env
    world = _world(catalog)
    a, b = _in_stock(catalog)
    calls = _calls(make_call(CAP, T["cart.add"], product=a), make_call(CAP, T["cart.add"], product=b),
                   make_call(CAP, 17), make_call(CAP, T["cart.view"]))
    new, res = _turn(run, params, world, calls, budget=1)
    assert np.asarray(res.error).tolist() == [0, ToolError.BUDGET_EXCEEDED, ToolError.UNKNOWN_TOOL,
                                              ToolError.BUDGET_EXCEEDED]
    assert np.asarray(new.cart_product)[:2].tolist() == [a, -1]
    assert int(new.tool_calls) == 4 and int(new.tool_errors) == 3


def test_cart_then_checkout_creates_an_order(env):
    catalog, _, params, run = env
    world = empty_world(CAP, today=20_000)
    a, b = _in_stock(catalog)
    calls = _calls(make_call(CAP, T["cart.add"], product=a, qty=2), make_call(CAP, T["cart.add"], product=b),
                   make_call(CAP, T["order.checkout"], address=1, payment=0))
    new, res = _turn(run, params, world, calls)
    assert np.asarray(res.error).tolist()[:3] == [0, 0, 0]
    o = int(res.ref[2])
    assert bool(new.order_valid[o]) and ORDER_STATUSES[int(new.order_status[o])] == "CONFIRMED"
    assert np.asarray(new.line_product[o]).tolist()[:2] == [a, b] and np.asarray(new.line_qty[o])[:2].tolist() == [2, 1]
    assert int(new.line_price[o, 0]) == int(catalog.price_cents[a]) and int(new.order_eta[o]) > int(new.today)
    assert (np.asarray(new.cart_product) == -1).all()


@pytest.mark.parametrize("top,window", [("electronics", 15), ("clothing", 30), ("groceries", 0), ("toys", 30)])
def test_return_window_by_top_category_at_the_edges(env, top, window):
    catalog, vocab, params, run = env
    top_id = vocab.categories.index(top)
    p = int(np.nonzero((np.asarray(catalog.top_category) == top_id) & (np.asarray(catalog.stock) > 0))[0][0])
    for age in (window - 1, window, window + 1):
        world = _world(catalog)
        world = world.replace(line_product=world.line_product.at[0, 0].set(p),
                              order_day=world.order_day.at[0].set(world.today - age),
                              order_status=world.order_status.at[0].set(DELIVERED))
        calls = _calls(make_call(CAP, T["return.check_eligibility"], order=0, line=0),
                       make_call(CAP, T["return.initiate"], order=0, line=0, reason=0, method=1))
        new, res = _turn(run, params, world, calls)
        eligible = 0 < window and age <= window and age >= 0
        assert bool(res.eligible[0]) == eligible and int(res.window[0]) == window and int(res.days_since[0]) == age
        assert int(res.error[1]) == (ToolError.OK if eligible else ToolError.NOT_ELIGIBLE)
        assert (int(new.ret_order[0]) == 0) == eligible


def test_returns_duplicates_cancelled_and_exchanges(env):
    catalog, _, params, run = env
    world = _world(catalog)
    world = world.replace(order_day=world.order_day.at[:2].set(world.today - 1),
                          order_status=world.order_status.at[:2].set(jnp.array([DELIVERED, CANCELLED])),
                          line_product=world.line_product.at[:2, 0].set(jnp.array(_in_stock(catalog))))
    new_product = _in_stock(catalog, 3)[2]
    calls = _calls(make_call(CAP, T["return.initiate"], order=0, line=0, reason=1, method=0),
                   make_call(CAP, T["return.initiate"], order=0, line=0, reason=1, method=0),
                   make_call(CAP, T["return.initiate"], order=1, line=0, reason=1, method=0),
                   make_call(CAP, T["return.exchange"], order=0, line=0, product=new_product))
    new, res = _turn(run, params, world, calls)
    assert np.asarray(res.error).tolist() == [0, ToolError.DUPLICATE_RETURN, ToolError.NOT_ELIGIBLE,
                                              ToolError.DUPLICATE_RETURN]
    assert int(res.fee[0]) == 599 and np.asarray(new.ret_order).tolist() == [0, -1, -1, -1]
    world2 = world.replace(oos=world.oos.at[0].set(new_product))
    _, res2 = _turn(run, params, world2, _calls(make_call(CAP, T["return.exchange"], order=0, line=0,
                                                          product=new_product)))
    assert int(res2.error[0]) == ToolError.OUT_OF_STOCK


def test_policy_search_and_misc_tools(env):
    catalog, _, params, run = env
    world = _world(catalog)
    calls = _calls(make_call(CAP, T["policy.search"], query=_q("return window electronics"), top_k=3),
                   make_call(CAP, T["datetime.now"]), make_call(CAP, T["user.get_visit_history"]),
                   make_call(CAP, T["order.list"], days=90))
    new, res = _turn(run, params, world, calls)
    assert np.asarray(res.error).tolist() == [0, 0, 0, 0]
    assert (np.asarray(res.policy[0])[:3] >= 0).all() and (np.asarray(res.policy[0])[3:] == -1).all()
    assert np.asarray(res.ids[2])[:4].tolist() == [5, 6, 7, -1] and {5, 6, 7} <= set(np.asarray(new.seen).tolist())
    listed = np.asarray(res.ids[3])
    assert listed[:4].tolist() == [0, 1, 2, 3] and (listed[4:] == -1).all()


def test_order_history_is_relative_to_today_and_consistent(small_catalog):
    catalog, _ = small_catalog
    for seed in range(20):
        today = 10_000 + 37 * seed
        w = generate_orders(jax.random.key(seed), empty_world(CAP, today=today), catalog, jnp.int32(CAP.orders))
        days = np.asarray(w.order_day)
        status, eta = np.asarray(w.order_status), np.asarray(w.order_eta)
        assert (days <= today).all() and (days >= today - 90).all() and (np.diff(days) <= 0).all()
        delivered = status == DELIVERED
        assert (eta[delivered] >= days[delivered]).all() and (eta[delivered] <= today).all()
        assert ((np.asarray(w.order_tracking) >= 0) == np.isin(status, [1, 2, 3])).all()
        lines = np.asarray(w.line_product)
        assert (lines[:, 0] >= 0).all() and (lines < catalog.num_products).all()


SEEN_SIZE = 1024
SEEN_LOAD = 460                      # 45% of the table, about what a d=15 JOURNEY oracle shows


@pytest.mark.parametrize("seed", range(4))
def test_seen_set_keeps_every_id_below_half_full(seed):
    """A window of 8 probes lost an id in ~60% of such fills (an id the agent was shown then counted as
    guessed); every id must stay findable."""
    ids = jax.random.choice(jax.random.key(seed), 1 << 20, (SEEN_LOAD,), replace=False).astype(jnp.int32)
    world = empty_world(Capacities(seen=SEEN_SIZE))
    world = jax.jit(add_seen)(world, ids)
    assert int(world.seen_overflow) == 0 and int(world.seen_count) == SEEN_LOAD
    assert bool(jnp.all(was_seen(world, ids)))
    assert not bool(jnp.any(was_seen(world, ids + (1 << 20))))


def _mixed_calls(catalog, vocab, b):
    a, c = _in_stock(catalog)
    per_env = []
    for i in range(b):
        per_env.append(_calls(
            make_call(CAP, T["catalog.search"], query=_q(vocab.title(i * 13)), top_k=3 + i % 5),
            make_call(CAP, T["cart.add"], product=a if i % 2 else c, qty=1 + i % 3, variant=-1 + (i % 3)),
            make_call(CAP, [T["cart.view"], T["order.list"], T["return.initiate"], 19][i % 4], order=i % 3,
                      line=0, days=30),
            make_call(CAP, T["cart.set_quantity"], line=0, qty=i % 4),
        ))
    return jax.tree.map(lambda *x: jnp.stack(x), *per_env)


@pytest.mark.slow
def test_vmap_equals_loop_and_jit_equals_no_jit(env):
    catalog, vocab, params, run = env
    b = 6
    worlds = jax.tree.map(lambda *x: jnp.stack(x), *[_world(catalog, seed=i) for i in range(b)])
    calls = _mixed_calls(catalog, vocab, b)
    keys = jax.random.split(jax.random.key(1), b)
    budget, depth, eps = jnp.arange(b) % 4 + 1, jnp.full(b, 200), jnp.full(b, 0.3)
    batched = jax.jit(run_calls_batch)(keys, worlds, calls, params, budget, depth, eps)
    vmapped = jax.jit(jax.vmap(run_turn, in_axes=(0, 0, 0, None, 0, 0, 0)))(keys, worlds, calls, params, budget,
                                                                           depth, eps)
    with jax.disable_jit():
        unjitted = run_turn(keys[2], jax.tree.map(lambda x: x[2], worlds), jax.tree.map(lambda x: x[2], calls),
                            params, budget[2], depth[2], eps[2])
    for i in range(b):
        single = run(keys[i], jax.tree.map(lambda x: x[i], worlds), jax.tree.map(lambda x: x[i], calls), params,
                     budget[i], depth[i], eps[i])
        chex.assert_trees_all_equal(jax.tree.map(lambda x: x[i], batched), single)
        chex.assert_trees_all_equal(jax.tree.map(lambda x: x[i], vmapped), single)
    chex.assert_trees_all_equal(jax.tree.map(lambda x: x[2], batched), unjitted)


def test_batched_turn_does_not_retrace(env):
    catalog, vocab, params, _ = env
    b = 4

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(keys, worlds, calls, budget):
        return run_calls_batch(keys, worlds, calls, params, budget, jnp.full(b, 200), jnp.full(b, 0.1))

    worlds = jax.tree.map(lambda *x: jnp.stack(x), *[_world(catalog, seed=i) for i in range(b)])
    for seed in range(3):
        keys = jax.random.split(jax.random.key(seed), b)
        worlds, results = step(keys, worlds, _mixed_calls(catalog, vocab, b), jnp.full(b, seed + 1))
        leaves = jax.tree.leaves(worlds) + jax.tree.leaves(results)
        assert not any(np.isnan(np.asarray(x, np.float64)).any() for x in leaves if x.dtype.kind == "f")
