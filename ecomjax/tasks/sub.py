"""SUB — out-of-stock substitution: the customer's original product is out of stock; find k_rec substitutes
meeting constraints taken from the original, ranked by the customer's stated priority.

The generator draws an original (in stock in the catalog, allowed, with at least one other available
product in its leaf) and marks it out of stock *in this episode* (`world.oos`): search still shows it, and
recommending it scores as out of stock and irrelevant (SPEC §5, fixing R§4.2's in-stock original).
Constraints are drawn from the original as in PD (price bound and leaf category, then m(d)−2 attributes);
if none of connector_type / size / material was drawn and the original has one, one of them is added as a
compatibility constraint. Constraint priority is price, category, compatibility, then the other attributes
in draw order. Because the original is excluded, the constraints could leave no substitute at all (at high
d almost only the original matches a dozen of its own attribute values), so the generator keeps the
longest prefix of that priority list that some other available product satisfies, except that category
and compatibility are kept over the price: if no substitute sharing them fits the price bound, the bound
is raised to the cheapest one. Then, as in PD, the price
bound is tightened so at most POOL products match (the whole feasible set fits in one search), a p_oos(d)
share of the close distractors goes out of stock, and the pool (original excluded) and its IDCG are built
with PD's priority relevance (2^−rank by the stated priority at d ≥ 1, flat at d = 0), except that the
balanced customer's key is λ_sim(d)·sim + (1 − λ_sim)·utility, sim the retrieval-embedding cosine to the
original: a list that ignores the priority is not correct at d ≥ 1.

The opening message always names the original (it is not a slot); price and category are always stated,
the other constraints each omitted with probability p_missing(d).
"""

import jax
import jax.numpy as jnp

from ecomjax.catalog.retrieval import products_match
from ecomjax.catalog.schema import RANGE_FIELDS
from ecomjax.catalog.types import Catalog, leaf_members
from ecomjax.tasks import constraints as C
from ecomjax.tasks import discovery as D
from ecomjax.tasks import pd
from ecomjax.tasks.action import Action
from ecomjax.tasks.difficulty import Difficulty
from ecomjax.tasks.episode import EpisodeState, intent_goal
from ecomjax.tasks.goal import NUM_SLOTS, PERSONAS, TASK, IntentGoal, empty_intent
from ecomjax.world.state import World
from ecomjax.world.tools import WorldParams

W_RANK, W_CONS, W_OOS = 0.80, 0.0, 0.20
CORRECT_AT = 0.95
NUM_PARTS = 4
COMPAT_KEYS = (C.KEY["connector_type"], C.KEY["size"], C.KEY["material"])
ANCHOR_DRAWS = 64
KEEP_FIRST = 3               # price, category, compatibility: never dropped for the price bound
PRICE_FIELD = RANGE_FIELDS.index("price")


def available_in_leaf(world: World, catalog: Catalog, leaf: jnp.ndarray) -> jnp.ndarray:
    """Products of leaf category `leaf` available in this episode (in stock, allowed, not overridden out of
    stock). leaf [K] -> [K] int32, from the catalog's per-leaf count less the episode's distinct overrides."""
    oos = world.oos                                                                  # [O]
    pos = jnp.arange(oos.shape[0])
    first = ~jnp.any((oos[None, :] == oos[:, None]) & (pos[None, :] < pos[:, None]), axis=1)
    safe = jnp.clip(oos, 0, catalog.num_products - 1)
    counted = first & (oos >= 0) & (oos < catalog.num_products) & (catalog.stock[safe] > 0) & ~catalog.denied[safe]
    taken = jnp.sum(counted[None, :] & (catalog.category[safe][None, :] == leaf[:, None]), axis=1)
    return catalog.leaf_available[leaf] - taken


def draw_original(key: jax.Array, catalog: Catalog, world: World, reserved: jnp.ndarray) -> jnp.ndarray:
    """A random product available in this episode (in stock, allowed, not already overridden out of stock)
    whose leaf category holds at least one other available product (so a substitute exists). Never a
    product in the visit history (a CART intent buys from it) or a `reserved` one [R]: the original goes
    out of stock, and other intents of the episode rely on those being available."""
    cand = jax.random.randint(key, (ANCHOR_DRAWS,), 0, catalog.num_products)
    ok = D.available(world, catalog, cand) & (available_in_leaf(world, catalog, catalog.category[cand]) >= 2)
    ok &= ~jnp.isin(cand, world.visits) & ~jnp.isin(cand, reserved)
    return cand[jnp.argmax(ok)]


