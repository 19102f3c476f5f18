"""A structured `Action` written out as the JSON turn a careful agent would send (SPEC §2).

This is how the scripted oracle speaks the text protocol (`TextEnv.oracle_action`, warm-start transcripts):
the JSON goes back through the same parser and the same customer as a model's output, so the text path is
tested end to end. Queries are token hashes in the Action; `Lexicon` turns them back into the words they
hash (every word an oracle can search with comes from the catalog's names or the policy KB).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ecomjax.catalog.lexical import token_hash, tokenize
from ecomjax.catalog.schema import EQ_FILTER_KEYS, RANGE_FIELDS, RANGE_FILTER_KEYS
from ecomjax.catalog.types import Catalog, Vocab
from ecomjax.tasks.action import ASK, PRESENT, Action
from ecomjax.tasks.constraints import CONSTRAINT_KEYS
from ecomjax.tasks.goal import (
    GENERIC_SLOT, MAX_ITEMS, SLOT_BUDGET, SLOT_ORDER, SLOT_QTY, SLOT_REASON, SLOT_VARIANT, TASK_NAMES,
)
from ecomjax.text import ids
from ecomjax.text.results import compact_json, number
from ecomjax.user.text import describe_product
from ecomjax.world import policy_kb
from ecomjax.world.state import ORDER_STATUSES, RETURN_METHODS, RETURN_REASONS
from ecomjax.world.tools import TOOL_ARGS, TOOL_NAMES

# Questions the customer's `detect_ask` maps back to the slot asked about (tests/test_text.py checks each).
KEY_QUESTIONS: dict[str, str] = {
    "price": "What is the most you want to spend?",
    "cat": "What kind of product are you looking for?",
    "brand": "Do you have a preferred brand?",
    "store": "Do you prefer a particular store?",
    "color": "What color would you like?",
    "size": "What size do you need?",
    "material": "Which material do you prefer?",
    "connector_type": "Which connector do you need?",
    "item_form": "What form should it come in?",
    "skin_type": "What is your skin type?",
    "finish_type": "Which finish would you like?",
    "rating": "What minimum star rating do you want?",
    "rating_count": "How many reviews should it have at least?",
    "ship_days": "How soon do you need it delivered?",
    "wattage": "What wattage do you need?",
    "weight_lbs": "What is the maximum weight you accept?",
    "screen_size_inches": "What screen size do you want?",
}
GENERIC_QUESTION = "Is there anything else I should know?"
ORDER_QUESTION = "Which order is it? Could you give me the order ID?"
BUDGET_QUESTION = "What is your total budget?"
REASON_QUESTION = "Why do you want to return it?"
WORKING = "Let me look into that for you."
ANSWERING = "Here is what I found."


class Lexicon:
    """Token hash -> word, over every name of the catalog (categories, brands, stores, values) and the
    policy KB's search words."""

    def __init__(self, vocab: Vocab):
        names = [*vocab.categories, *vocab.brands, *vocab.stores,
                 *(v for values in vocab.attr_values.values() for v in values)]
        words = [w for n in names for w in tokenize(n.replace("/", " ").replace("_", " "))]
        words += [w for rule in policy_kb.RULES for w in policy_kb.search_tokens(rule)]
        self._words = {token_hash(w): w for w in words}

    def words(self, hashes: np.ndarray) -> str:
        """The query text whose tokens hash to `hashes` (0 pads). Raises KeyError for an unknown hash."""
        out = []
        for h in np.asarray(hashes):
            if h:
                if int(h) not in self._words:
                    raise KeyError(f"query token hash {int(h)} is not a word of this catalog or the policy KB")
                out.append(self._words[int(h)])
        return " ".join(out)


def filters_to_dict(filters: Any, vocab: Vocab) -> dict[str, Any]:
    """The inverse of `catalog.retrieval.filters_from_dict` (host Filters of one call)."""
    out: dict[str, Any] = {}
    for i, key in enumerate(EQ_FILTER_KEYS):
        v = int(filters.eq[i])
        if v < 0:
            continue
        if key == "cat":
            out[key] = vocab.categories[v]
        elif key == "brand":
            out[key] = vocab.brands[v]
        elif key == "store":
            out[key] = vocab.stores[v]
        else:
            out[key] = vocab.attr_values[key][v]
    for key, (fld, bound) in RANGE_FILTER_KEYS.items():
        x = float((filters.lo if bound == 0 else filters.hi)[RANGE_FIELDS.index(fld)])
        if np.isfinite(x):
            out[key] = number(x)
    return out


