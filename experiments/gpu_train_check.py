"""Accelerator check of training: GRPO steps of the default model (`python -m ecomjax.train`'s embedded tiny
Qwen3, built-in tokenizer, synthetic catalog) at 1,024 and 4,096 envs, each step split into generation (the
Qwen3 sampler), env (the jitted reset/step of the text env's core), host text (everything else in the rollout:
parsing, rendering, tokenising, customer text) and update. Prints each row as it finishes, stops cleanly at
`--time-limit` seconds from the start (compiles included) and writes the table to BENCHMARKS.md.

Runs from a plain checkout with no network and no tensorboardX:

    PYTHONPATH=. python experiments/gpu_train_check.py                  # about 5 minutes on one H200
    PYTHONPATH=. python experiments/gpu_train_check.py --envs 8,16 --time-limit 60 --no-write   # CPU smoke test
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecomjax import train  # noqa: E402
from ecomjax.rl import rollout as rollout_module  # noqa: E402
from experiments.benchlib import header, write_device_section  # noqa: E402

SECTION = "## Training: GRPO step split (generation, env, host text, update)"
DEFAULT_ENVS = "1024,4096"
DEFAULT_TIME_LIMIT_S = 280.0
DEFAULT_STEPS = 2
# The runs the benchmark measures: the default training command at a given batch, without the warm start,
# held-out scoring, dynamic sampling or TensorBoard (none changes the cost of a step).
FLAGS = ["--warm-start-steps", "0", "--heldout-episodes", "0", "--no-dynamic-sampling", "--no-tensorboard"]
COLUMNS = ("envs", "s / step", "generation s", "env s", "host text s", "update s", "turns / episode",
           "generated tok/s", "compile s", "timed steps")


class TimeLimit(BaseException):
    """Raised by the alarm at the time limit while a batch size is measured (a BaseException, so no library
    handler swallows it)."""


MEASURING = {"on": False}


def _alarm(signum: int, frame: Any) -> None:
    if MEASURING["on"]:
        raise TimeLimit


def elapsed() -> float:
    """Seconds since the script started."""
    return time.perf_counter() - START


def left(limit: float) -> float:
    """Seconds left before the time limit."""
    return limit - elapsed()


class Clock:
    """Seconds spent per part in the current step."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = defaultdict(float)

    def timed(self, part: str, fn: Callable, block: bool = False) -> Callable:
        """`fn`, adding its wall time to `part` (blocking on its result first when `block`)."""
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if block:
                jax.block_until_ready(out)
            self.parts[part] += time.perf_counter() - start
            return out
        return wrapper


def instrument(trainer: Any, clock: Clock) -> None:
    """Times the trainer's parts into `clock`. An untrained model's groups all score the same, so the trainer
    would skip the update; every group is weighted instead (zero advantages: the same cost, no change)."""
    tenv, collect = trainer.tenv, trainer.collect
    tenv._reset = clock.timed("env", tenv._reset, block=True)
    tenv._step = clock.timed("env", tenv._step, block=True)

    def weighted_collect(step: int):
        ro, rewards, weights, stats = collect(step)
        return ro, rewards, np.ones_like(weights), stats

    trainer.collect = clock.timed("rollout", weighted_collect)
    trainer.update = clock.timed("update", trainer.update)


def train_args(envs: int) -> Any:
    """The parsed `python -m ecomjax.train` flags of the run at `envs` envs."""
    out = Path(tempfile.gettempdir()) / "ecomjax-gpu-train-check"
    return train.parse_args(["--num-envs", str(envs), "--out", str(out), *FLAGS])


def measure(args: Any, steps: int, limit: float, clock: Clock, result: dict) -> None:
    """The compile step and up to `steps` timed steps of the run `args` into `result["rows"]` (kept when the
    alarm interrupts); a timed step is not started when the last one would not fit before the limit."""
    trainer = train.build(args)
    instrument(trainer, clock)
    rows = result["rows"]
    while len(rows) < steps + 1:
        if len(rows) > 1 and rows[-1]["step"] > left(limit):
            result["stopped"] = True
            return
        clock.parts.clear()
        start = time.perf_counter()
        res = trainer.step()
        parts = dict(clock.parts)
        parts["step"] = time.perf_counter() - start
        parts["host text"] = parts.get("rollout", 0.0) - parts.get("generation", 0.0) - parts.get("env", 0.0)
        parts["turns"] = float(res.rollouts.turns.mean())
        parts["policy_tokens"] = float(res.rollouts.policy_tokens.sum())
        rows.append(parts)


