"""The per-episode World pytree, tool call/result pytrees, capacities and their constructors."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from ecomjax.catalog.schema import MAX_VARIANTS, ORDER_STATUSES, QUERY_TOKENS
from ecomjax.catalog.retrieval import Filters, no_filters
from ecomjax.catalog.types import Catalog

CONFIRMED, SHIPPED, IN_TRANSIT, DELIVERED, CANCELLED = range(len(ORDER_STATUSES))
RETURN_REASONS: tuple[str, ...] = (
    "defective", "wrong_item", "not_as_described", "changed_mind", "too_large", "too_small", "arrived_late",
    "better_price_found",
)
RETURN_METHODS: tuple[str, ...] = ("mail", "in_store", "pickup")
RETURN_FEES_CENTS: tuple[int, ...] = (599, 0, 0)
RETURN_KIND_RETURN, RETURN_KIND_EXCHANGE = 1, 2
NUM_ADDRESSES, NUM_PAYMENTS = 2, 2
MAX_QTY = 99
MAX_CART_CENTS = 2_000_000_000
NO_DAY = -(1 << 20)
EPISODE_VARIANTS = 3          # synthetic per-episode variants per target product (CART)


@dataclass(frozen=True)
class Capacities:
    """Static array sizes of one episode's world and of tool calls/results."""

    cart_lines: int = 16
    orders: int = 12
    order_lines: int = 5
    returns: int = 8
    seen: int = 2048                # power of two (hash set); JOURNEY oracle episodes show up to ~600 ids
    oos: int = 96
    episode_variants: int = 5       # products that get EPISODE_VARIANTS synthetic variants
    visits: int = 48
    results: int = 50               # product ids per tool result (catalog.search top_k ≤ 50)
    rerank: int = 20                # candidate ids of catalog.rerank
    policy_results: int = 20        # rules per policy.search
    calls_per_turn: int = 11        # B_tool(20)

    @property
    def variant_slots(self) -> int:
        """Variant ids of a product: catalog slots then the episode's synthetic ones."""
        return MAX_VARIANTS + EPISODE_VARIANTS


@struct.dataclass
class World:
    """Everything a tool can read or change in one episode. C cart lines, O orders, L lines, R returns."""

    today: jnp.ndarray              # [] int32 day number of this episode's "today"
    cart_product: jnp.ndarray       # [C] int32, -1 empty slot
    cart_variant: jnp.ndarray       # [C] int32 variant slot, -1 none
    cart_qty: jnp.ndarray           # [C] int32, 0 on empty slots
    cart_created: jnp.ndarray       # [] int32 lines ever created (line ids are never reused)
    order_valid: jnp.ndarray        # [O] bool
    order_status: jnp.ndarray       # [O] int32 index into ORDER_STATUSES
    order_day: jnp.ndarray          # [O] int32 day placed
    order_eta: jnp.ndarray          # [O] int32 day, NO_DAY when none
    order_tracking: jnp.ndarray     # [O] int32 9-digit number, -1 none
    order_address: jnp.ndarray      # [O] int32
    order_payment: jnp.ndarray      # [O] int32
    line_product: jnp.ndarray       # [O, L] int32, -1 empty
    line_variant: jnp.ndarray       # [O, L] int32
    line_qty: jnp.ndarray           # [O, L] int32
    line_price: jnp.ndarray         # [O, L] int32 unit price cents
    order_source: jnp.ndarray       # [O] int32 row of `catalog.history` the order was drawn from, -1 none
    customer: jnp.ndarray           # [] int32 whose orders they are (a `catalog.history` user), -1 none
    ret_order: jnp.ndarray          # [R] int32, -1 empty
    ret_line: jnp.ndarray           # [R] int32
    ret_kind: jnp.ndarray           # [R] int32 RETURN_KIND_*
    ret_reason: jnp.ndarray         # [R] int32
    ret_method: jnp.ndarray         # [R] int32
    ret_new_product: jnp.ndarray    # [R] int32 (exchanges)
    ret_new_variant: jnp.ndarray    # [R] int32
    seen: jnp.ndarray               # [S] int32 hash set of product ids shown to the agent, -1 empty
    seen_count: jnp.ndarray         # [] int32 distinct ids in `seen`
    seen_overflow: jnp.ndarray      # [] int32 ids that did not fit
    oos: jnp.ndarray                # [K] int32 products out of stock in this episode only, -1 empty
    xvar_product: jnp.ndarray       # [X] int32 products with synthetic variants, -1 empty
    xvar_key: jnp.ndarray           # [X] int32 attribute the synthetic variants differ in
    xvar_value: jnp.ndarray         # [X, EPISODE_VARIANTS] int32 value ids
    xvar_price_delta: jnp.ndarray   # [X, EPISODE_VARIANTS] int32 cents
    visits: jnp.ndarray             # [H] int32 visit history product ids, -1 empty
    tool_calls: jnp.ndarray         # [] int32 calls made so far
    tool_errors: jnp.ndarray        # [] int32 calls that returned an error


