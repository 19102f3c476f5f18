"""The 17 tools of SPEC §4: registry, one `lax.switch` dispatch, per-turn budget, batched execution."""

import jax
import jax.numpy as jnp
from flax import struct

from ecomjax.catalog.types import Catalog
from ecomjax.world import cart, catalog_tools, orders, returns
from ecomjax.world.compact import map_selected
from ecomjax.world.errors import ToolError
from ecomjax.world.policy_kb import policy_search_scores
from ecomjax.world.state import Capacities, ToolCall, ToolResult, World, add_seen, empty_result

TOOL_NAMES: tuple[str, ...] = (
    "catalog.search", "catalog.rerank", "catalog.get_product", "catalog.get_variants",
    "cart.view", "cart.add", "cart.remove", "cart.set_quantity",
    "order.list", "order.get_status", "order.checkout",
    "return.check_eligibility", "return.initiate", "return.exchange",
    "policy.search", "datetime.now", "user.get_visit_history",
)
TOOL_INDEX: dict[str, int] = {name: i for i, name in enumerate(TOOL_NAMES)}
# Arguments of every tool as the text protocol names them: (name, type, default or None if required).
TOOL_ARGS: dict[str, tuple[tuple[str, str, object], ...]] = {
    "catalog.search": (("query", "str", None), ("filters", "dict", {}), ("top_k", "int", 20)),
    "catalog.rerank": (("query", "str", None), ("candidate_product_ids", "list[str]", None), ("top_k", "int", 10)),
    "catalog.get_product": (("product_id", "str", None),),
    "catalog.get_variants": (("product_id", "str", None),),
    "cart.view": (),
    "cart.add": (("product_id", "str", None), ("variant_id", "str|null", None), ("quantity", "int", 1)),
    "cart.remove": (("line_id", "str", None),),
    "cart.set_quantity": (("line_id", "str", None), ("quantity", "int", None)),
    "order.list": (("days", "int", 30),),
    "order.get_status": (("order_id", "str", None),),
    "order.checkout": (("shipping_address_id", "str", None), ("payment_method_id", "str", None)),
    "return.check_eligibility": (("order_id", "str", None), ("line_id", "str", None)),
    "return.initiate": (("order_id", "str", None), ("line_id", "str", None), ("reason_code", "str", None),
                        ("method", "str", None)),
    "return.exchange": (("order_id", "str", None), ("line_id", "str", None), ("new_product_id", "str", None),
                        ("new_variant_id", "str|null", None)),
    "policy.search": (("query", "str", None), ("top_k", "int", 5)),
    "datetime.now": (),
    "user.get_visit_history": (),
}
MAX_POLICY_TOP_K = 20
SEARCH_SALT = 0x5EA5
SHOWS_PRODUCTS = frozenset(TOOL_INDEX[n] for n in (
    "catalog.search", "catalog.get_product", "catalog.get_variants", "user.get_visit_history"))


@struct.dataclass
class WorldParams:
    """Read-only inputs of every tool: the catalog, the policy KB tokens and the static capacities."""

    catalog: Catalog
    policy_tokens: jnp.ndarray                      # [NR, TK] int32
    cap: Capacities = struct.field(pytree_node=False, default=Capacities())


Branch = tuple[World, ToolResult]


@struct.dataclass
class Retrieval:
    """Per-call results of the retrieval tools, computed for a whole batch before dispatch."""

    search: jnp.ndarray             # [..., K] product ids of catalog.search
    policy: jnp.ndarray             # [..., KP] rule ids of policy.search


def _branches(key: jax.Array, call: ToolCall, params: WorldParams, retrieved: Retrieval):
    """One function per tool: world -> (world, result). Order matches TOOL_NAMES."""
    catalog, cap = params.catalog, params.cap
    base = empty_result(cap, call.tool)

    def with_ids(world, error, ids):
        return world, base.replace(error=error, ids=ids)

    def search(world):
        error = catalog_tools.search_error(call)
        return with_ids(world, error, jnp.where(error == ToolError.OK, retrieved.search, -1))

    def rerank(world):
        return with_ids(world, *catalog_tools.rerank(call, catalog, cap.results))

    def product(world):
        return with_ids(world, *catalog_tools.single_product(call, catalog, cap.results))

    def cart_view(world):
        return world, base

    def cart_op(fn):
        def run(world):
            new, error, ref = fn(world, call, catalog)
            return new, base.replace(error=error, ref=ref)
        return run

    def order_list(world):
        return with_ids(world, *orders.order_list(world, call, cap.results))

    def order_status(world):
        return world, base.replace(error=orders.order_get_status(world, call), ref=call.order)

    def checkout(world):
        new, error, ref = orders.order_checkout(key, world, call, catalog)
        return new, base.replace(error=error, ref=ref)

    def check(world):
        error, eligible, window, days = returns.check_eligibility(world, call, catalog)
        return world, base.replace(error=error, eligible=eligible, window=window, days_since=days)

    def return_op(fn):
        def run(world):
            new, error, ref, fee = fn(world, call, catalog)
            return new, base.replace(error=error, ref=ref, fee=fee)
        return run

    def policy(world):
        error = jnp.select([jnp.all(call.query == 0), (call.top_k < 1) | (call.top_k > MAX_POLICY_TOP_K)],
                           [ToolError.EMPTY_QUERY, ToolError.BAD_ARGUMENT], ToolError.OK).astype(jnp.int32)
        return world, base.replace(error=error, policy=jnp.where(error == ToolError.OK, retrieved.policy, -1))

    def now(world):
        return world, base

    def visits(world):
        return with_ids(world, jnp.int32(ToolError.OK), catalog_tools.visit_history(world, cap.results))

    return (
        search, rerank, product, product,
        cart_view, cart_op(cart.cart_add), cart_op(cart.cart_remove), cart_op(cart.cart_set_quantity),
        order_list, order_status, checkout,
        check, return_op(returns.return_initiate), return_op(returns.return_exchange),
        policy, now, visits,
    )


