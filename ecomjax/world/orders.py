"""Order history generator (relative to the episode's own `today`) and the order tools."""

import jax
import jax.numpy as jnp
import numpy as np

from ecomjax.catalog.history import OrderHistory
from ecomjax.catalog.types import Catalog
from ecomjax.world.errors import ToolError
from ecomjax.world.state import (
    CANCELLED, CONFIRMED, DELIVERED, IN_TRANSIT, NO_DAY, NUM_ADDRESSES, NUM_PAYMENTS, SHIPPED, ToolCall, World,
    safe_index, unit_price,
)

MAX_ORDER_AGE_DAYS = 90
# Cumulative status thresholds of the prior system: CONFIRMED .10, SHIPPED .25, IN_TRANSIT .45,
# DELIVERED .90, CANCELLED 1.0.
STATUS_THRESHOLDS = np.array([0.10, 0.25, 0.45, 0.90], np.float32)
MAX_LIST_DAYS = 365
TRACKING_LOW, TRACKING_HIGH = 100_000_000, 999_999_999


def _eta_and_tracking(key: jax.Array, status: jnp.ndarray, order_day: jnp.ndarray, today: jnp.ndarray):
    """ETA day and tracking number of one order by status (the prior system's table; a delivery never
    precedes its order and a confirmed order's ETA is never in the past)."""
    k = jax.random.split(key, 5)
    age = today - order_day
    delivered = order_day + 1 + jax.random.randint(k[0], (), 0, jnp.maximum(1, age))
    delivered = jnp.where(delivered > today, today - jax.random.randint(k[1], (), 0, 4), delivered)
    delivered = jnp.clip(delivered, order_day, today)
    confirmed = jnp.maximum(order_day + jax.random.randint(k[4], (), 5, 15), today + 1)
    eta = jnp.select(
        [status == DELIVERED, status == IN_TRANSIT, status == SHIPPED, status == CONFIRMED],
        [delivered, today + jax.random.randint(k[2], (), 1, 8), today + jax.random.randint(k[3], (), 2, 11),
         confirmed],
        NO_DAY,
    )
    tracking = jnp.where((status == CONFIRMED) | (status == CANCELLED), -1,
                         jax.random.randint(k[0], (), TRACKING_LOW, TRACKING_HIGH))
    return eta.astype(jnp.int32), tracking.astype(jnp.int32)


def generate_orders(key: jax.Array, world: World, catalog: Catalog, num_orders: jnp.ndarray) -> World:
    """Fill the first `num_orders` order slots with an order history, newest first.

    A catalog with a real order history (`catalog.history`) supplies real orders (`draw_history_orders`).
    Otherwise each order is synthesised: age U{0..90} days, status by the prior system's mix, 1..L lines of
    random products (qty U{1..3}, unit price = catalog price of a random catalog variant or the product),
    ETA and tracking by status.
    """
    if catalog.history is not None:
        return draw_history_orders(key, world, catalog.history, num_orders)
    o, num_lines = world.line_product.shape
    k_age, k_status, k_lines, k_prod, k_var, k_qty, k_eta, k_addr, k_pay = jax.random.split(key, 9)
    ages = jnp.sort(jax.random.randint(k_age, (o,), 0, MAX_ORDER_AGE_DAYS + 1))           # newest first
    status = jnp.searchsorted(STATUS_THRESHOLDS, jax.random.uniform(k_status, (o,)), side="right")
    status = status.astype(jnp.int32)
    n_lines = jax.random.randint(k_lines, (o,), 1, num_lines + 1)
    products = jax.random.randint(k_prod, (o, num_lines), 0, catalog.num_products)
    n_var = jnp.sum(catalog.var_value[products] >= 0, axis=-1)                              # [O, L]
    variants = jnp.where(n_var > 0, jnp.floor(jax.random.uniform(k_var, (o, num_lines)) * n_var), -1)
    variants = variants.astype(jnp.int32)
    valid = jnp.arange(o) < num_orders
    line_on = valid[:, None] & (jnp.arange(num_lines)[None, :] < n_lines[:, None])
    order_day = world.today - ages
    eta, tracking = jax.vmap(_eta_and_tracking, in_axes=(0, 0, 0, None))(
        jax.random.split(k_eta, o), status, order_day, world.today)
    price = jax.vmap(jax.vmap(lambda p, v: unit_price(world, catalog, p, v)))(products, variants)
    return world.replace(
        order_valid=valid,
        order_status=jnp.where(valid, status, 0),
        order_day=jnp.where(valid, order_day, NO_DAY),
        order_eta=jnp.where(valid, eta, NO_DAY),
        order_tracking=jnp.where(valid, tracking, -1),
        order_address=jnp.where(valid, jax.random.randint(k_addr, (o,), 0, NUM_ADDRESSES), 0),
        order_payment=jnp.where(valid, jax.random.randint(k_pay, (o,), 0, NUM_PAYMENTS), 0),
        line_product=jnp.where(line_on, products, -1),
        line_variant=jnp.where(line_on, variants, -1),
        line_qty=jnp.where(line_on, jax.random.randint(k_qty, (o, num_lines), 1, 4), 0),
        line_price=jnp.where(line_on, price, 0),
        order_source=jnp.full((o,), -1, jnp.int32),
    )