@struct.dataclass
class ToolCall:
    """One structured tool call; unused arguments keep their defaults. Invalid ids are data, not errors."""

    tool: jnp.ndarray               # [] int32 index into TOOL_NAMES, -1 = no call
    query: jnp.ndarray              # [QT] int32 token hashes (0 pads)
    filters: Filters
    top_k: jnp.ndarray              # [] int32
    product: jnp.ndarray            # [] int32 product index (anything outside [0, P) is unknown)
    variant: jnp.ndarray            # [] int32 variant slot, -1 none
    qty: jnp.ndarray                # [] int32
    order: jnp.ndarray              # [] int32 order index
    line: jnp.ndarray               # [] int32 cart line id or order line index
    ids: jnp.ndarray                # [KR] int32 rerank candidates, -1 pads
    reason: jnp.ndarray             # [] int32 index into RETURN_REASONS
    method: jnp.ndarray             # [] int32 index into RETURN_METHODS
    days: jnp.ndarray               # [] int32
    address: jnp.ndarray            # [] int32
    payment: jnp.ndarray            # [] int32
    error: jnp.ndarray              # [] int32 ToolError the text layer found in the arguments (the call does not run)


@struct.dataclass
class ToolResult:
    """What one call returned, as ids; the text layer renders it from these and the world."""

    tool: jnp.ndarray               # [] int32
    error: jnp.ndarray              # [] int32 ToolError
    ids: jnp.ndarray                # [K] int32 product / order ids listed, -1 pads
    policy: jnp.ndarray             # [KP] int32 policy rule ids, -1 pads
    ref: jnp.ndarray                # [] int32 created line / order / return slot, -1 none
    eligible: jnp.ndarray           # [] bool
    window: jnp.ndarray             # [] int32 return window days
    days_since: jnp.ndarray         # [] int32
    fee: jnp.ndarray                # [] int32 cents


def _full(shape, value, dtype=jnp.int32):
    return jnp.full(shape, value, dtype)


def empty_world(cap: Capacities, today: jnp.ndarray | int = 0) -> World:
    """A world with nothing in it: empty cart, no orders, returns, seen ids, overrides or visits."""
    c, o, ln, r = cap.cart_lines, cap.orders, cap.order_lines, cap.returns
    x = cap.episode_variants
    return World(
        today=jnp.asarray(today, jnp.int32),
        cart_product=_full((c,), -1), cart_variant=_full((c,), -1), cart_qty=_full((c,), 0),
        cart_created=jnp.int32(0),
        order_valid=_full((o,), False, bool), order_status=_full((o,), 0), order_day=_full((o,), NO_DAY),
        order_eta=_full((o,), NO_DAY), order_tracking=_full((o,), -1), order_address=_full((o,), 0),
        order_payment=_full((o,), 0),
        line_product=_full((o, ln), -1), line_variant=_full((o, ln), -1), line_qty=_full((o, ln), 0),
        line_price=_full((o, ln), 0), order_source=_full((o,), -1), customer=jnp.int32(-1),
        ret_order=_full((r,), -1), ret_line=_full((r,), -1), ret_kind=_full((r,), 0), ret_reason=_full((r,), -1),
        ret_method=_full((r,), -1), ret_new_product=_full((r,), -1), ret_new_variant=_full((r,), -1),
        seen=_full((cap.seen,), -1), seen_count=jnp.int32(0), seen_overflow=jnp.int32(0),
        oos=_full((cap.oos,), -1),
        xvar_product=_full((x,), -1), xvar_key=_full((x,), -1), xvar_value=_full((x, EPISODE_VARIANTS), -1),
        xvar_price_delta=_full((x, EPISODE_VARIANTS), 0),
        visits=_full((cap.visits,), -1), tool_calls=jnp.int32(0), tool_errors=jnp.int32(0),
    )


