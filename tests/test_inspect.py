"""`python -m ecomjax.inspect`: one CART episode per policy on a 2,000-product catalog (compiled once), its
terminal and HTML renderings, and flag validation."""

import dataclasses
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from rich.console import Console

from ecomjax import inspect as ins
from ecomjax.text.ids import order_id

BASE = ["--task", "CART", "--difficulty", "5", "--seed", "3", "--num-products", "2000"]
VOID = {"meta", "br", "hr", "img", "input", "link"}


class Page(HTMLParser):
    """Checks that tags nest and close; collects the text, the tag names and the attributes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.text, self.tags, self.attrs, self.errors = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> Page:
    p = Page()
    p.feed(page)
    p.close()
    assert not p.errors and not p.stack, (p.errors, p.stack)
    return p


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "out.html"
    record = ins.main([*BASE, "--policy", "oracle", "--html", str(out), "--quiet"])
    return record, out.read_text(encoding="utf-8")


def test_oracle_episode_is_solved_and_recorded(oracle_run):
    record, _ = oracle_run
    assert record.task == "CART" and record.difficulty == 5 and record.policy == "oracle"
    assert record.info["is_correct"] and record.info["termination_reason"] == "agent_done" and record.reward > 0
    assert any(c["name"] == "cart.add" for t in record.turns for c in t.calls)
    assert all(t.format_error is None for t in record.turns) and record.turns[-1].done


def test_goal_is_decoded_from_the_episode_state(oracle_run):
    record, _ = oracle_run
    tenv = ins.text_env("CART", "synthetic", 2000, 0, ins.DEFAULT_TOOL_RESULT_TOKENS)
    tenv.reset(seed=3, env_id="CART", difficulty=5)
    goal = ins.jax_index(ins.jax_index(tenv.host_states, 0).goal, 0)
    facts = dict(record.goal[0].facts)
    items = [(int(p), int(q)) for p, q in zip(goal.items, goal.item_qty) if p >= 0]
    assert len(items) >= 1 and facts["task"] == "CART"
    for n, (p, q) in enumerate(items, 1):
        assert facts[f"item {n}"].startswith(f"{q} × {tenv.vocab.product_id(p)} — {tenv.vocab.title(p)}")
    assert all(d in ("stated in the opening message", "revealed when asked", "never told")
               for _, _, d in record.goal[0].slots)


def test_html_is_well_formed_and_holds_goal_messages_and_reward(oracle_run):
    record, page = oracle_run
    p = parse(page)
    text = "".join(p.text)
    assert {"html", "head", "style", "body", "section", "table", "pre"} <= set(p.tags)
    assert {"script", "link", "img"}.isdisjoint(p.tags) and "http" not in page.replace("http-equiv", "")
    assert {("id", "goal"), ("id", "reward"), ("id", "transcript")} <= set(p.attrs)
    assert "Hidden goal" in text and "Reward breakdown" in text
    assert record.opening in text and record.system in text
    for turn in record.turns:
        assert turn.action in text
        assert json.loads(turn.action)["assistant_message"] in text
        assert all(c["seen"] in text and c["name"] in text for c in turn.calls)
        assert all(r in text for r in turn.replies)
    for label, value in record.goal[0].facts:
        assert label in text and value in text
    assert f"{record.reward:+.4f}" in text and "agent_done" in text and "F1 1.000" in text


def test_html_escapes_episode_text(oracle_run):
    record, _ = oracle_run
    nasty = '<script>alert("x")</script> & <b>bold</b>'
    page = ins.render_html(dataclasses.replace(record, opening=nasty))
    assert "<script>" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in page
    assert nasty in "".join(parse(page).text)


def test_terminal_rendering_shows_goal_transcript_and_reward(oracle_run):
    record, _ = oracle_run
    buf = io.StringIO()
    ins.render_terminal(dataclasses.replace(record, opening="[bold]not markup[/bold]"),
                        Console(file=buf, width=200, color_system=None))
    out = buf.getvalue()
    assert "hidden goal — intent 0 (CART)" in out and "reward breakdown" in out and "agent_done" in out
    assert "[bold]not markup[/bold]" in out
    assert all(f"agent · turn {t}" in out for t in range(1, len(record.turns) + 1))
    assert all(c["name"] in out for t in record.turns for c in t.calls)


def test_random_and_noop_policies(oracle_run):
    rand = ins.main([*BASE, "--policy", "random", "--quiet"])
    again = ins.main([*BASE, "--policy", "random", "--quiet"])
    assert [t.action for t in rand.turns] == [t.action for t in again.turns]
    assert all(t.format_error is None for t in rand.turns), "random turns must be valid JSON"
    assert any(t.calls for t in rand.turns) and rand.info["termination_reason"] != "format_invalid"

    noop = ins.main([*BASE, "--policy", "noop", "--quiet"])
    assert all(not t.calls for t in noop.turns) and not noop.info["is_correct"]
    assert noop.info["termination_reason"] in ("t_max", "user_quit")


def test_max_turns_stops_the_episode():
    record = ins.main([*BASE, "--policy", "noop", "--max-turns", "2", "--quiet"])
    assert len(record.turns) == 2 and record.info["truncated"]
    assert record.info["termination_reason"] == ins.STOP_REASON


def test_random_answers_use_protocol_ids():
    vocab = ins.text_env("CART", "synthetic", 2000, 0, ins.DEFAULT_TOOL_RESULT_TOKENS).vocab
    rng = np.random.default_rng(0)
    turns = [json.loads(ins.random_turn(rng, "STATUS", vocab)) for _ in range(200)]
    answers = [t["answer"] for t in turns if "answer" in t]
    assert answers and all(a["env"] == "STATUS" and a["done"] for a in answers)
    assert all(a["selected_order_id"] in {order_id(o) for o in range(ins.RANDOM_ORDERS)} for a in answers)
    assert all(vocab.product_index(c["args"]["product_id"]) >= 0 for t in turns for c in t.get("tool_calls", [])
               if "product_id" in c["args"])


@pytest.mark.parametrize("argv, words", [
    (["--task", "SHOPPING"], "--task: unknown task 'SHOPPING'"),
    (["--policy", "smart"], "--policy: unknown policy 'smart'"),
    (["--difficulty", "-1"], "--difficulty: must be in [0, 100]"),
    (["--seed", "-2"], "--seed: must be >= 0"),
    (["--num-products", "5"], "--num-products: must be in [100, 2000000]"),
    (["--max-turns", "0"], "--max-turns: must be in [1, 1000]"),
    (["--tool-result-tokens", "3"], "--tool-result-tokens: must be >= 16"),
    (["--html", "/no/such/folder/out.html"], "--html: folder '/no/such/folder' does not exist"),
    (["--catalog", "no-such-catalog"], "--catalog 'no-such-catalog': unknown catalog spec"),
])
def test_bad_flags_exit_with_a_message(argv, words):
    with pytest.raises(SystemExit) as exc:
        ins.main(argv)
    assert words in str(exc.value.code)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ins.POLICIES)
def test_every_task_plays_and_renders(policy):
    tenv = ins.text_env("C8", "synthetic", 2000, 0, ins.DEFAULT_TOOL_RESULT_TOKENS)
    correct = []
    for task in ins.TASK_NAMES:
        for d in (0, 6, 12):
            record = ins.play(tenv, task, d, 1, policy, max_turns=80)
            parse(ins.render_html(record))
            ins.render_terminal(record, Console(file=io.StringIO(), width=120))
            tasks = [v.task for v in record.goal]
            assert tasks == [task] if task != "JOURNEY" else (tasks and "JOURNEY" not in tasks), (task, tasks)
            assert all(view.facts for view in record.goal) and len(ins.intent_rows(record)) == len(tasks)
            correct.append(record.info["is_correct"])
    assert policy != "oracle" or np.mean(correct) >= 0.9
