"""CART — cart building: put the n_items(d) products the customer names, in the right variant and
quantity, into the cart (SPEC §5 "CART / BUNDLE", R§4.3).

The customer names each product as "the <product type> by <brand>". The generator draws targets whose
(leaf category, brand) pairs are distinct, and a visit history (`user.get_visit_history`) holding the
targets among max(3, 2·n_items) distractors that never share a (leaf, brand) pair with a target, so the
description picks out exactly one visited product. A target may require one of its catalog variants
(probability p_var(d), only for products with at least two variants, value of attribute
`catalog.var_key`) and 2..4 units (probability p_qty(d)); each of those details is a slot the opening
message omits with probability p_missing(d), at most `t_max − 2` of them (so a careful agent can ask for
every omitted slot, add, and answer within the turn budget).

Verification is a variant-aware unit F1 on integer counts over the final cart; `is_correct` is an exact
integer test (the prior system's 1e-9 epsilons made a perfect 1–2 unit cart incorrect).
"""

import jax
import jax.numpy as jnp

from ecomjax.catalog.schema import MAX_VARIANTS
from ecomjax.tasks.action import ASK, INFORM, PRESENT, Action, Answer, noop_action
from ecomjax.tasks.difficulty import Difficulty
from ecomjax.tasks.episode import (
    ACT_CONFIRM,
    ACT_CORRECT,
    EpisodeState,
    intent_goal,
    pending_slots,
)
from ecomjax.tasks.goal import (
    MAX_ITEMS,
    NUM_SLOTS,
    SLOT_QTY,
    SLOT_VARIANT,
    TASK,
    IntentGoal,
    empty_intent,
)
from ecomjax.world.errors import ToolError
from ecomjax.world.state import World, make_call, product_stock, variant_stock, was_seen
from ecomjax.world.tools import TOOL_INDEX, WorldParams

NUM_PARTS = 4
QTY_MIN, QTY_MAX = 2, 4          # multi-unit quantity range
MIN_DISTRACTORS = 3
MAX_DISTRACTORS = 2 * MAX_ITEMS  # max(3, 2·n_items) at n_items = MAX_ITEMS
TARGET_DRAWS = 256               # candidate draws per generator call (rejection sampling, fixed shape)
DISTRACTOR_DRAWS = 96
CART_TOOLS = tuple(TOOL_INDEX[n] for n in ("cart.view", "cart.add", "cart.remove", "cart.set_quantity"))

# Cart feedback issue codes (UserMessage.issue when the customer's act is CORRECT).
ISSUE_NONE, ISSUE_MISSING, ISSUE_WRONG_VARIANT, ISSUE_TOO_MANY, ISSUE_TOO_FEW, ISSUE_EXTRA = range(6)
ISSUES: tuple[str, ...] = ("none", "missing_item", "wrong_variant", "too_many", "too_few", "extra_item")


# ------------------------------------------------------------------------------------------ generator

