"""Text layer: tokenizer, chat format, system prompt, parser (incl. fuzzing), tool-result rendering, TextEnv
and conversation tokens."""

import functools
import hashlib
import json
import re

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomjax.tasks.action import noop_action
from ecomjax.tasks.constraints import CONSTRAINT_KEYS, KEY
from ecomjax.tasks.goal import GENERIC_SLOT, SLOT_BUDGET, SLOT_ORDER, SLOT_REASON, TASK, empty_intent
from ecomjax.text import agent, ids
from ecomjax.text.chat import ChatFormat
from ecomjax.text.parse import ANSWER_TOOL, ParsedTurn, parse_turn
from ecomjax.text.prompt import system_prompt
from ecomjax.text.results import host_tree
from ecomjax.text import tokenizer as tokenizer_module
from ecomjax.text.tokenizer import (BUILTIN_FILE, BUILTIN_TOKENIZER, builtin_tokenizer, load_tokenizer, save_builtin,
                                    tokenizer_sha256)
from ecomjax.text.tokens import Conversation, Renderer, pad_batch
from ecomjax.user.text import detect_ask
from ecomjax.world.errors import ToolError
from ecomjax.world.state import Capacities
from ecomjax.world.tools import TOOL_ARGS, TOOL_INDEX, TOOL_NAMES

CAP = Capacities()
TEMPLATE = host_tree(noop_action(CAP))
BUILTIN_FILE_SHA256 = "8fd144d6b8afdb2a1d796b8b23c3534e8e0d9ad86a81f3ca6996ddfc469ae44e"
FROZEN_CORPUS_SHA256 = "2c47cc34eaed33392e4dd24f57aaeb7966fb19c7becc2d835f55bd79f71cd725"   # corpus() at the freeze


@pytest.fixture(scope="session")
def tok():
    return builtin_tokenizer()


@pytest.fixture(scope="session")
def vocab(small_catalog):
    return small_catalog[1]


def parse(text, vocab):
    return parse_turn(text, vocab, CAP, TEMPLATE)


def turn(**kw):
    return json.dumps({"assistant_message": "ok", **kw})


# ------------------------------------------------------------------------------------------ tokenizer

@given(st.text(max_size=200))
def test_builtin_tokenizer_round_trips_any_text(tok, text):
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_builtin_tokenizer_is_read_from_its_file_and_loads_through_transformers(tok, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    def no_training(*args):
        raise AssertionError("the built-in tokenizer was trained at run time")

    monkeypatch.setattr(tokenizer_module, "corpus", no_training)
    again = builtin_tokenizer.__wrapped__()
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    wrapped, shipped = json.loads(tok.backend_tokenizer.to_str()), json.loads(BUILTIN_FILE.read_text())
    for part in ("model", "added_tokens", "pre_tokenizer", "decoder"):
        assert wrapped[part] == shipped[part], part
    assert tok.name_or_path == BUILTIN_TOKENIZER
    save_builtin(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    text = '{"assistant_message":"Here are my picks: syn_0000012."}'
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert tokenizer_sha256(loaded) == tokenizer_sha256(tok)
    assert isinstance(loaded, PreTrainedTokenizerFast)


def test_builtin_tokenizer_file_is_pinned():
    """Changing the shipped file changes the token ids every built-in checkpoint was trained with: do it only
    on purpose (`write_builtin_file`), then update this hash and say so in the changelog."""
    assert hashlib.sha256(BUILTIN_FILE.read_bytes()).hexdigest() == BUILTIN_FILE_SHA256


@pytest.mark.slow
def test_builtin_tokenizer_file_is_the_training_of_its_corpus(tmp_path):
    """The shipped file is what `write_builtin_file` trains from the corpus it was frozen from (today's ids at
    the freeze). A corpus edited since (a template or prompt change) does not change the shipped ids."""
    text = tokenizer_module.corpus()
    if hashlib.sha256("\x00".join(text).encode("utf-8")).hexdigest() != FROZEN_CORPUS_SHA256:
        pytest.skip("the corpus changed since the built-in tokenizer was frozen; the shipped file keeps its ids")
    assert tokenizer_module.write_builtin_file(tmp_path / "fresh.json").read_bytes() == BUILTIN_FILE.read_bytes()


def test_chat_format_equals_the_chat_template(tok):
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "{}"}, {"role": "tool", "content": '{"name":"cart.view"}'},
            {"role": "user", "content": "thanks"}]
    rendered = ChatFormat.for_tokenizer(tok).render(msgs, add_generation_prompt=True)
    assert rendered == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    qwen = ChatFormat("qwen").render(msgs[2:4] + msgs[3:4])
    assert qwen.count("<tool_response>") == 2 and qwen.count("<|im_start|>user") == 1


