"""Deterministic synthetic catalogs from 100 to 2,000,000 products (`synthetic(num_products, seed)`)."""

import numpy as np

from ecomjax.catalog.lexical import DEFAULT_DIM, embed_hashes_np, hash_text
from ecomjax.catalog.schema import ATTR_VALUES, DISCRETE_ATTRS, MAX_VARIANTS, NUMERIC_ATTRS
from ecomjax.catalog.types import Catalog, Vocab, assemble, category_tree, default_attr_values

MIN_PRODUCTS, MAX_PRODUCTS = 100, 2_000_000
DEFAULT_NUM_PRODUCTS = 10_000
OUT_OF_STOCK_SHARE = 0.10

# leaf path -> (display noun, discrete attrs, numeric attrs, median price in dollars)
TAXONOMY: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], float]] = {
    "electronics/audio/headphones": ("Headphones", ("color", "connector_type"), (), 60.0),
    "electronics/audio/speakers": ("Speaker", ("color", "connector_type"), ("wattage",), 80.0),
    "electronics/computers/laptops": ("Laptop", ("color",), ("screen_size_inches", "weight_lbs"), 900.0),
    "electronics/computers/monitors": ("Monitor", ("connector_type", "color"), ("screen_size_inches",), 250.0),
    "electronics/computers/keyboards": ("Keyboard", ("color", "connector_type"), (), 45.0),
    "electronics/power/chargers": ("Charger", ("connector_type", "color"), ("wattage",), 25.0),
    "electronics/power/cables": ("Cable", ("connector_type", "color"), (), 12.0),
    "electronics/phones/phone_cases": ("Phone Case", ("color", "material"), (), 15.0),
    "electronics/phones/smartphones": ("Smartphone", ("color",), ("screen_size_inches",), 500.0),
    "clothing/men/shirts": ("Shirt", ("color", "size", "material"), (), 25.0),
    "clothing/men/jackets": ("Jacket", ("color", "size", "material"), (), 90.0),
    "clothing/women/dresses": ("Dress", ("color", "size", "material"), (), 55.0),
    "clothing/women/sweaters": ("Sweater", ("color", "size", "material"), (), 45.0),
    "clothing/shoes/sneakers": ("Sneakers", ("color", "size", "material"), (), 70.0),
    "clothing/shoes/boots": ("Boots", ("color", "size", "material"), (), 110.0),
    "home/kitchen/cookware": ("Skillet", ("material", "color"), ("weight_lbs",), 40.0),
    "home/kitchen/small_appliances": ("Blender", ("color",), ("wattage",), 70.0),
    "home/kitchen/bakeware": ("Baking Pan", ("material", "color"), (), 18.0),
    "home/decor/lamps": ("Lamp", ("color", "finish_type"), ("wattage",), 35.0),
    "home/decor/rugs": ("Rug", ("color", "material", "size"), (), 80.0),
    "home/bedding/pillows": ("Pillow", ("color", "material"), (), 25.0),
    "home/garage/hazardous_materials": ("Solvent", ("item_form",), (), 20.0),
    "furniture/office/desks": ("Desk", ("material", "color", "finish_type"), ("weight_lbs",), 220.0),
    "furniture/office/chairs": ("Office Chair", ("material", "color"), ("weight_lbs",), 150.0),
    "furniture/living/sofas": ("Sofa", ("material", "color"), ("weight_lbs",), 600.0),
    "furniture/living/bookshelves": ("Bookshelf", ("material", "finish_type"), ("weight_lbs",), 120.0),
    "beauty/skincare/moisturizers": ("Moisturizer", ("item_form", "skin_type"), (), 22.0),
    "beauty/skincare/cleansers": ("Cleanser", ("item_form", "skin_type"), (), 14.0),
    "beauty/makeup/foundation": ("Foundation", ("item_form", "finish_type", "skin_type"), (), 28.0),
    "beauty/makeup/lipstick": ("Lipstick", ("color", "finish_type"), (), 12.0),
    "beauty/hair/shampoo": ("Shampoo", ("item_form",), (), 10.0),
    "sports/fitness/dumbbells": ("Dumbbell Set", ("material", "color"), ("weight_lbs",), 60.0),
    "sports/fitness/yoga_mats": ("Yoga Mat", ("color", "material"), (), 30.0),
    "sports/outdoor/tents": ("Tent", ("color", "material"), ("weight_lbs",), 160.0),
    "sports/outdoor/backpacks": ("Backpack", ("color", "material"), (), 55.0),
    "sports/cycling/helmets": ("Bike Helmet", ("color", "size"), (), 50.0),
    "sports/hunting/firearms": ("Rifle", ("finish_type",), ("weight_lbs",), 700.0),
    "sports/hunting/ammunition": ("Ammo Box", ("material",), (), 40.0),
    "toys/kids/building_sets": ("Building Set", ("age_range",), (), 35.0),
    "toys/kids/puzzles": ("Puzzle", ("age_range",), (), 18.0),
    "toys/games/board_games": ("Board Game", ("age_range",), (), 30.0),
    "groceries/pantry/coffee": ("Coffee", ("item_form",), ("weight_lbs",), 14.0),
    "groceries/pantry/snacks": ("Snack Mix", ("item_form",), (), 6.0),
    "groceries/beverages/tea": ("Tea", ("item_form",), (), 9.0),
    "automotive/parts/car_batteries": ("Car Battery", ("material",), ("weight_lbs",), 130.0),
    "automotive/accessories/car_chargers": ("Car Charger", ("connector_type",), ("wattage",), 20.0),
    "office/supplies/notebooks": ("Notebook", ("color", "size"), (), 8.0),
    "office/supplies/pens": ("Pen Set", ("color",), (), 10.0),
    "health/vitamins/supplements": ("Supplement", ("item_form",), (), 20.0),
    "health/smoking/tobacco": ("Tobacco Pouch", ("item_form",), (), 15.0),
}
NUMERIC_GRID: dict[str, tuple[float, ...]] = {
    "wattage": (5, 10, 15, 20, 30, 45, 65, 100, 140, 200),
    "weight_lbs": (0.5, 1, 2, 3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 75, 100),
    "screen_size_inches": (5.5, 6.1, 6.7, 10.9, 13.3, 14, 15.6, 17.3, 24, 27, 32),
}
NUMERIC_UNIT = {"wattage": "watt", "weight_lbs": "lb", "screen_size_inches": "inch"}
ADJECTIVES = (
    "Classic", "Premium", "Compact", "Ultra", "Eco", "Pro", "Essential", "Deluxe", "Smart", "Rugged",
    "Sleek", "Modern", "Vintage", "Lightweight", "Heavy-Duty", "Portable", "Elite", "Everyday", "Signature",
    "Advanced", "Basic", "Organic", "Urban", "Nordic", "Cozy", "Bold", "Pure", "Prime", "Nova", "Zen",
)
_SYLLABLES = ("zen", "lu", "vor", "ka", "tri", "mo", "sol", "ax", "ri", "den", "pa", "qua", "bel", "ti", "ro", "nex")
STORES = (
    "Main Street Goods", "Northwind Outlet", "Bluebird Market", "Summit Supply", "Harbor Home", "Pixel Depot",
    "Green Leaf Co", "Metro Mart", "Trailhead Gear", "Cornerstone Shop", "Silverline Store", "Maple Lane",
    "Urban Nest", "Sunrise Traders",
)
NUM_BRANDS = 80