def note_row(envs: int, text: str) -> str:
    """A markdown row of the table holding `text` instead of timings."""
    return f"| {envs:,} | {text} |" + " |" * (len(COLUMNS) - 2)


def table_row(result: dict) -> str:
    """One markdown row: medians over the timed steps (the first step compiles and is not among them)."""
    rows, envs = result["rows"], result["envs"]
    if not rows:
        return note_row(envs, "stopped at the time limit before its compile step finished")
    timed = rows[1:]
    if not timed:
        return note_row(envs, f"compile step only ({rows[0]['step']:.1f} s): stopped at the time limit")
    med = lambda key: statistics.median(r.get(key, 0.0) for r in timed)  # noqa: E731
    return (f"| {envs:,} | {med('step'):.2f} | {med('generation'):.2f} | {med('env'):.2f} | {med('host text'):.2f} | "
            f"{med('update'):.2f} | {med('turns'):.2f} | {med('policy_tokens') / max(med('generation'), 1e-9):,.0f} | "
            f"{max(rows[0]['step'] - med('step'), 0.0):.0f} | {len(timed)} |")


def main(argv: list[str] | None = None) -> bool:
    """Runs the check; returns whether it stopped at the time limit."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", default=DEFAULT_ENVS, help="comma-separated batch sizes (episodes per step)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed steps per batch size after its compile step")
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S,
                   help="seconds from the start (imports and compiles included) after which the check stops")
    p.add_argument("--no-write", action="store_true", help="print the table only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    try:
        sizes = [int(x) for x in args.envs.split(",") if x.strip()]
    except ValueError:
        p.error(f"--envs: expected comma-separated integers, got {args.envs!r}")
    if not sizes or args.steps < 0 or not args.time_limit > 0:
        p.error("expected at least one batch size in --envs, --steps >= 0 and --time-limit > 0")
    runs = {envs: train_args(envs) for envs in sizes}
    first = runs[sizes[0]]
    clock = Clock()
    rollout_module._generate_turn = clock.timed("generation", rollout_module._generate_turn)
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(left(args.time_limit), 0.001))
    print(f"{jax.devices()[0].device_kind}: {', '.join(map(str, sizes))} envs, {args.steps} timed steps each, "
          f"{args.time_limit:.0f} s limit ({elapsed():.0f} s spent on imports)", flush=True)
    print("| " + " | ".join(COLUMNS) + " |", flush=True)
    rows, stopped = [], False
    for envs in sizes:
        if stopped or left(args.time_limit) <= 0:
            stopped = True
            rows.append(note_row(envs, "not run: the time limit was reached"))
        else:
            result = {"envs": envs, "rows": [], "stopped": False}
            MEASURING["on"] = True
            try:
                measure(runs[envs], args.steps, args.time_limit, clock, result)
            except TimeLimit:
                result["stopped"] = True
            finally:
                MEASURING["on"] = False
            stopped = result["stopped"]
            rows.append(table_row(result))
        print(rows[-1], flush=True)
    signal.setitimer(signal.ITIMER_REAL, 0)
    notes = (f"`python -m ecomjax.train --num-envs N {' '.join(FLAGS)}`: the default model, untrained (Qwen3 "
             f"{first.hidden_size}d x {first.num_layers} layers from scratch, built-in tokenizer), {first.tasks} on a "
             f"{first.num_products:,}-product {first.catalog} catalog, up to {first.max_new_tokens} new tokens per "
             f"turn, micro-batches of {first.micro_batch}; every group is "
             f"weighted so each step runs a full update (zero advantages: the same cost); medians over the timed "
             f"steps after one compile step; generation = the Qwen3 sampler, env = the jitted reset/step of the "
             f"text env's core, host text = the rest of the rollout (parsing, rendering, tokenising, customer "
             f"text); compile s = first step - median step; {args.time_limit:.0f} s limit from the start "
             f"(imports and compiles included){', reached' if stopped else ''}")
    body = header(notes) + "\n| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n" + "\n".join(rows)
    print(body, flush=True)
    if not args.no_write:
        write_device_section(SECTION, body)
    print(f"done in {elapsed():.0f} s", flush=True)
    return stopped


if __name__ == "__main__":
    if main():
        sys.stderr.flush()
        os._exit(0)                 # a compile cut off by the limit may still run in the background: do not wait