def _same_pair(catalog, a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Whether products a [K] and b [M] share (leaf category, brand); -1 entries never match. -> [K, M]."""
    sa = jnp.clip(a, 0, catalog.num_products - 1)
    sb = jnp.clip(b, 0, catalog.num_products - 1)
    same = (catalog.category[sa][:, None] == catalog.category[sb][None, :]) & (
        catalog.brand[sa][:, None] == catalog.brand[sb][None, :])
    return same & (a >= 0)[:, None] & (b >= 0)[None, :]


def _draw_targets(key: jax.Array, catalog, world: World, n: jnp.ndarray) -> jnp.ndarray:
    """n products, in stock for QTY_MAX units in this episode, allowed, not already visited, with
    pairwise distinct (leaf, brand) pairs that no earlier visit has. # [MAX_ITEMS] int32, -1 unused."""
    cand = jax.random.randint(key, (TARGET_DRAWS,), 0, catalog.num_products)
    stock = jax.vmap(lambda p: product_stock(world, catalog, p))(cand)
    ok = (stock >= QTY_MAX) & ~catalog.denied[cand] & ~jnp.isin(cand, world.visits)
    ok &= ~jnp.any(_same_pair(catalog, cand, world.visits), axis=1)
    chosen = jnp.full((MAX_ITEMS,), -1, jnp.int32)
    for j in range(MAX_ITEMS):
        free = ok & ~jnp.any(_same_pair(catalog, cand, chosen), axis=1)
        pick = jnp.argmax(free)
        chosen = chosen.at[j].set(jnp.where(free[pick] & (j < n), cand[pick], -1))
    return chosen


def _draw_variant(key: jax.Array, catalog, world: World, p: jnp.ndarray, qty: jnp.ndarray,
                  p_var: jnp.ndarray) -> jnp.ndarray:
    """A catalog variant slot of p with stock for qty units and a value no other variant of p has, with
    probability p_var when p has at least two variants; else -1."""
    k_want, k_pick = jax.random.split(key)
    ps = jnp.clip(p, 0, catalog.num_products - 1)
    values = catalog.var_value[ps]                                                  # [V]
    exists = values >= 0
    unique = jnp.sum(values[:, None] == values[None, :], axis=1) == 1
    slots = jnp.arange(MAX_VARIANTS)
    stocked = jax.vmap(lambda v: variant_stock(world, catalog, p, v))(slots) >= qty
    usable = exists & unique & stocked
    want = (jax.random.uniform(k_want) < p_var) & (jnp.sum(exists) >= 2) & (p >= 0)
    score = jnp.where(usable, jax.random.uniform(k_pick, (MAX_VARIANTS,)), -1.0)
    v = jnp.argmax(score)
    return jnp.where(want & usable[v], v, -1).astype(jnp.int32)


def _draw_distractors(key: jax.Array, catalog, world: World, targets: jnp.ndarray, n: jnp.ndarray,
                      count: jnp.ndarray) -> jnp.ndarray:
    """`count` distinct allowed products, preferably from the targets' leaf categories, sharing no
    (leaf, brand) pair with a target or an earlier visit. # [MAX_DISTRACTORS] int32, -1 unused."""
    k_slot, k_off, k_any = jax.random.split(key, 3)
    half = DISTRACTOR_DRAWS // 2
    which = targets[jax.random.randint(k_slot, (half,), 0, jnp.maximum(n, 1))]
    leaf = catalog.category[jnp.clip(which, 0, catalog.num_products - 1)]
    start, end = catalog.cat_start[leaf], catalog.cat_start[leaf + 1]
    offset = jnp.floor(jax.random.uniform(k_off, (half,)) * (end - start)).astype(jnp.int32)
    same_leaf = catalog.cat_members[jnp.clip(start + offset, 0, catalog.num_products - 1)]
    anywhere = jax.random.randint(k_any, (DISTRACTOR_DRAWS - half,), 0, catalog.num_products)
    cand = jnp.concatenate([same_leaf, anywhere]).astype(jnp.int32)
    ok = ~catalog.denied[cand] & ~jnp.isin(cand, targets) & ~jnp.isin(cand, world.visits)
    ok &= ~jnp.any(_same_pair(catalog, cand, targets), axis=1)
    ok &= ~jnp.any(_same_pair(catalog, cand, world.visits), axis=1)
    idx = jnp.arange(DISTRACTOR_DRAWS)
    earlier = (cand[:, None] == cand[None, :]) & (idx[None, :] < idx[:, None])
    ok &= ~jnp.any(earlier, axis=1)                                                 # first occurrence only
    order = jnp.argsort(~ok, stable=True)                                           # valid draws first
    picked = cand[order[:MAX_DISTRACTORS]]
    keep = ok[order[:MAX_DISTRACTORS]] & (jnp.arange(MAX_DISTRACTORS) < count)
    return jnp.where(keep, picked, -1)


def _append_visits(key: jax.Array, world: World, entries: jnp.ndarray) -> World:
    """Shuffle the non-negative entries and write them into the free visit slots, in order."""
    h = world.visits.shape[0]
    valid = entries >= 0
    shuffled = entries[jnp.argsort(jnp.where(valid, jax.random.uniform(key, entries.shape), 2.0))]
    free_pos = jnp.argsort(world.visits >= 0, stable=True)                          # free slots first
    width = min(entries.shape[0], h)
    n_free = jnp.sum(world.visits < 0)
    r = jnp.arange(width)
    pos = jnp.where((r < n_free) & (shuffled[:width] >= 0), free_pos[:width], h)
    return world.replace(visits=world.visits.at[pos].set(shuffled[:width], mode="drop"))


def _omit(key: jax.Array, needed: jnp.ndarray, p_missing: jnp.ndarray, limit: jnp.ndarray) -> jnp.ndarray:
    """Slots the opening message states: each needed slot is omitted with probability p_missing, at most
    `limit` of them (a random subset of the drawn omissions is kept). # [NUM_SLOTS] bool"""
    k_omit, k_order = jax.random.split(key)
    omit = needed & (jax.random.uniform(k_omit, needed.shape) < p_missing)
    prio = jnp.where(omit, jax.random.uniform(k_order, needed.shape), 2.0)
    rank = jnp.argsort(jnp.argsort(prio))
    omit &= rank < limit
    return needed & ~omit


def generate(key: jax.Array, diff: Difficulty, world: World, wp: WorldParams) -> tuple[IntentGoal, World]:
    catalog = wp.catalog
    k_tgt, k_qty, k_multi, k_var, k_dis, k_vis, k_omit = jax.random.split(key, 7)
    n_free = jnp.sum(world.visits < 0)
    n = jnp.minimum(diff.n_items, n_free).astype(jnp.int32)        # a full visit list shrinks the cart
    items = _draw_targets(k_tgt, catalog, world, n)
    active = items >= 0
    multi = jax.random.uniform(k_multi, (MAX_ITEMS,)) < diff.p_qty
    qty = jnp.where(multi, jax.random.randint(k_qty, (MAX_ITEMS,), QTY_MIN, QTY_MAX + 1), 1)
    qty = jnp.where(active, qty, 0).astype(jnp.int32)
    variant = jax.vmap(lambda k, p, q: _draw_variant(k, catalog, world, p, q, diff.p_var))(
        jax.random.split(k_var, MAX_ITEMS), items, qty)
    variant = jnp.where(active, variant, -1)
    n_real = jnp.sum(active)
    count = jnp.minimum(jnp.maximum(MIN_DISTRACTORS, 2 * n_real), n_free - n_real)
    distractors = _draw_distractors(k_dis, catalog, world, items, n_real, count)
    world = _append_visits(k_vis, world, jnp.concatenate([items, distractors]))
    needed = jnp.zeros((NUM_SLOTS,), bool)
    needed = needed.at[SLOT_VARIANT:SLOT_VARIANT + MAX_ITEMS].set(variant >= 0)
    needed = needed.at[SLOT_QTY:SLOT_QTY + MAX_ITEMS].set(qty > 1)
    mentioned = _omit(k_omit, needed, diff.p_missing, jnp.maximum(diff.t_max - 2, 0))
    goal = empty_intent().replace(task=jnp.int32(TASK["CART"]), items=items, item_variant=variant, item_qty=qty,
                                  needed=needed, mentioned=mentioned)
    return goal, world


# ------------------------------------------------------------------------------------------- verifier

def item_units(world: World, goal: IntentGoal) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Units in the cart per target: (with the required variant (any if none), of the product in any
    variant). # [N], [N] int32"""
    line = (world.cart_product >= 0) & (world.cart_qty > 0)
    qty = jnp.where(line, world.cart_qty, 0)
    product = (world.cart_product[None, :] == goal.items[:, None]) & (goal.items >= 0)[:, None]   # [N, C]
    variant = (goal.item_variant[:, None] < 0) | (world.cart_variant[None, :] == goal.item_variant[:, None])
    return jnp.sum(jnp.where(product & variant, qty, 0), axis=1), jnp.sum(jnp.where(product, qty, 0), axis=1)


def unit_counts(world: World, goal: IntentGoal) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """(matched units, cart units, required units) as int32 scalars."""
    match, _ = item_units(world, goal)
    req = jnp.where(goal.items >= 0, goal.item_qty, 0)
    matched = jnp.sum(jnp.minimum(req, match))
    cart_units = jnp.sum(jnp.where(world.cart_product >= 0, world.cart_qty, 0))
    return matched, cart_units, jnp.sum(req)


def verify(wp: WorldParams, world: World, goal: IntentGoal, answer: Answer, diff: Difficulty):
    """(r_task, is_correct, parts [F1, precision, recall, matched units]).

    F1 = 2·matched / (cart units + required units), which equals 2PR/(P+R) and is exactly 1.0 for a
    perfect cart (and for an empty cart when nothing is required); r_task = 2·F1 − 1, −1 without an
    answer. Correct iff matched == cart units == required units (integers), an answer was given, and
    every product in the cart was shown to the agent (a guessed id cannot be correct, SPEC §5)."""
    del wp, diff
    matched, cart_units, required = unit_counts(world, goal)
    m = matched.astype(jnp.float32)
    total = cart_units + required
    f1 = jnp.where(total > 0, 2.0 * m / jnp.maximum(total, 1).astype(jnp.float32), 1.0)
    precision = jnp.where(cart_units > 0, m / jnp.maximum(cart_units, 1).astype(jnp.float32), 0.0)
    recall = jnp.where(required > 0, m / jnp.maximum(required, 1).astype(jnp.float32), 0.0)
    r_task = jnp.where(answer.present, jnp.clip(2.0 * f1 - 1.0, -1.0, 1.0), -1.0)
    line = world.cart_product >= 0
    guessed = jnp.any(line & ~was_seen(world, world.cart_product))
    correct = answer.present & (matched == cart_units) & (matched == required) & ~guessed
    return r_task, correct, jnp.stack([f1, precision, recall, m])


# --------------------------------------------------------------------------------------------- oracle

def _where(cond, a, b):
    """Pytree select."""
    return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)


