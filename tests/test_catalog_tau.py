"""τ-bench retail loader: a hand-made broken folder parsed field by field (bad fields counted by reason), the
real data's counts, the order history and how the world draws real orders from it, round trip, catalog specs."""

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecomjax.catalog import load, load_spec, load_tau_retail, save
from ecomjax.catalog.history import MAX_AGE_DAYS
from ecomjax.catalog.io import catalog_arrays
from ecomjax.catalog.schema import DISCRETE_ATTRS, NUMERIC_ATTRS, ORDER_STATUSES
from ecomjax.catalog.tau import BRANDS_PER_TYPE, STOCK_MAX, STOCK_MIN, type_brands
from ecomjax.tasks.returns import add_orders
from ecomjax.world.orders import generate_orders
from ecomjax.world.state import Capacities, empty_world

DATA = Path(__file__).parent / "data"
BROKEN = DATA / "tau_broken"
TAU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tau-retail"
needs_tau = pytest.mark.skipif(not (TAU / "products.json").is_file(),
                               reason=f"τ-bench retail data not found at {TAU} (shared/data/tau-retail)")
BROKEN_BAD = {
    "available": 1, "duplicate_item_id": 1, "duplicate_order_id": 1, "item_id": 1, "name": 1, "option_value": 1,
    "options": 1, "order": 1, "order_empty": 1, "order_item": 2, "order_payment": 1, "order_price": 1,
    "order_status": 1, "order_tracking": 1, "order_user": 1, "price": 1, "product": 1, "user": 1, "user_order": 1,
}
STATUS = {name: i for i, name in enumerate(ORDER_STATUSES)}
TODAY = 20_500


def _load_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_tau_retail(path)


@pytest.fixture(scope="module")
def broken():
    return _load_quietly(BROKEN)


@pytest.fixture(scope="module")
def tau():
    return load_tau_retail(TAU)


def _attr(catalog, vocab, i: int, name: str):
    return vocab.value_name(name, int(catalog.attr[i, DISCRETE_ATTRS.index(name)]))


def _history(catalog) -> dict[str, np.ndarray]:
    return {k.removeprefix("history."): v for k, v in catalog_arrays(catalog).items() if k.startswith("history.")}


# --------------------------------------------------------------------------- the hand-made broken folder

def test_broken_folder_counts_every_bad_field_in_one_warning():
    with pytest.warns(UserWarning, match=r"tau_broken': 20 bad fields") as record:
        _, vocab = load_tau_retail(BROKEN)
    assert len(record) == 1
    assert vocab.source["bad"] == BROKEN_BAD and sum(BROKEN_BAD.values()) == 20
    assert vocab.source["product_types"] == 3 and vocab.source["variants"] == 5
    assert vocab.source["orders"] == 4 and vocab.source["users"] == 2


def test_broken_folder_products_prices_stock_and_attributes(broken):
    catalog, vocab = broken
    assert vocab.product_ids == ["1001", "1006", "1007", "4001", "5001"]
    assert np.asarray(catalog.price_cents).tolist() == [1999, 1850, 1000, 99950, 325]
    stock = np.asarray(catalog.stock)
    assert stock[2] == 0                                                       # "available": false
    assert np.all((stock[[0, 1, 3, 4]] >= STOCK_MIN) & (stock[[0, 1, 3, 4]] <= STOCK_MAX))
    assert [_attr(catalog, vocab, 0, a) for a in ("color", "size", "material")] == ["red", "M", "cotton"]
    assert _attr(catalog, vocab, 2, "color") == "teal" and _attr(catalog, vocab, 2, "size") is None
    assert np.all(np.asarray(catalog.attr)[1] == -1)                          # options not an object: none
    assert float(catalog.num[3, NUMERIC_ATTRS.index("screen_size_inches")]) == 13.0
    assert vocab.brands[int(catalog.brand[3])] == "Acme"                      # τ's own brand option wins
    # unknown keys are carried: verbatim options, title / description text and the report
    assert vocab.options[0] == {"color": "red", "size": "M", "material": "cotton", "style": "v-neck"}
    assert vocab.options[2] == {"color": "Teal", "pattern": "Stripes"}
    assert vocab.source["carried_option_keys"] == {"glow": 1, "pattern": 1, "processor": 1, "style": 1}
    assert "v-neck" in vocab.title(0) and "Stripes" in vocab.title(2) and "processor i7" in vocab.description(3)
    paths = [vocab.category_name(int(c)) for c in np.asarray(catalog.category)]
    assert paths[0] == "clothing/tops/t_shirt" and paths[3] == "electronics/computers/laptop"
    assert paths[4] == "general/other/zorb_widget" and vocab.source["unmapped_product_types"] == ["Zorb Widget"]
    windows = np.asarray(catalog.return_window)[np.asarray(catalog.top_category)]
    assert windows.tolist() == [30, 30, 30, 15, 30]
    assert vocab.stores == ["tau-retail"] and not np.any(np.asarray(catalog.denied))


