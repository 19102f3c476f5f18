"""The τ-bench retail domain as an ecomjax catalog and order history (`load_tau_retail(path)`).

`path` is a folder with τ-bench's `products.json` (required), `orders.json` and `users.json` (optional):
50 product types with 591 variants, 1,000 orders and 500 users in the published data (MIT, Sierra).

Products. **Every τ variant (`item_id`) is one ecomjax product**; its product type is its leaf category.
The alternative, a product-type product with the variants in its variant slots, cannot work honestly:
types have 5–20 variants that differ in up to five options at once, while a catalog product holds at
most `MAX_VARIANTS` (4) variants differing in one attribute (`var_key`); and with one product per leaf,
PD/SUB pools, substitutes within a category and the "<type> by <brand>" descriptions CART, RETURN and
STATUS use would all degenerate to a single candidate. As products, every item id is searchable,
recommendable, orderable and returnable, carries its exact option values, and order lines (which name
item ids) map onto products one to one. The catalog has no variant slots (`var_key = -1`), so CART's
variant axis `p_var(d)` has no effect here: naming the product already names the exact variant.

- price -> int cents (`parse_price_cents`); `available` -> stock: unavailable 0, available a stable-hash
  count in [STOCK_MIN, STOCK_MAX];
- options: keys normalised as the Amazon loader does (`normalise_key`); `color`, `size`, `material` (and
  any other `DISCRETE_ATTRS` key) become discrete attributes, with unseen values appended to
  `vocab.attr_values`; `screen size` becomes `screen_size_inches` (its first number); a `brand` option is
  the product's brand. Every other key is carried, not dropped: all options stay verbatim in
  `vocab.options[i]`, in the title and description (so lexical search finds "v-neck" or "16GB"), and the
  carried keys are counted in `vocab.source["carried_option_keys"]`;
- category path `top/mid/<snake-cased type name>` from `TYPE_TAXONOMY` (so return windows by top category
  apply: electronics 15 days, everything else 30), `general/other/<type>` for a type not in the table;
  no τ type is a denied category;
- title "<brand> <type> (<option values>)", description "<type> by <brand>: <key> <value>; ...".

Derived from the ids, because the data lacks them (SHA-256 of the id, never Python's `hash()`):
brand (each type gets `min(BRANDS_PER_TYPE, variants)` distinct names from `BRAND_POOL`, each variant
one of them; τ's own `brand` option wins where present), rating in [RATING_MIN, RATING_MAX] (one
decimal), rating count, ship days (`synth_ship_stock`), the stock count of an available variant, and an
order's age in days. There is one store (`STORE`). Policies come from ecomjax's own policy KB, as for
every catalog.

Orders and users become `catalog.history` (an `OrderHistory`, strings in `vocab.history`), the order
histories the world draws from (`world.orders.draw_history_orders`): one line per distinct (item, price
paid) with repeated entries as its quantity; statuses mapped by `STATUS_MAP` (pending -> CONFIRMED,
processed -> SHIPPED, delivered -> DELIVERED, cancelled -> CANCELLED); the first tracking id kept in full
in `vocab.history["tracking_ids"]` and as its last 9 digits in `history.tracking`; address 0 when the
order ships to the customer's address on file; payment 0 when paid with the customer's first method.
Customer profiles (name, email, address, payment method ids, order ids) are `vocab.history["users"]`.
Without orders.json the catalog has no history (orders are synthesised); without users.json order owners
are unknown (`history.user = -1`) and the world draws orders without a customer.

Bad or missing fields are counted by reason in `vocab.source["bad"]` and reported in one warning; the
record they make unusable is skipped (a variant without a valid item id, price or `available`; an order
line naming an unknown item or without a valid price; an order without id, known status or any line),
a field that is only informative is dropped (an option without a value, a malformed tracking id). A
folder whose every variant is bad raises ValueError.
"""

import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecomjax.catalog.amazon import (
    INDEX_TOKENS, ValueTable, normalise_key, normalise_value, parse_price_cents, snake_case, synth_ship_stock,
)
from ecomjax.catalog.history import MAX_AGE_DAYS, OrderHistory, history_from_arrays
from ecomjax.catalog.lexical import DEFAULT_DIM, embed_hashes_np, hash_text
from ecomjax.catalog.schema import DISCRETE_ATTRS, MAX_VARIANTS, NUMERIC_ATTRS, ORDER_STATUSES
from ecomjax.catalog.types import Catalog, Vocab, assemble, category_tree, default_attr_values

