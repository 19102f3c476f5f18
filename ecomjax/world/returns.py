"""Return tools: eligibility by the product's top category window, initiate, exchange."""

import jax.numpy as jnp

from ecomjax.catalog.types import Catalog
from ecomjax.world.errors import ToolError
from ecomjax.world.orders import order_line_exists
from ecomjax.world.state import (
    CANCELLED, RETURN_FEES_CENTS, RETURN_KIND_EXCHANGE, RETURN_KIND_RETURN, RETURN_METHODS, RETURN_REASONS,
    ToolCall, World, product_stock, safe_index, valid_product, variant_exists,
)


def eligibility(world: World, catalog: Catalog, order: jnp.ndarray, line: jnp.ndarray):
    """(line exists, eligible, window days, days since purchase) of an order line."""
    o, num_lines = world.line_product.shape
    exists = order_line_exists(world, order, line)
    oi, li = safe_index(order, o), safe_index(line, num_lines)
    product = world.line_product[oi, li]
    top = catalog.top_category[safe_index(product, catalog.num_products)]
    window = catalog.return_window[top]
    days_since = world.today - world.order_day[oi]
    eligible = exists & (world.order_status[oi] != CANCELLED) & (window > 0) & (days_since <= window)
    return exists, eligible, jnp.where(exists, window, 0), jnp.where(exists, days_since, 0)


def has_return(world: World, order: jnp.ndarray, line: jnp.ndarray) -> jnp.ndarray:
    return jnp.any((world.ret_order == order) & (world.ret_line == line))


def check_eligibility(world: World, call: ToolCall, catalog: Catalog):
    """`return.check_eligibility`: (error, eligible, window, days_since)."""
    exists, eligible, window, days = eligibility(world, catalog, call.order, call.line)
    error = jnp.where(exists, ToolError.OK, _missing_error(world, call)).astype(jnp.int32)
    return error, eligible, window, days


def _missing_error(world: World, call: ToolCall) -> jnp.ndarray:
    size = world.order_valid.shape[0]
    order_ok = (call.order >= 0) & (call.order < size) & world.order_valid[safe_index(call.order, size)]
    return jnp.where(order_ok, ToolError.UNKNOWN_ORDER_LINE, ToolError.UNKNOWN_ORDER)


def _record(world: World, call: ToolCall, catalog: Catalog, kind: int, extra_error: jnp.ndarray,
            new_product: jnp.ndarray, new_variant: jnp.ndarray):
    exists, eligible, _, _ = eligibility(world, catalog, call.order, call.line)
    slot = jnp.argmin(world.ret_order >= 0)
    error = jnp.select(
        [~exists, (call.reason < 0) | (call.reason >= len(RETURN_REASONS)),
         (call.method < 0) | (call.method >= len(RETURN_METHODS)), ~eligible,
         has_return(world, call.order, call.line), jnp.all(world.ret_order >= 0), extra_error != ToolError.OK],
        [_missing_error(world, call), ToolError.BAD_ARGUMENT, ToolError.BAD_ARGUMENT, ToolError.NOT_ELIGIBLE,
         ToolError.DUPLICATE_RETURN, ToolError.RETURNS_FULL, extra_error],
        ToolError.OK,
    ).astype(jnp.int32)
    ok = error == ToolError.OK
    target = jnp.where(ok, slot, world.ret_order.shape[0])
    put = lambda arr, value: arr.at[target].set(value, mode="drop")  # noqa: E731
    new = world.replace(
        ret_order=put(world.ret_order, call.order), ret_line=put(world.ret_line, call.line),
        ret_kind=put(world.ret_kind, kind), ret_reason=put(world.ret_reason, call.reason),
        ret_method=put(world.ret_method, call.method), ret_new_product=put(world.ret_new_product, new_product),
        ret_new_variant=put(world.ret_new_variant, new_variant),
    )
    fee = jnp.asarray(RETURN_FEES_CENTS, jnp.int32)[safe_index(call.method, len(RETURN_METHODS))]
    return new, error, jnp.where(ok, slot, -1), jnp.where(ok & (kind == RETURN_KIND_RETURN), fee, 0)


def return_initiate(world: World, call: ToolCall, catalog: Catalog):
    """`return.initiate` on (order, line) with reason and method: (world, error, return slot, fee)."""
    return _record(world, call, catalog, RETURN_KIND_RETURN, jnp.int32(ToolError.OK), jnp.int32(-1), jnp.int32(-1))


def return_exchange(world: World, call: ToolCall, catalog: Catalog):
    """`return.exchange` of (order, line) for (product, variant) in stock: (world, error, slot, fee)."""
    p, v = call.product, call.variant
    extra = jnp.select(
        [~valid_product(catalog, p), (v != -1) & ~variant_exists(world, catalog, p, v),
         product_stock(world, catalog, p) < 1],
        [ToolError.UNKNOWN_PRODUCT, ToolError.UNKNOWN_VARIANT, ToolError.OUT_OF_STOCK],
        ToolError.OK,
    ).astype(jnp.int32)
    return _record(world, call, catalog, RETURN_KIND_EXCHANGE, extra, p, v)
