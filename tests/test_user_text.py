"""Customer text realisation (SPEC §5 Communication, §8; R§8.2-8.4): opening messages state exactly the
mentioned slots, clarifications state the revealed value, noise is key-driven and never touches values,
no placeholder ever leaks, and text-mode clarification detection maps questions to slots."""

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from ecomjax.catalog.schema import DISCRETE_ATTRS, MAX_VARIANTS
from ecomjax.tasks.constraints import (
    CONSTRAINT_KEYS,
    EQ,
    GTE,
    KEY,
    LTE,
    MAX_CONSTRAINTS,
)
from ecomjax.tasks.episode import (
    ACT_CLARIFY,
    ACT_CONFIRM,
    ACT_CONTINUE,
    ACT_CORRECT,
    ACT_DISSATISFIED,
    ACT_DONE,
    ACT_ELABORATE,
    ACT_RAGEQUIT,
    UserMessage,
)
from ecomjax.tasks.goal import (
    GENERIC_SLOT,
    MAX_CATEGORIES,
    MAX_ITEMS,
    NUM_SLOTS,
    PERSONAS,
    SLOT_BUDGET,
    SLOT_ORDER,
    SLOT_QTY,
    SLOT_REASON,
    SLOT_VARIANT,
    TASK,
    empty_intent,
)
from ecomjax.user import text as T
from ecomjax.world import policy_kb as kb
from ecomjax.world.orders import generate_orders
from ecomjax.world.state import (
    EPISODE_VARIANTS,
    RETURN_REASONS,
    Capacities,
    empty_world,
)

M = MAX_CONSTRAINTS
TODAY = 20_500                       # 2026-02-16
SEEDS = range(40)
OPTIONAL_KEYS = [k for k in CONSTRAINT_KEYS if k not in ("price", "cat")]
ALL_MESSAGES: list[str] = []         # every message rendered by this module (checked for braces at the end)


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def env(small_catalog):
    """(numpy catalog, vocab, numpy world with 8 orders and one product with episode variants, jax catalog)."""
    catalog, vocab = small_catalog
    world = jax.jit(generate_orders)(jax.random.key(3), empty_world(Capacities(), today=TODAY), catalog, 8)
    npc = jax.tree.map(np.asarray, catalog)
    w = jax.tree.map(np.asarray, world)
    xp = w.xvar_product.copy()
    xk, xv = w.xvar_key.copy(), w.xvar_value.copy()
    xp[0], xk[0], xv[0] = 11, DISCRETE_ATTRS.index("color"), [6, 2, 15]   # navy, gray, teal
    w = w.replace(xvar_product=xp, xvar_key=xk, xvar_value=xv)
    return npc, vocab, w, catalog


def _rng(seed):
    return np.random.default_rng(seed)


def _value(catalog, vocab, key, p):
    """Product p's raw value for a constraint key."""
    if key == "price":
        return catalog.price_cents[p] / 100.0
    if key == "cat":
        return catalog.category[p]
    if key in ("brand", "store"):
        return getattr(catalog, key)[p]
    if key in DISCRETE_ATTRS:
        return catalog.attr[p, DISCRETE_ATTRS.index(key)]
    if key in ("rating", "ship_days", "rating_count"):
        return getattr(catalog, key)[p]
    from ecomjax.catalog.schema import NUMERIC_ATTRS
    return catalog.num[p, NUMERIC_ATTRS.index(key)]


def _constraints(rng, catalog, vocab, p, m):
    """m constraints product p satisfies: price bound, leaf category, then random keys it has."""
    have = []
    for k in OPTIONAL_KEYS:
        v = float(_value(catalog, vocab, k, p))
        discrete = k in DISCRETE_ATTRS or k in ("brand", "store")
        if (v >= 0) if discrete else not np.isnan(v):
            have.append(k)
    keys = ["price", "cat"] + list(rng.permutation(have)[: max(0, m - 2)])
    ck, co = np.zeros(M, np.int32), np.zeros(M, np.int32)
    cv, cm = np.zeros(M, np.float32), np.zeros(M, bool)
    for j, k in enumerate(keys):
        v = float(_value(catalog, vocab, k, p))
        op = {"price": LTE, "rating": GTE, "ship_days": LTE, "rating_count": GTE, "wattage": GTE,
              "weight_lbs": LTE, "screen_size_inches": GTE}.get(k, EQ)
        if k == "price":
            v = round(v * rng.uniform(1.0, 1.3), 2)
        elif k == "rating":
            v = np.floor(v * 10) / 10 - 0.5 * rng.integers(0, 2)
        elif k in ("ship_days", "rating_count"):
            v = v + (1 if op == LTE else -1) * rng.integers(0, 3)
        ck[j], co[j], cv[j], cm[j] = KEY[k], op, v, True
    return dict(c_key=ck, c_op=co, c_value=cv, c_mask=cm)


def _slots(*idx):
    s = np.zeros(NUM_SLOTS, bool)
    s[list(idx)] = True
    return s


