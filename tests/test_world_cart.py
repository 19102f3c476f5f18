"""Cart arithmetic: int32 cents, quantities, stock limits, variants, remove/set-quantity (property tests)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from ecomjax.catalog.schema import MAX_VARIANTS
from ecomjax.world import cart
from ecomjax.world.errors import ToolError
from ecomjax.world.state import MAX_QTY, Capacities, empty_world, make_call

CAP = Capacities(cart_lines=6)
ADD, REMOVE, SET = 5, 6, 7


@pytest.fixture(scope="module")
def ops(small_catalog):
    catalog, _ = small_catalog
    jit = {name: jax.jit(getattr(cart, name)) for name in ("cart_add", "cart_remove", "cart_set_quantity")}
    jit["totals"] = jax.jit(cart.cart_totals)
    return catalog, jit


def _reference_price(catalog, p, v):
    base = int(catalog.price_cents[p])
    return max(1, base + (int(catalog.var_price_delta[p, v]) if v >= 0 else 0))


op_strategy = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "set"]),
        st.integers(-3, 2003),           # product (some out of range)
        st.integers(-1, MAX_VARIANTS),   # variant (some invalid)
        st.integers(-2, 120),            # quantity (some invalid)
        st.integers(-1, 7),              # line (some invalid)
    ),
    min_size=1, max_size=12,
)


@given(op_strategy)
def test_cart_matches_python_model(ops, seq):
    """Random add/remove/set sequences: the JAX cart equals a plain-Python cart, error for error."""
    catalog, f = ops
    stock = np.asarray(catalog.stock)
    var_value = np.asarray(catalog.var_value)
    var_stock = np.asarray(catalog.var_stock)
    world = empty_world(CAP)
    model: dict[int, list] = {}                              # line -> [product, variant, qty]
    created = 0
    n_products = catalog.num_products

    def avail(p, v):
        base = int(stock[p])
        return base if v < 0 else (min(int(var_stock[p, v]), base) if base > 0 else 0)

    for kind, p, v, q, line in seq:
        if kind == "add":
            world, err, ref = f["cart_add"](world, make_call(CAP, ADD, product=p, variant=v, qty=q), catalog)
            same = [ln for ln, (mp, mv, mq) in model.items() if (mp, mv) == (p, v)]
            have = model[same[0]][2] if same else 0
            if not 0 <= p < n_products:
                want = ToolError.UNKNOWN_PRODUCT
            elif v != -1 and not (0 <= v < MAX_VARIANTS and var_value[p, v] >= 0):
                want = ToolError.UNKNOWN_VARIANT
            elif q < 1 or have + q > MAX_QTY:
                want = ToolError.BAD_QUANTITY
            elif have + q > avail(p, v):
                want = ToolError.OUT_OF_STOCK
            elif not same and created >= CAP.cart_lines:
                want = ToolError.CART_FULL
            else:
                want = ToolError.OK
                if same:
                    model[same[0]][2] += q
                else:
                    model[created] = [p, v, q]
                    created += 1
        elif kind == "remove":
            world, err, ref = f["cart_remove"](world, make_call(CAP, REMOVE, line=line), catalog)
            want = ToolError.OK if line in model else ToolError.UNKNOWN_LINE
            model.pop(line, None)
        else:
            world, err, ref = f["cart_set_quantity"](world, make_call(CAP, SET, line=line, qty=q), catalog)
            if line not in model:
                want = ToolError.UNKNOWN_LINE
            elif not 0 <= q <= MAX_QTY:
                want = ToolError.BAD_QUANTITY
            elif q > avail(model[line][0], model[line][1]):
                want = ToolError.OUT_OF_STOCK
            else:
                want = ToolError.OK
                if q == 0:
                    model.pop(line)
                else:
                    model[line][2] = q
        assert int(err) == want, (kind, p, v, q, line)
        units, cents = f["totals"](world, catalog)
        assert int(units) == sum(m[2] for m in model.values())
        assert int(cents) == sum(m[2] * _reference_price(catalog, m[0], m[1]) for m in model.values())
        got = {int(i): [int(world.cart_product[i]), int(world.cart_variant[i]), int(world.cart_qty[i])]
               for i in range(CAP.cart_lines) if int(world.cart_product[i]) >= 0}
        assert got == model


def test_out_of_stock_override_blocks_add(ops):
    """A product out of stock in this episode only cannot be added although the catalog has stock."""
    catalog, f = ops
    p = int(np.nonzero(np.asarray(catalog.stock) > 3)[0][0])
    world = empty_world(CAP)
    world = world.replace(oos=world.oos.at[0].set(p))
    _, err, _ = f["cart_add"](world, make_call(CAP, ADD, product=p, qty=1), catalog)
    assert int(err) == ToolError.OUT_OF_STOCK
    _, err, _ = f["cart_add"](empty_world(CAP), make_call(CAP, ADD, product=p, qty=1), catalog)
    assert int(err) == ToolError.OK


def test_episode_variants_are_valid_only_for_their_product(ops):
    catalog, f = ops
    p, other = [int(i) for i in np.nonzero(np.asarray(catalog.stock) > 3)[0][:2]]
    world = empty_world(CAP)
    world = world.replace(
        xvar_product=world.xvar_product.at[0].set(p), xvar_key=world.xvar_key.at[0].set(0),
        xvar_value=world.xvar_value.at[0].set(jnp.array([1, 2, 3])),
        xvar_price_delta=world.xvar_price_delta.at[0].set(jnp.array([0, 150, -150])))
    new, err, _ = f["cart_add"](world, make_call(CAP, ADD, product=p, variant=MAX_VARIANTS + 1, qty=2), catalog)
    assert int(err) == ToolError.OK
    assert int(f["totals"](new, catalog)[1]) == 2 * (int(catalog.price_cents[p]) + 150)
    _, err, _ = f["cart_add"](world, make_call(CAP, ADD, product=other, variant=MAX_VARIANTS + 1, qty=1), catalog)
    assert int(err) == ToolError.UNKNOWN_VARIANT


def test_line_ids_are_never_reused(ops):
    catalog, f = ops
    a, b = [int(i) for i in np.nonzero(np.asarray(catalog.stock) > 3)[0][:2]]
    world = empty_world(CAP)
    world, _, first = f["cart_add"](world, make_call(CAP, ADD, product=a, qty=1), catalog)
    world, err, _ = f["cart_remove"](world, make_call(CAP, REMOVE, line=first), catalog)
    world, _, second = f["cart_add"](world, make_call(CAP, ADD, product=b, qty=1), catalog)
    assert int(err) == ToolError.OK and int(first) == 0 and int(second) == 1
