"""Catalog build, search and tool-call throughput of the world layer; writes medians to BENCHMARKS.md.

Search: `catalog.search` retrieval (lexical query encoding, filters as masks, exact top-50, rank noise,
truncation) for B queries at once. Tools: one turn of 4 cart/order/return calls for B worlds
(`run_calls_batch`). Catalog: build time and peak RSS of `synthetic(P)` in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ecomjax.catalog import synthetic  # noqa: E402
from ecomjax.catalog.lexical import hash_text  # noqa: E402
from ecomjax.catalog.retrieval import no_filters  # noqa: E402
from ecomjax.catalog.schema import QUERY_TOKENS  # noqa: E402
from ecomjax.world import TOOL_INDEX, Capacities, WorldParams, empty_world, make_call, run_calls_batch  # noqa: E402
from ecomjax.world.catalog_tools import search_batch  # noqa: E402
from ecomjax.world.orders import generate_orders  # noqa: E402
from ecomjax.world.policy_kb import kb_arrays  # noqa: E402
from experiments.benchlib import header, time_call, write_device_section  # noqa: E402

SECTION = "## World: catalog build, search, tool calls"
BATCHES = (1, 256, 4096)
RESULT_K = 50
# Assumed f32 peak of this 2-core AMD EPYC (AVX-512 on 256-bit FMA pipes): 2 cores x 32 FLOP/cycle x 3.0 GHz.
ASSUMED_PEAK_FLOPS = 2 * 32 * 3.0e9
# On an H100/H200 SXM: dense TF32 tensor-core peak (f32 matmuls run as TF32 by default; lexical vectors are
# small integers, exact in TF32).
GPU_PEAK_FLOPS = 494.7e12


def peak_flops() -> tuple[float, str]:
    if jax.devices()[0].platform == "gpu":
        return GPU_PEAK_FLOPS, "494.7 TFLOP/s dense TF32 (H100/H200 SXM)"
    return ASSUMED_PEAK_FLOPS, "192 GFLOP/s (assumed: 2 cores x 32 f32 FLOP/cycle x 3.0 GHz)"
CALLS_PER_TURN = 4


def build_stats(num_products: int) -> dict:
    """Build `synthetic(num_products)` in a fresh process; wall time and peak RSS."""
    code = (
        "import time, resource, jax; from ecomjax.catalog import synthetic; t = time.perf_counter(); "
        f"c, v = synthetic({num_products}); jax.block_until_ready(c.emb); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"products": num_products, "seconds": float(out[0]), "peak_rss_gib": int(out[1]) / 2**20}


def search_stats(catalog, vocab, batch: int, runs: int) -> dict:
    rng = np.random.default_rng(0)
    picks = rng.integers(0, catalog.num_products, batch)
    query = jnp.asarray(np.stack([hash_text(vocab.title(int(i)), QUERY_TOKENS) for i in picks]))
    f = no_filters((batch,))
    f = f.replace(hi=f.hi.at[::2, 0].set(jnp.asarray(catalog.price_cents[picks[::2]]) / 100.0))  # half filtered
    keys = jax.random.split(jax.random.key(0), batch)
    top_k, depth, eps = jnp.full(batch, 20), jnp.full(batch, 200), jnp.full(batch, 0.1)
    fn = jax.jit(search_batch, static_argnames="result_size")
    timing = time_call(lambda: fn(keys, catalog, query, f, top_k, depth, eps, result_size=RESULT_K), runs)
    flops = 2.0 * batch * catalog.num_products * catalog.emb_dim
    return {"batch": batch, "seconds": timing.median_s, "qps": batch / timing.median_s,
            "peak_fraction": flops / timing.median_s / peak_flops()[0], "compile_s": timing.compile_s}


def tool_stats(catalog, batch: int, runs: int) -> dict:
    cap = Capacities()
    params = WorldParams(catalog=catalog, policy_tokens=jnp.asarray(kb_arrays()["tokens"]), cap=cap)
    in_stock = np.nonzero(np.asarray(catalog.stock) > 10)[0]
    world = generate_orders(jax.random.key(0), empty_world(cap, 20_000), catalog, jnp.int32(6))
    worlds = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch,) + x.shape), world)
    products = jnp.asarray(in_stock[np.arange(batch) % len(in_stock)])
    t = TOOL_INDEX

    def turn(i):
        return [make_call(cap, t["cart.add"], product=products[i], qty=2),
                make_call(cap, t["cart.set_quantity"], line=0, qty=1),
                make_call(cap, t["order.list"], days=60),
                make_call(cap, t["return.check_eligibility"], order=i % 6, line=0)]

    one = jax.tree.map(lambda *x: jnp.stack(x), *turn(0))
    calls = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch,) + x.shape), one)
    calls = calls.replace(product=calls.product.at[:, 0].set(products),
                          order=calls.order.at[:, 3].set(jnp.arange(batch) % 6))
    keys = jax.random.split(jax.random.key(1), batch)
    fn = jax.jit(run_calls_batch)
    full = jnp.full(batch, CALLS_PER_TURN)
    timing = time_call(lambda: fn(keys, worlds, calls, params, full, jnp.full(batch, 200), jnp.zeros(batch)), runs)
    return {"batch": batch, "seconds": timing.median_s, "calls_per_s": batch * CALLS_PER_TURN / timing.median_s,
            "compile_s": timing.compile_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,1000000", help="catalog sizes for search and tools")
    parser.add_argument("--build-sizes", default="10000,1000000,2000000", help="catalog sizes to build")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    builds = [build_stats(int(s)) for s in args.build_sizes.split(",") if s]
    search_rows, tool_rows = [], []
    for size in sizes:
        catalog, vocab = synthetic(size)
        for batch in BATCHES:
            search_rows.append({"products": size, **search_stats(catalog, vocab, batch, args.runs)})
            tool_rows.append({"products": size, **tool_stats(catalog, batch, args.runs)})
            print(json.dumps(search_rows[-1]), json.dumps(tool_rows[-1]), flush=True)
    body = header(f"median of {args.runs} runs after a compile run; lexical emb dim 64; search returns top-50 "
                  f"(agent top_k 20) with half the queries price-filtered and eps_rank 0.1; FLOP fraction = "
                  f"2·B·P·D / time / peak, peak = {peak_flops()[1]}; tools: {CALLS_PER_TURN} calls per world per turn "
                  f"(cart.add, cart.set_quantity, order.list, return.check_eligibility).")
    if builds:
        body += "\n| catalog | build s | peak RSS GiB |\n|---|---|---|\n"
        body += "".join(f"| {b['products']:,} | {b['seconds']:.1f} | {b['peak_rss_gib']:.2f} |\n" for b in builds)
    body += "\n| catalog | batch | search ms | queries/s | FLOP fraction | compile s |\n|---|---|---|---|---|---|\n"
    body += "".join(f"| {r['products']:,} | {r['batch']} | {r['seconds'] * 1e3:.2f} | {r['qps']:,.0f} | "
                    f"{r['peak_fraction']:.1%} | {r['compile_s']:.2f} |\n" for r in search_rows)
    body += "\n| catalog | batch | turn ms | tool calls/s | compile s |\n|---|---|---|---|---|\n"
    body += "".join(f"| {r['products']:,} | {r['batch']} | {r['seconds'] * 1e3:.2f} | {r['calls_per_s']:,.0f} | "
                    f"{r['compile_s']:.2f} |\n" for r in tool_rows)
    print(body)
    if not args.no_write:
        write_device_section(SECTION, body)


if __name__ == "__main__":
    main()
