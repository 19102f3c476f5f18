"""Catalogs: the Catalog pytree, host Vocab, synthetic generator, loaders, lexical embeddings, search."""

from ecomjax.catalog.amazon import load_amazon
from ecomjax.catalog.history import OrderHistory
from ecomjax.catalog.io import load, save
from ecomjax.catalog.lexical import embed_text, hash_text, tokenize
from ecomjax.catalog.retrieval import Filters, filters_from_dict, masked_topk, no_filters, search
from ecomjax.catalog.spec import load_spec
from ecomjax.catalog.synthetic import synthetic
from ecomjax.catalog.tau import load_tau_retail
from ecomjax.catalog.types import Catalog, Vocab

__all__ = [
    "Catalog", "Filters", "OrderHistory", "Vocab", "embed_text", "filters_from_dict", "hash_text", "load",
    "load_amazon", "load_spec", "load_tau_retail", "masked_topk", "no_filters", "save", "search", "synthetic",
    "tokenize",
]
