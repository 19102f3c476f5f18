"""Retrieval: filters as masks, exact masked top-k (query-chunked), same-category rank noise, sharding.

A query is a vector in the catalog's embedding space (`Catalog.emb`): the hashed lexical encoder by
default, or any dense encoder whose table was installed with `types.with_embeddings`. With the
lexical table, scores are exact, so results are identical across batch sizes, chunks and shards.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec

from ecomjax.catalog.schema import DISCRETE_ATTRS, EQ_FILTER_KEYS, RANGE_FIELDS, RANGE_FILTER_KEYS
from ecomjax.catalog.types import Catalog, Vocab

NUM_EQ = len(EQ_FILTER_KEYS)
NUM_RANGE = len(RANGE_FIELDS)
FLOAT32_MAX = float(np.finfo(np.float32).max)
SCORE_BUDGET = 1 << 25          # score elements per query chunk on CPU ([chunk, P] float32 = 128 MiB)
ACCELERATOR_SCORE_BUDGET = 1 << 29   # on GPU/TPU (2 GiB of float32 scores per chunk)
DEGRADE_TRIES = 4               # same-category draws per degraded slot
NO_ID = -1


@struct.dataclass
class Filters:
    """Search filters: equality per EQ_FILTER_KEYS (-1 = none) and closed ranges per RANGE_FIELDS."""

    eq: jnp.ndarray  # [..., NUM_EQ] int32
    lo: jnp.ndarray  # [..., NUM_RANGE] float32, -inf = none
    hi: jnp.ndarray  # [..., NUM_RANGE] float32, +inf = none


def no_filters(batch_shape: tuple[int, ...] = ()) -> Filters:
    return Filters(
        eq=jnp.full(batch_shape + (NUM_EQ,), -1, jnp.int32),
        lo=jnp.full(batch_shape + (NUM_RANGE,), -jnp.inf, jnp.float32),
        hi=jnp.full(batch_shape + (NUM_RANGE,), jnp.inf, jnp.float32),
    )


def filters_from_dict(filters: dict[str, Any] | None, vocab: Vocab) -> Filters:
    """Host-side: a `catalog.search` filters dict -> Filters. Raises ValueError naming a bad key/value."""
    eq = np.full(NUM_EQ, -1, np.int32)
    lo = np.full(NUM_RANGE, -np.inf, np.float32)
    hi = np.full(NUM_RANGE, np.inf, np.float32)
    for key, value in (filters or {}).items():
        if key in EQ_FILTER_KEYS:
            idx = _eq_value_index(key, value, vocab)
            if idx < 0:
                raise ValueError(f"filters.{key}: unknown value {value!r}")
            eq[EQ_FILTER_KEYS.index(key)] = idx
        elif key in RANGE_FILTER_KEYS:
            number = _finite(value)
            if number is None:
                raise ValueError(f"filters.{key}: expected a finite number, got {value!r}")
            field, bound = RANGE_FILTER_KEYS[key]
            (lo if bound == 0 else hi)[RANGE_FIELDS.index(field)] = number
        else:
            raise ValueError(f"filters: unknown key {key!r}; allowed: {sorted(EQ_FILTER_KEYS) + sorted(RANGE_FILTER_KEYS)}")
    return Filters(eq=jnp.asarray(eq), lo=jnp.asarray(lo), hi=jnp.asarray(hi))


def _finite(value: Any) -> float | None:
    """A JSON number as a finite float32 value (saturated); None for anything else (booleans, non-finite or
    unrepresentable numbers, other types)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return float(np.clip(number, -FLOAT32_MAX, FLOAT32_MAX)) if math.isfinite(number) else None


def _eq_value_index(key: str, value: Any, vocab: Vocab) -> int:
    if not isinstance(value, str):
        return -1
    text = value.strip().lower()
    if key == "cat":
        names = [c.lower() for c in vocab.categories]
        leaf_names = [c.rsplit("/", 1)[-1].lower() for c in vocab.categories]
        if text in names:
            return names.index(text)
        return leaf_names.index(text) if text in leaf_names else -1
    table = {"brand": vocab.brands, "store": vocab.stores}.get(key) or vocab.attr_values[key]
    lowered = [x.lower() for x in table]
    return lowered.index(text) if text in lowered else -1


def _eq_columns(catalog: Any) -> list[jnp.ndarray]:
    """Columns compared by the equality filters, in EQ_FILTER_KEYS order after `cat`. Each [P]."""
    columns = []
    for key in EQ_FILTER_KEYS[1:]:
        if key == "brand":
            columns.append(catalog.brand)
        elif key == "store":
            columns.append(catalog.store)
        else:
            columns.append(catalog.attr[:, DISCRETE_ATTRS.index(key)])
    return columns


