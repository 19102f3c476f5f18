"""Cart tools in int32 cents: view, add, remove, set_quantity. Line ids are slot indices, never reused."""

import jax
import jax.numpy as jnp

from ecomjax.catalog.types import Catalog
from ecomjax.world.errors import ToolError
from ecomjax.world.state import (
    MAX_CART_CENTS, MAX_QTY, ToolCall, World, safe_index, unit_price, valid_product, variant_exists,
    variant_stock,
)


def line_prices(world: World, catalog: Catalog) -> jnp.ndarray:
    """Unit price of every cart line in cents (0 on empty slots). # [C] int32"""
    prices = jax.vmap(lambda p, v: unit_price(world, catalog, p, v))(world.cart_product, world.cart_variant)
    return jnp.where(world.cart_product >= 0, prices, 0)


def cart_totals(world: World, catalog: Catalog) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(total units, total price in cents) of the cart. # [], []"""
    qty = jnp.where(world.cart_product >= 0, world.cart_qty, 0)
    return jnp.sum(qty), jnp.sum(qty * line_prices(world, catalog))


def _total_after(world: World, catalog: Catalog, extra_cents: jnp.ndarray) -> jnp.ndarray:
    """Cart total plus extra, in float32 so an int32 overflow is detectable. # [] float32"""
    qty = jnp.where(world.cart_product >= 0, world.cart_qty, 0).astype(jnp.float32)
    return jnp.sum(qty * line_prices(world, catalog).astype(jnp.float32)) + extra_cents


def cart_add(world: World, call: ToolCall, catalog: Catalog) -> tuple[World, jnp.ndarray, jnp.ndarray]:
    """Add `qty` of (product, variant); merges with an identical line. Returns (world, error, line id)."""
    p, v, q = call.product, call.variant, call.qty
    same = (world.cart_product == p) & (world.cart_variant == v) & (world.cart_qty > 0)
    existing = jnp.where(jnp.any(same), jnp.argmax(same), -1)
    size = world.cart_product.shape[0]
    slot = jnp.where(existing >= 0, existing, world.cart_created)
    have = jnp.where(existing >= 0, world.cart_qty[safe_index(existing, size)], 0)
    price = unit_price(world, catalog, p, v).astype(jnp.float32)
    error = jnp.select(
        [
            ~valid_product(catalog, p),
            (v != -1) & ~variant_exists(world, catalog, p, v),
            (q < 1) | (q > MAX_QTY) | (have + q > MAX_QTY),
            have + q > variant_stock(world, catalog, p, v),
            (existing < 0) & (world.cart_created >= size),
            _total_after(world, catalog, price * q) > MAX_CART_CENTS,
        ],
        [ToolError.UNKNOWN_PRODUCT, ToolError.UNKNOWN_VARIANT, ToolError.BAD_QUANTITY, ToolError.OUT_OF_STOCK,
         ToolError.CART_FULL, ToolError.BAD_QUANTITY],
        ToolError.OK,
    ).astype(jnp.int32)
    ok = error == ToolError.OK
    target = jnp.where(ok, slot, size)                                 # out of range -> dropped
    new = world.replace(
        cart_product=world.cart_product.at[target].set(p, mode="drop"),
        cart_variant=world.cart_variant.at[target].set(v, mode="drop"),
        cart_qty=world.cart_qty.at[target].set(have + q, mode="drop"),
        cart_created=world.cart_created + (ok & (existing < 0)).astype(jnp.int32),
    )
    return new, error, jnp.where(ok, slot, -1)


def _line_ok(world: World, line: jnp.ndarray) -> jnp.ndarray:
    size = world.cart_product.shape[0]
    return (line >= 0) & (line < size) & (world.cart_product[safe_index(line, size)] >= 0)


def cart_remove(world: World, call: ToolCall, catalog: Catalog) -> tuple[World, jnp.ndarray, jnp.ndarray]:
    """Remove cart line `line`. Returns (world, error, line id)."""
    del catalog
    ok = _line_ok(world, call.line)
    target = jnp.where(ok, call.line, world.cart_product.shape[0])
    new = world.replace(
        cart_product=world.cart_product.at[target].set(-1, mode="drop"),
        cart_variant=world.cart_variant.at[target].set(-1, mode="drop"),
        cart_qty=world.cart_qty.at[target].set(0, mode="drop"),
    )
    error = jnp.where(ok, ToolError.OK, ToolError.UNKNOWN_LINE).astype(jnp.int32)
    return new, error, jnp.where(ok, call.line, -1)


def cart_set_quantity(world: World, call: ToolCall, catalog: Catalog) -> tuple[World, jnp.ndarray, jnp.ndarray]:
    """Set line `line` to `qty` units (0 removes it). Returns (world, error, line id)."""
    size = world.cart_product.shape[0]
    line, q = call.line, call.qty
    li = safe_index(line, size)
    p, v = world.cart_product[li], world.cart_variant[li]
    price = unit_price(world, catalog, p, v).astype(jnp.float32)
    delta_cents = price * (q - world.cart_qty[li]).astype(jnp.float32)
    error = jnp.select(
        [~_line_ok(world, line), (q < 0) | (q > MAX_QTY), q > variant_stock(world, catalog, p, v),
         _total_after(world, catalog, delta_cents) > MAX_CART_CENTS],
        [ToolError.UNKNOWN_LINE, ToolError.BAD_QUANTITY, ToolError.OUT_OF_STOCK, ToolError.BAD_QUANTITY],
        ToolError.OK,
    ).astype(jnp.int32)
    ok = error == ToolError.OK
    target = jnp.where(ok, line, size)
    removed = q == 0
    new = world.replace(
        cart_product=world.cart_product.at[target].set(jnp.where(removed, -1, p), mode="drop"),
        cart_variant=world.cart_variant.at[target].set(jnp.where(removed, -1, v), mode="drop"),
        cart_qty=world.cart_qty.at[target].set(q, mode="drop"),
    )
    return new, error, jnp.where(ok, line, -1)
