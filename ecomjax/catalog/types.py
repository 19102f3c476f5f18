"""The Catalog pytree (struct of arrays, device side) and the host-side Vocab (ids -> strings)."""

from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ecomjax.catalog.schema import (
    ATTR_VALUES, DEFAULT_RETURN_WINDOW, DENIED_CATEGORIES, DISCRETE_ATTRS, MAX_VARIANTS, NUMERIC_ATTRS,
    RANGE_FIELDS, RETURN_WINDOWS, TEXT_TOKENS,
)
from ecomjax.catalog.history import OrderHistory
from ecomjax.catalog.lexical import hash_text, inverse_norms

SYNTHETIC_ID_PREFIX = "syn_"


@struct.dataclass
class Catalog:
    """All products as fixed-shape arrays. P products, A discrete attrs, N numeric attrs, D emb dims."""

    price_cents: jnp.ndarray      # [P] int32
    rating: jnp.ndarray           # [P] float32 in [1, 5]
    rating_count: jnp.ndarray     # [P] int32
    ship_days: jnp.ndarray        # [P] int32
    stock: jnp.ndarray            # [P] int32
    category: jnp.ndarray         # [P] int32 leaf category node
    mid_category: jnp.ndarray     # [P] int32
    top_category: jnp.ndarray     # [P] int32
    brand: jnp.ndarray            # [P] int32
    store: jnp.ndarray            # [P] int32
    attr: jnp.ndarray             # [P, A] int32 value ids, -1 missing
    num: jnp.ndarray              # [P, N] float32, NaN missing
    denied: jnp.ndarray           # [P] bool
    emb: jnp.ndarray              # [P, D] float32 retrieval table (lexical: integer counts)
    emb_scale: jnp.ndarray        # [P] float32 1/||emb row|| (0 for empty rows): cosine = dot * scale
    var_key: jnp.ndarray          # [P] int32 attribute the variants differ in, -1 none
    var_value: jnp.ndarray        # [P, V] int32 value id per variant slot, -1 empty slot
    var_price_delta: jnp.ndarray  # [P, V] int32 cents
    var_stock: jnp.ndarray        # [P, V] int32
    range_values: jnp.ndarray     # [P, R] float32 range-filter fields (price in dollars)
    cat_start: jnp.ndarray        # [C + 1] int32 offsets of each category node into cat_members
    cat_members: jnp.ndarray      # [P] int32 products sorted by leaf category
    leaf_by_price: jnp.ndarray    # [P + W] int32 products sorted by (leaf, price, id), -1 padding (leaf_members)
    leaf_slots: jnp.ndarray       # [W] int32 0..W-1, W = the largest leaf's size (a static width for jit)
    leaf_available: jnp.ndarray   # [C] int32 products per leaf in stock in the catalog and not denied
    category_parent: jnp.ndarray  # [C] int32 parent node, -1 for top level
    category_level: jnp.ndarray   # [C] int32 0 top, 1 mid, 2 leaf
    return_window: jnp.ndarray    # [C] int32 return window days by the node's top category
    category_tokens: jnp.ndarray  # [C, TT] int32 token hashes of the node's name
    brand_tokens: jnp.ndarray     # [B, TT] int32
    value_tokens: jnp.ndarray     # [A, Vmax, TT] int32
    history: OrderHistory | None = None   # real orders the world draws from (None: orders are synthesised)

    @property
    def num_products(self) -> int:
        return self.price_cents.shape[0]

    @property
    def num_categories(self) -> int:
        return self.category_parent.shape[0]

    @property
    def emb_dim(self) -> int:
        return self.emb.shape[1]


DERIVED_FIELDS = ("leaf_by_price", "leaf_slots", "leaf_available")   # rebuilt from the other arrays on load


def leaf_tables(price_cents, leaf, stock, denied, num_categories: int) -> dict[str, np.ndarray]:
    """Per-catalog tables that let a generator read one leaf category's products instead of scanning the
    whole catalog: `leaf_by_price`, `leaf_slots` and `leaf_available` (see `Catalog`)."""
    price_cents, leaf = np.asarray(price_cents, np.int64), np.asarray(leaf, np.int64)
    order = np.lexsort((np.arange(leaf.shape[0]), price_cents, leaf)).astype(np.int32)
    width = max(1, int(np.bincount(leaf, minlength=num_categories).max(initial=0)))
    available = (np.asarray(stock) > 0) & ~np.asarray(denied, bool)
    return dict(
        leaf_by_price=np.concatenate([order, np.full((width,), -1, np.int32)]),
        leaf_slots=np.arange(width, dtype=np.int32),
        leaf_available=np.bincount(leaf, weights=available, minlength=num_categories).astype(np.int32),
    )


