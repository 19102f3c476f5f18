"""Host-side text realisation of the simulated customer (SPEC §5 "Communication", §8; R§8.2-8.4).

The JAX decision core (`user.core`) decides *what* the customer says (act, revealed slot, item, issue);
this module says it in English:

- `opening_message` renders one intent's opening message from its goal, stating exactly the slots in
  `goal.mentioned` (never an omitted one) and returning which slots it stated;
- `reply_message` renders every later message (`UserMessage` act + slot + item + issue);
- `detect_ask` maps an agent's free-text message to the slot it asks about (text mode, SPEC §8);
- typo / abbreviation noise (R§8.2) is driven only by a numpy Generator derived from the episode key
  (`rng_for`), never by Python's salted `hash()`, and never touches values (ids, numbers, prices,
  brands, colours, ...).

`opening_message_facts` / `reply_message_facts` return the same text plus the values it states (its protected
spans), the facts an LLM paraphrase of the message must keep (`user.llm`).

Values are wrapped in protection markers while a message is assembled so that noise skips them, and every
template is checked at import time to use only the placeholders its renderer fills: no `{placeholder}` can
reach a message.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
import string
from collections.abc import Mapping
from typing import Any

import numpy as np

from ecomjax.catalog.schema import DISCRETE_ATTRS, MAX_VARIANTS
from ecomjax.tasks.constraints import (
    CONSTRAINT_KEYS,
    EQ,
    GTE,
    INTEGER_KEYS,
    KEY,
    LTE,
    MAX_CONSTRAINTS,
)
from ecomjax.tasks.episode import (
    ACT_CLARIFY,
    ACT_CONFIRM,
    ACT_CORRECT,
    ACT_DISSATISFIED,
    ACT_DONE,
    ACT_ELABORATE,
    ACT_NONE,
    ACT_RAGEQUIT,
)
from ecomjax.tasks.goal import (
    GENERIC_SLOT,
    MAX_ITEMS,
    NUM_SLOTS,
    PERSONAS,
    SLOT_BUDGET,
    SLOT_ORDER,
    SLOT_QTY,
    SLOT_REASON,
    SLOT_VARIANT,
    TASK,
    TASK_NAMES,
)
from ecomjax.world import policy_kb
from ecomjax.world.state import RETURN_REASONS

# CART feedback issue codes (UserMessage.issue with act `correct`).
CART_MISSING, CART_WRONG_VARIANT, CART_TOO_MANY, CART_TOO_FEW, CART_EXTRA = 1, 2, 3, 4, 5
# RETURN feedback issue codes.
RETURN_WRONG_LINE = 1

_P0, _P1 = "\x01", "\x02"          # protection markers around values while a message is assembled
_PROTECTED = re.compile(f"{_P0}[^{_P1}]*{_P1}")
_EPOCH = datetime.date(1970, 1, 1)
_RNG_SALT = 0x7E47_5EED


# ------------------------------------------------------------------------------------------ rng / noise

def rng_for(key_data: Any, turn: int, stream: int = 0) -> np.random.Generator:
    """The text rng of one customer message: a Generator seeded from the episode key's uint32 words, the turn
    and a stream number. Process-independent (no `hash()`); accepts a typed JAX key, raw key data or ints."""
    try:  # a typed JAX key (jax.random.key) -> its raw uint32 words
        import jax

        if hasattr(key_data, "dtype") and jax.dtypes.issubdtype(key_data.dtype, jax.dtypes.prng_key):
            key_data = jax.random.key_data(key_data)
    except ImportError:  # pragma: no cover
        pass
    words = np.asarray(key_data).astype(np.uint64).ravel() & np.uint64(0xFFFFFFFF)
    entropy = [int(w) for w in words] + [int(turn) & 0xFFFFFFFF, int(stream) & 0xFFFFFFFF, _RNG_SALT]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _split(rng: np.random.Generator) -> tuple[np.random.Generator, np.random.Generator]:
    """(template rng, noise rng): independent children so that p_noise never changes the wording."""
    seeds = rng.integers(0, 2**63 - 1, size=2, dtype=np.int64)
    return np.random.default_rng(int(seeds[0])), np.random.default_rng(int(seeds[1]))


def _pick(seq, rng: np.random.Generator):
    return seq[int(rng.integers(len(seq)))]


# R§8.2: 16 word-level abbreviations, applied with probability 3p.
ABBREVIATIONS: dict[str, str] = {
    "looking": "lookin", "please": "pls", "something": "smthg", "recommend": "reccomend", "because": "cuz",
    "quantity": "qty", "you": "u", "your": "ur", "thanks": "thx", "really": "rly", "probably": "prob",
    "about": "abt", "going": "goin", "message": "msg", "through": "thru", "tomorrow": "tmrw",
}
_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
QWERTY_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_QWERTY_ROWS):
    for _c, _ch in enumerate(_row):
        _nb = []
        for _dr in (-1, 0, 1):
            _rr = _r + _dr
            if 0 <= _rr < len(_QWERTY_ROWS):
                for _dc in (-1, 0, 1):
                    _cc = _c + _dc
                    if (_dr or _dc) and 0 <= _cc < len(_QWERTY_ROWS[_rr]):
                        _nb.append(_QWERTY_ROWS[_rr][_cc])
        QWERTY_NEIGHBOURS[_ch] = "".join(_nb)
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_BLOCKING = set(string.ascii_letters + string.digits + "_$" + _P0 + _P1)
_BLOCKING_NEAR = set(string.digits + "_$" + _P0 + _P1)


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new[0].upper() + new[1:] if old[0].isupper() else new


def _noise_word(word: str, p: float, rng: np.random.Generator) -> str:
    low = word.lower()
    if low in ABBREVIATIONS and rng.random() < min(1.0, 3.0 * p):
        word = _match_case(ABBREVIATIONS[low], word)
    chars = list(word)
    out: list[str] = []
    i = 0
    while i < len(chars):
        c = chars[i]
        if c.isalpha() and rng.random() < p:
            r = rng.random()
            if r < 0.3:                                           # drop
                i += 1
                continue
            if r < 0.6:                                           # duplicate
                out += [c, c]
            elif r < 0.8:                                         # swap with the next letter
                if i + 1 < len(chars) and chars[i + 1].isalpha():
                    out += [chars[i + 1], c]
                    i += 2
                    continue
                out.append(c)
            else:                                                 # QWERTY neighbour, chosen by the rng
                nb = QWERTY_NEIGHBOURS[c.lower()]
                sub = nb[int(rng.integers(len(nb)))]
                out.append(sub.upper() if c.isupper() else sub)
        else:
            out.append(c)
        i += 1
    noisy = "".join(out)
    return noisy if any(ch.isalpha() for ch in noisy) else word


def _glued(s: str, start: int, end: int) -> bool:
    """Whether the word s[start:end] touches a value, digit, `_` or `$` (directly or through one of - . /)."""
    for i, step in ((start - 1, -1), (end, 1)):
        c = s[i] if 0 <= i < len(s) else " "
        if c in _BLOCKING:
            return True
        if c in "-./" and 0 <= i + step < len(s) and s[i + step] in _BLOCKING_NEAR:
            return True
    return False


def _noise_marked(marked: str, p: float, rng: np.random.Generator) -> str:
    """Typos/abbreviations on plain alphabetic words outside protected spans (and not glued to a value,
    a digit, `_` or `$`)."""
    if p <= 0.0:
        return marked
    spans = [(m.start(), m.end()) for m in _PROTECTED.finditer(marked)]
    pieces: list[str] = []
    pos = 0
    si = 0
    for m in _WORD.finditer(marked):
        while si < len(spans) and spans[si][1] <= m.start():
            si += 1
        if si < len(spans) and spans[si][0] <= m.start() < spans[si][1]:
            continue
        if _glued(marked, m.start(), m.end()):
            continue
        pieces.append(marked[pos:m.start()])
        pieces.append(_noise_word(m.group(), p, rng))
        pos = m.end()
    pieces.append(marked[pos:])
    return "".join(pieces)


def _finish(marked: str, p_noise: float, noise_rng: np.random.Generator) -> str:
    text = _noise_marked(marked, float(p_noise), noise_rng)
    text = text.replace(_P0, "").replace(_P1, "")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([.,?!:;])", r"\1", text)
    # Last guard: templates are validated at import and values sanitised, so this never fires in practice.
    return text.replace("{", "(").replace("}", ")")


def _protected_values(marked: str, text: str) -> tuple[str, ...]:
    """The values of an assembled message (its protected spans, whitespace and braces normalised as `_finish`
    writes them) that occur verbatim in its final `text`, in order of appearance, without repeats. Noise never
    touches a protected span, so in practice every value is found; the check keeps the promise exact."""
    out: list[str] = []
    for m in _PROTECTED.finditer(marked):
        value = re.sub(r"\s+", " ", m.group()[1:-1]).strip().replace("{", "(").replace("}", ")")
        if value and value not in out and value in text:
            out.append(value)
    return tuple(out)


def add_noise(text: str, p_noise: float, rng: np.random.Generator, protected: tuple[str, ...] = ()) -> str:
    """R§8.2 noise on a plain string: words inside any of `protected` (and anything with digits, `_` or `$`)
    are left alone."""
    marked = _sanitize(text)
    for value in sorted({v for v in protected if v}, key=len, reverse=True):
        marked = _protect_words(marked, value)
    return _finish(marked, p_noise, rng)


def _sanitize(s: str) -> str:
    return str(s).replace("{", "(").replace("}", ")").replace(_P0, "").replace(_P1, "")


def _v(s: Any) -> str:
    """A value: protected from noise, braces neutralised."""
    return f"{_P0}{_sanitize(s)}{_P1}"


def _clean(marked: str) -> str:
    return marked.replace(_P0, "").replace(_P1, "")


def _protect_words(marked: str, value: str) -> str:
    """Wrap whole-word occurrences of `value` outside existing protected spans."""
    pat = re.compile(r"(?<![\w])" + re.escape(value) + r"(?![\w])", re.IGNORECASE)
    parts = re.split(f"({_P0}[^{_P1}]*{_P1})", marked)
    return "".join(part if part.startswith(_P0) else pat.sub(lambda m: _v(m.group()), part) for part in parts)


# ------------------------------------------------------------------------------------------ goal access

@functools.cache
def _empty() -> dict[str, np.ndarray]:
    """`empty_intent()` as numpy arrays (defaults of fields a goal dict leaves out)."""
    from ecomjax.tasks.goal import empty_intent

    e = empty_intent()
    return {f.name: np.asarray(getattr(e, f.name)) for f in dataclasses.fields(e)}


def _goal_dict(goal: Any, intent: int | None = None) -> dict[str, np.ndarray]:
    """One intent's goal as numpy arrays (dict or IntentGoal; a goal with a leading intent axis is indexed
    by `intent`); missing fields get `empty_intent()` defaults."""
    if isinstance(goal, Mapping):
        raw = dict(goal)
    elif dataclasses.is_dataclass(goal):
        raw = {f.name: getattr(goal, f.name) for f in dataclasses.fields(goal)}
    else:
        raw = dict(vars(goal))
    g = {k: np.asarray(v) for k, v in raw.items()}
    if "task" in g and g["task"].ndim == 1:
        i = 0 if intent is None else int(intent)
        g = {k: v[i] for k, v in g.items()}
    out = dict(_empty())
    out.update(g)
    return out


def _i(x) -> int:
    return int(np.asarray(x))


def _f(x) -> float:
    return float(np.asarray(x))


def _task(g) -> str:
    t = _i(g["task"])
    return TASK_NAMES[t] if 0 <= t < len(TASK_NAMES) else ""


# ------------------------------------------------------------------------------------------ value helpers

def order_ref(order: int) -> str:
    """The order id customers and tools use: order index 2 -> "ord_003"."""
    return f"ord_{int(order) + 1:03d}"


def date_text(day: int) -> str:
    """Day number (days since 1970-01-01) -> "2026-11-28"."""
    return (_EPOCH + datetime.timedelta(days=int(day))).isoformat()


def money(dollars: float) -> str:
    return f"${float(dollars):,.2f}"


def _num(x: float, min_decimals: int = 0) -> str:
    """A number as written: at most 2 decimals, trailing zeros stripped down to `min_decimals`."""
    x = round(float(x), 2)
    s = f"{x:.2f}".rstrip("0")
    s = s.removesuffix(".")
    if min_decimals and "." not in s:
        s += "." + "0" * min_decimals
    return s


def leaf_name(c: int, vocab) -> str:
    """A category node's own name, as the customer says it ("phone cases")."""
    return vocab.category_name(int(c)).split("/")[-1].replace("_", " ")