def test_tokenizer_directory_errors_name_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_tokenizer(tmp_path / "missing")
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, "[UNK]")),
                                    unk_token="[UNK]")
    plain.save_pretrained(str(tmp_path / "plain"))
    with pytest.raises(ValueError, match="ChatML"):
        load_tokenizer(tmp_path / "plain")


# ------------------------------------------------------------------------------------------ prompt

@pytest.mark.parametrize("style", ["full", "compact"])
def test_system_prompt_lists_exactly_the_tool_registry(style):
    prompt = system_prompt("CART", 3, style)
    listed = dict(re.findall(r"^- ([a-z_]+\.[a-z_]+)\((.*?)\)(?::|$)", prompt, re.MULTILINE))
    assert list(listed) == list(TOOL_NAMES)
    for name, sig in listed.items():
        args = [a.split(":")[0].strip() for a in sig.split(", ") if a]
        assert args == [a for a, _, _ in TOOL_ARGS[name]], name
    assert "at most 3 tool calls" in prompt and "Task: CART" in prompt
    for field in ("recommended_product_ids", "selected_line_id", "order_status", "policy_answer", "intent"):
        assert field in prompt


def test_minimal_prompt_only_names_the_task():
    assert system_prompt("JOURNEY", 2, "minimal") == "Task: JOURNEY"
    with pytest.raises(ValueError, match="prompt style"):
        system_prompt("PD", 2, "tiny")


# ------------------------------------------------------------------------------------------ parser

def test_parse_json_protocol_into_an_action(vocab):
    pid = vocab.product_id(7)
    p = parse(turn(assistant_message=f"I suggest {pid}.", tool_calls=[
        {"name": "catalog.search", "args": {"query": "usb cables", "filters": {"price_max": 20}, "top_k": 5}},
        {"name": "cart.add", "args": {"product_id": pid, "variant_id": ids.variant_id(pid, 1), "quantity": 2}},
        {"name": "return.initiate", "args": {"order_id": "ord_002", "line_id": "ord_002_line_03",
                                             "reason_code": "defective", "method": "mail"}}],
        answer={"env": "RETURN", "selected_line_id": "ord_002_line_03", "done": True}), vocab)
    a = p.action
    assert p.format_error is None and bool(a.format_ok)
    assert list(a.calls.tool[:3]) == [TOOL_INDEX["catalog.search"], TOOL_INDEX["cart.add"], TOOL_INDEX["return.initiate"]]
    assert a.calls.top_k[0] == 5 and np.isclose(a.calls.filters.hi[0, 0], 20.0)
    assert (a.calls.product[1], a.calls.variant[1], a.calls.qty[1]) == (7, 1, 2)
    assert (a.calls.order[2], a.calls.line[2], a.calls.reason[2]) == (1, 2, 0)
    assert a.calls.tool[3] == -1 and not a.calls.error.any()
    assert bool(a.answer.present) and a.answer.task == TASK["RETURN"] and (a.answer.order, a.answer.line) == (1, 2)
    assert bool(a.answer.done) and list(a.presented[:2]) == [7, -1]


