"""Tool results as the JSON the agent reads (R§3 result shapes), rendered on the host from the ids a jitted
tool returned (`ToolResult`) and the episode's world after the turn.

All inputs are host (NumPy) pytrees of ONE episode: `catalog` from `host_tree(params.catalog)`, `world`
and `result` sliced out of a batch. Money is shown in dollars with cents exact, numbers with the shortest
decimal that is the float32 the jitted filters compare against, so what the agent reads is what the
verifier checks.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from ecomjax.catalog.schema import DISCRETE_ATTRS, MAX_VARIANTS, NUMERIC_ATTRS
from ecomjax.catalog.types import Catalog, Vocab
from ecomjax.text import ids
from ecomjax.user.text import date_text
from ecomjax.world import policy_kb
from ecomjax.world.errors import ToolError, message
from ecomjax.world.state import (
    CANCELLED, NO_DAY, ORDER_STATUSES, RETURN_FEES_CENTS, RETURN_KIND_EXCHANGE, RETURN_METHODS, RETURN_REASONS, World,
)
from ecomjax.world.tools import TOOL_NAMES

VERBATIM_POLICY_BELOW = 3           # POLICY at d < 3: policy.search shows the asked row's answer verbatim
_EPOCH = datetime.date(1970, 1, 1)


def host_tree(tree: Any) -> Any:
    """A pytree with every array on the host as NumPy (PRNG keys kept as they are)."""
    return jax.tree.map(lambda x: x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else np.asarray(x),
                        jax.device_get(tree))


def number(x: float) -> float | int:
    """The shortest decimal that round-trips to the float32 `x` (integers as int)."""
    f = np.float32(x)
    if float(f).is_integer():
        return int(f)
    return float(np.format_float_positional(f, unique=True, trim="-"))


def dollars(cents: int) -> float:
    return round(int(cents) / 100.0, 2)


@dataclass(frozen=True)
class RenderContext:
    """What the renderer needs to know about the episode besides its world: POLICY rows shown verbatim."""

    verbatim_rows: dict[int, int] = field(default_factory=dict)      # policy rule -> row


# ------------------------------------------------------------------------------------ world lookups

def _oos(world: World, p: int) -> bool:
    return bool(np.any(np.asarray(world.oos) == p))


def stock(world: World, catalog: Catalog, p: int) -> int:
    """Units of product p available in this episode (catalog stock unless out of stock in the episode)."""
    return 0 if _oos(world, p) else int(catalog.stock[p])


def _xvar_row(world: World, p: int) -> int:
    rows = np.nonzero(np.asarray(world.xvar_product) == p)[0]
    return int(rows[0]) if rows.size else -1


def variants(world: World, catalog: Catalog, p: int) -> list[tuple[int, str, int, int, int]]:
    """(slot, attribute, value id, unit price cents, stock) of every variant of p: catalog slots, then the
    episode's synthetic ones (which share the product's stock)."""
    base = stock(world, catalog, p)
    out = []
    key = int(catalog.var_key[p])
    for j in range(MAX_VARIANTS):
        v = int(catalog.var_value[p, j])
        if v >= 0 and 0 <= key < len(DISCRETE_ATTRS):
            price = max(1, int(catalog.price_cents[p]) + int(catalog.var_price_delta[p, j]))
            units = min(int(catalog.var_stock[p, j]), base) if base > 0 else 0
            out.append((j, DISCRETE_ATTRS[key], v, price, units))
    row = _xvar_row(world, p)
    if row >= 0:
        xkey = int(world.xvar_key[row])
        for j in range(np.asarray(world.xvar_value).shape[1]):
            v = int(world.xvar_value[row, j])
            if v >= 0 and 0 <= xkey < len(DISCRETE_ATTRS):
                price = max(1, int(catalog.price_cents[p]) + int(world.xvar_price_delta[row, j]))
                out.append((MAX_VARIANTS + j, DISCRETE_ATTRS[xkey], v, price, base))
    return out


def unit_price(world: World, catalog: Catalog, p: int, v: int) -> int:
    """Price in cents of (p, variant slot v); v = -1 is the product itself."""
    if v < 0:
        return int(catalog.price_cents[p])
    for slot, _, _, price, _ in variants(world, catalog, p):
        if slot == v:
            return price
    return int(catalog.price_cents[p])


def _variant_ref(vocab: Vocab, p: int, v: int) -> str | None:
    return None if v < 0 else ids.variant_id(vocab.product_id(p), v)


# ------------------------------------------------------------------------------------ views

def product_card(p: int, world: World, catalog: Catalog, vocab: Vocab) -> dict:
    """The compact card search results and visit history show."""
    card = {
        "product_id": vocab.product_id(p), "title": vocab.title(p),
        "price": dollars(catalog.price_cents[p]), "rating": number(catalog.rating[p]),
        "rating_count": int(catalog.rating_count[p]), "ship_days": int(catalog.ship_days[p]),
        "stock": stock(world, catalog, p), "category": vocab.category_name(int(catalog.category[p])),
        "brand": vocab.brands[int(catalog.brand[p])], "store": vocab.stores[int(catalog.store[p])],
    }
    for a, name in enumerate(DISCRETE_ATTRS):
        v = int(catalog.attr[p, a])
        if v >= 0:
            card[name] = vocab.value_name(name, v)
    for n, name in enumerate(NUMERIC_ATTRS):
        x = float(catalog.num[p, n])
        if np.isfinite(x):
            card[name] = number(x)
    return card


def variant_list(p: int, world: World, catalog: Catalog, vocab: Vocab) -> list[dict]:
    return [{"variant_id": ids.variant_id(vocab.product_id(p), slot), attr: vocab.value_name(attr, v),
             "price": dollars(price), "stock": units}
            for slot, attr, v, price, units in variants(world, catalog, p)]


def cart_view(world: World, catalog: Catalog, vocab: Vocab) -> dict:
    lines, items, total = [], 0, 0
    for slot in range(np.asarray(world.cart_product).shape[0]):
        p = int(world.cart_product[slot])
        if p < 0:
            continue
        v, q = int(world.cart_variant[slot]), int(world.cart_qty[slot])
        price = unit_price(world, catalog, p, v)
        lines.append({"line_id": ids.cart_line_id(slot), "product_id": vocab.product_id(p),
                      "title": vocab.title(p), "variant_id": _variant_ref(vocab, p, v), "qty": q,
                      "unit_price": dollars(price)})
        items += q
        total += q * price
    return {"lines": lines, "total_items": items, "total_price": dollars(total)}


def _order_lines(o: int, world: World, vocab: Vocab) -> list[dict]:
    out = []
    for j in range(np.asarray(world.line_product).shape[1]):
        p = int(world.line_product[o, j])
        if p >= 0:
            v = int(world.line_variant[o, j])
            out.append({"line_id": ids.order_line_id(o, j), "product_id": vocab.product_id(p),
                        "title": vocab.title(p), "variant_id": _variant_ref(vocab, p, v),
                        "qty": int(world.line_qty[o, j]), "unit_price": dollars(world.line_price[o, j])})
    return out


def _day(day: int) -> str | None:
    return None if int(day) == NO_DAY else date_text(int(day))


def order_summary(o: int, world: World, vocab: Vocab) -> dict:
    lines = _order_lines(o, world, vocab)
    return {"order_id": ids.order_id(o), "order_date": _day(world.order_day[o]),
            "status": ORDER_STATUSES[int(world.order_status[o])], "item_count": sum(x["qty"] for x in lines),
            "items": [{"product_title": x["title"], "qty": x["qty"]} for x in lines]}


def order_detail(o: int, world: World, vocab: Vocab) -> dict:
    return {"order_id": ids.order_id(o), "status": ORDER_STATUSES[int(world.order_status[o])],
            "order_date": _day(world.order_day[o]), "eta_date": _day(world.order_eta[o]),
            "tracking_number": ids.tracking_id(world.order_tracking[o]),
            "shipping_address_id": ids.address_id(world.order_address[o]),
            "payment_method_id": ids.payment_id(world.order_payment[o]), "lines": _order_lines(o, world, vocab)}


def _eligibility(call_args: dict, result, world: World, catalog: Catalog, vocab: Vocab) -> dict:
    o, j = int(call_args["order"]), int(call_args["line"])
    p = int(world.line_product[o, j])
    out = {"order_id": ids.order_id(o), "line_id": ids.order_line_id(o, j), "product_title": vocab.title(p),
           "eligible": bool(result.eligible), "window_days": int(result.window),
           "days_since_purchase": int(result.days_since), "reasons": list(RETURN_REASONS),
           "methods": list(RETURN_METHODS),
           "fees": {m: dollars(c) for m, c in zip(RETURN_METHODS, RETURN_FEES_CENTS)}}
    if not out["eligible"]:
        if int(world.order_status[o]) == CANCELLED:
            out["ineligible_reason"] = "the order was cancelled"
        elif int(result.window) == 0:
            out["ineligible_reason"] = "this category cannot be returned"
        else:
            out["ineligible_reason"] = f"outside the {int(result.window)}-day return window"
    return out


def _return_record(slot: int, world: World, vocab: Vocab, fee: int) -> dict:
    o, j = int(world.ret_order[slot]), int(world.ret_line[slot])
    base = {"order_id": ids.order_id(o), "line_id": ids.order_line_id(o, j)}
    if int(world.ret_kind[slot]) == RETURN_KIND_EXCHANGE:
        old, new = int(world.line_product[o, j]), int(world.ret_new_product[slot])
        return {"exchange_id": ids.return_id(slot, exchange=True), "return_id": ids.return_id(slot), **base,
                "old_product_id": vocab.product_id(old), "old_product_title": vocab.title(old),
                "new_product_id": vocab.product_id(new), "new_product_title": vocab.title(new),
                "new_variant_id": _variant_ref(vocab, new, int(world.ret_new_variant[slot])),
                "status": "EXCHANGE_INITIATED"}
    return {"return_id": ids.return_id(slot), **base, "reason_code": RETURN_REASONS[int(world.ret_reason[slot])],
            "method": RETURN_METHODS[int(world.ret_method[slot])], "status": "INITIATED", "fee": dollars(fee)}


def policy_snippet(rule: int, ctx: RenderContext) -> dict:
    r = policy_kb.RULES[rule]
    text = (policy_kb.render_rule_answer(rule, ctx.verbatim_rows[rule]) if rule in ctx.verbatim_rows
            else policy_kb.render_rule(rule))
    return {"snippet_id": r.rule_id, "title": r.title, "category": r.topic, "text": text}


def _today(world: World) -> dict:
    day = _EPOCH + datetime.timedelta(days=int(world.today))
    return {"date": day.isoformat(), "day_of_week": day.strftime("%A"), "time": "12:00:00"}


def render_result(tool: int, error: int, result, call_args: dict, world: World, catalog: Catalog, vocab: Vocab,
                  ctx: RenderContext) -> Any:
    """The JSON value of one call's result (`{"error": ...}` on an error). `result` is the call's
    `ToolResult` row; `call_args` its decoded integer arguments (order, line)."""
    if error != ToolError.OK:
        return {"error": message(error)}
    name = TOOL_NAMES[tool]
    listed = [int(i) for i in np.asarray(result.ids) if i >= 0]
    if name in ("catalog.search", "user.get_visit_history"):
        return [product_card(p, world, catalog, vocab) for p in listed]
    if name == "catalog.rerank":
        return [vocab.product_id(p) for p in listed]
    if name == "catalog.get_product":
        p = listed[0]
        return {**product_card(p, world, catalog, vocab), "description": vocab.description(p),
                "variants": variant_list(p, world, catalog, vocab)}
    if name == "catalog.get_variants":
        return variant_list(listed[0], world, catalog, vocab)
    if name.startswith("cart."):
        view = cart_view(world, catalog, vocab)
        ref = int(result.ref)
        return {"line_id": ids.cart_line_id(ref), **view} if name == "cart.add" else view
    if name == "order.list":
        return [order_summary(o, world, vocab) for o in listed]
    if name in ("order.get_status", "order.checkout"):
        return order_detail(int(result.ref), world, vocab)
    if name == "return.check_eligibility":
        return _eligibility(call_args, result, world, catalog, vocab)
    if name in ("return.initiate", "return.exchange"):
        return _return_record(int(result.ref), world, vocab, int(result.fee))
    if name == "policy.search":
        return [policy_snippet(int(r), ctx) for r in np.asarray(result.policy) if r >= 0]
    if name == "datetime.now":
        return _today(world)
    raise ValueError(f"no renderer for tool {name!r}")


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