def make_goal(task, seed, env):
    """A goal built directly in numpy with the task semantics of the brief; random mentioned sets."""
    catalog, vocab, world, _ = env
    rng = _rng(1000 + seed)
    g = dict(task=np.int32(TASK[task]), persona=np.int32(rng.integers(len(PERSONAS))))
    if task in ("PD", "SUB"):
        p = int(rng.integers(catalog.num_products))
        g.update(_constraints(rng, catalog, vocab, p, int(rng.integers(2, 9))), anchor=np.int32(p))
        g["needed"] = np.r_[g["c_mask"], np.zeros(NUM_SLOTS - M, bool)]
        keep_head = seed % 3 != 0               # the generators always state price and category
        g["mentioned"] = g["needed"] & ((rng.random(NUM_SLOTS) < 0.5) | (keep_head & (np.arange(NUM_SLOTS) < 2)))
    elif task == "CART":
        n = int(rng.integers(1, MAX_ITEMS + 1))
        items, seen = [], set()
        while len(items) < n:
            p = int(rng.integers(catalog.num_products))
            d = T.describe_product(p, catalog, vocab)
            if d not in seen:
                seen.add(d)
                items.append(p)
        if seed % 4 == 0:
            items[0] = 11                        # has the episode's synthetic variants (slots 4..6)
        variant = []
        for p in items:
            slots = [j for j in range(MAX_VARIANTS) if catalog.var_value[p, j] >= 0]
            if p == 11:
                slots = [MAX_VARIANTS + j for j in range(EPISODE_VARIANTS)]
            variant.append(int(rng.choice(slots)) if rng.random() < 0.7 else -1)
        pad = MAX_ITEMS - n
        g.update(items=np.array(items + [-1] * pad, np.int32), item_variant=np.array(variant + [-1] * pad, np.int32),
                 item_qty=np.array(list(rng.integers(1, 5, n)) + [0] * pad, np.int32))
        needed = np.zeros(NUM_SLOTS, bool)                 # as tasks.cart: a quantity of 1 is implicit
        for k in range(n):
            needed[SLOT_QTY + k] = g["item_qty"][k] > 1
            needed[SLOT_VARIANT + k] = variant[k] >= 0
        g["needed"] = needed
        g["mentioned"] = needed & (rng.random(NUM_SLOTS) < 0.5)
    elif task in ("RETURN", "STATUS"):
        o = int(rng.integers(8))
        line = int(rng.integers(int(np.sum(world.line_product[o] >= 0))))
        p = int(world.line_product[o, line])
        g.update(order=np.int32(o), line=np.int32(line), anchor=np.int32(p))
        if task == "RETURN":
            rep = bool(rng.random() < 0.5)
            g.update(reason=np.int32(rng.integers(len(RETURN_REASONS))), replacement=np.asarray(rep))
            if rep:
                g.update(_constraints(rng, catalog, vocab, p, int(rng.integers(2, 6))))
            needed = _slots(SLOT_ORDER, SLOT_REASON)
            if rep:
                needed[:M] = g["c_mask"]
        else:
            needed = _slots(SLOT_ORDER)
        g["needed"] = needed
        g["mentioned"] = needed & (rng.random(NUM_SLOTS) < 0.5)
    elif task == "POLICY":
        r = int(rng.integers(kb.NUM_RULES))
        g.update(rule=np.int32(r), row=np.int32(rng.integers(len(kb.RULES[r].rows))))
        g["needed"] = g["mentioned"] = np.zeros(NUM_SLOTS, bool)
    elif task == "BUNDLE":
        leaves = np.unique(catalog.category)
        k = int(rng.integers(2, 6))
        cats = list(rng.choice(leaves, k, replace=False)) + [-1] * (MAX_CATEGORIES - k)
        g.update(cats=np.array(cats, np.int32), budget=np.int32(rng.integers(2_000, 200_000)))
        g["needed"] = _slots(SLOT_BUDGET)
        g["mentioned"] = g["needed"] & (rng.random() < 0.5)
    return g


TASKS = ("PD", "SUB", "CART", "RETURN", "STATUS", "POLICY", "BUNDLE")


def _pattern(value: str) -> re.Pattern:
    """A whole-token match of a value text (case-sensitive; numbers not part of longer numbers)."""
    return re.compile(r"(?<![\w$.])" + re.escape(value) + r"(?![\w]|\.\d)")


def _variant(catalog, vocab, world, p, j):
    if j < MAX_VARIANTS:
        attr = DISCRETE_ATTRS[catalog.var_key[p]]
        return attr, vocab.attr_values[attr][catalog.var_value[p, j]]
    row = int(np.argmax(world.xvar_product == p))
    attr = DISCRETE_ATTRS[world.xvar_key[row]]
    return attr, vocab.attr_values[attr][world.xvar_value[row, j - MAX_VARIANTS]]