def _row(tree, j: int):
    return jax.tree.map(lambda x: x[j], tree)


def _set_row(tree, j: int, row):
    return jax.tree.map(lambda xs, x: xs.at[j].set(x), tree, row)


def _ask_priority(pending: jnp.ndarray) -> jnp.ndarray:
    """The pending CART slot to ask next, item by item (variant, then quantity), -1 if none."""
    k = jnp.arange(MAX_ITEMS)
    slots = jnp.stack([SLOT_VARIANT + k, SLOT_QTY + k], axis=1).reshape(-1)                    # [2N]
    ask = pending[slots]
    return jnp.where(jnp.any(ask), slots[jnp.argmax(ask)], -1).astype(jnp.int32)


def oracle(key: jax.Array, state: EpisodeState, i, wp: WorldParams, diff: Difficulty) -> Action:
    """Fetch the visit history, ask each pending variant/quantity slot (one per turn), add every item
    whose details are known (at most b_tool adds per turn), answer once every item is in the cart (or
    in the last turn of the budget)."""
    del key
    goal = intent_goal(state, i)
    world, cap = state.world, wp.cap
    pending = pending_slots(state, i)
    active = goal.items >= 0
    k = jnp.arange(MAX_ITEMS)
    seen = was_seen(world, goal.items) | ~active
    known = ~pending[SLOT_VARIANT + k] & ~pending[SLOT_QTY + k]
    in_cart = jnp.any((world.cart_product[None, :] == goal.items[:, None]) & (world.cart_qty[None, :] > 0), axis=1)
    to_add = active & seen & known & ~in_cart
    need_visits = ~jnp.all(seen)
    rank = jnp.cumsum(to_add) - 1
    budget = jnp.minimum(diff.b_tool, cap.calls_per_turn)

    action = noop_action(cap)
    calls = action.calls
    visits_call = make_call(cap, TOOL_INDEX["user.get_visit_history"])
    for j in range(MAX_ITEMS):
        # call slot j carries the j-th item still to add (the visits call takes slot 0 when needed)
        item = jnp.argmax(to_add & (rank == j))
        add = make_call(cap, TOOL_INDEX["cart.add"], product=goal.items[item], variant=goal.item_variant[item],
                        qty=goal.item_qty[item])
        use_add = ~need_visits & jnp.any(to_add & (rank == j)) & (j < budget)
        use_visits = need_visits & (j == 0)
        call = _where(use_visits, visits_call, _where(use_add, add, _row(calls, j)))
        calls = _set_row(calls, j, call)

    ask_slot = _ask_priority(pending)
    finished = ~need_visits & ~jnp.any(active & ~in_cart) & (ask_slot < 0)
    finished |= state.turn + 1 >= diff.t_max          # last turn: answer with whatever the cart holds
    answer = action.answer.replace(present=finished, task=goal.task, intent=jnp.asarray(i, jnp.int32),
                                   done=finished)
    msg_act = jnp.where(ask_slot >= 0, ASK, INFORM).astype(jnp.int32)
    return action.replace(msg_act=msg_act, ask_slot=ask_slot, calls=calls, answer=answer)


