"""Shared by PD and SUB: constraint drawing, the feasible evaluation pool, persona utilities and nDCG."""

import jax
import jax.numpy as jnp
import numpy as np

from ecomjax.catalog.retrieval import products_match
from ecomjax.catalog.types import Catalog, leaf_members
from ecomjax.tasks import constraints as C
from ecomjax.tasks.difficulty import Difficulty
from ecomjax.tasks.goal import MAX_REC, PERSONA_WEIGHTS, POOL, IntentGoal
from ecomjax.world.state import World, is_oos, product_stock
from ecomjax.world.tools import WorldParams

PRICE, CAT = C.KEY["price"], C.KEY["cat"]
NO_RESERVED = np.full((1,), -1, np.int32)      # `reserved` of a generator when no other intent shares the world
FILTERABLE = np.asarray([k != "age_range" for k in C.CONSTRAINT_KEYS])
SHIP_SCALE_DAYS = 14.0


def draw_constraints(key: jax.Array, catalog: Catalog, anchor: jnp.ndarray, m: jnp.ndarray, diff: Difficulty):
    """m constraints the anchor product satisfies: price bound, leaf category, then m−2 random attributes
    the product has. Returns (c_key, c_op, c_value, c_mask) each [M]."""
    k_pick, k_slack = jax.random.split(key)
    values = C.product_values(catalog, anchor)                                        # [K]
    usable = C.has_value(values) & FILTERABLE
    usable = usable.at[PRICE].set(False).at[CAT].set(False)
    noise = jax.random.uniform(k_pick, (C.NUM_KEYS,))
    order = jnp.argsort(jnp.where(usable, noise, 2.0))                               # usable keys first
    n_extra = jnp.minimum(m - 2, jnp.sum(usable))
    keys = jnp.concatenate([jnp.array([PRICE, CAT]), order[: C.MAX_CONSTRAINTS - 2]]).astype(jnp.int32)
    mask = jnp.arange(C.MAX_CONSTRAINTS) < 2 + n_extra
    numeric = C.is_numeric_key(keys)
    op_table = jnp.asarray([C.NUMERIC_OP.get(k, C.EQ) for k in C.CONSTRAINT_KEYS], jnp.int32)
    ops = op_table[keys]
    delta = jax.random.uniform(k_slack, (C.MAX_CONSTRAINTS,)) * diff.delta_max
    v = values[keys]
    bound = jnp.where(ops == C.LTE, v * (1 + delta), v * (1 - delta))
    integer = jnp.isin(keys, jnp.asarray([C.KEY[k] for k in C.INTEGER_KEYS]))
    bound = jnp.where(integer, jnp.where(ops == C.LTE, jnp.ceil(bound), jnp.floor(bound)), jnp.round(bound, 2))
    bound = jnp.where(ops == C.LTE, jnp.maximum(bound, v), jnp.minimum(bound, v))   # rounding keeps anchor feasible
    value = jnp.where(numeric, bound, v)
    return keys, ops, value.astype(jnp.float32), mask


def constraint_leaf(c_key, c_value, c_mask) -> jnp.ndarray:
    """The leaf category a constraint set names (every PD/SUB/replacement set holds one). # [] int32"""
    is_cat = c_mask & (c_key == CAT)                                 # masked-out slots may repeat the key
    return jnp.clip(jnp.sum(jnp.where(is_cat, c_value, 0.0)).astype(jnp.int32), 0)


def leaf_matches(catalog: Catalog, c_key, c_op, c_value, c_mask) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The products of the constraints' leaf category, cheapest first, and which of them pass every
    constraint: every product that passes is among them, so this equals a catalog-wide filter at the
    cost of one leaf. Returns (ids [W] (-1 pads), mask [W] bool)."""
    ids = leaf_members(catalog, constraint_leaf(c_key, c_value, c_mask))
    f = C.to_filters(c_key, c_op, c_value, c_mask)
    return ids, products_match(catalog, ids[None], jax.tree.map(lambda x: x[None], f))[0]


def tighten_price(catalog: Catalog, c_key, c_op, c_value, c_mask) -> jnp.ndarray:
    """Lower the price bound (constraint 0) so at most POOL products pass every filter; the cheapest
    in-stock match always stays. Returns the new c_value."""
    ids, mask = leaf_matches(catalog, c_key, c_op, c_value, c_mask)                  # cheapest first
    safe = jnp.clip(ids, 0)
    cents = catalog.price_cents[safe]
    pool_max = jnp.max(jnp.where(mask & (jnp.cumsum(mask) <= POOL), cents, 0))        # POOL-th cheapest match
    cheapest_in_stock = jnp.min(jnp.where(mask & (catalog.stock[safe] > 0), cents, jnp.iinfo(jnp.int32).max))
    bound = jnp.maximum(pool_max, cheapest_in_stock)
    tight = jnp.sum(mask) > POOL
    dollars = jnp.max(jnp.where(mask & (cents <= bound), catalog.range_values[safe, 0], -jnp.inf))
    new_price = jnp.where(tight, dollars, c_value[0])                 # the catalog's own float: exact filter
    return c_value.at[0].set(jnp.minimum(new_price, c_value[0]))


def pool_members(catalog: Catalog, c_key, c_op, c_value, c_mask) -> jnp.ndarray:
    """Up to POOL products passing every constraint filter, by id. # [POOL] int32 (-1 pads)"""
    ids, mask = leaf_matches(catalog, c_key, c_op, c_value, c_mask)
    width = min(POOL, ids.shape[0])
    top, pos = jax.lax.top_k(jnp.where(mask, -ids.astype(jnp.float32), -jnp.inf), width)
    members = jnp.where(top > -jnp.inf, ids[pos], -1).astype(jnp.int32)
    return jnp.full((POOL,), -1, jnp.int32).at[:width].set(members)