def _brand_names() -> list[str]:
    """NUM_BRANDS distinct two-syllable names (a stride coprime with 256 visits distinct pairs)."""
    n = len(_SYLLABLES)
    pairs = [(i * 37) % (n * n) for i in range(NUM_BRANDS)]
    return [(_SYLLABLES[k // n] + _SYLLABLES[k % n]).capitalize() for k in pairs]


def _value_text(attr: str, value: str) -> str:
    return value.replace("_", " ")


def _numeric_text(attr: str, value: float) -> str:
    text = f"{value:g}"
    return f"{text} {NUMERIC_UNIT[attr]}"


def _distinct_offsets(rng: np.random.Generator, n_rows: int, n_values: int, k: int) -> np.ndarray:
    """k-1 distinct offsets in [1, n_values) per row, prefixed by 0. # [n_rows, k] int64"""
    keys = rng.random((n_rows, n_values - 1))
    picks = np.argsort(keys, axis=1)[:, : k - 1] + 1
    return np.concatenate([np.zeros((n_rows, 1), np.int64), picks], axis=1)


def synthetic(num_products: int = DEFAULT_NUM_PRODUCTS, seed: int = 0, emb_dim: int = DEFAULT_DIM) -> tuple[Catalog, Vocab]:
    """A deterministic synthetic catalog and its Vocab. Same (num_products, seed), same catalog."""
    if not (MIN_PRODUCTS <= int(num_products) <= MAX_PRODUCTS):
        raise ValueError(f"num_products must be in [{MIN_PRODUCTS}, {MAX_PRODUCTS}], got {num_products}")
    n = int(num_products)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xEC0]))
    leaves = list(TAXONOMY)
    nodes, parent, level, node_of = category_tree(leaves)
    leaf_node = np.asarray([node_of[p] for p in leaves], np.int32)
    brands, attr_values = _brand_names(), default_attr_values()
    n_leaf = len(leaves)

    leaf_idx = rng.integers(0, n_leaf, n)                                           # [P] index into leaves
    leaf_idx[:n_leaf] = np.arange(n_leaf)                                           # every leaf non-empty
    brand = rng.integers(0, NUM_BRANDS, n).astype(np.int32)
    store = rng.integers(0, len(STORES), n).astype(np.int32)
    adjective = rng.integers(0, len(ADJECTIVES), n).astype(np.int32)
    model = rng.integers(100, 10000, n).astype(np.int32)
    median = np.asarray([TAXONOMY[p][3] for p in leaves])[leaf_idx]
    price_cents = np.maximum(99, np.round(median * rng.lognormal(0.0, 0.5, n) * 100)).astype(np.int32)
    rating = np.round(1.0 + 4.0 * rng.beta(5.0, 2.0, n), 1).astype(np.float32)
    rating_count = rng.poisson(150, n).astype(np.int32)
    ship_days = np.clip(rng.geometric(0.3, n), 1, 14).astype(np.int32)
    stock = np.clip(rng.poisson(20, n), 1, 200).astype(np.int32)
    stock[rng.random(n) < OUT_OF_STOCK_SHARE] = 0

    has_attr = np.zeros((n_leaf, len(DISCRETE_ATTRS)), bool)
    has_num = np.zeros((n_leaf, len(NUMERIC_ATTRS)), bool)
    for i, p in enumerate(leaves):
        for a in TAXONOMY[p][1]:
            has_attr[i, DISCRETE_ATTRS.index(a)] = True
        for a in TAXONOMY[p][2]:
            has_num[i, NUMERIC_ATTRS.index(a)] = True
    attr = np.full((n, len(DISCRETE_ATTRS)), -1, np.int32)
    for a, name in enumerate(DISCRETE_ATTRS):
        draw = rng.integers(0, len(ATTR_VALUES[name]), n)
        attr[:, a] = np.where(has_attr[leaf_idx, a], draw, -1)
    num_grid_idx = np.full((n, len(NUMERIC_ATTRS)), -1, np.int32)
    num = np.full((n, len(NUMERIC_ATTRS)), np.nan, np.float32)
    for a, name in enumerate(NUMERIC_ATTRS):
        grid = np.asarray(NUMERIC_GRID[name], np.float32)
        draw = rng.integers(0, len(grid), n)
        present = has_num[leaf_idx, a]
        num_grid_idx[:, a] = np.where(present, draw, -1)
        num[:, a] = np.where(present, grid[draw], np.nan)

    # Variants: 2-4 per product, differing in the leaf's first discrete attribute.
    var_key_leaf = np.asarray([DISCRETE_ATTRS.index(TAXONOMY[p][1][0]) for p in leaves], np.int32)
    var_key = var_key_leaf[leaf_idx]
    n_var = rng.integers(2, MAX_VARIANTS + 1, n)
    var_value = np.full((n, MAX_VARIANTS), -1, np.int32)
    for a, name in enumerate(DISCRETE_ATTRS):
        rows = np.nonzero(var_key == a)[0]
        if rows.size == 0:
            continue
        n_values = len(ATTR_VALUES[name])
        offsets = _distinct_offsets(rng, rows.size, n_values, MAX_VARIANTS)
        var_value[rows] = (attr[rows, a][:, None] + offsets) % n_values
    slot = np.arange(MAX_VARIANTS)[None, :]
    var_value = np.where(slot < n_var[:, None], var_value, -1).astype(np.int32)
    delta = np.round(rng.uniform(-0.1, 0.1, (n, MAX_VARIANTS)) * price_cents[:, None]).astype(np.int32)
    var_price_delta = np.where((slot > 0) & (var_value >= 0), delta, 0).astype(np.int32)
    var_stock = np.where((var_value >= 0) & (stock[:, None] > 0), rng.poisson(10, (n, MAX_VARIANTS)) + 1, 0)

    # Index text tokens: adjective, brand, noun, model, discrete values, numeric values + units.
    parts = _token_parts(leaves, brands)
    hashes = _product_hashes(parts, adjective, brand, leaf_idx, model, attr, num_grid_idx)
    emb = embed_hashes_np(hashes, emb_dim)

    catalog = assemble(
        price_cents=price_cents, rating=rating, rating_count=rating_count, ship_days=ship_days, stock=stock,
        leaf=leaf_node[leaf_idx], brand=brand, store=store, attr=attr, num=num, emb=emb, var_key=var_key,
        var_value=var_value, var_price_delta=var_price_delta, var_stock=var_stock.astype(np.int32),
        categories=nodes, category_parent=parent, category_level=level, brands=brands, attr_values=attr_values,
    )
    text = _TextMaker(leaves, brands, attr_values, leaf_idx=leaf_idx, adjective=adjective, brand=brand, model=model,
                      attr=attr, num_grid_idx=num_grid_idx)
    vocab = Vocab(
        categories=nodes, brands=brands, stores=list(STORES), attr_values=attr_values,
        title_fn=text.title, description_fn=text.description, index_text_fn=text.index_text, num_products=n,
        source={"kind": "synthetic", "num_products": n, "seed": int(seed), "emb_dim": int(emb_dim)},
    )
    vocab.text_state = text.state()  # type: ignore[attr-defined]
    return catalog, vocab