def expected_values(g, env):
    """{slot: value text} for every slot the goal has, computed independently of the module."""
    catalog, vocab, world, _ = env
    out = {}
    task = next(k for k, v in TASK.items() if v == int(g["task"]))
    for j in range(M):
        if task in ("PD", "SUB", "RETURN") and "c_mask" in g and g["c_mask"][j]:
            key, v = CONSTRAINT_KEYS[g["c_key"][j]], float(g["c_value"][j])
            if key == "price":
                out[j] = f"${v:,.2f}"
            elif key == "cat":
                out[j] = vocab.category_name(int(v)).split("/")[-1].replace("_", " ")
            elif key == "brand":
                out[j] = vocab.brands[int(v)]
            elif key == "store":
                out[j] = vocab.stores[int(v)]
            elif key in DISCRETE_ATTRS:
                out[j] = vocab.attr_values[key][int(v)]
            elif key == "rating":
                out[j] = f"{round(v, 2):.2f}".rstrip("0") if round(v, 2) != round(v, 1) else f"{round(v, 1):.1f}"
            elif key in ("ship_days", "rating_count"):
                out[j] = str(int(round(v)))
            else:
                out[j] = f"{round(v, 2):.2f}".rstrip("0").rstrip(".")
    if task == "CART":
        for n, p in enumerate(g["items"]):
            if p >= 0:
                out[SLOT_QTY + n] = str(int(g["item_qty"][n]))
                if g["item_variant"][n] >= 0:
                    out[SLOT_VARIANT + n] = _variant(catalog, vocab, world, p, int(g["item_variant"][n]))[1]
    if task in ("RETURN", "STATUS"):
        out[SLOT_ORDER] = f"ord_{int(g['order']) + 1:03d}"
    if task == "RETURN":
        out[SLOT_REASON] = T.reason_text(int(g["reason"]))
    if task == "BUNDLE":
        out[SLOT_BUDGET] = f"${int(g['budget']) / 100:,.2f}"
    return out


def always_stated(g, env):
    """Text every opening of this goal contains regardless of mentioned slots (may repeat a value)."""
    catalog, vocab, _, _ = env
    task = int(g["task"])
    if task == TASK["SUB"]:
        return T.describe_product(g["anchor"], catalog, vocab) + " " + vocab.product_id(g["anchor"])
    if task in (TASK["RETURN"], TASK["STATUS"]):
        return T.describe_product(g["anchor"], catalog, vocab)
    if task == TASK["CART"]:
        return " ".join(T.describe_product(p, catalog, vocab) for p in g["items"] if p >= 0)
    return ""


def _open(g, env, seed, p_noise=0.0, journey_hint=False):
    catalog, vocab, world, _ = env
    text, info = T.opening_message(g, world, catalog, vocab, _rng(seed), p_noise=p_noise, journey_hint=journey_hint)
    ALL_MESSAGES.append(text)
    return text, info


def _reply(msg, g, env, seed, p_noise=0.0, asked_slot=-1):
    catalog, vocab, world, _ = env
    m = dict(act=0, intent=0, slot=-1, item=-1, issue=0, new_intent=False)
    m.update(msg)
    text = T.reply_message(m, g, world, catalog, vocab, _rng(seed), p_noise=p_noise, asked_slot=asked_slot)
    ALL_MESSAGES.append(text)
    return text


# ---------------------------------------------------------------------------------------------- helpers

def test_helpers(env):
    catalog, vocab, _, _ = env
    assert T.order_ref(0) == "ord_001" and T.order_ref(2) == "ord_003" and T.order_ref(122) == "ord_123"
    assert T.date_text(0) == "1970-01-01" and T.date_text(20_785) == "2026-11-28"
    p = 5
    leaf = vocab.category_name(catalog.category[p]).split("/")[-1].replace("_", " ")
    assert T.describe_product(p, catalog, vocab) == f"{leaf} by {vocab.brands[catalog.brand[p]]}"
    assert vocab.title(p) != T.describe_product(p, catalog, vocab)
    fc = T.format_constraint
    assert fc("price", LTE, 45.0, vocab) == "under $45.00"
    assert fc(KEY["price"], GTE, 1234.5, vocab) == "over $1,234.50"
    assert fc("brand", EQ, 3, vocab) == f"from {vocab.brands[3]}"
    assert fc("rating", GTE, 4.0, vocab) == "rated at least 4.0 stars"
    assert fc("rating", GTE, 3.75, vocab) == "rated at least 3.75 stars"
    assert fc("ship_days", LTE, 3, vocab) == "shipping within 3 days"
    assert fc("ship_days", LTE, 1, vocab) == "shipping within 1 day"
    assert fc("color", EQ, vocab.attr_values["color"].index("navy"), vocab) == "in navy"
    assert fc("size", EQ, 2, vocab) == "in size M"
    assert fc("wattage", GTE, 45, vocab) == "with at least 45 watts"
    assert fc("weight_lbs", LTE, 2.5, vocab) == "weighing at most 2.5 lbs"
    assert "15.6" in fc("screen_size_inches", GTE, np.float32(15.6), vocab)
    assert fc("cat", EQ, catalog.category[p], vocab) == f"in the {leaf} category"
    for key in CONSTRAINT_KEYS:          # every key and op renders, with an rng too
        for op in (EQ, LTE, GTE):
            for s in range(3):
                out = fc(key, op, 1, vocab, _rng(s))
                assert out and "{" not in out and "}" not in out
    counts = T.template_counts()
    for task in ("PD", "SUB", "CART", "RETURN", "STATUS", "BUNDLE"):
        assert counts[f"opening.{task}"] >= 6
    assert all(v >= 1 for v in counts.values())