def make_distractors_oos(key: jax.Array, world: World, catalog: Catalog, members: jnp.ndarray,
                         p_oos: jnp.ndarray, keep: jnp.ndarray, reserved: jnp.ndarray) -> World:
    """Mark each in-stock pool member out of stock in this episode with probability p_oos, except `keep`,
    products in the visit history (a CART intent may need them) and `reserved` products (another intent of
    the episode relies on them being available). members [POOL], reserved [R] (-1 pads)."""
    flip = (jax.random.uniform(key, members.shape) < p_oos) & (members >= 0) & (members != keep)
    flip &= ~jnp.isin(members, world.visits)              # never a product an earlier intent asks to buy
    flip &= ~jnp.isin(members, reserved)
    flip &= catalog.stock[jnp.clip(members, 0)] > 0
    slots = jnp.cumsum(flip) - 1 + jnp.sum(world.oos >= 0)
    idx = jnp.where(flip & (slots < world.oos.shape[0]), slots, world.oos.shape[0])
    return world.replace(oos=world.oos.at[idx].set(members, mode="drop"))


def available(world: World, catalog: Catalog, products: jnp.ndarray) -> jnp.ndarray:
    """In stock in this episode and not denied. [K] -> [K] bool."""
    ok = (products >= 0) & (products < catalog.num_products)
    stock = jax.vmap(lambda p: product_stock(world, catalog, p))(products)
    return ok & (stock > 0) & ~catalog.denied[jnp.clip(products, 0, catalog.num_products - 1)]


def utility(catalog: Catalog, goal: IntentGoal, products: jnp.ndarray, sim_anchor: bool) -> jnp.ndarray:
    """Persona utility u(p) = Σ w_k φ_k(p) in [0, 1]. products [K] -> [K]."""
    ps = jnp.clip(products, 0, catalog.num_products - 1)
    cents = catalog.price_cents[ps].astype(jnp.float32)                               # integers: exact
    span = jnp.maximum(goal.price_hi - goal.price_lo, 1.0)
    phi_price = 1.0 - jnp.clip((cents - goal.price_lo) / span, 0.0, 1.0)
    phi_rating = jnp.clip((catalog.rating[ps] - 1.0) / 4.0, 0.0, 1.0)
    phi_ship = 1.0 - jnp.clip(catalog.ship_days[ps] / SHIP_SCALE_DAYS, 0.0, 1.0)
    brand_c = goal.c_mask & (goal.c_key == C.KEY["brand"])
    brand_v = jnp.sum(jnp.where(brand_c, goal.c_value, 0.0)).astype(jnp.int32)
    phi_brand = (jnp.any(brand_c) & (catalog.brand[ps] == brand_v)).astype(jnp.float32)
    anchor = jnp.clip(goal.anchor, 0, catalog.num_products - 1)
    cos = (catalog.emb[ps] @ catalog.emb[anchor]) * catalog.emb_scale[ps] * catalog.emb_scale[anchor]
    phi_sim = jnp.where(sim_anchor, (cos + 1.0) / 2.0, 0.0)
    phi = jnp.stack([phi_price, phi_rating, phi_ship, phi_brand, phi_sim], axis=-1)  # [K, 5]
    return phi @ jnp.asarray(PERSONA_WEIGHTS)[goal.persona]


def priority_key(catalog: Catalog, goal: IntentGoal, products: jnp.ndarray, lambda_sim, sim_anchor: bool):
    """What the customer's stated priority ranks by, larger is better: budget → lower price, quality →
    higher rating, speed → fewer shipping days; balanced → the all-round utility (PD), blended with
    similarity to the original by λ_sim (SUB). products [K] -> [K] float32."""
    ps = jnp.clip(products, 0, catalog.num_products - 1)
    u = utility(catalog, goal, products, sim_anchor)
    if sim_anchor:
        anchor = jnp.clip(goal.anchor, 0, catalog.num_products - 1)
        cos = (catalog.emb[ps] @ catalog.emb[anchor]) * catalog.emb_scale[ps] * catalog.emb_scale[anchor]
        u = lambda_sim * (cos + 1.0) / 2.0 + (1.0 - lambda_sim) * u
    keys = jnp.stack([-catalog.price_cents[ps].astype(jnp.float32), catalog.rating[ps],
                      -catalog.ship_days[ps].astype(jnp.float32), u])                 # [len(PERSONAS), K]
    return keys[jnp.clip(goal.persona, 0, keys.shape[0] - 1)]