def no_call(cap: Capacities) -> ToolCall:
    """An empty call slot (tool = -1)."""
    return ToolCall(
        tool=jnp.int32(-1), query=jnp.zeros((QUERY_TOKENS,), jnp.int32), filters=no_filters(),
        top_k=jnp.int32(10), product=jnp.int32(-1), variant=jnp.int32(-1), qty=jnp.int32(1),
        order=jnp.int32(-1), line=jnp.int32(-1), ids=_full((cap.rerank,), -1), reason=jnp.int32(0),
        method=jnp.int32(0), days=jnp.int32(30), address=jnp.int32(0), payment=jnp.int32(0), error=jnp.int32(0),
    )


def make_call(cap: Capacities, tool: int | jnp.ndarray, **args) -> ToolCall:
    """A call of `tool` with the given arguments (others default)."""
    base = no_call(cap)
    fields = {k: (v if isinstance(v, Filters) else jnp.asarray(v, jnp.int32)) for k, v in args.items()}
    return base.replace(tool=jnp.asarray(tool, jnp.int32), **fields)


def empty_result(cap: Capacities, tool: jnp.ndarray, error: jnp.ndarray | int = 0) -> ToolResult:
    return ToolResult(
        tool=jnp.asarray(tool, jnp.int32), error=jnp.asarray(error, jnp.int32), ids=_full((cap.results,), -1),
        policy=_full((cap.policy_results,), -1), ref=jnp.int32(-1), eligible=jnp.asarray(False),
        window=jnp.int32(0), days_since=jnp.int32(0), fee=jnp.int32(0),
    )


# ------------------------------------------------------------------------------------ shared helpers

def valid_product(catalog: Catalog, p: jnp.ndarray) -> jnp.ndarray:
    """Whether p is a product index of the catalog (range checked; never a clamped gather)."""
    return (p >= 0) & (p < catalog.num_products)


def safe_index(i: jnp.ndarray, size: int) -> jnp.ndarray:
    """i clipped into [0, size) for a gather whose result is only used where i was range-checked."""
    return jnp.clip(i, 0, size - 1)


def is_oos(world: World, p: jnp.ndarray) -> jnp.ndarray:
    """Whether product p is out of stock in this episode only (an override of the catalog)."""
    return jnp.any(world.oos == p)


def product_stock(world: World, catalog: Catalog, p: jnp.ndarray) -> jnp.ndarray:
    """Units of product p available in this episode. # [] int32"""
    stock = catalog.stock[safe_index(p, catalog.num_products)]
    return jnp.where(is_oos(world, p) | ~valid_product(catalog, p), 0, stock)


def episode_variant_row(world: World, p: jnp.ndarray) -> jnp.ndarray:
    """Row of `world.xvar_*` holding p's synthetic variants, -1 if none."""
    match = world.xvar_product == p
    return jnp.where(jnp.any(match), jnp.argmax(match), -1)


