"""`python -m ecomjax.evaluate`: success, rewards, pass@1 / pass^k and failure modes per task and difficulty.

Writes `OUT/results.json` and `OUT/success_vs_difficulty.png` and prints a table.
"""

import argparse
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ecomjax import oracle
from ecomjax.catalog import load_spec
from ecomjax.catalog.spec import SPEC_FORMS
from ecomjax.catalog.synthetic import DEFAULT_NUM_PRODUCTS, MAX_PRODUCTS, MIN_PRODUCTS
from ecomjax.core.keys import Stream, stream_key, stream_seeds
from ecomjax.curriculum import collection_tasks
from ecomjax.env import make
from ecomjax.tasks.action import noop_action
from ecomjax.tasks.episode import TERMINATIONS
from ecomjax.tasks.goal import TASK, TASK_NAMES
from ecomjax.testing.random_policy import random_action
from ecomjax.testing.rollout import batch_runner

POLICIES = ("oracle", "random", "noop")
CHECKPOINT = "checkpoint:"
MAX_DIFFICULTY = 100
MAX_EPISODES = 100_000


def _noop(key, state, params):
    return noop_action(params.cap)


DEFAULT_CATALOG = "synthetic"


def _policy(spec: str):
    """A structured policy, or the path of a trained checkpoint for `checkpoint:PATH`."""
    if spec == "oracle":
        return oracle.act
    if spec == "random":
        return random_action
    if spec == "noop":
        return _noop
    if spec.startswith(CHECKPOINT):
        path = spec[len(CHECKPOINT):].strip()
        if not path or not Path(path).is_dir():
            raise SystemExit(f"--policy {spec}: {path!r} is not a directory (a training run's --out)")
        return path
    raise SystemExit(f"--policy: unknown value {spec!r}; expected one of {list(POLICIES)} or checkpoint:PATH")


def _check_user_model(args: argparse.Namespace) -> None:
    """--user-model-path only matters when a checkpoint plays through the text protocol, and must be a directory."""
    path = args.user_model_path
    if path is None:
        return
    if not args.policy.startswith(CHECKPOINT):
        raise SystemExit(f"--user-model-path: only used with --policy checkpoint:PATH (the {args.policy!r} policy "
                         "acts on the structured state and never reads the customer's text)")
    if not Path(path).is_dir():
        raise SystemExit(f"--user-model-path: {path!r} is not a directory")


def customer_llm(path: str | None):
    """The LLM customer tier of `--user-model-path` (None without it); a bad directory ends with one message."""
    if path is None:
        return None
    from ecomjax.user.llm import LLMCustomer

    try:
        return LLMCustomer.from_pretrained(path)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"--user-model-path: {err}") from None


def _int_list(flag: str, text: str, lo: int, hi: int) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"{flag}: expected comma-separated integers, got {text!r}") from None
    bad = [v for v in values if not lo <= v <= hi]
    if not values or bad:
        raise SystemExit(f"{flag}: values must be in [{lo}, {hi}], got {text!r}")
    return values


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ecomjax.evaluate", description=__doc__)
    p.add_argument("--policy", default="oracle", help="oracle | random | noop | checkpoint:PATH")
    p.add_argument("--collection", default="C8")
    p.add_argument("--tasks", default="", help="comma-separated task names (default: the collection's)")
    p.add_argument("--difficulties", default="0,5,10")
    p.add_argument("--episodes", type=int, default=64, help="episodes per task and difficulty")
    p.add_argument("--k", type=int, default=4, help="trials per episode for pass^k")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--catalog", default=None,
                   help=" | ".join(SPEC_FORMS) + f" (default: a checkpoint's training catalog, else {DEFAULT_CATALOG})")
    p.add_argument("--num-products", type=int, default=None,
                   help=f"size of the synthetic catalog (default: a checkpoint's, else {DEFAULT_NUM_PRODUCTS:,})")
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of checkpoint policies")
    p.add_argument("--user-model-path", default=None, metavar="DIR",
                   help="a local Qwen3 checkpoint with its tokenizer that paraphrases the simulated customer's "
                        "messages (LLM customer tier; only with --policy checkpoint:PATH)")
    args = p.parse_args(argv)
    policy = _policy(args.policy)
    _check_user_model(args)
    _resolve_catalog(args, policy if isinstance(policy, str) else None)
    try:
        collection = collection_tasks(args.collection)
    except ValueError as err:
        raise SystemExit(f"--collection: {err}") from None
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] or [TASK_NAMES[i] for i in collection]
    unknown = [t for t in names if t not in TASK]
    if unknown:
        raise SystemExit(f"--tasks: unknown task(s) {unknown}; expected names from {list(TASK_NAMES)}")
    args.task_names = names
    args.difficulty_list = _int_list("--difficulties", args.difficulties, 0, MAX_DIFFICULTY)
    if not 1 <= args.episodes <= MAX_EPISODES:
        raise SystemExit(f"--episodes must be in [1, {MAX_EPISODES}], got {args.episodes}")
    if not 1 <= args.k <= 64:
        raise SystemExit(f"--k must be in [1, 64], got {args.k}")
    if args.seed < 0:
        raise SystemExit(f"--seed must be >= 0, got {args.seed}")
    if not MIN_PRODUCTS <= args.num_products <= MAX_PRODUCTS:
        raise SystemExit(f"--num-products must be in [{MIN_PRODUCTS}, {MAX_PRODUCTS}], got {args.num_products}")
    return args


