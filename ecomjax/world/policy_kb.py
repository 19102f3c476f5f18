"""Store-policy knowledge base (SPEC §4–5, POLICY): rules, questions, answer scoring and the fixed-shape
arrays that jitted `policy.search` reads.

A rule branches on 1–7 condition fields (its clause count). Its answer table is a list of rows; every row
holds exactly one condition per field, in the rule's field order, plus the answer. Rows of one rule are
mutually exclusive and each is satisfiable, so a context selects at most one row (`evaluate`).

Conditions (`Condition(field, op, value)`):
- categorical fields: ``eq``/``neq`` with a value, ``in``/``not_in`` with a tuple of values;
- numeric fields (all integer-valued): ``eq``/``gt``/``gte``/``lt``/``lte`` with an int, and ``between``
  with ``(lo, hi)``: the inclusive band ``lo <= x <= hi`` written as one clause.
A condition that admits the field's whole domain is shown as "any".
"""

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from ecomjax.catalog.lexical import hash_text, tokenize
from ecomjax.catalog.schema import DEFAULT_RETURN_WINDOW, QUERY_TOKENS, RETURN_WINDOWS
from ecomjax.world.state import ORDER_STATUSES, RETURN_FEES_CENTS, RETURN_METHODS

MAX_CLAUSES = 7             # B_branch(d) = 1 + floor(d/3) is capped here
MAX_ROWS = 12               # answer-table rows per rule (array padding)
KB_TOKENS = 64              # search tokens per rule (array padding)
NUMERIC, CATEGORICAL = "numeric", "categorical"
CATEGORICAL_OPS: frozenset[str] = frozenset({"eq", "neq", "in", "not_in"})
NUMERIC_OPS: frozenset[str] = frozenset({"eq", "gt", "gte", "lt", "lte", "between"})
TOPICS: tuple[str, ...] = ("returns", "shipping", "pricing", "membership", "warranty", "payments", "orders")
UNITS: tuple[str, ...] = ("days", "business days", "hours", "months", "USD", "%", "points", "points per dollar")
_SINGULAR_UNITS: dict[str, str] = {
    "days": "day", "business days": "business day", "hours": "hour", "months": "month", "points": "point",
    "points per dollar": "point per dollar",
}
CATEGORIES: tuple[str, ...] = (
    "electronics", "clothing", "furniture", "groceries", "jewelry", "books", "toys", "sports", "beauty",
    "automotive", "home", "office",
)
YES_NO: tuple[str, ...] = ("yes", "no")
SCORE_BETA = 4              # numeric score 2·(min/max)^β − 1
_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")
_QUESTION_FRAMES: tuple[str, ...] = (
    "{Ctx}. {ask}",
    "Hi, {ctx}. {ask}",
    "{ask} For context, {ctx}.",
    "{ask} Details: {ctx}.",
    "Quick question about your policy: {ctx}. {ask}",
)


@dataclass(frozen=True)
class Field:
    """A condition field: categorical (`values`) or integer-valued numeric on [low, high] in `unit`."""

    name: str
    phrases: tuple[str, ...]                # question fragments, each with one "{v}"
    values: tuple[str, ...] = ()
    low: int = 0
    high: int = 0
    unit: str = ""

    @property
    def numeric(self) -> bool:
        return not self.values


def _field(name: str, phrases: tuple[str, ...], values: tuple[str, ...] = (), low: int = 0, high: int = 0,
           unit: str = "") -> tuple[str, Field]:
    return name, Field(name, phrases, values, low, high, unit)


FIELDS: dict[str, Field] = dict((
    _field("category", ("the item is in the {v} category", "the product category is {v}",
                        "it's from the {v} department"), CATEGORIES),
    _field("tier", ("my membership tier is {v}", "membership tier: {v}", "my member tier is {v}"),
           ("none", "basic", "premium")),
    _field("method", ("I'm choosing {v} shipping", "the shipping method is {v}", "{v} shipping is selected"),
           ("standard", "express", "overnight")),
    _field("item_condition", ("the item is {v}", "the item's condition is {v}", "item condition: {v}"),
           ("unopened", "opened", "damaged", "defective")),
    _field("region", ("the destination region is {v}", "it ships to a {v} address", "delivery region: {v}"),
           ("domestic", "international", "remote")),
    _field("payment", ("I paid with {v}", "my payment method is {v}", "payment: {v}"),
           ("card", "gift_card", "paypal", "store_credit")),
    _field("is_sale_item", ("sale item: {v}", "bought on sale: {v}"), YES_NO),
    _field("holiday_season", ("holiday season right now: {v}", "holiday season: {v}"), YES_NO),
    _field("has_receipt", ("receipt available: {v}", "I have the receipt: {v}"), YES_NO),
    _field("return_method", ("the return method is {v}", "return method: {v}", "I'd return it via {v}"),
           RETURN_METHODS),
    _field("order_status", ("the order status is {v}", "my order shows {v}", "order status: {v}"),
           tuple(s.lower() for s in ORDER_STATUSES)),
    _field("quantity", ("I'm ordering {v} units", "the quantity is {v}", "I want {v} of them"),
           low=1, high=500, unit="units"),
    _field("order_total", ("my order total is ${v}", "the order comes to ${v}", "the cart total is ${v}"),
           low=1, high=5000, unit="USD"),
    _field("item_price", ("the item costs ${v}", "the item price is ${v}"), low=1, high=5000, unit="USD"),
    _field("days_since_purchase", ("I bought it {v} days ago", "it has been {v} days since purchase",
                                   "the purchase was {v} days ago"), low=0, high=365, unit="days"),
    _field("weight_lbs", ("the package weighs {v} lbs", "the shipment weight is {v} lbs"),
           low=1, high=200, unit="lbs"),
    _field("membership_months", ("I've been a member for {v} months", "my membership is {v} months old"),
           low=0, high=120, unit="months"),
))


@dataclass(frozen=True)
class Condition:
    """One clause of a row: `field op value` (see the module docstring for ops and values)."""

    field: str
    op: str
    value: Any

    def admits(self, x: Any) -> bool:
        """Whether context value `x` satisfies this clause."""
        op, v = self.op, self.value
        if op == "eq":
            return x == v
        if op == "neq":
            return x != v
        if op == "in":
            return x in v
        if op == "not_in":
            return x not in v
        if isinstance(x, str):
            return False
        if op == "gt":
            return x > v
        if op == "gte":
            return x >= v
        if op == "lt":
            return x < v
        if op == "lte":
            return x <= v
        return v[0] <= x <= v[1]

    def support(self) -> frozenset[str] | tuple[int, int]:
        """Field values this clause admits: a set (categorical) or an inclusive band (numeric, may be empty)."""
        f = FIELDS[self.field]
        if not f.numeric:
            return frozenset(x for x in f.values if self.admits(x))
        if self.op == "between":
            lo, hi = self.value
        else:
            v = self.value
            lo, hi = {"eq": (v, v), "gt": (v + 1, f.high), "gte": (v, f.high), "lt": (f.low, v - 1),
                      "lte": (f.low, v)}[self.op]
        return max(lo, f.low), min(hi, f.high)

    def is_any(self) -> bool:
        """Whether the clause admits the field's whole domain."""
        f = FIELDS[self.field]
        return self.support() == (frozenset(f.values) if not f.numeric else (f.low, f.high))