PRODUCTS_FILE, ORDERS_FILE, USERS_FILE = "products.json", "orders.json", "users.json"
STORE = "tau-retail"
BRAND_KEY = "brand"
BRANDS_PER_TYPE = 4
_SYLLABLES = ("ar", "bel", "cor", "dan", "el", "fen", "gal", "hol", "is", "jor", "kel", "lum", "mar", "nor",
              "ost", "pel")
BRAND_POOL: tuple[str, ...] = tuple((a + b).capitalize() for a in _SYLLABLES for b in _SYLLABLES if a != b)
RATING_MIN, RATING_MAX = 3.0, 5.0
RATING_COUNT_MAX = 500
STOCK_MIN, STOCK_MAX = 1, 40
TRACKING_DIGITS = 9
ADDRESS_ON_FILE, ADDRESS_OTHER = 0, 1
PAYMENT_FIRST, PAYMENT_OTHER = 0, 1

STATUS_MAP: dict[str, str] = {
    "pending": "CONFIRMED", "pending (item modified)": "CONFIRMED", "processed": "SHIPPED",
    "delivered": "DELIVERED", "return requested": "DELIVERED", "exchange requested": "DELIVERED",
    "cancelled": "CANCELLED",
}
STATUS_IDS: dict[str, int] = {k: ORDER_STATUSES.index(v) for k, v in STATUS_MAP.items()}
DEFAULT_TAXONOMY = "general/other"
TYPE_TAXONOMY: dict[str, str] = {
    "laptop": "electronics/computers", "tablet": "electronics/computers", "e-reader": "electronics/computers",
    "mechanical keyboard": "electronics/computers", "gaming mouse": "electronics/computers",
    "smartphone": "electronics/phones", "portable charger": "electronics/phones",
    "smart watch": "electronics/wearables", "bluetooth speaker": "electronics/audio",
    "wireless earbuds": "electronics/audio", "headphones": "electronics/audio",
    "action camera": "electronics/cameras", "digital camera": "electronics/cameras",
    "indoor security camera": "electronics/smart_home", "smart thermostat": "electronics/smart_home",
    "led light bulb": "electronics/smart_home",
    "t-shirt": "clothing/tops", "fleece jacket": "clothing/tops", "running shoes": "clothing/shoes",
    "hiking boots": "clothing/shoes", "sneakers": "clothing/shoes", "sunglasses": "clothing/accessories",
    "wristwatch": "clothing/accessories", "backpack": "clothing/accessories",
    "coffee maker": "home/kitchen", "espresso machine": "home/kitchen", "electric kettle": "home/kitchen",
    "tea kettle": "home/kitchen", "water bottle": "home/kitchen", "air purifier": "home/appliances",
    "vacuum cleaner": "home/appliances", "desk lamp": "home/decor", "wall clock": "home/decor",
    "pet bed": "home/pets", "garden hose": "home/garden", "patio umbrella": "home/garden", "grill": "home/garden",
    "office chair": "furniture/office", "bookshelf": "furniture/living",
    "notebook": "office/supplies",
    "yoga mat": "sports/fitness", "dumbbell set": "sports/fitness", "cycling helmet": "sports/cycling",
    "bicycle": "sports/cycling", "skateboard": "sports/skating", "luggage set": "travel/luggage",
    "makeup kit": "beauty/makeup", "perfume": "beauty/fragrance", "electric toothbrush": "beauty/personal_care",
    "jigsaw puzzle": "toys/puzzles",
}


# ----------------------------------------------------------------------------- stable derivations

def stable_unit(text: str) -> float:
    """Uniform in (0, 1) from the first 53 bits of SHA-256(text); the same in every process."""
    bits = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 11
    return (bits + 0.5) / float(1 << 53)


def stable_index(text: str, n: int) -> int:
    """An index in [0, n) from `stable_unit(text)`."""
    return min(n - 1, int(stable_unit(text) * n))


def type_brands(type_id: str, n: int) -> list[str]:
    """n distinct brand names of one product type: BRAND_POOL ranked by SHA-256 of (type id, name)."""
    ranked = sorted(BRAND_POOL, key=lambda name: hashlib.sha256(f"{type_id}/{name}".encode()).digest())
    return ranked[:n]


