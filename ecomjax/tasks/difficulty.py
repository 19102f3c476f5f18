"""The 12 difficulty axes and the per-task schedules, as jittable functions of an integer d >= 0."""

import jax.numpy as jnp
from flax import struct

AXES: tuple[str, ...] = (
    "m", "k_rec", "t_max", "p_missing", "p_noise", "p_switch", "top_k", "eps_rank", "p_oos", "h_orders",
    "b_branch", "b_tool",
)
SCHEDULES: tuple[str, ...] = (
    "delta_max", "alpha", "lambda_sim", "n_items", "p_var", "p_qty", "p_edge", "p_ref", "n_categories", "l_int",
)
MAX_DIFFICULTY = 20          # capacities are sized for d <= 20; larger d saturates at these shapes


def _sigmoid(x):
    return 1.0 / (1.0 + jnp.exp(-x))


@struct.dataclass
class Difficulty:
    """Every axis (SHOPRLVE §5) and schedule at one difficulty. Scalars (or [B] under vmap)."""

    d: jnp.ndarray
    m: jnp.ndarray            # constraint count 2 + d//2
    k_rec: jnp.ndarray        # items to recommend min(10, 3 + d//3)
    t_max: jnp.ndarray        # agent turns 4 + d//2
    p_missing: jnp.ndarray    # slot omission 0.8·σ((d−3)/1.5)
    p_noise: jnp.ndarray      # typo rate clip(0.01·d, 0, 0.125)
    p_switch: jnp.ndarray     # JOURNEY topic switch 0.6·σ((d−5)/2)
    top_k: jnp.ndarray        # retrieval depth max(20, 200 − 10·d)
    eps_rank: jnp.ndarray     # retrieval noise min(0.4, 0.02·d)
    p_oos: jnp.ndarray        # share of close distractors out of stock min(0.5, 0.05·d)
    h_orders: jnp.ndarray     # order history depth 1 + d//2
    b_branch: jnp.ndarray     # policy clauses 1 + d//3
    b_tool: jnp.ndarray       # tool calls per turn 1 + d//2
    delta_max: jnp.ndarray    # numeric slack 0.5·exp(−d/5)        (PD, SUB)
    alpha: jnp.ndarray        # constraint-shaping exponent 4 + d//4 (PD)
    lambda_sim: jnp.ndarray   # similarity weight clip(0.4 + 0.05·d, 0.4, 0.8) (SUB)
    n_items: jnp.ndarray      # min(5, 1 + d//3)                    (CART)
    p_var: jnp.ndarray        # σ((d−2)/1.5)                        (CART)
    p_qty: jnp.ndarray        # min(0.5, 0.1·d)                     (CART)
    p_edge: jnp.ndarray       # 0.7·σ((d−4)/1.5)                    (RETURN)
    p_ref: jnp.ndarray        # σ((d−2)/1.5)                        (STATUS)
    n_categories: jnp.ndarray # min(12, 3 + d//2)                   (BUNDLE)
    l_int: jnp.ndarray        # min(5, 2 + d//4)                    (JOURNEY)


def difficulty(d) -> Difficulty:
    """All axes at integer difficulty d (jnp scalar or array). Negative d is clipped to 0 here; public entry
    points reject it with a clear error before tracing."""
    d = jnp.maximum(jnp.asarray(d, jnp.int32), 0)
    df = d.astype(jnp.float32)
    i32 = lambda x: jnp.asarray(x, jnp.int32)  # noqa: E731
    return Difficulty(
        d=d,
        m=i32(2 + d // 2),
        k_rec=i32(jnp.minimum(10, 3 + d // 3)),
        t_max=i32(4 + d // 2),
        p_missing=0.8 * _sigmoid((df - 3.0) / 1.5),
        p_noise=jnp.clip(0.01 * df, 0.0, 0.125),
        p_switch=0.6 * _sigmoid((df - 5.0) / 2.0),
        top_k=i32(jnp.maximum(20, 200 - 10 * d)),
        eps_rank=jnp.minimum(0.4, 0.02 * df),
        p_oos=jnp.minimum(0.5, 0.05 * df),
        h_orders=i32(1 + d // 2),
        b_branch=i32(1 + d // 3),
        b_tool=i32(1 + d // 2),
        delta_max=0.5 * jnp.exp(-df / 5.0),
        alpha=i32(4 + d // 4),
        lambda_sim=jnp.clip(0.4 + 0.05 * df, 0.4, 0.8),
        n_items=i32(jnp.minimum(5, 1 + d // 3)),
        p_var=_sigmoid((df - 2.0) / 1.5),
        p_qty=jnp.minimum(0.5, 0.1 * df),
        p_edge=0.7 * _sigmoid((df - 4.0) / 1.5),
        p_ref=_sigmoid((df - 2.0) / 1.5),
        n_categories=i32(jnp.minimum(12, 3 + d // 2)),
        l_int=i32(jnp.minimum(5, 2 + d // 4)),
    )


def check_difficulty(d: int) -> int:
    """Host-side validation of a difficulty given by a user: a non-negative int."""
    if isinstance(d, bool) or not isinstance(d, (int,)) and not (hasattr(d, "dtype") and d.dtype.kind in "iu"):
        raise ValueError(f"difficulty must be an integer >= 0, got {d!r}")
    if int(d) < 0:
        raise ValueError(f"difficulty must be >= 0, got {int(d)}")
    return int(d)


def episode_difficulty(d, num_intents) -> Difficulty:
    """Axes of an episode with `num_intents` intents: the turn budget T_max(d) is per intent (a JOURNEY of
    L intents gets L·T_max(d) turns; with one shared T_max most journeys could not be finished)."""
    diff = difficulty(d)
    return diff.replace(t_max=diff.t_max * jnp.maximum(jnp.asarray(num_intents, jnp.int32), 1))