@dataclass(frozen=True)
class Row:
    """One answer-table row: a condition per rule field, and the answer."""

    conditions: tuple[Condition, ...]
    answer: float | str


@dataclass(frozen=True)
class Rule:
    """A store policy: what its `title` answers, for which condition `fields`, as an answer table."""

    rule_id: str
    title: str
    topic: str
    fields: tuple[str, ...]
    rows: tuple[Row, ...]
    unit: str                               # numeric answer unit; "" for categorical answers
    asks: tuple[str, ...]                   # question phrasings of exactly what the title answers

    @property
    def answer_type(self) -> str:
        return NUMERIC if self.unit else CATEGORICAL

    @property
    def num_clauses(self) -> int:
        return len(self.fields)


def _parse_condition(field: str, spec: str) -> Condition:
    """Compact clause: `*` any; categorical `a`, `!a`, `a|b`, `!a|b`; numeric `n`, `lo..hi`, `>=n`, `>n`,
    `<=n`, `<n`."""
    f, spec = FIELDS[field], spec.strip()
    if spec == "*":
        return Condition(field, "between", (f.low, f.high)) if f.numeric else Condition(field, "in", f.values)
    if not f.numeric:
        neg, names = spec.startswith("!"), tuple(spec.lstrip("!").split("|"))
        if len(names) == 1:
            return Condition(field, "neq" if neg else "eq", names[0])
        return Condition(field, "not_in" if neg else "in", names)
    if ".." in spec:
        lo, hi = spec.split("..")
        return Condition(field, "between", (int(lo), int(hi)))
    for prefix, op in ((">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt")):
        if spec.startswith(prefix):
            return Condition(field, op, int(spec[len(prefix):]))
    return Condition(field, "eq", int(spec))


def _spec(title: str, topic: str, unit: str, fields: str, asks: tuple[str, ...],
          rows: list[tuple[str, float | str]]) -> dict[str, Any]:
    names = tuple(fields.split())
    parsed = []
    for specs, ans in rows:
        parts = specs.split(";")
        if len(parts) != len(names):
            raise ValueError(f"{title!r}: row {specs!r} needs one clause per field {names}")
        parsed.append(Row(tuple(_parse_condition(n, s) for n, s in zip(names, parts)),
                          float(ans) if unit else str(ans)))
    return {"title": title, "topic": topic, "fields": names, "rows": tuple(parsed), "unit": unit, "asks": asks}


_RETURN_WINDOW_ROWS = [(cat, days) for cat, days in RETURN_WINDOWS.items()] + [
    ("!" + "|".join(RETURN_WINDOWS), DEFAULT_RETURN_WINDOW)]
_RETURN_LABEL_ROWS = [(m, cents / 100) for m, cents in zip(RETURN_METHODS, RETURN_FEES_CENTS)]
_EF = "electronics|furniture"
_NOT_EF = "!electronics|furniture"