def _fit_lines(x: jnp.ndarray, num_lines: int, fill: int) -> jnp.ndarray:
    """History line columns [K, Lh] cut or padded to the world's line slots [K, num_lines]."""
    width = x.shape[1]
    if width >= num_lines:
        return x[:, :num_lines]
    return jnp.pad(x, ((0, 0), (0, num_lines - width)), constant_values=fill)


def draw_history_orders(key: jax.Array, world: World, history: OrderHistory, num_orders: jnp.ndarray) -> World:
    """Fill the first `num_orders` order slots with real orders of `history`, in draw order.

    The customer is `world.customer` (a JOURNEY's later intents keep it), else the owner of a random real
    order, and is recorded there. Their own orders come first, in random order, then random orders of
    other customers when they have fewer than `num_orders`. An order already in `world` is never drawn
    again (so `add_orders` never repeats one); slots stay empty once every order is used. Lines,
    quantities, prices paid, statuses, tracking numbers, addresses and payment methods are the real ones
    (lines beyond the world's line slots are cut); the order day is `today − history.age`; ETAs follow
    the status as for synthetic orders. Costs O(H) per call.
    """
    o, num_lines = world.line_product.shape
    h = history.num_orders
    k_user, k_pick, k_eta = jax.random.split(key, 3)
    user = jnp.where(world.customer >= 0, world.customer, history.user[jax.random.randint(k_user, (), 0, h)])
    rows = jnp.arange(h)
    used = jnp.any(rows[:, None] == world.order_source[None, :], axis=1)                   # [H]
    own = (history.user == user) & (user >= 0)
    priority = jnp.where(used, 2.0, jnp.where(own, 0.0, 1.0)) + jax.random.uniform(k_pick, (h,))
    ranked = jnp.argsort(priority)[:o]                                                     # [min(O, H)]
    fresh = priority[ranked] < 2.0
    picked = jnp.full((o,), -1, jnp.int32).at[: ranked.shape[0]].set(jnp.where(fresh, ranked, -1))
    valid = (picked >= 0) & (jnp.arange(o) < num_orders)
    src = jnp.clip(picked, 0, h - 1)
    status = history.status[src]
    order_day = world.today - history.age[src]
    eta, _ = jax.vmap(_eta_and_tracking, in_axes=(0, 0, 0, None))(jax.random.split(k_eta, o), status, order_day,
                                                                  world.today)
    line_on = valid[:, None] & (_fit_lines(history.product[src], num_lines, -1) >= 0)
    lines = lambda x, fill: jnp.where(line_on, _fit_lines(x[src], num_lines, fill), fill)  # noqa: E731
    return world.replace(
        order_valid=valid,
        order_status=jnp.where(valid, status, 0),
        order_day=jnp.where(valid, order_day, NO_DAY),
        order_eta=jnp.where(valid, eta, NO_DAY),
        order_tracking=jnp.where(valid, history.tracking[src], -1),
        order_address=jnp.where(valid, history.address[src], 0),
        order_payment=jnp.where(valid, history.payment[src], 0),
        line_product=lines(history.product, -1),
        line_variant=lines(history.variant, -1),
        line_qty=lines(history.qty, 0),
        line_price=lines(history.price, 0),
        order_source=jnp.where(valid, picked, -1),
        customer=user.astype(jnp.int32),
    )


def order_exists(world: World, order: jnp.ndarray) -> jnp.ndarray:
    size = world.order_valid.shape[0]
    return (order >= 0) & (order < size) & world.order_valid[safe_index(order, size)]


