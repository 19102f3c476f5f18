"""Real catalogs from Amazon-metadata-style rows (`load_amazon(path)`), local JSONL or Parquet.

Row -> product (R§2.1, with the prior system's silent defaults removed):

- `id` = `parent_asin` (empty -> bad row "id"; a repeated id -> bad row "duplicate_id", first kept);
- `title` stripped (empty -> bad row "title"); `desc` = `description` list joined with spaces;
- `price` from a number or a string like "$1,299.99"; missing, unparseable, <= 0 or above the
  allowlist's 100,000 -> bad row "price" (never a default price);
- category path from `categories` when non-empty, else `main_category`, else "general"; each segment
  lowercased and snake_cased, at most 3 levels, joined with "/". Paths may be shallower than 3 levels
  (a 1-level path is its own top, mid and leaf);
- brand: details "Brand", else "Manufacturer", else `store`, else "unknown"; always lowercased;
- `details` (a dict or a JSON string; garbage counts as no details) keys normalised as R§2.1, values:
  lowercase for color/material/item_form/skin_type/finish_type/age_range; `weight_lbs` first number,
  /16 when the text says ounce/oz (also kg/g converted); `screen_size_inches` first number;
  `wattage` the number written before W/watt (else the first number; thousands commas dropped, so
  "1,500 watts" -> 1500 and "9.5 W" -> 9.5, where R's strip-non-digits would give 95);
- discrete attributes take ids in `vocab.attr_values[attr]`, which start from `default_attr_values()`;
  unseen values are appended (never dropped). Values compare case-insensitively and are stored as first
  seen. Stores compare the same way. Details keys outside the allowlist are not kept;
- `rating` = `average_rating` clamped to [1, 5] (3.0 when missing), `rating_count` = `rating_number` (0);
- `ship_days` / `stock` synthesised from SHA-256 of the id (see `synth_ship_stock`);
- no catalog variants (`var_key = -1`, empty variant slots).

Retrieval: the lexical vector of `index_text = title + " " + " ".join(features) + " " + desc`, hashed to
at most `INDEX_TOKENS` (64) tokens: tokens beyond the 64th (after stop-word removal) are ignored, so long
descriptions contribute only their start. `vocab.index_text(i)` returns exactly that text.

JSONL (`.jsonl`, `.json`): one object per line (a `.json` file holding one JSON array also works); the
file's columns are the keys of its first JSON object and a later row lacking a key reads it as null.
Parquet (`.parquet`): the schema's column names. `max_items` keeps the first N good rows and stops
reading there. The load report goes to `vocab.source`.
"""

import hashlib
import json
import math
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ecomjax.catalog.lexical import DEFAULT_DIM, embed_hashes_np, hash_text
from ecomjax.catalog.schema import DISCRETE_ATTRS, MAX_VARIANTS, NUMERIC_ATTRS
from ecomjax.catalog.types import Catalog, Vocab, assemble, category_tree, default_attr_values

REQUIRED_COLUMNS: tuple[str, ...] = ("parent_asin", "title", "price", "main_category")
USED_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + (
    "categories", "details", "store", "description", "features", "average_rating", "rating_number",
)
JSONL_SUFFIXES, PARQUET_SUFFIXES = (".jsonl", ".json"), (".parquet",)
INDEX_TOKENS = 64             # token slots of a product's index text (longer texts are truncated)
MAX_CATEGORY_LEVELS = 3
DEFAULT_CATEGORY = "general"
UNKNOWN_BRAND = "unknown"
PRICE_MAX = 100_000.0         # allowlist price range is [0.01, 100000]
SHIP_P, SHIP_MAX = 0.4, 14    # ship_days ~ Geometric(0.4) clamped to [1, 14]
OOS_SHARE, STOCK_MEAN, STOCK_MAX = 0.10, 20.0, 200
BAD_REASONS: tuple[str, ...] = ("json", "id", "title", "price", "duplicate_id")

# R§2.1 details-key normalisation; any other key is snake_cased.
DETAIL_KEYS: dict[str, str] = {
    "brand": "brand", "manufacturer": "manufacturer", "color": "color", "colour": "color", "size": "size",
    "material": "material", "fabric type": "material", "connector type": "connector_type",
    "item form": "item_form", "skin type": "skin_type", "finish type": "finish_type",
    "age range (description)": "age_range", "product benefits": "product_benefits", "unit count": "unit_count",
    "item weight": "weight_lbs", "package dimensions": "package_dimensions", "upc": "upc", "wattage": "wattage",
    "screen size": "screen_size_inches",
}
LOWERCASE_VALUES = frozenset({"color", "material", "item_form", "skin_type", "finish_type", "age_range", "brand",
                              "manufacturer"})
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_WATT_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:w\b|watts?\b)")
_PRICE_RE = re.compile(r"^(?:us\s*)?\$?\s*(\d[\d,]*(?:\.\d+)?|\.\d+)\s*(?:usd)?$")
_SNAKE_RE = re.compile(r"[^a-z0-9]+")