def _match(catalog: Any, f: Filters, products: jnp.ndarray | None) -> jnp.ndarray:
    """Filter predicate. products None: all products vs f [Q] -> [Q, P]; else products [Q, K] -> [Q, K]."""
    take = (lambda x: x[None, :]) if products is None else (lambda x: x[products])  # noqa: E731
    cat = f.eq[:, :1]                                                               # [Q, 1]
    ok = (cat < 0) | (take(catalog.category) == cat) | (take(catalog.mid_category) == cat) | (
        take(catalog.top_category) == cat)
    for i, column in enumerate(_eq_columns(catalog)):
        want = f.eq[:, i + 1, None]
        ok &= (want < 0) | (take(column) == want)
    for r in range(NUM_RANGE):
        value = take(catalog.range_values[:, r])
        lo, hi = f.lo[:, r, None], f.hi[:, r, None]
        inside = (value >= lo) & (value <= hi)                    # NaN (missing) is never inside
        ok &= ((lo == -jnp.inf) & (hi == jnp.inf)) | inside
    return ok


def filter_mask(catalog: Catalog, f: Filters) -> jnp.ndarray:
    """Which products pass each query's filters. f [Q] -> [Q, P] bool."""
    return _match(catalog, f, None)


def products_match(catalog: Catalog, products: jnp.ndarray, f: Filters) -> jnp.ndarray:
    """Whether given products pass their query's filters. products [Q, K] (-1 = none) -> [Q, K] bool."""
    safe = jnp.clip(products, 0, catalog.num_products - 1)
    return _match(catalog, f, safe) & (products >= 0)


def _topk_block(catalog: Any, q: jnp.ndarray, f: Filters, k: int, valid: jnp.ndarray | None):
    scores = (q @ catalog.emb.T) * catalog.emb_scale[None, :]                     # [Q, P]
    mask = filter_mask(catalog, f)
    if valid is not None:
        mask &= valid[None, :]
    scores = jnp.where(mask, scores, -jnp.inf)
    values, ids = jax.lax.top_k(scores, k)                                        # [Q, k]
    return values, jnp.where(values == -jnp.inf, NO_ID, ids).astype(jnp.int32)