def derived_rating(item_id: str) -> tuple[float, int]:
    """(rating in [RATING_MIN, RATING_MAX] with one decimal, rating count in [0, RATING_COUNT_MAX])."""
    rating = round(RATING_MIN + (RATING_MAX - RATING_MIN) * stable_unit(item_id + "/rating"), 1)
    return rating, stable_index(item_id + "/rating_count", RATING_COUNT_MAX + 1)


def derived_stock(item_id: str, available: bool) -> int:
    """0 when unavailable, else a count in [STOCK_MIN, STOCK_MAX]."""
    return STOCK_MIN + stable_index(item_id + "/stock", STOCK_MAX - STOCK_MIN + 1) if available else 0


def order_age(order_id: str) -> int:
    """Days between placing the order and the episode's today, in [0, MAX_AGE_DAYS]."""
    return stable_index(order_id + "/age", MAX_AGE_DAYS + 1)


def tracking_number(tracking_id: str) -> int:
    """The world's int32 tracking number: the last 9 digits of a numeric id, else a stable 9-digit hash."""
    if tracking_id.isdigit():
        return int(tracking_id[-TRACKING_DIGITS:])
    return stable_index(tracking_id + "/tracking", 10 ** TRACKING_DIGITS)


def category_of(type_name: str) -> str:
    """`top/mid/leaf` path of a product type (leaf = snake-cased name)."""
    parent = TYPE_TAXONOMY.get(type_name.strip().lower(), DEFAULT_TAXONOMY)
    return f"{parent}/{snake_case(type_name)}"


# ----------------------------------------------------------------------------- reading

@dataclass
class _Report:
    """Bad-field counts by reason, with the first few examples."""

    bad: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def count(self, reason: str, where: str, n: int = 1) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + n
        if len(self.examples) < 5:
            self.examples.append(f"{where} ({reason})")


def _read_entries(path: Path) -> list[tuple[str, Any]]:
    """(key, record) pairs of a τ JSON file: an object keyed by id, or an array (keys are positions)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"tau-retail file {str(path)!r}: not valid JSON ({err})") from None
    if isinstance(data, dict):
        return list(data.items())
    if isinstance(data, list):
        return [(str(i), row) for i, row in enumerate(data)]
    raise ValueError(f"tau-retail file {str(path)!r}: expected a JSON object or array, got {type(data).__name__}")


def _text(value: Any) -> str:
    """A scalar as stripped text ("" for None, containers and booleans)."""
    if value is None or isinstance(value, (bool, dict, list)):
        return ""
    return str(value).strip()


def _field(record: dict, name: str, kind: type) -> Any:
    """record[name] when it is a `kind` (dict or list), else an empty one."""
    value = record.get(name)
    return value if isinstance(value, kind) else kind()


@dataclass
class _Item:
    item_id: str
    type_id: str
    type_name: str
    cents: int
    available: bool
    options: dict[str, str]


def _parse_products(entries: list[tuple[str, Any]], report: _Report) -> list[_Item]:
    items: list[_Item] = []
    seen: set[str] = set()
    for key, product in entries:
        if not isinstance(product, dict) or not isinstance(product.get("variants"), dict):
            report.count("product", f"product {key}")
            continue
        type_id = _text(product.get("product_id")) or key
        type_name = _text(product.get("name"))
        if not snake_case(type_name):
            report.count("name", f"product {key}")
            continue
        for vkey, variant in product["variants"].items():
            where = f"product {key} variant {vkey}"
            item_id = _text(variant.get("item_id")) if isinstance(variant, dict) else ""
            if not item_id:
                report.count("item_id", where)
                continue
            if item_id in seen:
                report.count("duplicate_item_id", where)
                continue
            cents = parse_price_cents(variant.get("price"))
            if cents is None:
                report.count("price", where)
                continue
            if not isinstance(variant.get("available"), bool):
                report.count("available", where)
                continue
            seen.add(item_id)
            items.append(_Item(item_id, type_id, type_name, cents, variant["available"],
                               _parse_options(variant.get("options"), report, where)))
    return items


def _parse_options(options: Any, report: _Report, where: str) -> dict[str, str]:
    """Options as {original key: value text}; a non-object counts as "options", a value-less option as
    "option_value" (dropped)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        report.count("options", where)
        return {}
    out: dict[str, str] = {}
    for key, value in options.items():
        text = _text(value)
        if not _text(key) or not text:
            report.count("option_value", where)
            continue
        out[_text(key)] = text
    return out


