"""LLM output -> the structured `Action` of one agent turn (SPEC §2).

Two wire formats parse into the same Action:
- the reference JSON protocol: one object `{"assistant_message", "tool_calls", "answer"}` (a ```json fence
  around it is tolerated);
- Qwen3 / Hermes tool calls: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks, the text
  around them as the message (`<think>` blocks dropped) and the answer as a call named `answer`.

Never raises on model output: any string parses into a turn or a format error. A turn the protocol cannot
read (not JSON, JSON nested deeper than `MAX_JSON_DEPTH`, text that is not valid Unicode, no message, an
answer without `env`, wrong answer types, more calls than the turn has slots) is a *format error*:
`format_ok` False and a message saying what was wrong. A readable turn with a bad call (unknown tool,
missing or mistyped argument, unknown id) is a *tool error* on that call: the call carries an error code
(`ToolCall.error`) or an id no world holds, so the jitted tools report it like any other tool error.
Unknown keys are listed in `ParsedTurn.unknown_keys`, never fatal. JSON is read as Python reads it: the
non-standard literals `NaN` and `Infinity` are the non-finite numbers every numeric field rejects, and
integers too long to be any field's value are read as floats (infinite beyond the float range).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from ecomjax.catalog.lexical import hash_text
from ecomjax.catalog.retrieval import filters_from_dict
from ecomjax.catalog.schema import QUERY_TOKENS
from ecomjax.catalog.types import Vocab
from ecomjax.tasks.action import INFORM, PRESENT, Action
from ecomjax.tasks.goal import MAX_REC, TASK
from ecomjax.text import ids
from ecomjax.world import policy_kb
from ecomjax.world.errors import ToolError
from ecomjax.world.state import ORDER_STATUSES, RETURN_METHODS, RETURN_REASONS, Capacities
from ecomjax.world.tools import TOOL_ARGS, TOOL_INDEX, TOOL_NAMES

TOP_KEYS = frozenset({"assistant_message", "tool_calls", "answer"})
ANSWER_KEYS = frozenset({"env", "recommended_product_ids", "selected_order_id", "selected_line_id", "order_status",
                         "policy_answer", "intent", "done", "subgoal_answers"})
ANSWER_TOOL = "answer"
MAX_JSON_DEPTH = 32                 # nesting levels of arrays and objects a turn may use (the protocol needs 5)
MAX_SHOWN_CHARS = 80                # of a value quoted in an error message
_MAX_INT_DIGITS = 300               # longer integer literals are read as floats (float range: 309 digits)
_INT32_MAX = 2**31 - 1
FENCE = "```"
FENCE_LANGUAGE = "json"
TOOL_CALL_TAGS = ("<tool_call>", "</tool_call>")
THINK_TAGS = ("<think>", "</think>")
_JSON_TOKEN = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.DOTALL)   # a string (maybe unterminated) or a bracket
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_ID_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.]*[A-Za-z0-9]")
_NORMALIZED_ANSWERS = {"".join(a.lower().split()): i for i, a in enumerate(policy_kb.ANSWER_VOCAB)}
_STATUS_INDEX = {s.lower(): i for i, s in enumerate(ORDER_STATUSES)}


class FormatError(ValueError):
    """The turn cannot be read; the message says why (shown to the agent and kept in `info`)."""


@dataclass
class ParsedTurn:
    """One parsed agent turn: the Action (NumPy leaves, one episode) and what the text layer noticed."""

    action: Action
    message: str = ""
    format_error: str | None = None
    calls: list[dict] = field(default_factory=list)        # per call: name, args (as sent), error (host message)
    unknown_keys: list[str] = field(default_factory=list)
    answer_intent_given: bool = False


# ------------------------------------------------------------------------------------------ value coercion

def _shown(value: Any) -> str:
    """`repr(value)`, cut to MAX_SHOWN_CHARS for an error message."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def _int(value: Any, name: str) -> int:
    """A JSON integer (an integral float is accepted), saturated into int32 (range checks happen in JAX)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not (math.isfinite(value) and value.is_integer())):
        raise ValueError(f"{name}: expected an integer, got {_shown(value)}")
    return int(max(-_INT32_MAX, min(_INT32_MAX, int(value))))


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {_shown(value)}")
    return value


def _choice(value: Any, name: str, options: tuple[str, ...]) -> int:
    text = _str(value, name).strip().lower()
    if text not in options:
        raise ValueError(f"{name}: unknown value {_shown(value)}; expected one of {list(options)}")
    return options.index(text)


# ------------------------------------------------------------------------------------------ tool calls

def _encode_call(name: str, args: dict, vocab: Vocab, cap: Capacities) -> dict[str, Any]:
    """Integer fields of one ToolCall from validated arguments (raises ValueError naming the bad one)."""
    spec = {a: (kind, default) for a, kind, default in TOOL_ARGS[name]}
    for arg, (_, default) in spec.items():
        if default is None and arg not in args and "null" not in spec[arg][0]:
            raise ValueError(f"{name}: missing required argument {arg!r}")
    get = lambda a: args.get(a, spec[a][1])  # noqa: E731
    out: dict[str, Any] = {"tool": TOOL_INDEX[name]}
    if "query" in spec:
        out["query"] = hash_text(_str(get("query"), f"{name}.query"), QUERY_TOKENS)
    if "top_k" in spec:
        out["top_k"] = _int(get("top_k"), f"{name}.top_k")
    if name == "catalog.search":
        filters = get("filters")
        if filters is not None and not isinstance(filters, dict):
            raise ValueError(f"{name}.filters: expected an object, got {_shown(filters)}")
        out["filters"] = filters_from_dict(filters, vocab)
    if name == "catalog.rerank":
        cands = get("candidate_product_ids")
        if not isinstance(cands, list) or len(cands) > cap.rerank:
            raise ValueError(f"{name}.candidate_product_ids: expected a list of at most {cap.rerank} ids")
        row = np.full(cap.rerank, -1, np.int32)
        row[: len(cands)] = [ids.parse_product(c, vocab) for c in cands]
        out["ids"] = row
    if "product_id" in spec or "new_product_id" in spec:
        key = "product_id" if "product_id" in spec else "new_product_id"
        out["product"] = ids.parse_product(_str(get(key), f"{name}.{key}"), vocab)
    if "variant_id" in spec or "new_variant_id" in spec:
        key = "variant_id" if "variant_id" in spec else "new_variant_id"
        out["variant"] = ids.parse_variant(get(key), out["product"], vocab)
    if "quantity" in spec:
        out["qty"] = _int(get("quantity"), f"{name}.quantity")
    if "days" in spec:
        out["days"] = _int(get("days"), f"{name}.days")
    if "order_id" in spec:
        out["order"] = ids.parse_order(_str(get("order_id"), f"{name}.order_id"))
    if "line_id" in spec:
        line = _str(get("line_id"), f"{name}.line_id")
        if name.startswith("cart."):
            out["line"] = ids.parse_cart_line(line)
        else:
            order, out["line"] = ids.parse_order_line(line)
            if order != out["order"]:
                out["line"] = ids.UNKNOWN
    if "reason_code" in spec:
        out["reason"] = _choice(get("reason_code"), f"{name}.reason_code", RETURN_REASONS)
    if "method" in spec:
        out["method"] = _choice(get("method"), f"{name}.method", RETURN_METHODS)
    if "shipping_address_id" in spec:
        out["address"] = ids.parse_address(_str(get("shipping_address_id"), f"{name}.shipping_address_id"))
        out["payment"] = ids.parse_payment(_str(get("payment_method_id"), f"{name}.payment_method_id"))
    return out


def _set_call(calls: Any, i: int, fields: dict[str, Any]) -> None:
    """Write one call's fields into slot i of the host (NumPy) call arrays, in place."""
    for key, value in fields.items():
        if key == "filters":
            for part in ("eq", "lo", "hi"):
                getattr(calls.filters, part)[i] = np.asarray(getattr(value, part))
        else:
            getattr(calls, key)[i] = value


