"""`python -m ecomjax.inspect`: play one episode with a policy and show all of it.

    python -m ecomjax.inspect --task CART --difficulty 5 --seed 3 --policy oracle --html out.html

Prints, with `rich`, and writes as one self-contained HTML page (inline CSS, no external assets):
the hidden goal decoded into text (constraints with names and values and whether the customer stated,
revealed or never told them; target products with ids and titles; orders, lines, statuses; policy rule ids
and expected answers; budgets), every message the agent saw and wrote (tool calls with their arguments and
results as the agent saw them, the customer's replies) and the reward breakdown (`info`: r_task, r_eff,
r_hall, is_correct, termination_reason and per-intent scores with the verifier's named parts).

Policies: `oracle` (the scripted solver's JSON, `TextEnv.oracle_action`), `noop` (a message with no tool
call and no answer, every turn) and `random`: valid-JSON turns drawn from `--seed` and the task (0-2 calls
from a menu of tools with random product ids, words and order ids; with probability 0.2 an answer for the
task with random ids and `done`). A random turn is always well-formed JSON, so it shows what the verifier does with wrong
answers rather than ending at once with `format_invalid` as `testing.random_policy` turns often would.
"""

from __future__ import annotations

import argparse
import functools
import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ecomjax.catalog.spec import SPEC_FORMS, load_spec
from ecomjax.catalog.synthetic import DEFAULT_NUM_PRODUCTS, MAX_PRODUCTS, MIN_PRODUCTS
from ecomjax.env import make
from ecomjax.tasks.constraints import CONSTRAINT_KEYS, OPS
from ecomjax.tasks.goal import (MAX_CONSTRAINTS, MAX_ITEMS, NUM_SLOTS, PERSONAS, SLOT_BUDGET, SLOT_ORDER,
                                SLOT_QTY, SLOT_REASON, SLOT_VARIANT, TASK, TASK_NAMES)
from ecomjax.text.agent import WORKING
from ecomjax.text.env import DEFAULT_TOOL_RESULT_TOKENS, TextEnv
from ecomjax.text.ids import order_id, order_line_id, variant_id
from ecomjax.text.results import compact_json
from ecomjax.user.text import format_constraint, money, slot_value
from ecomjax.world import policy_kb
from ecomjax.world.state import ORDER_STATUSES, RETURN_REASONS

POLICIES = ("oracle", "noop", "random")
MAX_DIFFICULTY = 100
DEFAULT_MAX_TURNS = 200
MAX_TURNS_LIMIT = 1000
MIN_TOOL_RESULT_TOKENS = 16
STOP_REASON = "inspect_max_turns"
RANDOM_SALT = 0x1A5EC7
P_RANDOM_ANSWER = 0.2
MAX_RANDOM_CALLS = 2
RANDOM_ORDERS = 6
POOL_SHOWN = 5
OP_SYMBOLS = dict(zip(OPS, ("=", "≤", "≥")))
# The verifiers' `parts` (env.NUM_PARTS per intent), named from each task's verify docstring; "" = unused.
PART_LABELS: dict[str, tuple[str, ...]] = {
    "PD": ("r_rank", "r_cons", "r_oos", "oos_rate"), "SUB": ("r_rank", "r_cons", "r_oos", "oos_rate"),
    "CART": ("F1", "precision", "recall", "matched units"),
    "RETURN": ("r_sel", "r_ret", "r_rep", "returns on other lines"), "STATUS": ("r_oid", "r_stat", "", ""),
    "POLICY": ("r_task", "numeric rule", "ρ", "categorical match"),
    "BUNDLE": ("F1", "precision", "recall", "budget penalty"),
}
ANCHOR_LABELS = {"PD": "target product", "SUB": "original product (out of stock)", "RETURN": "product to return",
                 "STATUS": "ordered product"}
SUMMARY_KEYS = ("reward", "r_task", "r_eff", "r_hall", "is_correct", "termination_reason", "tool_errors",
                "hall_rate", "turns", "truncated")


# ------------------------------------------------------------------------------------------------ records


@dataclass
class IntentView:
    """One intent of the hidden goal as text: (label, value) facts and the slots the customer can tell."""

    index: int
    task: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    slots: list[tuple[str, str, str]] = field(default_factory=list)      # (slot, requirement, disclosure)