def apply_call(key: jax.Array, world: World, call: ToolCall, params: WorldParams,
               retrieved: Retrieval, allowed: jnp.ndarray | bool = True) -> Branch:
    """Run one tool call. A call outside the budget (`allowed` False), naming no known tool or carrying an
    argument error found by the text layer (`call.error`) changes nothing and returns an error; tool = -1
    is an empty slot. `retrieved`: this call's retrieval."""
    known = (call.tool >= 0) & (call.tool < len(TOOL_NAMES))
    branches = _branches(key, call, params, retrieved)
    new, result = jax.lax.switch(jnp.clip(call.tool, 0, len(TOOL_NAMES) - 1), branches, world)
    shows = jnp.isin(call.tool, jnp.asarray(sorted(SHOWS_PRODUCTS))) & (result.error == ToolError.OK)
    new = jax.tree.map(lambda a, b: jnp.where(shows, a, b), add_seen(new, result.ids), new)
    empty = call.tool == -1
    refused = jnp.select([~known, ~jnp.asarray(allowed)], [ToolError.UNKNOWN_TOOL, ToolError.BUDGET_EXCEEDED],
                         call.error).astype(jnp.int32)
    run = known & jnp.asarray(allowed) & (call.error == ToolError.OK)
    new = jax.tree.map(lambda a, b: jnp.where(run, a, b), new, world)
    result = jax.tree.map(lambda a, b: jnp.where(run, a, b), result,
                          empty_result(params.cap, call.tool, jnp.where(empty, ToolError.OK, refused)))
    counted = ~empty
    new = new.replace(tool_calls=world.tool_calls + counted.astype(jnp.int32),
                      tool_errors=world.tool_errors + (counted & (result.error != ToolError.OK)).astype(jnp.int32))
    return new, result


def run_calls(key: jax.Array, world: World, calls: ToolCall, params: WorldParams, budget: jnp.ndarray,
              retrieved: Retrieval) -> tuple[World, ToolResult]:
    """Run one turn's calls in order; calls beyond `budget` get BUDGET_EXCEEDED.

    calls [NC] (stacked ToolCall), retrieved [NC] -> (world, results [NC]).
    """
    def body(w, xs):
        i, call, got = xs
        return apply_call(jax.random.fold_in(key, i), w, call, params, got, i < budget)

    n = calls.tool.shape[0]
    return jax.lax.scan(body, world, (jnp.arange(n), calls, retrieved))


