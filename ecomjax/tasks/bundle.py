"""BUNDLE — project planning: recommend one product for each of the categories a project needs, within an
optional budget.

The generator draws |S_req| = min(n_categories(d), MAX_REC) distinct leaf categories of the catalog's own
taxonomy (nodes that are products' leaf categories: `category_level == 2` in the synthetic catalog) that
are not denied and hold at least one product available in this episode (fixing R§4.7, whose project
category names never matched the catalog). The cap at MAX_REC = 10 (< n_categories(20) = 12) is because
an answer holds at most MAX_REC ids. A budget exists iff d ≥ 2 and a draw < 0.6:
B = round(Σ_required cheapest available price · U(1.1, 1.5)) cents, so it is always feasible. The
categories are always stated; the budget is a slot (SLOT_BUDGET), omitted with probability p_missing(d).

Scoring (SPEC §5, integer unit counts as CART): a recommended product counts when it is a catalog product,
available in this episode and allowed; matched = number of required categories covered by a counted
product; precision = matched / number of recommended products (duplicates, extra or bad products count
against it), recall = matched / |S_req|; F1 is exactly 1 iff matched == |S_req| == number of recommended
products. pen = clip((cost − B)/B, 0, 1) when over budget (cost = prices of the listed catalog products);
r_task = clip(2·F1 − 1 − pen, −1, 1). Correct iff F1 == 1 (integer test), cost ≤ B and every listed id was
shown to the agent.
"""

import jax
import jax.numpy as jnp

from ecomjax.catalog.retrieval import no_filters
from ecomjax.catalog.schema import QUERY_TOKENS, RANGE_FIELDS
from ecomjax.tasks import discovery as D
from ecomjax.tasks.action import ASK, INFORM, PRESENT, Action, noop_action
from ecomjax.tasks.difficulty import Difficulty
from ecomjax.tasks.episode import EpisodeState, intent_goal, pending_slots
from ecomjax.tasks.goal import (
    MAX_CATEGORIES,
    MAX_REC,
    NUM_SLOTS,
    SLOT_BUDGET,
    TASK,
    IntentGoal,
    empty_intent,
)
from ecomjax.user.core import no_feedback
from ecomjax.world.state import World, make_call, was_seen
from ecomjax.world.tools import TOOL_INDEX, WorldParams

BUDGET_FROM_D = 2
P_BUDGET = 0.6
BUDGET_SLACK = (1.1, 1.5)
SEARCH_TOP_K = 50
NUM_PARTS = 4
INT_MAX = jnp.iinfo(jnp.int32).max
PRICE_FIELD = RANGE_FIELDS.index("price")
HALF_CENT = 0.005


def leaf_availability(world: World, catalog) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per category node: available products in this episode and the cheapest one's price (cents, INT_MAX
    when none). Only products' leaf nodes can be non-zero. # ([C] int32, [C] int32)"""
    oos = jax.lax.optimization_barrier(world.oos)       # keeps XLA from constant-folding [B, P] segment ops
    valid = (oos >= 0) & (oos < catalog.num_products)
    overridden = jnp.zeros((catalog.num_products,), bool).at[jnp.where(valid, oos, catalog.num_products)].set(
        True, mode="drop")
    avail = (catalog.stock > 0) & ~catalog.denied & ~overridden                      # O(P + K)
    count = jax.ops.segment_sum(avail.astype(jnp.int32), catalog.category, catalog.num_categories)
    cheapest = jax.ops.segment_min(jnp.where(avail, catalog.price_cents, INT_MAX), catalog.category,
                                   catalog.num_categories)
    return count, jnp.where(count > 0, cheapest, INT_MAX)