@dataclass
class Turn:
    """One agent turn: what it sent, the calls it made (arguments, what came back) and the replies."""

    action: str
    calls: list[dict]
    replies: list[str]
    reward: float
    done: bool
    format_error: str | None


@dataclass
class EpisodeRecord:
    """A played episode, as plain data (what the renderers draw)."""

    task: str
    difficulty: int
    seed: int
    policy: str
    catalog: str
    num_products: int
    system: str
    opening: str
    goal: list[IntentView]
    turns: list[Turn]
    info: dict
    reward: float


# ------------------------------------------------------------------------------------------------ goal


def _product(p: int, tenv: TextEnv) -> str:
    return f"{tenv.vocab.product_id(p)} — {tenv.vocab.title(p)}"


def _disclosure(slot: int, goal: Any, revealed: np.ndarray) -> str:
    if bool(goal.mentioned[slot]):
        return "stated in the opening message"
    return "revealed when asked" if bool(revealed[slot]) else "never told"


def _slot_name(slot: int) -> str:
    if slot < MAX_CONSTRAINTS:
        return f"constraint {slot + 1}"
    if slot < SLOT_QTY:
        return f"item {slot - SLOT_VARIANT + 1} variant"
    if slot < SLOT_ORDER:
        return f"item {slot - SLOT_QTY + 1} quantity"
    return {SLOT_ORDER: "order", SLOT_BUDGET: "budget", SLOT_REASON: "return reason"}[slot]


def _slot_requirement(slot: int, goal: Any, world: Any, tenv: TextEnv) -> str:
    if slot < MAX_CONSTRAINTS:
        key, op, value = int(goal.c_key[slot]), int(goal.c_op[slot]), float(goal.c_value[slot])
        return (f"{CONSTRAINT_KEYS[key]} {OP_SYMBOLS[OPS[op]]} "
                f"{slot_value(slot, goal, world, tenv.catalog, tenv.vocab) or value} "
                f"(\"{format_constraint(key, op, value, tenv.vocab)}\")")
    return slot_value(slot, goal, world, tenv.catalog, tenv.vocab) or "—"


def _slots(goal: Any, world: Any, revealed: np.ndarray, tenv: TextEnv) -> list[tuple[str, str, str]]:
    return [(_slot_name(s), _slot_requirement(s, goal, world, tenv), _disclosure(s, goal, revealed))
            for s in range(NUM_SLOTS) if bool(goal.needed[s])]


def _item_facts(goal: Any, world: Any, tenv: TextEnv) -> list[tuple[str, str]]:
    facts = []
    for n in range(MAX_ITEMS):
        p = int(goal.items[n])
        if p < 0:
            continue
        v = int(goal.item_variant[n])
        variant = "any variant" if v < 0 else (
            f"variant {variant_id(tenv.vocab.product_id(p), v)} "
            f"({slot_value(SLOT_VARIANT + n, goal, world, tenv.catalog, tenv.vocab) or '?'})")
        facts.append((f"item {n + 1}", f"{int(goal.item_qty[n])} × {_product(p, tenv)}, {variant}"))
    return facts


def _order_facts(task: str, goal: Any, world: Any, tenv: TextEnv) -> list[tuple[str, str]]:
    o, line = int(goal.order), int(goal.line)
    facts = [("order", order_id(o))] if o >= 0 else []
    if o >= 0 and line >= 0:
        p = int(world.line_product[o, line])
        facts.append(("order line", f"{order_line_id(o, line)}: {int(world.line_qty[o, line])} × {_product(p, tenv)}"))
    if int(goal.status) >= 0:
        facts.append(("order status", ORDER_STATUSES[int(goal.status)]))
    if task == "RETURN":
        facts += [("line eligible for return", str(bool(goal.eligible))),
                  ("reason", RETURN_REASONS[int(goal.reason)]),
                  ("wants", "an exchange meeting the constraints" if bool(goal.replacement) else "a refund")]
    return facts


def _policy_facts(goal: Any) -> list[tuple[str, str]]:
    rule, row = int(goal.rule), int(goal.row)
    if rule < 0:
        return []
    r = policy_kb.RULES[rule]
    return [("policy rule", f"{r.rule_id} — {r.title}"), ("answer-table row", str(row + 1)),
            ("expected answer", policy_kb.format_answer(rule, row))]


