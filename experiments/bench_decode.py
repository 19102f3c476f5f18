"""Decode throughput of the Qwen3 KV-cache sampler.

Default: a tiny Qwen3 on the host at batch 1, 64 and 256; writes the "## Decode (Qwen3 sampler)"
section of BENCHMARKS.md. `--gpu-roofline`: a random Qwen3-0.6B-shaped model in bf16 at batch 256,
prompt 1024, 256 new tokens, compared with the memory-bandwidth roofline (weights + KV cache read
per decode step / measured device copy bandwidth); `--small` shrinks that to a CPU smoke check.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from ecomjax.models.qwen3 import Qwen3, Qwen3Config, tiny_config  # noqa: E402
from experiments.benchlib import BENCHMARKS_FILE, header, time_call, write_section  # noqa: E402
from ecomjax.models.qwen3.sampler import GREEDY, generate  # noqa: E402

DECODE_SECTION = "## Decode (Qwen3 sampler)"
ROOFLINE_SECTION = "## Decode roofline (Qwen3-0.6B shape)"
CPU_BATCHES = (1, 64, 256)
CPU_PROMPT, CPU_NEW = 32, 32
CPU_CONFIG = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2)
QWEN3_06B = Qwen3Config(
    vocab_size=151936,
    hidden_size=1024,
    intermediate_size=3072,
    num_layers=28,
    num_heads=16,
    num_kv_heads=8,
    head_dim=128,
    tie_word_embeddings=True,
)
ROOFLINE_BATCH, ROOFLINE_PROMPT, ROOFLINE_NEW, ROOFLINE_CHUNK = 256, 1024, 256, 256
SMALL_OVERRIDES = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16)
SMALL_BATCH, SMALL_PROMPT, SMALL_NEW, SMALL_CHUNK = 4, 32, 16, 16
COPY_BYTES = 1 << 30


def random_prompts(vocab: int, batch: int, length: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """Unpadded random prompts [B, P] and an all-ones mask."""
    tokens = np.random.default_rng(seed).integers(0, vocab, (batch, length), dtype=np.int32)
    return jnp.asarray(tokens), jnp.ones((batch, length), jnp.int32)


def decode_timings(model: Qwen3, batch: int, prompt: int, new: int, runs: int, chunk: int | None) -> dict:
    """Prefill-only and full-generation timings; decode rate excludes prefill and compile."""
    tokens, mask = random_prompts(model.config.vocab_size, batch, prompt)

    def run(n: int) -> Callable[[], object]:
        key = jax.random.key(0)
        return lambda: generate(
            model, tokens, mask, key, max_new_tokens=n, params=GREEDY, prefill_chunk=chunk
        ).tokens

    prefill = time_call(run(1), runs)
    full = time_call(run(new), runs)
    decode_s = max(full.median_s - prefill.median_s, 1e-9)
    return dict(
        batch=batch,
        prefill_s=prefill.median_s,
        total_s=full.median_s,
        decode_tok_s=batch * (new - 1) / decode_s,
        total_tok_s=batch * new / full.median_s,
        compile_s=full.compile_s,
    )


def copy_bandwidth(runs: int, nbytes: int) -> float:
    """Device memory bandwidth in bytes/s from an elementwise pass over a large array (read + write)."""
    x = jnp.zeros((nbytes // 4,), jnp.float32)
    bump = jax.jit(lambda a: a + 1.0)
    timing = time_call(lambda: bump(x), runs)
    return 2 * x.nbytes / timing.median_s


def param_bytes(model: Qwen3) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def kv_bytes_per_step(cfg: Qwen3Config, batch: int, slots: int, itemsize: int) -> int:
    """Keys + values of every layer read by one decode step over `slots` cache slots."""
    return 2 * cfg.num_layers * batch * slots * cfg.num_kv_heads * cfg.head_dim * itemsize


def cpu_benchmark(runs: int) -> str:
    cfg = tiny_config(**CPU_CONFIG)
    model = Qwen3.from_config(cfg, rngs=nnx.Rngs(0))
    rows = ["| batch | prefill ms | generate ms | decode tok/s | end-to-end tok/s | compile s |", "|---|---|---|---|---|---|"]
    for batch in CPU_BATCHES:
        r = decode_timings(model, batch, CPU_PROMPT, CPU_NEW, runs, None)
        rows.append(
            f"| {batch} | {1e3 * r['prefill_s']:.1f} | {1e3 * r['total_s']:.1f} | {r['decode_tok_s']:,.0f} "
            f"| {r['total_tok_s']:,.0f} | {r['compile_s']:.2f} |"
        )
        print(rows[-1], flush=True)
    notes = (
        f"model: tiny Qwen3 f32 {CPU_CONFIG}, head_dim {cfg.head_dim}; greedy, prompt {CPU_PROMPT}, "
        f"{CPU_NEW} new tokens, no stop tokens; median of {runs} runs after a compile run. "
        f"decode tok/s = batch x {CPU_NEW - 1} / (generate - prefill-only) time; compile s = first call - median."
    )
    return header(notes) + "\n" + "\n".join(rows) + "\n"


def roofline_benchmark(runs: int, small: bool) -> str:
    cfg = dataclasses.replace(QWEN3_06B, **SMALL_OVERRIDES) if small else QWEN3_06B
    batch, prompt, new, chunk = (
        (SMALL_BATCH, SMALL_PROMPT, SMALL_NEW, SMALL_CHUNK)
        if small
        else (ROOFLINE_BATCH, ROOFLINE_PROMPT, ROOFLINE_NEW, ROOFLINE_CHUNK)
    )
    model = Qwen3.from_config(cfg, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    r = decode_timings(model, batch, prompt, new, runs, chunk)
    bandwidth = copy_bandwidth(runs, COPY_BYTES // 16 if small else COPY_BYTES)
    itemsize = jnp.dtype(jnp.bfloat16).itemsize
    weights = param_bytes(model)
    kv_full = kv_bytes_per_step(cfg, batch, prompt + new, itemsize)
    kv_filled = kv_bytes_per_step(cfg, batch, prompt + new // 2, itemsize)
    roof_full = batch * bandwidth / (weights + kv_full)
    roof_filled = batch * bandwidth / (weights + kv_filled)
    rows = [
        "| quantity | value |",
        "|---|---|",
        f"| measured copy bandwidth | {bandwidth / 1e9:,.1f} GB/s |",
        f"| weight bytes / step | {weights / 1e6:,.3f} MB |",
        f"| KV bytes / step (whole preallocated cache, as implemented) | {kv_full / 1e6:,.3f} MB |",
        f"| KV bytes / step (filled slots only, mean over decode) | {kv_filled / 1e6:,.3f} MB |",
        f"| prefill (prompt {prompt}, chunk {chunk}) | {r['prefill_s']:.3f} s |",
        f"| decode tok/s (measured) | {r['decode_tok_s']:,.0f} |",
        f"| roofline tok/s (whole cache) | {roof_full:,.0f} ({100 * r['decode_tok_s'] / roof_full:.0f}% reached) |",
        f"| roofline tok/s (filled slots) | {roof_filled:,.0f} ({100 * r['decode_tok_s'] / roof_filled:.0f}% reached) |",
        f"| end-to-end tok/s | {r['total_tok_s']:,.0f} |",
        f"| compile s | {r['compile_s']:.1f} |",
    ]
    print("\n".join(rows), flush=True)
    shape = "small smoke shape " + str(SMALL_OVERRIDES) if small else "Qwen3-0.6B shape (random weights, tied)"
    notes = f"model: {shape}, bf16; greedy, batch {batch}, prompt {prompt}, {new} new tokens; median of {runs} runs."
    return header(notes) + "\n" + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu-roofline", action="store_true", help="Qwen3-0.6B-shaped bf16 roofline run")
    parser.add_argument("--small", action="store_true", help="shrink --gpu-roofline to a CPU smoke check (not written)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--no-write", action="store_true", help=f"print only, leave {BENCHMARKS_FILE.name} alone")
    args = parser.parse_args()
    if args.gpu_roofline:
        body = roofline_benchmark(args.runs, args.small)
        if not (args.small or args.no_write):
            write_section(ROOFLINE_SECTION, body)
    else:
        body = cpu_benchmark(args.runs)
        if not args.no_write:
            write_section(DECODE_SECTION, body)


if __name__ == "__main__":
    main()