# ------------------------------------------------------------------------------------------- customer

def cart_issue(world: World, goal: IntentGoal) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """The customer's first complaint about the cart: (item index or −1, issue code, correctly filled
    items). Items in goal order (missing, wrong variant, too many, too few), then products that should
    not be there (item −1)."""
    match, anyv = item_units(world, goal)
    active = goal.items >= 0
    wrong_variant = anyv > match
    issue = jnp.select(
        [anyv == 0, wrong_variant, match > goal.item_qty, match < goal.item_qty],
        [ISSUE_MISSING, ISSUE_WRONG_VARIANT, ISSUE_TOO_MANY, ISSUE_TOO_FEW], ISSUE_NONE,
    )
    issue = jnp.where(active, issue, ISSUE_NONE).astype(jnp.int32)
    filled = jnp.sum(active & (issue == ISSUE_NONE))
    has_item_issue = jnp.any(issue != ISSUE_NONE)
    first = jnp.argmax(issue != ISSUE_NONE)
    line = (world.cart_product >= 0) & (world.cart_qty > 0)
    extra = jnp.any(line & ~jnp.isin(world.cart_product, jnp.where(active, goal.items, -2)))
    item = jnp.where(has_item_issue, first, -1).astype(jnp.int32)
    code = jnp.where(has_item_issue, issue[first], jnp.where(extra, ISSUE_EXTRA, ISSUE_NONE)).astype(jnp.int32)
    return item, code, filled