# ----------------------------------------------------------------------------- field parsing

def snake_case(text: str) -> str:
    """Accents folded ("Décor" -> "decor"), lowercase, runs of non-alphanumerics -> "_", no edge "_"."""
    folded = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return _SNAKE_RE.sub("_", folded.lower()).strip("_")


def normalise_key(key: str) -> str:
    """R§2.1 details key -> attribute key ("Fabric Type" -> "material", "Hard Disk Size" -> "hard_disk_size")."""
    text = str(key).strip()
    return DETAIL_KEYS.get(text.lower(), snake_case(text))


def _first_number(text: str) -> float:
    match = _NUMBER_RE.search(text.replace(",", ""))
    return float(match.group()) if match else math.nan


def normalise_value(key: str, value: Any) -> Any:
    """R§2.1 value normalisation: float for the numeric attributes (NaN when none), else a string."""
    text = str(value).strip()
    if key == "wattage":
        plain = text.lower().replace(",", "")
        match = _WATT_RE.search(plain)
        return float(match.group(1)) if match else _first_number(plain)
    if key == "weight_lbs":
        lower = text.lower()
        number = _first_number(lower)
        if "ounce" in lower or re.search(r"\boz\b|\doz", lower):
            return number / 16.0
        if re.search(r"kilogram|\bkgs?\b|\dkgs?\b", lower):
            return number * 2.20462
        if re.search(r"\bgrams?\b|\d\s*g\b", lower):
            return number / 453.592
        return number
    if key == "screen_size_inches":
        return _first_number(text)
    return text.lower() if key in LOWERCASE_VALUES else text


def parse_details(details: Any) -> dict[str, Any]:
    """`details` (dict, JSON string or null) -> normalised attrs; the first value of a repeated key wins."""
    if isinstance(details, str):
        try:
            details = json.loads(details) if details.strip() else {}
        except ValueError:
            details = {}
    if not isinstance(details, dict):
        return {}
    attrs: dict[str, Any] = {}
    for key, value in details.items():
        if value is None or isinstance(value, (dict, list)):
            continue
        name = normalise_key(key)
        if not name or name in attrs or not str(value).strip():
            continue
        attrs[name] = normalise_value(name, value)
    return attrs


def parse_price_cents(value: Any) -> int | None:
    """Price in cents from a number or a string like "$1,299.99"; None when missing/unparseable/out of range."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        price = float(value)
    elif isinstance(value, str):
        match = _PRICE_RE.match(value.strip().lower())
        if not match:
            return None
        price = float(match.group(1).replace(",", ""))
    else:
        return None
    if not math.isfinite(price) or price <= 0 or price > PRICE_MAX:
        return None
    cents = int(round(price * 100))
    return cents if cents > 0 else None


def _as_float(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    if isinstance(value, str):
        return _first_number(value) if value.strip() else math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def parse_rating(value: Any) -> float:
    rating = _as_float(value)
    return 3.0 if not math.isfinite(rating) else min(5.0, max(1.0, rating))


def parse_rating_count(value: Any) -> int:
    count = _as_float(value)
    return int(count) if math.isfinite(count) and count > 0 else 0


def _text_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    return [str(value).strip()]


def category_path(categories: Any, main_category: Any) -> str:
    """Slash path of at most 3 snake_cased levels from `categories`, else `main_category`, else "general"."""
    segments = [s for s in (snake_case(c) for c in _text_list(categories)) if s]
    if not segments:
        segments = [s for s in (snake_case(c) for c in _text_list(main_category)) if s]
    return "/".join(segments[:MAX_CATEGORY_LEVELS]) or DEFAULT_CATEGORY


# ----------------------------------------------------------------------------- ship / stock

_POISSON_CDF = np.cumsum([math.exp(-STOCK_MEAN + k * math.log(STOCK_MEAN) - math.lgamma(k + 1))
                          for k in range(STOCK_MAX + 1)])


def _unit(digest: bytes, start: int) -> float:
    """Uniform in (0, 1) from 53 bits of digest[start:start+8]."""
    return ((int.from_bytes(digest[start:start + 8], "big") >> 11) + 0.5) / float(1 << 53)


def synth_ship_stock(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (process-independent) ship_days and stock per product id. -> ([n] int32, [n] int32)

    ship_days: u = bits 0..63 of SHA-256(id + "ship"); Geometric(p=0.4) by inverse CDF
    `ceil(log(1-u) / log(1-p))`, clamped to [1, 14].
    stock: u1, u2 = bits 0..63 and 64..127 of SHA-256(id + "stock"); u1 < 0.1 -> 0, else the Poisson(20)
    inverse CDF of u2 (smallest k with CDF(k) > u2), clamped to [1, 200].
    """
    u_ship = np.empty(len(ids), np.float64)
    u_oos = np.empty(len(ids), np.float64)
    u_stock = np.empty(len(ids), np.float64)
    for i, pid in enumerate(ids):
        u_ship[i] = _unit(hashlib.sha256((pid + "ship").encode("utf-8")).digest(), 0)
        digest = hashlib.sha256((pid + "stock").encode("utf-8")).digest()
        u_oos[i], u_stock[i] = _unit(digest, 0), _unit(digest, 8)
    ship = np.ceil(np.log1p(-u_ship) / math.log1p(-SHIP_P))
    ship = np.clip(ship, 1, SHIP_MAX).astype(np.int32)
    stock = np.searchsorted(_POISSON_CDF, u_stock, side="right")
    stock = np.clip(stock, 1, STOCK_MAX).astype(np.int32)
    stock = np.where(u_oos < OOS_SHARE, 0, stock).astype(np.int32)
    return ship, stock