_RULE_SPECS: tuple[dict[str, Any], ...] = (
    # ---- one clause ----
    _spec("Return window by product category", "returns", "days", "category",
          ("How many days do I have to return it?", "What is the return window, in days?",
           "How long is the return window for this item?"), _RETURN_WINDOW_ROWS),
    _spec("Base shipping cost by delivery method", "shipping", "USD", "method",
          ("How much does shipping cost?", "What is the base shipping charge in dollars?"),
          [("standard", 7.99), ("express", 14.99), ("overnight", 24.99)]),
    _spec("Free shipping threshold by membership tier", "shipping", "USD", "tier",
          ("What order total do I need to reach to get free shipping?",
           "What is the minimum spend for free shipping?"),
          [("none", 50), ("basic", 35), ("premium", 0)]),
    _spec("Bulk purchase discount by quantity", "pricing", "%", "quantity",
          ("What bulk discount percentage do I get?", "How big is the bulk purchase discount, in percent?"),
          [("1..9", 0), ("10..24", 5), ("25..99", 10), (">=100", 15)]),
    _spec("Manufacturer warranty length by category", "warranty", "months", "category",
          ("How many months of manufacturer warranty does it come with?",
           "How long is the standard manufacturer warranty, in months?"),
          [("electronics", 12), ("furniture", 24), ("clothing", 3), ("jewelry|toys|sports", 6),
           ("automotive|home|office", 12), ("groceries|books|beauty", 0)]),
    _spec("Delivery time by shipping method", "shipping", "business days", "method",
          ("How many business days will delivery take?", "How long until it arrives, in business days?"),
          [("standard", 7), ("express", 3), ("overnight", 1)]),
    _spec("Return label fee by return method", "returns", "USD", "return_method",
          ("How much is the return label fee?", "What will the return cost me in dollars?"),
          _RETURN_LABEL_ROWS),
    _spec("Annual membership fee by tier", "membership", "USD", "tier",
          ("What is the annual membership fee?", "How much does the membership cost per year?"),
          [("none", 0), ("basic", 49), ("premium", 99)]),
    _spec("Reward points per dollar by membership tier", "membership", "points per dollar", "tier",
          ("How many reward points do I earn per dollar spent?", "What is my points earning rate per dollar?"),
          [("none", 1), ("basic", 2), ("premium", 3)]),
    _spec("Destination surcharge for international and remote addresses", "shipping", "USD", "region",
          ("What destination surcharge applies?", "How much extra do I pay for the delivery destination?"),
          [("domestic", 0), ("international", 29.99), ("remote", 19.99)]),
    _spec("Refund processing time by payment method", "payments", "business days", "payment",
          ("How many business days until my refund is processed?",
           "How long does the refund take to process, in business days?"),
          [("card", 5), ("gift_card", 1), ("paypal", 3), ("store_credit", 1)]),
    _spec("Gift wrapping fee by category", "pricing", "USD", "category",
          ("How much does gift wrapping cost?", "What is the gift wrap fee?"),
          [("jewelry", 0), ("!jewelry", 4.99)]),
    _spec("Order cancellation eligibility by order status", "orders", "", "order_status",
          ("Can I still cancel the order?", "Is cancelling this order allowed?"),
          [("confirmed", "cancellation allowed"), ("shipped|in_transit|delivered", "cancellation not allowed"),
           ("cancelled", "already cancelled")]),
    _spec("Tracking number availability by order status", "orders", "", "order_status",
          ("Is a tracking number available for my order?", "Can I get a tracking number yet?"),
          [("confirmed", "not yet assigned"), ("shipped|in_transit|delivered", "available"),
           ("cancelled", "not available")]),
    _spec("Heavy item surcharge by package weight", "shipping", "USD", "weight_lbs",
          ("What heavy item surcharge applies?", "How much is the surcharge for a package this heavy?"),
          [("1..49", 0), ("50..99", 25), (">=100", 75)]),
    _spec("Extra return days during the holiday season", "returns", "days", "holiday_season",
          ("How many extra return days do I get?", "By how many days is my return window extended?"),
          [("yes", 14), ("no", 0)]),
    _spec("Refund destination by original payment method", "payments", "", "payment",
          ("Where will my refund be sent?", "How will the refund be paid back to me?"),
          [("card", "original card"), ("gift_card", "new gift card"), ("paypal", "paypal balance"),
           ("store_credit", "store credit")]),
    _spec("Loyalty discount by months of membership", "membership", "%", "membership_months",
          ("What loyalty discount percentage do I get?", "How much is my loyalty discount, in percent?"),
          [("0..11", 0), ("12..35", 2), (">=36", 5)]),
    _spec("Delivery signature requirement by order total", "shipping", "", "order_total",
          ("Will a signature be required at delivery?", "Do I need to sign for the delivery?"),
          [("<=499", "no signature required"), (">=500", "signature required")]),
    _spec("Clearance sale refund type", "returns", "", "is_sale_item",
          ("What type of refund would I get if I return it?", "What kind of refund applies to this return?"),
          [("yes", "store credit only"), ("no", "full refund")]),
    _spec("Pay in installments plan by order total", "payments", "", "order_total",
          ("Which installment plan can I use?", "Can I pay in installments, and on which plan?"),
          [("<=149", "installments not available"), ("150..999", "four interest-free payments"),
           (">=1000", "twelve monthly payments")]),
    _spec("Store credit expiration by membership tier", "membership", "months", "tier",
          ("How many months until my store credit expires?", "How long is store credit valid, in months?"),
          [("none", 12), ("basic", 24), ("premium", 36)]),
    # ---- two clauses ----
    _spec("Member shipping fee by method and tier", "shipping", "USD", "method tier",
          ("How much will I pay for shipping as a member?", "What is my member shipping fee?"),
          [("standard;premium", 0), ("standard;basic", 3.99), ("standard;none", 7.99),
           ("express;premium", 4.99), ("express;basic", 9.99), ("express;none", 14.99),
           ("overnight;premium", 9.99), ("overnight;basic", 19.99), ("overnight;none", 24.99)]),
    _spec("Restocking percentage by category and item condition", "returns", "%", "category item_condition",
          ("What restocking percentage will be deducted?", "How much restocking fee, in percent, applies?"),
          [(f"{_EF};opened", 15), (f"{_EF};unopened", 0), (f"{_NOT_EF};opened", 10), (f"{_NOT_EF};unopened", 0),
           (f"{_EF};damaged|defective", 0), (f"{_NOT_EF};damaged|defective", 0)]),
    _spec("Express shipping availability by region and weight", "shipping", "", "region weight_lbs",
          ("Is express shipping available for this package?", "Can I choose express shipping?"),
          [("domestic;<=70", "express available"), ("domestic;>=71", "express not available"),
           ("international;<=30", "express available"), ("international;>=31", "express not available"),
           ("remote;*", "express not available")]),
    _spec("Transit time by destination region and shipping method", "shipping", "business days", "region method",
          ("How many business days is the transit time?", "How long will shipping take, in business days?"),
          [("domestic;standard", 7), ("domestic;express", 3), ("domestic;overnight", 1),
           ("international;standard", 14), ("international;express", 7), ("international;overnight", 4),
           ("remote;standard", 10), ("remote;express", 5), ("remote;overnight", 3)]),
    _spec("Member bulk discount by quantity and tier", "pricing", "%", "quantity tier",
          ("What member bulk discount percentage applies?", "How much bulk discount do I get as a member?"),
          [("1..9;none|basic", 0), ("1..9;premium", 2), ("10..24;none|basic", 5), ("10..24;premium", 8),
           ("25..99;none|basic", 10), ("25..99;premium", 13), (">=100;none|basic", 15), (">=100;premium", 20)]),
    _spec("Refund outcome by days since purchase and receipt", "returns", "", "days_since_purchase has_receipt",
          ("What refund outcome should I expect?", "What will I get back if I return it?"),
          [("0..30;yes", "full refund"), ("0..30;no", "store credit"), ("31..90;yes", "store credit"),
           ("31..90;no", "no refund"), (">=91;*", "no refund")]),
    _spec("Fraud review hold by payment method and order total", "payments", "hours", "payment order_total",
          ("How many hours will the order be held for fraud review?", "How long is the fraud review hold, in hours?"),
          [("card|paypal;<=999", 0), ("card;>=1000", 24), ("paypal;>=1000", 12),
           ("gift_card|store_credit;<=499", 0), ("gift_card|store_credit;>=500", 48)]),
    _spec("Extended warranty price by category and item price", "warranty", "USD", "category item_price",
          ("How much does the extended warranty cost?", "What is the price of the extended warranty?"),
          [("electronics;<=199", 19.99), ("electronics;200..999", 49.99), ("electronics;>=1000", 99.99),
           ("furniture;<=499", 29.99), ("furniture;>=500", 59.99)]),
    _spec("Price match window by category and sale status", "pricing", "days", "category is_sale_item",
          ("How many days do I have to request a price match?", "How long is the price match window, in days?"),
          [("*;yes", 0), ("electronics|home|office;no", 14), ("!electronics|home|office;no", 7)]),
    _spec("Doorstep return pickup fee by region and tier", "returns", "USD", "region tier",
          ("How much is the return pickup fee?", "What does a return pickup cost me?"),
          [("domestic;none", 9.99), ("domestic;basic", 4.99), ("domestic;premium", 0),
           ("international;*", 39.99), ("remote;*", 19.99)]),
    _spec("Cashback rate by payment method and membership tier", "payments", "%", "payment tier",
          ("What cashback percentage do I earn?", "How much cashback, in percent, do I get?"),
          [("card;none", 1), ("card;basic", 2), ("card;premium", 3), ("paypal;!premium", 0.5),
           ("paypal;premium", 1.5), ("gift_card|store_credit;*", 0)]),
    _spec("Shipping address change by order status and method", "orders", "", "order_status method",
          ("Can I change the shipping address?", "Is an address change possible now?"),
          [("confirmed;*", "change allowed"), ("shipped;standard", "carrier redirect for a fee"),
           ("shipped;express|overnight", "change not allowed"), ("in_transit;*", "change not allowed")]),
    _spec("Grocery delivery fee by order total and tier", "shipping", "USD", "order_total tier",
          ("What grocery delivery fee will I pay?", "How much is grocery delivery?"),
          [("<=34;none", 9.99), ("<=34;basic", 5.99), ("<=34;premium", 0), (">=35;*", 0)]),
    _spec("Damage report deadline by item condition and region", "returns", "days", "item_condition region",
          ("How many days do I have to report the problem?", "What is the deadline for reporting it, in days?"),
          [("damaged;domestic", 7), ("damaged;international|remote", 14), ("defective;domestic", 30),
           ("defective;international|remote", 45)]),
    _spec("Weekend delivery option by shipping method and region", "shipping", "", "method region",
          ("Can it be delivered on a weekend?", "Is weekend delivery an option?"),
          [("express|overnight;domestic", "saturday delivery"), ("standard;domestic", "weekdays only"),
           ("*;international|remote", "weekdays only")]),
    # ---- three clauses ----
    _spec("Opened box restocking fee by category, condition and days since purchase", "returns", "%",
          "category item_condition days_since_purchase",
          ("What restocking fee percentage applies to my return?", "How much is the restocking fee, in percent?"),
          [(f"{_EF};opened;0..14", 15), (f"{_EF};opened;15..30", 25), (f"{_EF};unopened;0..30", 0),
           (f"{_NOT_EF};opened;0..30", 10), (f"{_NOT_EF};unopened;0..30", 0), ("*;damaged|defective;0..30", 0)]),
    _spec("Shipping rate by method, destination region and package weight", "shipping", "USD",
          "method region weight_lbs",
          ("What shipping rate will I be charged?", "How much does it cost to ship this package?"),
          [("standard;domestic;1..20", 7.99), ("standard;domestic;21..200", 12.99),
           ("express;domestic;1..20", 14.99), ("express;domestic;21..200", 24.99),
           ("overnight;domestic;1..20", 24.99), ("overnight;domestic;21..200", 44.99),
           ("standard|express;international;1..20", 29.99), ("standard|express;international;21..200", 59.99),
           ("overnight;international;*", 89.99), ("*;remote;*", 34.99)]),
    _spec("Member sale discount by tier, sale status and holiday season", "membership", "%",
          "tier is_sale_item holiday_season",
          ("What member discount percentage do I get?", "How much member discount, in percent, applies?"),
          [("premium;yes;yes", 25), ("premium;yes;no", 20), ("premium;no;yes", 10), ("premium;no;no", 5),
           ("basic;yes;yes", 15), ("basic;yes;no", 10), ("basic;no;*", 5), ("none;*;*", 0)]),
    _spec("Refund method by original payment, days since purchase and receipt", "payments", "",
          "payment days_since_purchase has_receipt",
          ("How will my refund be issued?", "What refund method applies to my return?"),
          [("card|paypal;0..30;yes", "refund to original payment"), ("card|paypal;0..30;no", "store credit"),
           ("gift_card|store_credit;0..30;*", "store credit"), ("*;31..90;yes", "store credit"),
           ("*;31..90;no", "no refund"), ("*;>=91;*", "no refund")]),
    _spec("Warranty claim remedy by category, condition and days since purchase", "warranty", "",
          "category item_condition days_since_purchase",
          ("What remedy will the warranty claim give me?", "How will my warranty claim be resolved?"),
          [("electronics;defective;0..30", "replacement"), ("electronics;defective;31..365", "repair"),
           ("furniture;defective;*", "repair"), (f"{_EF};damaged;*", "not covered"),
           ("clothing|toys|sports|jewelry;defective;0..90", "replacement"),
           ("clothing|toys|sports|jewelry;defective;91..365", "not covered"),
           ("clothing|toys|sports|jewelry;damaged;*", "not covered")]),
    _spec("Return shipping fee by membership tier, return method and region", "returns", "USD",
          "tier return_method region",
          ("How much will return shipping cost me?", "What is the return shipping fee?"),
          [("*;in_store;*", 0), ("premium;mail|pickup;domestic", 0), ("basic;mail;domestic", 2.99),
           ("basic;pickup;domestic", 4.99), ("none;mail;domestic", 5.99), ("none;pickup;domestic", 9.99),
           ("*;mail|pickup;international", 24.99), ("*;mail|pickup;remote", 14.99)]),
    _spec("Bulk order lead time by quantity, category and shipping method", "orders", "business days",
          "quantity category method",
          ("How many business days is the lead time for my order?",
           "What lead time should I expect, in business days?"),
          [("1..49;*;overnight", 1), ("1..49;*;express", 3), ("1..49;*;standard", 7),
           ("50..199;furniture|home|office;*", 14), ("50..199;!furniture|home|office;*", 10), (">=200;*;*", 21)]),
    _spec("Installment APR by order total, membership tier and payment method", "payments", "%",
          "order_total tier payment",
          ("What interest rate applies if I pay in installments?",
           "What APR, in percent, will the installments carry?"),
          [("150..999;premium;card|paypal", 0), ("150..999;none|basic;card|paypal", 9.99),
           (">=1000;premium;card|paypal", 4.99), (">=1000;none|basic;card|paypal", 14.99)]),
    # ---- four clauses ----
    _spec("Member restocking charge by category, condition, days since purchase and tier", "returns", "%",
          "category item_condition days_since_purchase tier",
          ("What restocking charge, in percent, will I pay?", "How much restocking charge applies to me?"),
          [(f"{_EF};opened;0..30;none", 20), (f"{_EF};opened;0..30;basic", 15), (f"{_EF};opened;0..30;premium", 0),
           (f"{_NOT_EF};opened;0..30;none|basic", 10), (f"{_NOT_EF};opened;0..30;premium", 0),
           ("*;unopened;0..30;*", 0), ("*;opened|unopened;31..60;premium", 25)]),
    _spec("Delivery fee by method, tier, region and order total", "shipping", "USD",
          "method tier region order_total",
          ("What delivery fee will I be charged?", "How much is the delivery fee for this order?"),
          [("standard;premium;domestic;*", 0), ("standard;basic;domestic;>=35", 0),
           ("standard;basic;domestic;<=34", 7.99), ("standard;none;domestic;>=50", 0),
           ("standard;none;domestic;<=49", 7.99), ("express;premium;domestic;*", 4.99),
           ("express;none|basic;domestic;*", 14.99), ("overnight;*;domestic;*", 24.99),
           ("*;*;international|remote;<=99", 29.99), ("*;*;international|remote;>=100", 19.99)]),
    _spec("Return authorization by order status, days since purchase, condition and receipt", "returns", "",
          "order_status days_since_purchase item_condition has_receipt",
          ("What is the return authorization decision?", "Will my return be authorized?"),
          [("cancelled;*;*;*", "no return needed"), ("confirmed|shipped|in_transit;*;*;*", "refuse delivery instead"),
           ("delivered;0..30;unopened|opened;yes", "return approved"),
           ("delivered;0..30;unopened|opened;no", "store credit only"),
           ("delivered;0..90;damaged|defective;*", "return approved"),
           ("delivered;>=31;unopened|opened;*", "return denied"),
           ("delivered;>=91;damaged|defective;*", "warranty claim")]),
    _spec("Price drop refund by days since purchase, sale status, tier and payment", "pricing", "%",
          "days_since_purchase is_sale_item tier payment",
          ("What percentage of the price drop will be refunded?",
           "How much of the price difference do I get back, in percent?"),
          [("0..14;no;premium;*", 100), ("0..14;no;none|basic;card|paypal", 100),
           ("0..14;no;none|basic;gift_card|store_credit", 50), ("15..30;no;premium;*", 50),
           ("15..30;no;none|basic;*", 0), (">=31;no;*;*", 0), ("*;yes;*;*", 0)]),
    _spec("Holiday gift return deadline by category, holiday season, tier and region", "returns", "days",
          "category holiday_season tier region",
          ("How many days do I have to return this gift?", "What is the gift return deadline, in days?"),
          [("groceries;*;*;*", 0), ("electronics|automotive;yes;*;domestic", 45),
           ("!electronics|automotive|groceries;yes;*;domestic", 60), ("!groceries;yes;*;international|remote", 75),
           ("electronics|automotive;no;premium;*", 30), ("electronics|automotive;no;none|basic;*", 15),
           ("!electronics|automotive|groceries;no;premium;*", 45),
           ("!electronics|automotive|groceries;no;none|basic;*", 30)]),
    _spec("Freight surcharge by package weight, region, method and tier", "shipping", "USD",
          "weight_lbs region method tier",
          ("What freight surcharge applies?", "How much freight surcharge will I pay?"),
          [("1..49;*;*;*", 0), ("50..99;domestic;standard;premium", 0), ("50..99;domestic;standard;none|basic", 25),
           ("50..99;domestic;express|overnight;*", 50), (">=100;domestic;*;premium", 40),
           (">=100;domestic;*;none|basic", 75), (">=50;international|remote;*;*", 120)]),
    _spec("Volume discount by quantity, category, tier and order total", "pricing", "%",
          "quantity category tier order_total",
          ("What volume discount percentage do I get?", "How much volume discount, in percent, applies?"),
          [("1..9;*;*;*", 0), ("10..99;office|books|groceries;*;<=999", 8),
           ("10..99;office|books|groceries;*;>=1000", 12), ("10..99;!office|books|groceries;premium;*", 7),
           ("10..99;!office|books|groceries;none|basic;*", 5), (">=100;*;premium;*", 20),
           (">=100;*;none|basic;*", 15)]),
    # ---- five clauses ----
    _spec("Refund percentage by category, condition, days since purchase, receipt and sale status", "returns", "%",
          "category item_condition days_since_purchase has_receipt is_sale_item",
          ("What percentage of the price will be refunded?",
           "How much of my purchase price do I get back, in percent?"),
          [("groceries;*;*;*;*", 0), ("!groceries;damaged|defective;0..90;*;*", 100),
           ("!groceries;unopened;0..30;yes;no", 100), ("!groceries;unopened;0..30;yes;yes", 80),
           ("!groceries;unopened;0..30;no;*", 50), ("!groceries;opened;0..30;yes;*", 85),
           ("!groceries;opened;0..30;no;*", 40), ("!groceries;unopened|opened;>=31;*;*", 0),
           ("!groceries;damaged|defective;>=91;*;*", 0)]),
    _spec("Cross border delivery charge by region, method, weight, order total and tier", "shipping", "USD",
          "region method weight_lbs order_total tier",
          ("What cross border delivery charge will I pay?", "How much is the cross border delivery charge?"),
          [("domestic;*;*;*;*", 0), ("international;standard|express;1..20;<=199;none|basic", 29.99),
           ("international;standard|express;1..20;<=199;premium", 19.99),
           ("international;standard|express;1..20;>=200;*", 0), ("international;standard|express;>=21;*;*", 59.99),
           ("international;overnight;*;*;*", 89.99), ("remote;*;1..20;*;premium", 9.99),
           ("remote;*;1..20;*;none|basic", 19.99), ("remote;*;>=21;*;*", 39.99)]),
    _spec("Order verification check by order total, quantity, payment, region and tier", "orders", "",
          "order_total quantity payment region tier",
          ("What verification check will my order go through?", "Which order verification applies to me?"),
          [("<=499;*;*;domestic;*", "auto approved"), ("<=499;*;*;international|remote;*", "address verification"),
           (">=500;<=20;card|paypal;domestic;premium", "auto approved"),
           (">=500;<=20;card|paypal;domestic;none|basic", "id verification"),
           (">=500;>=21;*;*;*", "manual review"), (">=500;<=20;gift_card|store_credit;*;*", "manual review"),
           (">=500;<=20;card|paypal;international|remote;*", "manual review")]),
    _spec("Assembly service fee by category, item price, tier, region and quantity", "pricing", "USD",
          "category item_price tier region quantity",
          ("How much does the assembly service cost?", "What will I pay for assembly?"),
          [("!furniture|home|office;*;*;domestic;*", 0), ("furniture;<=299;premium;domestic;1..4", 0),
           ("furniture;<=299;none|basic;domestic;1..4", 49), ("furniture;>=300;premium;domestic;1..4", 0),
           ("furniture;>=300;none|basic;domestic;1..4", 99), ("furniture;*;*;domestic;>=5", 199),
           ("home|office;*;premium;domestic;*", 0), ("home|office;*;none|basic;domestic;*", 39)]),
    _spec("Bonus points multiplier by tier, payment, category, holiday season and membership months",
          "membership", "points per dollar", "tier payment category holiday_season membership_months",
          ("How many bonus points per dollar will I earn?", "What is my bonus points multiplier per dollar?"),
          [("none;*;*;*;*", 1), ("basic;card|paypal;*;no;*", 2), ("basic;card|paypal;*;yes;*", 3),
           ("basic;gift_card|store_credit;*;*;*", 1), ("premium;*;electronics|home;*;<=23", 4),
           ("premium;*;electronics|home;*;>=24", 5), ("premium;*;!electronics|home;yes;*", 4),
           ("premium;*;!electronics|home;no;*", 3)]),
    _spec("Cancellation fee by order status, method, category, order total and tier", "orders", "USD",
          "order_status method category order_total tier",
          ("How much is the fee to cancel the order?", "What cancellation fee will I be charged?"),
          [("confirmed;*;*;*;*", 0), ("shipped|in_transit;standard;!furniture;*;premium", 0),
           ("shipped|in_transit;standard;!furniture;*;none|basic", 7.99),
           ("shipped|in_transit;express|overnight;!furniture;*;*", 14.99),
           ("shipped|in_transit;*;furniture;<=999;*", 49), ("shipped|in_transit;*;furniture;>=1000;*", 99)]),
    # ---- six clauses ----
    _spec("Exchange processing fee by category, condition, days, tier, return method and region", "returns", "USD",
          "category item_condition days_since_purchase tier return_method region",
          ("What exchange processing fee applies?", "How much will the exchange cost me to process?"),
          [("*;damaged|defective;*;*;*;*", 0), ("*;unopened|opened;0..30;premium;*;*", 0),
           ("*;unopened|opened;0..30;none|basic;in_store;*", 0),
           ("*;unopened|opened;0..30;none|basic;mail|pickup;domestic", 5.99),
           ("*;unopened|opened;0..30;none|basic;mail|pickup;international|remote", 19.99),
           ("electronics|jewelry;unopened|opened;31..60;*;*;*", 29.99),
           ("!electronics|jewelry;unopened|opened;31..60;*;*;*", 14.99)]),
    _spec("Shipping protection price by order total, region, method, category, tier and holiday season",
          "shipping", "USD", "order_total region method category tier holiday_season",
          ("How much does shipping protection cost?", "What is the price of shipping protection?"),
          [("<=99;*;*;*;*;no", 0.99), ("<=99;*;*;*;*;yes", 1.99),
           (">=100;domestic;*;!electronics|jewelry;*;*", 2.99), (">=100;domestic;*;electronics|jewelry;premium;*", 0),
           (">=100;domestic;*;electronics|jewelry;none|basic;*", 4.99),
           (">=100;international|remote;overnight;*;*;*", 14.99),
           (">=100;international|remote;standard|express;*;*;*", 9.99)]),
    _spec("Warranty extension offer by category, item price, tier, payment, days and sale status", "warranty", "",
          "category item_price tier payment days_since_purchase is_sale_item",
          ("What warranty extension offer do I qualify for?", "Which warranty extension can I get?"),
          [("!electronics|home|automotive;*;*;*;*;*", "not eligible"),
           ("electronics|home|automotive;*;*;*;>=31;*", "not eligible"),
           ("electronics|home|automotive;<=99;*;*;0..30;*", "not eligible"),
           ("electronics|home|automotive;>=100;premium;card;0..30;*", "free two year extension"),
           ("electronics|home|automotive;>=100;premium;!card;0..30;*", "free one year extension"),
           ("electronics|home|automotive;>=100;none|basic;*;0..30;no", "paid two year extension"),
           ("electronics|home|automotive;>=100;none|basic;*;0..30;yes", "paid one year extension")]),
    _spec("Competitor price match credit by category, sale status, days, tier, payment and membership months",
          "pricing", "%", "category is_sale_item days_since_purchase tier payment membership_months",
          ("What competitor price match credit, in percent of the difference, do I get?",
           "How much competitor price match credit applies, in percent?"),
          [("*;yes;*;*;*;*", 0), ("groceries;no;*;*;*;*", 0), ("!groceries;no;>=15;*;*;*", 0),
           ("!groceries;no;0..14;premium;*;>=12", 110), ("!groceries;no;0..14;premium;*;<=11", 100),
           ("!groceries;no;0..14;none|basic;card|paypal;*", 100),
           ("!groceries;no;0..14;none|basic;gift_card|store_credit;*", 90)]),
    _spec("Same day delivery fee by region, order total, weight, category, tier and quantity", "shipping", "USD",
          "region order_total weight_lbs category tier quantity",
          ("What is the same day delivery fee?", "How much does same day delivery cost?"),
          [("domestic;>=35;<=30;groceries;premium;*", 0), ("domestic;>=35;<=30;groceries;none|basic;*", 4.99),
           ("domestic;>=35;<=30;!groceries;premium;<=5", 0), ("domestic;>=35;<=30;!groceries;premium;>=6", 5.99),
           ("domestic;>=35;<=30;!groceries;none|basic;*", 9.99), ("domestic;<=34;<=30;*;*;*", 12.99),
           ("domestic;*;>=31;*;*;*", 29.99)]),
    # ---- seven clauses ----
    _spec("Return handling charge by category, condition, days, tier, return method, region and receipt",
          "returns", "USD", "category item_condition days_since_purchase tier return_method region has_receipt",
          ("What return handling charge will I pay?", "How much is the return handling charge?"),
          [("*;damaged|defective;0..90;*;*;*;*", 0), ("*;unopened|opened;0..30;premium;*;*;*", 0),
           ("*;unopened|opened;0..30;none|basic;in_store;*;yes", 0),
           ("*;unopened|opened;0..30;none|basic;in_store;*;no", 4.99),
           ("furniture;unopened|opened;0..30;none|basic;mail|pickup;domestic;*", 39.99),
           ("!furniture;unopened|opened;0..30;none|basic;mail|pickup;domestic;*", 5.99),
           ("*;unopened|opened;0..30;none|basic;mail|pickup;international|remote;*", 24.99)]),
    _spec("Order handling fee by category, quantity, weight, method, region, tier and holiday season",
          "orders", "USD", "category quantity weight_lbs method region tier holiday_season",
          ("What order handling fee applies?", "How much is the handling fee on my order?"),
          [("*;*;*;*;*;premium;*", 0), ("*;<=9;<=49;standard;domestic;none|basic;no", 0),
           ("*;<=9;<=49;standard;domestic;none|basic;yes", 2.99),
           ("*;<=9;<=49;express|overnight;domestic;none|basic;*", 4.99),
           ("*;>=10;<=49;*;domestic;none|basic;*", 9.99),
           ("furniture|home;*;>=50;*;domestic;none|basic;*", 49.99),
           ("!furniture|home;*;>=50;*;domestic;none|basic;*", 29.99),
           ("*;*;*;*;international|remote;none|basic;*", 19.99)]),
    _spec("Net payment terms by order total, quantity, payment, tier, membership months, region and category",
          "payments", "days", "order_total quantity payment tier membership_months region category",
          ("How many days of net payment terms do I get?", "What are my net payment terms, in days?"),
          [("<=999;*;*;*;*;*;*", 0), (">=1000;*;gift_card|store_credit;*;*;*;*", 0),
           (">=1000;*;card|paypal;*;*;international|remote;*", 0),
           (">=1000;<=49;card|paypal;premium;>=24;domestic;*", 60),
           (">=1000;<=49;card|paypal;premium;<=23;domestic;*", 30),
           (">=1000;<=49;card|paypal;none|basic;*;domestic;*", 15),
           (">=1000;>=50;card|paypal;*;*;domestic;office|books", 45),
           (">=1000;>=50;card|paypal;*;*;domestic;!office|books", 30)]),
    _spec("Loyalty bonus points by tier, months, payment, category, order total, holiday season and sale status",
          "membership", "points",
          "tier membership_months payment category order_total holiday_season is_sale_item",
          ("How many loyalty bonus points will I earn?", "How many bonus points do I get for this purchase?"),
          [("none;*;*;*;*;*;*", 0), ("basic|premium;*;gift_card|store_credit;*;*;*;*", 0),
           ("basic|premium;*;card|paypal;*;*;*;yes", 50), ("basic;*;card|paypal;*;<=199;*;no", 100),
           ("basic;*;card|paypal;*;>=200;*;no", 250), ("premium;<=11;card|paypal;*;*;*;no", 300),
           ("premium;>=12;card|paypal;electronics|jewelry;*;*;no", 800),
           ("premium;>=12;card|paypal;!electronics|jewelry;*;yes;no", 600),
           ("premium;>=12;card|paypal;!electronics|jewelry;*;no;no", 400)]),
    _spec("Replacement shipping speed by condition, order status, days, method, region, tier and category",
          "orders", "", "item_condition order_status days_since_purchase method region tier category",
          ("How fast will my replacement be shipped?", "What replacement shipping speed do I get?"),
          [("unopened|opened;*;*;*;*;*;*", "no replacement"),
           ("damaged|defective;confirmed|shipped|in_transit|cancelled;*;*;*;*;*", "no replacement"),
           ("damaged|defective;delivered;>=31;*;*;*;*", "no replacement"),
           ("damaged|defective;delivered;0..30;overnight;domestic;*;*", "overnight replacement"),
           ("damaged|defective;delivered;0..30;standard|express;domestic;premium;*", "overnight replacement"),
           ("damaged|defective;delivered;0..30;standard|express;domestic;none|basic;electronics|jewelry",
            "express replacement"),
           ("damaged|defective;delivered;0..30;standard|express;domestic;none|basic;!electronics|jewelry",
            "standard replacement"),
           ("damaged|defective;delivered;0..30;*;international|remote;*;*", "standard replacement")]),
)