def test_broken_folder_order_history(broken):
    catalog, vocab = broken
    h, strings = _history(catalog), vocab.history
    assert strings["order_ids"] == ["#W1", "#W4", "#W7", "#W8"]
    assert h["status"].tolist() == [STATUS[s] for s in ("DELIVERED", "CONFIRMED", "CANCELLED", "SHIPPED")]
    # #W1: two entries of item 1001 are one line of 2 units; the unknown item 9999 is dropped
    assert h["product"][0].tolist() == [0, -1] and h["qty"][0].tolist() == [2, 0] and h["price"][0, 0] == 1999
    # #W4: the line without a valid price is dropped, the other kept; #W7 keeps the price paid (949.00)
    assert h["product"][1].tolist() == [4, -1] and h["price"][2].tolist() == [94900, 1000]
    assert strings["tracking_ids"] == ["123456789012", None, None, "AB12CD"]
    assert h["tracking"][0] == 456789012 and h["tracking"][1] == -1 and h["tracking"][2] == -1
    assert 0 <= h["tracking"][3] < 10 ** 9
    assert h["user"].tolist() == [0, -1, 0, 1] and strings["user_ids"] == ["ann_1", "bob_2"]
    assert h["address"].tolist() == [0, 0, 1, 0]                 # #W7 ships to Boston, Ann lives in Austin
    assert h["payment"].tolist() == [0, 0, 1, 0]                 # #W7 paid with Ann's second method
    assert strings["users"][0]["name"] == "Ann Lee" and strings["users"][0]["payment_methods"] == ["card_1", "gift_2"]
    assert np.all((h["age"] >= 0) & (h["age"] <= MAX_AGE_DAYS))