def _tool_calls(raw: Any, action: Action, vocab: Vocab, cap: Capacities, report: ParsedTurn) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        raise FormatError(f"tool_calls: expected a list, got {type(raw).__name__}")
    if len(raw) > cap.calls_per_turn:
        raise FormatError(f"tool_calls: at most {cap.calls_per_turn} calls per turn, got {len(raw)}")
    for i, call in enumerate(raw):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise FormatError(f"tool_calls[{i}]: expected an object with a string 'name', got {_shown(call)}")
        name, args = call["name"], call.get("args", call.get("arguments", {}))
        sent = call.get("args", call.get("arguments"))
        if isinstance(args, str):
            try:
                args = _loads(args, f"tool_calls[{i}].args")
            except FormatError:
                args = None
        entry = {"name": name, "args": args if isinstance(args, dict) else {}, "error": None}
        report.unknown_keys += [f"tool_calls[{i}].{k}" for k in call if k not in ("name", "args", "arguments")]
        if name not in TOOL_INDEX:
            fields, entry["error"] = {"tool": len(TOOL_NAMES)}, f"unknown tool {_shown(name)}"
        elif not isinstance(args, dict):
            fields = {"tool": TOOL_INDEX[name], "error": int(ToolError.BAD_ARGUMENT)}
            entry["error"] = f"{name}: args must be a JSON object, got {_shown(sent)}"
        else:
            known = {a for a, _, _ in TOOL_ARGS[name]}
            report.unknown_keys += [f"tool_calls[{i}].args.{k}" for k in args if k not in known]
            try:
                fields = _encode_call(name, args, vocab, cap)
            except ValueError as err:
                fields, entry["error"] = {"tool": TOOL_INDEX[name], "error": int(ToolError.BAD_ARGUMENT)}, str(err)
        _set_call(action.calls, i, fields)
        report.calls.append(entry)