RULES: tuple[Rule, ...] = tuple(Rule(rule_id=f"pol_{i + 1:03d}", **spec) for i, spec in enumerate(_RULE_SPECS))
NUM_RULES = len(RULES)
RULE_INDEX: dict[str, int] = {r.rule_id: i for i, r in enumerate(RULES)}
ANSWER_VOCAB: tuple[str, ...] = tuple(sorted({row.answer for r in RULES if not r.unit for row in r.rows}))


def _normalize(text: str) -> str:
    return "".join(str(text).lower().split())


def search_tokens(rule: Rule) -> list[str]:
    """Distinct search tokens: title, topic, field names and the categorical values its clauses name."""
    words = [rule.title, rule.topic, *rule.fields]
    for row in rule.rows:
        for c in row.conditions:
            if not FIELDS[c.field].numeric and not c.is_any():
                words.extend([c.value] if isinstance(c.value, str) else c.value)
    return list(dict.fromkeys(tokenize(" ".join(words))))


def _validate() -> None:
    """Raise ValueError if any rule breaks the KB invariants (exclusive, satisfiable rows; fitting shapes)."""
    if len(RULE_INDEX) != NUM_RULES:
        raise ValueError("duplicate rule ids")
    if len({_normalize(a) for a in ANSWER_VOCAB}) != len(ANSWER_VOCAB):
        raise ValueError("categorical answers collide after normalisation")
    token_sets = [set(search_tokens(r)) for r in RULES]
    for i, rule in enumerate(RULES):
        where = f"{rule.rule_id} {rule.title!r}"
        if rule.topic not in TOPICS or (rule.unit and rule.unit not in UNITS):
            raise ValueError(f"{where}: unknown topic or unit")
        if not 1 <= rule.num_clauses <= MAX_CLAUSES or len(set(rule.fields)) != rule.num_clauses:
            raise ValueError(f"{where}: needs 1..{MAX_CLAUSES} distinct fields")
        if not 1 <= len(rule.rows) <= MAX_ROWS or not rule.asks:
            raise ValueError(f"{where}: needs 1..{MAX_ROWS} rows and a question")
        for row in rule.rows:
            for c in row.conditions:
                f = FIELDS[c.field]
                ops = NUMERIC_OPS if f.numeric else CATEGORICAL_OPS
                named = [] if f.numeric else ([c.value] if isinstance(c.value, str) else list(c.value))
                if c.op not in ops or any(v not in f.values for v in named):
                    raise ValueError(f"{where}: bad clause {c}")
                support = c.support()
                if (not support) if not f.numeric else support[0] > support[1]:
                    raise ValueError(f"{where}: unsatisfiable clause {c}")
        for a in range(len(rule.rows)):
            for b in range(a + 1, len(rule.rows)):
                if not any(_disjoint(x, y) for x, y in zip(rule.rows[a].conditions, rule.rows[b].conditions)):
                    raise ValueError(f"{where}: rows {a} and {b} overlap")
        title = set(tokenize(rule.title))
        if len(tokenize(rule.title)) > QUERY_TOKENS or len(token_sets[i]) > KB_TOKENS:
            raise ValueError(f"{where}: title or search tokens too long")
        if any(title <= other for j, other in enumerate(token_sets) if j != i):
            raise ValueError(f"{where}: title is not distinctive")