@pytest.mark.parametrize("text, fragment", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "one JSON object"),
    (json.dumps({"tool_calls": []}), "assistant_message"),
    (json.dumps({"assistant_message": ""}), "assistant_message"),
    (turn(answer={"done": True}), "answer.env is required"),
    (turn(answer={"env": "SHOP"}), "unknown task"),
    (turn(answer={"env": "PD", "recommended_product_ids": "syn_0000001"}), "recommended_product_ids"),
    (turn(answer={"env": "PD", "done": "yes"}), "answer.done"),
    (turn(tool_calls={"name": "cart.view"}), "expected a list"),
    (turn(tool_calls=[{"args": {}}]), "string 'name'"),
    (turn(tool_calls=[{"name": "cart.view"}] * (CAP.calls_per_turn + 1)), "at most"),
])
def test_unreadable_turns_are_format_errors_with_a_message(vocab, text, fragment):
    p = parse(text, vocab)
    assert not bool(p.action.format_ok)
    assert fragment in p.format_error


@pytest.mark.parametrize("call, code, fragment", [
    ({"name": "cart.fly", "args": {}}, None, "unknown tool"),
    ({"name": "cart.add", "args": {}}, ToolError.BAD_ARGUMENT, "missing required argument 'product_id'"),
    ({"name": "cart.add", "args": {"product_id": "syn_0000001", "quantity": "two"}}, ToolError.BAD_ARGUMENT,
     "quantity"),
    ({"name": "catalog.search", "args": {"query": "x", "filters": {"colour": "red"}}}, ToolError.BAD_ARGUMENT,
     "unknown key 'colour'"),
    ({"name": "return.initiate", "args": {"order_id": "ord_001", "line_id": "ord_001_line_01",
                                          "reason_code": "bored", "method": "mail"}}, ToolError.BAD_ARGUMENT,
     "reason_code"),
    ({"name": "order.get_status", "args": "{not json"}, ToolError.BAD_ARGUMENT, "args must be a JSON object"),
])
def test_bad_calls_are_tool_errors_with_a_message(vocab, call, code, fragment):
    p = parse(turn(tool_calls=[call]), vocab)
    assert bool(p.action.format_ok) and p.format_error is None
    assert fragment in p.calls[0]["error"]
    if code is None:
        assert p.action.calls.tool[0] == len(TOOL_NAMES)           # the jitted dispatch answers UNKNOWN_TOOL
    else:
        assert p.action.calls.error[0] == code


def test_unknown_ids_become_ids_no_world_holds(vocab):
    p = parse(turn(tool_calls=[{"name": "catalog.get_product", "args": {"product_id": "syn_9999999"}},
                               {"name": "order.get_status", "args": {"order_id": "ORDER-1"}},
                               {"name": "cart.remove", "args": {"line_id": "line_000"}}],
                   answer={"env": "PD", "recommended_product_ids": ["nope", vocab.product_id(3)]}), vocab)
    assert p.action.calls.product[0] == ids.UNKNOWN and p.action.calls.order[1] == ids.UNKNOWN
    assert p.action.calls.line[2] == ids.UNKNOWN
    assert list(p.action.answer.rec[:2]) == [ids.UNKNOWN, 3] and p.action.answer.n_rec == 2


def test_qwen_tool_calls_parse_like_the_json_protocol(vocab):
    pid = vocab.product_id(5)
    args = {"product_id": pid, "quantity": 3}
    answer = {"env": "CART", "done": True}
    as_json = parse(turn(assistant_message="Adding it.", tool_calls=[{"name": "cart.add", "args": args}],
                         answer=answer), vocab)
    qwen = parse("<think>plan</think>Adding it.\n<tool_call>\n" + json.dumps({"name": "cart.add", "arguments": args})
                 + "\n</tool_call>\n<tool_call>" + json.dumps({"name": "answer", "arguments": answer})
                 + "</tool_call>", vocab)
    assert qwen.message == "Adding it."
    jax.tree.map(np.testing.assert_array_equal, qwen.action, as_json.action)


