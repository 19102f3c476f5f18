"""`python -m ecomjax.demo`: build the synthetic catalog, run batched searches and tool calls, report speed.

The embedded default job until training lands: everything runs offline on CPU in under a minute.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table

from ecomjax.catalog import synthetic
from ecomjax.catalog.lexical import hash_text
from ecomjax.catalog.retrieval import filters_from_dict, no_filters
from ecomjax.catalog.schema import QUERY_TOKENS
from ecomjax.catalog.synthetic import DEFAULT_NUM_PRODUCTS, MAX_PRODUCTS, MIN_PRODUCTS
from ecomjax.world import (
    TOOL_INDEX, TOOL_NAMES, Capacities, ToolError, WorldParams, empty_world, make_call, run_calls_batch,
)
from ecomjax.world.orders import generate_orders
from ecomjax.world.policy_kb import kb_arrays

MAX_ENVS = 1 << 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ecomjax.demo", description=__doc__)
    parser.add_argument("--num-products", type=int, default=DEFAULT_NUM_PRODUCTS)
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not MIN_PRODUCTS <= args.num_products <= MAX_PRODUCTS:
        parser.error(f"--num-products must be in [{MIN_PRODUCTS}, {MAX_PRODUCTS}], got {args.num_products}")
    if not 1 <= args.num_envs <= MAX_ENVS:
        parser.error(f"--num-envs must be in [1, {MAX_ENVS}], got {args.num_envs}")
    return args


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, first, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console()
    start = time.perf_counter()
    catalog, vocab = synthetic(args.num_products, args.seed)
    console.print(f"built synthetic catalog: {catalog.num_products:,} products, "
                  f"{int((np.asarray(catalog.category_level) == 2).sum())} leaf categories in "
                  f"{time.perf_counter() - start:.2f} s")
    b, cap = args.num_envs, Capacities()
    params = WorldParams(catalog=catalog, policy_tokens=jnp.asarray(kb_arrays()["tokens"]), cap=cap)
    rng = np.random.default_rng(args.seed)
    targets = rng.integers(0, catalog.num_products, b)
    world = generate_orders(jax.random.key(args.seed), empty_world(cap, 20_000), catalog, jnp.int32(4))
    worlds = jax.tree.map(lambda x: jnp.broadcast_to(x, (b,) + x.shape), world)
    price_cap = filters_from_dict({"price_max": 100.0}, vocab)
    filters = jax.tree.map(lambda f, n: jnp.where((jnp.arange(b) % 2 == 0)[:, None], f[None], n),
                           price_cap, no_filters((b,)))
    query = jnp.asarray(np.stack([hash_text(vocab.title(int(t)), QUERY_TOKENS) for t in targets]))
    t = TOOL_INDEX
    turns = [
        [make_call(cap, t["catalog.search"], top_k=5), make_call(cap, t["policy.search"], top_k=3)],
        [make_call(cap, t["cart.add"], qty=2), make_call(cap, t["order.list"], days=60),
         make_call(cap, t["return.check_eligibility"], order=0, line=0)],
    ]
    step = jax.jit(run_calls_batch)
    keys = jax.random.split(jax.random.key(args.seed), b)
    rows = []
    results = None
    for i, turn in enumerate(turns):
        one = jax.tree.map(lambda *x: jnp.stack(x), *turn)
        calls = jax.tree.map(lambda x: jnp.broadcast_to(x, (b,) + x.shape), one)
        if i == 0:
            calls = calls.replace(query=calls.query.at[:, 0].set(query),
                                  filters=jax.tree.map(lambda c, f: c.at[:, 0].set(f), calls.filters, filters))
            policy_q = jnp.asarray(hash_text("return window electronics", QUERY_TOKENS))
            calls = calls.replace(query=calls.query.at[:, 1].set(policy_q))
        else:
            found = results.ids[:, 0, 0]                                       # first search hit per env
            calls = calls.replace(product=calls.product.at[:, 0].set(found))
        (worlds, results), first, warm = _timed(step, keys, worlds, calls, params, jnp.full(b, len(turn)),
                                                 jnp.full(b, 200), jnp.full(b, 0.1))
        errors = np.asarray(results.error)
        for j, call in enumerate(turn):
            codes = errors[:, j]
            rows.append((TOOL_NAMES[int(call.tool)], b, f"{(codes == 0).mean():.1%}",
                         ", ".join(sorted({ToolError(int(c)).name for c in codes if c})) or "-",
                         f"{b * len(turn) / warm:,.0f}", f"{first - warm:.2f}"))
        if i == 0:
            hits = np.asarray(results.ids[:, 0, 0]) == targets
            odd = np.arange(b) % 2 == 1
            console.print(f"search: the named product ranks first for {hits[odd].mean():.1%} of unfiltered "
                          f"queries; example: {vocab.title(int(targets[1]))!r} -> "
                          f"{[vocab.title(int(p)) for p in np.asarray(results.ids[1, 0, :3])]}")
    table = Table(title=f"{b} environments, one batched turn per row group")
    for col in ("tool", "envs", "ok", "errors", "calls/s (warm)", "compile s"):
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(x) for x in row])
    console.print(table)
    units = np.asarray(jnp.sum(worlds.cart_qty, axis=1))
    console.print(f"carts: {int((units > 0).sum())} of {b} hold items ({int(units.sum())} units); "
                  f"seen ids per env: {float(np.asarray(worlds.seen_count).mean()):.1f}")


if __name__ == "__main__":
    main()