def _bundle_facts(goal: Any, tenv: TextEnv) -> list[tuple[str, str]]:
    cats = [tenv.vocab.category_name(int(c)) for c in goal.cats if int(c) >= 0]
    facts = [("required categories", ", ".join(cats))] if cats else []
    if int(goal.budget) >= 0:
        facts.append(("budget", money(int(goal.budget) / 100.0)))
    return facts


def _pool_facts(goal: Any, tenv: TextEnv) -> list[tuple[str, str]]:
    pool = [(float(u), int(p)) for p, u in zip(goal.pool, goal.pool_util) if int(p) >= 0]
    if not pool:
        return []
    best = sorted(pool, reverse=True)[:POOL_SHOWN]
    shown = "; ".join(f"{_product(p, tenv)} (utility {u:.3f})" for u, p in best)
    size = f"{len(pool)} product{'s' if len(pool) != 1 else ''}"
    return [("feasible pool", f"{size}; best: {shown}"), ("IDCG", f"{float(goal.idcg):.3f}")]


def decode_goal(tenv: TextEnv, start: Any, end: Any) -> list[IntentView]:
    """The hidden goal of episode 0 as text: `start` is the host state after reset (its world holds the
    orders the goal points at), `end` the final one (what the customer revealed)."""
    views = []
    for i in range(int(start.num_intents)):
        goal = jax_index(start.goal, i)
        task = TASK_NAMES[int(goal.task)]
        view = IntentView(i, task, [("task", task), ("persona", PERSONAS[int(goal.persona)])])
        if int(goal.anchor) >= 0:
            view.facts.append((ANCHOR_LABELS.get(task, "product"), _product(int(goal.anchor), tenv)))
        if int(goal.k_rec) > 0:
            view.facts.append(("recommendations scored (k_rec)", str(int(goal.k_rec))))
        view.facts += (_item_facts(goal, start.world, tenv) + _order_facts(task, goal, start.world, tenv)
                       + _policy_facts(goal) + _bundle_facts(goal, tenv) + _pool_facts(goal, tenv))
        view.slots = _slots(goal, start.world, np.asarray(end.revealed[i]), tenv)
        views.append(view)
    return views


def jax_index(tree: Any, i: int) -> Any:
    """Entry i of every leaf of a host pytree."""
    return jax.tree.map(lambda x: x[i], tree)


# ------------------------------------------------------------------------------------------------ policies


def _random_call(rng: np.random.Generator, vocab: Any) -> dict:
    pid = vocab.product_id(int(rng.integers(vocab.num_products)))
    words = " ".join(rng.permutation(vocab.title(int(rng.integers(vocab.num_products))).split())[:3].tolist())
    order = order_id(int(rng.integers(RANDOM_ORDERS)))
    menu = (
        ("catalog.search", {"query": words, "top_k": int(rng.integers(1, 21))}),
        ("catalog.get_product", {"product_id": pid}),
        ("cart.view", {}),
        ("cart.add", {"product_id": pid, "quantity": int(rng.integers(1, 4))}),
        ("order.list", {"days": int(rng.integers(7, 366))}),
        ("order.get_status", {"order_id": order}),
        ("policy.search", {"query": words}),
        ("datetime.now", {}),
    )
    name, args = menu[int(rng.integers(len(menu)))]
    return {"name": name, "args": args}


def _random_answer(rng: np.random.Generator, task: str, vocab: Any) -> dict:
    o = int(rng.integers(RANDOM_ORDERS))
    answer: dict[str, Any] = {
        "env": task, "recommended_product_ids": [vocab.product_id(int(p)) for p in
                                                 rng.integers(vocab.num_products, size=int(rng.integers(1, 4)))],
        "selected_order_id": order_id(o), "selected_line_id": order_line_id(o, int(rng.integers(2))),
        "order_status": ORDER_STATUSES[int(rng.integers(len(ORDER_STATUSES)))],
        "policy_answer": int(rng.integers(0, 31)), "done": True,
    }
    if task == "JOURNEY":
        answer["intent"] = 0
    return answer