# ----------------------------------------------------------------------------- products -> catalog columns

@dataclass
class _Columns:
    """Host columns of the loaded products, in item order."""

    attr: list[list[int]]
    num: list[list[float]]
    brand: list[int]
    titles: list[str]
    descriptions: list[str]
    carried: dict[str, int]
    attr_values: dict[str, list[str]]
    brands: list[str]


def _columns(items: list[_Item]) -> _Columns:
    attr_tables = {a: ValueTable(v) for a, v in default_attr_values().items()}
    brand_table = ValueTable([])
    per_type: dict[str, int] = {}
    for item in items:
        per_type[item.type_id] = per_type.get(item.type_id, 0) + 1
    names = {t: type_brands(t, min(BRANDS_PER_TYPE, n)) for t, n in per_type.items()}
    cols = _Columns([], [], [], [], [], {}, {}, [])
    for item in items:
        attrs = [-1] * len(DISCRETE_ATTRS)
        nums = [math.nan] * len(NUMERIC_ATTRS)
        brand = ""
        for key, value in item.options.items():
            name = normalise_key(key)
            if name == BRAND_KEY:
                brand = brand or value
            elif name in DISCRETE_ATTRS and attrs[DISCRETE_ATTRS.index(name)] < 0:
                attrs[DISCRETE_ATTRS.index(name)] = attr_tables[name].id(str(normalise_value(name, value)))
            elif name in NUMERIC_ATTRS and math.isnan(nums[NUMERIC_ATTRS.index(name)]):
                number = normalise_value(name, value)
                nums[NUMERIC_ATTRS.index(name)] = number if math.isfinite(number) and number >= 0 else math.nan
            else:
                cols.carried[name] = cols.carried.get(name, 0) + 1
        if not brand:
            options = names[item.type_id]
            brand = options[stable_index(item.item_id + "/brand", len(options))]
        cols.attr.append(attrs)
        cols.num.append(nums)
        cols.brand.append(brand_table.id(brand))
        values = ", ".join(item.options.values())
        cols.titles.append(f"{brand} {item.type_name}" + (f" ({values})" if values else ""))
        details = "; ".join(f"{k} {v}" for k, v in item.options.items())
        cols.descriptions.append(f"{item.type_name} by {brand}" + (f": {details}." if details else "."))
    cols.attr_values = {a: t.values for a, t in attr_tables.items()}
    cols.brands = brand_table.values
    cols.carried = dict(sorted(cols.carried.items()))
    return cols


# ----------------------------------------------------------------------------- orders and users

def _parse_users(entries: list[tuple[str, Any]], report: _Report) -> tuple[list[str], list[dict]]:
    """(user ids, profiles): name, email, address and payment method ids of every well-formed user."""
    ids, profiles = [], []
    for key, user in entries:
        if not isinstance(user, dict):
            report.count("user", f"user {key}")
            continue
        name = _field(user, "name", dict)
        full_name = " ".join(p for p in (_text(name.get("first_name")), _text(name.get("last_name"))) if p)
        ids.append(key)
        profiles.append({
            "user_id": key, "name": full_name, "email": _text(user.get("email")),
            "address": _field(user, "address", dict),
            "payment_methods": [str(m) for m in _field(user, "payment_methods", dict)],
            "orders": [_text(o) for o in _field(user, "orders", list)],
        })
    return ids, profiles


def _first_tracking(order: dict, report: _Report, where: str) -> str | None:
    fulfillments = order.get("fulfillments", [])
    if not isinstance(fulfillments, list):
        report.count("order_tracking", where)
        return None
    for fulfillment in fulfillments:
        ids = fulfillment.get("tracking_id") if isinstance(fulfillment, dict) else None
        texts = [_text(t) for t in ids] if isinstance(ids, list) else []
        if not texts or not all(texts):
            report.count("order_tracking", where)
            return None
        return texts[0]
    return None


def _order_lines(order: dict, index: dict[str, int], report: _Report, where: str) -> list[tuple[int, int, int]]:
    """(product, qty, unit cents) per distinct (item, price paid), in first-seen order."""
    items = order.get("items")
    if not isinstance(items, list):
        report.count("order_item", where)
        return []
    lines: dict[tuple[int, int], int] = {}
    for item in items:
        product = index.get(_text(item.get("item_id")), -1) if isinstance(item, dict) else -1
        if product < 0:
            report.count("order_item", where)
            continue
        cents = parse_price_cents(item.get("price"))
        if cents is None:
            report.count("order_price", where)
            continue
        lines[(product, cents)] = lines.get((product, cents), 0) + 1
    return [(p, q, c) for (p, c), q in lines.items()]