def leaf_members(catalog: Catalog, leaf: jnp.ndarray) -> jnp.ndarray:
    """The products of leaf category `leaf`, cheapest first (ties by id), -1 beyond the leaf's size.
    # [W] int32"""
    start = catalog.cat_start[leaf]
    size = catalog.cat_start[leaf + 1] - start
    ids = jax.lax.dynamic_slice(catalog.leaf_by_price, (start,), catalog.leaf_slots.shape)
    return jnp.where(catalog.leaf_slots < size, ids, -1)


@dataclass
class Vocab:
    """Host-side strings for rendering and parsing. Either stores titles or derives them."""

    categories: list[str]                     # node id -> path "top/mid/leaf"
    brands: list[str]
    stores: list[str]
    attr_values: dict[str, list[str]]         # attribute -> value id -> string
    product_ids: list[str] | None = None      # None: synthetic ids "syn_%07d"
    titles: list[str] | None = None
    descriptions: list[str] | None = None
    title_fn: Callable[[int], str] | None = field(default=None, repr=False)
    description_fn: Callable[[int], str] | None = field(default=None, repr=False)
    index_text_fn: Callable[[int], str] | None = field(default=None, repr=False)
    num_products: int = 0
    source: dict = field(default_factory=dict)        # how the catalog was made (kind, spec, load report)
    options: list[dict[str, str]] | None = None       # per product: every source option verbatim (real catalogs)
    history: dict | None = None                       # strings of `Catalog.history` (order ids, customers, ...)
    _index: dict[str, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.product_ids is not None:
            self.num_products = len(self.product_ids)

    def product_id(self, i: int) -> str:
        if self.product_ids is None:
            return f"{SYNTHETIC_ID_PREFIX}{int(i):07d}"
        return self.product_ids[int(i)]

    def product_index(self, pid: str) -> int:
        """Index of a product id string, or -1 when the catalog has no such product."""
        if self.product_ids is None:
            number = pid.removeprefix(SYNTHETIC_ID_PREFIX)
            significant = number.lstrip("0")
            if not (pid.startswith(SYNTHETIC_ID_PREFIX) and number.isascii() and number.isdigit()
                    and len(significant) <= len(str(self.num_products))):
                return -1
            i = int(significant or "0")
            return i if i < self.num_products else -1
        if self._index is None:
            self._index = {p: i for i, p in enumerate(self.product_ids)}
        return self._index.get(pid, -1)

    def title(self, i: int) -> str:
        return self.titles[int(i)] if self.titles is not None else self.title_fn(int(i))

    def description(self, i: int) -> str:
        if self.descriptions is not None:
            return self.descriptions[int(i)]
        return self.description_fn(int(i)) if self.description_fn else ""

    def index_text(self, i: int) -> str:
        """The text whose tokens make product i's lexical retrieval vector."""
        if self.index_text_fn is not None:
            return self.index_text_fn(int(i))
        return f"{self.title(i)} {self.description(i)}"

    def category_name(self, c: int) -> str:
        return self.categories[int(c)]

    def value_name(self, attr: str, v: int) -> str | None:
        return None if v < 0 else self.attr_values[attr][int(v)]

    def value_index(self, attr: str, value: str) -> int:
        """Value id of `value` for `attr` (case-insensitive), -1 when unknown."""
        values = [x.lower() for x in self.attr_values[attr]]
        return values.index(value.strip().lower()) if value.strip().lower() in values else -1


def category_tree(paths: list[str]) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, int]]:
    """Node list (tops, mids, leaves) from leaf paths; returns (nodes, parent, level, node_of_path)."""
    nodes: list[str] = []
    index: dict[str, int] = {}
    parent: list[int] = []
    level: list[int] = []
    for path in paths:
        parts = path.split("/")
        for depth in range(len(parts)):
            node = "/".join(parts[: depth + 1])
            if node not in index:
                index[node] = len(nodes)
                nodes.append(node)
                parent.append(index["/".join(parts[:depth])] if depth else -1)
                level.append(depth)
    return nodes, np.asarray(parent, np.int32), np.asarray(level, np.int32), index


def _name_tokens(names: list[str]) -> np.ndarray:
    """Token hashes of names (last path segment, underscores as spaces). # [n, TT] int32"""
    rows = [hash_text(n.split("/")[-1].replace("_", " "), TEXT_TOKENS) for n in names]
    return np.stack(rows) if rows else np.zeros((0, TEXT_TOKENS), np.int32)


