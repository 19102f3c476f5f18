"""`python -m ecomjax.train`: GRPO/DAPO training of a Qwen3 shopping assistant on ecomjax environments.

With no flags it runs the embedded default: a synthetic catalog, the built-in tokenizer and a tiny Qwen3
trained from scratch, warm-started on oracle transcripts, then trained with DAPO under the RLVE curriculum.
Writes `OUT/metrics.jsonl` (one JSON object per step), TensorBoard events in `OUT/tb/`, checkpoints in
`OUT/checkpoints/`, `OUT/reward.png` and `OUT/curriculum.png`, and prints a final table.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from ecomjax.catalog.synthetic import MAX_PRODUCTS, MIN_PRODUCTS
from ecomjax.curriculum import VARIANTS, CurriculumConfig, collection_tasks
from ecomjax.rl.losses import KL_ESTIMATORS, LOSS_TYPES, SCALE_REWARDS, LossConfig
from ecomjax.tasks.goal import TASK, TASK_NAMES
from ecomjax.text.prompt import PROMPT_STYLES
from ecomjax.text.tokenizer import BUILTIN_TOKENIZER

DEFAULT_OUT = "runs/train"
DEFAULT_TASKS = "STATUS"
LOG_EVERY_SFT = 50                  # warm-start lines when the output is not a terminal
TINY_HEADS = {"num_heads": 4, "num_kv_heads": 2}


def _positive(flag: str, kind=int, minimum=1):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: expected {kind.__name__}, got {text!r}") from None
        if (kind is float and not math.isfinite(value)) or value < minimum:
            raise argparse.ArgumentTypeError(f"{flag}: must be >= {minimum}, got {text!r}")
        return value
    return parse


def _fraction(flag: str):
    def parse(text: str):
        value = _positive(flag, float, 0.0)(text)
        if value > 1.0:
            raise argparse.ArgumentTypeError(f"{flag}: must be in [0, 1], got {text!r}")
        return value
    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ecomjax.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=_positive("--num-envs"), default=32, help="episodes per step (problems x group)")
    p.add_argument("--group-size", type=_positive("--group-size", minimum=2), default=8)
    p.add_argument("--collection", default=None, help="C1, C2, C4, C8 (optionally -blog); overrides --tasks")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated task names")
    p.add_argument("--steps", type=_positive("--steps", minimum=0), default=40)
    p.add_argument("--model-path", default=None, help="a local Hugging Face Qwen3 checkpoint directory")
    p.add_argument("--user-model-path", default=None, metavar="DIR",
                   help="local Qwen3 checkpoint + tokenizer that paraphrases the simulated customer (LLM tier)")
    p.add_argument("--hidden-size", type=_positive("--hidden-size", minimum=8), default=64,
                   help="width of the from-scratch model (no --model-path)")
    p.add_argument("--num-layers", type=_positive("--num-layers"), default=2)
    p.add_argument("--catalog", default="synthetic", help="synthetic | tau-retail:PATH | amazon:FILE | saved dir")
    p.add_argument("--num-products", type=_positive("--num-products", minimum=MIN_PRODUCTS), default=2_000)
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in OUT/checkpoints")
    p.add_argument("--seed", type=_positive("--seed", minimum=0), default=0)
    p.add_argument("--loss", choices=LOSS_TYPES, default="dapo")
    p.add_argument("--lr", type=_positive("--lr", float, 1e-12), default=3e-4)
    p.add_argument("--beta", type=_positive("--beta", float, 0.0), default=0.0, help="KL weight (0: no reference)")
    p.add_argument("--kl", choices=KL_ESTIMATORS, default="k3")
    p.add_argument("--scale-rewards", choices=SCALE_REWARDS, default="group")
    p.add_argument("--eps-low", type=_fraction("--eps-low"), default=0.2)
    p.add_argument("--eps-high", type=_positive("--eps-high", float, 0.0), default=0.28)
    p.add_argument("--micro-batch", type=_positive("--micro-batch", minimum=0), default=16,
                   help="sequences per gradient micro-batch (0: the whole batch at once)")
    p.add_argument("--max-new-tokens", type=_positive("--max-new-tokens"), default=96)
    p.add_argument("--max-seq-len", type=_positive("--max-seq-len", minimum=64), default=2048)
    p.add_argument("--temperature", type=_positive("--temperature", float, 0.0), default=1.0)
    p.add_argument("--prompt-style", choices=PROMPT_STYLES, default=None,
                   help="system prompt: full (default with --model-path), compact, or minimal (default for a model "
                        "trained from scratch: it only names the task)")
    p.add_argument("--tool-result-tokens", type=_positive("--tool-result-tokens", minimum=16), default=160)
    p.add_argument("--no-dynamic-sampling", action="store_true")
    p.add_argument("--overlong-tokens", type=_positive("--overlong-tokens", minimum=0), default=0,
                   help="DAPO soft overlong punishment beyond this many policy tokens per episode (0: off)")
    p.add_argument("--overlong-cache", type=_positive("--overlong-cache"), default=256,
                   help="tokens over which the overlong punishment ramps from 0 to -1")
    p.add_argument("--curriculum", choices=VARIANTS, default="rlve")
    p.add_argument("--tau-num", type=_positive("--tau-num"), default=32)
    p.add_argument("--static-difficulty", default=None, help="LO,HI: sample d ~ U[LO, HI] instead of the curriculum")
    p.add_argument("--warm-start-steps", type=_positive("--warm-start-steps", minimum=0), default=900,
                   help="supervised warm-up steps on oracle transcripts before RL (0: none)")
    p.add_argument("--warm-start-episodes", type=_positive("--warm-start-episodes"), default=2048,
                   help="distinct oracle transcripts for the warm-up")
    p.add_argument("--warm-start-batch", type=_positive("--warm-start-batch"), default=8)
    p.add_argument("--warm-start-lr", type=_positive("--warm-start-lr", float, 1e-12), default=3e-3)
    p.add_argument("--heldout-episodes", type=_positive("--heldout-episodes", minimum=0), default=64,
                   help="fixed d=0 episodes scored before and after training (0: skip)")
    p.add_argument("--checkpoint-every", type=_positive("--checkpoint-every"), default=10)
    p.add_argument("--mesh", default="auto", help="DATA,MODEL device mesh, 'auto' (all devices data-parallel) or 'none'")
    p.add_argument("--no-tensorboard", action="store_true")
    p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 for a multi-process run")
    p.add_argument("--num-processes", type=_positive("--num-processes"), default=1)
    p.add_argument("--process-id", type=_positive("--process-id", minimum=0), default=0)
    p.add_argument("--distributed-auto", action="store_true",
                   help="jax.distributed.initialize() with the platform's auto-detection (TPU pods, SLURM)")
    args = p.parse_args(argv)
    try:
        if args.collection:
            args.task_ids = collection_tasks(args.collection)
        else:
            names = [t.strip() for t in args.tasks.split(",") if t.strip()]
            unknown = [t for t in names if t not in TASK]
            if unknown or not names:
                raise ValueError(f"--tasks: unknown task(s) {unknown or args.tasks!r}; expected names from {list(TASK)}")
            args.task_ids = tuple(TASK[t] for t in names)
    except ValueError as err:
        p.error(str(err))
    if args.num_envs % args.group_size:
        p.error(f"--num-envs ({args.num_envs}) must be a multiple of --group-size ({args.group_size})")
    if args.max_new_tokens >= args.max_seq_len:
        p.error(f"--max-new-tokens ({args.max_new_tokens}) must be < --max-seq-len ({args.max_seq_len})")
    args.static = None
    if args.static_difficulty:
        try:
            lo, hi = (int(x) for x in args.static_difficulty.split(","))
            assert 0 <= lo <= hi
        except (ValueError, AssertionError):
            p.error(f"--static-difficulty: expected LO,HI with 0 <= LO <= HI, got {args.static_difficulty!r}")
        args.static = (lo, hi)
    if args.mesh not in ("auto", "none"):
        try:
            args.mesh_shape = tuple(int(x) for x in args.mesh.split(","))
            assert len(args.mesh_shape) == 2 and min(args.mesh_shape) >= 1
        except (ValueError, AssertionError):
            p.error(f"--mesh: expected DATA,MODEL (e.g. 4,2), 'auto' or 'none', got {args.mesh!r}")
    if args.model_path is not None and not Path(args.model_path).is_dir():
        p.error(f"--model-path: {args.model_path!r} is not a directory")
    if args.user_model_path is not None and not Path(args.user_model_path).is_dir():
        p.error(f"--user-model-path: {args.user_model_path!r} is not a directory")
    if args.resume and not (Path(args.out) / "checkpoints").is_dir():
        p.error(f"--resume: no checkpoints in {str(Path(args.out) / 'checkpoints')!r}")
    if args.coordinator is not None and not args.process_id < args.num_processes:
        p.error(f"--process-id ({args.process_id}) must be < --num-processes ({args.num_processes})")
    if args.coordinator is None and args.num_processes > 1:
        p.error("--num-processes > 1 needs --coordinator HOST:PORT")
    if args.num_products > MAX_PRODUCTS:
        p.error(f"--num-products must be <= {MAX_PRODUCTS}, got {args.num_products}")
    return args


def _mesh(args, batch: int):
    import jax

    from ecomjax.models.qwen3 import make_mesh

    devices = jax.local_devices()                       # each process shards its own copy over its devices
    if args.mesh == "none":
        return None
    if args.mesh == "auto":
        data = math.gcd(len(devices), batch)
        return None if data == 1 else make_mesh(data, 1, devices)
    return make_mesh(*args.mesh_shape, devices)


def build(args):
    """(trainer, tokenizer info) for parsed args."""
    from flax import nnx

    from ecomjax.catalog.spec import load_spec
    from ecomjax.env import make
    from ecomjax.evaluate import customer_llm
    from ecomjax.models.qwen3 import Qwen3, SamplingParams, from_pretrained, tiny_config
    from ecomjax.rl.rollout import RolloutConfig
    from ecomjax.rl.trainer import TrainConfig, Trainer
    from ecomjax.text import TextEnv, load_tokenizer

    try:
        catalog, vocab = load_spec(args.catalog, args.num_products, args.seed)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"--catalog: {err}") from None
    tokenizer = load_tokenizer(args.model_path)
    env_id = "C8" if TASK["JOURNEY"] in args.task_ids else None
    env, params = make(env_id or TASK_NAMES[args.task_ids[0]], catalog=catalog)
    if env_id is None and len(args.task_ids) > 1:
        params = params.replace(tasks=tuple(args.task_ids))
    style = args.prompt_style or ("full" if args.model_path else "minimal")
    tenv = TextEnv(env, params, vocab, tokenizer, tool_result_tokens=args.tool_result_tokens, prompt_style=style,
                   customer_llm=customer_llm(args.user_model_path))
    if args.model_path:
        model = from_pretrained(args.model_path)
    else:
        model = Qwen3(tiny_config(vocab_size=len(tokenizer), hidden_size=args.hidden_size,
                                  intermediate_size=3 * args.hidden_size, num_layers=args.num_layers,
                                  head_dim=max(args.hidden_size // TINY_HEADS["num_heads"], 4), **TINY_HEADS),
                      rngs=nnx.Rngs(args.seed))
    loss = LossConfig(loss_type=args.loss, eps_low=args.eps_low, eps_high=args.eps_high, beta=args.beta,
                      kl_estimator=args.kl, scale_rewards=args.scale_rewards, max_tokens=args.max_seq_len)
    cfg = TrainConfig(
        num_envs=args.num_envs, group_size=args.group_size, tasks=tuple(args.task_ids), steps=args.steps,
        lr=args.lr, micro_batch=args.micro_batch, loss=loss, seed=args.seed,
        rollout=RolloutConfig(max_new_tokens=args.max_new_tokens, max_seq_len=args.max_seq_len,
                              sampling=SamplingParams(temperature=args.temperature)),
        dynamic_sampling=not args.no_dynamic_sampling, static_difficulty=args.static,
        overlong_tokens=args.overlong_tokens, overlong_cache=min(args.overlong_cache, args.overlong_tokens or 1),
        curriculum=CurriculumConfig(variant=args.curriculum, tau_num=args.tau_num))
    reference = None
    if args.beta > 0:
        reference = from_pretrained(args.model_path) if args.model_path else nnx.clone(model)
    return Trainer(model, tenv, cfg, mesh=_mesh(args, args.micro_batch or args.num_envs), reference=reference)


def heldout(trainer, episodes: int) -> dict:
    """Mean reward and success of the current policy on fixed held-out episodes at d = 0 (their own streams,
    the same in every run): the same episodes before and after training, so the two numbers compare models only."""
    import numpy as np

    from ecomjax.core.keys import Stream, stream_key, stream_seeds
    from ecomjax.rl.rollout import rollout

    n = -(-episodes // trainer.cfg.num_envs) * trainer.cfg.num_envs
    rewards, correct = [], []
    for start in range(0, n, trainer.cfg.num_envs):
        idx = range(start, start + trainer.cfg.num_envs)
        tasks = [TASK_NAMES[trainer.cfg.tasks[i % len(trainer.cfg.tasks)]] for i in idx]
        seeds = stream_seeds(Stream.HELDOUT_PROBLEM, np.asarray(idx)).tolist()
        ro = rollout(trainer.model, trainer.tenv, trainer.renderer, seeds, tasks, [0] * len(tasks),
                     stream_key(0, Stream.HELDOUT_ROLLOUT), trainer.cfg.rollout, first_index=start)
        rewards += ro.rewards.tolist()
        correct += ro.is_correct.tolist()
    return {"reward": sum(rewards) / n, "success": sum(correct) / n, "episodes": n}


def _final_table(console, rows: list[dict], tasks: tuple[int, ...], before: dict | None, after: dict | None) -> None:
    from rich.table import Table

    def window(part):
        mean = lambda k: sum(r.get(k, 0.0) for r in part) / max(len(part), 1)  # noqa: E731
        return f"{mean('reward_mean'):+.3f}", f"{mean('is_correct_mean'):.1%}"

    k = max(1, min(5, len(rows) // 2))
    table = Table(title="training summary")
    for col in ("", "mean reward", "success", *[f"{TASK_NAMES[t]} h" for t in tasks]):
        table.add_column(col)
    h = lambda r: [str(r.get(f"curriculum/{TASK_NAMES[t]}/h", 0)) for t in tasks]  # noqa: E731
    if before is not None:
        table.add_row(f"held-out d=0, untrained ({before['episodes']} ep.)", f"{before['reward']:+.3f}",
                      f"{before['success']:.1%}", *["0"] * len(tasks))
    if rows:
        table.add_row(f"RL, first {k} steps", *window(rows[:k]), *h(rows[0]))
        table.add_row(f"RL, last {k} steps", *window(rows[-k:]), *h(rows[-1]))
    if after is not None:
        table.add_row(f"held-out d=0, trained ({after['episodes']} ep.)", f"{after['reward']:+.3f}",
                      f"{after['success']:.1%}", *h(rows[-1]) if rows else ["-"] * len(tasks))
    console.print(table)


def checkpoint_extra(args: argparse.Namespace) -> dict:
    """What a checkpoint records of the run besides the trainer: its tokenizer and catalog (spec, size and
    generator seed), so `evaluate --policy checkpoint:OUT` replays them."""
    return {"tokenizer": args.model_path or BUILTIN_TOKENIZER, "catalog": args.catalog,
            "num_products": args.num_products, "catalog_seed": args.seed}


def main(argv=None) -> dict:
    args = parse_args(argv)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ecomjax.rl import checkpoint
    from ecomjax.rl.runlog import RunLog, plot_run
    from ecomjax.rl.warmstart import WarmStartConfig, warm_start

    from ecomjax.rl import distributed

    if args.coordinator is not None or args.distributed_auto:
        distributed.initialize(args.coordinator, args.num_processes if args.coordinator else None,
                               args.process_id if args.coordinator else None)
    lead = distributed.process()[0] == 0
    console = Console(quiet=not lead)
    start = time.perf_counter()
    out = Path(args.out)
    trainer = build(args)
    ckpt = checkpoint.manager(out / "checkpoints")
    try:
        meta = checkpoint.restore(ckpt, trainer) if args.resume else None
    except ValueError as err:
        raise SystemExit(f"--resume: {err}") from None
    if meta is None and ckpt.latest_step() is not None:
        raise SystemExit(f"--out {str(out)!r} already holds checkpoints; pass --resume or another --out")
    log = RunLog(out if lead else out / f"process_{distributed.process()[0]}",
                 resume_step=trainer.step_index if meta else 0, tensorboard=lead and not args.no_tensorboard)
    console.print(f"model {trainer.model.config.hidden_size}d x {trainer.model.config.num_layers} layers, "
                  f"vocab {trainer.model.config.vocab_size}; tasks {[TASK_NAMES[t] for t in args.task_ids]}; "
                  f"{args.num_envs} episodes/step; {'resumed at step ' + str(trainer.step_index) if meta else 'new run'}")
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console) as progress:
        before = heldout(trainer, args.heldout_episodes) if meta is None and args.heldout_episodes else None
        if before is not None:
            console.print(f"held-out d=0 before training: reward {before['reward']:+.3f}, success {before['success']:.1%}")
        if meta is None and args.warm_start_steps and not args.model_path:
            bar = progress.add_task("warm start", total=args.warm_start_steps, info="")
            ws = WarmStartConfig(episodes=args.warm_start_episodes, steps=args.warm_start_steps,
                                 batch=args.warm_start_batch, lr=args.warm_start_lr, max_seq_len=args.max_seq_len,
                                 play_batch=args.num_envs)
            names = [TASK_NAMES[t] for t in args.task_ids if t != TASK["JOURNEY"]] or ["PD"]
            def report(i: int, n: int, loss: float) -> None:
                progress.update(bar, completed=i, total=n, info=f"loss {loss:.3f}")
                if not console.is_terminal and (i % LOG_EVERY_SFT == 0 or i == n):
                    console.print(f"warm start {i}/{n} loss {loss:.3f} ({time.perf_counter() - start:.0f} s)")

            losses = warm_start(trainer.model, trainer.tenv, trainer.renderer, ws, names, [0, 0, 1], args.seed,
                                progress=report)
            console.print(f"warm start: {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        bar = progress.add_task("train", total=args.steps, completed=trainer.step_index, info="")
        while trainer.step_index < args.steps:
            res = trainer.step()
            m = {**res.metrics, "seconds": time.perf_counter() - start}
            log.write(m)
            windows = " ".join(f"{TASK_NAMES[t]}:h{m[f'curriculum/{TASK_NAMES[t]}/h']}" for t in args.task_ids)
            line = f"reward {m['reward_mean']:+.3f} success {m['is_correct_mean']:.0%} {windows}"
            progress.update(bar, completed=trainer.step_index, info=line)
            if not console.is_terminal:
                console.print(f"step {m['step']}: {line} ({m['seconds']:.0f} s)")
            if lead and (trainer.step_index % args.checkpoint_every == 0 or trainer.step_index == args.steps):
                checkpoint.save(ckpt, trainer, extra=checkpoint_extra(args))
    ckpt.wait_until_finished()
    log.close()
    files = plot_run(log.rows, out) if lead else []
    after = heldout(trainer, args.heldout_episodes) if args.heldout_episodes else None
    _final_table(console, log.rows, args.task_ids, before, after)
    summary = {"steps": trainer.step_index, "seconds": time.perf_counter() - start, "out": str(out),
               "plots": [str(f) for f in files], "heldout_before": before, "heldout_after": after}
    if lead:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"wrote {out / 'metrics.jsonl'}, {', '.join(str(f) for f in files)} and checkpoints in "
                  f"{out / 'checkpoints'} ({summary['seconds']:.0f} s)")
    return summary


if __name__ == "__main__":
    main()
