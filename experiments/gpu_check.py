"""The env core on an accelerator in one command (≤ 5 minutes of wall time on an H200, compiles included):
env-steps/s and episodes/s of C8 with the oracle at 4,096 and 65,536 envs (10k catalog) and at 4,096 envs on
a 2M-product catalog, the 2M-product search for 4,096 queries, and whether the oracle's recorded episodes
(tests/data/guard_oracle_episodes.npz, recorded on the CPU) come out the same.

Run from a plain checkout: `PYTHONPATH=. python experiments/gpu_check.py`. Each row prints as it finishes;
at `--time-limit` the script writes what it has (rows not reached say so) and exits, even mid-compile.
Works on the CPU too (with smaller `--envs` for a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ecomjax  # noqa: E402
from ecomjax.catalog import synthetic  # noqa: E402
from ecomjax.env import AutoReset, make  # noqa: E402
from ecomjax.testing.guard import MODE, fixture_arrays, fixture_mismatches, guard_grid, guard_runner, to_host  # noqa: E402
from experiments.bench_env import POLICIES, runner  # noqa: E402
from experiments.bench_world import search_stats  # noqa: E402
from experiments.benchlib import header, time_call, write_device_section  # noqa: E402

SECTION = "## GPU check: env core"
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "guard_oracle_episodes.npz"
FIXTURE_SEED, FIXTURE_PER = 20261204, 32          # as tests/test_verifier_guard.py
PRIORITY_FIELDS = ("goal.pool_util", "goal.idcg", "reward")


class Report:
    """Rows printed as they finish and written to BENCHMARKS.md at the end or at the time limit."""

    def __init__(self, args):
        self.args, self.rows, self.lock, self.written = args, [], threading.Lock(), False

    def add(self, what: str, result: str, seconds: float) -> None:
        with self.lock:
            self.rows.append((what, result, seconds))
        print(json.dumps({"row": what, "result": result, "wall_s": round(seconds, 1)}), flush=True)

    def write(self, pending: list[str]) -> None:
        with self.lock:
            if self.written:
                return
            self.written = True
            body = header(f"`experiments/gpu_check.py`, time limit {self.args.time_limit} s; wall s = compile + "
                          "timed runs of the row; env rows: C8, d = 4, oracle, auto-reset, 16-step scan, median "
                          "of 3 runs")
            body += "\n| check | result | wall s |\n|---|---|---|\n"
            body += "".join(f"| {w} | {r} | {s:.1f} |\n" for w, r, s in self.rows)
            body += "".join(f"| {w} | not reached before the time limit | |\n" for w in pending)
            print(body, flush=True)
            if not self.args.no_write:
                write_device_section(SECTION, body)


def env_row(catalog, batch: int) -> str:
    env = AutoReset(make("C8", catalog=catalog)[0])
    params = make("C8", catalog=catalog)[1]
    keys = jax.random.split(jax.random.key(0), batch)
    fn = runner(env, POLICIES["oracle"], 16, 4)
    timing = time_call(lambda: fn(params, keys), 3)
    done, _ = fn(params, keys)
    return (f"{batch * 16 / timing.median_s:,.0f} env-steps/s, {int(done) / timing.median_s:,.0f} episodes/s "
            f"(compile {timing.compile_s:.1f} s)")


def fixture_row() -> str:
    catalog, _ = synthetic(2000, seed=0)
    env, params = ecomjax.make("C8", catalog=catalog)
    task, d, mode = guard_grid(FIXTURE_PER, 0, priority_per=0)
    keys = jax.random.split(jax.random.key(FIXTURE_SEED), len(task))
    states, ts = guard_runner(env, params)(keys, jnp.asarray(d), jnp.asarray(task), jnp.asarray(mode))
    want = np.load(FIXTURE)
    got = fixture_arrays(to_host(states), {k: np.asarray(v) for k, v in ts.info.items()},
                         np.asarray(ts.reward))

    def skip(name, task_name):
        return task_name in ("PD", "SUB", "JOURNEY") and (name in PRIORITY_FIELDS or name.startswith("info."))

    problems = fixture_mismatches(got, want, want["task"], skip=skip)
    correct = float(np.asarray(ts.info["is_correct"])[mode == MODE["oracle"]].mean())
    if problems:
        return f"DIFFERENT from the CPU fixture: {'; '.join(problems)} (oracle correct {correct:.1%})"
    return f"same as the CPU fixture ({len(task)} episodes, oracle correct {correct:.1%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--time-limit", type=float, default=290.0)
    parser.add_argument("--envs", default="4096,65536", help="env counts on the 10k catalog")
    parser.add_argument("--big-products", type=int, default=2_000_000)
    parser.add_argument("--big-envs", type=int, default=4096)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    report = Report(args)
    plan = ["same episodes as the CPU fixture"]
    plan += [f"C8 env, 10,000 products, {int(b):,} envs" for b in args.envs.split(",")]
    plan += [f"search, {args.big_products:,} products, 4,096 queries",
             f"C8 env, {args.big_products:,} products, {args.big_envs:,} envs"]
    pending = list(plan)

    def deadline():
        remaining = args.time_limit - (time.perf_counter() - start)
        if remaining > 0:
            time.sleep(remaining)
        report.write(pending)
        os._exit(0)

    threading.Thread(target=deadline, daemon=True).start()

    def run(what: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as err:                       # a failed row is reported, the others still run
            result = f"failed: {type(err).__name__}: {str(err)[:200]}"
        report.add(what, result, time.perf_counter() - t0)
        pending.remove(what)

    run(plan[0], fixture_row)
    small, _ = synthetic(10_000)
    for what, b in zip(plan[1:], args.envs.split(",")):
        run(what, lambda b=int(b): env_row(small, b))
    big, big_vocab = synthetic(args.big_products)

    def search_row():
        s = search_stats(big, big_vocab, 4096, 3)
        return f"{1e3 * s['seconds']:.1f} ms per batch, {s['qps']:,.0f} queries/s (compile {s['compile_s']:.1f} s)"

    run(plan[-2], search_row)
    run(plan[-1], lambda: env_row(big, args.big_envs))
    report.write(pending)


if __name__ == "__main__":
    main()