def assemble(
    *, price_cents, rating, rating_count, ship_days, stock, leaf, brand, store, attr, num, emb,
    var_key, var_value, var_price_delta, var_stock, categories, category_parent, category_level,
    brands: list[str], attr_values: dict[str, list[str]], history: OrderHistory | None = None,
) -> Catalog:
    """Build a Catalog from host arrays, deriving ancestors, index tables, filters fields and tokens."""
    leaf = np.asarray(leaf, np.int32)
    category_parent = np.asarray(category_parent, np.int32)
    mid = category_parent[leaf]
    mid = np.where(mid >= 0, mid, leaf)
    top = category_parent[mid]
    top = np.where(top >= 0, top, mid)
    num_cats = len(categories)
    order = np.argsort(leaf, kind="stable").astype(np.int32)
    counts = np.bincount(leaf, minlength=num_cats)
    cat_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    segments = [set(c.split("/")) for c in categories]
    node_denied = np.asarray([bool(s & DENIED_CATEGORIES) for s in segments])
    top_names = [c.split("/")[0].lower() for c in categories]
    return_window = np.asarray([RETURN_WINDOWS.get(t, DEFAULT_RETURN_WINDOW) for t in top_names], np.int32)
    num = np.asarray(num, np.float32)
    range_values = np.stack(
        [np.asarray(price_cents, np.float32) / 100.0, np.asarray(rating, np.float32),
         np.asarray(rating_count, np.float32), np.asarray(ship_days, np.float32)]
        + [num[:, NUMERIC_ATTRS.index(f)] for f in RANGE_FIELDS[4:]],
        axis=1,
    )
    vmax = max(len(v) for v in attr_values.values())
    value_tokens = np.zeros((len(DISCRETE_ATTRS), vmax, TEXT_TOKENS), np.int32)
    for a, name in enumerate(DISCRETE_ATTRS):
        toks = _name_tokens(list(attr_values[name]))
        value_tokens[a, : len(toks)] = toks
    cols = dict(
        price_cents=np.asarray(price_cents, np.int32), rating=np.asarray(rating, np.float32),
        rating_count=np.asarray(rating_count, np.int32), ship_days=np.asarray(ship_days, np.int32),
        stock=np.asarray(stock, np.int32), category=leaf, mid_category=mid.astype(np.int32),
        top_category=top.astype(np.int32), brand=np.asarray(brand, np.int32),
        store=np.asarray(store, np.int32), attr=np.asarray(attr, np.int32), num=num,
        denied=node_denied[leaf], emb=np.asarray(emb, np.float32), emb_scale=inverse_norms(np.asarray(emb)),
        var_key=np.asarray(var_key, np.int32), var_value=np.asarray(var_value, np.int32),
        var_price_delta=np.asarray(var_price_delta, np.int32), var_stock=np.asarray(var_stock, np.int32),
        range_values=range_values.astype(np.float32), cat_start=cat_start, cat_members=order,
        **leaf_tables(price_cents, leaf, stock, node_denied[leaf], num_cats),
        category_parent=category_parent, category_level=np.asarray(category_level, np.int32),
        return_window=return_window, category_tokens=_name_tokens(categories),
        brand_tokens=_name_tokens(brands), value_tokens=value_tokens,
    )
    if cols["var_value"].shape[1] != MAX_VARIANTS or cols["attr"].shape[1] != len(DISCRETE_ATTRS):
        raise ValueError(f"var_value must be [P, {MAX_VARIANTS}] and attr [P, {len(DISCRETE_ATTRS)}]; "
                         f"got {cols['var_value'].shape} and {cols['attr'].shape}")
    return Catalog(**{k: jnp.asarray(v) for k, v in cols.items()}, history=history)


def with_embeddings(catalog: Catalog, table) -> Catalog:
    """The catalog with a user-supplied dense retrieval table [P, D] (queries must use the same encoder)."""
    table = np.asarray(table, np.float32)
    if table.ndim != 2 or table.shape[0] != catalog.num_products or not np.isfinite(table).all():
        raise ValueError(f"embedding table must be a finite [P={catalog.num_products}, D] array, got shape "
                         f"{table.shape}")
    return catalog.replace(emb=jnp.asarray(table), emb_scale=jnp.asarray(inverse_norms(table)))


def default_attr_values() -> dict[str, list[str]]:
    return {k: list(v) for k, v in ATTR_VALUES.items()}