def generate(key: jax.Array, diff: Difficulty, world: World, wp: WorldParams) -> tuple[IntentGoal, World]:
    catalog = wp.catalog
    k_cats, k_has, k_slack, k_omit = jax.random.split(key, 4)
    count, cheapest = leaf_availability(world, catalog)
    ok = count > 0                                       # available => leaf of some product, not denied
    n = jnp.minimum(jnp.minimum(diff.n_categories, MAX_REC), jnp.sum(ok)).astype(jnp.int32)
    score = jnp.where(ok, jax.random.uniform(k_cats, ok.shape), -1.0)
    _, order = jax.lax.top_k(score, min(MAX_CATEGORIES, catalog.num_categories))
    cats = jnp.full((MAX_CATEGORIES,), -1, jnp.int32).at[: order.shape[0]].set(order.astype(jnp.int32))
    cats = jnp.where(jnp.arange(MAX_CATEGORIES) < n, cats, -1)
    floor = jnp.sum(jnp.where(cats >= 0, cheapest[jnp.clip(cats, 0)], 0).astype(jnp.float32))
    slack = jax.random.uniform(k_slack, (), minval=BUDGET_SLACK[0], maxval=BUDGET_SLACK[1])
    has_budget = (diff.d >= BUDGET_FROM_D) & (jax.random.uniform(k_has) < P_BUDGET)
    budget = jnp.where(has_budget, jnp.round(floor * slack).astype(jnp.int32), -1)
    needed = jnp.zeros((NUM_SLOTS,), bool).at[SLOT_BUDGET].set(has_budget)
    mentioned = needed & (jax.random.uniform(k_omit, (NUM_SLOTS,)) >= diff.p_missing)
    goal = empty_intent().replace(task=jnp.int32(TASK["BUNDLE"]), cats=cats, budget=budget, k_rec=n,
                                  needed=needed, mentioned=mentioned)
    return goal, world


def verify(wp: WorldParams, world: World, goal: IntentGoal, answer, diff: Difficulty):
    """(r_task, is_correct, parts [F1, precision, recall, budget penalty])."""
    del diff
    catalog = wp.catalog
    rec = answer.rec
    listed = rec != -1
    known = listed & (rec >= 0) & (rec < catalog.num_products)
    ps = jnp.clip(rec, 0, catalog.num_products - 1)
    counted = listed & D.available(world, catalog, rec)
    leaf = catalog.category[ps]
    req = goal.cats >= 0
    hit = jnp.zeros((catalog.num_categories,), bool).at[jnp.where(counted, leaf, catalog.num_categories)].set(
        True, mode="drop")                                                            # leaves the list covers
    covered = req & hit[jnp.clip(goal.cats, 0, catalog.num_categories - 1)]
    matched = jnp.sum(covered)
    n_req = jnp.sum(req)
    n_listed = jnp.maximum(jnp.sum(listed), answer.n_rec)
    precision = matched / jnp.maximum(n_listed, 1)
    recall = matched / jnp.maximum(n_req, 1)
    exact = (n_req > 0) & (matched == n_req) & (n_listed == n_req)
    f1 = jnp.where(exact, 1.0, jnp.where(matched > 0, 2.0 * precision * recall / jnp.maximum(precision + recall, 1e-9), 0.0))
    cost = jnp.sum(jnp.where(known, catalog.price_cents[ps], 0))
    over = (goal.budget >= 0) & (cost > goal.budget)
    pen = jnp.where(over, jnp.clip((cost - goal.budget) / jnp.maximum(goal.budget, 1), 0.0, 1.0), 0.0)
    r_task = jnp.clip(2.0 * f1 - 1.0 - pen, -1.0, 1.0)
    r_task = jnp.where(answer.present, r_task, -1.0)
    all_seen = jnp.all(~listed | was_seen(world, rec))
    correct = answer.present & exact & ~over & all_seen
    return r_task, correct, jnp.stack([f1, precision, recall, pen]).astype(jnp.float32)