def test_rng_for_is_key_driven(env):
    key = jax.random.key(42)
    a = T.rng_for(key, 3).integers(0, 2**31, 8)
    b = T.rng_for(jax.random.key_data(key), 3).integers(0, 2**31, 8)
    c = T.rng_for(np.asarray(jax.random.key_data(key)), 4).integers(0, 2**31, 8)
    d = T.rng_for(jax.random.key(43), 3).integers(0, 2**31, 8)
    assert (a == b).all() and not (a == c).all() and not (a == d).all()


def test_template_literals_contain_no_value_words():
    """No attribute value or reason text appears as a word in template text (so 'omitted' checks are exact)."""
    banks = [*T.OPENING.values(), *T.CLARIFY.values(), *T.CLARIFY_KEYED.values(), *T.PERSONA_PHRASES.values(),
             T.CONFIRM, T.CONTINUE, T.DONE, T.RAGEQUIT, T.DISSATISFIED, T.NO_PREFERENCE, T.PD_HEADS, T.SUB_HEADS,
             T.REQ_FORMS, T.CART_QTY_FORMS, T.CART_NOQTY_FORMS, T.REASON_FORMS, T.EXCHANGE_FORMS, T.BUDGET_FORMS,
             T.STATUS_DIRECT, T.STATUS_INDIRECT, T.JOURNEY_PREFIX, T.JOURNEY_SUFFIX]
    literal = " ".join(re.sub(r"\{[^{}]*\}", " ", t) for bank in banks for t in bank)
    from ecomjax.catalog.schema import ATTR_VALUES
    values = [v for vs in ATTR_VALUES.values() for v in vs] + [T.reason_text(r) for r in range(len(RETURN_REASONS))]
    hits = [v for v in values if _pattern(v).search(literal)]
    assert hits == []


# ---------------------------------------------------------------------------------------------- openings

@pytest.mark.parametrize("task", TASKS)
def test_opening_states_exactly_the_mentioned_slots(task, env):
    catalog, vocab, world, _ = env
    checked_absent = 0
    for seed in SEEDS:
        g = make_goal(task, seed, env)
        text, info = _open(g, env, seed)
        values = expected_values(g, env)
        expect = sorted(s for s in values if g["mentioned"][s])
        assert info["stated_slots"] == expect, (text, info)
        assert info["values"] == {s: values[s] for s in expect}
        assert "{" not in text and "}" not in text and text
        for s in expect:                                             # mentioned -> its value is in the text
            assert _pattern(values[s]).search(text), (s, values[s], text)
        context = always_stated(g, env) + " " + " ".join(values[s] for s in expect)
        for s, v in values.items():                                  # omitted -> its value is absent
            if g["mentioned"][s] or _pattern(v).search(context):
                continue
            assert not _pattern(v).search(text), (s, v, text)
            checked_absent += 1
        if task in ("PD", "SUB"):
            persona = PERSONAS[int(g["persona"])]
            assert T.PERSONA_KEY_PHRASE[persona].lower() in text.lower()
        if task == "SUB":
            assert vocab.product_id(g["anchor"]) in text
            assert T.describe_product(g["anchor"], catalog, vocab) in text
        if task == "CART":
            for n, p in enumerate(g["items"]):
                if p < 0:
                    continue
                d = re.escape(T.describe_product(p, catalog, vocab))
                qty = re.search(r"(\d+) (units? )?of the " + d, text)
                assert (qty is not None) == bool(g["mentioned"][SLOT_QTY + n]), text
                assert qty is None or qty.group(1) == values[SLOT_QTY + n]
                assert vocab.title(p) not in text
        if task == "RETURN":
            assert T.describe_product(g["anchor"], catalog, vocab) in text
            assert ("ord_" in text) == bool(g["mentioned"][SLOT_ORDER])
            assert ("exchange" in text) == bool(g["replacement"])
        if task == "STATUS":
            if g["mentioned"][SLOT_ORDER]:
                assert f"order {values[SLOT_ORDER]}" in text
            else:
                assert "ord_" not in text
                assert T.date_text(world.order_day[g["order"]]) in text
                assert T.describe_product(g["anchor"], catalog, vocab) in text
        if task == "BUNDLE":
            for c in g["cats"]:
                if c >= 0:
                    assert vocab.category_name(c).split("/")[-1].replace("_", " ") in text
            assert ("$" in text) == bool(g["mentioned"][SLOT_BUDGET])
        if task == "POLICY":
            for field, v in info["policy_context"].items():
                assert kb.format_value(field, v) in text
            assert kb.evaluate(int(g["rule"]), info["policy_context"]) == int(g["row"])
    if task in ("PD", "SUB", "CART", "RETURN", "STATUS", "BUNDLE"):
        assert checked_absent > 0