def _disjoint(a: Condition, b: Condition) -> bool:
    sa, sb = a.support(), b.support()
    if isinstance(sa, frozenset):
        return not (sa & sb)
    return sa[1] < sb[0] or sb[1] < sa[0]


_validate()


def rules_with_clauses(n: int) -> list[int]:
    """Indices of the rules with exactly `n` clauses."""
    return [i for i, r in enumerate(RULES) if r.num_clauses == n]


def format_value(field: str, value: Any) -> str:
    """Context value as questions state it: integers for numeric fields, underscores as spaces otherwise."""
    if FIELDS[field].numeric:
        return str(int(value))
    return str(value).replace("_", " ")


def _pick(seq: tuple[Any, ...] | list[Any], rng: np.random.Generator) -> Any:
    return seq[int(rng.integers(len(seq)))]


def sample_context(rule_idx: int, row_idx: int, rng: np.random.Generator) -> dict[str, str | int]:
    """Concrete field values satisfying row `row_idx` of the rule (numeric: strictly inside the band when the
    band has interior points)."""
    context: dict[str, str | int] = {}
    for c in RULES[rule_idx].rows[row_idx].conditions:
        support = c.support()
        if isinstance(support, frozenset):
            context[c.field] = _pick([v for v in FIELDS[c.field].values if v in support], rng)
        else:
            lo, hi = support
            lo, hi = (lo + 1, hi - 1) if hi - lo >= 2 else (lo, hi)
            context[c.field] = int(rng.integers(lo, hi + 1))
    return context


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + (", and " if len(parts) > 2 else " and ") + parts[-1]