def _cat_at(arr, idx) -> int:
    return int(np.asarray(arr[idx]))


def describe_product(p: int, catalog, vocab) -> str:
    """"<leaf noun> by <brand>" (never the full title)."""
    return _clean(_describe_m(p, catalog, vocab))


def _describe_m(p: int, catalog, vocab) -> str:
    p = int(p)
    if not 0 <= p < catalog.num_products:
        return "item"
    noun = leaf_name(_cat_at(catalog.category, p), vocab)
    b = _cat_at(catalog.brand, p)
    if 0 <= b < len(vocab.brands):
        return _v(f"{_sanitize(noun)} by {_sanitize(vocab.brands[b])}")
    return _v(noun)


def constraint_value_text(key: int | str, value: float, vocab) -> str:
    """The value of one constraint exactly as messages write it ("$45.00", "Zenka", "navy", "4.5", "3")."""
    name = key if isinstance(key, str) else CONSTRAINT_KEYS[int(key)]
    value = float(value)
    if name == "price":
        return money(value)
    if name == "cat":
        return leaf_name(round(value), vocab)
    if name == "brand":
        return vocab.brands[round(value)]
    if name == "store":
        return vocab.stores[round(value)]
    if name in vocab.attr_values:
        return vocab.attr_values[name][round(value)]
    if name == "rating":
        return _num(value, 1)
    if name in INTEGER_KEYS:
        return str(round(value))
    return _num(value)


_PHRASES: dict[str, dict[int, tuple[str, ...]]] = {
    "price": {LTE: ("under {v}", "for at most {v}", "costing no more than {v}"),
              GTE: ("over {v}", "costing at least {v}"), EQ: ("priced at {v}",)},
    "cat": {EQ: ("in the {v} category", "from the {v} category")},
    "brand": {EQ: ("from {v}", "by {v}", "from the brand {v}")},
    "store": {EQ: ("sold by {v}", "from the store {v}")},
    "color": {EQ: ("in {v}", "in the color {v}", "available in {v}")},
    "size": {EQ: ("in size {v}", "available in size {v}")},
    "material": {EQ: ("made of {v}", "in {v}")},
    "connector_type": {EQ: ("with a {v} connector", "with {v} connectivity")},
    "item_form": {EQ: ("in {v} form", "available in {v} form")},
    "skin_type": {EQ: ("for {v} skin", "suited to {v} skin")},
    "finish_type": {EQ: ("with a {v} finish", "in a {v} finish")},
    "rating": {GTE: ("rated at least {v} stars", "with a rating of at least {v} stars"),
               LTE: ("rated at most {v} stars",), EQ: ("rated {v} stars",)},
    "ship_days": {LTE: ("shipping within {v} {days}", "delivered within {v} {days}"),
                  GTE: ("shipping in no less than {v} {days}",), EQ: ("shipping in {v} {days}",)},
    "rating_count": {GTE: ("with at least {v} reviews", "with {v} or more ratings"),
                     LTE: ("with at most {v} reviews",), EQ: ("with {v} reviews",)},
    "wattage": {GTE: ("with at least {v} watts", "rated at least {v} W"), LTE: ("with at most {v} watts",),
                EQ: ("rated {v} watts",)},
    "weight_lbs": {LTE: ("weighing at most {v} lbs", "under {v} lbs"), GTE: ("weighing at least {v} lbs",),
                   EQ: ("weighing {v} lbs",)},
    "screen_size_inches": {GTE: ("with a screen of at least {v} inches", "with a screen no smaller than {v} inches"),
                           LTE: ("with a screen of at most {v} inches",), EQ: ("with a {v} inch screen",)},
}
# A unit right after a value is protected with it ("3 days", "4.0 stars").
_UNIT_AFTER_VALUE = re.compile(_P1 + r"( (?:days?|stars|reviews|ratings|watts|W|lbs|inches))\b")
_GENERIC_PHRASE = {EQ: "with {k} {v}", LTE: "with {k} at most {v}", GTE: "with {k} at least {v}"}