# ----------------------------------------------------------------------------- readers

def _check_columns(columns: list[str] | set[str], path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"amazon catalog {str(path)!r} is missing required column(s) {missing}; "
                         f"required: {list(REQUIRED_COLUMNS)}")


def _iter_jsonl(path: Path) -> Iterator[dict | None]:
    """Rows of a JSONL file; None for a line that is not a JSON object. Checks the columns first."""
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"["):                          # a .json file holding one array of objects
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"amazon catalog {str(path)!r}: not valid JSON ({err})") from None
        first = next((r for r in rows if isinstance(r, dict)), None)
        _check_columns(set(first or {}), path)
        yield from (r if isinstance(r, dict) else None for r in rows)
        return
    checked = False
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                row = None
            if not isinstance(row, dict):
                yield None
                continue
            if not checked:
                _check_columns(set(row), path)
                checked = True
            yield row


def _iter_parquet(path: Path) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise ValueError(f"amazon catalog {str(path)!r}: cannot read Parquet ({err})") from None
    names = pf.schema_arrow.names
    _check_columns(names, path)
    columns = [c for c in USED_COLUMNS if c in names]
    for batch in pf.iter_batches(batch_size=4096, columns=columns):
        yield from batch.to_pylist()


# ----------------------------------------------------------------------------- loader

class ValueTable:
    """A value table compared case-insensitively, stored as first seen, appended on demand."""

    def __init__(self, values: list[str]):
        self.values = list(values)
        self.index = {}
        for i, v in enumerate(self.values):
            self.index.setdefault(v.lower(), i)

    def id(self, value: str) -> int:
        key = value.lower()
        if key not in self.index:
            self.index[key] = len(self.values)
            self.values.append(value)
        return self.index[key]


