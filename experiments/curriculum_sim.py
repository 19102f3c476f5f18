"""Adaptive (RLVE) vs static difficulty on a synthetic GRPO learner.

The learner has one real skill ``s`` per task. A rollout at difficulty ``d`` is correct with
probability ``sigmoid(K * (s - d))``. Each problem gets ``G`` rollouts; a group is informative
when ``0 < #correct < G`` (GRPO gets a gradient only from those). Every informative group
raises the task's skill by ``LR * task_rate * exp(-max(0, d - s))``: problems far above the
learner's skill teach less. All rollouts (informative or not) feed the curriculum update.

    python experiments/curriculum_sim.py [--seeds 5] [--steps 500]

prints a table, writes ``experiments/figures/curriculum_sim.png``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ecomjax import curriculum as cur

COLLECTION = "C4"
GROUP_SIZE = 8  # G rollouts per problem
GROUPS_PER_STEP = 64  # problems per training step
SHARPNESS = 1.5  # K
LR = 0.004  # skill gained per informative group (before task rate and difficulty scaling)
TASK_RATE = {"PD": 1.0, "SUB": 0.8, "CART": 0.6, "RETURN": 0.4}  # per-family learning speed
INITIAL_SKILL = 0.0
SMOOTH_STEPS = 20
FIGURE = Path(__file__).parent / "figures" / "curriculum_sim.png"

METHODS: dict[str, dict] = {
    "adaptive (rlve, 4 levels)": {"config": cur.CurriculumConfig()},
    "adaptive (shoprlve, 5 levels)": {"config": cur.CurriculumConfig(variant="shoprlve")},
    "static-low U[0,2]": {"bounds": cur.STATIC_LOW},
    "static-high U[0,10]": {"bounds": cur.STATIC_HIGH},
}


def _rates() -> jax.Array:
    rates = np.zeros(cur.NUM_TASKS, np.float32)
    for name, rate in TASK_RATE.items():
        rates[cur.TASK_NAMES.index(name)] = rate
    return jnp.asarray(rates)  # [T]


def make_run(method: dict, steps: int) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """A jitted function of one seed's key returning per-step traces of one method."""
    tasks = jnp.asarray(cur.collection_tasks(COLLECTION), jnp.int32)  # [K]
    rates = _rates()  # [T]
    config = method.get("config", cur.CurriculumConfig())

    def sampler(key, state):
        if "bounds" in method:
            return cur.sample_static(key, tasks, GROUPS_PER_STEP, *method["bounds"])
        return cur.sample(key, state, tasks, GROUPS_PER_STEP)

    def step(carry, key):
        skill, state = carry  # [T] f32, CurriculumState
        key_sample, key_rollout = jax.random.split(key)
        task, difficulty = sampler(key_sample, state)  # [N], [N]
        s = skill[task]  # [N]
        p = jax.nn.sigmoid(SHARPNESS * (s - difficulty))  # [N]
        correct = jax.random.uniform(key_rollout, (GROUPS_PER_STEP, GROUP_SIZE)) < p[:, None]
        n_correct = correct.sum(axis=1)  # [N]
        informative = (n_correct > 0) & (n_correct < GROUP_SIZE)  # [N]
        gain = LR * rates[task] * informative * jnp.exp(-jax.nn.relu(difficulty - s))  # [N]
        skill = skill + jax.ops.segment_sum(gain, task, num_segments=cur.NUM_TASKS)
        state = cur.update(
            state,
            jnp.repeat(task, GROUP_SIZE),
            jnp.repeat(difficulty, GROUP_SIZE),
            correct.reshape(-1),
        )
        trace = {
            "informative": informative.mean(),
            "skill": skill[tasks].mean(),
            "skill_min": skill[tasks].min(),
            "high": state.high[tasks].astype(jnp.float32).mean(),
            "difficulty": difficulty.astype(jnp.float32).mean(),
        }
        return (skill, state), trace

    def run(key: jax.Array) -> dict[str, jax.Array]:
        skill = jnp.where(rates > 0, INITIAL_SKILL, 0.0)  # [T]
        keys = jax.random.split(key, steps)
        _, traces = jax.lax.scan(step, (skill, cur.init(config)), keys)
        return traces  # each [steps]

    return jax.jit(jax.vmap(run))


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    kernel = np.ones(width) / width
    return np.convolve(np.pad(x, (width - 1, 0), mode="edge"), kernel, mode="valid")