def _call_args(name: str, call: Any, vocab: Vocab, lexicon: Lexicon) -> dict[str, Any]:
    pid = lambda p: vocab.product_id(int(p))  # noqa: E731
    variant = lambda p, v: None if int(v) < 0 else ids.variant_id(pid(p), int(v))  # noqa: E731
    order, line = int(call.order), int(call.line)
    values = {
        "query": lambda: lexicon.words(call.query),
        "filters": lambda: filters_to_dict(call.filters, vocab),
        "top_k": lambda: int(call.top_k),
        "candidate_product_ids": lambda: [pid(p) for p in np.asarray(call.ids) if p >= 0],
        "product_id": lambda: pid(call.product),
        "new_product_id": lambda: pid(call.product),
        "variant_id": lambda: variant(call.product, call.variant),
        "new_variant_id": lambda: variant(call.product, call.variant),
        "quantity": lambda: int(call.qty),
        "days": lambda: int(call.days),
        "order_id": lambda: ids.order_id(order),
        "line_id": lambda: ids.cart_line_id(line) if name.startswith("cart.") else ids.order_line_id(order, line),
        "reason_code": lambda: RETURN_REASONS[int(call.reason)],
        "method": lambda: RETURN_METHODS[int(call.method)],
        "shipping_address_id": lambda: ids.address_id(call.address),
        "payment_method_id": lambda: ids.payment_id(call.payment),
    }
    args = {arg: values[arg]() for arg, _, _ in TOOL_ARGS[name]}
    return {k: v for k, v in args.items() if not (k == "filters" and not v)}


def _question(slot: int, goal: Any, catalog: Catalog, vocab: Vocab) -> str:
    """A question about `slot` of one intent's goal (host arrays)."""
    if slot == GENERIC_SLOT or slot < 0:
        return GENERIC_QUESTION
    if slot < SLOT_VARIANT:
        return KEY_QUESTIONS.get(CONSTRAINT_KEYS[int(goal.c_key[slot])], GENERIC_QUESTION)
    if slot < SLOT_QTY + MAX_ITEMS:
        kind = "variant" if slot < SLOT_QTY else "qty"
        item = int(goal.items[slot - (SLOT_VARIANT if kind == "variant" else SLOT_QTY)])
        desc = describe_product(item, catalog, vocab) if item >= 0 else "item"
        if kind == "variant":
            return f"Which variant of the {desc} would you like?"
        return f"How many of the {desc} do you need?"
    return {SLOT_ORDER: ORDER_QUESTION, SLOT_BUDGET: BUDGET_QUESTION, SLOT_REASON: REASON_QUESTION}.get(
        slot, GENERIC_QUESTION)


def _answer(answer: Any, vocab: Vocab, journey: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"env": TASK_NAMES[int(answer.task)]}
    rec = [vocab.product_id(int(p)) for p in np.asarray(answer.rec) if p >= 0]
    if rec:
        out["recommended_product_ids"] = rec
    if int(answer.order) >= 0:
        out["selected_order_id"] = ids.order_id(int(answer.order))
        if int(answer.line) >= 0:
            out["selected_line_id"] = ids.order_line_id(int(answer.order), int(answer.line))
    if int(answer.status) >= 0:
        out["order_status"] = ORDER_STATUSES[int(answer.status)]
    if int(answer.policy_cat) >= 0:
        out["policy_answer"] = policy_kb.ANSWER_VOCAB[int(answer.policy_cat)]
    elif np.isfinite(float(answer.policy_num)):
        out["policy_answer"] = number(float(answer.policy_num))
    if journey:
        out["intent"] = int(answer.intent)
    out["done"] = bool(answer.done)
    return out


def action_to_json(action: Action, goal: Any, catalog: Catalog, vocab: Vocab, lexicon: Lexicon) -> str:
    """The JSON turn of one host (NumPy) Action. `goal` is the intent the action works on (host IntentGoal
    of one intent), used to word questions about its slots."""
    calls = []
    for i in range(np.asarray(action.calls.tool).shape[0]):
        tool = int(action.calls.tool[i])
        if tool >= 0:
            call = jax.tree.map(lambda x: x[i], action.calls)  # noqa: B023
            calls.append({"name": TOOL_NAMES[tool], "args": _call_args(TOOL_NAMES[tool], call, vocab, lexicon)})
    act = int(action.msg_act)
    if act == ASK:
        message = _question(int(action.ask_slot), goal, catalog, vocab)
    elif act == PRESENT:
        shown = [vocab.product_id(int(p)) for p in np.asarray(action.presented) if p >= 0]
        message = f"Here are my picks: {', '.join(shown)}."
    else:
        message = ANSWERING if bool(action.answer.present) else WORKING
    turn: dict[str, Any] = {"assistant_message": message}
    if calls:
        turn["tool_calls"] = calls
    if bool(action.answer.present):
        turn["answer"] = _answer(action.answer, vocab, int(action.answer.task) == TASK_NAMES.index("JOURNEY"))
    return compact_json(turn)