def text_vocab(vocab: Vocab, state: dict[str, np.ndarray]) -> Vocab:
    """Reattach synthetic title/description generators to a loaded Vocab from saved generator arrays."""
    text = _TextMaker(list(TAXONOMY), vocab.brands, vocab.attr_values, **state)
    vocab.title_fn, vocab.description_fn, vocab.index_text_fn = text.title, text.description, text.index_text
    vocab.text_state = text.state()  # type: ignore[attr-defined]
    return vocab


_PART_LEN = {"adj": 2, "brand": 1, "noun": 2, "model": 1, "value": 2, "numeric": 3}


def _token_parts(leaves: list[str], brands: list[str]) -> dict[str, object]:
    """Token hash tables for every text component. Each table: [n_items, part_len] int32."""
    def table(texts: list[str], length: int) -> np.ndarray:
        return np.stack([hash_text(t, length) for t in texts])

    return {
        "adj": table(list(ADJECTIVES), _PART_LEN["adj"]),
        "brand": table(brands, _PART_LEN["brand"]),
        "noun": table([TAXONOMY[p][0] for p in leaves], _PART_LEN["noun"]),
        "values": [
            np.concatenate([table([_value_text(a, v) for v in ATTR_VALUES[a]], _PART_LEN["value"]),
                            np.zeros((1, _PART_LEN["value"]), np.int32)])
            for a in DISCRETE_ATTRS
        ],
        "numeric": [
            np.concatenate([table([_numeric_text(a, v) for v in NUMERIC_GRID[a]], _PART_LEN["numeric"]),
                            np.zeros((1, _PART_LEN["numeric"]), np.int32)])
            for a in NUMERIC_ATTRS
        ],
    }