def mark_out_of_stock(world: World, product: jnp.ndarray) -> World:
    """Append `product` to the episode's out-of-stock overrides (first free slot; when every slot is taken
    the last one is overwritten so the original is always out of stock)."""
    free = world.oos == -1
    slot = jnp.where(jnp.any(free), jnp.argmax(free), world.oos.shape[0] - 1)
    return world.replace(oos=world.oos.at[slot].set(product))


def add_compatibility(key: jax.Array, catalog: Catalog, anchor, c_key, c_op, c_value, c_mask):
    """Add one compatibility constraint (connector_type / size / material, one the original has) if none was
    drawn, then order constraints by priority: price, category, compatibility, the rest in draw order."""
    values = C.product_values(catalog, anchor)
    compat = jnp.asarray(COMPAT_KEYS, jnp.int32)
    has = C.has_value(values)[compat]
    drawn = jnp.any(c_mask & jnp.isin(c_key, compat))
    pick = compat[jnp.argmax(jnp.where(has, jax.random.uniform(key, (compat.shape[0],)), -1.0))]
    add = ~drawn & jnp.any(has)
    m = c_mask.shape[0]
    n = jnp.sum(c_mask)
    pos = jnp.where(n < m, n, m - 1)                          # first free slot, else replace the last extra
    put = add & (jnp.arange(m) == pos)
    c_key = jnp.where(put, pick, c_key)
    c_op = jnp.where(put, C.EQ, c_op)
    c_value = jnp.where(put, values[pick], c_value)
    c_mask = c_mask | put
    is_compat = c_mask & jnp.isin(c_key, compat) & (jnp.arange(m) >= 2)
    first_compat = jnp.argmax(is_compat)
    priority = jnp.where(jnp.any(is_compat) & (jnp.arange(m) == first_compat), 1.5, jnp.arange(m).astype(jnp.float32))
    priority = jnp.where(c_mask, priority, m + jnp.arange(m).astype(jnp.float32))   # masked-off slots last
    order = jnp.argsort(priority)
    return c_key[order], c_op[order], c_value[order], c_mask[order]


def _matches(catalog: Catalog, ids: jnp.ndarray, c_key, c_op, c_value, mask) -> jnp.ndarray:
    """Which of the products `ids` [W] satisfy every constraint in `mask`. # [W] bool"""
    f = C.to_filters(c_key, c_op, c_value, mask)
    return products_match(catalog, ids[None], jax.tree.map(lambda x: x[None], f))[0]


def keep_feasible(world: World, catalog: Catalog, anchor, c_key, c_op, c_value, c_mask):
    """The longest priority prefix of the constraints that some available product other than the original
    satisfies within the price bound; but the category and the compatibility constraint (constraints 1 and
    2; when the original has no compatibility attribute, constraint 2 is its first other attribute) are
    never dropped for the price: when some available product shares them only above the bound, the bound
    is raised to the cheapest such product. Returns (c_value, c_mask). Every prefix holds the category
    (constraint 1), so only the original's leaf is read (cheapest first)."""
    m = c_mask.shape[0]
    slots = jnp.arange(m)
    ids = leaf_members(catalog, catalog.category[anchor])                           # [W]
    avail = D.available(world, catalog, ids) & (ids != anchor)
    price_ok = _matches(catalog, ids, c_key, c_op, c_value, c_mask & (slots == 0))

    def step(cum, j):                                  # cum: products meeting constraints 1..j
        cum = cum & _matches(catalog, ids, c_key, c_op, c_value, c_mask & (slots == j))
        return cum, (jnp.any(cum & avail & price_ok), jnp.any(cum & avail))

    _, (tight, loose) = jax.lax.scan(step, ids >= 0, slots[1:])
    usable = slots[1:] < jnp.sum(c_mask)               # prefix length j + 1 is within the drawn constraints
    n_tight = 1 + jnp.sum(tight & usable)              # existence is monotone in the prefix length
    n_loose = jnp.maximum(2, 1 + jnp.sum(loose & usable))
    first = jnp.minimum(KEEP_FIRST, n_loose)           # category and compatibility are kept over the price
    raise_price = n_tight < first
    n_keep = jnp.where(raise_price, first, n_tight)
    row = _matches(catalog, ids, c_key, c_op, c_value, c_mask & (slots >= 1) & (slots < n_keep)) & avail
    cheapest = jnp.clip(ids[jnp.argmax(row)], 0)      # cheapest first: the first match is the cheapest
    dollars = catalog.range_values[cheapest, PRICE_FIELD]           # the exact value the price filter reads
    new_price = jnp.where(raise_price & jnp.any(row), jnp.maximum(c_value[0], dollars), c_value[0])
    return c_value.at[0].set(new_price), slots < n_keep