def test_journey_hint_and_intentgoal_input(env):
    """A jnp IntentGoal and the jax catalog work like numpy dicts; journey_hint announces more to come."""
    catalog, vocab, world, jcat = env
    g = make_goal("PD", 1, env)
    ig = empty_intent().replace(**{k: jax.numpy.asarray(v) for k, v in g.items()})
    a, info_a = T.opening_message(g, world, catalog, vocab, _rng(5), p_noise=0.0, journey_hint=False)
    b, info_b = T.opening_message(ig, world, jcat, vocab, _rng(5), p_noise=0.0, journey_hint=False)
    assert a == b and info_a == info_b
    hinted = [T.opening_message(g, world, catalog, vocab, _rng(s), p_noise=0.0, journey_hint=True)[0]
              for s in range(12)]
    suffixes = [s.strip() for s in T.JOURNEY_SUFFIX]
    assert all(any(x.endswith(s) for s in suffixes) for x in hinted)
    assert all(info_a["values"][s] in x for x in hinted for s in info_a["stated_slots"])


def test_values_with_braces_never_leak(env):
    """Vocabulary strings containing braces (real catalogs) cannot put a brace into a message."""
    import copy
    catalog, vocab, world, _ = env
    bad = copy.copy(vocab)
    bad.brands = ["{brand}" + b + "}" for b in vocab.brands]
    bad.attr_values = {k: [v + "{x}" for v in vs] for k, vs in vocab.attr_values.items()}
    bad.categories = [c + "_{leaf}" for c in vocab.categories]
    for task in TASKS:
        for seed in range(8):
            g = make_goal(task, seed, env)
            text, _ = T.opening_message(g, world, catalog, bad, _rng(seed), p_noise=0.1, journey_hint=True)
            assert "{" not in text and "}" not in text
            for s in range(NUM_SLOTS):
                r = T.reply_message(dict(act=ACT_CLARIFY, slot=s), g, world, catalog, bad, _rng(seed), p_noise=0.1)
                assert "{" not in r and "}" not in r


# ---------------------------------------------------------------------------------------------- replies

@pytest.mark.parametrize("task", TASKS)
def test_clarify_states_the_value(task, env):
    catalog, vocab, world, _ = env
    for seed in range(25):
        g = make_goal(task, seed, env)
        values = expected_values(g, env)
        for s, v in values.items():
            text = _reply(dict(act=ACT_CLARIFY, slot=s), g, env, seed)
            assert _pattern(v).search(text), (s, v, text)
            if SLOT_VARIANT <= s < SLOT_VARIANT + MAX_ITEMS or SLOT_QTY <= s < SLOT_QTY + MAX_ITEMS:
                n = (s - SLOT_VARIANT) % MAX_ITEMS
                assert T.describe_product(g["items"][n], catalog, vocab) in text
            assert T.slot_value(s, g, world, catalog, vocab) == v
        for s in range(NUM_SLOTS):                    # a slot the intent lacks: no preference, no value
            if s not in values:
                text = _reply(dict(act=ACT_CLARIFY, slot=s), g, env, seed)
                assert text in T.NO_PREFERENCE
                assert T.slot_value(s, g, world, catalog, vocab) is None


def test_clarify_slot_types_examples(env):
    """Spot checks of each slot type's wording."""
    _catalog, _vocab, _world, _ = env
    g = make_goal("CART", 4, env)                    # item 0 is product 11 with episode variants
    g["item_variant"][0], g["item_qty"][0] = MAX_VARIANTS, 3
    assert "in navy" in _reply(dict(act=ACT_CLARIFY, slot=SLOT_VARIANT), g, env, 0)
    assert re.search(r"\b3 of the ", _reply(dict(act=ACT_CLARIFY, slot=SLOT_QTY), g, env, 0))
    r = make_goal("RETURN", 2, env)
    assert f"ord_{int(r['order']) + 1:03d}" in _reply(dict(act=ACT_CLARIFY, slot=SLOT_ORDER), r, env, 0)
    r["reason"] = np.int32(RETURN_REASONS.index("wrong_item"))
    assert "wrong item" in _reply(dict(act=ACT_CLARIFY, slot=SLOT_REASON), r, env, 0)
    b = make_goal("BUNDLE", 0, env)
    b["budget"] = np.int32(12_000)
    assert "$120.00" in _reply(dict(act=ACT_CLARIFY, slot=SLOT_BUDGET), b, env, 0)


