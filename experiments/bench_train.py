"""GRPO step time and token throughput of the trainer (`ecomjax.rl.trainer.Trainer.step`).

A step = the curriculum's problems -> G rollouts each (generation, parsing, env steps, customer replies)
-> DAPO update. Reported per configuration: median seconds per step after a compile step, the split into
rollout and update, policy tokens generated per second, all tokens (prompt + generated + env) the update
processed per second, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecomjax import train  # noqa: E402
from experiments.benchlib import header, write_device_section  # noqa: E402

SECTION = "## Training: GRPO step time and tokens/s"


def run(flags: list[str], steps: int) -> dict:
    args = train.parse_args(flags + ["--out", "/tmp/ecomjax-bench-train", "--no-tensorboard"])
    trainer = train.build(args)
    rollout_s, update_s, total_s, gen_tokens, seen_tokens = [], [], [], [], []
    collect, update = trainer.collect, trainer.update

    def timed_collect(step):
        start = time.perf_counter()
        ro, rewards, weights, stats = collect(step)
        rollout_s.append(time.perf_counter() - start)
        # An untrained model's groups all score the same, so the trainer would skip the update; weight every
        # group so that each step pays for a full update (zero advantages: same cost, no parameter change).
        return ro, rewards, np.ones_like(weights), stats

    def timed_update(*a):
        start = time.perf_counter()
        out = update(*a)
        update_s.append(time.perf_counter() - start)
        return out

    trainer.collect, trainer.update = timed_collect, timed_update
    for _ in range(steps + 1):
        start = time.perf_counter()
        res = trainer.step()
        total_s.append(time.perf_counter() - start)
        gen_tokens.append(float(res.rollouts.policy_tokens.sum()))
        seen_tokens.append(float(sum(len(c) for c in res.rollouts.conversations)))
    med = lambda xs: statistics.median(xs[1:]) if len(xs) > 1 else float("nan")  # noqa: E731
    step = med(total_s)
    return {"step_s": step, "rollout_s": med(rollout_s), "update_s": med(update_s) if update_s else float("nan"),
            "gen_tok_s": med(gen_tokens) / med(rollout_s), "tok_s": med(seen_tokens) / step,
            "compile_s": total_s[0] - step, "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


CONFIGS = {
    "default": [],
    "4096": ["--num-envs", "4096", "--max-new-tokens", "64"],
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--configs", default="default,4096")
    p.add_argument("--steps", type=int, default=3, help="timed steps after the compile step")
    args = p.parse_args(argv)
    rows = []
    for name in args.configs.split(","):
        flags = CONFIGS[name] + ["--warm-start-steps", "0", "--no-dynamic-sampling"]
        m = run(flags, args.steps if name == "default" else 1)
        cfg = "python -m ecomjax.train " + " ".join(CONFIGS[name]) if CONFIGS[name] else "python -m ecomjax.train"
        rows.append(f"| `{cfg}` | {m['step_s']:.1f} | {m['rollout_s']:.1f} | {m['update_s']:.1f} | "
                    f"{m['gen_tok_s']:,.0f} | {m['tok_s']:,.0f} | {m['compile_s']:.0f} | {m['rss_gib']:.1f} |")
        print(rows[-1], flush=True)
    notes = ("untrained tiny model (warm start skipped: it changes what is generated, not the cost per token); "
             "one rollout round per step (--no-dynamic-sampling: with an untrained model dynamic sampling would "
             "resample every round); every group is weighted so each step runs a full update (the trainer skips updates on groups whose "
             "rewards are all equal, which is every group of an untrained model); "
             "median of the timed steps after one compile step (one timed step at 4096 envs); generated tok/s = "
             "policy tokens / rollout time; processed tok/s = all tokens of the step's episodes / step time")
    body = header(notes) + ("\n| run | s / step | rollout s | update s | generated tok/s | processed tok/s | "
                            "compile s | peak RSS GiB |\n|---|---|---|---|---|---|---|---|\n") + "\n".join(rows)
    write_device_section(SECTION, body)


if __name__ == "__main__":
    main()
