"""Catalog-side tools: search (results precomputed in batch), rerank, get_product, get_variants, visits."""

import jax
import jax.numpy as jnp

from ecomjax.catalog.lexical import embed_hashes
from ecomjax.catalog.retrieval import search
from ecomjax.catalog.types import Catalog
from ecomjax.world.errors import ToolError
from ecomjax.world.state import ToolCall, World, safe_index, valid_product

MAX_SEARCH_TOP_K = 50


def search_error(call: ToolCall) -> jnp.ndarray:
    """Argument errors of `catalog.search`."""
    return jnp.select(
        [jnp.all(call.query == 0), (call.top_k < 1) | (call.top_k > MAX_SEARCH_TOP_K)],
        [ToolError.EMPTY_QUERY, ToolError.BAD_ARGUMENT], ToolError.OK,
    ).astype(jnp.int32)


def rerank(call: ToolCall, catalog: Catalog, result_size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`catalog.rerank`: candidates sorted by similarity to the query, first `top_k`. (error, ids [K])."""
    cand = call.ids                                                              # [KR]
    present = cand != -1
    known = valid_product(catalog, cand)
    error = jnp.select(
        [jnp.all(call.query == 0), ~jnp.any(present), jnp.any(present & ~known),
         (call.top_k < 1) | (call.top_k > cand.shape[0])],
        [ToolError.EMPTY_QUERY, ToolError.BAD_ARGUMENT, ToolError.UNKNOWN_PRODUCT, ToolError.BAD_ARGUMENT],
        ToolError.OK,
    ).astype(jnp.int32)
    q = embed_hashes(call.query, catalog.emb_dim)                                # [D]
    safe = safe_index(cand, catalog.num_products)
    scores = (catalog.emb[safe] @ q) * catalog.emb_scale[safe]                   # [KR]
    scores = jnp.where(known, scores, -jnp.inf)
    order = jnp.argsort(-scores, stable=True)
    ranked = jnp.where(jnp.arange(cand.shape[0]) < call.top_k, cand[order], -1)
    ranked = jnp.where(known[order], ranked, -1)
    ids = jnp.full((result_size,), -1, jnp.int32).at[: cand.shape[0]].set(ranked[:result_size])
    return error, jnp.where(error == ToolError.OK, ids, -1)


def single_product(call: ToolCall, catalog: Catalog, result_size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`catalog.get_product` / `catalog.get_variants`: (error, ids [K] with the product first)."""
    ok = valid_product(catalog, call.product)
    ids = jnp.full((result_size,), -1, jnp.int32).at[0].set(jnp.where(ok, call.product, -1))
    return jnp.where(ok, ToolError.OK, ToolError.UNKNOWN_PRODUCT).astype(jnp.int32), ids


def visit_history(world: World, result_size: int) -> jnp.ndarray:
    """`user.get_visit_history`: the episode's visited products. # [K]"""
    h = world.visits.shape[0]
    return jnp.full((result_size,), -1, jnp.int32).at[:h].set(world.visits[:result_size])


def query_vectors(catalog: Catalog, query: jnp.ndarray) -> jnp.ndarray:
    """Lexical query vectors of structured queries. [..., QT] -> [..., D]."""
    return embed_hashes(query, catalog.emb_dim)


def search_batch(keys: jax.Array, catalog: Catalog, calls_query: jnp.ndarray, filters, top_k: jnp.ndarray,
                 depth: jnp.ndarray, eps: jnp.ndarray, result_size: int) -> jnp.ndarray:
    """Retrieval for a flat batch of search calls. keys/query [N, QT]/filters/top_k/depth/eps [N] -> [N, K]."""
    return search(catalog, keys, query_vectors(catalog, calls_query), filters, result_size, top_k, depth, eps)