def test_derived_fields_come_from_sha256_of_the_ids(broken):
    catalog, vocab = broken
    u = int.from_bytes(hashlib.sha256(b"1001/rating").digest()[:8], "big") >> 11
    assert float(catalog.rating[0]) == pytest.approx(round(3.0 + 2.0 * (u + 0.5) / 2 ** 53, 1))
    again, _ = _load_quietly(BROKEN)
    a, b = catalog_arrays(catalog), catalog_arrays(again)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    shirts = {vocab.brands[int(catalog.brand[i])] for i in range(3)}
    assert shirts <= set(type_brands("100", BRANDS_PER_TYPE))


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tau_retail(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="has no products.json"):
        load_tau_retail(tmp_path)
    (tmp_path / "products.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tau_retail(tmp_path)
    (tmp_path / "products.json").write_text(json.dumps({"1": {"name": "Hat", "variants": {"a": {"price": 1}}}}))
    with pytest.raises(ValueError, match="every variant is bad"):
        load_tau_retail(tmp_path)
    (tmp_path / "products.json").write_text("42")
    with pytest.raises(ValueError, match="expected a JSON object or array"):
        load_tau_retail(tmp_path)


def test_orders_and_users_are_optional(tmp_path):
    shutil.copy(BROKEN / "products.json", tmp_path / "products.json")
    catalog, vocab = _load_quietly(tmp_path)
    assert catalog.history is None and vocab.history is None and vocab.source["orders"] == 0
    shutil.copy(BROKEN / "orders.json", tmp_path / "orders.json")
    catalog, vocab = _load_quietly(tmp_path)
    assert np.all(np.asarray(catalog.history.user) == -1)
    assert "order_user" not in vocab.source["bad"] and "user" not in vocab.source["bad"]


def test_save_load_round_trip_keeps_history_and_options(broken, tmp_path):
    catalog, vocab = broken
    loaded, lv = load(save(catalog, vocab, tmp_path / "cat"))
    a, b = catalog_arrays(catalog), catalog_arrays(loaded)
    assert a.keys() == b.keys() and any(k.startswith("history.") for k in a)
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    assert lv.options == vocab.options and lv.history == vocab.history
    assert lv.product_ids == vocab.product_ids and lv.titles == vocab.titles


# --------------------------------------------------------------------------- the world draws real orders

def _world_orders(world, o: int) -> tuple[list, list, list]:
    lines = lambda x: np.asarray(x)[o].tolist()  # noqa: E731
    return lines(world.line_product), lines(world.line_qty), lines(world.line_price)


def test_a_small_history_is_drawn_once_and_then_runs_out(broken):
    catalog, _ = broken
    world = empty_world(Capacities(), TODAY)
    world, new = jax.jit(add_orders, static_argnums=4)(jax.random.key(0), world, catalog, jnp.int32(12), True)
    src = np.asarray(world.order_source)
    assert np.asarray(new).sum() == 4 and sorted(src[src >= 0].tolist()) == [0, 1, 2, 3]
    again, more = jax.jit(add_orders, static_argnums=4)(jax.random.key(1), world, catalog, jnp.int32(3), True)
    assert np.asarray(more).sum() == 0 and np.array_equal(np.asarray(again.order_source), src)


@needs_tau
def test_real_data_counts_prices_stock_and_options(tau):
    catalog, vocab = tau
    products = json.loads((TAU / "products.json").read_text())
    variants = {v["item_id"]: v for p in products.values() for v in p["variants"].values()}
    assert vocab.source["bad"] == {} and vocab.source["unmapped_product_types"] == []
    assert vocab.source["product_types"] == 50 and catalog.num_products == len(variants) == 591
    assert vocab.source["orders"] == 1000 and vocab.source["users"] == 500
    for i, pid in enumerate(vocab.product_ids):
        v = variants[pid]
        assert int(catalog.price_cents[i]) == round(v["price"] * 100)
        assert (int(catalog.stock[i]) > 0) == v["available"]
        assert vocab.options[i] == v["options"]
        assert all(str(value) in vocab.title(i) for value in v["options"].values())
        if "color" in v["options"]:
            assert _attr(catalog, vocab, i, "color") == v["options"]["color"].lower()
    assert len(set(np.asarray(catalog.category).tolist())) == 50


@needs_tau
def test_real_order_history_keeps_statuses_lines_and_tracking_ids(tau):
    catalog, vocab = tau
    orders = json.loads((TAU / "orders.json").read_text())
    h, strings = _history(catalog), vocab.history
    mapped = {"pending": "CONFIRMED", "processed": "SHIPPED", "delivered": "DELIVERED", "cancelled": "CANCELLED"}
    for row, order_id in enumerate(strings["order_ids"]):
        order = orders[order_id]
        assert ORDER_STATUSES[h["status"][row]] == mapped[order["status"]]
        units = int(h["qty"][row].sum())
        assert units == len(order["items"])
        cents = int((h["qty"][row] * h["price"][row]).sum())
        assert cents == sum(round(item["price"] * 100) for item in order["items"])
        tracking = [t for f in order["fulfillments"] for t in f["tracking_id"]]
        assert strings["tracking_ids"][row] == (tracking[0] if tracking else None)
        assert h["tracking"][row] == (int(tracking[0][-9:]) if tracking else -1)
        assert strings["user_ids"][h["user"][row]] == order["user_id"]


@needs_tau
def test_world_draws_the_customers_own_real_orders_first(tau):
    catalog, vocab = tau
    h = _history(catalog)
    draw = jax.jit(jax.vmap(lambda k: generate_orders(k, empty_world(Capacities(), TODAY), catalog, jnp.int32(12))))
    worlds = draw(jax.random.split(jax.random.key(3), 64))
    again = draw(jax.random.split(jax.random.key(3), 64))
    assert np.array_equal(np.asarray(worlds.order_source), np.asarray(again.order_source))
    assert h["product"].shape[1] == Capacities().order_lines                     # τ orders have at most 5 lines
    for b in range(64):
        w = jax.tree.map(lambda x: x[b], worlds)
        src, customer = np.asarray(w.order_source), int(w.customer)
        assert np.all(src >= 0) and len(set(src.tolist())) == 12                  # 12 distinct real orders
        own = int((h["user"] == customer).sum())
        assert own >= 1 and np.all(h["user"][src[: min(own, 12)]] == customer)   # the customer's own first
        for o in range(12):
            r = src[o]
            assert _world_orders(w, o) == (h["product"][r].tolist(), h["qty"][r].tolist(), h["price"][r].tolist())
            assert int(w.order_status[o]) == h["status"][r] and int(w.order_tracking[o]) == h["tracking"][r]
            assert TODAY - int(w.order_day[o]) == h["age"][r]
            tid = vocab.history["tracking_ids"][r]
            assert (tid is not None and tid.endswith(f"{int(w.order_tracking[o]):09d}")) == (h["tracking"][r] >= 0)


@needs_tau
def test_journey_style_additions_keep_the_customer_and_never_repeat_an_order(tau):
    catalog, _ = tau
    step = jax.jit(add_orders, static_argnums=4)
    world = empty_world(Capacities(), TODAY)
    customers = []
    for i, n in enumerate((2, 3, 4, 3)):
        world, _ = step(jax.random.key(10 + i), world, catalog, jnp.int32(n), True)
        customers.append(int(world.customer))
    src = np.asarray(world.order_source)
    assert np.all(src >= 0) and len(set(src.tolist())) == 12
    assert len(set(customers)) == 1 and customers[0] >= 0


# --------------------------------------------------------------------------- catalog specs

def test_load_spec_forms(tmp_path):
    catalog, vocab = load_spec("synthetic", num_products=200, seed=1)
    assert catalog.num_products == 200 and vocab.source["kind"] == "synthetic" and catalog.history is None
    catalog, vocab = _load_quietly_spec(f"tau-retail:{BROKEN}")
    assert vocab.source["kind"] == "tau-retail" and catalog.history is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        catalog, vocab = load_spec(f"amazon:{DATA / 'amazon_small.jsonl'}")
    assert vocab.source["kind"] == "amazon"
    saved = save(catalog, vocab, tmp_path / "saved")
    assert load_spec(str(saved))[1].product_ids == vocab.product_ids


def _load_quietly_spec(spec: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_spec(spec)


@pytest.mark.parametrize("spec,error,match", [
    ("tau", ValueError, "unknown catalog spec 'tau'"),
    ("/no/such/dir", ValueError, "unknown catalog spec '/no/such/dir'; expected one of: synthetic"),
    ("tau-retail:", ValueError, "names no path after 'tau-retail:'"),
    ("tau-retail:/no/such/dir", FileNotFoundError, "does not exist"),
    ("amazon:/no/such/file.jsonl", FileNotFoundError, "does not exist"),
])
def test_load_spec_rejects_bad_specs(spec, error, match):
    with pytest.raises(error, match=match):
        load_spec(spec)