def test_every_act_renders(env):
    _catalog, _vocab, _world, _ = env
    for task in TASKS:
        for seed in range(6):
            g = make_goal(task, seed, env)
            for act, bank in ((ACT_CONTINUE, T.CONTINUE), (ACT_RAGEQUIT, T.RAGEQUIT), (ACT_DONE, T.DONE),
                              (ACT_DISSATISFIED, T.DISSATISFIED)):
                assert _reply(dict(act=act), g, env, seed) in bank
            assert _reply(dict(act=ACT_CONFIRM), g, env, seed)
            assert _reply(dict(act=ACT_CORRECT), g, env, seed)
            assert _reply(dict(act=ACT_ELABORATE), g, env, seed)
            assert _reply(dict(act=0), g, env, seed) == ""


def test_cart_and_return_corrections(env):
    catalog, vocab, world, _ = env
    g = make_goal("CART", 1, env)
    n_items = int(np.sum(g["items"] >= 0))
    for issue in (1, 2, 3, 4):
        for n in range(n_items):
            bank = T.CORRECT_CART[issue]
            text = _reply(dict(act=ACT_CORRECT, issue=issue, item=n), g, env, issue * 10 + n)
            assert T.describe_product(g["items"][n], catalog, vocab) in text
            assert any(re.fullmatch(re.escape(t).replace(r"\{d\}", ".+").replace(r"\{attr\}", r"[\w ]+"), text)
                       for t in bank), text
    # issue 5: item = the cart line holding a product that should not be there
    extra = next(p for p in range(50) if p not in set(g["items"].tolist()))
    w = world.replace(cart_product=np.where(np.arange(world.cart_product.shape[0]) == 2, extra, -1))
    text = T.reply_message(dict(act=ACT_CORRECT, issue=5, item=2), g, w, catalog, vocab, _rng(0))
    assert T.describe_product(extra, catalog, vocab) in text
    text = T.reply_message(dict(act=ACT_CORRECT, issue=5, item=7), g, w, catalog, vocab, _rng(0))
    assert text in T.CORRECT_EXTRA_GENERIC
    # a correction that also reveals a slot states its value
    for s in range(n_items):
        text = _reply(dict(act=ACT_CORRECT, issue=4, item=s, slot=SLOT_QTY + s), g, env, s)
        assert re.search(rf"\b{int(g['item_qty'][s])} of the ", text)
    r = make_goal("RETURN", 3, env)
    text = _reply(dict(act=ACT_CORRECT, issue=1, item=0), r, env, 0)
    assert T.describe_product(r["anchor"], catalog, vocab) in text
    # confirmations name what they confirm
    p = make_goal("PD", 2, env)
    assert vocab.product_id(77) in _reply(dict(act=ACT_CONFIRM, item=77), p, env, 0)
    assert T.describe_product(g["items"][0], catalog, vocab) in _reply(dict(act=ACT_CONFIRM, item=0), g, env, 0)


def test_elaborate_new_intent_renders_that_intent(env):
    """JOURNEY: a stacked [I] goal; elaborate(new_intent) for intent 1 is intent 1's opening message."""
    catalog, vocab, world, _ = env
    g0, g1 = make_goal("PD", 4, env), make_goal("STATUS", 5, env)
    keys = set(g0) | set(g1)
    base = {f: np.asarray(getattr(empty_intent(), f)) for f in keys}
    stacked = {k: np.stack([np.asarray(g0.get(k, base[k])), np.asarray(g1.get(k, base[k]))]) for k in keys}
    msg = UserMessage(act=np.int32(ACT_ELABORATE), intent=np.int32(1), slot=np.int32(-1), item=np.int32(-1),
                      issue=np.int32(0), new_intent=np.asarray(True))
    text = T.reply_message(msg, stacked, world, catalog, vocab, _rng(9), p_noise=0.0)
    ALL_MESSAGES.append(text)
    assert T.describe_product(g1["anchor"], catalog, vocab) in text or "ord_" in text
    assert any(text.startswith(t.split("{")[0]) for t in T.ELABORATE_NEW)
    values = expected_values(g1, env)
    if g1["mentioned"][SLOT_ORDER]:
        assert values[SLOT_ORDER] in text
    else:
        assert "ord_" not in text


def test_no_preference_and_restating(env):
    _catalog, _vocab, _world, _ = env
    g = make_goal("PD", 7, env)
    free = int(np.argmin(g["c_mask"]))                             # a constraint slot the intent lacks
    text = _reply(dict(act=ACT_CONTINUE), g, env, 0, asked_slot=free)
    assert any(text.startswith(t) for t in T.NO_PREFERENCE)
    text = _reply(dict(act=ACT_CONTINUE), g, env, 0, asked_slot=SLOT_ORDER)
    assert any(text.startswith(t) for t in T.NO_PREFERENCE)
    text = _reply(dict(act=ACT_CONTINUE), g, env, 0, asked_slot=0)  # needed, already revealed: restated
    assert expected_values(g, env)[0] in text
    text = _reply(dict(act=ACT_CONTINUE), g, env, 0, asked_slot=GENERIC_SLOT)
    assert any(text.startswith(t) for t in T.NOTHING_ELSE)
    assert T.no_preference(_rng(0)) in T.NO_PREFERENCE
    cart = make_goal("CART", 2, env)                                # an implicit quantity of 1 is restated
    cart["item_qty"][0] = 1
    text = _reply(dict(act=ACT_CONTINUE), cart, env, 0, asked_slot=SLOT_QTY)
    assert re.search(r"\b1 of the " + re.escape(T.describe_product(cart["items"][0], env[0], env[1])), text)