def random_turn(rng: np.random.Generator, task: str, vocab: Any) -> str:
    """A random but well-formed JSON turn (see the module docstring)."""
    turn: dict[str, Any] = {"assistant_message": WORKING}
    calls = [_random_call(rng, vocab) for _ in range(int(rng.integers(MAX_RANDOM_CALLS + 1)))]
    if calls:
        turn["tool_calls"] = calls
    if rng.random() < P_RANDOM_ANSWER:
        turn["answer"] = _random_answer(rng, task, vocab)
    return compact_json(turn)


def make_policy(name: str, tenv: TextEnv, task: str, seed: int) -> Callable[[], str]:
    """The next agent turn of policy `name` (one of POLICIES) for the episode in `tenv`."""
    if name == "oracle":
        return tenv.oracle_action
    if name == "noop":
        noop = compact_json({"assistant_message": WORKING})
        return lambda: noop
    rng = np.random.default_rng([seed, TASK[task], RANDOM_SALT])
    return lambda: random_turn(rng, task, tenv.vocab)


# ------------------------------------------------------------------------------------------------ play


def _turn(action: str, obs: dict, reward: float, done: bool, info: dict) -> Turn:
    tools = [m["content"] for m in obs["new_messages"] if m["role"] == "tool"]
    calls = [{"name": r["name"], "args": r["args"], "error": r["error"], "seen": seen}
             for r, seen in zip(obs["tool_results"], tools)]
    replies = [m["content"] for m in obs["new_messages"] if m["role"] == "user"]
    return Turn(action, calls, replies, reward, done, info.get("format_error"))


def play(tenv: TextEnv, task: str, difficulty: int, seed: int, policy: str, catalog: str = "synthetic",
         max_turns: int = DEFAULT_MAX_TURNS) -> EpisodeRecord:
    """Play one episode (`tenv` must serve `task`) and record it; stopped after `max_turns` turns."""
    obs = tenv.reset(seed=seed, env_id=task, difficulty=difficulty)
    start = jax_index(tenv.host_states, 0)
    act = make_policy(policy, tenv, task, seed)
    turns, info, reward = [], tenv.episodes[0].info, 0.0
    for _ in range(max_turns):
        action = act()
        obs, reward, done, info = tenv.step(action)
        turns.append(_turn(action, obs, reward, done, info))
        if done:
            break
    else:
        tenv.stop(0, STOP_REASON)
        info, reward = tenv.episodes[0].info, tenv.episodes[0].reward
    goal = decode_goal(tenv, start, jax_index(tenv.host_states, 0))
    return EpisodeRecord(task, difficulty, seed, policy, catalog, tenv.params.catalog.num_products,
                         tenv.episodes[0].system, tenv.episodes[0].conversation[0]["content"], goal, turns, info,
                         float(reward))


# ------------------------------------------------------------------------------------------------ breakdown


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value + 0.0:+.4f}"      # + 0.0: no "-0.0000"
    return str(value)


def summary_rows(info: dict) -> list[tuple[str, str]]:
    """The episode-level reward breakdown as (name, value) rows."""
    rows = [(k, _fmt(info[k])) for k in SUMMARY_KEYS if k in info]
    if info.get("format_error"):
        rows.append(("format_error", str(info["format_error"])))
    return rows


def intent_rows(record: EpisodeRecord) -> list[tuple[str, str, str, str]]:
    """Per-intent (intent, task, r_task / is_correct, named parts) rows."""
    rows = []
    for view in record.goal:
        i = view.index
        labels = PART_LABELS.get(view.task, ())
        parts = record.info["parts"][i]
        named = ", ".join(f"{label} {float(v):.3f}" for label, v in zip(labels, parts) if label)
        score = f"{float(record.info['intent_r_task'][i]):+.4f} / {bool(record.info['intent_correct'][i])}"
        rows.append((str(i), view.task, score, named))
    return rows


# ------------------------------------------------------------------------------------------------ terminal


def _fact_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> Table:
    table = Table(title=title, show_lines=False, expand=True)
    for h in header:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    return table


