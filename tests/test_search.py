"""Retrieval: filters as masks before top-k, exactness vs NumPy, rank noise, chunking, sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from ecomjax.catalog import retrieval as S
from ecomjax.catalog.lexical import embed_text
from ecomjax.catalog.schema import DISCRETE_ATTRS, EQ_FILTER_KEYS, RANGE_FIELDS

K = 20


@pytest.fixture(scope="module")
def fns():
    return {
        "topk": jax.jit(S.masked_topk, static_argnames="k"),
        "search": jax.jit(S.search, static_argnames="k"),
        "match": jax.jit(S.products_match),
    }


def _np_mask(catalog, eq, lo, hi):
    """NumPy reference of the filter predicate for one query. -> [P] bool"""
    cols = {"brand": catalog.brand, "store": catalog.store}
    ok = np.ones(catalog.num_products, bool)
    if eq[0] >= 0:
        ok &= (np.asarray(catalog.category) == eq[0]) | (
            np.asarray(catalog.mid_category) == eq[0]) | (np.asarray(catalog.top_category) == eq[0])
    for i, key in enumerate(EQ_FILTER_KEYS[1:], start=1):
        if eq[i] >= 0:
            col = cols.get(key)
            col = np.asarray(col) if col is not None else np.asarray(catalog.attr)[:, DISCRETE_ATTRS.index(key)]
            ok &= col == eq[i]
    rv = np.asarray(catalog.range_values)
    for r in range(len(RANGE_FIELDS)):
        if np.isfinite(lo[r]) or np.isfinite(hi[r]):
            with np.errstate(invalid="ignore"):
                ok &= (rv[:, r] >= lo[r]) & (rv[:, r] <= hi[r])
    return ok


def _filters(eq, lo, hi):
    return S.Filters(eq=jnp.asarray(eq, jnp.int32), lo=jnp.asarray(lo, jnp.float32),
                     hi=jnp.asarray(hi, jnp.float32))


filter_case = st.fixed_dictionaries({
    "cat": st.one_of(st.just(-1), st.integers(0, 89)),
    "brand": st.one_of(st.just(-1), st.integers(0, 79)),
    "color": st.one_of(st.just(-1), st.integers(0, 16)),
    "price_max": st.one_of(st.none(), st.floats(1.0, 500.0)),
    "rating_min": st.one_of(st.none(), st.floats(1.0, 5.0)),
    "wattage_min": st.one_of(st.none(), st.sampled_from([5.0, 30.0, 100.0])),
    "query": st.integers(0, 1999),
})


@given(st.lists(filter_case, min_size=1, max_size=6))
def test_masked_topk_equals_numpy_reference(small_catalog, fns, cases):
    """Every returned product passes its filters, and the list is exactly NumPy's filtered top-k."""
    catalog, vocab = small_catalog
    eq = np.full((len(cases), len(EQ_FILTER_KEYS)), -1)
    lo = np.full((len(cases), len(RANGE_FIELDS)), -np.inf)
    hi = np.full((len(cases), len(RANGE_FIELDS)), np.inf)
    for j, c in enumerate(cases):
        eq[j, 0], eq[j, 1], eq[j, 2] = c["cat"], c["brand"], c["color"]
        if c["price_max"] is not None:
            hi[j, 0] = c["price_max"]
        if c["rating_min"] is not None:
            lo[j, 1] = c["rating_min"]
        if c["wattage_min"] is not None:
            lo[j, 4] = c["wattage_min"]
    q = np.stack([embed_text(vocab.title(c["query"])) for c in cases])
    scores, ids = fns["topk"](catalog, jnp.asarray(q), _filters(eq, lo, hi), k=K)
    emb = np.asarray(catalog.emb)
    for j in range(len(cases)):
        mask = _np_mask(catalog, eq[j], lo[j], hi[j])
        got = np.asarray(ids[j])
        assert mask[got[got >= 0]].all(), "a filter-violating product was returned"
        ref_scores = np.where(mask, (emb @ q[j]) * np.asarray(catalog.emb_scale), -np.inf)
        n_ok = min(K, int(mask.sum()))
        assert (got >= 0).sum() == n_ok
        ref_top = np.sort(ref_scores)[::-1][:n_ok]
        np.testing.assert_allclose(np.asarray(scores[j][:n_ok]), ref_top, rtol=1e-5, atol=1e-5)


def test_distinctive_words_with_matching_filters_rank_first(small_catalog, fns):
    catalog, vocab = small_catalog
    picks = list(range(0, 2000, 41))
    q = jnp.asarray(np.stack([embed_text(vocab.title(i)) for i in picks]))
    eq = np.full((len(picks), len(EQ_FILTER_KEYS)), -1)
    eq[:, 0] = np.asarray(catalog.category)[picks]
    eq[:, 1] = np.asarray(catalog.brand)[picks]
    lo = np.full((len(picks), len(RANGE_FIELDS)), -np.inf)
    hi = np.full((len(picks), len(RANGE_FIELDS)), np.inf)
    hi[:, 0] = np.asarray(catalog.price_cents)[picks] / 100.0
    _, ids = fns["topk"](catalog, q, _filters(eq, lo, hi), k=5)
    assert np.array_equal(np.asarray(ids[:, 0]), np.asarray(picks))