# ------------------------------------------------------------------------------------------ answer

def _policy_value(value: Any) -> tuple[float, int]:
    """(numeric, categorical id) of a policy answer; NaN / -1 where it is not one."""
    if value is None or isinstance(value, bool):
        return math.nan, -1
    cat = _NORMALIZED_ANSWERS.get("".join(str(value).lower().split()), -1) if isinstance(value, str) else -1
    num = policy_kb.parse_number(value)
    return (math.nan if num is None else num), cat


def _answer(raw: Any, action: Action, vocab: Vocab, report: ParsedTurn) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise FormatError(f"answer: expected an object, got {type(raw).__name__}")
    if "subgoal_answers" in raw:
        subs = raw["subgoal_answers"]
        if not isinstance(subs, list) or len(subs) != 1 or not isinstance(subs[0], dict):
            raise FormatError("answer.subgoal_answers: answer one JOURNEY request per turn (a list of one object)")
        raw = {**{k: v for k, v in raw.items() if k != "subgoal_answers"}, **subs[0]}
    report.unknown_keys += [f"answer.{k}" for k in raw if k not in ANSWER_KEYS]
    env = raw.get("env")
    if env is None:
        raise FormatError("answer.env is required (the task tag, e.g. \"PD\"); the answer was not recorded")
    if not isinstance(env, str) or env not in TASK:
        raise FormatError(f"answer.env: unknown task {_shown(env)}; expected one of {list(TASK)}")
    a = action.answer
    a.present[...] = True
    a.task[...] = TASK[env]
    recs = raw.get("recommended_product_ids", [])
    if not isinstance(recs, list):
        raise FormatError(f"answer.recommended_product_ids: expected a list, got {_shown(recs)}")
    parsed = [ids.parse_product(r, vocab) for r in recs][:MAX_REC]
    a.rec[: len(parsed)] = parsed
    a.n_rec[...] = min(len(recs), _INT32_MAX)
    order, line = raw.get("selected_order_id"), raw.get("selected_line_id")
    line_order, line_idx = ids.parse_order_line(line) if line is not None else (-1, -1)
    a.order[...] = ids.parse_order(order) if order is not None else line_order
    if line is not None:
        a.line[...] = line_idx if line_order == a.order else ids.UNKNOWN
    status = raw.get("order_status")
    if status is not None:
        a.status[...] = _STATUS_INDEX.get(str(status).strip().lower(), ids.UNKNOWN)
    a.policy_num[...], a.policy_cat[...] = _policy_value(raw.get("policy_answer"))
    if "intent" in raw:
        intent = raw["intent"]
        if isinstance(intent, bool) or not isinstance(intent, int) or intent < 0:
            raise FormatError(f"answer.intent: expected a request index >= 0, got {_shown(intent)}")
        a.intent[...] = min(intent, _INT32_MAX)
        report.answer_intent_given = True
    done = raw.get("done", False)
    if not isinstance(done, bool):
        raise FormatError(f"answer.done: expected true or false, got {_shown(done)}")
    a.done[...] = done


# ------------------------------------------------------------------------------------------ turn

def _mentioned_products(message: str, vocab: Vocab) -> list[int]:
    """Product ids named in the message, in order, without repeats."""
    found: dict[int, None] = {}
    for token in _ID_TOKEN.findall(message):
        p = vocab.product_index(token)
        if p >= 0:
            found.setdefault(p, None)
    return list(found)


def _lone_surrogate(text: str) -> int:
    """Where `text` holds a lone UTF-16 surrogate (text no tokenizer encodes); -1 when nowhere."""
    if text.isascii():
        return -1
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return -1


