"""The string ids of the text protocol and their integer indices in the JAX world.

Products use the catalog's own ids (`Vocab.product_id`). Everything else is numbered from 1 in text and
from 0 in arrays: `ord_003` is order slot 2, `ord_003_line_02` its line 1, `line_004` cart slot 3,
`<product id>_v2` variant slot 1 of that product, `ret_001`/`exc_001` return slot 0, `addr_1`/`pay_1`
address/payment 0. Policy rules keep their KB ids (`pol_007`).

Parsing never raises: a malformed or unknown id maps to `UNKNOWN`, an index no world holds, so the jitted
tools answer with their usual "not found" error codes instead of gathering a clamped slot.
"""

import re

from ecomjax.catalog.types import Vocab
from ecomjax.user.text import order_ref as order_id

UNKNOWN = 1 << 30                      # index of no product, order, line, variant, address or payment
_ORDER = re.compile(r"ord_(\d{1,6})")
_ORDER_LINE = re.compile(r"(ord_\d{1,6})_line_(\d{1,4})")
_CART_LINE = re.compile(r"line_(\d{1,6})")
_VARIANT = re.compile(r"(.+)_v(\d{1,3})")
_ADDRESS = re.compile(r"addr_(\d{1,3})")
_PAYMENT = re.compile(r"pay_(\d{1,3})")


def order_line_id(order: int, line: int) -> str:
    return f"{order_id(order)}_line_{int(line) + 1:02d}"


def cart_line_id(line: int) -> str:
    return f"line_{int(line) + 1:03d}"


def variant_id(product_id: str, slot: int) -> str:
    return f"{product_id}_v{int(slot) + 1}"


def return_id(slot: int, exchange: bool = False) -> str:
    return f"{'exc' if exchange else 'ret'}_{int(slot) + 1:03d}"


def address_id(i: int) -> str:
    return f"addr_{int(i) + 1}"


def payment_id(i: int) -> str:
    return f"pay_{int(i) + 1}"


def tracking_id(number: int) -> str | None:
    return None if int(number) < 0 else f"TRK{int(number):09d}"


def _numbered(pattern: re.Pattern, text: object) -> int:
    if not isinstance(text, str):
        return UNKNOWN
    m = pattern.fullmatch(text.strip())
    return int(m.group(1)) - 1 if m and int(m.group(1)) >= 1 else UNKNOWN


def parse_order(text: object) -> int:
    return _numbered(_ORDER, text)


def parse_order_line(text: object) -> tuple[int, int]:
    """(order, line) of "ord_003_line_02"; (UNKNOWN, UNKNOWN) when malformed."""
    if not isinstance(text, str):
        return UNKNOWN, UNKNOWN
    m = _ORDER_LINE.fullmatch(text.strip())
    if not m or int(m.group(2)) < 1:
        return UNKNOWN, UNKNOWN
    return parse_order(m.group(1)), int(m.group(2)) - 1


def parse_cart_line(text: object) -> int:
    return _numbered(_CART_LINE, text)


def parse_address(text: object) -> int:
    return _numbered(_ADDRESS, text)


def parse_payment(text: object) -> int:
    return _numbered(_PAYMENT, text)


def parse_product(text: object, vocab: Vocab) -> int:
    """Product index of an id string; UNKNOWN when the catalog has no such product."""
    if not isinstance(text, str):
        return UNKNOWN
    i = vocab.product_index(text.strip())
    return i if i >= 0 else UNKNOWN


def parse_variant(text: object, product: int, vocab: Vocab) -> int:
    """Variant slot of "<product id>_vN" for `product`; -1 for None; UNKNOWN for anything else (a
    malformed id, or a variant of another product)."""
    if text is None:
        return -1
    if not isinstance(text, str):
        return UNKNOWN
    m = _VARIANT.fullmatch(text.strip())
    if not m or int(m.group(2)) < 1 or parse_product(m.group(1), vocab) != product:
        return UNKNOWN
    return int(m.group(2)) - 1
