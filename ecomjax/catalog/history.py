"""Real order histories a catalog can carry (`Catalog.history`): the orders and customers the world draws from.

`OrderHistory` is a fixed-shape pytree of H real orders with up to L lines each; its strings (order ids,
tracking ids, payment method ids, customer profiles) live host-side in `Vocab.history`. When a catalog
carries one, `world.orders.generate_orders` fills an episode's order slots with real orders (see there);
without one, orders are synthesised. Statuses are ids into `schema.ORDER_STATUSES`.
"""

import jax.numpy as jnp
import numpy as np
from flax import struct

MAX_AGE_DAYS = 90             # orders are placed 0..90 days before the episode's today (as synthetic ones)
HISTORY_FIELDS: tuple[str, ...] = (
    "status", "age", "tracking", "address", "payment", "user", "product", "variant", "qty", "price",
)


@struct.dataclass
class OrderHistory:
    """H real orders, L line slots each (-1 / 0 pads), owned by U customers."""

    status: jnp.ndarray           # [H] int32 index into schema.ORDER_STATUSES
    age: jnp.ndarray              # [H] int32 days between placing the order and the episode's today
    tracking: jnp.ndarray         # [H] int32 tracking number (last 9 digits of the real id), -1 none
    address: jnp.ndarray          # [H] int32 0 = the customer's address on file, 1 = another address
    payment: jnp.ndarray          # [H] int32 0 = the customer's first payment method, 1 = another one
    user: jnp.ndarray             # [H] int32 owning customer (row of Vocab.history["users"]), -1 unknown
    product: jnp.ndarray          # [H, L] int32 catalog product per line, -1 empty
    variant: jnp.ndarray          # [H, L] int32 catalog variant slot, -1 none
    qty: jnp.ndarray              # [H, L] int32 units, 0 on empty lines
    price: jnp.ndarray            # [H, L] int32 unit price paid, cents

    @property
    def num_orders(self) -> int:
        return self.status.shape[0]

    @property
    def num_lines(self) -> int:
        return self.product.shape[1]


def history_from_arrays(arrays: dict[str, np.ndarray]) -> OrderHistory:
    """An OrderHistory from host arrays named as its fields (raises ValueError naming a missing one)."""
    missing = [name for name in HISTORY_FIELDS if name not in arrays]
    if missing:
        raise ValueError(f"order history is missing arrays {missing}")
    return OrderHistory(**{name: jnp.asarray(np.asarray(arrays[name], np.int32)) for name in HISTORY_FIELDS})


def history_arrays(history: OrderHistory) -> dict[str, np.ndarray]:
    """The history's fields as host arrays (the inverse of `history_from_arrays`)."""
    return {name: np.asarray(getattr(history, name)) for name in HISTORY_FIELDS}