def retrieve(keys: jax.Array, calls: ToolCall, params: WorldParams, depth: jnp.ndarray,
             eps: jnp.ndarray, skip_absent: bool = True) -> Retrieval:
    """Retrieval for every search / policy.search call of a batch at once.

    keys [B] per-world turn keys; calls [B, NC]; depth/eps [B] (retrieval depth top_k(d), eps_rank(d))
    -> Retrieval [B, NC]. Call i of world b draws its rank noise from keys[b] and i only.
    skip_absent: retrieve only for the calls that need it (compacted, `b` calls at a time, nothing when no call
    of the batch does). Callers that may run under `vmap` pass False (everything computed, then masked):
    the compaction is a data-dependent loop, and on jax 0.10.2 (CPU) jit(vmap(cond)) around `lax.top_k`
    returns wrong ids (tests/test_world_tools.py pins the vmapped path).
    """
    b, nc = calls.tool.shape
    k, kp = params.cap.results, params.cap.policy_results
    flat = jax.tree.map(lambda x: x.reshape((b * nc,) + x.shape[2:]), calls)
    is_search = flat.tool == TOOL_INDEX["catalog.search"]
    is_policy = flat.tool == TOOL_INDEX["policy.search"]

    call_keys = jax.vmap(lambda kk: jax.vmap(lambda i: _search_key(kk, i))(jnp.arange(nc)))(keys)
    call_keys = call_keys.reshape(b * nc)
    depth_flat, eps_flat = jnp.repeat(depth, nc), jnp.repeat(eps, nc)

    def search_rows(rows: jnp.ndarray) -> jnp.ndarray:                              # rows [S] -> ids [S, k]
        f = jax.tree.map(lambda x: x[rows], flat.filters)
        return catalog_tools.search_batch(call_keys[rows], params.catalog, flat.query[rows], f, flat.top_k[rows],
                                          depth_flat[rows], eps_flat[rows], k)

    def policy_rows(rows: jnp.ndarray) -> jnp.ndarray:                              # rows [S] -> ids [S, kp]
        scores = jax.vmap(policy_search_scores, in_axes=(None, 0))(params.policy_tokens, flat.query[rows])
        width = min(MAX_POLICY_TOP_K, kp, scores.shape[1])                            # scores [S, NR]
        top, idx = jax.lax.top_k(scores, width)
        keep = (top > 0) & (jnp.arange(width)[None, :] < flat.top_k[rows][:, None])
        return jnp.full((rows.shape[0], kp), -1, jnp.int32).at[:, :width].set(jnp.where(keep, idx, -1))

    if skip_absent:
        search_ids = map_selected(is_search, search_rows, jnp.full((b * nc, k), -1, jnp.int32), chunk=b)
        policy_ids = map_selected(is_policy, policy_rows, jnp.full((b * nc, kp), -1, jnp.int32), chunk=b)
    else:
        every = jnp.arange(b * nc)
        search_ids = jnp.where(is_search[:, None], search_rows(every), -1)
        policy_ids = jnp.where(is_policy[:, None], policy_rows(every), -1)
    return Retrieval(search=search_ids.reshape(b, nc, k), policy=policy_ids.reshape(b, nc, kp))


def _search_key(key: jax.Array, i: jnp.ndarray) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(key, i), SEARCH_SALT)


def run_calls_batch(keys: jax.Array, worlds: World, calls: ToolCall, params: WorldParams, budget: jnp.ndarray,
                    depth: jnp.ndarray, eps: jnp.ndarray, skip_absent: bool = True) -> tuple[World, ToolResult]:
    """A batch of worlds each running one turn's calls. keys/worlds [B], calls [B, NC], budget/depth/eps [B].

    World b's outcome depends only on keys[b] and its own inputs, never on its position in the batch.
    skip_absent: retrieval and each call slot run only for the worlds whose slot holds a call (see
    `retrieve`); False computes every slot of every world (vmappable). Not meant to be vmapped itself;
    `run_turn` is the vmappable single-world form.
    """
    retrieved = retrieve(keys, calls, params, depth, eps, skip_absent)
    if not skip_absent:
        return jax.vmap(run_calls, in_axes=(0, 0, 0, None, 0, 0))(keys, worlds, calls, params, budget, retrieved)
    b, nc = calls.tool.shape
    empty = jax.vmap(lambda _: jax.vmap(lambda _: empty_result(params.cap, -1))(jnp.arange(nc)))(keys)

    def slot(i, carry):
        worlds, results = carry
        call_i = jax.tree.map(lambda x: x[:, i], calls)
        got_i = jax.tree.map(lambda x: x[:, i], retrieved)

        def rows_fn(rows):
            pick = lambda tree: jax.tree.map(lambda x: x[rows], tree)  # noqa: E731
            return jax.vmap(lambda k, w, c, g, bud: apply_call(jax.random.fold_in(k, i), w, c, params, g, i < bud))(
                keys[rows], pick(worlds), pick(call_i), pick(got_i), budget[rows])

        result_i = jax.tree.map(lambda x: x[:, i], results)
        worlds, result_i = map_selected(call_i.tool != -1, rows_fn, (worlds, result_i), chunk=max(1, b // 8))
        return worlds, jax.tree.map(lambda all_, r: all_.at[:, i].set(r), results, result_i)

    return jax.lax.fori_loop(0, nc, slot, (worlds, empty))


def run_turn(key: jax.Array, world: World, calls: ToolCall, params: WorldParams, budget: jnp.ndarray,
             depth: jnp.ndarray, eps: jnp.ndarray) -> tuple[World, ToolResult]:
    """One world running one turn's calls [NC]; equals row b of `run_calls_batch` for the same inputs."""
    batched = jax.tree.map(lambda x: x[None], (key, world, calls, budget, depth, eps))
    key_b, world_b, calls_b, budget_b, depth_b, eps_b = batched
    out = run_calls_batch(key_b, world_b, calls_b, params, budget_b, depth_b, eps_b, skip_absent=False)
    return jax.tree.map(lambda x: x[0], out)