def render_terminal(record: EpisodeRecord, console: Console) -> None:
    """The episode in the terminal: goal, transcript, reward breakdown."""
    console.rule(Text(f"{record.task} · d={record.difficulty} · seed={record.seed} · policy={record.policy} · "
                      f"{record.catalog} ({record.num_products} products)"))
    for view in record.goal:
        console.print(_fact_table(f"hidden goal — intent {view.index} ({view.task})", view.facts, ("field", "value")))
        if view.slots:
            console.print(_fact_table("what the customer can tell", view.slots, ("slot", "requirement", "disclosure")))
    console.print(Panel(Text(record.opening), title="customer", title_align="left", border_style="green"))
    for t, turn in enumerate(record.turns, 1):
        console.print(Panel(Text(turn.action), title=f"agent · turn {t}", title_align="left", border_style="cyan"))
        for call in turn.calls:
            head = f"{call['name']} {compact_json(call['args'])}" + (" · error" if call["error"] else "")
            console.print(Panel(Text(call["seen"]), title=Text(head), title_align="left", border_style="magenta"))
        if turn.format_error:
            console.print(Text(f"format error: {turn.format_error}", style="bold red"))
        for reply in turn.replies:
            console.print(Panel(Text(reply), title="customer", title_align="left", border_style="green"))
    console.print(_fact_table("reward breakdown", summary_rows(record.info), ("metric", "value")))
    console.print(_fact_table("per intent", intent_rows(record), ("intent", "task", "r_task / correct", "parts")))


