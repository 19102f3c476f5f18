"""Curriculum and environment-scaling ablations of the real trainer with the tiny from-scratch model on CPU.

    .venv/bin/python experiments/ablations.py all          # what experiments/README.md records (the defaults)
    .venv/bin/python experiments/ablations.py curriculum   # (a) C1: adaptive vs static-low 0,2 vs static-high 0,10
    .venv/bin/python experiments/ablations.py scaling      # (b) C1 -> C2 -> C4 -> C8, adaptive
    flags: --warm-start-steps 300 --warm-start-episodes 512 --steps 10 --num-envs 32 --seed 0 ...; --force redoes

`all` runs both parts, sharing the base and the C1 adaptive arm (arm "adaptive" of (a) is arm "C1" of (b)).

Every arm starts from ONE shared base: the supervised warm start of `python -m ecomjax.train` on the base
collection's oracle transcripts (the same code and arguments as `ecomjax.train.main`), saved as a step-0
checkpoint (no RL step). Each arm copies that checkpoint and runs the real CLI,
`python -m ecomjax.train --resume --out ARM ...`, for the same number of RL steps (so the same number of
problems per step; dynamic sampling may draw extra refill batches, counted in `groups_generated`). The warm
start is deterministic, so this equals running each arm from scratch with the same warm-start flags, and only
the RL phase differs between arms. Each trained policy is then scored by `ecomjax.evaluate.main` (the
`python -m ecomjax.evaluate --policy checkpoint:OUT` code path) with the system prompt and tool-result budget
the policy was trained with (see `_evaluate`), plus the trainer's own held-out d=0 score.

Outputs: `runs/ablations/<arm>/` (metrics.jsonl, summary.json, eval/results.json), `runs/ablations/<part>.json`,
`experiments/figures/ablation_<part>.png`, and a markdown table on stdout. An arm whose files exist is reused
(pass --force to redo it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "experiments" / "figures"
PY = sys.executable
ALL_TASKS = "PD,SUB,CART,RETURN,STATUS,POLICY,BUNDLE,JOURNEY"
CURRICULUM_ARMS = {"adaptive": None, "static-low": "0,2", "static-high": "0,10"}
SCALING_ARMS = ("C1", "C2", "C4", "C8")
COLLECTION_NAMES = ("C1", "C2", "C4", "C8")


# ------------------------------------------------------------------------------------------ hidden steps

def _base(argv: list[str]) -> None:
    """Warm start exactly as `ecomjax.train.main` does, then save the step-0 checkpoint (no RL step)."""
    from ecomjax import train
    from ecomjax.rl import checkpoint
    from ecomjax.rl.warmstart import WarmStartConfig, warm_start
    from ecomjax.tasks.goal import TASK, TASK_NAMES

    start = time.perf_counter()
    args = train.parse_args(argv)
    out = Path(args.out)
    trainer = train.build(args)
    ckpt = checkpoint.manager(out / "checkpoints")
    if ckpt.latest_step() is not None:
        raise SystemExit(f"{out} already holds a checkpoint")
    before = train.heldout(trainer, args.heldout_episodes) if args.heldout_episodes else None
    print(f"base: held-out d=0 untrained {before} ({time.perf_counter() - start:.0f} s)", flush=True)
    ws = WarmStartConfig(episodes=args.warm_start_episodes, steps=args.warm_start_steps, batch=args.warm_start_batch,
                         lr=args.warm_start_lr, max_seq_len=args.max_seq_len, play_batch=args.num_envs)
    names = [TASK_NAMES[t] for t in args.task_ids if t != TASK["JOURNEY"]] or ["PD"]

    def report(i: int, n: int, loss: float) -> None:
        if i % 50 == 0 or i == n:
            print(f"warm start {i}/{n} loss {loss:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)

    losses = warm_start(trainer.model, trainer.tenv, trainer.renderer, ws, names, [0, 0, 1], args.seed,
                        progress=report)
    after = train.heldout(trainer, args.heldout_episodes) if args.heldout_episodes else None
    checkpoint.save(ckpt, trainer, extra={"tokenizer": args.model_path or train.BUILTIN_TOKENIZER,
                                          "catalog": args.catalog})
    ckpt.wait_until_finished()
    info = {"argv": argv, "warm_start_tasks": names, "loss_first": losses[0], "loss_last": losses[-1],
            "heldout_untrained": before, "heldout_base": after, "seconds": time.perf_counter() - start}
    (out / "base.json").write_text(json.dumps(info, indent=2))
    print(f"base: warm start loss {losses[0]:.3f} -> {losses[-1]:.3f}; held-out d=0 {after} "
          f"({info['seconds']:.0f} s)", flush=True)


def _evaluate(argv: list[str]) -> None:
    """`ecomjax.evaluate.main(argv)` for each run directory in `--runs A,B,...` (one process: one compile). The
    checkpoints carry the text protocol they were trained with (prompt style, tool-result budget), which
    evaluate replays."""
    from ecomjax import evaluate

    p = argparse.ArgumentParser()
    p.add_argument("--runs", required=True)
    p.add_argument("--name", default="eval", help="output folder inside each run directory")
    own, rest = p.parse_known_args(argv)
    for run in own.runs.split(","):
        start = time.perf_counter()
        evaluate.main(["--policy", f"checkpoint:{run}", "--out", str(Path(run) / own.name), *rest])
        print(f"evaluated {run} ({time.perf_counter() - start:.0f} s)", flush=True)


# ------------------------------------------------------------------------------------------ driver

def _run(cmd: list[str], log: Path) -> float:
    """Run one command (sequentially), tee its output to `log`; returns its wall time."""
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            f.write(line)
            if not line.startswith(("W", "E1", "I0")) and "Warning" not in line:
                print("    " + line.rstrip(), flush=True)
        rc = proc.wait()
    wall = time.perf_counter() - start
    if rc:
        raise SystemExit(f"command failed ({rc}); see {log}")
    print(f"    ({wall:.0f} s wall)", flush=True)
    return wall


def _common(o: argparse.Namespace) -> list[str]:
    return ["--num-envs", str(o.num_envs), "--seed", str(o.seed), "--heldout-episodes", str(o.heldout_episodes),
            "--no-tensorboard"]


def base(o: argparse.Namespace) -> Path:
    out = o.root / f"base_{o.base_collection}"
    if (out / "base.json").exists() and (not o.force or out in o.done):
        return out
    shutil.rmtree(out, ignore_errors=True)
    argv = ["--collection", o.base_collection, "--out", str(out), "--warm-start-steps", str(o.warm_start_steps),
            "--warm-start-episodes", str(o.warm_start_episodes), *_common(o)]
    o.walls["base"] = _run([PY, str(Path(__file__).resolve()), "_base", *argv], o.root / "logs" / "base.log")
    o.done.add(out)
    return out


def arm(o: argparse.Namespace, name: str, collection: str, static: str | None) -> Path:
    out = o.root / name
    if (out / "summary.json").exists() and (not o.force or out in o.done):
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copytree(base(o) / "checkpoints", out / "checkpoints")
    cmd = [PY, "-m", "ecomjax.train", "--resume", "--out", str(out), "--collection", collection,
           "--steps", str(o.steps), "--checkpoint-every", str(o.steps), *_common(o)]
    if static:
        cmd += ["--static-difficulty", static]
    o.walls[name] = _run(cmd, o.root / "logs" / f"{name}.log")
    o.done.add(out)
    return out


def evaluate(o: argparse.Namespace, runs: list[Path], tasks: str, difficulties: str, name: str) -> None:
    """One evaluate process for `runs`; a single collection name evaluates that collection's own env (cheaper
    to compile than the C8 env that evaluate builds for an explicit task list)."""
    todo = [r for r in runs if (o.force_eval or o.force) and (r, name) not in o.done
            or not (r / name / "results.json").exists()]
    if not todo:
        return
    which = ["--collection", tasks] if tasks in COLLECTION_NAMES else ["--tasks", tasks]
    cmd = [PY, str(Path(__file__).resolve()), "_evaluate", "--runs", ",".join(str(r) for r in todo), "--name", name,
           *which, "--difficulties", difficulties, "--episodes", str(o.eval_episodes), "--k", "1",
           "--temperature", str(o.eval_temperature), "--num-products", str(o.num_products), "--seed", str(o.seed)]
    o.walls[name] = _run(cmd, o.root / "logs" / f"{name}.log")
    o.done.update((r, name) for r in todo)


def eval_summary(out: Path, name: str) -> dict:
    res = json.loads((out / name / "results.json").read_text())["results"]
    cells = [m for cells in res.values() for m in cells.values()]
    return {
        "eval": {t: {d: {"success": m["success_rate"], "reward": m["reward"], "tool_error_rate": m["tool_error_rate"],
                         "terminations": m["terminations"]} for d, m in c.items()} for t, c in res.items()},
        "eval_success": sum(m["success_rate"] for m in cells) / len(cells),
        "eval_reward": sum(m["reward"] for m in cells) / len(cells),
    }


def collect(out: Path, name: str) -> dict:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((out / "summary.json").read_text())
    gen = sum(r["groups_generated"] for r in rows)
    drop = sum(r["groups_dropped"] for r in rows)
    hs = {k.split("/")[1]: v for k, v in rows[-1].items() if k.startswith("curriculum/") and k.endswith("/h")}
    return {
        "steps": len(rows), "seconds": summary["seconds"], "groups_generated": gen, "groups_dropped": drop,
        "informative_share": (gen - drop) / max(gen, 1),
        "updates": sum(1 for r in rows if not r.get("skipped_update")),
        # the trainer logs episode means over the kept (informative) groups when a step kept any, else over its
        # first batch: not one consistent sample, so they are only stored here, not tabulated
        "kept_batch_reward": [r["reward_mean"] for r in rows],
        "kept_batch_format_error_share": [r["format_error_share"] for r in rows],
        "informative_trace": [r["groups_generated"] - r["groups_dropped"] for r in rows],
        "h": hs, "h_trace": {t: [r[f"curriculum/{t}/h"] for r in rows] for t in hs},
        "heldout_train": summary["heldout_after"],
        **eval_summary(out, name),
    }


def _table(title: str, arms: dict[str, dict], base_info: dict, base_ev: dict) -> str:
    hb = base_info.get("heldout_base") or {}
    base_eval = f"{base_ev['eval_reward']:+.3f} / {base_ev['eval_success']:.1%}"
    lines = [f"### {title}", "",
             ("| arm | RL steps (updates) | groups generated | informative groups (share) | final h | "
              "held-out d=0 (trainer, T=1) reward / success | evaluate (greedy) mean reward / success |"),
             "|---|---|---|---|---|---|---|"]
    if hb:
        lines.append(f"| base (warm start only) | 0 | — | — | — | {hb['reward']:+.3f} / {hb['success']:.1%} | "
                     f"{base_eval} |")
    for name, a in arms.items():
        h = " ".join(f"{t}:{v}" for t, v in a["h"].items())
        ho = a["heldout_train"] or {}
        lines.append(f"| {name} | {a['steps']} ({a['updates']}) | {a['groups_generated']} | "
                     f"{a['groups_generated'] - a['groups_dropped']} ({a['informative_share']:.1%}) | "
                     f"{h} | {ho.get('reward', float('nan')):+.3f} / "
                     f"{ho.get('success', float('nan')):.1%} | {a['eval_reward']:+.3f} / {a['eval_success']:.1%} |")
    tasks = list(next(iter(arms.values()))["eval"])
    ds = list(next(iter(arms.values()))["eval"][tasks[0]])
    lines += ["", f"evaluate success per task (d = {','.join(ds)}, mean reward in brackets):", "",
              "| arm | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for name, a in {"base": base_ev, **arms}.items():
        cells = []
        for t in tasks:
            s = sum(a["eval"][t][d]["success"] for d in ds) / len(ds)
            r = sum(a["eval"][t][d]["reward"] for d in ds) / len(ds)
            cells.append(f"{s:.0%} ({r:+.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(path: Path, title: str, arms: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name, a in arms.items():
        axes[0].plot(range(1, a["steps"] + 1), [sum(a["informative_trace"][:i + 1]) for i in range(a["steps"])],
                     marker=".", label=name)
        hmax = [max(v) for v in zip(*a["h_trace"].values())]
        axes[1].step(range(len(hmax)), hmax, where="post", label=name)
    axes[0].set(xlabel="RL steps done", ylabel="informative groups (cumulative)",
                title="groups that carried a gradient")
    top = max(max(max(v) for v in a["h_trace"].values()) for a in arms.values())
    axes[1].set(xlabel="RL step", ylabel="max h over tasks", title="curriculum upper edge h",
                ylim=(-0.2, max(2, top) + 0.2))
    names = list(arms)
    x = range(len(names))
    inf = [arms[n]["informative_share"] for n in names]
    suc = [arms[n]["eval_success"] for n in names]
    ho = [(arms[n]["heldout_train"] or {}).get("success", 0.0) for n in names]
    w = 0.27
    axes[2].bar([i - w for i in x], inf, w, label="informative groups")
    axes[2].bar(list(x), ho, w, label="held-out success d=0 (trainer)")
    axes[2].bar([i + w for i in x], suc, w, label="evaluate success")
    for i in x:
        axes[2].text(i, max(inf[i], ho[i], suc[i]) + 0.02, f"{inf[i]:.0%} / {ho[i]:.0%} / {suc[i]:.0%}",
                     ha="center", fontsize=7)
    axes[2].set_xticks(list(x), names)
    axes[2].set(ylim=(0, 1), title="per arm")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def part(o: argparse.Namespace, which: str) -> str:
    base_dir = base(o)
    base_info = json.loads((base_dir / "base.json").read_text())
    if which == "curriculum":
        runs = {n: arm(o, f"{o.curriculum_collection}_{n}", o.curriculum_collection, s)
                for n, s in CURRICULUM_ARMS.items()}
        tasks, ds = o.curriculum_eval_tasks, o.curriculum_eval_difficulties
        title = (f"curriculum ablation on {o.curriculum_collection}: {o.steps} RL steps x {o.num_envs} episodes, "
                 f"seed {o.seed}")
    else:
        runs = {c: arm(o, f"{c}_adaptive", c, None) for c in SCALING_ARMS}
        tasks, ds = o.scaling_eval_tasks, o.scaling_eval_difficulties
        title = f"environment scaling (adaptive): {o.steps} RL steps x {o.num_envs} episodes, seed {o.seed}"
    name = f"eval_{which}"
    evaluate(o, [base_dir, *runs.values()], tasks, ds, name)
    arms = {n: collect(r, name) for n, r in runs.items()}
    base_ev = eval_summary(base_dir, name)
    (o.root / f"{which}.json").write_text(json.dumps({"base": {**base_info, **base_ev}, "arms": arms,
                                                      "walls": o.walls}, indent=2))
    _figure(FIGURES / f"ablation_{which}.png", title, arms)
    table = _table(title, arms, base_info, base_ev)
    print(table, flush=True)
    return table


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_base":
        return _base(argv[1:])
    if argv and argv[0] == "_evaluate":
        return _evaluate(argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=("curriculum", "scaling", "all"))
    p.add_argument("--root", type=Path, default=REPO / "runs" / "ablations")
    p.add_argument("--base-collection", default="C1", help="warm-start tasks of the shared base")
    p.add_argument("--curriculum-collection", default="C1")
    p.add_argument("--warm-start-steps", type=int, default=300)
    p.add_argument("--warm-start-episodes", type=int, default=512)
    p.add_argument("--steps", type=int, default=10, help="RL steps of every arm")
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout-episodes", type=int, default=32)
    p.add_argument("--num-products", type=int, default=2000, help="the training catalog (train's default)")
    p.add_argument("--eval-episodes", type=int, default=16)
    p.add_argument("--eval-temperature", type=float, default=0.0)
    p.add_argument("--curriculum-eval-tasks", default="C1", help="a collection or comma-separated tasks")
    p.add_argument("--curriculum-eval-difficulties", default="0,1,2")
    p.add_argument("--scaling-eval-tasks", default=ALL_TASKS)
    p.add_argument("--scaling-eval-difficulties", default="0,1")
    p.add_argument("--force", action="store_true", help="redo arms whose outputs exist")
    p.add_argument("--force-eval", action="store_true", help="redo the evaluations only")
    o = p.parse_args(argv)
    o.root = o.root.resolve()
    o.walls, o.done = {}, set()    # seconds per command; outputs made by this invocation (never made twice)
    start = time.perf_counter()
    for which in (("curriculum", "scaling") if o.which == "all" else (o.which,)):
        part(o, which)
    print(f"total {time.perf_counter() - start:.0f} s wall; per command: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in o.walls.items()), flush=True)


if __name__ == "__main__":
    main()
