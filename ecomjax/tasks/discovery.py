"""Shared by PD and SUB: constraint drawing, the feasible evaluation pool, persona utilities and nDCG."""

import jax
import jax.numpy as jnp
import numpy as np

from ecomjax.catalog.retrieval import filter_mask
from ecomjax.catalog.types import Catalog
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


def _pool_mask(catalog: Catalog, c_key, c_op, c_value, c_mask) -> jnp.ndarray:
    f = C.to_filters(c_key, c_op, c_value, c_mask)
    return filter_mask(catalog, jax.tree.map(lambda x: x[None], f))[0]                # [P]


def tighten_price(catalog: Catalog, c_key, c_op, c_value, c_mask) -> jnp.ndarray:
    """Lower the price bound (constraint 0) so at most POOL products pass every filter; the cheapest
    in-stock match always stays. Returns the new c_value."""
    mask = _pool_mask(catalog, c_key, c_op, c_value, c_mask)
    # XLA:CPU's top_k is ~40x slower on int32 than on float32: select in float32 (exact below 2**24 cents),
    # then read the chosen products' exact integer prices.
    order_key = jnp.where(mask, catalog.price_cents.astype(jnp.float32), jnp.inf)
    _, cheapest_ids = jax.lax.top_k(-order_key, POOL)                                # [POOL]
    cents = jnp.where(mask, catalog.price_cents, jnp.iinfo(jnp.int32).max)
    smallest = jnp.sort(cents[cheapest_ids])                                          # ascending [POOL]
    in_stock = jnp.where(mask & (catalog.stock > 0), catalog.price_cents, jnp.iinfo(jnp.int32).max)
    cheapest_in_stock = jnp.min(in_stock)
    bound = jnp.maximum(smallest[POOL - 1], cheapest_in_stock)
    tight = jnp.sum(mask) > POOL
    dollars = jnp.max(jnp.where(mask & (catalog.price_cents <= bound), catalog.range_values[:, 0], -jnp.inf))
    new_price = jnp.where(tight, dollars, c_value[0])                 # the catalog's own float: exact filter
    return c_value.at[0].set(jnp.minimum(new_price, c_value[0]))


def pool_members(catalog: Catalog, c_key, c_op, c_value, c_mask) -> jnp.ndarray:
    """Up to POOL products passing every constraint filter, by id. # [POOL] int32 (-1 pads)"""
    mask = _pool_mask(catalog, c_key, c_op, c_value, c_mask)
    score = jnp.where(mask, -jnp.arange(catalog.num_products, dtype=jnp.float32), -jnp.inf)
    top, ids = jax.lax.top_k(score, POOL)
    return jnp.where(top > -jnp.inf, ids, -1).astype(jnp.int32)


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


def relevance(wp: WorldParams, world: World, goal: IntentGoal, products: jnp.ndarray, lambda_sim,
              sim_anchor: bool) -> jnp.ndarray:
    """rel(p): 0 unless p is feasible, available and not the SUB original; else the blended utility."""
    catalog = wp.catalog
    feasible = C.feasible(catalog, products, goal.c_key, goal.c_op, goal.c_value, goal.c_mask)
    ok = feasible & available(world, catalog, products)
    if sim_anchor:
        ok &= products != goal.anchor
    u = utility(catalog, goal, products, sim_anchor)
    if sim_anchor:
        ps = jnp.clip(products, 0, catalog.num_products - 1)
        anchor = jnp.clip(goal.anchor, 0, catalog.num_products - 1)
        cos = (catalog.emb[ps] @ catalog.emb[anchor]) * catalog.emb_scale[ps] * catalog.emb_scale[anchor]
        u = lambda_sim * (cos + 1.0) / 2.0 + (1.0 - lambda_sim) * u
    return jnp.where(ok, u, 0.0)


def finish_pool(wp: WorldParams, world: World, goal: IntentGoal, lambda_sim, sim_anchor: bool) -> IntentGoal:
    """Evaluation pool (feasible + available), price range, utilities and IDCG of the best k_rec."""
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
    util = jnp.where(ok, relevance(wp, world, goal, members, lambda_sim, sim_anchor), 0.0)
    best = -jnp.sort(-util)
    idcg = jnp.sum(jnp.where(jnp.arange(POOL) < goal.k_rec, best / jnp.log2(jnp.arange(POOL) + 2.0), 0.0))
    return goal.replace(pool_util=util, idcg=idcg)


def ndcg(rel: jnp.ndarray, k_rec: jnp.ndarray, idcg: jnp.ndarray) -> jnp.ndarray:
    """nDCG of a ranked list's relevances (first k_rec), clipped to [0, 1]. rel [R]."""
    pos = jnp.arange(rel.shape[0])
    dcg = jnp.sum(jnp.where(pos < k_rec, rel / jnp.log2(pos + 2.0), 0.0))
    return jnp.clip(dcg / jnp.maximum(idcg, 1e-9), 0.0, 1.0)


def rank_for(wp: WorldParams, world: World, goal: IntentGoal, candidates: jnp.ndarray, lambda_sim,
             sim_anchor: bool) -> jnp.ndarray:
    """The oracle's list: candidates with rel > 0 sorted by rel, first MAX_REC, -1 pads. [K] -> [MAX_REC]."""
    rel = relevance(wp, world, goal, candidates, lambda_sim, sim_anchor)
    rel = jnp.where(candidates >= 0, rel, 0.0)
    order = jnp.argsort(-rel, stable=True)
    ranked = jnp.where(rel[order] > 0, candidates[order], -1)
    dedup = ranked  # candidates come from one search list: ids are distinct
    keep = jnp.arange(ranked.shape[0]) < goal.k_rec
    out = jnp.where(keep, dedup, -1)
    return jnp.full((MAX_REC,), -1, jnp.int32).at[: min(MAX_REC, out.shape[0])].set(out[:MAX_REC])


def out_of_stock(world: World, catalog: Catalog, products: jnp.ndarray) -> jnp.ndarray:
    """Listed products out of stock in the episode (or unknown). [K] -> [K] bool."""
    known = (products >= 0) & (products < catalog.num_products)
    stock = jax.vmap(lambda p: product_stock(world, catalog, p))(products)
    return (products != -1) & (~known | (stock <= 0) | jax.vmap(lambda p: is_oos(world, p))(products))
