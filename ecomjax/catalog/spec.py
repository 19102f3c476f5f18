"""Catalog specs as command lines write them (`--catalog SPEC`), parsed in one place: `load_spec`.

- `synthetic` (the default; also the empty string): `synthetic(num_products, seed)`;
- `tau-retail:PATH`: a τ-bench retail data folder (`load_tau_retail`);
- `amazon:FILE`: an Amazon-metadata JSONL/Parquet file (`load_amazon`);
- any other value naming a folder with `vocab.json`: a catalog saved with `save` (`load`).
"""

from pathlib import Path

from ecomjax.catalog.amazon import load_amazon
from ecomjax.catalog.io import load
from ecomjax.catalog.synthetic import DEFAULT_NUM_PRODUCTS, synthetic
from ecomjax.catalog.tau import load_tau_retail
from ecomjax.catalog.types import Catalog, Vocab

SYNTHETIC = "synthetic"
TAU_PREFIX, AMAZON_PREFIX = "tau-retail:", "amazon:"
SAVED_MARKER = "vocab.json"
SPEC_FORMS = (SYNTHETIC, TAU_PREFIX + "PATH", AMAZON_PREFIX + "FILE", "a saved catalog directory")


def load_spec(spec: str, num_products: int = DEFAULT_NUM_PRODUCTS, seed: int = 0) -> tuple[Catalog, Vocab]:
    """The catalog a spec names. `num_products` and `seed` only apply to `synthetic`.

    Raises ValueError naming the spec when it matches none of the forms (or names no path after a
    prefix); the loaders' own FileNotFoundError / ValueError for a form whose file is missing or bad.
    """
    text = spec.strip() if isinstance(spec, str) else None
    if text is None:
        raise ValueError(f"catalog spec must be a string, got {spec!r}")
    if text in ("", SYNTHETIC):
        return synthetic(num_products, seed)
    for prefix, loader in ((TAU_PREFIX, load_tau_retail), (AMAZON_PREFIX, load_amazon)):
        if text.startswith(prefix):
            target = text[len(prefix):].strip()
            if not target:
                raise ValueError(f"catalog spec {spec!r} names no path after {prefix!r}")
            return loader(target)
    if (Path(text) / SAVED_MARKER).is_file():
        return load(text)
    raise ValueError(f"unknown catalog spec {spec!r}; expected one of: {', '.join(SPEC_FORMS)}")