def test_unknown_keys_are_reported_not_fatal(vocab):
    p = parse(json.dumps({"assistant_message": "hi", "mood": "good", "answer": {"env": "PD", "why": 1}}), vocab)
    assert bool(p.action.format_ok) and set(p.unknown_keys) == {"mood", "answer.why"}


@given(st.text(max_size=300))
def test_random_strings_never_crash_the_parser(vocab, text):
    p = parse(text, vocab)
    assert p.format_error is not None or bool(p.action.format_ok)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                     max_leaves=20)
_keys = st.sampled_from(["assistant_message", "tool_calls", "answer", "name", "args", "env", "query", "filters",
                         "product_id", "quantity", "recommended_product_ids", "done", "intent", "order_id"])


@given(st.dictionaries(_keys, _json, max_size=5), st.lists(st.fixed_dictionaries(
    {"name": st.sampled_from(list(TOOL_NAMES) + ["x"]), "args": st.dictionaries(_keys | st.sampled_from(
        [a for spec in TOOL_ARGS.values() for a, _, _ in spec]), _json, max_size=4)}), max_size=3))
def test_random_json_never_crashes_the_parser(vocab, obj, calls):
    obj = {**obj, "tool_calls": calls} if calls else obj
    p = parse(json.dumps(obj), vocab)
    leaves = jax.tree.leaves(p.action)
    assert all(np.asarray(x).dtype.kind in "biuf" for x in leaves)
    assert np.all(p.action.calls.query >= 0)


# ------------------------------------------------------------------------------------------ hostile input

DEEP = {"arrays": "[" * 5000 + "]" * 5000, "objects": '{"a":' * 5000 + "1" + "}" * 5000}
HOSTILE = {
    "huge integers": '{"assistant_message": "x", "tool_calls": [{"name": "cart.add", "args": {"product_id": '
                     f'"syn_0000001", "quantity": {"9" * 5000}}}}}], "answer": {{"env": "JOURNEY", "intent": {"9" * 5000}}}}}',
    "huge range filter": turn(tool_calls=[{"name": "catalog.search", "args": {
        "query": "x", "filters": {"price_max": 10**30, "price_min": -10**300}}}]),
    "NaN and Infinity": '{"assistant_message": "x", "tool_calls": [{"name": "catalog.search", "args": {"query": "q", '
                        '"top_k": NaN, "filters": {"price_max": Infinity}}}], "answer": {"env": "POLICY", '
                        '"policy_answer": -Infinity}}',
    "unhashable env": turn(answer={"env": ["PD"]}),
    "escaped lone surrogate": turn(tool_calls=[{"name": "\ud800", "args": {"query": "\udfff"}}]),
    "raw lone surrogate": '{"assistant_message": "\ud800"}',
    "escaped surrogate pair": turn(assistant_message="\U0001f600 found it"),
    "long digit ids": turn(assistant_message="syn_" + "9" * 5000,
                           answer={"env": "PD", "recommended_product_ids": ["syn_" + "0" * 5000 + "1", "syn_\u00b2"]}),
    "top level list": "[" + turn() + "]",
    "unclosed tool calls": "<tool_call>" * 10_000,
    "whitespace in a tool call": "<tool_call>" + " " * 100_000 + "x",
    "unclosed think": "<tool_call>{}</tool_call>" + "<think>" * 10_000,
    "whitespace in a fence": "```json" + " " * 100_000 + "```" + " " * 100_000 + "x",
    "unterminated escapes": '"\\' * 100_000,
}
_every_char = st.characters() | st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])   # and lone surrogates
_json_char = st.sampled_from(list('[]{}":,.-+0123456789eE ntrufalsNIiy\\') + ["\\ud800", "\\udc00", "Infinity"])
FUZZ = settings(max_examples=200)          # parsing is fast: look further than the profile's default
_hostile_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(-10**400, 10**400) | st.text(_every_char, max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(_every_char, max_size=6), kids, max_size=4),
    max_leaves=24)


