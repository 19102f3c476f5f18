"""RETURN — return + replacement: the customer describes a product they bought ("the <product type> by
<brand>") and wants to return it, possibly exchanging it for a product meeting some constraints
(SPEC §5 RETURN, R§4.4).

One world (SPEC §5): the orders the customer talks about are the orders the tools show. The generator
adds H_orders(d) orders to free order slots (random slots, so ids are not guessable; JOURNEY keeps the
earlier intents' orders), makes a random line of one new order the target, and puts there a product
whose (leaf category, brand) pair no other order line in the world has, so the description picks out
exactly one line. Lines of the new orders that share a pair with a line that was already in the world
get another product, so earlier intents' descriptions stay unique too. The target order is DELIVERED
and placed t_days ago: with probability p_edge(d) t_days = window + {−1, 0, +1} (the eligibility edge),
else U{1..window−5}; window = the return window of the product's top category (groceries 0: never
eligible). `eligible` comes from the tool's own `world.returns.eligibility`.

An eligible customer wants a replacement with probability 1/2: max(2, m(d)−1) constraints drawn from the
returned product (price bound loosened to 1.5× its price, leaf category, then attributes), trimmed to the
longest prefix some other in-stock, allowed product satisfies (none: no replacement).

Slots: SLOT_ORDER is needed but never in the opening message (the customer describes the product, not
the order); the reason and the replacement's attribute constraints are omitted with p_missing(d) (the
price bound and category of a replacement are always stated).

Verification (SPEC §5): r_sel = ±1 for selecting the target (order, line); r_ret = +1 iff eligible and
a return or exchange exists on the target line and on no other line, or ineligible and no return exists
at all; r_rep = 1 without a replacement, else 2·s^α − 1 for the exchanged product (in stock, allowed,
not the returned product; −1 otherwise or for a plain return). r_task = clip(0.45·r_sel + 0.45·r_ret +
0.10·r_rep); correct iff r_sel = r_ret = 1 and r_rep ≥ 0.95. A return on a line the customer did not
ask about is a real-world harm: incorrect (r_ret = −1).
"""

import jax
import jax.numpy as jnp

from ecomjax.catalog.retrieval import products_match
from ecomjax.catalog.types import Catalog, leaf_members
from ecomjax.tasks import constraints as C
from ecomjax.tasks import discovery as D
from ecomjax.tasks.action import ASK, INFORM, Action, Answer, noop_action
from ecomjax.tasks.difficulty import Difficulty
from ecomjax.tasks.episode import ACT_CLARIFY, ACT_CORRECT, EpisodeState, intent_goal, pending_slots
from ecomjax.tasks.goal import NUM_SLOTS, SLOT_ORDER, SLOT_REASON, TASK, IntentGoal, empty_intent
from ecomjax.tasks.pd import omit_slots, search_call
from ecomjax.world.errors import ToolError
from ecomjax.world.orders import MAX_LIST_DAYS, _eta_and_tracking, generate_orders
from ecomjax.world.returns import eligibility
from ecomjax.world.state import (
    DELIVERED, RETURN_KIND_EXCHANGE, RETURN_METHODS, RETURN_REASONS, ToolCall, World, make_call, no_call,
    product_stock, unit_price,
)
from ecomjax.world.tools import TOOL_INDEX, WorldParams

W_SEL, W_RET, W_REP = 0.45, 0.45, 0.10
CORRECT_AT = 0.95
NUM_PARTS = 4
P_REPLACEMENT = 0.5
REPLACEMENT_PRICE_SLACK = 0.5       # replacement price bound = (1 + slack) × the returned product's price
NON_EDGE_AGE_MAX = 25               # t_days ~ U{1..25} off the edge when the window is ≤ 5 days (groceries)
PRODUCT_DRAWS = 64                  # candidate draws for a uniquely described product (fixed shape)
LINE_REDRAWS = 8                    # candidate draws per new order line that clashes with an earlier line
IN_STORE = RETURN_METHODS.index("in_store")
ORDER_FIELDS = ("order_valid", "order_status", "order_day", "order_eta", "order_tracking", "order_address",
                "order_payment", "line_product", "line_variant", "line_qty", "line_price", "order_source")
LIST, GET_STATUS = TOOL_INDEX["order.list"], TOOL_INDEX["order.get_status"]
ORDER_TOOLS = (LIST, GET_STATUS, TOOL_INDEX["order.checkout"])
CHECK, INITIATE, EXCHANGE = (TOOL_INDEX["return.check_eligibility"], TOOL_INDEX["return.initiate"],
                             TOOL_INDEX["return.exchange"])