def _nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON text, counted up to MAX_JSON_DEPTH + 1."""
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
        elif bracket in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _parse_int(digits: str) -> int | float:
    """A JSON integer literal; as a float when it is too long to be any field's value."""
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else float(digits)


def _loads(text: str, where: str) -> Any:
    """The JSON value of `text`; FormatError naming `where` when the text is not JSON the parser reads
    (invalid, nested deeper than MAX_JSON_DEPTH, or holding strings that are not valid Unicode)."""
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        raise FormatError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as err:
        raise FormatError(f"{where}: not valid JSON ({err.msg} at char {err.pos})") from None
    except (ValueError, RecursionError, MemoryError) as err:
        raise FormatError(f"{where}: not valid JSON ({type(err).__name__})") from None
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogate(json.dumps(value, ensure_ascii=False)) >= 0:
        raise FormatError(f"{where}: a string escapes a lone surrogate (\\ud800-\\udfff without its pair); "
                          "strings must be valid Unicode")
    return value


def _blocks(text: str, tags: tuple[str, str]) -> tuple[list[str], str]:
    """(the stripped contents of every closed `open ... close` block, the text outside them)."""
    opening, closing = tags
    inside, outside, pos = [], [], 0
    while (start := text.find(opening, pos)) >= 0:
        end = text.find(closing, start + len(opening))
        if end < 0:
            break
        outside.append(text[pos:start])
        inside.append(text[start + len(opening):end].strip())
        pos = end + len(closing)
    outside.append(text[pos:])
    return inside, "".join(outside)


def _unfenced(text: str) -> str:
    """The text inside a ```json fence around the whole of `text`, else `text`; stripped."""
    body = text.strip()
    if len(body) < 2 * len(FENCE) or not (body.startswith(FENCE) and body.endswith(FENCE)):
        return body
    inner = body[len(FENCE):-len(FENCE)]
    return inner.removeprefix(FENCE_LANGUAGE).strip()


def _load(text: str) -> dict:
    """The turn object of either wire format (FormatError if it is neither)."""
    if (at := _lone_surrogate(text)) >= 0:
        raise FormatError(f"turn: not valid Unicode (a lone surrogate {text[at]!r} at char {at})")
    if TOOL_CALL_TAGS[0] in text:
        calls, answer = [], None
        blocks, rest = _blocks(text, TOOL_CALL_TAGS)
        for i, block in enumerate(blocks):
            call = _loads(block, f"{TOOL_CALL_TAGS[0]} block {i}")
            if isinstance(call, dict) and call.get("name") == ANSWER_TOOL:
                answer = call.get("arguments", call.get("args"))
            else:
                calls.append(call)
        message = _blocks(rest, THINK_TAGS)[1].strip()
        return {"assistant_message": message, "tool_calls": calls, "answer": answer, "_qwen": True}
    try:
        turn = _loads(_unfenced(text), "turn")
    except FormatError as err:
        raise FormatError(f"{err}; reply with one JSON object") from None
    if not isinstance(turn, dict):
        raise FormatError(f"expected one JSON object, got {type(turn).__name__}")
    return turn


def parse_turn(text: str, vocab: Vocab, cap: Capacities, template: Action) -> ParsedTurn:
    """Parse one agent turn. `template` is a host (NumPy) `noop_action(cap)`; it is copied, not changed."""
    action = _copy(template)
    report = ParsedTurn(action=action)
    try:
        if not isinstance(text, str):
            raise FormatError(f"expected the turn as a string, got {type(text).__name__}")
        turn = _load(text)
        qwen = turn.pop("_qwen", False)
        report.unknown_keys += [k for k in turn if k not in TOP_KEYS]
        message = turn.get("assistant_message")
        if not isinstance(message, str) or (not message.strip() and not qwen):
            raise FormatError("assistant_message: a non-empty string is required")
        report.message = message.strip()
        _tool_calls(turn.get("tool_calls"), action, vocab, cap, report)
        _answer(turn.get("answer"), action, vocab, report)
    except FormatError as err:
        failed = _copy(template)
        failed.format_ok[...] = False
        return ParsedTurn(action=failed, message=report.message, format_error=str(err),
                          unknown_keys=report.unknown_keys)
    shown = _mentioned_products(report.message, vocab)[:MAX_REC]
    action.presented[: len(shown)] = shown
    action.msg_act[...] = PRESENT if shown else INFORM
    return report


def _copy(action: Action) -> Action:
    return jax.tree.map(lambda x: np.array(x, copy=True), action)