# ---------------------------------------------------------------------------------------------- determinism, noise

def _tokens_with_digits(text):
    return re.findall(r"\S*[\d$_]\S*", text)


def test_same_seed_same_text_different_seed_varies(env):
    catalog, vocab, world, _ = env
    for task in TASKS:
        g = make_goal(task, 3, env)
        for p_noise in (0.0, 0.08):
            a = [_open(g, env, s, p_noise)[0] for s in range(30)]
            b = [_open(g, env, s, p_noise)[0] for s in range(30)]
            assert a == b
            assert len(set(a)) >= 5, (task, p_noise, set(a))
        key_data = jax.random.key_data(jax.random.key(7))
        x = T.opening_message(g, world, catalog, vocab, T.rng_for(key_data, 0), p_noise=0.1)[0]
        y = T.opening_message(g, world, catalog, vocab, T.rng_for(key_data, 0), p_noise=0.1)[0]
        assert x == y
        r = [T.reply_message(dict(act=ACT_CONTINUE), g, world, catalog, vocab, T.rng_for(key_data, t), p_noise=0.1)
             for t in range(20)]
        assert len(set(r)) >= 3


@pytest.mark.parametrize("p_noise", [0.03, 0.125, 0.5])
def test_noise_never_touches_values(p_noise, env):
    catalog, vocab, _world, _ = env
    changed = 0
    for task in TASKS:
        for seed in range(20):
            g = make_goal(task, seed, env)
            clean, info = _open(g, env, seed, 0.0)
            noisy, info_n = _open(g, env, seed, p_noise)
            assert info == info_n
            changed += clean != noisy
            assert _tokens_with_digits(noisy) == _tokens_with_digits(clean), (clean, noisy)
            for v in info["values"].values():
                assert _pattern(v).search(noisy), (v, noisy)
            for p in g.get("items", []):
                if p >= 0:
                    assert T.describe_product(p, catalog, vocab) in noisy
            if task in ("SUB", "RETURN") or (task == "STATUS" and not g["mentioned"][SLOT_ORDER]):
                assert T.describe_product(g["anchor"], catalog, vocab) in noisy
            if task == "POLICY":
                for field, v in info["policy_context"].items():
                    assert kb.format_value(field, v) in noisy
            for s in expected_values(g, env):
                c = _reply(dict(act=ACT_CLARIFY, slot=s), g, env, seed, 0.0)
                n = _reply(dict(act=ACT_CLARIFY, slot=s), g, env, seed, p_noise)
                assert _tokens_with_digits(n) == _tokens_with_digits(c)
                assert _pattern(expected_values(g, env)[s]).search(n)
    assert changed >= (20 if p_noise >= 0.1 else 5)


def test_noise_operations_and_protection():
    rng = T.rng_for(np.array([1, 2], np.uint32), 0)
    text = "please recommend something because I am looking for the quantity you want ord_003 $45.00 syn_0001234"
    out = T.add_noise(text, 0.125, rng, protected=("looking",))
    assert "ord_003" in out and "$45.00" in out and "syn_0001234" in out and "looking" in out
    outs = {T.add_noise(text, 0.1, T.rng_for(np.array([1, s], np.uint32), 0)) for s in range(40)}
    joined = " ".join(outs)
    assert any(a in joined.split() for a in ("pls", "reccomend", "smthg", "cuz", "qty", "u"))
    assert len(outs) > 30
    assert T.add_noise(text, 0.0, rng) == text
    assert all(set(nb) <= set("abcdefghijklmnopqrstuvwxyz") and nb for nb in T.QWERTY_NEIGHBOURS.values())
    # all four character operations occur: drops, duplicates, swaps, substitutions
    word = "abcdefghijklmnopqrstuvwxyz " * 20
    noisy = T.add_noise(word, 0.2, T.rng_for(np.array([9, 9], np.uint32), 1))
    assert noisy != word.strip() and len(noisy.split()) == 20