RETURN_TOOLS = (INITIATE, EXCHANGE)
ISSUE_NONE, ISSUE_WRONG_LINE = 0, 1
ISSUES: tuple[str, ...] = ("none", "wrong_line")
NUM_REASONS = len(RETURN_REASONS)
M = C.MAX_CONSTRAINTS


# --------------------------------------------------------------------- order history (shared with STATUS)

def same_description(catalog: Catalog, a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Whether products a [K] and b [N] share (leaf category, brand), the way the customer describes a
    product; -1 entries never match. -> [K, N] bool."""
    sa = jnp.clip(a, 0, catalog.num_products - 1)
    sb = jnp.clip(b, 0, catalog.num_products - 1)
    same = (catalog.category[sa][:, None] == catalog.category[sb][None, :]) & (
        catalog.brand[sa][:, None] == catalog.brand[sb][None, :])
    return same & (a >= 0)[:, None] & (b >= 0)[None, :]


def random_variant(key: jax.Array, catalog: Catalog, p: jnp.ndarray) -> jnp.ndarray:
    """A random catalog variant slot of p (-1 when p has none), as `generate_orders` draws them."""
    ps = jnp.clip(p, 0, catalog.num_products - 1)
    n_var = jnp.sum(catalog.var_value[ps] >= 0, axis=-1)
    v = jnp.floor(jax.random.uniform(key, jnp.shape(p)) * n_var).astype(jnp.int32)
    return jnp.where(n_var > 0, v, -1)


def _redraw_clashes(key: jax.Array, world: World, catalog: Catalog, new: jnp.ndarray,
                    old: jnp.ndarray) -> World:
    """Give every line of the `new` orders whose description clashes with an `old` line [N] another
    product (first of LINE_REDRAWS random draws that does not clash), with its variant and price."""
    o, nl = world.line_product.shape
    k_prod, k_var = jax.random.split(key)
    lines = world.line_product
    clash = new[:, None] & jnp.any(same_description(catalog, lines.reshape(-1), old), axis=1).reshape(o, nl)
    cand = jax.random.randint(k_prod, (o, nl, LINE_REDRAWS), 0, catalog.num_products)
    free = ~jnp.any(same_description(catalog, cand.reshape(-1), old), axis=1).reshape(o, nl, LINE_REDRAWS)
    pick = jnp.take_along_axis(cand, jnp.argmax(free, axis=-1)[..., None], axis=-1)[..., 0]
    swap = clash & jnp.any(free, axis=-1)
    variant = random_variant(k_var, catalog, pick)
    price = jax.vmap(jax.vmap(lambda p, v: unit_price(world, catalog, p, v)))(pick, variant)
    return world.replace(line_product=jnp.where(swap, pick, lines),
                         line_variant=jnp.where(swap, variant, world.line_variant),
                         line_price=jnp.where(swap, price, world.line_price))


def add_orders(key: jax.Array, world: World, catalog: Catalog, n: jnp.ndarray,
               force_one: bool) -> tuple[World, jnp.ndarray]:
    """Add min(n, free slots) orders drawn like `generate_orders` (relative to `world.today`) to random
    free order slots, keeping every order already in the world. Lines of the new orders never share a
    (leaf, brand) description with a line that was already there. `force_one`: with no free slot, the
    last slot is overwritten (so a target order always exists). Returns (world, new [O] bool)."""
    # The world is often a compile-time constant (an empty world at reset): without the barrier XLA
    # constant-folds the batched clash tests over it, which costs minutes of compile time.
    world = jax.lax.optimization_barrier(world)
    o = world.order_valid.shape[0]
    k_gen, k_slot, k_redraw = jax.random.split(key, 3)
    scratch = generate_orders(k_gen, world, catalog, jnp.int32(o))
    free = ~world.order_valid
    if force_one:
        free = jnp.where(jnp.any(free), free, jnp.arange(o) == o - 1)
    n_take = jnp.minimum(jnp.minimum(n, jnp.sum(free)), jnp.sum(scratch.order_valid))  # a real history can run out
    rank = jnp.argsort(jnp.argsort(jnp.where(free, jax.random.uniform(k_slot, (o,)), 2.0)))
    new = free & (rank < n_take)
    src = jnp.clip(rank, 0, o - 1)

    def take(mine, drawn):
        return jnp.where(new.reshape((o,) + (1,) * (mine.ndim - 1)), drawn[src], mine)

    out = world.replace(customer=scratch.customer,
                        **{f: take(getattr(world, f), getattr(scratch, f)) for f in ORDER_FIELDS})
    old = jnp.where((world.order_valid & ~new)[:, None], world.line_product, -1).reshape(-1)
    return _redraw_clashes(k_redraw, out, catalog, new, old), new


def random_member(key: jax.Array, mask: jnp.ndarray) -> jnp.ndarray:
    """A uniformly random index where mask is True (0 if none)."""
    return jnp.argmax(jnp.where(mask, jax.random.uniform(key, mask.shape), -1.0)).astype(jnp.int32)


def unique_product(key: jax.Array, world: World, catalog: Catalog, order, line) -> tuple[jnp.ndarray, jnp.ndarray]:
    """An in-stock, allowed product whose description no order line other than (order, line) has.
    Returns (product, found)."""
    others = world.line_product.at[order, line].set(-1).reshape(-1)
    cand = jax.random.randint(key, (PRODUCT_DRAWS,), 0, catalog.num_products)
    stock = jax.vmap(lambda p: product_stock(world, catalog, p))(cand)
    ok = (stock > 0) & ~catalog.denied[cand] & ~jnp.any(same_description(catalog, cand, others), axis=1)
    return cand[jnp.argmax(ok)], jnp.any(ok)


def set_line_product(key: jax.Array, world: World, catalog: Catalog, order, line, p) -> World:
    """Put product p (a random variant of it, at its unit price) on an order line."""
    v = random_variant(key, catalog, p)
    return world.replace(line_product=world.line_product.at[order, line].set(p),
                         line_variant=world.line_variant.at[order, line].set(v),
                         line_price=world.line_price.at[order, line].set(unit_price(world, catalog, p, v)))


def set_order_status(key: jax.Array, world: World, order, status, day) -> World:
    """Give an order a status and order day, with an ETA and tracking number consistent with them."""
    eta, tracking = _eta_and_tracking(key, jnp.asarray(status, jnp.int32), day, world.today)
    return world.replace(order_status=world.order_status.at[order].set(status),
                         order_day=world.order_day.at[order].set(day),
                         order_eta=world.order_eta.at[order].set(eta),
                         order_tracking=world.order_tracking.at[order].set(tracking))


def is_unique(world: World, catalog: Catalog, order, line) -> jnp.ndarray:
    """Whether the product on (order, line) has a description no other order line has."""
    p = world.line_product[order, line]
    others = world.line_product.at[order, line].set(-1).reshape(-1)
    return (p >= 0) & ~jnp.any(same_description(catalog, p[None], others))


# ------------------------------------------------------------------------------------------ generator

def target_age(key: jax.Array, window: jnp.ndarray, p_edge: jnp.ndarray) -> jnp.ndarray:
    """t_days: with probability p_edge window + {−1, 0, +1}, else U{1..window−5} (U{1..25} for windows of
    at most 5 days); at least 1."""
    k_edge, k_off, k_age = jax.random.split(key, 3)
    edge = jax.random.uniform(k_edge) < p_edge
    off = jax.random.randint(k_off, (), -1, 2)
    hi = jnp.where(window > 5, window - 5, NON_EDGE_AGE_MAX)
    normal = jax.random.randint(k_age, (), 1, hi + 1)
    return jnp.maximum(1, jnp.where(edge, window + off, normal)).astype(jnp.int32)


def replacement_constraints(key: jax.Array, catalog: Catalog, world: World, product: jnp.ndarray,
                            diff: Difficulty):
    """max(2, m−1) constraints from the returned product (price bound loosened, leaf category, attributes),
    trimmed to the longest prefix that some other in-stock, allowed product satisfies.
    Returns (c_key, c_op, c_value, c_mask); c_mask is all False when not even price + category is."""
    c_key, c_op, c_value, c_mask = D.draw_constraints(key, catalog, product, jnp.maximum(2, diff.m - 1), diff)
    price = catalog.price_cents[product].astype(jnp.float32)
    loose = jnp.ceil(price * (1.0 + REPLACEMENT_PRICE_SLACK)) / 100.0
    c_value = c_value.at[0].set(jnp.maximum(c_value[0], loose))
    ids = leaf_members(catalog, catalog.category[product])     # a kept prefix holds the category (constraint 1)
    other = D.available(world, catalog, ids) & (ids != product)

    def prefix(run, j):
        one = c_mask & (jnp.arange(M) == j)
        f = C.to_filters(c_key, c_op, c_value, one)
        passing = products_match(catalog, ids[None], jax.tree.map(lambda x: x[None], f))[0]
        run = run & jnp.where(c_mask[j], passing, True)
        return run, jnp.any(run & other)

    _, feasible = jax.lax.scan(prefix, ids >= 0, jnp.arange(M))
    keep = jnp.sum(jnp.cumprod(feasible) * c_mask)
    c_mask = c_mask & (jnp.arange(M) < keep) & (keep >= 2)
    return c_key, c_op, c_value, c_mask


def generate(key: jax.Array, diff: Difficulty, world: World, wp: WorldParams) -> tuple[IntentGoal, World]:
    catalog = wp.catalog
    k = jax.random.split(key, 11)
    world, new = add_orders(k[0], world, catalog, diff.h_orders, force_one=True)
    order = random_member(k[1], new)
    n_lines = jnp.sum(world.line_product[order] >= 0)
    line = jax.random.randint(k[2], (), 0, jnp.maximum(n_lines, 1)).astype(jnp.int32)
    product, _ = unique_product(k[3], world, catalog, order, line)
    world = set_line_product(k[4], world, catalog, order, line, product)
    window = catalog.return_window[catalog.top_category[product]]
    t_days = target_age(k[5], window, diff.p_edge)
    world = set_order_status(k[6], world, order, DELIVERED, world.today - t_days)
    _, eligible, _, _ = eligibility(world, catalog, order, line)

    c_key, c_op, c_value, c_mask = replacement_constraints(k[7], catalog, world, product, diff)
    replacement = eligible & (jax.random.uniform(k[8]) < P_REPLACEMENT) & jnp.any(c_mask)
    c_mask = c_mask & replacement
    needed = jnp.zeros((NUM_SLOTS,), bool).at[:M].set(c_mask).at[SLOT_ORDER].set(True).at[SLOT_REASON].set(True)
    k_omit, k_reason_omit = jax.random.split(k[9])
    mentioned = omit_slots(k_omit, c_mask, diff.p_missing)
    mentioned = mentioned.at[SLOT_REASON].set(jax.random.uniform(k_reason_omit) >= diff.p_missing)
    goal = empty_intent().replace(
        task=jnp.int32(TASK["RETURN"]), c_key=c_key, c_op=c_op, c_value=c_value, c_mask=c_mask,
        mentioned=mentioned, needed=needed, anchor=product.astype(jnp.int32), order=order, line=line,
        eligible=eligible, replacement=replacement,
        reason=jax.random.randint(k[10], (), 0, NUM_REASONS).astype(jnp.int32),
    )
    return goal, world


# ------------------------------------------------------------------------------------------- verifier

def verify(wp: WorldParams, world: World, goal: IntentGoal, answer: Answer, diff: Difficulty):
    """(r_task, is_correct, parts [r_sel, r_ret, r_rep, returns on other lines])."""
    catalog = wp.catalog
    used = world.ret_order >= 0
    on_target = used & (world.ret_order == goal.order) & (world.ret_line == goal.line)
    stray = used & ~on_target
    n_stray = jnp.sum(stray)
    returned = jnp.any(on_target)
    slot = jnp.argmax(on_target)
    exchanged = returned & (world.ret_kind[slot] == RETURN_KIND_EXCHANGE)
    new = jnp.where(exchanged, world.ret_new_product[slot], -1)
    s = C.satisfaction(catalog, new[None], goal.c_key, goal.c_op, goal.c_value, goal.c_mask)[0]
    usable = exchanged & D.available(world, catalog, new[None])[0] & (new != goal.anchor)
    r_rep = jnp.where(goal.replacement,
                      jnp.where(usable, 2.0 * s ** diff.alpha.astype(jnp.float32) - 1.0, -1.0), 1.0)
    selects = (answer.order == goal.order) & (answer.line == goal.line)
    r_sel = jnp.where(selects, 1.0, -1.0)
    ok_ret = jnp.where(goal.eligible, returned & (n_stray == 0), ~returned & (n_stray == 0))
    r_ret = jnp.where(ok_ret, 1.0, -1.0)
    r_task = jnp.clip(W_SEL * r_sel + W_RET * r_ret + W_REP * r_rep, -1.0, 1.0)
    r_task = jnp.where(answer.present, r_task, -1.0)
    correct = answer.present & selects & ok_ret & (r_rep >= CORRECT_AT)
    return r_task, correct, jnp.stack([r_sel, r_ret, r_rep, n_stray.astype(jnp.float32)])


# --------------------------------------------------------------------------------------------- oracle

def fetched_orders(state: EpisodeState) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Orders whose `order.get_status` the agent got back last turn: (ok [NC] bool, order [NC])."""
    res = state.last_results
    return (res.tool == GET_STATUS) & (res.error == ToolError.OK), res.ref


def listed_orders(state: EpisodeState) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The order ids of last turn's first successful `order.list`: (any, ids [K], -1 pads)."""
    res = state.last_results
    ok = (res.tool == LIST) & (res.error == ToolError.OK)
    return jnp.any(ok), jnp.where(jnp.any(ok), res.ids[jnp.argmax(ok)], -1)


def find_line(world: World, catalog: Catalog, anchor, fetched_ok, fetched) -> tuple:
    """The fetched order line whose product the customer described (same leaf category and brand):
    (found, order, line)."""
    o, nl = world.line_product.shape
    lines = world.line_product[jnp.clip(fetched, 0, o - 1)]                          # [NC, L]
    match = same_description(catalog, lines.reshape(-1), anchor[None])[:, 0].reshape(lines.shape)
    match &= fetched_ok[:, None]
    flat = jnp.argmax(match.reshape(-1))
    return jnp.any(match), fetched[flat // nl].astype(jnp.int32), (flat % nl).astype(jnp.int32)


def _replacement_candidate(world: World, catalog: Catalog, goal: IntentGoal) -> jnp.ndarray:
    """A product the agent was shown (search results are in `seen`) that meets every replacement
    constraint, is available and is not the returned product; -1 if none."""
    seen = world.seen
    ok = C.feasible(catalog, seen, goal.c_key, goal.c_op, goal.c_value, goal.c_mask)
    ok &= D.available(world, catalog, seen) & (seen >= 0) & (seen != goal.anchor)
    return jnp.where(jnp.any(ok), seen[jnp.argmax(ok)], -1).astype(jnp.int32)


def calls_from(cap, kinds: jnp.ndarray, orders: jnp.ndarray, lines: jnp.ndarray, options) -> ToolCall:
    """Stack calls [NC]: slot s is `options[kinds[s]](orders[s], lines[s])` (kind -1: empty slot)."""
    def one(kind, order, line):
        made = [fn(order, line) for fn in options]
        return jax.tree.map(lambda none, *xs: jnp.select([kind == j for j in range(len(xs))], list(xs), none),
                            no_call(cap), *made)

    return jax.vmap(one)(kinds, orders, lines)


def oracle(key: jax.Array, state: EpisodeState, i, wp: WorldParams, diff: Difficulty) -> Action:
    """A careful agent, one dependent step per turn; every turn also asks one pending slot (the reason,
    then the replacement's constraints).

    Find the line: `order.list(365)`, then `order.get_status` on the listed orders (as many as b_tool
    allows; the customer names the order when asked or when an order tool is used, and is asked for it
    when the fetched orders hold no matching line), and match the described (leaf, brand) on the lines.
    With a replacement: once its constraints are known, search with them as filters (before the last
    lookup, so a one-call budget fits T_max(0)); the exchange takes a feasible, available product the
    agent was shown. Eligibility is the published window policy applied to the fetched order (what
    `return.check_eligibility` reports; the check also runs alongside when the budget has room).
    Ineligible: answer with the line and initiate nothing. Eligible: `return.initiate` (in store) or
    `return.exchange`, and answer, in the same turn. Re-fetches the order while waiting on the customer
    so the line stays known."""
    del key
    goal = intent_goal(state, i)
    world, catalog, cap = state.world, wp.catalog, wp.cap
    nc = cap.calls_per_turn
    budget = jnp.clip(diff.b_tool, 1, nc)
    pending = pending_slots(state, i)
    order_known = state.revealed[i, SLOT_ORDER]
    fetched_ok, fetched = fetched_orders(state)
    found, o, ln = find_line(world, catalog, goal.anchor, fetched_ok, fetched)
    any_listed, listed = listed_orders(state)

    reason_known = ~pending[SLOT_REASON]
    constraints_known = ~jnp.any(pending[:M])
    _, eligible, _, _ = eligibility(world, catalog, o, ln)
    cand = _replacement_candidate(world, catalog, goal)
    need_search = goal.replacement & constraints_known & (cand < 0)
    final = found & (~eligible | (reason_known & (~goal.replacement | (constraints_known & (cand >= 0)))))

    # Non-final turn: [search] + order step(s) + [eligibility check], within the budget.
    n_listed = jnp.sum(listed[:nc] >= 0)
    order_step = jnp.select(
        [found, order_known, any_listed, jnp.any(fetched_ok)], [1, 2, 3, 0], 4)   # 0: none (ask for it)
    n_order = jnp.select([order_step == 3, order_step == 0], [n_listed, 0], 1)
    s = jnp.arange(nc)
    a = need_search.astype(jnp.int32)
    j = s - a                                                    # index among the order-step calls
    kind_search, kind_list, kind_status, kind_check = 0, 1, 2, 3
    kinds = jnp.where(s < a, kind_search, jnp.where(
        j < n_order, jnp.where(order_step == 4, kind_list, kind_status),
        jnp.where(found & (j == n_order), kind_check, -1)))
    status_of = jnp.select([order_step == 1, order_step == 2], [o, goal.order], listed[jnp.clip(j, 0, nc - 1)])
    kinds = jnp.where(s < budget, kinds, -1)
    search = search_call(wp, goal, cap)
    work = calls_from(cap, kinds, jnp.where(kinds == kind_status, status_of, o), jnp.full((nc,), ln), (
        lambda _o, _l: search,
        lambda _o, _l: make_call(cap, LIST, days=MAX_LIST_DAYS),
        lambda order, _l: make_call(cap, GET_STATUS, order=order),
        lambda order, line: make_call(cap, CHECK, order=order, line=line),
    ))

    # Final turn: the return / exchange on the target line (nothing when ineligible) and the answer.
    act = jnp.where(~eligible, -1, jnp.where(goal.replacement, 1, 0))
    finish = calls_from(cap, jnp.where(s == 0, act, -1), jnp.full((nc,), o), jnp.full((nc,), ln), (
        lambda order, line: make_call(cap, INITIATE, order=order, line=line, reason=goal.reason, method=IN_STORE),
        lambda order, line: make_call(cap, EXCHANGE, order=order, line=line, product=cand, variant=-1,
                                      reason=goal.reason, method=IN_STORE),
    ))

    info = pending.at[SLOT_ORDER].set(False)
    ask_order = ~found & ~order_known & (order_step == 0)
    ask_slot = jnp.where(final, -1, jnp.where(ask_order, SLOT_ORDER, jnp.where(jnp.any(info), jnp.argmax(info), -1)))
    action = noop_action(cap)
    answer = action.answer.replace(present=final, task=goal.task, intent=jnp.asarray(i, jnp.int32), order=o,
                                   line=ln, done=final)
    return action.replace(
        msg_act=jnp.where(ask_slot >= 0, ASK, INFORM).astype(jnp.int32), ask_slot=ask_slot.astype(jnp.int32),
        calls=jax.tree.map(lambda f, w: jnp.where(final, f, w), finish, work), answer=answer,
    )


# ------------------------------------------------------------------------------------------- customer

def feedback(state: EpisodeState, i, action: Action, wp: WorldParams):
    """RETURN disambiguation (R§8.4): a return or exchange created this turn on a line other than the
    target → CORRECT (issue `wrong_line`, item = the target line, satisfaction 0); otherwise, while the
    order is unknown to the agent, an order tool call (or a question about the order) → the customer
    names the order: CLARIFY revealing SLOT_ORDER (item = the target line)."""
    from ecomjax.user.core import Feedback, no_feedback

    del wp
    goal = intent_goal(state, i)
    res = state.last_results
    calls = action.calls
    made = jnp.isin(res.tool, jnp.asarray(RETURN_TOOLS)) & (res.error == ToolError.OK)
    wrong = jnp.any(made & ((calls.order != goal.order) | (calls.line != goal.line)))
    asked = (action.msg_act == ASK) & (action.ask_slot == SLOT_ORDER)
    order_call = jnp.any(jnp.isin(calls.tool, jnp.asarray(ORDER_TOOLS)))
    name_order = pending_slots(state, i)[SLOT_ORDER] & (asked | order_call)
    fb = Feedback(
        applies=wrong | name_order,
        act=jnp.where(wrong, ACT_CORRECT, ACT_CLARIFY).astype(jnp.int32),
        item=goal.line, issue=jnp.where(wrong, ISSUE_WRONG_LINE, ISSUE_NONE).astype(jnp.int32),
        satisfaction=jnp.where(wrong, 0.0, 0.5).astype(jnp.float32),
        reveal=jnp.where(wrong, -1, SLOT_ORDER).astype(jnp.int32),
    )
    return jax.tree.map(lambda a, b: jnp.where(fb.applies, a, b), fb, no_feedback())