def _constraint_m(key: int | str, op: int, value: float, vocab, rng: np.random.Generator | None) -> str:
    name = key if isinstance(key, str) else CONSTRAINT_KEYS[int(key)]
    op = int(op)
    v = constraint_value_text(name, value, vocab)
    options = _PHRASES.get(name, {}).get(op)
    if not options:
        return _GENERIC_PHRASE.get(op, _GENERIC_PHRASE[EQ]).format(k=name.replace("_", " "), v=_v(v))
    tmpl = options[0] if rng is None else _pick(options, rng)
    days = "day" if v == "1" else "days"
    return _UNIT_AFTER_VALUE.sub(r"\1" + _P1, tmpl.format(v=_v(v), days=days))


def format_constraint(key: int | str, op: int, value: float, vocab, rng: np.random.Generator | None = None) -> str:
    """One constraint as a phrase that can follow a noun: "under $45.00", "from Zenka", "in navy",
    "rated at least 4.0 stars", "shipping within 3 days". With `rng` a phrasing is drawn, else the first."""
    return _clean(_constraint_m(key, op, value, vocab, rng))


def _variant_value(p: int, j: int, world, catalog, vocab) -> tuple[str, str] | None:
    """(attribute, value) of variant slot j of product p: catalog slots, then the episode's synthetic ones."""
    p, j = int(p), int(j)
    if not (0 <= p < catalog.num_products) or j < 0:
        return None
    if j < MAX_VARIANTS:
        a = _cat_at(catalog.var_key, p)
        val = int(np.asarray(catalog.var_value[p, j]))
    else:
        if world is None:
            return None
        xp = np.asarray(world.xvar_product)
        rows = np.nonzero(xp == p)[0]
        xv = j - MAX_VARIANTS
        if rows.size == 0 or xv >= np.asarray(world.xvar_value).shape[1]:
            return None
        a = int(np.asarray(world.xvar_key)[rows[0]])
        val = int(np.asarray(world.xvar_value)[rows[0], xv])
    if not (0 <= a < len(DISCRETE_ATTRS)) or val < 0:
        return None
    attr = DISCRETE_ATTRS[a]
    return attr, vocab.attr_values[attr][val]


_VARIANT_PHRASES = {
    "color": "in {v}", "size": "in size {v}", "material": "in {v}", "finish_type": "with the {v} finish",
    "connector_type": "with the {v} connector", "item_form": "in {v} form", "skin_type": "for {v} skin",
}


def _variant_m(attr: str, value: str) -> str:
    return _VARIANT_PHRASES.get(attr, "in the {v} version").format(v=_v(value))


REASON_CLAUSES: dict[str, tuple[str, str]] = {
    # reason code -> (canonical value text, clause templates with {r})
    "defective": ("defective", ("it's {r}", "it arrived {r}", "the one I got is {r}")),
    "wrong_item": ("wrong item", ("I got the {r}", "they sent the {r}", "it's the {r}")),
    "not_as_described": ("not as described", ("it's {r}", "the item is {r}")),
    "changed_mind": ("changed my mind", ("I {r}", "honestly I {r}")),
    "too_large": ("too large", ("it's {r}", "it turned out {r}")),
    "too_small": ("too small", ("it's {r}", "it turned out {r}")),
    "arrived_late": ("arrived late", ("it {r}", "the package {r}")),
    "better_price_found": ("better price", ("I found a {r} elsewhere", "I found a {r} somewhere else")),
}


def reason_text(reason: int) -> str:
    """Canonical text of a RETURN reason code ("defective", "wrong item", ...)."""
    return REASON_CLAUSES[RETURN_REASONS[int(reason)]][0]


def _reason_clause_m(reason: int, rng) -> str:
    r = int(reason) if 0 <= int(reason) < len(RETURN_REASONS) else 0
    canon, clauses = REASON_CLAUSES[RETURN_REASONS[r]]
    return _pick(clauses, rng).format(r=_v(canon))


def _cap(marked: str) -> str:
    """Capitalise the first literal letter (never a value's)."""
    for i, ch in enumerate(marked):
        if ch == _P0:
            return marked
        if ch.isalpha():
            return marked[:i] + ch.upper() + marked[i + 1:]
    return marked


def _join(parts: list[str]) -> str:
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# ------------------------------------------------------------------------------------------ slot values

def _valid_slots(g, world, catalog, vocab) -> np.ndarray:
    """Slots this goal can render (it has a value for). # [NUM_SLOTS] bool"""
    task = _task(g)
    ok = np.zeros(NUM_SLOTS, bool)
    has_cons = task in ("PD", "SUB") or (task == "RETURN" and bool(np.asarray(g["replacement"])))
    ok[:MAX_CONSTRAINTS] = np.asarray(g["c_mask"], bool) & has_cons
    items = np.asarray(g["items"])
    for n in range(MAX_ITEMS):
        if n < items.shape[0] and items[n] >= 0:
            ok[SLOT_QTY + n] = True
            j = int(np.asarray(g["item_variant"])[n])
            ok[SLOT_VARIANT + n] = j >= 0 and _variant_value(items[n], j, world, catalog, vocab) is not None
    ok[SLOT_ORDER] = _i(g["order"]) >= 0 and task in ("RETURN", "STATUS")
    ok[SLOT_BUDGET] = task == "BUNDLE" and _i(g["budget"]) >= 0
    ok[SLOT_REASON] = task == "RETURN" and 0 <= _i(g["reason"]) < len(RETURN_REASONS)
    return ok


def slot_value(slot: int, goal_i, world, catalog, vocab) -> str | None:
    """The value text of a slot exactly as messages state it (None when the goal has no such value):
    constraint values, variant value, quantity, order id, budget, return reason."""
    g = _goal_dict(goal_i)
    slot = int(slot)
    if not (0 <= slot < NUM_SLOTS) or not _valid_slots(g, world, catalog, vocab)[slot]:
        return None
    if slot < MAX_CONSTRAINTS:
        return constraint_value_text(_i(g["c_key"][slot]), _f(g["c_value"][slot]), vocab)
    if SLOT_VARIANT <= slot < SLOT_VARIANT + MAX_ITEMS:
        n = slot - SLOT_VARIANT
        return _variant_value(g["items"][n], g["item_variant"][n], world, catalog, vocab)[1]
    if SLOT_QTY <= slot < SLOT_QTY + MAX_ITEMS:
        return str(_i(g["item_qty"][slot - SLOT_QTY]))
    if slot == SLOT_ORDER:
        return order_ref(_i(g["order"]))
    if slot == SLOT_BUDGET:
        return money(_i(g["budget"]) / 100.0)
    return reason_text(_i(g["reason"]))


# ------------------------------------------------------------------------------------------ template banks

PERSONA_PHRASES: dict[str, tuple[str, ...]] = {
    "budget": ("I'm on a budget.", "Also, I'm on a budget.", "I'm on a budget, so cheaper is better."),
    "quality": ("Quality matters most to me.", "Honestly, quality matters most to me.",
                "Quality matters most to me, so good reviews help."),
    "speed": ("I need it fast.", "Please keep in mind I need it fast.", "I need it fast, so quick shipping helps."),
    "balanced": ("I'd like a good all-round option.", "Just a good all-round option, please.",
                 "A good all-round option would be great."),
}
PERSONA_KEY_PHRASE = {"budget": "I'm on a budget", "quality": "quality matters most to me",
                      "speed": "I need it fast", "balanced": "a good all-round option"}