def pass_hat_k(successes: np.ndarray, k: int) -> float:
    """τ-bench pass^k: mean over episodes of C(c, k) / C(n, k) for c successes in n trials. [E, n]."""
    n = successes.shape[1]
    c = successes.sum(axis=1)
    return float(np.mean([math.comb(int(ci), k) / math.comb(n, k) for ci in c]))


def summarise(infos: list[dict], states_tool_calls: list[np.ndarray], k: int) -> dict:
    """Metrics of one (task, difficulty) cell from k trials of the same episodes."""
    correct = np.stack([np.asarray(i["is_correct"]) for i in infos], axis=1)            # [E, k]
    cat = lambda key: np.concatenate([np.asarray(i[key], np.float64) for i in infos])  # noqa: E731
    calls = np.concatenate(states_tool_calls).astype(np.float64)
    reasons = [r if isinstance(r, str) else TERMINATIONS[int(r)] for i in infos for r in np.atleast_1d(
        np.asarray(i["termination_reason"], object))]
    return {
        "episodes": int(correct.shape[0]), "trials": k, "success_rate": float(correct.mean()),
        "pass@1": float(correct.mean()), f"pass^{k}": pass_hat_k(correct, k),
        "reward": float(cat("reward").mean()), "r_task": float(cat("r_task").mean()),
        "r_eff": float(cat("r_eff").mean()), "r_hall": float(cat("r_hall").mean()),
        "hallucination_rate": float(cat("hall_rate").mean()),
        "tool_error_rate": float(cat("tool_errors").sum() / max(calls.sum(), 1.0)),
        "mean_turns": float(cat("turns").mean()),
        "terminations": {r: reasons.count(r) for r in sorted(set(reasons))},
    }


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure                     # no pyplot: leaves a notebook's backend alone

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for task, cells in results.items():
        ds = sorted(int(d) for d in cells)
        ax.plot(ds, [cells[str(d)]["success_rate"] for d in ds], marker="o", label=task)
    ax.set_xlabel("difficulty d")
    ax.set_ylabel("success rate (is_correct)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _resolve_catalog(args: argparse.Namespace, checkpoint_dir: str | None) -> None:
    """Fills the catalog flags left out: a checkpoint is evaluated on the catalog it was trained on (same
    spec, size and generator seed), anything else on the defaults with `--seed`."""
    trained = {}
    if checkpoint_dir is not None and (args.catalog is None or args.num_products is None):
        from ecomjax.rl.checkpoint import find_manager, read_meta

        try:
            trained = read_meta(find_manager(checkpoint_dir)) or {}
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"--policy checkpoint:{checkpoint_dir}: {err}") from None
    same = args.catalog is None or args.catalog == trained.get("catalog")
    args.catalog = args.catalog or trained.get("catalog", DEFAULT_CATALOG)
    if args.num_products is None:
        args.num_products = trained.get("num_products", DEFAULT_NUM_PRODUCTS)
    args.catalog_seed = trained.get("catalog_seed", args.seed) if same else args.seed


def load_catalog(args: argparse.Namespace):
    """The catalog `--catalog` names (one clear message naming the flag value when it cannot be loaded)."""
    try:
        return load_spec(args.catalog, args.num_products, args.catalog_seed)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"--catalog {args.catalog!r}: {err}") from None


