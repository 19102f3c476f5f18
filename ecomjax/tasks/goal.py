"""The hidden goal: one IntentGoal per intent (JOURNEY has up to MAX_INTENTS, other tasks one), and the
slot space the customer can state, omit and reveal."""

import jax.numpy as jnp
import numpy as np
from flax import struct

from ecomjax.tasks.constraints import MAX_CONSTRAINTS

TASK_NAMES: tuple[str, ...] = ("PD", "SUB", "CART", "RETURN", "STATUS", "POLICY", "BUNDLE", "JOURNEY")
TASK = {name: i for i, name in enumerate(TASK_NAMES)}
NUM_TASKS = len(TASK_NAMES)
MAX_INTENTS = 5              # L_int(20)
MAX_ITEMS = 5                # CART n_items(20)
MAX_CATEGORIES = 12          # BUNDLE |S_req|(20)
MAX_REC = 10                 # k_rec cap
POOL = 16                    # PD/SUB feasible pool size (the generator keeps the pool within search reach)

# Slot space of one intent: constraints, then CART variant and quantity per item, then singletons.
SLOT_VARIANT = MAX_CONSTRAINTS
SLOT_QTY = SLOT_VARIANT + MAX_ITEMS
SLOT_ORDER = SLOT_QTY + MAX_ITEMS
SLOT_BUDGET = SLOT_ORDER + 1
SLOT_REASON = SLOT_BUDGET + 1
NUM_SLOTS = SLOT_REASON + 1
GENERIC_SLOT = NUM_SLOTS     # "anything else I should know?" reveals one pending slot

PERSONAS: tuple[str, ...] = ("budget", "quality", "speed", "balanced")
# Utility weights (price, rating, ship, brand, sim) of each persona.
PERSONA_WEIGHTS = np.array([
    [0.60, 0.15, 0.15, 0.05, 0.05],
    [0.05, 0.45, 0.05, 0.35, 0.10],
    [0.15, 0.15, 0.60, 0.05, 0.05],
    [0.20, 0.20, 0.20, 0.20, 0.20],
], np.float32)


@struct.dataclass
class IntentGoal:
    """What one intent wants. Fields a task does not use keep their defaults (see `empty_intent`)."""

    task: jnp.ndarray            # [] int32 index into TASK_NAMES, -1 unused intent
    c_key: jnp.ndarray           # [M] int32 constraint keys (constraints.CONSTRAINT_KEYS)
    c_op: jnp.ndarray            # [M] int32 EQ / LTE / GTE
    c_value: jnp.ndarray         # [M] float32 value id or number (price in dollars)
    c_mask: jnp.ndarray          # [M] bool
    mentioned: jnp.ndarray       # [NUM_SLOTS] bool slots stated in the opening message
    needed: jnp.ndarray          # [NUM_SLOTS] bool slots this intent has at all
    persona: jnp.ndarray         # [] int32 index into PERSONAS (one draw for verifier and customer)
    anchor: jnp.ndarray          # [] int32 PD target / SUB original / RETURN product / STATUS product
    items: jnp.ndarray           # [N] int32 CART target products, -1 unused
    item_variant: jnp.ndarray    # [N] int32 required variant slot, -1 any
    item_qty: jnp.ndarray        # [N] int32 units wanted
    order: jnp.ndarray           # [] int32 target order (RETURN, STATUS)
    line: jnp.ndarray            # [] int32 target order line (RETURN)
    status: jnp.ndarray          # [] int32 target order status (STATUS)
    eligible: jnp.ndarray        # [] bool RETURN target line eligible
    replacement: jnp.ndarray     # [] bool RETURN wants an exchange satisfying the constraints
    reason: jnp.ndarray          # [] int32 RETURN reason code
    rule: jnp.ndarray            # [] int32 POLICY rule
    row: jnp.ndarray             # [] int32 POLICY answer-table row
    answer_num: jnp.ndarray      # [] float32 POLICY numeric answer (NaN if categorical)
    answer_cat: jnp.ndarray      # [] int32 POLICY categorical answer id (-1 if numeric)
    cats: jnp.ndarray            # [NCAT] int32 BUNDLE required leaf categories, -1 unused
    budget: jnp.ndarray          # [] int32 BUNDLE budget cents, -1 none
    k_rec: jnp.ndarray           # [] int32 recommendations scored
    pool: jnp.ndarray            # [POOL] int32 PD/SUB evaluation pool (feasible, in stock, allowed), -1 pads
    pool_util: jnp.ndarray       # [POOL] float32 utility of each pool product
    idcg: jnp.ndarray            # [] float32 ideal DCG of the best k_rec pool products
    price_lo: jnp.ndarray        # [] float32 min price (cents, an exact integer) over the pool, for phi_price
    price_hi: jnp.ndarray        # [] float32 max price (cents) over the pool


def empty_intent() -> IntentGoal:
    i32 = lambda v: jnp.int32(v)  # noqa: E731
    return IntentGoal(
        task=i32(-1), c_key=jnp.zeros((MAX_CONSTRAINTS,), jnp.int32), c_op=jnp.zeros((MAX_CONSTRAINTS,), jnp.int32),
        c_value=jnp.zeros((MAX_CONSTRAINTS,), jnp.float32), c_mask=jnp.zeros((MAX_CONSTRAINTS,), bool),
        mentioned=jnp.zeros((NUM_SLOTS,), bool), needed=jnp.zeros((NUM_SLOTS,), bool), persona=i32(0),
        anchor=i32(-1), items=jnp.full((MAX_ITEMS,), -1, jnp.int32), item_variant=jnp.full((MAX_ITEMS,), -1, jnp.int32),
        item_qty=jnp.zeros((MAX_ITEMS,), jnp.int32), order=i32(-1), line=i32(-1), status=i32(-1),
        eligible=jnp.asarray(False), replacement=jnp.asarray(False), reason=i32(0), rule=i32(-1), row=i32(-1),
        answer_num=jnp.float32(jnp.nan), answer_cat=i32(-1), cats=jnp.full((MAX_CATEGORIES,), -1, jnp.int32),
        budget=i32(-1), k_rec=i32(0), pool=jnp.full((POOL,), -1, jnp.int32), pool_util=jnp.zeros((POOL,), jnp.float32),
        idcg=jnp.float32(0.0), price_lo=jnp.float32(0.0), price_hi=jnp.float32(1.0),
    )