def test_filters_from_dict_names_bad_key_and_value(small_catalog):
    _, vocab = small_catalog
    f = S.filters_from_dict({"cat": "headphones", "color": "Black", "price_max": 50}, vocab)
    assert int(f.eq[0]) == vocab.categories.index("electronics/audio/headphones")
    assert int(f.eq[2]) == vocab.attr_values["color"].index("black") and float(f.hi[0]) == 50.0
    with pytest.raises(ValueError, match="filters.color: unknown value 'plaid'"):
        S.filters_from_dict({"color": "plaid"}, vocab)
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        S.filters_from_dict({"colour": "red"}, vocab)
    with pytest.raises(ValueError, match="filters.price_max"):
        S.filters_from_dict({"price_max": "cheap"}, vocab)


def test_rank_noise_keeps_filters_category_and_uniqueness(small_catalog, fns):
    catalog, vocab = small_catalog
    n = 32
    q = jnp.asarray(np.stack([embed_text(vocab.title(i)) for i in range(n)]))
    f = S.no_filters((n,))
    f = f.replace(eq=f.eq.at[:, 2].set(jnp.asarray(catalog.attr[:n, 0])))       # same color as the query product
    keys = jax.random.split(jax.random.key(3), n)
    full = jnp.full((n,), K)
    clean = fns["search"](catalog, keys, q, f, K, full, jnp.full((n,), 200), jnp.zeros(n))
    _, base = fns["topk"](catalog, q, f, k=K)
    assert np.array_equal(np.asarray(clean), np.asarray(base))                   # eps 0: no change
    unfiltered = S.no_filters((n,))
    loose = np.asarray(fns["search"](catalog, keys, q, unfiltered, K, full, jnp.full((n,), 200), jnp.full(n, 0.4)))
    _, loose_base = fns["topk"](catalog, q, unfiltered, k=K)
    assert 0.3 < (loose != np.asarray(loose_base)).mean() < 0.45                # ~eps of the slots change
    noisy = np.asarray(fns["search"](catalog, keys, q, f, K, full, jnp.full((n,), 200), jnp.full(n, 0.4)))
    changed = noisy != np.asarray(base)
    assert changed.any()
    assert np.asarray(fns["match"](catalog, jnp.asarray(noisy), f))[noisy >= 0].all()
    leaf = np.asarray(catalog.category)
    assert (leaf[noisy[changed]] == leaf[np.asarray(base)[changed]]).all()
    for row in noisy:
        row = row[row >= 0]
        assert len(set(row.tolist())) == len(row)
    again = fns["search"](catalog, keys, q, f, K, full, jnp.full((n,), 200), jnp.full(n, 0.4))
    assert np.array_equal(noisy, np.asarray(again))
    # a query's noise depends on its own key only, not on its batch position
    one = fns["search"](catalog, keys[5:6], q[5:6], jax.tree.map(lambda x: x[5:6], f), K, full[:1],
                        jnp.full((1,), 200), jnp.full(1, 0.4))
    assert np.array_equal(np.asarray(one[0]), noisy[5])


def test_truncation_by_agent_top_k_and_depth(small_catalog, fns):
    catalog, vocab = small_catalog
    q = jnp.asarray(np.stack([embed_text("shirt")] * 3))
    keys = jax.random.split(jax.random.key(0), 3)
    ids = fns["search"](catalog, keys, q, S.no_filters((3,)), 50, jnp.array([5, 50, 50]),
                        jnp.array([200, 200, 20]), jnp.zeros(3))
    assert [(np.asarray(r) >= 0).sum() for r in ids] == [5, 50, 20]


def test_chunked_equals_unchunked(small_catalog, monkeypatch):
    catalog, vocab = small_catalog
    q = jnp.asarray(np.stack([embed_text(vocab.title(i)) for i in range(37)]))
    f = S.no_filters((37,))
    want = S.masked_topk(catalog, q, f, 10)
    monkeypatch.setattr(S, "SCORE_BUDGET", 2000 * 8)                            # 8-query chunks
    got = S.masked_topk(catalog, q, f, 10)
    assert np.array_equal(np.asarray(want[1]), np.asarray(got[1]))
    np.testing.assert_array_equal(np.asarray(want[0]), np.asarray(got[0]))


def test_sharded_equals_single_device(small_catalog, cpu_devices):
    catalog, vocab = small_catalog
    mesh = jax.make_mesh((8,), ("catalog",), devices=cpu_devices)
    cols, valid = S.shard_catalog(catalog, mesh, "catalog")
    n = 24
    q = jnp.asarray(np.stack([embed_text(vocab.title(i * 7)) for i in range(n)]))
    f = S.no_filters((n,))
    f = f.replace(hi=f.hi.at[::2, 0].set(40.0))                                  # price filters on half
    want = S.masked_topk(catalog, q, f, K)
    got = jax.jit(lambda c, v, q, f: S.sharded_masked_topk(mesh, "catalog", c, v, q, f, K))(cols, valid, q, f)
    assert np.array_equal(np.asarray(want[1]), np.asarray(got[1]))
    np.testing.assert_array_equal(np.asarray(want[0]), np.asarray(got[0]))