def feedback(state: EpisodeState, i, action: Action, wp: WorldParams):
    """(a) Candidate confirmation when the agent presents targets: CONFIRM the first presented target
    (revealing its pending variant, else quantity, slot); satisfaction = share of targets presented.
    (b) Cart feedback after a successful cart.* call: CORRECT with the first issue, else CONFIRM;
    satisfaction = correctly filled items / n_items. (a) wins when both apply."""
    from ecomjax.user.core import Feedback, no_feedback

    del wp
    goal = intent_goal(state, i)
    active = goal.items >= 0
    n_items = jnp.maximum(jnp.sum(active), 1).astype(jnp.float32)
    pending = pending_slots(state, i)

    shown = jnp.isin(goal.items, jnp.where(action.presented >= 0, action.presented, -2)) & active   # [N]
    presents = (action.msg_act == PRESENT) & jnp.any(shown)
    first = jnp.argmax(shown)
    reveal = jnp.where(pending[SLOT_VARIANT + first], SLOT_VARIANT + first,
                       jnp.where(pending[SLOT_QTY + first], SLOT_QTY + first, -1))
    confirm = Feedback(applies=presents, act=jnp.int32(ACT_CONFIRM), item=first.astype(jnp.int32),
                       issue=jnp.int32(ISSUE_NONE), satisfaction=(jnp.sum(shown) / n_items).astype(jnp.float32),
                       reveal=reveal.astype(jnp.int32))

    res = state.last_results
    cart_ok = jnp.any(jnp.isin(res.tool, jnp.asarray(CART_TOOLS)) & (res.error == ToolError.OK))
    item, code, filled = cart_issue(state.world, goal)
    cart = Feedback(applies=cart_ok, act=jnp.where(code == ISSUE_NONE, ACT_CONFIRM, ACT_CORRECT).astype(jnp.int32),
                    item=item, issue=code, satisfaction=(filled / n_items).astype(jnp.float32), reveal=jnp.int32(-1))

    return _where(presents | cart_ok, _where(presents, confirm, cart), no_feedback())