def seen_choices(state: EpisodeState, catalog, cats: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """From the products shown so far (`world.seen`), per required category: whether an available one was
    seen and the cheapest such product. cats [NCAT] -> ([NCAT] bool, [NCAT] int32 (-1 none))."""
    seen = state.world.seen
    avail = D.available(state.world, catalog, seen)
    leaf = catalog.category[jnp.clip(seen, 0, catalog.num_products - 1)]
    price = catalog.price_cents[jnp.clip(seen, 0, catalog.num_products - 1)]
    ok = avail[None, :] & (leaf[None, :] == cats[:, None]) & (cats[:, None] >= 0)      # [NCAT, S]
    covered = jnp.any(ok, axis=1)
    best = jnp.argmin(jnp.where(ok, price[None, :], INT_MAX), axis=1)
    return covered, jnp.where(covered, seen[best], -1)


def search_call(wp: WorldParams, leaf: jnp.ndarray, price_max: jnp.ndarray, active: jnp.ndarray):
    """`catalog.search` for one category: its name as query, the category (and an optional upper price bound
    in dollars, +inf none) as filters; tool -1 when inactive."""
    catalog = wp.catalog
    tokens = catalog.category_tokens[jnp.clip(leaf, 0, catalog.num_categories - 1)]
    query = jnp.zeros((QUERY_TOKENS,), jnp.int32).at[: tokens.shape[0]].set(tokens)
    f = no_filters()
    f = f.replace(eq=f.eq.at[0].set(leaf), hi=f.hi.at[PRICE_FIELD].set(price_max))
    call = make_call(wp.cap, TOOL_INDEX["catalog.search"], query=query, filters=f, top_k=SEARCH_TOP_K)
    return call.replace(tool=jnp.where(active, call.tool, -1))


def oracle(key: jax.Array, state: EpisodeState, i, wp: WorldParams, diff: Difficulty) -> Action:
    """Search every required category not yet covered by a seen available product (at most B_tool(d) calls
    per turn), asking the budget alongside while it is pending; then take the cheapest seen available
    product of each category. If those exceed the (revealed) budget, the retrieval depth hid cheaper
    products: search again below each choice's price (a random B_tool(d) of the categories per turn)
    until the bundle fits; then answer."""
    catalog, cap = wp.catalog, wp.cap
    goal = intent_goal(state, i)
    action = noop_action(cap)
    covered, choice = seen_choices(state, catalog, goal.cats)
    req = goal.cats >= 0
    todo = req & ~covered
    pending = pending_slots(state, i)
    ask = jnp.any(pending)
    cost = jnp.sum(jnp.where(choice >= 0, catalog.price_cents[jnp.clip(choice, 0)], 0))
    known_budget = (goal.budget >= 0) & ~pending[SLOT_BUDGET]
    refine = ~jnp.any(todo) & known_budget & (cost > goal.budget)
    # Categories searched this turn: uncovered ones in order, or (refining) a random subset of all.
    noise = jax.random.uniform(key, goal.cats.shape)
    order = jnp.argsort(jnp.where(refine, jnp.where(req, noise, 2.0), jnp.where(todo, 0.0, 2.0) + jnp.arange(
        goal.cats.shape[0]) * 1e-3))
    active = jnp.where(refine, req, todo)[order]
    below = catalog.range_values[jnp.clip(choice, 0), PRICE_FIELD] - HALF_CENT
    price_max = jnp.where(refine, below, jnp.inf)[order]
    nc = cap.calls_per_turn
    n_cat = goal.cats.shape[0]
    width = min(nc, n_cat)
    slot_on = jnp.zeros((nc,), bool).at[:width].set(active[:width]) & (jnp.arange(nc) < diff.b_tool)
    slot_cat = jnp.full((nc,), -1, jnp.int32).at[:width].set(goal.cats[order][:width])
    slot_max = jnp.full((nc,), jnp.inf, jnp.float32).at[:width].set(price_max[:width])
    calls = jax.vmap(lambda leaf, hi, on: search_call(wp, leaf, hi, on))(slot_cat, slot_max, slot_on)
    work = action.replace(msg_act=jnp.where(ask, ASK, INFORM).astype(jnp.int32),
                          ask_slot=jnp.where(ask, jnp.argmax(pending), -1).astype(jnp.int32), calls=calls)
    rec = choice[:MAX_REC]
    answer = action.answer.replace(present=jnp.asarray(True), task=goal.task, intent=jnp.asarray(i, jnp.int32),
                                   rec=rec, n_rec=jnp.sum(rec >= 0).astype(jnp.int32), done=jnp.asarray(True))
    final = action.replace(msg_act=jnp.int32(PRESENT), presented=rec, answer=answer)
    finish = ~jnp.any(todo) & ~ask & ~refine
    return jax.tree.map(lambda f, w: jnp.where(finish, f, w), final, work)


def feedback(state: EpisodeState, i, action: Action, wp: WorldParams):
    del state, i, action, wp
    return no_feedback()