def masked_topk(catalog: Any, q: jnp.ndarray, f: Filters, k: int,
                valid: jnp.ndarray | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Exact top-k by similarity among products passing the filters, chunked over queries.

    Similarity is q · emb[p] / ||emb[p]|| (the query's own norm does not change its ranking).
    q [Q, D], f [Q] -> (scores [Q, k] float32 (-inf where empty), ids [Q, k] int32 (-1 where empty)).
    """
    num_q, num_p = q.shape[0], catalog.emb.shape[0]
    k = min(int(k), num_p)
    budget = SCORE_BUDGET if jax.default_backend() == "cpu" else ACCELERATOR_SCORE_BUDGET
    chunk = max(1, min(num_q, budget // max(num_p, 1)))
    if chunk >= num_q:
        return _topk_block(catalog, q, f, k, valid)
    pad = (-num_q) % chunk
    padded = lambda x: jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))  # noqa: E731
    blocks = jax.tree.map(lambda x: padded(x).reshape((-1, chunk) + x.shape[1:]), (q, f))
    values, ids = jax.lax.map(lambda b: _topk_block(catalog, b[0], b[1], k, valid), blocks)
    return values.reshape(-1, k)[:num_q], ids.reshape(-1, k)[:num_q]


def degrade(keys: jax.Array, catalog: Catalog, ids: jnp.ndarray, f: Filters, eps: jnp.ndarray) -> jnp.ndarray:
    """Same-category rank noise: each result, with probability eps, becomes another product of its
    leaf category that passes the same filters and is not already listed (else it stays).

    keys [Q] (one per query, so a query's noise does not depend on its batch); ids [Q, K]; eps [Q].
    """
    num_q, k = ids.shape
    draws = jax.vmap(lambda kk: jax.random.uniform(kk, (k, 1 + DEGRADE_TRIES)))(keys)   # [Q, K, 1+T]
    flip = draws[..., 0] < eps[:, None]                                                 # [Q, K]
    leaf = catalog.category[jnp.clip(ids, 0)]
    start, stop = catalog.cat_start[leaf], catalog.cat_start[leaf + 1]
    pos = start[..., None] + jnp.floor(draws[..., 1:] * (stop - start)[..., None]).astype(jnp.int32)
    cand = catalog.cat_members[jnp.clip(pos, 0, catalog.num_products - 1)]        # [Q, K, T]
    flat = cand.reshape(num_q, k * DEGRADE_TRIES)
    ok = products_match(catalog, flat, f).reshape(num_q, k, DEGRADE_TRIES)
    ok &= ~jnp.any(cand[..., None] == ids[:, None, None, :], axis=-1)             # not already listed
    first = jnp.argmax(ok, axis=-1)                                               # [Q, K]
    pick = jnp.take_along_axis(cand, first[..., None], axis=-1)[..., 0]
    replace = flip & (ids >= 0) & jnp.any(ok, axis=-1)
    out = jnp.where(replace, pick, ids)
    return _dedupe_rows(out, ids)


def _dedupe_rows(out: jnp.ndarray, original: jnp.ndarray) -> jnp.ndarray:
    """Undo replacements that collide with an earlier slot in the same row."""
    k = out.shape[1]
    earlier = jnp.tril(jnp.ones((k, k), bool), -1)                                # [K, K] j < i
    dup = jnp.any((out[:, :, None] == out[:, None, :]) & earlier[None] & (out[:, :, None] >= 0), axis=-1)
    return jnp.where(dup, original, out)


def truncate(ids: jnp.ndarray, count: jnp.ndarray) -> jnp.ndarray:
    """Keep the first `count` results per row. ids [Q, K], count [Q] -> [Q, K]."""
    return jnp.where(jnp.arange(ids.shape[1])[None, :] < count[:, None], ids, NO_ID)


def search(catalog: Catalog, keys: jax.Array, q: jnp.ndarray, f: Filters, k: int,
           top_k: jnp.ndarray, depth: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
    """Full `catalog.search` retrieval for a batch (jit-compatible; k static): masked top-k, rank noise,
    truncation.

    keys [Q] per-query keys; q [Q, D]; f [Q]; k static result slots; top_k [Q] agent's count; depth [Q] retrieval depth
    top_k(d) (caps how far down the filtered ranking results can come from); eps [Q] eps_rank(d).
    Returns ids [Q, k] int32 (-1 = empty slot).
    """
    _, ids = masked_topk(catalog, q, f, k)
    ids = degrade(keys, catalog, ids, f, eps)
    return truncate(ids, jnp.minimum(top_k, depth))


# ---------------------------------------------------------------- sharded search over a device mesh

SEARCH_FIELDS = ("emb", "emb_scale", "range_values", "category", "mid_category", "top_category", "brand", "store", "attr")


@struct.dataclass
class _SearchColumns:
    """The per-product columns `masked_topk` reads; one shard of them inside shard_map."""

    emb: jnp.ndarray
    emb_scale: jnp.ndarray
    range_values: jnp.ndarray
    category: jnp.ndarray
    mid_category: jnp.ndarray
    top_category: jnp.ndarray
    brand: jnp.ndarray
    store: jnp.ndarray
    attr: jnp.ndarray


def shard_catalog(catalog: Catalog, mesh: jax.sharding.Mesh, axis: str) -> tuple[dict, jnp.ndarray]:
    """Product-sharded copies of the search columns (padded to a multiple of the axis size) + valid mask."""
    n = mesh.shape[axis]
    pad = (-catalog.num_products) % n
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    cols = {
        name: jax.device_put(jnp.pad(getattr(catalog, name), [(0, pad)] + [(0, 0)] * (getattr(catalog, name).ndim - 1)), sharding)
        for name in SEARCH_FIELDS
    }
    valid = jax.device_put(jnp.arange(catalog.num_products + pad) < catalog.num_products, sharding)
    return cols, valid


def sharded_masked_topk(mesh: jax.sharding.Mesh, axis: str, cols: dict, valid: jnp.ndarray,
                        q: jnp.ndarray, f: Filters, k: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`masked_topk` with products sharded over `axis`: local top-k per shard, gather, exact merge."""
    spec_p = PartitionSpec(axis)

    def local(cols_l, valid_l, q_l, f_l):
        shard = _SearchColumns(**cols_l)
        values, ids = masked_topk(shard, q_l, f_l, min(k, valid_l.shape[0]), valid_l)
        offset = jax.lax.axis_index(axis) * valid_l.shape[0]
        ids = jnp.where(ids >= 0, ids + offset, NO_ID)
        all_v = jax.lax.all_gather(values, axis, axis=1, tiled=True)             # [Q, n*k]
        all_i = jax.lax.all_gather(ids, axis, axis=1, tiled=True)
        top_v, pos = jax.lax.top_k(all_v, k)
        return top_v, jnp.where(top_v == -jnp.inf, NO_ID, jnp.take_along_axis(all_i, pos, axis=1))

    fn = jax.shard_map(
        local, mesh=mesh,
        in_specs=({name: spec_p for name in cols}, spec_p, PartitionSpec(), PartitionSpec()),
        out_specs=(PartitionSpec(), PartitionSpec()), check_vma=False,
    )
    return fn(cols, valid, q, f)