def order_line_exists(world: World, order: jnp.ndarray, line: jnp.ndarray) -> jnp.ndarray:
    o, num_lines = world.line_product.shape
    ok = order_exists(world, order) & (line >= 0) & (line < num_lines)
    return ok & (world.line_product[safe_index(order, o), safe_index(line, num_lines)] >= 0)


def order_list(world: World, call: ToolCall, result_size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Orders placed within the last `days` days, newest first. Returns (error, order ids [K])."""
    bad = (call.days < 1) | (call.days > MAX_LIST_DAYS)
    recent = world.order_valid & (world.order_day >= world.today - call.days)
    order_ids = jnp.where(recent, jnp.arange(recent.shape[0]), -1)
    ranked = order_ids[jnp.argsort(jnp.where(recent, -world.order_day, jnp.iinfo(jnp.int32).max), stable=True)]
    ids = jnp.full((result_size,), -1, jnp.int32).at[: ranked.shape[0]].set(ranked[:result_size])
    return jnp.where(bad, ToolError.BAD_ARGUMENT, ToolError.OK).astype(jnp.int32), jnp.where(bad, -1, ids)


def order_get_status(world: World, call: ToolCall) -> jnp.ndarray:
    """Error code of `order.get_status` (the text layer renders the order from the world)."""
    return jnp.where(order_exists(world, call.order), ToolError.OK, ToolError.UNKNOWN_ORDER).astype(jnp.int32)


def order_checkout(key: jax.Array, world: World, call: ToolCall, catalog: Catalog) -> tuple[World, jnp.ndarray, jnp.ndarray]:
    """Place an order from the cart (CONFIRMED, placed today) and empty the cart.

    Returns (world, error, new order id). Orders newest-first order is kept by the order day, not the slot.
    """
    o, num_lines = world.line_product.shape
    in_cart = world.cart_product >= 0
    slot = jnp.argmin(world.order_valid)                              # first free slot
    n_in_cart = jnp.sum(in_cart)
    error = jnp.select(
        [n_in_cart == 0, (call.address < 0) | (call.address >= NUM_ADDRESSES),
         (call.payment < 0) | (call.payment >= NUM_PAYMENTS), jnp.all(world.order_valid) | (n_in_cart > num_lines)],
        [ToolError.EMPTY_CART, ToolError.UNKNOWN_ADDRESS, ToolError.UNKNOWN_PAYMENT, ToolError.ORDERS_FULL],
        ToolError.OK,
    ).astype(jnp.int32)
    ok = error == ToolError.OK
    order_idx = jnp.argsort(~in_cart, stable=True)[:num_lines]        # cart lines first, in slot order
    take = lambda x, fill: jnp.where(jnp.arange(num_lines) < n_in_cart, x[order_idx], fill)  # noqa: E731
    prices = jax.vmap(lambda p, v: unit_price(world, catalog, p, v))(world.cart_product, world.cart_variant)
    eta = world.today + jax.random.randint(key, (), 5, 15)
    target = jnp.where(ok, slot, o)
    new = world.replace(
        order_valid=world.order_valid.at[target].set(True, mode="drop"),
        order_status=world.order_status.at[target].set(CONFIRMED, mode="drop"),
        order_day=world.order_day.at[target].set(world.today, mode="drop"),
        order_eta=world.order_eta.at[target].set(eta, mode="drop"),
        order_tracking=world.order_tracking.at[target].set(-1, mode="drop"),
        order_address=world.order_address.at[target].set(call.address, mode="drop"),
        order_payment=world.order_payment.at[target].set(call.payment, mode="drop"),
        line_product=world.line_product.at[target].set(take(world.cart_product, -1), mode="drop"),
        line_variant=world.line_variant.at[target].set(take(world.cart_variant, -1), mode="drop"),
        line_qty=world.line_qty.at[target].set(take(world.cart_qty, 0), mode="drop"),
        line_price=world.line_price.at[target].set(take(prices, 0), mode="drop"),
        order_source=world.order_source.at[target].set(-1, mode="drop"),
        cart_product=jnp.where(ok, -1, world.cart_product),
        cart_variant=jnp.where(ok, -1, world.cart_variant),
        cart_qty=jnp.where(ok, 0, world.cart_qty),
    )
    return new, error, jnp.where(ok, slot, -1)
