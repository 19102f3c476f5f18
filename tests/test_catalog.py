"""Synthetic catalog, on-disk format and lexical embeddings."""

import numpy as np
import pytest

from ecomjax.catalog import Vocab, load, save, synthetic
from ecomjax.catalog.io import catalog_arrays
from ecomjax.catalog.lexical import embed_hashes_np, embed_text, hash_text, tokenize
from ecomjax.catalog.schema import DISCRETE_ATTRS, NUMERIC_ATTRS


def _arrays_equal(a, b) -> bool:
    x, y = catalog_arrays(a), catalog_arrays(b)
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f") for k in x)


def test_synthetic_is_deterministic_and_seed_dependent():
    a, va = synthetic(300, seed=5)
    b, vb = synthetic(300, seed=5)
    c, _ = synthetic(300, seed=6)
    assert _arrays_equal(a, b)
    assert [va.title(i) for i in range(50)] == [vb.title(i) for i in range(50)]
    assert not np.array_equal(np.asarray(a.price_cents), np.asarray(c.price_cents))


def test_synthetic_catalog_shape_and_statistics(small_catalog):
    catalog, vocab = small_catalog
    levels = np.asarray(catalog.category_level)
    leaves = np.nonzero(levels == 2)[0]
    assert len(leaves) >= 40
    used = set(np.asarray(catalog.category).tolist())
    assert used <= set(leaves.tolist()) and len(used) == len(leaves)
    n_var = (np.asarray(catalog.var_value) >= 0).sum(1)
    assert n_var.min() == 2 and n_var.max() == 4
    oos = float((np.asarray(catalog.stock) == 0).mean())
    assert 0.07 < oos < 0.13
    denied = np.asarray(catalog.denied)
    assert 0 < denied.mean() < 0.2
    denied_names = {vocab.category_name(c) for c in np.unique(np.asarray(catalog.category)[denied])}
    assert all(any(s in name for s in ("firearms", "ammunition", "tobacco", "hazardous")) for name in denied_names)
    tops = {vocab.category_name(t) for t in np.unique(np.asarray(catalog.top_category))}
    assert {"electronics", "clothing", "furniture", "groceries"} <= tops
    windows = np.asarray(catalog.return_window)[np.asarray(catalog.top_category)]
    by_top = {vocab.category_name(t): int(w) for t, w in zip(np.asarray(catalog.top_category), windows)}
    assert by_top["electronics"] == 15 and by_top["groceries"] == 0 and by_top["clothing"] == 30


def test_text_carries_every_attribute_value(small_catalog):
    catalog, vocab = small_catalog
    attr, num = np.asarray(catalog.attr), np.asarray(catalog.num)
    for i in range(0, 2000, 97):
        words = set(tokenize(vocab.index_text(i)))
        for a, name in enumerate(DISCRETE_ATTRS):
            if attr[i, a] >= 0:
                assert set(tokenize(vocab.value_name(name, attr[i, a]))) <= words, (i, name)
        for a, name in enumerate(NUMERIC_ATTRS):
            if not np.isnan(num[i, a]):
                assert f"{num[i, a]:g}".split(".")[0] in words
        assert vocab.brands[int(catalog.brand[i])].lower() in words
        assert vocab.title(i).split()[-1].lower() in words          # model number


def test_product_vectors_equal_the_encoding_of_their_text(small_catalog):
    catalog, vocab = small_catalog
    rows = np.stack([hash_text(vocab.index_text(i), 48) for i in range(0, 2000, 11)])
    np.testing.assert_array_equal(embed_hashes_np(rows, catalog.emb_dim), np.asarray(catalog.emb[::11]))
    norms = np.linalg.norm(np.asarray(catalog.emb[::11]), axis=1)
    np.testing.assert_allclose(np.asarray(catalog.emb_scale[::11]) * norms, 1.0, rtol=1e-6)


def test_size_bounds_raise_naming_the_value():
    with pytest.raises(ValueError, match="num_products.*99"):
        synthetic(99)
    with pytest.raises(ValueError, match="2000001"):
        synthetic(2_000_001)


def test_save_load_round_trip_synthetic(tmp_path, small_catalog):
    catalog, vocab = small_catalog
    save(catalog, vocab, tmp_path / "cat")
    loaded, lv = load(tmp_path / "cat")
    assert _arrays_equal(catalog, loaded)
    assert [lv.title(i) for i in range(0, 2000, 37)] == [vocab.title(i) for i in range(0, 2000, 37)]
    assert lv.index_text(5) == vocab.index_text(5) and lv.source == vocab.source


def test_save_load_round_trip_stored_strings(tmp_path, small_catalog):
    catalog, vocab = small_catalog
    stored = Vocab(categories=vocab.categories, brands=vocab.brands, stores=vocab.stores,
                   attr_values=vocab.attr_values, product_ids=[f"P{i}" for i in range(2000)],
                   titles=[vocab.title(i) for i in range(2000)],
                   descriptions=[vocab.description(i) for i in range(2000)], source={"kind": "test"})
    save(catalog, stored, tmp_path / "cat")
    loaded, lv = load(tmp_path / "cat")
    assert _arrays_equal(catalog, loaded)
    assert lv.product_ids == stored.product_ids and lv.titles == stored.titles
    assert lv.product_index("P42") == 42 and lv.product_index("nope") == -1


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="arrays.npz"):
        load(tmp_path)


def test_tokenize_and_hash_are_stable():
    assert tokenize("I want Black USB-C headphones under $50") == ["black", "usb", "c", "headphones", "50"]
    assert hash_text("black", 1)[0] == 1452231588 == hash_text("BLACK!", 1)[0]   # FNV-1a, process-independent
    v = embed_text("wireless headphones")
    assert v.shape == (64,) and np.array_equal(v, np.round(v)) and np.abs(v).sum() > 0    # integer counts