def _product_hashes(parts, adjective, brand, leaf_idx, model, attr, num_grid_idx) -> np.ndarray:
    """Token hashes of every product's index text. # [P, T] int32"""
    model_table = np.asarray([hash_text(f"x{m}", 1)[0] for m in range(10000)], np.int32)
    cols = [parts["adj"][adjective], parts["brand"][brand], parts["noun"][leaf_idx], model_table[model][:, None]]
    cols += [parts["values"][a][attr[:, a]] for a in range(attr.shape[1])]          # -1 -> zero row
    cols += [parts["numeric"][a][num_grid_idx[:, a]] for a in range(num_grid_idx.shape[1])]
    return np.concatenate(cols, axis=1).astype(np.int32)


class _TextMaker:
    """Titles and descriptions derived on demand from the catalog's generator arrays."""

    def __init__(self, leaves, brands, attr_values, leaf_idx, adjective, brand, model, attr, num_grid_idx):
        self.leaves, self.brands, self.attr_values = leaves, brands, attr_values
        self.leaf_idx, self.adjective, self.brand, self.model = leaf_idx, adjective, brand, model
        self.attr, self.num_grid_idx = attr, num_grid_idx

    def state(self) -> dict[str, np.ndarray]:
        return {"leaf_idx": self.leaf_idx, "adjective": self.adjective, "brand": self.brand, "model": self.model,
                "attr": self.attr, "num_grid_idx": self.num_grid_idx}

    def _values(self, i: int) -> list[str]:
        vals = [_value_text(a, self.attr_values[a][v]) for a, v in zip(DISCRETE_ATTRS, self.attr[i]) if v >= 0]
        vals += [_numeric_text(a, NUMERIC_GRID[a][g]) for a, g in zip(NUMERIC_ATTRS, self.num_grid_idx[i]) if g >= 0]
        return vals

    def title(self, i: int) -> str:
        noun = TAXONOMY[self.leaves[self.leaf_idx[i]]][0]
        return f"{ADJECTIVES[self.adjective[i]]} {self.brands[self.brand[i]]} {noun} X{self.model[i]}"

    def index_text(self, i: int) -> str:
        """The exact text whose tokens make the product's retrieval vector."""
        return " ".join([self.title(i)] + self._values(i))

    def description(self, i: int) -> str:
        leaf = self.leaves[self.leaf_idx[i]]
        noun = TAXONOMY[leaf][0].lower()
        values = ", ".join(self._values(i))
        return (f"{ADJECTIVES[self.adjective[i]]} {noun} from {self.brands[self.brand[i]]} "
                f"({leaf.replace('/', ' > ')}). Features: {values}.")