def snap_price(catalog: Catalog, c_key, c_value, c_mask) -> jnp.ndarray:
    """Raise the price bound to the exact filter value (`range_values`) of the cent amount it stands for,
    as some product of the constraints' leaf has it (only those can pass the category filter).

    `discovery.tighten_price` computes dollars as cents / 100.0, which XLA evaluates as cents · 0.01: about a
    quarter of amounts come out one ulp below the catalog's float32 dollars, which would exclude the very
    product the bound was set to keep."""
    ids = leaf_members(catalog, D.constraint_leaf(c_key, c_value, c_mask))
    safe = jnp.clip(ids, 0)
    cents = jnp.round(c_value[0] * 100.0).astype(jnp.int32)
    same = (ids >= 0) & (catalog.price_cents[safe] == cents)
    exact = jnp.max(jnp.where(same, catalog.range_values[safe, PRICE_FIELD], -jnp.inf))
    return c_value.at[0].set(jnp.where(exact > -jnp.inf, jnp.maximum(c_value[0], exact), c_value[0]))


def generate(key: jax.Array, diff: Difficulty, world: World, wp: WorldParams,
             reserved: jnp.ndarray = D.NO_RESERVED) -> tuple[IntentGoal, World]:
    """A SUB intent; neither its original nor its close distractors (both go out of stock) is a `reserved`
    product [R] (those other intents of a JOURNEY rely on being available)."""
    catalog = wp.catalog
    k_anchor, k_cons, k_compat, k_persona, k_oos, k_omit = jax.random.split(key, 6)
    anchor = draw_original(k_anchor, catalog, world, reserved)
    world = mark_out_of_stock(world, anchor)
    c_key, c_op, c_value, c_mask = D.draw_constraints(k_cons, catalog, anchor, diff.m, diff)
    c_key, c_op, c_value, c_mask = add_compatibility(k_compat, catalog, anchor, c_key, c_op, c_value, c_mask)
    c_value, c_mask = keep_feasible(world, catalog, anchor, c_key, c_op, c_value, c_mask)
    c_value = snap_price(catalog, c_key, D.tighten_price(catalog, c_key, c_op, c_value, c_mask), c_mask)
    members = D.pool_members(catalog, c_key, c_op, c_value, c_mask)
    others = jnp.where(members == anchor, -1, members)
    keep = others[jnp.argmax(D.available(world, catalog, others))]
    world = D.make_distractors_oos(k_oos, world, catalog, others, diff.p_oos, keep, reserved)
    needed = jnp.zeros((NUM_SLOTS,), bool).at[: c_mask.shape[0]].set(c_mask)
    goal = empty_intent().replace(
        task=jnp.int32(TASK["SUB"]), c_key=c_key, c_op=c_op, c_value=c_value, c_mask=c_mask,
        mentioned=pd.omit_slots(k_omit, c_mask, diff.p_missing), needed=needed,
        persona=jax.random.randint(k_persona, (), 0, len(PERSONAS)), anchor=anchor, k_rec=diff.k_rec,
    )
    return D.finish_pool(wp, world, goal, diff, sim_anchor=True), world


def verify(wp: WorldParams, world: World, goal: IntentGoal, answer, diff: Difficulty):
    """(r_task, is_correct, parts [r_rank, r_cons, r_oos, oos_rate]); r_task = clip(0.80·r_rank + 0.20·r_oos)
    with r_oos = 1 − 2·oos_rate over the first k_rec (the original counts as out of stock); correct iff
    r_task ≥ CORRECT_AT and the list holds at most k_rec products."""
    rel = D.relevance(wp, world, goal, answer.rec, sim_anchor=True)
    r_task, parts = pd.score_list(wp, world, goal, answer, diff, rel, W_RANK, W_CONS, W_OOS)
    return r_task, (r_task >= CORRECT_AT) & pd.within_k(goal, answer), parts


def oracle(key: jax.Array, state: EpisodeState, i, wp: WorldParams, diff: Difficulty) -> Action:
    """Ask each pending constraint, search with every constraint as a filter, answer the available
    results other than the original ranked by relevance."""
    del key, diff
    goal = intent_goal(state, i)
    return pd.ask_or_search(state, i, wp, lambda ids: D.rank_for(wp, state.world, goal, ids, True))


def feedback(state: EpisodeState, i, action: Action, wp: WorldParams):
    return pd.presentation_feedback(state, i, action, wp, sim_anchor=True)
