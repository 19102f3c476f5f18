"""Amazon-metadata loader: fixture rows parsed field by field, bad rows counted, JSONL == Parquet, round trip."""

import hashlib
import json
import math
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomjax.catalog import Catalog, embed_text, load, load_amazon, masked_topk, no_filters, save
from ecomjax.catalog.amazon import synth_ship_stock
from ecomjax.catalog.io import catalog_arrays
from ecomjax.catalog.schema import ATTR_VALUES, DISCRETE_ATTRS, MAX_VARIANTS, NUMERIC_ATTRS

FIXTURE = Path(__file__).parent / "data" / "amazon_small.jsonl"
BAD_IDS = ("B0PHONECS1", "B0SHAMPO01", "B0EMPTYTTL", "B0FREEBIE1", "B0PUZZLE01")


def _load_quiet(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        catalog, vocab = load_amazon(path, **kw)
    return catalog, vocab, [str(w.message) for w in caught]


def _good_json_rows() -> list[dict]:
    rows = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _write_parquet(rows: list[dict], path: Path) -> Path:
    """Parquet columns need one type: details as JSON strings, prices as strings (None stays None)."""
    fixed = []
    for r in rows:
        r = dict(r)
        if isinstance(r.get("details"), dict):
            r["details"] = json.dumps(r["details"])
        r["price"] = None if r["price"] is None else str(r["price"])
        fixed.append(r)
    pq.write_table(pa.Table.from_pylist(fixed), path)
    return path


def _write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def amazon():
    return _load_quiet(FIXTURE)


def _row(vocab, pid: str) -> int:
    i = vocab.product_index(pid)
    assert i >= 0, pid
    return i


def _attr(catalog, vocab, i: int, name: str):
    return vocab.value_name(name, int(catalog.attr[i, DISCRETE_ATTRS.index(name)]))


def _num(catalog, i: int, name: str) -> float:
    return float(catalog.num[i, NUMERIC_ATTRS.index(name)])


def _assert_catalogs_equal(a: Catalog, b: Catalog) -> None:
    xs, ys = catalog_arrays(a), catalog_arrays(b)
    assert xs.keys() == ys.keys()
    for name, x in xs.items():
        y = ys[name]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


def _assert_vocab_text_equal(a, b) -> None:
    assert a.categories == b.categories and a.brands == b.brands and a.stores == b.stores
    assert a.attr_values == b.attr_values
    assert a.product_ids == b.product_ids and a.titles == b.titles and a.descriptions == b.descriptions
    assert [a.index_text(i) for i in range(a.num_products)] == [b.index_text(i) for i in range(b.num_products)]


def test_counts_bad_reasons_and_one_warning(amazon):
    catalog, vocab, messages = amazon
    assert vocab.source == {"kind": "amazon", "path": str(FIXTURE), "rows": 32, "loaded": 26,
                            "bad": {"duplicate_id": 1, "json": 1, "price": 3, "title": 1}}
    assert catalog.num_products == vocab.num_products == 26
    assert len(messages) == 1 and "skipped 6 of 32 rows" in messages[0] and "price" in messages[0]
    # Rows with missing / unparseable / zero price, an empty title or broken JSON never load (no 9.99 default).
    assert all(vocab.product_index(pid) == -1 for pid in BAD_IDS)
    # The first B0CHARGE65 is kept, the duplicate (24.99) is skipped.
    assert int(catalog.price_cents[_row(vocab, "B0CHARGE65")]) == 3599
    assert len(set(vocab.product_ids)) == 26


def test_prices_brands_categories(amazon):
    catalog, vocab, _ = amazon
    cents = {pid: int(catalog.price_cents[_row(vocab, pid)])
             for pid in ("B0LAPTOP01", "B0LIPSTK01", "B0PHONE001", "B0SKILLT01", "B0JACKET01")}
    assert cents == {"B0LAPTOP01": 129999, "B0LIPSTK01": 798, "B0PHONE001": 79900, "B0SKILLT01": 1990,
                     "B0JACKET01": 8990}
    assert float(catalog.range_values[_row(vocab, "B0LAPTOP01"), 0]) == pytest.approx(1299.99)

    brand = {pid: vocab.brands[int(catalog.brand[_row(vocab, pid)])]
             for pid in ("B0LAPTOP01", "B0PILLOW01", "B0CABLE001", "B0DRESS001", "B0RUG00001", "B0BEANIE01")}
    assert brand == {
        "B0LAPTOP01": "asus",                       # Brand beats Manufacturer (dict details)
        "B0PILLOW01": "beckham hotel collection",   # Brand beats Manufacturer (JSON-string details)
        "B0CABLE001": "ugreen group limited",       # Manufacturer when no Brand
        "B0DRESS001": "grecerelle",                 # store when neither
        "B0RUG00001": "nuloom",
        "B0BEANIE01": "unknown",                    # nothing at all
    }
    assert vocab.stores[int(catalog.store[_row(vocab, "B0CABLE001")])] == "UGREEN"
    assert vocab.stores[int(catalog.store[_row(vocab, "B0BEANIE01")])] == ""

    path = {pid: vocab.categories[int(catalog.category[_row(vocab, pid)])]
            for pid in ("B0LAPTOP01", "B0DRESS001", "B0SERUM001", "B0RUG00001", "B0PHONE001", "B0WATCH001")}
    assert path == {
        "B0LAPTOP01": "electronics/computers_accessories/computers_tablets",   # 4 levels cut to 3
        "B0DRESS001": "clothing_shoes_jewelry/women/clothing",
        "B0SERUM001": "all_beauty",                                            # empty categories -> main_category
        "B0RUG00001": "home_kitchen/home_decor_products/area_rugs_runners_pads",
        "B0PHONE001": "cell_phones_accessories/cell_phones",
        "B0WATCH001": "general",                                               # neither
    }
    laptop = _row(vocab, "B0LAPTOP01")
    assert vocab.categories[int(catalog.top_category[laptop])] == "electronics"
    assert vocab.categories[int(catalog.mid_category[laptop])] == "electronics/computers_accessories"
    assert int(catalog.return_window[int(catalog.category[laptop])]) == 15
    denied = {vocab.product_ids[i] for i in np.nonzero(np.asarray(catalog.denied))[0]}
    assert denied == {"B0HUMIDR01"}                                            # health_household/tobacco/...


def test_attributes_numeric_and_carried_values(amazon):
    catalog, vocab, _ = amazon
    charger, laptop = _row(vocab, "B0CHARGE65"), _row(vocab, "B0LAPTOP01")
    assert _num(catalog, charger, "wattage") == 65.0
    assert _num(catalog, charger, "weight_lbs") == pytest.approx(4.2 / 16)                 # "4.2 ounces"
    assert _num(catalog, _row(vocab, "B0HEADPH01"), "weight_lbs") == pytest.approx(0.56)   # "8.96 ounces"
    assert _num(catalog, _row(vocab, "B0BLENDR01"), "wattage") == 1500.0                   # "1,500 watts"
    assert _num(catalog, _row(vocab, "B0LAMP0001"), "wattage") == pytest.approx(9.5)       # "9.5 Watts"
    assert _num(catalog, laptop, "weight_lbs") == pytest.approx(4.2)                       # "4.2 Pounds"
    assert _num(catalog, laptop, "screen_size_inches") == pytest.approx(15.6)
    assert math.isnan(_num(catalog, laptop, "wattage"))
    assert np.isnan(np.asarray(catalog.num[_row(vocab, "B0WATCH001")])).all()

    # Known values map to the default ids (case-insensitive), defaults kept in order, unseen appended.
    for name, values in ATTR_VALUES.items():
        assert vocab.attr_values[name][: len(values)] == list(values)
    assert int(catalog.attr[charger, DISCRETE_ATTRS.index("connector_type")]) == ATTR_VALUES["connector_type"].index("USB-C")
    assert _attr(catalog, vocab, charger, "color") == "black"
    tshirt = _row(vocab, "B0TSHIRT01")
    assert _attr(catalog, vocab, tshirt, "size") == "XL"                                     # "xl"
    assert _attr(catalog, vocab, tshirt, "material") == "100% cotton"                        # Fabric Type
    assert _attr(catalog, vocab, _row(vocab, "B0SPEAKR01"), "color") == "teal"               # Colour
    assert _attr(catalog, vocab, laptop, "color") == "space gray"
    assert vocab.attr_values["color"].index("space gray") >= len(ATTR_VALUES["color"])
    dress, beanie = _row(vocab, "B0DRESS001"), _row(vocab, "B0BEANIE01")
    size = DISCRETE_ATTRS.index("size")
    assert int(catalog.attr[dress, size]) == int(catalog.attr[beanie, size]) >= len(ATTR_VALUES["size"])
    assert _attr(catalog, vocab, beanie, "size") == "One Size"                               # first seen spelling
    assert vocab.attr_values["connector_type"][len(ATTR_VALUES["connector_type"]):] == ["USB Type C", "HDMI, DisplayPort"]
    assert vocab.attr_values["age_range"][len(ATTR_VALUES["age_range"]):] == ["kid"]
    found = _row(vocab, "B0FOUND001")
    assert [_attr(catalog, vocab, found, a) for a in ("item_form", "skin_type", "finish_type", "age_range")] == [
        "liquid", "combination", "natural", "adult"]
    assert _attr(catalog, vocab, found, "color") is None
    # value tokens cover appended values (assemble sizes the table by the longest value list)
    assert catalog.value_tokens.shape[1] == max(len(v) for v in vocab.attr_values.values())

    yoga = _row(vocab, "B0YOGAMAT1")
    assert float(catalog.rating[yoga]) == 3.0 and int(catalog.rating_count[yoga]) == 0
    assert float(catalog.rating[laptop]) == pytest.approx(4.3) and int(catalog.rating_count[laptop]) == 2871
    assert (np.asarray(catalog.var_key) == -1).all()
    assert catalog.var_value.shape == (26, MAX_VARIANTS) and (np.asarray(catalog.var_value) == -1).all()
    assert not np.asarray(catalog.var_price_delta).any() and not np.asarray(catalog.var_stock).any()


def test_text_fields_and_index_text(amazon):
    _, vocab, _ = amazon
    i = _row(vocab, "B0LAPTOP01")
    assert vocab.title(i).startswith("ASUS VivoBook 15")
    assert vocab.description(i) == "The VivoBook 15 is a thin and light laptop for everyday work and play."
    assert vocab.index_text(i) == (
        vocab.title(i) + " Efficient Intel Core i7-1255U processor 15.6 inch Full HD NanoEdge display "
        "Fingerprint sensor The VivoBook 15 is a thin and light laptop for everyday work and play.")
    cable = _row(vocab, "B0CABLE001")
    assert vocab.description(cable) == "" and vocab.index_text(cable) == (
        vocab.title(cable) + " 100W power delivery Nylon braided ")


def _reference_ship_stock(pid: str) -> tuple[int, int]:
    """Scalar re-derivation of the documented inverse-CDF synthesis."""
    def unit(digest: bytes, start: int) -> float:
        return ((int.from_bytes(digest[start:start + 8], "big") >> 11) + 0.5) / 2.0 ** 53

    u = unit(hashlib.sha256((pid + "ship").encode()).digest(), 0)
    ship = 1
    while 1.0 - 0.6 ** ship < u:      # smallest k with CDF(k) = 1 - (1-p)^k >= u
        ship += 1
    ship = min(max(ship, 1), 14)
    digest = hashlib.sha256((pid + "stock").encode()).digest()
    if unit(digest, 0) < 0.1:
        return ship, 0
    u2, k, pmf = unit(digest, 8), 0, math.exp(-20.0)
    cdf = pmf
    while cdf <= u2 and k < 200:
        k += 1
        pmf *= 20.0 / k
        cdf += pmf
    return ship, min(max(k, 1), 200)


def test_ship_stock_deterministic_and_distributed(amazon):
    catalog, vocab, _ = amazon
    got = list(zip(np.asarray(catalog.ship_days).tolist(), np.asarray(catalog.stock).tolist()))
    assert got == [_reference_ship_stock(pid) for pid in vocab.product_ids]
    ids = [f"B{n:09d}" for n in range(20000)]
    ship, stock = synth_ship_stock(ids)
    ship_r, stock_r = synth_ship_stock(ids[::-1])                        # per id, independent of order
    assert np.array_equal(ship, ship_r[::-1]) and np.array_equal(stock, stock_r[::-1])
    assert [(int(a), int(b)) for a, b in zip(ship[:300], stock[:300])] == [_reference_ship_stock(p) for p in ids[:300]]
    assert ship.min() == 1 and ship.max() <= 14 and abs(ship.mean() - 2.5) < 0.06
    assert abs((stock == 0).mean() - 0.10) < 0.01
    in_stock = stock[stock > 0]
    assert in_stock.min() >= 1 and in_stock.max() <= 200 and abs(in_stock.mean() - 20.0) < 0.2
    assert abs(in_stock.var() - 20.0) < 1.5


def test_jsonl_and_parquet_give_identical_catalogs(amazon, tmp_path):
    catalog, vocab, _ = amazon
    path = _write_parquet(_good_json_rows(), tmp_path / "amazon_small.parquet")
    p_catalog, p_vocab, messages = _load_quiet(path)
    _assert_catalogs_equal(catalog, p_catalog)
    _assert_vocab_text_equal(vocab, p_vocab)
    assert p_vocab.source == {"kind": "amazon", "path": str(path), "rows": 31, "loaded": 26,
                              "bad": {"duplicate_id": 1, "price": 3, "title": 1}}
    assert len(messages) == 1 and "skipped 5 of 31 rows" in messages[0]


def test_save_load_round_trip_is_exact(amazon, tmp_path):
    catalog, vocab, _ = amazon
    save(catalog, vocab, tmp_path / "cat")
    loaded, loaded_vocab = load(tmp_path / "cat")
    _assert_catalogs_equal(catalog, loaded)
    _assert_vocab_text_equal(vocab, loaded_vocab)
    assert loaded_vocab.source == vocab.source


def test_lexical_search_finds_each_product_by_its_title(amazon):
    catalog, vocab, _ = amazon
    n = vocab.num_products
    q = jnp.asarray(np.stack([embed_text(vocab.title(i)) for i in range(n)]))
    _, ids = masked_topk(catalog, q, no_filters((n,)), 3)
    assert np.asarray(ids)[:, 0].tolist() == list(range(n))


def test_max_items_and_emb_dim(amazon):
    catalog, vocab, _ = amazon
    small, small_vocab, messages = _load_quiet(FIXTURE, max_items=10, emb_dim=32)
    assert small_vocab.product_ids == vocab.product_ids[:10]
    assert small_vocab.source["rows"] == 12 and small_vocab.source["loaded"] == 10
    assert small_vocab.source["bad"] == {"price": 2} and len(messages) == 1
    assert small.emb.shape == (10, 32)
    norms = np.linalg.norm(np.asarray(small.emb), axis=1)
    np.testing.assert_allclose(np.asarray(small.emb_scale) * norms, 1.0, rtol=1e-5)
    assert np.array_equal(np.asarray(small.price_cents), np.asarray(catalog.price_cents)[:10])
    assert np.array_equal(np.asarray(small.stock), np.asarray(catalog.stock)[:10])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_items"):
            load_amazon(FIXTURE, max_items=bad)
    with pytest.raises(ValueError, match="emb_dim"):
        load_amazon(FIXTURE, emb_dim=0)


def test_edge_values_and_clean_file_has_no_warning(tmp_path):
    base = {"main_category": "All Electronics", "categories": [], "details": None, "store": None}
    rows = [
        dict(base, parent_asin="A1", title="Clamp High", price="US $1,000", average_rating=7.2, rating_number="1,234"),
        dict(base, parent_asin="A2", title="Clamp Low", price=" $0.99 ", average_rating=0.2, rating_number=None),
        dict(base, parent_asin="A3", title="Garbage Details", price=5, average_rating="n/a", details="{not json",
             categories=["Electronics"]),
    ]
    catalog, vocab, messages = _load_quiet(_write_jsonl(rows, tmp_path / "edge.jsonl"))
    assert messages == [] and vocab.source["bad"] == {} and vocab.source["loaded"] == 3
    assert np.asarray(catalog.price_cents).tolist() == [100000, 99, 500]
    assert np.asarray(catalog.rating).tolist() == [5.0, 1.0, 3.0]
    assert np.asarray(catalog.rating_count).tolist() == [1234, 0, 0]
    assert vocab.brands == ["unknown"] and vocab.categories == ["all_electronics", "electronics"]
    assert (np.asarray(catalog.attr) == -1).all()

    bad_prices = ["12.99 - 15.99", True, -3.0, float("nan"), "", "free", 100000.01]
    bad_rows = [dict(base, parent_asin=f"P{i}", title="Thing", price=p) for i, p in enumerate(bad_prices)]
    bad_rows += [dict(base, parent_asin="", title="No Id", price=1.0)]
    with pytest.raises(ValueError, match=r"every row is bad \(8 rows read, 0 loaded.*'id': 1.*'price': 7"):
        load_amazon(_write_jsonl(bad_rows, tmp_path / "all_bad.jsonl"))


def test_missing_columns_and_bad_paths(tmp_path):
    rows = [{"parent_asin": "X1", "title": "Thing", "store": "S", "details": {}},
            {"parent_asin": "X2", "title": "Other", "store": "S", "details": {}}]
    jsonl = _write_jsonl(rows, tmp_path / "no_price.jsonl")
    with pytest.raises(ValueError) as err:
        load_amazon(jsonl)
    msg = str(err.value)
    assert str(jsonl) in msg and "'price'" in msg and "'main_category'" in msg
    assert "'parent_asin'" not in msg.split("required:")[0] and "'title'" not in msg.split("required:")[0]

    parquet = tmp_path / "no_ids.parquet"
    pq.write_table(pa.table({"price": ["1.00"], "main_category": ["X"], "store": ["S"]}), parquet)
    with pytest.raises(ValueError) as err:
        load_amazon(parquet)
    msg = str(err.value)
    assert str(parquet) in msg and "'parent_asin'" in msg and "'title'" in msg
    assert "'price'" not in msg.split("required:")[0]

    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_amazon(tmp_path / "nope.jsonl")
    csv = tmp_path / "rows.csv"
    csv.write_text("parent_asin,title,price,main_category\n")
    with pytest.raises(ValueError, match=r"rows\.csv.*unknown extension"):
        load_amazon(csv)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="has no rows"):
        load_amazon(tmp_path / "empty.jsonl")
