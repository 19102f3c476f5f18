"""On-disk catalog format (`save` / `load`), exact round trip.

A catalog directory holds:
- `arrays.npz`: every `Catalog` array field as a NumPy array under its field name (uncompressed);
  synthetic catalogs add their text-generator arrays under `text.<name>`, catalogs with a real order
  history its arrays under `history.<name>`;
- `vocab.json`: `{"format": "ecomjax-catalog", "version": 1, "categories": [...], "brands": [...],
  "stores": [...], "attr_values": {attr: [...]}, "source": {...}}`, plus `"options"` (per-product source
  options) and `"history"` (order history strings) when the vocab has them;
- `text.parquet` (catalogs with stored strings only): columns `product_id`, `title`, `description`,
  `index_text`.
"""

import dataclasses
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ecomjax.catalog.history import history_arrays, history_from_arrays
from ecomjax.catalog.types import DERIVED_FIELDS, Catalog, Vocab, leaf_tables

FORMAT, VERSION = "ecomjax-catalog", 1
_TEXT_PREFIX = "text."
_HISTORY_PREFIX = "history."
HISTORY_FIELD = "history"
OPTIONAL_VOCAB_KEYS = ("options", "history")


def _array_fields() -> list[str]:
    """Catalog fields stored as arrays under their own names (the optional history is stored apart)."""
    return [f.name for f in dataclasses.fields(Catalog) if f.name != HISTORY_FIELD and f.name not in DERIVED_FIELDS]


def catalog_arrays(catalog: Catalog) -> dict[str, np.ndarray]:
    """Every array of the catalog by its `arrays.npz` name (history arrays as `history.<field>`)."""
    arrays = {name: np.asarray(getattr(catalog, name)) for name in _array_fields()}
    if catalog.history is not None:
        arrays.update({_HISTORY_PREFIX + k: v for k, v in history_arrays(catalog.history).items()})
    return arrays


def save(catalog: Catalog, vocab: Vocab, path: str | Path) -> Path:
    """Write `catalog` and `vocab` to directory `path` (created if needed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays = catalog_arrays(catalog)
    text_state = getattr(vocab, "text_state", None)
    if text_state is not None:
        arrays.update({_TEXT_PREFIX + k: np.asarray(v) for k, v in text_state.items()})
    np.savez(path / "arrays.npz", **arrays)
    meta = {"format": FORMAT, "version": VERSION, "categories": vocab.categories, "brands": vocab.brands,
            "stores": vocab.stores, "attr_values": vocab.attr_values, "source": vocab.source,
            "num_products": vocab.num_products}
    meta.update({k: getattr(vocab, k) for k in OPTIONAL_VOCAB_KEYS if getattr(vocab, k) is not None})
    (path / "vocab.json").write_text(json.dumps(meta))
    if text_state is None:
        n = vocab.num_products
        table = pa.table({
            "product_id": [vocab.product_id(i) for i in range(n)],
            "title": [vocab.title(i) for i in range(n)],
            "description": [vocab.description(i) for i in range(n)],
            "index_text": [vocab.index_text(i) for i in range(n)],
        })
        pq.write_table(table, path / "text.parquet")
    return path


def load(path: str | Path) -> tuple[Catalog, Vocab]:
    """Read a catalog directory written by `save`. Raises FileNotFoundError/ValueError naming the problem."""
    path = Path(path)
    for name in ("arrays.npz", "vocab.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"catalog directory {str(path)!r} has no {name}")
    meta = json.loads((path / "vocab.json").read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{path / 'vocab.json'}: expected format {FORMAT!r} version {VERSION}, "
                         f"got {meta.get('format')!r} version {meta.get('version')!r}")
    with np.load(path / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    names = _array_fields()
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"{path / 'arrays.npz'}: missing arrays {missing}")
    stored = {k[len(_HISTORY_PREFIX):]: v for k, v in arrays.items() if k.startswith(_HISTORY_PREFIX)}
    history = history_from_arrays(stored) if stored else None
    tables = leaf_tables(arrays["price_cents"], arrays["category"], arrays["stock"], arrays["denied"],
                         arrays["category_parent"].shape[0])
    catalog = Catalog(**{n: jnp.asarray(arrays[n]) for n in names}, **{k: jnp.asarray(v) for k, v in tables.items()},
                      history=history)
    vocab = Vocab(categories=meta["categories"], brands=meta["brands"], stores=meta["stores"],
                  attr_values=meta["attr_values"], source=meta["source"], num_products=meta["num_products"],
                  **{k: meta[k] for k in OPTIONAL_VOCAB_KEYS if k in meta})
    text_state = {k[len(_TEXT_PREFIX):]: v for k, v in arrays.items() if k.startswith(_TEXT_PREFIX)}
    if text_state:
        from ecomjax.catalog.synthetic import text_vocab

        return catalog, text_vocab(vocab, text_state)
    table = pq.read_table(path / "text.parquet").to_pydict()
    vocab.product_ids, vocab.titles, vocab.descriptions = table["product_id"], table["title"], table["description"]
    index_text = table["index_text"]
    vocab.index_text_fn = lambda i: index_text[i]
    return catalog, vocab