def model_runner(path: str, env, params, vocab, args):
    """`run(keys, d, task, trial) -> (final states' tool-call counts, infos)` for a trained checkpoint: the
    model plays the episodes through the text protocol (TextEnv) with its training rollout limits."""
    from ecomjax.models.qwen3 import GREEDY, SamplingParams
    from ecomjax.rl.checkpoint import find_manager, load_policy, saved_tokenizer
    from ecomjax.rl.rollout import RolloutConfig, rollout
    from ecomjax.text import TextEnv
    from ecomjax.text.tokens import Renderer

    try:
        model, meta = load_policy(path)
        tokenizer = saved_tokenizer(find_manager(path), meta)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"--policy checkpoint:{path}: {err}") from None
    text = meta.get("text", {})                              # absent in checkpoints older than the field
    tenv = TextEnv(env, params, vocab, tokenizer, customer_llm=customer_llm(args.user_model_path), **text)
    limits = meta["train_config"]["rollout"]
    sampling = GREEDY if args.temperature == 0 else SamplingParams(temperature=args.temperature)
    cfg = RolloutConfig(max_new_tokens=limits["max_new_tokens"], max_seq_len=limits["max_seq_len"], sampling=sampling)
    renderer = Renderer(tokenizer)

    def run(keys, d, task, trial):
        n = keys.shape[0]
        seeds = stream_seeds(Stream.EVAL_PROBLEM, args.seed, int(task), int(d), np.arange(n)).tolist()
        ro = rollout(model, tenv, renderer, seeds, [TASK_NAMES[int(task)]] * n, [int(d)] * n,
                     stream_key(args.seed, Stream.EVAL_ROLLOUT, int(task), int(d), trial), cfg)
        infos = {k: np.asarray([i[k] for i in ro.infos], object if k == "termination_reason" else None)
                 for k in ("is_correct", "reward", "r_task", "r_eff", "r_hall", "hall_rate", "tool_errors", "turns",
                           "termination_reason")}
        return np.asarray(tenv.host_states.world.tool_calls), infos

    run.customer_llm_stats = tenv.customer_llm_stats
    run.text_env = tenv
    return run


def main(argv=None) -> dict:
    args = parse_args(argv)
    console = Console()
    catalog, vocab = load_catalog(args)
    env, params = make(args.collection if not args.tasks else "C8", catalog=catalog)
    policy = _policy(args.policy)
    run = model_runner(policy, env, params, vocab, args) if isinstance(policy, str) else batch_runner(env, policy, params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("evaluating", total=len(args.task_names) * len(args.difficulty_list) * args.k)
        for name in args.task_names:
            for d in args.difficulty_list:
                key = stream_key(args.seed, Stream.EVAL_EPISODE, TASK[name], d)
                keys = jax.random.split(key, args.episodes)
                infos, calls = [], []
                for trial in range(args.k):
                    if isinstance(policy, str):
                        tool_calls, info = run(keys, d, TASK[name], trial)
                    else:
                        states, ts = run(keys, jnp.int32(d), jnp.int32(TASK[name]), trial)
                        tool_calls, info = states.world.tool_calls, jax.device_get({**ts.info, "reward": ts.reward})
                    infos.append(info)
                    calls.append(np.asarray(tool_calls))
                    progress.advance(bar)
                results.setdefault(name, {})[str(d)] = summarise(infos, calls, args.k)
    payload = {"policy": args.policy, "collection": args.collection, "seed": args.seed, "k": args.k,
               "catalog": args.catalog, "num_products": catalog.num_products, "seconds": time.perf_counter() - start,
               "results": results}
    stats = getattr(run, "customer_llm_stats", None)
    if stats is not None:
        payload["customer_llm"] = stats.as_dict()
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    plot(results, out / "success_vs_difficulty.png")
    table = Table(title=f"{args.policy} on {', '.join(args.task_names)} ({args.episodes} episodes x {args.k} trials)")
    for col in ("task", "d", "success", "pass^k", "reward", "r_task", "r_eff", "r_hall", "tool err", "turns", "ends"):
        table.add_column(col)
    for name, cells in results.items():
        for d, m in cells.items():
            ends = ", ".join(f"{k}:{v}" for k, v in m["terminations"].items())
            table.add_row(name, d, f"{m['success_rate']:.1%}", f"{m[f'pass^{args.k}']:.1%}", f"{m['reward']:+.3f}",
                          f"{m['r_task']:+.3f}", f"{m['r_eff']:+.3f}", f"{m['r_hall']:+.3f}",
                          f"{m['tool_error_rate']:.1%}", f"{m['mean_turns']:.1f}", ends)
    console.print(table)
    if "customer_llm" in payload:
        c = payload["customer_llm"]
        console.print(f"LLM customer: {c['accepted']}/{c['requests']} paraphrases used, fallbacks {c['fallbacks']}")
    console.print(f"wrote {out / 'results.json'} and {out / 'success_vs_difficulty.png'}")
    return payload


if __name__ == "__main__":
    main()