OPENING: dict[str, tuple[str, ...]] = {
    "PD": (
        "Hi, I'm looking for {item}{mods}. {persona}",
        "I need {item}{mods}. {persona}",
        "Can you help me find {item}{mods}? {persona}",
        "{persona} I'm shopping for {item}{mods}.",
        "Hello! I want to buy {item}{mods}. {persona}",
        "Could you recommend {item}{mods}? {persona}",
        "Hey, I'm after {item}{mods}. {persona}",
        "I'm looking for {item}. {req}{persona}",
        "Please find me {item}{mods}. {persona}",
        "Do you have {item}{mods}? {persona}",
    ),
    "SUB": (
        "Hi, the {orig} I wanted is out of stock. Can you find me {item}{mods}? {persona}",
        "I was going to buy the {orig}, but it's sold out. I need {item}{mods} instead. {persona}",
        "The {orig} is unavailable. Could you suggest {item}{mods}? {persona}",
        "{persona} I need a substitute for the {orig}, which is out of stock: {item}{mods}.",
        "My usual {orig} is out of stock. Please find me {item}{mods}. {persona}",
        "Can you recommend {item}{mods} to replace the {orig}? It's out of stock. {persona}",
        "The {orig} is out of stock. I'd like {item} instead. {req}{persona}",
        "Looks like the {orig} is sold out. What else do you have? I want {item}{mods}. {persona}",
    ),
    "CART": (
        "Hi, I'd like to add {items} to my cart.",
        "Can you put {items} in my cart?",
        "I need {items} in my cart, please.",
        "Please add {items} to the cart.",
        "I'm building an order: {items}.",
        "Could you help me fill my cart? I want {items}.",
        "Hey, add {items} to my cart please.",
    ),
    "RETURN": (
        "Hi, I want to return the {prod}{order}.{reason}{exchange}",
        "I'd like to send back the {prod}{order}.{reason}{exchange}",
        "Can I return the {prod}{order}?{reason}{exchange}",
        "I need to return the {prod} I bought{order}.{reason}{exchange}",
        "Hello, I'm not keeping the {prod}{order}.{reason}{exchange}",
        "Please help me return the {prod}{order}.{reason}{exchange}",
        "How do I return the {prod}{order}?{reason}{exchange}",
        "I want to start a return for the {prod}{order}.{reason}{exchange}",
    ),
    "STATUS": (
        "Hi, what's the status of {ref}?",
        "Can you check on {ref}?",
        "Where is {ref}? I'd like an update.",
        "I'm waiting on {ref}. Has it shipped yet?",
        "Could you tell me the status of {ref}?",
        "Any news about {ref}?",
        "I want to track {ref}. What's its status?",
    ),
    "BUNDLE": (
        "I'm putting together a project and need {cats}.{budget}",
        "Hi, I need one item from each of these: {cats}.{budget}",
        "Can you help me pick {cats}?{budget}",
        "I'm planning a setup with {cats}.{budget} What do you suggest?",
        "Please recommend {cats} for my project.{budget}",
        "I'd like a bundle: {cats}.{budget}",
    ),
}
_OPENING_FIELDS = {
    "PD": {"item", "mods", "req", "persona"}, "SUB": {"orig", "item", "mods", "req", "persona"},
    "CART": {"items"}, "RETURN": {"prod", "order", "reason", "exchange"}, "STATUS": {"ref"},
    "BUNDLE": {"cats", "budget"},
}
PD_HEADS = ("{v}", "some {v}")
SUB_HEADS = ("similar {v}", "other {v}", "an alternative in the {v} category")
REQ_FORMS = ("Must-haves: {m}. ", "My requirements: {m}. ", "Checklist: {m}. ")
CART_QTY_FORMS = ("{q} of the {d}", "{q} {units} of the {d}")
CART_NOQTY_FORMS = ("the {d}",)        # never "some": an unstated quantity may be 1
RETURN_ORDER_FORMS = (" from order {o}", " (order {o})")
REASON_FORMS = (" {C}.", " The reason: {c}.", " Basically, {c}.")
EXCHANGE_FORMS = (" I'd like to exchange it for {item}{mods}.", " I want an exchange for {item}{mods}.")
EXCHANGE_HEADS_CAT = ("other {v}", "different {v}")
EXCHANGE_HEADS = ("a replacement", "something else")
REFUND_FORMS = (" I'd like a refund.", " I just want my money back.", "")
STATUS_INDIRECT = ("the {d} I ordered on {date}", "my order from {date} with the {d}")
STATUS_DIRECT = ("order {o}", "my order {o}")
BUDGET_FORMS = (" My budget is {b} in total.", " I can spend up to {b} overall.", " Total budget: {b}.")
JOURNEY_PREFIX = ("I have a few things to sort out today. ", "Hi, a couple of things. First: ", "")
JOURNEY_SUFFIX = (" After that I have another question.", " I also have more to ask after this.",
                  " That's the first thing; there's more after.")

CLARIFY: dict[str, tuple[str, ...]] = {
    "constraint": ("I'd prefer one {m}.", "Ideally something {m}.", "It should be one {m}.",
                   "Oh, and I want one {m}."),
    "replacement": ("For the replacement, I'd prefer one {m}.", "The new one should be one {m}.",
                    "For the exchange, I want one {m}."),
    "variant": ("For the {d}, I need it {vp}.", "I want the {d} {vp}.", "The {d} should be {vp}."),
    "qty": ("I need {q} of the {d}.", "Make it {q} of the {d}.", "I'd like {q} of the {d}."),
    "order": ("The order ID is {o}.", "It's order {o}.", "That's {o}."),
    "order_product": ("It's the {d} from order {o}.", "The {d} is in order {o}.", "Order {o}, the {d}."),
    "budget": ("My budget is {b}.", "I can spend up to {b} in total.", "Let's keep the total under {b}."),
    "reason": ("I want to return it because {c}.", "The reason is that {c}.", "Basically, {c}."),
}
CLARIFY_KEYED: dict[str, tuple[str, ...]] = {   # extra direct answers for some constraint keys (value only)
    "price": ("I don't want to spend more than {v}.", "My max is {v}."),
    "brand": ("I'd like the brand {v}.", "Brand {v}, please."),
    "color": ("The color should be {v}.", "Color {v}, please."),
    "store": ("I'd like it from the store {v}.",),
    "material": ("The material should be {v}.",),
    "size": ("Size {v}, please.",),
}
NO_PREFERENCE = ("I don't have a preference on that.", "No preference there, anything is fine.",
                 "That doesn't matter to me.", "I'm not picky about that.")
NOTHING_ELSE = ("No, that's everything I need.", "That's all the detail I have.", "Nothing else, really.")
AS_I_SAID = ("As I said: ", "Like I mentioned: ", "Again: ")
CONFIRM = ("Yes, that looks right.", "Great, that's what I need.", "Perfect, thanks.", "Yes, that works for me.",
           "That looks good.")
CONFIRM_PRODUCT = ("Yes, {pid} looks like what I want.", "{pid} looks good to me.",
                   "I like {pid}, that one works.")
CONFIRM_ITEM = ("Yes, the {d} is what I want.", "That's the right {d}.", "Yes, I want the {d}.")
CORRECT_CART = {
    CART_MISSING: ("You haven't added the {d} yet.", "The {d} is still missing from my cart.",
                   "I don't see the {d} in the cart."),
    CART_WRONG_VARIANT: ("The {d} in my cart is the wrong {attr}.", "That's the wrong {attr} for the {d}.",
                         "The {d} isn't the {attr} I wanted."),
    CART_TOO_MANY: ("There are too many of the {d} in my cart.", "That's more of the {d} than I need.",
                    "I need fewer of the {d}."),
    CART_TOO_FEW: ("I need more of the {d}.", "There aren't enough of the {d} in the cart.",
                   "That's not enough of the {d}."),
    CART_EXTRA: ("The {d} shouldn't be in my cart.", "I didn't ask for the {d}, please remove it.",
                 "Please take the {d} out of the cart."),
}
CORRECT_EXTRA_GENERIC = ("There's something in my cart I didn't ask for.",
                         "Something in the cart shouldn't be there.")