def variant_exists(world: World, catalog: Catalog, p: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """Whether variant slot v belongs to product p (catalog slots, then the episode's synthetic ones)."""
    ps = safe_index(p, catalog.num_products)
    in_catalog = (v >= 0) & (v < MAX_VARIANTS) & (catalog.var_value[ps, safe_index(v, MAX_VARIANTS)] >= 0)
    row = episode_variant_row(world, p)
    xv = v - MAX_VARIANTS
    in_episode = (row >= 0) & (xv >= 0) & (xv < EPISODE_VARIANTS) & (
        world.xvar_value[safe_index(row, world.xvar_product.shape[0]), safe_index(xv, EPISODE_VARIANTS)] >= 0)
    return valid_product(catalog, p) & (in_catalog | in_episode)


def variant_stock(world: World, catalog: Catalog, p: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """Units of (p, v) available; v = -1 means the product itself. # [] int32"""
    base = product_stock(world, catalog, p)
    ps = safe_index(p, catalog.num_products)
    cat_stock = catalog.var_stock[ps, safe_index(v, MAX_VARIANTS)]
    stock = jnp.where(v < 0, base, jnp.where(v < MAX_VARIANTS, jnp.minimum(cat_stock, base), jnp.maximum(1, base)))
    return jnp.where(base > 0, stock, 0)


def unit_price(world: World, catalog: Catalog, p: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """Price in cents of (p, v), the variant's delta included. # [] int32"""
    ps = safe_index(p, catalog.num_products)
    cat_delta = catalog.var_price_delta[ps, safe_index(v, MAX_VARIANTS)]
    row = episode_variant_row(world, p)
    x_delta = world.xvar_price_delta[safe_index(row, world.xvar_product.shape[0]),
                                     safe_index(v - MAX_VARIANTS, EPISODE_VARIANTS)]
    delta = jnp.where(v < 0, 0, jnp.where(v < MAX_VARIANTS, cat_delta, jnp.where(row >= 0, x_delta, 0)))
    return jnp.maximum(1, catalog.price_cents[ps] + delta)


SEEN_PROBES = 32                # linear-probing window of the seen-id hash set. With 8, a table a third
                                # full lost an id in ~15% of episodes (a product the agent was shown then
                                # counts as guessed); with 32, none at 45% full


def _seen_slots(ids: jnp.ndarray, size: int) -> jnp.ndarray:
    """Probe positions of ids in a power-of-two hash table. [K] -> [K, SEEN_PROBES]."""
    h = (ids.astype(jnp.uint32) * jnp.uint32(2654435761)) >> jnp.uint32(32 - size.bit_length() + 1)
    return ((h[:, None] + jnp.arange(SEEN_PROBES, dtype=jnp.uint32)) % jnp.uint32(size)).astype(jnp.int32)


def add_seen(world: World, ids: jnp.ndarray) -> World:
    """Record product ids shown to the agent in the seen-id hash set (-1 ignored; ids that find no free
    slot within SEEN_PROBES are counted in seen_overflow). ids [K]."""
    size = world.seen.shape[0]

    def insert(carry, p):
        table, count, overflow = carry
        pos = _seen_slots(p[None], size)[0]                                       # [PROBES]
        here = table[pos]
        present = jnp.any(here == p)
        free = here == -1
        slot = pos[jnp.argmax(free)]
        put = (p >= 0) & ~present & jnp.any(free)
        table = table.at[jnp.where(put, slot, size)].set(p, mode="drop")
        lost = (p >= 0) & ~present & ~jnp.any(free)
        return (table, count + put.astype(jnp.int32), overflow + lost.astype(jnp.int32)), None

    (table, count, overflow), _ = jax.lax.scan(insert, (world.seen, world.seen_count, world.seen_overflow), ids)
    return world.replace(seen=table, seen_count=count, seen_overflow=overflow)


def was_seen(world: World, ids: jnp.ndarray) -> jnp.ndarray:
    """Whether each id was shown to the agent. ids [K] -> [K] bool (-1 -> False)."""
    size = world.seen.shape[0]
    return (ids >= 0) & jnp.any(world.seen[_seen_slots(ids, size)] == ids[:, None], axis=1)


def key_for_call(key: jax.Array, index: jnp.ndarray) -> jax.Array:
    return jax.random.fold_in(key, index)
