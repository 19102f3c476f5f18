"""Env throughput: env-steps/s and episodes/s of batched ShopEnv with the oracle and a random policy, where a
step's time goes, and the compile time of reset and step.

C8 task mix on a synthetic catalog, auto-reset, num_envs 1 / 256 / 4096; a step = policy + batched
`AutoReset.step_batch` (tools, customer, verification, new episodes for the finished envs) for every env.
`EnvParams` is a jit argument of every program (never a closure). Run it in a cold process without a
persistent compilation cache so the compile times are real.
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
from ecomjax.tasks.difficulty import episode_difficulty  # noqa: E402
from ecomjax.testing.random_policy import random_action  # noqa: E402
from ecomjax.world.tools import run_calls_batch  # noqa: E402
from experiments.benchlib import header, time_call, write_device_section  # noqa: E402

SECTION = "## Env: steps and episodes per second (C8)"
POLICIES = {"oracle": oracle.act_batch,
            "random": lambda keys, states, p: jax.vmap(lambda k, s: random_action(k, s, p))(keys, states)}


def runner(env: AutoReset, policy, steps: int, d: int):
    """jit: (params, keys [B]) -> (terminated count, reward sum) over `steps` batched steps."""
    def run(params, keys):
        states, _ = env.env.reset_batch(keys, params, d)

        def body(carry, k):
            states, done, total = carry
            split = jax.vmap(jax.random.split)(jax.random.split(k, keys.shape[0]))
            actions = policy(split[:, 0], states, params)
            states, ts = env.step_batch(split[:, 1], states, actions, params)
            return (states, done + jnp.sum(ts.terminated), total + jnp.sum(ts.reward)), None

        (_, done, total), _ = jax.lax.scan(body, (states, jnp.int32(0), jnp.float32(0)),
                                           jax.random.split(keys[0], steps))
        return done, total

    return jax.jit(run)


def compile_seconds(fn, *args) -> float:
    start = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return time.perf_counter() - start


def measure(catalog, batch: int, policy_name: str, steps: int, d: int, runs: int) -> dict:
    base, params = make("C8", catalog=catalog)
    env = AutoReset(base)
    keys = jax.random.split(jax.random.key(0), batch)
    fn = runner(env, POLICIES[policy_name], steps, d)
    timing = time_call(lambda: fn(params, keys), runs)
    done, _ = fn(params, keys)
    return {"batch": batch, "policy": policy_name, "steps_per_s": batch * steps / timing.median_s,
            "episodes_per_s": int(done) / timing.median_s, "seconds": timing.median_s, "compile_s": timing.compile_s}


def cold_compiles(catalog, batch: int, d: int) -> dict:
    """Seconds to trace and compile reset_batch and one oracle step (oracle + AutoReset.step_batch) of C8."""
    base, params = make("C8", catalog=catalog)
    env = AutoReset(base)
    keys = jax.random.split(jax.random.key(0), batch)
    states, _ = jax.jit(lambda p, k: base.reset_batch(k, p, d))(params, keys)
    reset_s = compile_seconds(lambda p, k: base.reset_batch(k, p, d + 1), params, keys)

    def step(p, k, s):
        split = jax.vmap(jax.random.split)(k)
        return env.step_batch(split[:, 1], s, oracle.act_batch(split[:, 0], s, p), p)

    return {"reset_compile_s": reset_s, "step_compile_s": compile_seconds(step, params, keys, states)}


def breakdown(catalog, batch: int, d: int, runs: int, warm_steps: int = 3) -> dict:
    """Median ms per batched call of each part of an oracle step on mid-episode states: new episodes
    (reset_batch of the whole batch), oracle, tools (search included), search alone, and the rest of the
    step (customer + verification), from separately jitted programs."""
    base, params = make("C8", catalog=catalog)
    keys = jax.random.split(jax.random.key(1), batch)
    reset = jax.jit(lambda p, k: base.reset_batch(k, p, d))
    act = jax.jit(lambda p, k, s: oracle.act_batch(k, s, p))
    step = jax.jit(lambda p, k, s, a: base.step_batch(k, s, a, p))
    states, _ = reset(params, keys)
    for _ in range(warm_steps):
        states, _ = step(params, keys, states, act(params, keys, states))
    actions = act(params, keys, states)

    def tools(p, k, s, a, only_search):
        diff = jax.vmap(episode_difficulty)(s.d, s.num_intents)
        calls = a.calls
        if only_search:
            calls = calls.replace(tool=jnp.where(calls.tool == 0, 0, -1))
        return run_calls_batch(k, s.world, calls, p.world, diff.b_tool, diff.top_k, diff.eps_rank)

    tools_all = jax.jit(lambda p, k, s, a: tools(p, k, s, a, False))
    tools_search = jax.jit(lambda p, k, s, a: tools(p, k, s, a, True))
    ms = {
        "reset": time_call(lambda: reset(params, keys), runs).median_s,
        "oracle": time_call(lambda: act(params, keys, states), runs).median_s,
        "tools": time_call(lambda: tools_all(params, keys, states, actions), runs).median_s,
        "search": time_call(lambda: tools_search(params, keys, states, actions), runs).median_s,
        "step": time_call(lambda: step(params, keys, states, actions), runs).median_s,
    }
    ms = {k: 1e3 * v for k, v in ms.items()}
    ms["customer + verify"] = max(ms["step"] - ms["tools"], 0.0)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--batches", default="1,256,4096")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--difficulty", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--breakdown-batch", type=int, default=4096)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    catalog, _ = synthetic(args.products)
    compiles = cold_compiles(catalog, 256, args.difficulty)
    print(json.dumps(compiles), flush=True)
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        for name in POLICIES:
            rows.append(measure(catalog, batch, name, args.steps, args.difficulty, args.runs))
            print(json.dumps(rows[-1]), flush=True)
    parts = breakdown(catalog, args.breakdown_batch, args.difficulty, args.runs)
    print(json.dumps(parts), flush=True)
    body = header(f"C8 mix, {args.products:,}-product synthetic catalog, difficulty {args.difficulty}, auto-reset, "
                  f"{args.steps} batched steps per run, median of {args.runs} runs after a compile run; a step = "
                  "policy + AutoReset.step_batch for every env; EnvParams a jit argument; task-homogeneous "
                  "sub-batches (reset_batch, oracle.act_batch, step_batch)")
    body += (f"\nCold compile (fresh process, no persistent cache, 256 envs): reset_batch "
             f"{compiles['reset_compile_s']:.1f} s, oracle step (oracle.act_batch + AutoReset.step_batch) "
             f"{compiles['step_compile_s']:.1f} s, together {sum(compiles.values()):.1f} s.\n")
    body += "\n| envs | policy | env-steps/s | episodes/s | run s | compile s (16-step scan) |\n"
    body += "|---|---|---|---|---|---|\n"
    body += "".join(f"| {r['batch']} | {r['policy']} | {r['steps_per_s']:,.0f} | {r['episodes_per_s']:,.0f} | "
                    f"{r['seconds']:.3f} | {r['compile_s']:.1f} |\n" for r in rows)
    body += (f"\nWhere an oracle step's time goes at {args.breakdown_batch:,} envs (mid-episode states, ms per "
             "batched call, each part jitted on its own; `reset` generates a new episode for every env, while "
             "an auto-reset step generates them only for the envs that finished):\n\n")
    body += "| part | ms per batch | µs per env |\n|---|---|---|\n"
    body += "".join(f"| {k} | {v:.1f} | {1e3 * v / args.breakdown_batch:.1f} |\n" for k, v in parts.items())
    print(body)
    if not args.no_write:
        write_device_section(SECTION, body)


if __name__ == "__main__":
    main()