def wire_forms(body: str) -> list[str]:
    """`body` as the JSON protocol (bare and fenced), as a Qwen3 tool-call block (bare and in a turn) and as
    the message around a Qwen3 tool call."""
    return [body, f"```json\n{body}\n```", f"<tool_call>{body}</tool_call>",
            f"<think>hm</think>On it.\n<tool_call>\n{body}\n</tool_call>",
            f'{body}<tool_call>{{"name": "cart.view", "arguments": {{}}}}</tool_call>']


def assert_parsed(p):
    """`p` is parse_turn's normal result: an Action shaped like the template, a format error with a message
    exactly when format_ok is False, and only text a tokenizer can encode."""
    assert isinstance(p, ParsedTurn)
    assert jax.tree.structure(p.action) == jax.tree.structure(TEMPLATE)
    for got, want in zip(jax.tree.leaves(p.action), jax.tree.leaves(TEMPLATE)):
        assert got.shape == want.shape and got.dtype == want.dtype
    assert bool(p.action.format_ok) == (p.format_error is None)
    assert p.format_error is None or (isinstance(p.format_error, str) and p.format_error)
    for text in [p.message, p.format_error or "", *[c["name"] + (c["error"] or "") for c in p.calls]]:
        text.encode("utf-8")


@pytest.mark.parametrize("form", range(4))           # the JSON forms
@pytest.mark.parametrize("body", DEEP.values(), ids=DEEP.keys())
def test_deeply_nested_json_is_a_format_error(vocab, body, form):
    p = parse(wire_forms(body)[form], vocab)
    assert_parsed(p)
    assert "nested deeper than" in p.format_error


def test_deeply_nested_string_args_are_a_tool_error(vocab):
    p = parse(turn(tool_calls=[{"name": "cart.view", "args": DEEP["arrays"]}]), vocab)
    assert_parsed(p)
    assert p.format_error is None and p.action.calls.error[0] == ToolError.BAD_ARGUMENT
    assert "args must be a JSON object" in p.calls[0]["error"] and len(p.calls[0]["error"]) < 200


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_turns_parse_or_fail_with_a_message(vocab, text):
    for form in wire_forms(text):
        assert_parsed(parse(form, vocab))


def test_hostile_values_become_errors_or_unknown_ids(vocab):
    huge = parse(HOSTILE["huge integers"], vocab)
    assert huge.format_error.startswith("answer.intent") and "expected a request index" in huge.format_error
    nan = parse(HOSTILE["NaN and Infinity"], vocab)
    assert nan.format_error is None and "top_k: expected an integer, got nan" in nan.calls[0]["error"]
    assert np.isnan(nan.action.answer.policy_num)
    assert "filters.price_max: expected a finite number" in parse(turn(tool_calls=[{"name": "catalog.search", "args": {
        "query": "x", "filters": {"price_max": 10**400}}}]), vocab).calls[0]["error"]
    assert parse(HOSTILE["huge range filter"], vocab).calls[0]["error"] is None
    assert "unknown task ['PD']" in parse(HOSTILE["unhashable env"], vocab).format_error
    assert "lone surrogate" in parse(HOSTILE["escaped lone surrogate"], vocab).format_error
    assert "lone surrogate" in parse(HOSTILE["raw lone surrogate"], vocab).format_error
    assert parse(HOSTILE["escaped surrogate pair"], vocab).message == "\U0001f600 found it"
    ids_turn = parse(HOSTILE["long digit ids"], vocab)
    assert list(ids_turn.action.answer.rec[:2]) == [1, ids.UNKNOWN] and ids_turn.action.answer.n_rec == 2
    assert "expected one JSON object, got list" in parse(HOSTILE["top level list"], vocab).format_error


@FUZZ
@given(st.text(_every_char))
def test_any_text_parses_or_fails_with_a_message(vocab, text):
    for form in wire_forms(text):
        assert_parsed(parse(form, vocab))


@FUZZ
@given(st.lists(_json_char, max_size=60).map("".join))
def test_json_like_text_parses_or_fails_with_a_message(vocab, text):
    for form in wire_forms(text):
        assert_parsed(parse(form, vocab))