def _payment(order: dict, profile: dict | None, report: _Report, where: str) -> tuple[int, str | None]:
    history = order.get("payment_history")
    first = history[0] if isinstance(history, list) and history and isinstance(history[0], dict) else None
    method = _text(first.get("payment_method_id")) if first else ""
    if not method:
        report.count("order_payment", where)
        return PAYMENT_FIRST, None
    methods = profile["payment_methods"] if profile else []
    return (PAYMENT_FIRST if methods[:1] == [method] else PAYMENT_OTHER), method


def _order_row(key: str, order: Any, seen: set[str], index: dict[str, int], user_index: dict[str, int],
               profiles: list[dict], report: _Report) -> dict | None:
    """One order as a history row, or None (counted) when it has no id, a repeated id, no known status or no
    usable line. `user_index` empty: no users file, owners unknown (not counted)."""
    where = f"order {key}"
    order_id = _text(order.get("order_id")) if isinstance(order, dict) else ""
    if not order_id or order_id in seen:
        report.count("duplicate_order_id" if order_id else "order", where)
        return None
    status = STATUS_IDS.get(_text(order.get("status")).lower(), -1)
    if status < 0:
        report.count("order_status", where)
        return None
    lines = _order_lines(order, index, report, where)
    if not lines:
        report.count("order_empty", where)
        return None
    user = user_index.get(_text(order.get("user_id")), -1)
    if user < 0 and user_index:
        report.count("order_user", where)
    profile = profiles[user] if user >= 0 else None
    elsewhere = profile is not None and order.get("address") != profile["address"]
    payment, method = _payment(order, profile, report, where)
    return {"order_id": order_id, "status": status, "user": user, "lines": lines,
            "tracking": _first_tracking(order, report, where),
            "address": ADDRESS_OTHER if elsewhere else ADDRESS_ON_FILE, "payment": payment, "method": method}


def _build_history(entries: list[tuple[str, Any]], index: dict[str, int], user_ids: list[str],
                   profiles: list[dict], report: _Report) -> tuple[OrderHistory | None, dict]:
    """The OrderHistory of every usable order and its strings (Vocab.history)."""
    user_index = {u: i for i, u in enumerate(user_ids)}
    rows: list[dict] = []
    seen: set[str] = set()
    for key, order in entries:
        row = _order_row(key, order, seen, index, user_index, profiles, report)
        if row is not None:
            seen.add(row["order_id"])
            rows.append(row)
    for user_id, profile in zip(user_ids, profiles):
        missing = sum(o not in seen for o in profile["orders"])
        if missing:
            report.count("user_order", f"user {user_id}", missing)
    strings = {"order_ids": [r["order_id"] for r in rows], "tracking_ids": [r["tracking"] for r in rows],
               "payment_method_ids": [r["method"] for r in rows], "user_ids": user_ids, "users": profiles}
    return (history_from_arrays(_history_arrays(rows)) if rows else None), strings


def _history_arrays(rows: list[dict]) -> dict[str, np.ndarray]:
    h, width = len(rows), max(len(r["lines"]) for r in rows)
    product = np.full((h, width), -1, np.int32)
    qty = np.zeros((h, width), np.int32)
    price = np.zeros((h, width), np.int32)
    for i, r in enumerate(rows):
        for j, (p, q, c) in enumerate(r["lines"]):
            product[i, j], qty[i, j], price[i, j] = p, q, c
    column = lambda name: np.asarray([r[name] for r in rows], np.int32)  # noqa: E731
    return {
        "status": column("status"), "age": np.asarray([order_age(r["order_id"]) for r in rows], np.int32),
        "tracking": np.asarray([-1 if r["tracking"] is None else tracking_number(r["tracking"]) for r in rows],
                               np.int32),
        "address": column("address"), "payment": column("payment"), "user": column("user"),
        "product": product, "variant": np.full((h, width), -1, np.int32), "qty": qty, "price": price,
    }


# ----------------------------------------------------------------------------- loader

