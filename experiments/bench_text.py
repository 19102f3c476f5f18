"""Text-layer overhead per agent turn: parse the JSON turn, render tool results and the customer's reply,
and tokenize what the policy reads next, on the host, for a batch of TextEnv episodes.

The oracle's own JSON drives C8 episodes; a turn's overhead is the host time of `TextEnv.step_batch`
minus its jitted device step, plus `Renderer.env_turn` (the tokenization a rollout does), per live env.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from ecomjax.catalog import synthetic  # noqa: E402
from ecomjax.env import make  # noqa: E402
from ecomjax.tasks.goal import TASK_NAMES  # noqa: E402
from ecomjax.text import TextEnv  # noqa: E402
from ecomjax.text.tokens import Renderer  # noqa: E402
from experiments.benchlib import header, write_device_section  # noqa: E402

SECTION = "## Text layer: host overhead per agent turn (C8, oracle JSON)"


def measure(tenv: TextEnv, renderer: Renderer, n: int, d: int, turns: int) -> dict:
    """Median per-env-turn milliseconds of parse+render (step_batch minus device) and tokenize."""
    device = []

    def timed(fn):
        def run(*args):
            start = time.perf_counter()
            out = jax.block_until_ready(fn(*args))
            device.append(time.perf_counter() - start)
            return out
        return run

    tenv._step = timed(tenv._step)
    tasks = [TASK_NAMES[i % len(TASK_NAMES)] for i in range(n)]
    tenv.reset_batch(list(range(n)), tasks, [d] * n)
    host, tokenize, per_turn = [], [], []
    for t in range(turns):
        live = sum(not ep.done for ep in tenv.episodes)
        if live == 0:
            break
        actions = tenv.oracle_actions()
        start = time.perf_counter()
        tenv.step_batch(actions)
        total = time.perf_counter() - start
        start = time.perf_counter()
        for ep in tenv.episodes:
            if not ep.done:
                renderer.env_turn(ep.new_messages, closed=True)
        tok = time.perf_counter() - start
        if t > 0:                                    # turn 0 compiles the step
            host.append((total - device[-1]) / live * 1e3)
            tokenize.append(tok / live * 1e3)
            per_turn.append((total - device[-1] + tok) * 1e3)
    return {"parse_render_ms": statistics.median(host), "tokenize_ms": statistics.median(tokenize),
            "turn_ms": statistics.median(per_turn), "device_ms": statistics.median(device[1:]) * 1e3}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="256,4096")
    p.add_argument("--num-products", type=int, default=10_000)
    p.add_argument("--difficulty", type=int, default=5)
    p.add_argument("--turns", type=int, default=6)
    args = p.parse_args(argv)
    catalog, vocab = synthetic(args.num_products, seed=0)
    env, params = make("C8", catalog=catalog)
    tenv = TextEnv(env, params, vocab)
    renderer = Renderer(tenv.tokenizer)
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        m = measure(tenv, renderer, n, args.difficulty, args.turns)
        rows.append(f"| {n:,} | {m['parse_render_ms']:.2f} | {m['tokenize_ms']:.2f} | "
                    f"{m['parse_render_ms'] + m['tokenize_ms']:.2f} | {m['turn_ms'] / 1e3:.2f} | {m['device_ms']:.0f} |")
        print(rows[-1], flush=True)
    notes = (f"C8 mix at d={args.difficulty} on a {args.num_products:,}-product catalog, built-in tokenizer, "
             f"tool results cut at {tenv.tool_result_tokens} tokens; medians over turns 1..{args.turns - 1} (turn 0 "
             "compiles); per env-turn = host time / live envs; single-threaded Python on the host.")
    body = header(notes) + "\n| envs | parse + render ms / env-turn | tokenize ms / env-turn | total ms / env-turn | " \
        "host s / batch turn | device step ms / batch turn |\n|---|---|---|---|---|---|\n" + "\n".join(rows)
    write_device_section(SECTION, body)


if __name__ == "__main__":
    main()