@FUZZ
@given(_hostile_json, st.text(_every_char, max_size=12), st.booleans(),
       st.sampled_from(list(TOOL_NAMES) + [ANSWER_TOOL]))
def test_any_json_value_parses_or_fails_with_a_message(vocab, value, text, ascii_only, tool):
    dump = functools.partial(json.dumps, ensure_ascii=ascii_only)
    bodies = [dump(value), dump({"assistant_message": text, "tool_calls": [{"name": tool, "args": value}],
                                 "answer": value}),
              dump({"assistant_message": value, "answer": {"env": "PD", "recommended_product_ids": value,
                                                           "policy_answer": value, "order_status": value}}),
              dump({"assistant_message": "x", "tool_calls": [{"name": text, "args": {}}], "answer": {
                  "env": "PD", "recommended_product_ids": [text], "selected_order_id": text, "order_status": text}}),
              dump({"name": tool, "arguments": value}), dump({"name": tool, "args": dump(value)})]
    for body in bodies:
        for form in wire_forms(body):
            assert_parsed(parse(form, vocab))


# ------------------------------------------------------------------------------------------ oracle text

def test_oracle_questions_are_read_back_as_the_slot_asked():
    goal = empty_intent()
    for slot, key in enumerate(CONSTRAINT_KEYS[: len(goal.c_key)]):
        if key not in agent.KEY_QUESTIONS:
            continue
        g = host_tree(goal.replace(task=np.int32(TASK["PD"]), c_key=goal.c_key.at[slot].set(KEY[key]),
                                   c_mask=goal.c_mask.at[slot].set(True)))
        assert detect_ask(agent.KEY_QUESTIONS[key], g) == slot, key
    for task, slot, q in [("RETURN", SLOT_ORDER, agent.ORDER_QUESTION), ("BUNDLE", SLOT_BUDGET, agent.BUDGET_QUESTION),
                          ("RETURN", SLOT_REASON, agent.REASON_QUESTION), ("PD", GENERIC_SLOT, agent.GENERIC_QUESTION)]:
        assert detect_ask(q, host_tree(goal.replace(task=np.int32(TASK[task])))) == slot
    for msg in (agent.WORKING, agent.ANSWERING, "Here are my picks: syn_0000001."):
        assert detect_ask(msg, host_tree(goal.replace(task=np.int32(TASK["PD"])))) == -1


def test_filters_round_trip_through_json(vocab, small_catalog):
    from ecomjax.catalog.retrieval import filters_from_dict

    spec = {"cat": vocab.categories[5], "brand": vocab.brands[3], "color": "navy", "price_max": 45.99,
            "rating_min": 4.3, "ship_days_max": 3}
    back = agent.filters_to_dict(host_tree(filters_from_dict(spec, vocab)), vocab)
    assert back == spec


# ------------------------------------------------------------------------------------------ tokens

def test_conversation_tokens_keep_generated_ids_and_mask_only_policy_tokens(tok):
    r = Renderer(tok)
    conv = Conversation()
    conv.add_env(r.prompt([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]))
    gen = tok("weird  spacing{}", add_special_tokens=False)["input_ids"] + [r.im_end]
    conv.add_policy(gen, [-0.5] * len(gen))
    conv.add_env(r.env_turn([{"role": "user", "content": "ok"}], closed=True))
    arrays = pad_batch([conv], len(conv) + 3, tok.pad_token_id)
    m = arrays["loss_mask"][0]
    assert m.sum() == len(gen) and list(arrays["tokens"][0][m == 1]) == gen
    assert np.all(arrays["logprobs"][0][m == 0] == 0) and arrays["attention"][0].sum() == len(conv)
    full = tok.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "weird  spacing{}"},
                                    {"role": "user", "content": "ok"}], tokenize=False, add_generation_prompt=True)
    assert tok.decode(conv.ids) == full
    with pytest.raises(ValueError, match="more than the padded length"):
        pad_batch([conv], 4, 0)