def load_amazon(path: str | Path, *, max_items: int | None = None,
                emb_dim: int = DEFAULT_DIM) -> tuple[Catalog, Vocab]:
    """Catalog and Vocab from an Amazon-metadata JSONL/Parquet file (see the module docstring).

    Raises FileNotFoundError for a missing file, ValueError for an unknown extension, missing required
    columns (all named at once), bad arguments, or a file whose every row is bad. Bad rows are skipped,
    counted by reason in `vocab.source["bad"]` and summarised in one warning.
    """
    path = Path(path)
    if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1):
        raise ValueError(f"max_items must be a positive int or None, got {max_items!r}")
    if isinstance(emb_dim, bool) or not isinstance(emb_dim, int) or emb_dim < 1:
        raise ValueError(f"emb_dim must be a positive int, got {emb_dim!r}")
    if not path.exists():
        raise FileNotFoundError(f"amazon catalog file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"amazon catalog path {str(path)!r} is not a file")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        rows = _iter_jsonl(path)
    elif suffix in PARQUET_SUFFIXES:
        rows = _iter_parquet(path)
    else:
        raise ValueError(f"amazon catalog {str(path)!r}: unknown extension {path.suffix!r}; "
                         f"expected one of {list(JSONL_SUFFIXES + PARQUET_SUFFIXES)}")

    attr_tables = {a: ValueTable(v) for a, v in default_attr_values().items()}
    brands, stores = ValueTable([]), ValueTable([])
    ids: list[str] = []
    seen: set[str] = set()
    titles, descs, index_texts, paths = [], [], [], []
    price_cents, rating, rating_count, brand_ids, store_ids = [], [], [], [], []
    attr_rows, num_rows = [], []
    bad: dict[str, int] = {}
    examples: list[str] = []
    n_rows = 0

    def reject(reason: str) -> None:
        bad[reason] = bad.get(reason, 0) + 1
        if len(examples) < 5:
            examples.append(f"row {n_rows} ({reason})")

    for row in rows:
        n_rows += 1
        if row is None:
            reject("json")
            continue
        pid = "" if row.get("parent_asin") is None else str(row["parent_asin"]).strip()
        title = "" if row.get("title") is None else str(row["title"]).strip()
        cents = parse_price_cents(row.get("price"))
        if not pid:
            reject("id")
            continue
        if not title:
            reject("title")
            continue
        if cents is None:
            reject("price")
            continue
        if pid in seen:
            reject("duplicate_id")
            continue
        seen.add(pid)
        attrs = parse_details(row.get("details"))
        store = "" if row.get("store") is None else str(row["store"]).strip()
        brand = attrs.get("brand") or attrs.get("manufacturer") or store.lower() or UNKNOWN_BRAND
        desc = " ".join(_text_list(row.get("description")))
        features = _text_list(row.get("features"))

        ids.append(pid)
        titles.append(title)
        descs.append(desc)
        index_texts.append(f"{title} {' '.join(features)} {desc}")
        paths.append(category_path(row.get("categories"), row.get("main_category")))
        price_cents.append(cents)
        rating.append(parse_rating(row.get("average_rating")))
        rating_count.append(parse_rating_count(row.get("rating_number")))
        brand_ids.append(brands.id(brand))
        store_ids.append(stores.id(store))
        attr_rows.append([attr_tables[a].id(attrs[a]) if attrs.get(a) else -1 for a in DISCRETE_ATTRS])
        num_rows.append([_finite_nonneg(attrs.get(a)) for a in NUMERIC_ATTRS])
        if max_items is not None and len(ids) >= max_items:
            break

    n_bad = sum(bad.values())
    source = {"kind": "amazon", "path": str(path), "rows": n_rows, "loaded": len(ids), "bad": dict(sorted(bad.items()))}
    if n_rows == 0:
        raise ValueError(f"amazon catalog {str(path)!r} has no rows")
    if not ids:
        raise ValueError(f"amazon catalog {str(path)!r}: every row is bad ({n_rows} rows read, 0 loaded, "
                         f"bad by reason {source['bad']})")
    if n_bad:
        warnings.warn(f"amazon catalog {str(path)!r}: skipped {n_bad} of {n_rows} rows "
                      f"(bad by reason {source['bad']}; first: {', '.join(examples)})", stacklevel=2)

    n = len(ids)
    nodes, parent, level, node_of = category_tree(list(dict.fromkeys(paths)))
    hashes = np.stack([hash_text(t, INDEX_TOKENS) for t in index_texts])
    ship_days, stock = synth_ship_stock(ids)
    attr_values = {a: t.values for a, t in attr_tables.items()}
    catalog = assemble(
        price_cents=np.asarray(price_cents, np.int32), rating=np.asarray(rating, np.float32),
        rating_count=np.asarray(rating_count, np.int32), ship_days=ship_days, stock=stock,
        leaf=np.asarray([node_of[p] for p in paths], np.int32), brand=np.asarray(brand_ids, np.int32),
        store=np.asarray(store_ids, np.int32), attr=np.asarray(attr_rows, np.int32).reshape(n, len(DISCRETE_ATTRS)),
        num=np.asarray(num_rows, np.float32).reshape(n, len(NUMERIC_ATTRS)), emb=embed_hashes_np(hashes, emb_dim),
        var_key=np.full(n, -1, np.int32), var_value=np.full((n, MAX_VARIANTS), -1, np.int32),
        var_price_delta=np.zeros((n, MAX_VARIANTS), np.int32), var_stock=np.zeros((n, MAX_VARIANTS), np.int32),
        categories=nodes, category_parent=parent, category_level=level, brands=brands.values,
        attr_values=attr_values,
    )
    vocab = Vocab(categories=nodes, brands=brands.values, stores=stores.values, attr_values=attr_values,
                  product_ids=ids, titles=titles, descriptions=descs,
                  index_text_fn=lambda i: index_texts[i], source=source)
    return catalog, vocab


def _finite_nonneg(value: Any) -> float:
    """A numeric attribute value, NaN when missing, non-numeric, non-finite or negative."""
    if not isinstance(value, float) or not math.isfinite(value) or value < 0:
        return math.nan
    return value
