"""Env throughput: env-steps/s and episodes/s of batched ShopEnv with the oracle and a random policy.

C8 task mix on a synthetic catalog, auto-reset, num_envs 1 / 256 / 4096; a step = policy + batched
`AutoReset.step_batch` (tools, customer, verification, new episodes for the finished envs) for every env.
Also the compile time of reset and step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ecomjax import oracle  # noqa: E402
from ecomjax.catalog import synthetic  # noqa: E402
from ecomjax.env import AutoReset, make  # noqa: E402
from ecomjax.testing.random_policy import random_action  # noqa: E402
from experiments.benchlib import header, time_call, write_device_section  # noqa: E402

SECTION = "## Env: steps and episodes per second (C8)"
POLICIES = {"oracle": oracle.act, "random": random_action}


def runner(env: AutoReset, params, policy, steps: int, d: int):
    """jit: (keys [B]) -> (terminated count, reward sum) over `steps` batched steps."""
    def run(keys):
        states, _ = jax.vmap(lambda k: env.reset(k, params, d))(keys)

        def body(carry, k):
            states, done, total = carry
            split = jax.vmap(jax.random.split)(jax.random.split(k, keys.shape[0]))
            actions = jax.vmap(lambda kk, s: policy(kk, s, params))(split[:, 0], states)
            states, ts = env.step_batch(split[:, 1], states, actions, params)
            return (states, done + jnp.sum(ts.terminated), total + jnp.sum(ts.reward)), None

        (_, done, total), _ = jax.lax.scan(body, (states, jnp.int32(0), jnp.float32(0)), jax.random.split(keys[0], steps))
        return done, total

    return jax.jit(run)


def measure(catalog, batch: int, policy_name: str, steps: int, d: int, runs: int) -> dict:
    base, params = make("C8", catalog=catalog)
    env = AutoReset(base)
    keys = jax.random.split(jax.random.key(0), batch)
    start = time.perf_counter()
    jax.block_until_ready(jax.jit(jax.vmap(lambda k: base.reset(k, params, d)))(keys))
    reset_compile = time.perf_counter() - start
    fn = runner(env, params, POLICIES[policy_name], steps, d)
    timing = time_call(lambda: fn(keys), runs)
    done, _ = fn(keys)
    return {"batch": batch, "policy": policy_name, "steps_per_s": batch * steps / timing.median_s,
            "episodes_per_s": int(done) / timing.median_s, "seconds": timing.median_s,
            "compile_s": timing.compile_s, "reset_compile_s": reset_compile}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--batches", default="1,256,4096")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--difficulty", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    catalog, _ = synthetic(args.products)
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        for name in POLICIES:
            rows.append(measure(catalog, batch, name, args.steps, args.difficulty, args.runs))
            print(json.dumps(rows[-1]), flush=True)
    body = header(f"C8 mix, {args.products:,}-product synthetic catalog, difficulty {args.difficulty}, auto-reset, "
                  f"{args.steps} batched steps per run, median of {args.runs} runs after a compile run; a step = "
                  "policy + AutoReset.step_batch for every env")
    body += "\n| envs | policy | env-steps/s | episodes/s | run s | step compile s | reset compile s |\n"
    body += "|---|---|---|---|---|---|---|\n"
    body += "".join(f"| {r['batch']} | {r['policy']} | {r['steps_per_s']:,.0f} | {r['episodes_per_s']:,.0f} | "
                    f"{r['seconds']:.3f} | {r['compile_s']:.1f} | {r['reset_compile_s']:.1f} |\n" for r in rows)
    print(body)
    if not args.no_write:
        write_device_section(SECTION, body)


if __name__ == "__main__":
    main()