def priority_gain(key: jnp.ndarray, members: jnp.ndarray, d) -> jnp.ndarray:
    """Relevance of each pool member: 2^−r with r its dense rank by `key` among the members (0 = best; equal
    keys share a rank), so a list that ignores the stated priority loses most of its nDCG; 1 for every
    member at d = 0 (any feasible, in-stock product is right). key, members [POOL] -> [POOL] float32."""
    ok = members >= 0
    pos = jnp.arange(members.shape[0])
    first = ok & ~jnp.any((key[None, :] == key[:, None]) & ok[None, :] & (pos[None, :] < pos[:, None]), axis=1)
    rank = jnp.sum(first[None, :] & (key[None, :] > key[:, None]), axis=1)
    gain = jnp.where(d >= 1, jnp.exp2(-rank.astype(jnp.float32)), 1.0)
    return jnp.where(ok, gain, 0.0)


def relevance(wp: WorldParams, world: World, goal: IntentGoal, products: jnp.ndarray, sim_anchor: bool) -> jnp.ndarray:
    """rel(p): the pool's `priority_gain` of p while p is feasible, available and not the SUB original; else 0.
    products [K] -> [K]."""
    catalog = wp.catalog
    feasible = C.feasible(catalog, products, goal.c_key, goal.c_op, goal.c_value, goal.c_mask)
    ok = feasible & available(world, catalog, products) & (products >= 0)
    if sim_anchor:
        ok &= products != goal.anchor
    gain = jnp.sum(jnp.where(products[:, None] == goal.pool[None, :], goal.pool_util[None, :], 0.0), axis=1)
    return jnp.where(ok, gain, 0.0)


def finish_pool(wp: WorldParams, world: World, goal: IntentGoal, diff: Difficulty, sim_anchor: bool) -> IntentGoal:
    """Evaluation pool (feasible + available), price range, priority gains and IDCG of the best k_rec."""
    catalog = wp.catalog
    members = pool_members(catalog, goal.c_key, goal.c_op, goal.c_value, goal.c_mask)
    ok = available(world, catalog, members) & (members >= 0)
    if sim_anchor:
        ok &= members != goal.anchor
    members = jnp.where(ok, members, -1)
    cents = catalog.price_cents[jnp.clip(members, 0)]
    lo = jnp.min(jnp.where(ok, cents, jnp.iinfo(jnp.int32).max)).astype(jnp.float32)
    hi = jnp.max(jnp.where(ok, cents, 0)).astype(jnp.float32)
    goal = goal.replace(pool=members, price_lo=jnp.where(jnp.any(ok), lo, 0.0), price_hi=jnp.where(jnp.any(ok), hi, 1.0))
    key = priority_key(catalog, goal, members, diff.lambda_sim, sim_anchor)
    util = priority_gain(key, members, diff.d)
    best = -jnp.sort(-util)
    idcg = jnp.sum(jnp.where(jnp.arange(POOL) < goal.k_rec, best / jnp.log2(jnp.arange(POOL) + 2.0), 0.0))
    return goal.replace(pool_util=util, idcg=idcg)


def ndcg(rel: jnp.ndarray, k_rec: jnp.ndarray, idcg: jnp.ndarray) -> jnp.ndarray:
    """nDCG of a ranked list's relevances (first k_rec), clipped to [0, 1]. rel [R]."""
    pos = jnp.arange(rel.shape[0])
    dcg = jnp.sum(jnp.where(pos < k_rec, rel / jnp.log2(pos + 2.0), 0.0))
    return jnp.clip(dcg / jnp.maximum(idcg, 1e-9), 0.0, 1.0)


def rank_for(wp: WorldParams, world: World, goal: IntentGoal, candidates: jnp.ndarray, sim_anchor: bool) -> jnp.ndarray:
    """The oracle's list: candidates with rel > 0 sorted by rel, first k_rec, -1 pads. [K] -> [MAX_REC]."""
    rel = relevance(wp, world, goal, candidates, sim_anchor)
    rel = jnp.where(candidates >= 0, rel, 0.0)
    order = jnp.argsort(-rel, stable=True)
    ranked = jnp.where(rel[order] > 0, candidates[order], -1)          # one search list: ids are distinct
    out = jnp.where(jnp.arange(ranked.shape[0]) < goal.k_rec, ranked, -1)
    return jnp.full((MAX_REC,), -1, jnp.int32).at[: min(MAX_REC, out.shape[0])].set(out[:MAX_REC])


def out_of_stock(world: World, catalog: Catalog, products: jnp.ndarray) -> jnp.ndarray:
    """Listed products out of stock in the episode (or unknown). [K] -> [K] bool."""
    known = (products >= 0) & (products < catalog.num_products)
    stock = jax.vmap(lambda p: product_stock(world, catalog, p))(products)
    return (products != -1) & (~known | (stock <= 0) | jax.vmap(lambda p: is_oos(world, p))(products))