CORRECT_RETURN = ("That's not the item I want to return. It's the {d}.",
                  "Wrong item: I want to return the {d}.", "No, I mean the {d}.")
CORRECT_GENERIC = ("That's not quite what I asked for.", "Those don't match what I need.",
                   "Hmm, that's not right.")
ELABORATE_NEW = ("One more thing. {msg}", "Next: {msg}", "Thanks! Now, something else. {msg}",
                 "Okay, another request. {msg}")
ELABORATE = ("Let me add some detail.", "To be a bit more specific:", "Here's more about what I need.")
CONTINUE = ("Thanks, let me take a look.", "Okay, go on.", "Sounds good, what else can you find?",
            "Alright, thanks.", "Okay, keep going.", "Got it, thanks.")
RAGEQUIT = ("This is taking too long. I'll shop somewhere else.", "Forget it, I'm done here.",
            "I've wasted enough time on this. Bye.", "Never mind, I'll figure it out myself.",
            "This isn't working. Goodbye.")
DONE = ("That's everything, thanks for your help!", "Great, that's all I needed. Thanks!",
        "Perfect, I'm all set. Thank you!", "That's it, thanks!")
DISSATISFIED = ("That's not really what I was looking for.", "I'm not happy with these options.",
                "This isn't helping much.", "Hmm, none of this fits what I need.")

_FIELD_RE = re.compile(r"\{([^{}]*)\}")


def _fields(t: str) -> set[str]:
    return set(_FIELD_RE.findall(t))


def _validate_templates() -> None:
    """Every template uses only placeholders its renderer fills (checked once at import)."""
    def check(bank, allowed: set[str], name: str) -> None:
        for t in bank:
            bad = _fields(t) - allowed
            if bad or t.count("{") != t.count("}"):
                raise ValueError(f"template {name!r} {t!r} uses unknown placeholders {bad}")

    for task, bank in OPENING.items():
        check(bank, _OPENING_FIELDS[task], task)
    for k, ph in _PHRASES.items():
        for bank in ph.values():
            check(bank, {"v", "days"}, k)
    for name, bank in CLARIFY.items():
        check(bank, {"m", "d", "vp", "q", "o", "b", "c"}, name)
    for name, bank in CLARIFY_KEYED.items():
        check(bank, {"v"}, name)
    for name, bank in CORRECT_CART.items():
        check(bank, {"d", "attr"}, str(name))
    simple = dict(PD_HEADS=PD_HEADS, SUB_HEADS=SUB_HEADS, REQ_FORMS=REQ_FORMS, CART_QTY_FORMS=CART_QTY_FORMS,
                  CART_NOQTY_FORMS=CART_NOQTY_FORMS, RETURN_ORDER_FORMS=RETURN_ORDER_FORMS, REASON_FORMS=REASON_FORMS,
                  EXCHANGE_FORMS=EXCHANGE_FORMS, EXCHANGE_HEADS_CAT=EXCHANGE_HEADS_CAT, STATUS_INDIRECT=STATUS_INDIRECT,
                  STATUS_DIRECT=STATUS_DIRECT, BUDGET_FORMS=BUDGET_FORMS, CONFIRM_PRODUCT=CONFIRM_PRODUCT,
                  CONFIRM_ITEM=CONFIRM_ITEM, CORRECT_RETURN=CORRECT_RETURN, ELABORATE_NEW=ELABORATE_NEW)
    for name, bank in simple.items():
        check(bank, {"v", "m", "q", "d", "o", "c", "C", "item", "mods", "date", "b", "pid", "msg", "units"}, name)
    for name, bank in dict(NO_PREFERENCE=NO_PREFERENCE, NOTHING_ELSE=NOTHING_ELSE, CONFIRM=CONFIRM,
                           CONTINUE=CONTINUE, RAGEQUIT=RAGEQUIT, DONE=DONE, DISSATISFIED=DISSATISFIED,
                           ELABORATE=ELABORATE, CORRECT_GENERIC=CORRECT_GENERIC, JOURNEY_PREFIX=JOURNEY_PREFIX,
                           JOURNEY_SUFFIX=JOURNEY_SUFFIX, AS_I_SAID=AS_I_SAID, REFUND_FORMS=REFUND_FORMS,
                           CORRECT_EXTRA_GENERIC=CORRECT_EXTRA_GENERIC, EXCHANGE_HEADS=EXCHANGE_HEADS).items():
        check(bank, set(), name)
    for bank in PERSONA_PHRASES.values():
        check(bank, set(), "persona")
    for _, clauses in REASON_CLAUSES.values():
        check(clauses, {"r"}, "reason")


_validate_templates()


def template_counts() -> dict[str, int]:
    """Number of templates per bank (for reports)."""
    counts = {f"opening.{k}": len(v) for k, v in OPENING.items()}
    counts["opening.POLICY(frames)"] = len(policy_kb._QUESTION_FRAMES)
    counts.update({f"clarify.{k}": len(v) for k, v in CLARIFY.items()})
    counts.update({f"clarify.key.{k}": len(v) for k, v in CLARIFY_KEYED.items()})
    counts.update({f"correct.cart.{k}": len(v) for k, v in CORRECT_CART.items()})
    counts.update({
        "correct.return": len(CORRECT_RETURN), "correct.generic": len(CORRECT_GENERIC), "confirm": len(CONFIRM),
        "confirm.product": len(CONFIRM_PRODUCT), "confirm.item": len(CONFIRM_ITEM), "elaborate": len(ELABORATE),
        "elaborate.new_intent": len(ELABORATE_NEW), "continue": len(CONTINUE), "ragequit": len(RAGEQUIT),
        "done": len(DONE), "dissatisfied": len(DISSATISFIED), "no_preference": len(NO_PREFERENCE),
        "persona": sum(len(v) for v in PERSONA_PHRASES.values()),
        "constraint_phrases": sum(len(b) for ph in _PHRASES.values() for b in ph.values()),
    })
    return counts


# ------------------------------------------------------------------------------------------ opening

def _constraint_parts(g, slots: list[int], vocab, rng, heads: tuple[str, ...], default_head: str,
                      use_cat_head: bool = True) -> tuple[str, list[str]]:
    """(head noun phrase, modifier phrases) for the given constraint slots; the category (if among them)
    becomes the head noun."""
    head, headed = default_head, False
    mods = []
    for j in slots:
        key = _i(g["c_key"][j])
        if use_cat_head and CONSTRAINT_KEYS[key] == "cat" and not headed:
            head = _pick(heads, rng).format(v=_v(constraint_value_text(key, _f(g["c_value"][j]), vocab)))
            headed = True
            continue
        mods.append(_constraint_m(key, _i(g["c_op"][j]), _f(g["c_value"][j]), vocab, rng))
    order = rng.permutation(len(mods))
    return head, [mods[k] for k in order]


def _persona_m(g, rng) -> str:
    p = _i(g["persona"])
    name = PERSONAS[p] if 0 <= p < len(PERSONAS) else "balanced"
    return _pick(PERSONA_PHRASES[name], rng)


