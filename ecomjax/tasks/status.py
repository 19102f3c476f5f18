"""STATUS — order tracking: tell the customer the status of one of their orders (SPEC §5 STATUS, R§4.5).

The generator adds H_orders(d) orders to free order slots (the RETURN helper `add_orders`: random slots,
earlier intents' orders kept, new lines never sharing a description with earlier lines) and picks one
new order as the target. The target's status is drawn uniformly over the five statuses (with an ETA and
tracking number consistent with it), so answering the most common status without looking scores 1/5
rather than the prior mix's 45% DELIVERED. Its first line holds a product whose (leaf category, brand)
pair no other order line has. With probability p_ref(d) the customer refers to the order indirectly
("the <type> by <brand> I ordered on <date>"): SLOT_ORDER is needed but not mentioned; otherwise by id
(SLOT_ORDER mentioned). With no free order slot (a crowded JOURNEY world) the target is an existing
order, referred to indirectly only if its first line is uniquely described.

Verification: r_task = 2·(0.5·r_oid + 0.5·r_stat) − 1 (−1 / 0 / +1), r_oid = [answer order is the
target], r_stat = [answer status is the target's]; correct iff both; −1 without an answer.
"""

import jax
import jax.numpy as jnp

from ecomjax.tasks.action import ASK, INFORM, Action, Answer, noop_action
from ecomjax.tasks.difficulty import Difficulty
from ecomjax.tasks.episode import EpisodeState, intent_goal
from ecomjax.tasks.goal import NUM_SLOTS, SLOT_ORDER, TASK, IntentGoal, empty_intent
from ecomjax.tasks.returns import (
    GET_STATUS, LIST, add_orders, calls_from, fetched_orders, is_unique, listed_orders, random_member,
    same_description, set_line_product, set_order_status, unique_product,
)
from ecomjax.world.orders import MAX_LIST_DAYS
from ecomjax.world.state import ORDER_STATUSES, World, make_call
from ecomjax.world.tools import WorldParams

NUM_PARTS = 4
NUM_STATUSES = len(ORDER_STATUSES)


def generate(key: jax.Array, diff: Difficulty, world: World, wp: WorldParams) -> tuple[IntentGoal, World]:
    catalog = wp.catalog
    k = jax.random.split(key, 6)
    world, new = add_orders(k[0], world, catalog, diff.h_orders, force_one=False)
    fresh = jnp.any(new)
    order = random_member(k[1], jnp.where(fresh, new, world.order_valid))
    status = jax.random.randint(k[2], (), 0, NUM_STATUSES).astype(jnp.int32)
    product, _ = unique_product(k[3], world, catalog, order, 0)
    changed = set_line_product(k[4], world, catalog, order, 0, product)
    changed = set_order_status(k[5], changed, order, status, changed.order_day[order])
    world = jax.tree.map(lambda a, b: jnp.where(fresh, a, b), changed, world)
    k_ref = jax.random.fold_in(k[1], 1)
    indirect = (jax.random.uniform(k_ref) < diff.p_ref) & is_unique(world, catalog, order, 0)
    goal = empty_intent().replace(
        task=jnp.int32(TASK["STATUS"]),
        needed=jnp.zeros((NUM_SLOTS,), bool).at[SLOT_ORDER].set(True),
        mentioned=jnp.zeros((NUM_SLOTS,), bool).at[SLOT_ORDER].set(~indirect),
        anchor=world.line_product[order, 0], order=order, status=world.order_status[order],
    )
    return goal, world


def verify(wp: WorldParams, world: World, goal: IntentGoal, answer: Answer, diff: Difficulty):
    """(r_task, is_correct, parts [r_oid, r_stat, 0, 0])."""
    del wp, world, diff
    r_oid = (answer.order == goal.order).astype(jnp.float32)
    r_stat = (answer.status == goal.status).astype(jnp.float32)
    r_task = jnp.where(answer.present, 2.0 * (0.5 * r_oid + 0.5 * r_stat) - 1.0, -1.0)
    correct = answer.present & (r_oid == 1.0) & (r_stat == 1.0)
    zero = jnp.float32(0.0)
    return r_task, correct, jnp.stack([r_oid, r_stat, zero, zero])


def oracle(key: jax.Array, state: EpisodeState, i, wp: WorldParams, diff: Difficulty) -> Action:
    """By id (SLOT_ORDER known): `order.get_status`, then answer with the status it showed. Indirect:
    `order.list(365)`, then `order.get_status` on the listed orders placed on the stated date (up to
    b_tool), then answer with the one holding the described product; if none of them does (more
    candidates than the budget), ask for the order id."""
    del key
    goal = intent_goal(state, i)
    world, catalog, cap = state.world, wp.catalog, wp.cap
    nc = cap.calls_per_turn
    o = world.order_valid.shape[0]
    budget = jnp.clip(diff.b_tool, 1, nc)
    known = state.revealed[i, SLOT_ORDER]
    day = world.order_day[goal.order]                        # the date the customer states
    fetched_ok, fetched = fetched_orders(state)
    f = jnp.clip(fetched, 0, o - 1)
    lines = world.line_product[f]                                                    # [NC, L]
    holds = jnp.any(same_description(catalog, lines.reshape(-1), goal.anchor[None])[:, 0].reshape(lines.shape),
                    axis=1)
    match = fetched_ok & holds & (world.order_day[f] == day)
    got_known = jnp.any(fetched_ok & (fetched == goal.order))
    final = jnp.where(known, got_known, jnp.any(match))
    chosen = jnp.where(known, goal.order, fetched[jnp.argmax(match)]).astype(jnp.int32)

    any_listed, listed = listed_orders(state)
    on_day = (listed >= 0) & (world.order_day[jnp.clip(listed, 0, o - 1)] == day)
    candidates = listed[jnp.argsort(~on_day, stable=True)]
    n_cand = jnp.sum(on_day)
    step = jnp.select([known, any_listed & (n_cand > 0), jnp.any(fetched_ok) | any_listed], [1, 2, 0], 3)
    s = jnp.arange(nc)
    kinds = jnp.select([step == 1, step == 2, step == 3], [jnp.where(s == 0, 1, -1), jnp.where(s < n_cand, 1, -1),
                                                          jnp.where(s == 0, 0, -1)], -1)
    kinds = jnp.where(s < budget, kinds, -1)
    status_of = jnp.where(step == 1, goal.order, candidates[jnp.clip(s, 0, candidates.shape[0] - 1)])
    calls = calls_from(cap, kinds, status_of, jnp.zeros((nc,), jnp.int32), (
        lambda _o, _l: make_call(cap, LIST, days=MAX_LIST_DAYS),
        lambda order, _l: make_call(cap, GET_STATUS, order=order),
    ))
    ask_slot = jnp.where(~final & (step == 0), SLOT_ORDER, -1).astype(jnp.int32)
    action = noop_action(cap)
    answer = action.answer.replace(present=final, task=goal.task, intent=jnp.asarray(i, jnp.int32), order=chosen,
                                   status=world.order_status[chosen], done=final)
    calls = jax.tree.map(lambda w, none: jnp.where(final, none, w), calls, action.calls)
    return action.replace(msg_act=jnp.where(ask_slot >= 0, ASK, INFORM).astype(jnp.int32), ask_slot=ask_slot,
                          calls=calls, answer=answer)


def feedback(state: EpisodeState, i, action: Action, wp: WorldParams):
    """Nothing task-specific: the order id is revealed by the core when the agent asks for it."""
    from ecomjax.user.core import no_feedback

    del state, i, action, wp
    return no_feedback()