def _plot(results: dict[str, dict[str, np.ndarray]], steps: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = np.arange(1, steps + 1) * GROUPS_PER_STEP
    fig, (ax_inf, ax_skill) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (name, traces), color in zip(results.items(), ("C0", "C4", "C1", "C2")):
        ax_inf.plot(groups, _smooth(traces["informative"].mean(0), SMOOTH_STEPS), color=color,
                    label=name)
        skill = traces["skill"]
        ax_skill.plot(groups, skill.mean(0), color=color, label=f"{name}: skill")
        ax_skill.fill_between(groups, skill.min(0), skill.max(0), color=color, alpha=0.15)
        if name.startswith("adaptive"):
            ax_skill.plot(groups, traces["high"].mean(0), color=color, ls="--",
                          label=f"{name}: window h")
    ax_inf.set(xlabel="groups seen", ylabel="informative groups (0 < #correct < G)",
               title=f"Informative share ({SMOOTH_STEPS}-step moving mean)", ylim=(0, 1))
    ax_skill.set(xlabel="groups seen", ylabel="difficulty level",
                 title="True skill (mean over tasks; band = seed range) and window h")
    ax_inf.legend(fontsize=8)
    ax_skill.legend(fontsize=7)
    for ax in (ax_inf, ax_skill):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{COLLECTION}, G={GROUP_SIZE}, {GROUPS_PER_STEP} groups/step, "
                 f"{len(next(iter(results.values()))['skill'])} seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds: expected >= 1, got {args.seeds}")
    if args.steps < SMOOTH_STEPS:
        parser.error(f"--steps: expected >= {SMOOTH_STEPS}, got {args.steps}")

    keys = jax.random.split(jax.random.key(0), args.seeds)
    results: dict[str, dict[str, np.ndarray]] = {}
    start = time.perf_counter()
    for name, method in METHODS.items():
        traces = make_run(method, args.steps)(keys)
        results[name] = {k: np.asarray(v) for k, v in traces.items()}  # [seeds, steps]
    elapsed = time.perf_counter() - start

    tail = max(1, args.steps // 5)
    budget = args.steps * GROUPS_PER_STEP
    print(f"{COLLECTION} ({', '.join(TASK_RATE)}), G={GROUP_SIZE}, budget {budget} groups "
          f"per run, {args.seeds} seeds (mean ± sd over seeds), {elapsed:.1f} s")
    header = (f"| {'method':<30} | informative (all) | informative (last 20%) | "
              f"final skill (mean task) | final skill (slowest task) | final h (mean task) |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, r in results.items():
        inf_all = r["informative"].mean(1)
        inf_tail = r["informative"][:, -tail:].mean(1)
        skill, skill_min = r["skill"][:, -1], r["skill_min"][:, -1]
        high = (f"{r['high'][:, -1].mean():.2f} ± {r['high'][:, -1].std():.2f}"
                if name.startswith("adaptive") else "—")
        print(f"| {name:<30} | {inf_all.mean():.3f} ± {inf_all.std():.3f} | "
              f"{inf_tail.mean():.3f} ± {inf_tail.std():.3f} | "
              f"{skill.mean():.2f} ± {skill.std():.2f} | "
              f"{skill_min.mean():.2f} ± {skill_min.std():.2f} | {high} |")
    _plot(results, args.steps, args.figure)
    print(f"figure: {os.path.relpath(args.figure)}")


if __name__ == "__main__":
    main()