def _opening_marked(g, world, catalog, vocab, rng, journey_hint: bool) -> tuple[str, dict]:
    task = _task(g)
    valid = _valid_slots(g, world, catalog, vocab)
    mentioned = np.asarray(g["mentioned"], bool) & valid
    stated: list[int] = []
    info: dict[str, Any] = {"task": task}
    cons = [j for j in range(MAX_CONSTRAINTS) if mentioned[j]]

    if task in ("PD", "SUB"):
        if task == "PD":
            head, mods = _constraint_parts(g, cons, vocab, rng, PD_HEADS, "something")
        else:
            head, mods = _constraint_parts(g, cons, vocab, rng, SUB_HEADS, "something similar")
        stated += cons
        req = _pick(REQ_FORMS, rng).format(m=_join(mods)) if mods else ""
        fields = {"item": head, "mods": (" " + _join(mods)) if mods else "", "req": req,
                  "persona": _persona_m(g, rng)}
        if task == "SUB":
            a = _i(g["anchor"])
            fields["orig"] = f"{_describe_m(a, catalog, vocab)} ({_v(vocab.product_id(a))})"
        t = int(rng.integers(len(OPENING[task])))
        text = OPENING[task][t].format(**fields)
    elif task == "CART":
        items = np.asarray(g["items"])
        parts = []
        for n in range(MAX_ITEMS):
            if n >= items.shape[0] or items[n] < 0:
                continue
            d = _describe_m(items[n], catalog, vocab)
            if mentioned[SLOT_QTY + n]:
                q = _i(g["item_qty"][n])
                phrase = _pick(CART_QTY_FORMS, rng).format(q=_v(q), d=d, units="unit" if q == 1 else "units")
                stated.append(SLOT_QTY + n)
            else:
                phrase = _pick(CART_NOQTY_FORMS, rng).format(d=d)
            if mentioned[SLOT_VARIANT + n]:
                attr, val = _variant_value(items[n], g["item_variant"][n], world, catalog, vocab)
                phrase += " " + _variant_m(attr, val)
                stated.append(SLOT_VARIANT + n)
            parts.append(phrase)
        t = int(rng.integers(len(OPENING[task])))
        text = OPENING[task][t].format(items=_join(parts) or "a few things")
    elif task == "RETURN":
        fields = {"prod": _describe_m(_i(g["anchor"]), catalog, vocab), "order": "", "reason": "", "exchange": ""}
        if mentioned[SLOT_ORDER]:
            fields["order"] = _pick(RETURN_ORDER_FORMS, rng).format(o=_v(order_ref(_i(g["order"]))))
            stated.append(SLOT_ORDER)
        if mentioned[SLOT_REASON]:
            c = _reason_clause_m(_i(g["reason"]), rng)
            fields["reason"] = _pick(REASON_FORMS, rng).format(c=c, C=_cap(c))
            stated.append(SLOT_REASON)
        if bool(np.asarray(g["replacement"])):
            head, mods = _constraint_parts(g, cons, vocab, rng, EXCHANGE_HEADS_CAT, _pick(EXCHANGE_HEADS, rng))
            stated += cons
            fields["exchange"] = _pick(EXCHANGE_FORMS, rng).format(item=head,
                                                                  mods=(" " + _join(mods)) if mods else "")
        else:
            fields["exchange"] = _pick(REFUND_FORMS, rng)
        t = int(rng.integers(len(OPENING[task])))
        text = OPENING[task][t].format(**fields)
    elif task == "STATUS":
        if mentioned[SLOT_ORDER]:
            ref = _pick(STATUS_DIRECT, rng).format(o=_v(order_ref(_i(g["order"]))))
            stated.append(SLOT_ORDER)
        else:
            o = _i(g["order"])
            day = int(np.asarray(world.order_day)[o]) if world is not None and o >= 0 else None
            d = _describe_m(_i(g["anchor"]), catalog, vocab)
            ref = (_pick(STATUS_INDIRECT, rng).format(d=d, date=_v(date_text(day))) if day is not None
                   else f"my order with the {d}")
        t = int(rng.integers(len(OPENING[task])))
        text = OPENING[task][t].format(ref=ref)
    elif task == "POLICY":
        q, context = policy_kb.question(_i(g["rule"]), _i(g["row"]), rng)
        marked = _sanitize(q)
        values = {policy_kb.format_value(f, v) for f, v in context.items()}
        for value in sorted(values, key=len, reverse=True):
            marked = _protect_words(marked, value)
        text = marked
        info["policy_context"] = context
    elif task == "BUNDLE":
        cats = [int(c) for c in np.asarray(g["cats"]) if c >= 0]
        names = [_v(leaf_name(c, vocab)) for c in cats]
        budget = ""
        if mentioned[SLOT_BUDGET]:
            budget = _pick(BUDGET_FORMS, rng).format(b=_v(money(_i(g["budget"]) / 100.0)))
            stated.append(SLOT_BUDGET)
        t = int(rng.integers(len(OPENING[task])))
        text = OPENING[task][t].format(cats=_join(names) or "a few things", budget=budget)
    else:
        text = "Hi, I need some help."
    if journey_hint:
        text = _pick(JOURNEY_PREFIX, rng) + text + _pick(JOURNEY_SUFFIX, rng)
    stated = sorted(set(stated))
    info["stated_slots"] = stated
    info["values"] = {s: slot_value(s, g, world, catalog, vocab) for s in stated}
    return text, info


def opening_message(goal_i, world, catalog, vocab, rng: np.random.Generator, *, p_noise: float = 0.0,
                    journey_hint: bool = False) -> tuple[str, dict]:
    """The opening message of one intent. Returns (text, info) with info["stated_slots"] the slots the text
    states (exactly the goal's mentioned slots that have a value), info["values"] {slot: value text} and
    info["task"]; POLICY adds info["policy_context"]."""
    g = _goal_dict(goal_i)
    t_rng, n_rng = _split(rng)
    marked, info = _opening_marked(g, world, catalog, vocab, t_rng, journey_hint)
    return _finish(marked, p_noise, n_rng), info


def opening_message_facts(goal_i, world, catalog, vocab, rng: np.random.Generator, *, p_noise: float = 0.0,
                          journey_hint: bool = False) -> tuple[str, dict, tuple[str, ...]]:
    """`opening_message` plus the values its text states (the protected spans: slot values, ids, dates,
    product descriptions), each a verbatim substring of the text. Same arguments, same text and info."""
    g = _goal_dict(goal_i)
    t_rng, n_rng = _split(rng)
    marked, info = _opening_marked(g, world, catalog, vocab, t_rng, journey_hint)
    text = _finish(marked, p_noise, n_rng)
    return text, info, _protected_values(marked, text)


# ------------------------------------------------------------------------------------------ replies

def _clarify_m(slot: int, g, world, catalog, vocab, rng) -> str | None:
    """A sentence stating one slot's value (None if the goal has no such slot)."""
    if not (0 <= slot < NUM_SLOTS) or not _valid_slots(g, world, catalog, vocab)[slot]:
        return None
    task = _task(g)
    if slot < MAX_CONSTRAINTS:
        key, op, val = _i(g["c_key"][slot]), _i(g["c_op"][slot]), _f(g["c_value"][slot])
        name = CONSTRAINT_KEYS[key]
        if task == "RETURN":
            bank = CLARIFY["replacement"]
        elif name in CLARIFY_KEYED and (name != "price" or op == LTE) and rng.random() < 0.4:
            return _pick(CLARIFY_KEYED[name], rng).format(v=_v(constraint_value_text(key, val, vocab)))
        else:
            bank = CLARIFY["constraint"]
        return _pick(bank, rng).format(m=_constraint_m(key, op, val, vocab, rng))
    if SLOT_VARIANT <= slot < SLOT_VARIANT + MAX_ITEMS:
        n = slot - SLOT_VARIANT
        attr, val = _variant_value(g["items"][n], g["item_variant"][n], world, catalog, vocab)
        return _pick(CLARIFY["variant"], rng).format(d=_describe_m(g["items"][n], catalog, vocab),
                                                     vp=_variant_m(attr, val))
    if SLOT_QTY <= slot < SLOT_QTY + MAX_ITEMS:
        n = slot - SLOT_QTY
        return _pick(CLARIFY["qty"], rng).format(q=_v(_i(g["item_qty"][n])),
                                                 d=_describe_m(g["items"][n], catalog, vocab))
    if slot == SLOT_ORDER:
        o = _v(order_ref(_i(g["order"])))
        a = _i(g["anchor"])
        if 0 <= a < catalog.num_products and (task == "RETURN" or rng.random() < 0.5):
            return _pick(CLARIFY["order_product"], rng).format(o=o, d=_describe_m(a, catalog, vocab))
        return _pick(CLARIFY["order"], rng).format(o=o)
    if slot == SLOT_BUDGET:
        return _pick(CLARIFY["budget"], rng).format(b=_v(money(_i(g["budget"]) / 100.0)))
    return _pick(CLARIFY["reason"], rng).format(c=_reason_clause_m(_i(g["reason"]), rng))


