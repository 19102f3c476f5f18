"""Hidden constraints of PD / SUB / RETURN-replacement goals: keys, predicates, satisfaction s(p|C), and
their translation into `catalog.search` filters (so the feasible pool is exactly a filter mask)."""

import jax
import jax.numpy as jnp

from ecomjax.catalog.retrieval import NUM_EQ, NUM_RANGE, Filters, products_match
from ecomjax.catalog.schema import DISCRETE_ATTRS, EQ_FILTER_KEYS, NUMERIC_ATTRS, RANGE_FIELDS
from ecomjax.catalog.types import Catalog

# Constraint keys: price first (always present), category second (always present), then the rest.
CONSTRAINT_KEYS: tuple[str, ...] = (
    "price", "cat", "brand", "color", "size", "material", "connector_type", "store", "item_form", "skin_type",
    "finish_type", "rating", "ship_days", "rating_count", "wattage", "weight_lbs", "screen_size_inches",
)
KEY = {name: i for i, name in enumerate(CONSTRAINT_KEYS)}
NUM_KEYS = len(CONSTRAINT_KEYS)
EQ, LTE, GTE = 0, 1, 2
OPS: tuple[str, ...] = ("eq", "lte", "gte")
# Natural bound direction of every numeric key (upper bounds for cost-like values).
NUMERIC_OP = {"price": LTE, "rating": GTE, "ship_days": LTE, "rating_count": GTE, "wattage": GTE,
              "weight_lbs": LTE, "screen_size_inches": GTE}
INTEGER_KEYS = frozenset({"ship_days", "rating_count"})
MAX_CONSTRAINTS = 12          # m(20)


def is_numeric_key(key: jnp.ndarray) -> jnp.ndarray:
    return jnp.isin(key, jnp.asarray([KEY[k] for k in NUMERIC_OP]))


def product_values(catalog: Catalog, p: jnp.ndarray) -> jnp.ndarray:
    """Every constraint key's value for product p (ids as floats, NaN / -1 when missing). # [NUM_KEYS] f32"""
    ps = jnp.clip(p, 0, catalog.num_products - 1)
    attr = catalog.attr[ps].astype(jnp.float32)
    num = catalog.num[ps]
    column = {
        "price": catalog.range_values[ps, 0],                 # the filter's own dollars (exact comparisons)
        "cat": catalog.category[ps].astype(jnp.float32),
        "brand": catalog.brand[ps].astype(jnp.float32), "store": catalog.store[ps].astype(jnp.float32),
        "rating": catalog.rating[ps], "ship_days": catalog.ship_days[ps].astype(jnp.float32),
        "rating_count": catalog.rating_count[ps].astype(jnp.float32),
    }
    for a, name in enumerate(DISCRETE_ATTRS):
        column[name] = attr[a]
    for a, name in enumerate(NUMERIC_ATTRS):
        column[name] = num[a]
    return jnp.stack([jnp.asarray(column[k], jnp.float32) for k in CONSTRAINT_KEYS])


def has_value(values: jnp.ndarray) -> jnp.ndarray:
    """Which keys a product actually has (discrete ids >= 0, numbers not NaN). [NUM_KEYS] -> bool."""
    return ~jnp.isnan(values) & jnp.where(is_numeric_key(jnp.arange(NUM_KEYS)), True, values >= 0)


def satisfied(values: jnp.ndarray, key: jnp.ndarray, op: jnp.ndarray, value: jnp.ndarray) -> jnp.ndarray:
    """Per-constraint predicate for one product. values [NUM_KEYS]; key/op/value [M] -> [M] bool.

    A missing product value never satisfies; categories match the leaf or any ancestor via `cat_match`."""
    v = values[jnp.clip(key, 0, NUM_KEYS - 1)]
    ok = jnp.select([op == EQ, op == LTE, op == GTE], [v == value, v <= value, v >= value], False)
    return ok & ~jnp.isnan(v)


def to_filters(key: jnp.ndarray, op: jnp.ndarray, value: jnp.ndarray, mask: jnp.ndarray) -> Filters:
    """The search filters that select exactly the products satisfying every masked constraint. [M] -> []."""
    eq = jnp.full((NUM_EQ,), -1, jnp.int32)
    lo = jnp.full((NUM_RANGE,), -jnp.inf, jnp.float32)
    hi = jnp.full((NUM_RANGE,), jnp.inf, jnp.float32)
    for name in CONSTRAINT_KEYS:
        here = mask & (key == KEY[name])
        present = jnp.any(here)
        val = jnp.sum(jnp.where(here, value, 0.0))
        op_here = jnp.sum(jnp.where(here, op, 0))
        if name in EQ_FILTER_KEYS:
            i = EQ_FILTER_KEYS.index(name)
            eq = eq.at[i].set(jnp.where(present, val.astype(jnp.int32), eq[i]))
        else:
            r = RANGE_FIELDS.index(name)
            lo = lo.at[r].set(jnp.where(present & (op_here == GTE), val, lo[r]))
            hi = hi.at[r].set(jnp.where(present & (op_here == LTE), val, hi[r]))
    return Filters(eq=eq, lo=lo, hi=hi)


def satisfaction(catalog: Catalog, products: jnp.ndarray, key, op, value, mask) -> jnp.ndarray:
    """s(p|C): share of constraints each product satisfies (1 with no constraints). products [K] -> [K]."""
    vals = jax.vmap(lambda p: product_values(catalog, p))(products)                     # [K, NUM_KEYS]
    sat = jax.vmap(lambda v: satisfied(v, key, op, value))(vals)                        # [K, M]
    n = jnp.sum(mask)
    share = jnp.sum(sat & mask[None, :], axis=1) / jnp.maximum(n, 1)
    return jnp.where(n > 0, share, 1.0) * (products >= 0) * (products < catalog.num_products)


def feasible(catalog: Catalog, products: jnp.ndarray, key, op, value, mask) -> jnp.ndarray:
    """Whether products satisfy every constraint (category by leaf or ancestor). [K] -> [K] bool."""
    f = to_filters(key, op, value, mask)
    return products_match(catalog, products[None, :], jax.tree.map(lambda x: x[None], f))[0]