def question(rule_idx: int, row_idx: int, rng: np.random.Generator) -> tuple[str, dict[str, str | int]]:
    """A customer question asking what the rule's title answers, stating every condition value of a context
    that selects exactly row `row_idx`. Returns (text, context)."""
    rule = RULES[rule_idx]
    context = sample_context(rule_idx, row_idx, rng)
    order = rng.permutation(rule.num_clauses)
    parts = [_pick(FIELDS[rule.fields[k]].phrases, rng).format(v=format_value(rule.fields[k], context[rule.fields[k]]))
             for k in order]
    ctx = _join(parts)
    text = _pick(_QUESTION_FRAMES, rng).format(ctx=ctx, Ctx=ctx[0].upper() + ctx[1:], ask=_pick(rule.asks, rng))
    return text, context


def evaluate(rule_idx: int, context: dict[str, Any]) -> int:
    """Index of the row whose conditions `context` satisfies, or -1 if none does."""
    for r, row in enumerate(RULES[rule_idx].rows):
        if all(c.field in context and c.admits(context[c.field]) for c in row.conditions):
            return r
    return -1


def answer(rule_idx: int, row_idx: int) -> float | str:
    """The answer of one row."""
    return RULES[rule_idx].rows[row_idx].answer


def _format_number(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def format_answer(rule_idx: int, row_idx: int) -> str:
    """The answer of one row as text: "$7.99", "15%", "15 days", or the categorical answer."""
    rule, value = RULES[rule_idx], answer(rule_idx, row_idx)
    if not rule.unit:
        return str(value)
    if rule.unit == "USD":
        return "$" + _format_number(value)
    if rule.unit == "%":
        return _format_number(value) + "%"
    unit = _SINGULAR_UNITS[rule.unit] if value == 1 else rule.unit
    return f"{_format_number(value)} {unit}"


def _format_bound(field: str, x: int) -> str:
    return ("$" if FIELDS[field].unit == "USD" else "") + str(x)


def render_condition(c: Condition) -> str:
    """One clause as text, e.g. "quantity is 10 to 24", "tier is not premium", "region is any"."""
    if c.is_any():
        return f"{c.field} is any"
    if c.op == "between":
        return f"{c.field} is {_format_bound(c.field, c.value[0])} to {_format_bound(c.field, c.value[1])}"
    if c.op in ("in", "not_in"):
        names = ", ".join(format_value(c.field, v) for v in c.value)
        return f"{c.field} is {'not ' if c.op == 'not_in' else ''}one of {names}"
    words = {"eq": "is", "neq": "is not", "gt": "is more than", "gte": "is at least", "lt": "is less than",
             "lte": "is at most"}[c.op]
    shown = _format_bound(c.field, c.value) if FIELDS[c.field].numeric else format_value(c.field, c.value)
    return f"{c.field} {words} {shown}"


def render_rule(rule_idx: int, show_answer_table: bool = True) -> str:
    """Compact text of a rule: id, title, topic, condition fields and (optionally) the answer table."""
    rule = RULES[rule_idx]
    kind = f"numeric ({rule.unit})" if rule.unit else "categorical"
    lines = [f"{rule.rule_id} | {rule.title} | topic: {rule.topic}",
             (f"Answer: {kind}; depends on {', '.join(rule.fields)} "
              f"({rule.num_clauses} clause{'s' if rule.num_clauses > 1 else ''}).")]
    if show_answer_table:
        for r, row in enumerate(rule.rows):
            conds = " AND ".join(render_condition(c) for c in row.conditions)
            lines.append(f"Row {r + 1}: if {conds} => {format_answer(rule_idx, r)}")
        lines.append("If no row matches, this policy does not apply.")
    return "\n".join(lines)


def render_rule_answer(rule_idx: int, row_idx: int) -> str:
    """The simple verbatim form of one row: its conditions (clauses that admit anything left out) and answer."""
    rule = RULES[rule_idx]
    conds = " and ".join(render_condition(c) for c in rule.rows[row_idx].conditions if not c.is_any())
    when = f"when {conds}" if conds else "always"
    return f"{rule.rule_id} | {rule.title}: {when}, the answer is {format_answer(rule_idx, row_idx)}."


def parse_number(value: Any) -> float | None:
    """A finite number from a number or from the first number in a string ("15 days", "$1,299.50"); else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
    elif isinstance(value, str):
        m = _NUMBER_RE.search(value)
        if m is None:
            return None
        x = float(m.group().replace(",", ""))
    else:
        return None
    return x if math.isfinite(x) else None


def score_answer(rule_idx: int, row_idx: int, value: Any) -> float:
    """Answer score in [-1, 1]: numeric 2·(min/max)^4 − 1 on magnitudes (both 0 → 1, one 0 or unparseable →
    −1); categorical case- and space-insensitive exact match → 1, else −1."""
    truth = answer(rule_idx, row_idx)
    if isinstance(truth, str):
        return 1.0 if value is not None and _normalize(str(value)) == _normalize(truth) else -1.0
    x = parse_number(value)
    if x is None:
        return -1.0
    a, b = abs(x), abs(truth)
    if a == 0 and b == 0:
        return 1.0
    return 2.0 * (min(a, b) / max(a, b)) ** SCORE_BETA - 1.0


@functools.lru_cache(maxsize=1)
def _build_arrays() -> dict[str, np.ndarray]:
    nr = NUM_RULES
    counts = np.array([len(rules_with_clauses(c)) for c in range(MAX_CLAUSES + 1)], np.int32)
    by_clauses = np.full((MAX_CLAUSES + 1, int(counts.max())), -1, np.int32)
    for c in range(MAX_CLAUSES + 1):
        by_clauses[c, : counts[c]] = rules_with_clauses(c)
    out = {
        "num_clauses": np.array([r.num_clauses for r in RULES], np.int32),
        "numeric": np.array([bool(r.unit) for r in RULES], bool),
        "num_rows": np.array([len(r.rows) for r in RULES], np.int32),
        "answer_num": np.full((nr, MAX_ROWS), np.nan, np.float32),
        "answer_cat": np.full((nr, MAX_ROWS), -1, np.int32),
        "row_valid": np.zeros((nr, MAX_ROWS), bool),
        "tokens": np.stack([hash_text(" ".join(search_tokens(r)), KB_TOKENS) for r in RULES]),
        "topic": np.array([TOPICS.index(r.topic) for r in RULES], np.int32),
        "rules_by_clauses": by_clauses,
        "num_rules_by_clauses": counts,
    }
    vocab = {a: i for i, a in enumerate(ANSWER_VOCAB)}
    for i, rule in enumerate(RULES):
        out["row_valid"][i, : len(rule.rows)] = True
        for r, row in enumerate(rule.rows):
            if rule.unit:
                out["answer_num"][i, r] = row.answer
            else:
                out["answer_cat"][i, r] = vocab[row.answer]
    return out


def kb_arrays() -> dict[str, np.ndarray]:
    """Fixed-shape arrays of the KB (NR rules, MR = MAX_ROWS, TK = KB_TOKENS):
    num_clauses i32[NR], numeric bool[NR], num_rows i32[NR], answer_num f32[NR, MR] (NaN: categorical or
    padding), answer_cat i32[NR, MR] (index into ANSWER_VOCAB, -1: numeric or padding), row_valid
    bool[NR, MR], tokens i32[NR, TK] (search token hashes, 0 pads), topic i32[NR] (index into TOPICS),
    rules_by_clauses i32[MAX_CLAUSES + 1, MAXPER] (rule indices with c clauses in row c, -1 pads) and
    num_rules_by_clauses i32[MAX_CLAUSES + 1]."""
    return {k: v.copy() for k, v in _build_arrays().items()}


def policy_search_scores(tokens_kb: jnp.ndarray, query: jnp.ndarray) -> jnp.ndarray:
    """Per rule, the fraction of distinct nonzero query tokens found among the rule's tokens.
    tokens_kb [NR, TK] int32, query [QT] int32 -> [NR] float32 (0 for an empty query)."""
    q = jnp.asarray(query)
    qt = q.shape[-1]
    repeated = jnp.any((q[:, None] == q[None, :]) & (jnp.arange(qt)[None, :] < jnp.arange(qt)[:, None]), axis=1)
    distinct = (q != 0) & ~repeated                                              # [QT]
    present = jnp.any(jnp.asarray(tokens_kb)[:, None, :] == q[None, :, None], axis=-1)  # [NR, QT]
    hits = jnp.sum(present & distinct[None, :], axis=-1).astype(jnp.float32)
    n = jnp.sum(distinct).astype(jnp.float32)
    return jnp.where(n > 0, hits / jnp.maximum(n, 1.0), 0.0).astype(jnp.float32)