def _item_product(task: str, item: int, g, world) -> int:
    """The product a feedback message's `item` refers to (-1 unknown): PD/SUB a product id, CART a goal item
    index, RETURN an order line of the target order."""
    if item < 0:
        return -1
    if task in ("PD", "SUB"):
        return item
    if task == "CART":
        items = np.asarray(g["items"])
        return int(items[item]) if item < items.shape[0] else -1
    if task == "RETURN" and world is not None:
        o = _i(g["order"])
        lp = np.asarray(world.line_product)
        if 0 <= o < lp.shape[0] and item < lp.shape[1]:
            return int(lp[o, item])
    return -1


def _reply_marked(m: dict, g, world, catalog, vocab, rng, asked_slot: int) -> str:
    act, slot, item, issue = m["act"], m["slot"], m["item"], m["issue"]
    task = _task(g)
    valid = _valid_slots(g, world, catalog, vocab)
    extra = _clarify_m(slot, g, world, catalog, vocab, rng) if act != ACT_CLARIFY and slot >= 0 else None

    if act == ACT_NONE:
        return ""
    if act == ACT_CLARIFY:
        said = _clarify_m(slot, g, world, catalog, vocab, rng)
        return said if said is not None else _pick(NO_PREFERENCE, rng)
    if act == ACT_ELABORATE:
        if m["new_intent"]:
            body, _ = _opening_marked(g, world, catalog, vocab, rng, journey_hint=False)
            return _pick(ELABORATE_NEW, rng).format(msg=body)
        return _pick(ELABORATE, rng) + (" " + extra if extra else "")
    if act == ACT_RAGEQUIT:
        return _pick(RAGEQUIT, rng)

    prefix = ""
    if asked_slot == GENERIC_SLOT and act != ACT_CLARIFY:
        prefix = _pick(NOTHING_ELSE, rng) + " "
    elif 0 <= asked_slot < NUM_SLOTS and asked_slot != slot:
        # a slot with a value is restated (already revealed, or implicit like a CART quantity of 1)
        again = _clarify_m(asked_slot, g, world, catalog, vocab, rng) if valid[asked_slot] else None
        prefix = (_pick(AS_I_SAID, rng) + again + " ") if again else _pick(NO_PREFERENCE, rng) + " "

    if act == ACT_CONFIRM:
        p = _item_product(task, item, g, world)
        if task in ("PD", "SUB") and 0 <= p < catalog.num_products:
            body = _pick(CONFIRM_PRODUCT, rng).format(pid=_v(vocab.product_id(p)))
        elif task == "CART" and 0 <= p < catalog.num_products:
            body = _pick(CONFIRM_ITEM, rng).format(d=_describe_m(p, catalog, vocab))
        else:
            body = _pick(CONFIRM, rng)
    elif act == ACT_CORRECT:
        if task == "CART" and issue in CORRECT_CART:
            p = _item_product(task, item, g, world)
            if issue == CART_EXTRA:
                p = _extra_cart_product(item, g, world, catalog)
            if 0 <= p < catalog.num_products:
                attr = "variant"
                if issue == CART_WRONG_VARIANT:
                    a = _cat_at(catalog.var_key, p)
                    attr = DISCRETE_ATTRS[a].replace("_", " ") if 0 <= a < len(DISCRETE_ATTRS) else "variant"
                body = _pick(CORRECT_CART[issue], rng).format(d=_describe_m(p, catalog, vocab), attr=attr)
            else:
                body = _pick(CORRECT_EXTRA_GENERIC if issue == CART_EXTRA else CORRECT_GENERIC, rng)
        elif task == "RETURN" and issue == RETURN_WRONG_LINE:
            body = _pick(CORRECT_RETURN, rng).format(d=_describe_m(_i(g["anchor"]), catalog, vocab))
        else:
            body = _pick(CORRECT_GENERIC, rng)
    elif act == ACT_DONE:
        body = _pick(DONE, rng)
    elif act == ACT_DISSATISFIED:
        body = _pick(DISSATISFIED, rng)
    else:  # ACT_CONTINUE and anything unknown
        body = _pick(CONTINUE, rng)
    return prefix + body + (" " + extra if extra else "")


def _extra_cart_product(item: int, g, world, catalog) -> int:
    """CART issue 5: `item` is the cart line slot holding a product the customer did not ask for."""
    if world is None or item < 0:
        return -1
    cp = np.asarray(world.cart_product)
    if item >= cp.shape[0]:
        return -1
    p = int(cp[item])
    return p if p >= 0 and p not in set(np.asarray(g["items"]).tolist()) else -1


def _message_dict(message) -> dict:
    if isinstance(message, Mapping):
        raw = dict(message)
    elif dataclasses.is_dataclass(message):
        raw = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    else:
        raw = dict(vars(message))
    d = {"act": 0, "intent": 0, "slot": -1, "item": -1, "issue": 0, "new_intent": False}
    d.update({k: np.asarray(v).item() for k, v in raw.items()})
    d["new_intent"] = bool(d["new_intent"])
    for k in ("act", "intent", "slot", "item", "issue"):
        d[k] = int(d[k])
    return d


def reply_message(message, goal_i, world, catalog, vocab, rng: np.random.Generator, *, p_noise: float = 0.0,
                  asked_slot: int = -1) -> str:
    """Text of one customer reply (`UserMessage`, numpy or JAX scalars).

    `goal_i` is the goal of intent `message.intent` (a goal with a leading intent axis is indexed by it).
    Acts: clarify states the revealed slot's value; confirm / correct (CART issues 1 missing, 2 wrong variant,
    3 too many, 4 too few, 5 should not be there — `item` is the goal item index, for 5 the cart line slot;
    RETURN issue 1 wrong line) / elaborate (with `new_intent`: that intent's opening message) / continue /
    ragequit / done / dissatisfied. A slot revealed by a non-clarify act is stated too. `asked_slot` is the
    slot the agent asked about this turn (-1 none): a slot the intent does not have gets a no-preference
    answer, an already revealed one is restated, GENERIC_SLOT with nothing left gets "that's everything".
    """
    m = _message_dict(message)
    g = _goal_dict(goal_i, m["intent"])
    t_rng, n_rng = _split(rng)
    return _finish(_reply_marked(m, g, world, catalog, vocab, t_rng, int(asked_slot)), p_noise, n_rng)


def reply_message_facts(message, goal_i, world, catalog, vocab, rng: np.random.Generator, *, p_noise: float = 0.0,
                        asked_slot: int = -1) -> tuple[str, tuple[str, ...]]:
    """`reply_message` plus the values its text states (see `opening_message_facts`). Same text."""
    m = _message_dict(message)
    g = _goal_dict(goal_i, m["intent"])
    t_rng, n_rng = _split(rng)
    marked = _reply_marked(m, g, world, catalog, vocab, t_rng, int(asked_slot))
    text = _finish(marked, p_noise, n_rng)
    return text, _protected_values(marked, text)


def no_preference(rng: np.random.Generator, *, p_noise: float = 0.0) -> str:
    """The answer to a question about a slot the intent does not have."""
    t_rng, n_rng = _split(rng)
    return _finish(_pick(NO_PREFERENCE, t_rng), p_noise, n_rng)


# ------------------------------------------------------------------------------------------ detect_ask

_REQUEST = re.compile(
    r"^\s*(what|which|how|do|does|did|could|can|would|will|is|are|should|may|any|when|why|where)\b"
    r"|\blet me know\b|\b(please|kindly)\s+(tell|share|specify|confirm|provide|clarify|let)\b"
    r"|\b(could|can|would) you\b",
    re.IGNORECASE)