def test_noise_is_process_independent(env):
    """The same key gives the same noisy text in a fresh interpreter with a different hash seed."""
    code = (
        "import numpy as np\n"
        "from ecomjax.user import text as T\n"
        "g = dict(task=np.int32(5), rule=np.int32(7), row=np.int32(0))\n"
        "rng = T.rng_for(np.array([11, 22], np.uint32), 3)\n"
        "print(T.add_noise('please tell me something about the quantity you have', 0.3, rng))\n"
        "print(T.opening_message(g, None, None, None, T.rng_for(np.array([11, 22], np.uint32), 4), p_noise=0.2)[0])\n"
    )
    envv = dict(os.environ, PYTHONHASHSEED="12345", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=envv, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    g = dict(task=np.int32(5), rule=np.int32(7), row=np.int32(0))
    here = [T.add_noise("please tell me something about the quantity you have", 0.3,
                        T.rng_for(np.array([11, 22], np.uint32), 3)),
            T.opening_message(g, None, None, None, T.rng_for(np.array([11, 22], np.uint32), 4), p_noise=0.2)[0]]
    assert out.stdout.splitlines() == here


# ---------------------------------------------------------------------------------------------- detect_ask

def test_detect_ask(env):
    catalog, vocab, _world, _ = env
    pd = make_goal("PD", 5, env)
    keys = {CONSTRAINT_KEYS[pd["c_key"][j]]: j for j in range(M) if pd["c_mask"][j]}
    free = int(np.argmin(pd["c_mask"]))

    def slot_of(key):
        return keys.get(key, free)

    cases = {
        "What's your budget?": slot_of("price"),
        "How much are you willing to spend?": slot_of("price"),
        "Do you have a preferred brand?": slot_of("brand"),
        "What minimum star rating do you need?": slot_of("rating"),
        "How soon do you need it delivered?": slot_of("ship_days"),
        "Which color would you like?": slot_of("color"),
        "What size do you wear?": slot_of("size"),
        "Any preferred material?": slot_of("material"),
        "What kind of product are you after?": slot_of("cat"),
        "Anything else I should know?": GENERIC_SLOT,
        "Could you tell me more about what you need?": GENERIC_SLOT,
        "Which one do you prefer?": GENERIC_SLOT,
        "Here are five headphones I found.": -1,
        "I found options from Zenka under $40.": -1,
        "": -1,
        "Great. What is the order number?": SLOT_ORDER,
    }
    for msg, want in cases.items():
        assert T.detect_ask(msg, pd) == want, msg

    cart = make_goal("CART", 6, env)
    cart["item_qty"][:] = np.where(cart["items"] >= 0, 2, 0)       # every quantity needed
    cart["needed"][SLOT_QTY:SLOT_QTY + MAX_ITEMS] = cart["items"] >= 0
    live = [n for n in range(MAX_ITEMS) if cart["items"][n] >= 0]
    assert len(live) >= 2
    assert T.detect_ask("How many do you need?", cart) == SLOT_QTY + live[0]
    assert T.detect_ask("What quantity?", cart) == SLOT_QTY + live[0]
    last = live[-1]
    d = T.describe_product(cart["items"][last], catalog, vocab)
    assert T.detect_ask(f"How many of the {d} do you need?", cart, catalog=catalog, vocab=vocab) == SLOT_QTY + last
    rev = np.zeros(NUM_SLOTS, bool)
    rev[SLOT_QTY + live[0]] = True
    assert T.detect_ask("How many units?", cart, revealed=rev) == SLOT_QTY + live[1]
    cart["needed"][SLOT_QTY + live[0]] = False                       # needed slots come first
    assert T.detect_ask("How many?", cart) == SLOT_QTY + live[1]
    assert SLOT_VARIANT <= T.detect_ask("Which variant do you want?", cart) < SLOT_VARIANT + MAX_ITEMS
    assert SLOT_VARIANT <= T.detect_ask("Which color should it be?", cart) < SLOT_VARIANT + MAX_ITEMS

    ret = make_goal("RETURN", 1, env)
    assert T.detect_ask("Why do you want to return it?", ret) == SLOT_REASON
    assert T.detect_ask("What's the reason for the return?", ret) == SLOT_REASON
    assert T.detect_ask("Can you give me the order ID?", ret) == SLOT_ORDER
    assert T.detect_ask("Which order is it from?", ret) == SLOT_ORDER
    assert T.detect_ask("Which item is it?", ret) == SLOT_ORDER
    st = make_goal("STATUS", 1, env)
    assert T.detect_ask("Do you have the order number?", st) == SLOT_ORDER
    bundle = make_goal("BUNDLE", 1, env)
    assert T.detect_ask("What's your total budget?", bundle) == SLOT_BUDGET
    assert T.detect_ask("How much can you spend overall?", bundle) == SLOT_BUDGET
    for msg, key in (("Do you need a minimum wattage?", "wattage"), ("How heavy can it be?", "weight_lbs"),
                     ("What screen size?", "screen_size_inches"),
                     ("Which connector type do you need?", "connector_type"),
                     ("Is there a store you prefer?", "store"), ("What skin type do you have?", "skin_type"),
                     ("Matte or glossy finish?", "finish_type"),
                     ("How many reviews should it have at least?", "rating_count")):
        g = dict(pd)
        g["c_key"] = pd["c_key"].copy()
        g["c_mask"] = pd["c_mask"].copy()
        g["c_mask"][g["c_key"] == KEY[key]] = False
        g["c_key"][5], g["c_mask"][5] = KEY[key], True
        assert T.detect_ask(msg, g) == 5, msg


def test_no_braces_anywhere():
    assert ALL_MESSAGES, "run with the rest of the module"
    assert not [m for m in ALL_MESSAGES if "{" in m or "}" in m]