def load_tau_retail(path: str | Path, *, emb_dim: int = DEFAULT_DIM) -> tuple[Catalog, Vocab]:
    """Catalog (with `history`) and Vocab from a τ-bench retail data folder (see the module docstring).

    Raises FileNotFoundError for a missing folder or products.json, ValueError for a file that is not a
    JSON object/array, a bad argument, or a folder whose every variant is bad.
    """
    path = Path(path)
    if isinstance(emb_dim, bool) or not isinstance(emb_dim, int) or emb_dim < 1:
        raise ValueError(f"emb_dim must be a positive int, got {emb_dim!r}")
    if not path.is_dir():
        raise FileNotFoundError(f"tau-retail folder {str(path)!r} does not exist or is not a folder")
    if not (path / PRODUCTS_FILE).is_file():
        raise FileNotFoundError(f"tau-retail folder {str(path)!r} has no {PRODUCTS_FILE}")
    report = _Report()
    product_entries = _read_entries(path / PRODUCTS_FILE)
    items = _parse_products(product_entries, report)
    if not items:
        raise ValueError(f"tau-retail folder {str(path)!r}: every variant is bad ({len(product_entries)} product "
                         f"types read, 0 variants loaded, bad by reason {dict(sorted(report.bad.items()))})")
    index = {item.item_id: i for i, item in enumerate(items)}
    users = _read_entries(path / USERS_FILE) if (path / USERS_FILE).is_file() else []
    user_ids, profiles = _parse_users(users, report)
    order_entries = _read_entries(path / ORDERS_FILE) if (path / ORDERS_FILE).is_file() else []
    history, strings = _build_history(order_entries, index, user_ids, profiles, report)

    n = len(items)
    ids = [item.item_id for item in items]
    cols = _columns(items)
    paths = [category_of(item.type_name) for item in items]
    nodes, parent, level, node_of = category_tree(list(dict.fromkeys(paths)))
    index_texts = [f"{t} {d}" for t, d in zip(cols.titles, cols.descriptions)]
    ratings = [derived_rating(i) for i in ids]
    ship_days, _ = synth_ship_stock(ids)
    catalog = assemble(
        price_cents=np.asarray([item.cents for item in items], np.int32),
        rating=np.asarray([r for r, _ in ratings], np.float32),
        rating_count=np.asarray([c for _, c in ratings], np.int32),
        ship_days=ship_days, stock=np.asarray([derived_stock(i.item_id, i.available) for i in items], np.int32),
        leaf=np.asarray([node_of[p] for p in paths], np.int32), brand=np.asarray(cols.brand, np.int32),
        store=np.zeros(n, np.int32), attr=np.asarray(cols.attr, np.int32), num=np.asarray(cols.num, np.float32),
        emb=embed_hashes_np(np.stack([hash_text(t, INDEX_TOKENS) for t in index_texts]), emb_dim),
        var_key=np.full(n, -1, np.int32), var_value=np.full((n, MAX_VARIANTS), -1, np.int32),
        var_price_delta=np.zeros((n, MAX_VARIANTS), np.int32), var_stock=np.zeros((n, MAX_VARIANTS), np.int32),
        categories=nodes, category_parent=parent, category_level=level, brands=cols.brands,
        attr_values=cols.attr_values, history=history,
    )
    types = {}
    for item, p in zip(items, paths):
        types.setdefault(item.type_id, {"name": item.type_name, "category": p})
    source = {
        "kind": "tau-retail", "path": str(path), "product_types": len(types), "variants": n,
        "orders": 0 if history is None else history.num_orders, "users": len(user_ids),
        "bad": dict(sorted(report.bad.items())), "carried_option_keys": cols.carried,
        "unmapped_product_types": sorted({i.type_name for i in items if i.type_name.lower() not in TYPE_TAXONOMY}),
        "types": types, "emb_dim": int(emb_dim),
    }
    if report.bad:
        warnings.warn(f"tau-retail folder {str(path)!r}: {sum(report.bad.values())} bad fields (by reason "
                      f"{source['bad']}; first: {', '.join(report.examples)})", stacklevel=2)
    vocab = Vocab(categories=nodes, brands=cols.brands, stores=[STORE], attr_values=cols.attr_values,
                  product_ids=ids, titles=cols.titles, descriptions=cols.descriptions,
                  index_text_fn=lambda i: index_texts[i], source=source,
                  options=[item.options for item in items], history=strings if history is not None else None)
    return catalog, vocab