# ------------------------------------------------------------------------------------------------ HTML

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}h3{font-size:14px;margin:14px 0 6px}
.meta{color:#5b6475}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0 12px}
th,td{border:1px solid #d8dce3;padding:5px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#eef0f4;font-weight:600}
.msg{border-left:4px solid;border-radius:4px;background:#fff;margin:8px 0;padding:6px 10px}
.msg .who{font-size:12px;font-weight:600;color:#5b6475;margin-bottom:3px}
.user{border-color:#2f9e44}.assistant{border-color:#1c7ed6}.tool{border-color:#ae3ec9;margin-left:28px}
.error{border-color:#e03131}.bad{color:#e03131;font-weight:600}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;font:12.5px/1.4 ui-monospace,Menlo,Consolas,monospace}
.ok{color:#2f9e44;font-weight:600}.no{color:#e03131;font-weight:600}
details{background:#fff;border:1px solid #d8dce3;border-radius:4px;padding:6px 10px}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _message(kind: str, who: str, content: str) -> str:
    return f'<div class="msg {kind}"><div class="who">{_e(who)}</div><pre>{_e(content)}</pre></div>'


def _html_turn(t: int, turn: Turn) -> str:
    parts = [_message("assistant", f"agent · turn {t}", turn.action)]
    for call in turn.calls:
        kind = "tool error" if call["error"] else "tool"
        parts.append(_message(kind, f"tool · {call['name']} {compact_json(call['args'])}", call["seen"]))
    if turn.format_error:
        parts.append(f'<p class="bad">format error: {_e(turn.format_error)}</p>')
    parts += [_message("user", "customer", r) for r in turn.replies]
    return "".join(parts)


def _html_goal(record: EpisodeRecord) -> str:
    out = []
    for view in record.goal:
        out.append(f"<h3>intent {view.index} · {_e(view.task)}</h3>{_html_table(view.facts, ('field', 'value'))}")
        if view.slots:
            out.append(_html_table(view.slots, ("slot", "requirement", "disclosure")))
    return "".join(out)


def render_html(record: EpisodeRecord) -> str:
    """The episode as one self-contained HTML page (every piece of episode text escaped)."""
    correct = bool(record.info.get("is_correct"))
    verdict = f'<span class="{"ok" if correct else "no"}">{"correct" if correct else "not correct"}</span>'
    title = f"{record.task} d={record.difficulty} seed={record.seed} ({record.policy})"
    transcript = _message("user", "customer", record.opening) + "".join(
        _html_turn(t, turn) for t, turn in enumerate(record.turns, 1))
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>ecomjax · {_e(title)}</title>'
        f"<style>{CSS}</style></head><body><main>"
        f"<h1>ecomjax episode · {_e(title)}</h1>"
        f'<p class="meta">catalog {_e(record.catalog)} ({record.num_products} products) · {len(record.turns)} turns · '
        f"reward {_e(_fmt(record.reward))} · {verdict} · {_e(record.info.get('termination_reason'))}</p>"
        f'<section id="reward"><h2>Reward breakdown</h2>{_html_table(summary_rows(record.info), ("metric", "value"))}'
        f"{_html_table(intent_rows(record), ('intent', 'task', 'r_task / correct', 'parts'))}</section>"
        f'<section id="goal"><h2>Hidden goal</h2>{_html_goal(record)}</section>'
        f'<section id="transcript"><h2>Transcript</h2>'
        f"<details><summary>system prompt</summary><pre>{_e(record.system)}</pre></details>{transcript}</section>"
        "</main></body></html>\n"
    )


# ------------------------------------------------------------------------------------------------ CLI


@functools.lru_cache(maxsize=2)
def text_env(task: str, catalog: str, num_products: int, catalog_seed: int, tool_result_tokens: int) -> TextEnv:
    """The TextEnv of one task over a catalog (kept, so a second episode in this process compiles nothing)."""
    cat, vocab = load_spec(catalog, num_products, catalog_seed)
    env, params = make(task, catalog=cat)
    return TextEnv(env, params, vocab, tool_result_tokens=tool_result_tokens)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags, validated (SystemExit with one message naming the flag)."""
    p = argparse.ArgumentParser(prog="python -m ecomjax.inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="PD", help=" | ".join(TASK_NAMES))
    p.add_argument("--difficulty", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="episode seed")
    p.add_argument("--policy", default="oracle", help=" | ".join(POLICIES))
    p.add_argument("--html", default=None, help="also write the episode to this HTML file")
    p.add_argument("--catalog", default="synthetic", help=" | ".join(SPEC_FORMS))
    p.add_argument("--num-products", type=int, default=DEFAULT_NUM_PRODUCTS, help="size of the synthetic catalog")
    p.add_argument("--catalog-seed", type=int, default=0, help="seed of the synthetic catalog")
    p.add_argument("--max-turns", type=int, default=DEFAULT_MAX_TURNS, help="stop the episode after this many turns")
    p.add_argument("--tool-result-tokens", type=int, default=DEFAULT_TOOL_RESULT_TOKENS)
    p.add_argument("--quiet", action="store_true", help="do not print the episode")
    args = p.parse_args(argv)
    checks = (
        ("--task", args.task in TASK, f"unknown task {args.task!r}; expected one of {list(TASK_NAMES)}"),
        ("--policy", args.policy in POLICIES, f"unknown policy {args.policy!r}; expected one of {list(POLICIES)}"),
        ("--difficulty", 0 <= args.difficulty <= MAX_DIFFICULTY,
         f"must be in [0, {MAX_DIFFICULTY}], got {args.difficulty}"),
        ("--seed", args.seed >= 0, f"must be >= 0, got {args.seed}"),
        ("--catalog-seed", args.catalog_seed >= 0, f"must be >= 0, got {args.catalog_seed}"),
        ("--num-products", MIN_PRODUCTS <= args.num_products <= MAX_PRODUCTS,
         f"must be in [{MIN_PRODUCTS}, {MAX_PRODUCTS}], got {args.num_products}"),
        ("--max-turns", 1 <= args.max_turns <= MAX_TURNS_LIMIT,
         f"must be in [1, {MAX_TURNS_LIMIT}], got {args.max_turns}"),
        ("--tool-result-tokens", args.tool_result_tokens >= MIN_TOOL_RESULT_TOKENS,
         f"must be >= {MIN_TOOL_RESULT_TOKENS}, got {args.tool_result_tokens}"),
        ("--html", args.html is None or Path(args.html).parent.is_dir(),
         f"folder {str(Path(args.html or '.').parent)!r} does not exist"),
    )
    for flag, ok, message in checks:
        if not ok:
            raise SystemExit(f"{flag}: {message}")
    return args


def main(argv: list[str] | None = None) -> EpisodeRecord:
    """Play the episode the flags name, print it, write the HTML; returns the record."""
    args = parse_args(argv)
    try:
        tenv = text_env(args.task, args.catalog, args.num_products, args.catalog_seed, args.tool_result_tokens)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"--catalog {args.catalog!r}: {err}") from None
    record = play(tenv, args.task, args.difficulty, args.seed, args.policy, args.catalog, args.max_turns)
    console = Console()
    if not args.quiet:
        render_terminal(record, console)
    if args.html:
        Path(args.html).write_text(render_html(record), encoding="utf-8")
        console.print(Text(f"wrote {args.html}"))
    return record


if __name__ == "__main__":
    main()