_ATTR_KEYS = ("color", "size", "material", "connector_type", "item_form", "skin_type", "finish_type")
# (target, pattern) in priority order; target: a constraint key, or one of the special names.
_ASK_RULES: tuple[tuple[str, str], ...] = (
    ("which_item", r"\b(which|what) (item|product|purchase)\b"),
    ("order", r"\border\s*(id|number|no\.?|#|reference|ref)\b|\bwhich order\b|\bord_\d+"),
    ("reason", (r"\bwhy\b|\breasons?\b|\bwhat('?s| is| was) wrong\b|\bwhat went wrong\b|\bwhat happened\b"
                r"|\b(issue|problem) with\b")),
    ("rating_count", r"\b(how many|number of) (reviews|ratings)\b|\b(review|rating) count\b"),
    ("rating", r"\bhow many stars\b|\bminimum rating\b|\bstar rating\b"),
    ("qty", (r"\bhow many\b|\bquantit(y|ies)\b|\bqty\b|\bnumber of (units|items|pieces|them)\b|\bunits?\b"
             r"|\bhow much of\b")),
    ("budget", r"\bbudget\b|\bspend\b|\bhow much\b|\bprice\b|\bcost\b|\bafford\b|\bpay\b|\$"),
    ("screen_size_inches", r"\bscreen\b|\bdisplay size\b|\binch(es)?\b"),
    ("wattage", r"\bwatt(s|age)?\b|\bpower output\b|\bhow powerful\b"),
    ("weight_lbs", r"\bweigh(t|s)?\b|\bhow heavy\b|\blbs?\b|\bpounds\b"),
    ("ship_days", (r"\bship(s|ping|ped)?\b|\bdeliver(y|ed)?\b|\barriv(e|al)\b|\bhow (soon|fast|quickly)\b"
                   r"|\bby when\b")),
    ("rating", r"\bratings?\b|\bstars?\b|\brated\b|\breviews?\b"),
    ("brand", r"\bbrands?\b|\bmanufacturer\b|\bmaker\b"),
    ("store", r"\bstores?\b|\bsellers?\b|\bretailer\b|\bvendor\b|\bsold by\b"),
    ("color", r"\bcolou?rs?\b|\bshade\b"),
    ("size", r"\bsizes?\b"),
    ("material", r"\bmaterials?\b|\bmade of\b|\bfabric\b"),
    ("connector_type", r"\bconnector\b|\bconnection\b|\bconnectivity\b|\bports?\b|\bplug\b|\busb\b"),
    ("item_form", r"\bform\b|\bformulation\b"),
    ("skin_type", r"\bskin\b"),
    ("finish_type", r"\bfinish\b"),
    ("variant", r"\bvariants?\b|\bversion\b|\bstyle\b|\bwhich option\b"),
    ("cat", r"\bcategory\b|\bwhat (kind|type|sort) of\b|\bwhat (product|item)s?\b"),
    ("generic", (r"\banything else\b|\bany other\b|\b(tell|share with) me more\b|\bmore (details|information|info)\b"
                 r"|\bwhich one\b|\b(could|can|would) you (please )?(specify|tell me|provide|share|clarify|elaborate)\b"
                 r"|\bany (preferences|requirements|constraints|details)\b|\bwhat else\b"
                 r"|\bwhat are you looking for\b|\bhow can i help\b|\bwhat do you need\b")),
)
_ASK_COMPILED = tuple((t, re.compile(p, re.IGNORECASE)) for t, p in _ASK_RULES)


def _questions(message: str) -> str:
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", message) if s.strip()]
    return " ".join(s for s in sentences if s.endswith("?") or _REQUEST.search(s))


def _key_slot(g, key: str) -> int:
    """The constraint slot holding `key`; else a free (unused) constraint slot, which the customer answers
    with "no preference"; -1 when every slot is used."""
    mask = np.asarray(g["c_mask"], bool)
    keys = np.asarray(g["c_key"])
    hit = np.nonzero(mask & (keys == KEY[key]))[0]
    if hit.size:
        return int(hit[0])
    free = np.nonzero(~mask)[0]
    return int(free[0]) if free.size else -1


def _pick_item(g, kind_base: int, text: str, catalog, vocab, revealed, attr: str | None = None) -> int:
    """CART: the item slot (kind_base + n) a question is about: an item the message names, else one whose
    variants differ in `attr`, else the first not yet revealed, else the first needed."""
    items = np.asarray(g["items"])
    needed = np.asarray(g["needed"], bool)
    live = [n for n in range(min(MAX_ITEMS, items.shape[0])) if items[n] >= 0]
    if not live:
        return kind_base
    cands = live
    if catalog is not None and vocab is not None:
        low = text.lower()
        named = []
        for n in live:
            p = int(items[n])
            noun = leaf_name(_cat_at(catalog.category, p), vocab).lower()
            brand = vocab.brands[_cat_at(catalog.brand, p)].lower()
            score = (re.search(r"\b" + re.escape(brand) + r"\b", low) is not None) * 2 + (noun in low)
            named.append(score)
        if max(named) > 0:
            cands = [n for n, s in zip(live, named) if s == max(named)]
        elif attr is not None:
            by_attr = [n for n in live if 0 <= _cat_at(catalog.var_key, int(items[n])) < len(DISCRETE_ATTRS)
                       and DISCRETE_ATTRS[_cat_at(catalog.var_key, int(items[n]))] == attr]
            cands = by_attr or live
    rev = np.asarray(revealed, bool) if revealed is not None else np.zeros(NUM_SLOTS, bool)
    for pool in ([n for n in cands if needed[kind_base + n] and not rev[kind_base + n]],
                 [n for n in cands if needed[kind_base + n]], cands):
        if pool:
            return kind_base + pool[0]
    return kind_base


def detect_ask(agent_message: str, goal_i, *, catalog=None, vocab=None, revealed=None) -> int:
    """The slot an agent's text message asks about (SPEC §8 text mode): a slot id, GENERIC_SLOT for a generic
    question ("anything else?", "could you tell me more?", "which one?"), or -1 when it asks nothing.

    Only question sentences count (ending in "?" or phrased as a request). Attribute questions map to the
    intent's constraint slot for that key (CART: the item's variant slot); a key the intent lacks maps to a
    free constraint slot, which the customer answers with "no preference". With `catalog`/`vocab`, CART
    questions naming an item pick that item; `revealed` [NUM_SLOTS] prefers slots not yet told."""
    g = _goal_dict(goal_i)
    task = _task(g)
    text = _questions(agent_message or "")
    if not text:
        return -1
    for target, pat in _ASK_COMPILED:
        if not pat.search(text):
            continue
        if target == "order":
            return SLOT_ORDER
        if target == "which_item":
            if task in ("RETURN", "STATUS"):
                return SLOT_ORDER
            continue
        if target == "reason":
            return SLOT_REASON
        if target == "qty":
            if task == "CART":
                return _pick_item(g, SLOT_QTY, text, catalog, vocab, revealed)
            if task == "BUNDLE":
                continue
            return SLOT_QTY
        if target == "budget":
            if task == "BUNDLE":
                return SLOT_BUDGET
            return _key_slot(g, "price")
        if target == "generic":
            return GENERIC_SLOT
        if target == "variant" or (task == "CART" and target in _ATTR_KEYS):
            if task == "CART":
                attr = target if target in _ATTR_KEYS else None
                return _pick_item(g, SLOT_VARIANT, text, catalog, vocab, revealed, attr)
            if target == "variant":
                continue
        return _key_slot(g, target)
    return -1


__all__ = [
    "ABBREVIATIONS",
    "CLARIFY",
    "GENERIC_SLOT",
    "OPENING",
    "PERSONA_KEY_PHRASE",
    "QWERTY_NEIGHBOURS",
    "TASK",
    "add_noise",
    "constraint_value_text",
    "date_text",
    "describe_product",
    "detect_ask",
    "format_constraint",
    "leaf_name",
    "money",
    "no_preference",
    "opening_message",
    "opening_message_facts",
    "order_ref",
    "reason_text",
    "reply_message",
    "reply_message_facts",
    "rng_for",
    "slot_value",
    "template_counts",
]
