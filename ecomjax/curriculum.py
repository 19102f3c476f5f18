"""RLVE adaptive difficulty (SPEC §9): per-task windows ``[low, high]`` as arrays.

Each task family keeps a difficulty window, starting at ``[0, 0]``. Problems are drawn with
``d ~ U{low, ..., high}``. Only episodes at the frontier (``d == high``) are counted; after
``tau_num`` of them the frontier accuracy is checked: at ``>= tau_acc`` the window moves up one
level. The counters reset at every check and the window never moves down.

Two window rules are available through ``CurriculumConfig.variant``:

* ``"rlve"`` (default, the RLVE paper): after a promotion ``low = max(low, high - d_delta + 1)``,
  so the window holds ``d_delta`` levels.
* ``"shoprlve"`` (the prior system, R§6): ``if high - low > d_delta: low = high - d_delta``,
  so the window holds ``d_delta + 1`` levels.

``update`` consumes a whole batch of outcomes and is exactly equal to feeding the same outcomes
one at a time, in batch order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ecomjax.tasks.goal import TASK_NAMES

NUM_TASKS: int = len(TASK_NAMES)
_TASK_ID: dict[str, int] = {name: i for i, name in enumerate(TASK_NAMES)}

# Collections of the prior system's code (R§10) and of the published blog (C1 = CART).
_CODE_NESTING: tuple[str, ...] = TASK_NAMES
_BLOG_NESTING: tuple[str, ...] = (
    "CART", "SUB", "PD", "RETURN", "STATUS", "POLICY", "BUNDLE", "JOURNEY",
)
_COLLECTION_SIZES: tuple[int, ...] = (1, 2, 4, 8)
BLOG_SUFFIX = "-blog"
COLLECTIONS: dict[str, tuple[int, ...]] = {
    **{f"C{n}": tuple(_TASK_ID[t] for t in _CODE_NESTING[:n]) for n in _COLLECTION_SIZES},
    **{
        f"C{n}{BLOG_SUFFIX}": tuple(_TASK_ID[t] for t in _BLOG_NESTING[:n])
        for n in _COLLECTION_SIZES
    },
    **{name: (i,) for i, name in enumerate(TASK_NAMES)},
}

VARIANTS: tuple[str, ...] = ("rlve", "shoprlve")
DEFAULT_TAU_ACC = 0.9
DEFAULT_TAU_NUM = 32
DEFAULT_D_DELTA = 4

# Static difficulty distributions for the ablations (blog: static-low / static-high).
STATIC_LOW: tuple[int, int] = (0, 2)
STATIC_HIGH: tuple[int, int] = (0, 10)

_STATE_FIELDS: tuple[str, ...] = ("low", "high", "correct", "total")


def collection_tasks(name: str) -> tuple[int, ...]:
    """Task ids of a collection ("C1".."C8", "C1-blog".."C8-blog") or of one task name."""
    if not isinstance(name, str) or name not in COLLECTIONS:
        raise ValueError(
            f"collection: unknown value {name!r}; expected one of {sorted(COLLECTIONS)}"
        )
    return COLLECTIONS[name]


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """Hyper-parameters of the adaptive curriculum (hashable, static under jit)."""

    tau_acc: float = DEFAULT_TAU_ACC
    tau_num: int = DEFAULT_TAU_NUM
    d_delta: int = DEFAULT_D_DELTA
    variant: str = "rlve"

    def __post_init__(self) -> None:
        acc = self.tau_acc
        if (
            isinstance(acc, (bool, np.bool_))
            or not isinstance(acc, (int, float, np.integer, np.floating))
            or not math.isfinite(float(acc))
            or not 0.0 <= float(acc) <= 1.0
        ):
            raise ValueError(f"tau_acc: expected a number in [0, 1], got {acc!r}")
        if not _is_int(self.tau_num) or self.tau_num < 1:
            raise ValueError(f"tau_num: expected an integer >= 1, got {self.tau_num!r}")
        if not _is_int(self.d_delta) or self.d_delta < 1:
            raise ValueError(f"d_delta: expected an integer >= 1, got {self.d_delta!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {self.variant!r}")
        object.__setattr__(self, "tau_acc", float(acc))
        object.__setattr__(self, "tau_num", int(self.tau_num))
        object.__setattr__(self, "d_delta", int(self.d_delta))

    @property
    def window(self) -> int:
        """Number of difficulty levels a full window holds."""
        return self.d_delta if self.variant == "rlve" else self.d_delta + 1

    @property
    def min_correct(self) -> int:
        """Fewest correct frontier episodes out of ``tau_num`` that promote (a/b >= tau_acc)."""
        return next(a for a in range(self.tau_num + 1) if a / self.tau_num >= self.tau_acc)


@struct.dataclass
class CurriculumState:
    """Per-task windows and frontier counters; ``config`` is static (part of the treedef)."""

    low: jax.Array  # i32[T]
    high: jax.Array  # i32[T]
    correct: jax.Array  # i32[T] correct frontier episodes since the last check
    total: jax.Array  # i32[T] frontier episodes since the last check
    config: CurriculumConfig = struct.field(pytree_node=False, default=CurriculumConfig())


def init(config: CurriculumConfig | None = None) -> CurriculumState:
    """The starting state: every task at window ``[0, 0]`` with zero counters."""
    config = CurriculumConfig() if config is None else config
    if not isinstance(config, CurriculumConfig):
        raise ValueError(f"config: expected a CurriculumConfig, got {config!r}")
    zeros = jnp.zeros((NUM_TASKS,), jnp.int32)  # [T]
    return CurriculumState(low=zeros, high=zeros, correct=zeros, total=zeros, config=config)


def _concrete(x: Any) -> np.ndarray | None:
    """The value of ``x`` when it is known outside a trace, else None."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def _batch_array(name: str, x: Any, size: int | None, kinds: str) -> jax.Array:
    arr = jnp.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if size is not None and arr.shape[0] != size:
        raise ValueError(f"{name}: expected length {size}, got length {arr.shape[0]}")
    if arr.dtype.kind not in kinds:
        raise ValueError(f"{name}: expected dtype kind in {kinds!r}, got {arr.dtype}")
    return arr


def _check_task_ids(name: str, task: jax.Array, mask: jax.Array | None = None) -> None:
    values = _concrete(task)
    if values is None:
        return
    if mask is not None:
        m = _concrete(mask)
        if m is None:
            return
        values = values[m]
    bad = values[(values < 0) | (values >= NUM_TASKS)]
    if bad.size:
        raise ValueError(f"{name}: task id {int(bad[0])} out of range [0, {NUM_TASKS})")


def _check_difficulty(difficulty: jax.Array, mask: jax.Array) -> None:
    values, m = _concrete(difficulty), _concrete(mask)
    if values is None or m is None:
        return
    bad = values[m & (values < 0)]
    if bad.size:
        raise ValueError(f"difficulty: expected >= 0, got {int(bad[0])}")


def _promote_low(low: jax.Array, high: jax.Array, config: CurriculumConfig) -> jax.Array:
    """The lower edge after ``high`` was raised: the window slides up, never down."""
    return jnp.maximum(low, high - config.window + 1)


def update(
    state: CurriculumState,
    task: jax.Array,
    difficulty: jax.Array,
    is_correct: jax.Array,
    valid: jax.Array | None = None,
) -> CurriculumState:
    """The state after a batch of episode outcomes, as if they were fed one by one in order.

    ``task`` i32[B], ``difficulty`` i32[B], ``is_correct`` bool[B], ``valid`` bool[B] (entries
    with ``valid == False`` are ignored; None means all valid). With concrete inputs an
    out-of-range task id or a negative difficulty raises ValueError; under a trace such
    entries are ignored.
    """
    config = state.config
    task = _batch_array("task", task, None, "iu")  # [B]
    size = task.shape[0]
    difficulty = _batch_array("difficulty", difficulty, size, "iu")  # [B]
    is_correct = _batch_array("is_correct", is_correct, size, "biu") != 0  # [B]
    if valid is None:
        valid = jnp.ones((size,), bool)
    valid = _batch_array("valid", valid, size, "b")  # [B]
    _check_task_ids("task", task, valid)
    _check_difficulty(difficulty, valid)

    task = task.astype(jnp.int32)
    difficulty = difficulty.astype(jnp.int32)
    in_range = (task >= 0) & (task < NUM_TASKS) & (difficulty >= 0)  # [B]
    live = valid & in_range  # [B]
    safe_task = jnp.where(live, task, 0)  # [B]

    def step(carry, x):
        low, high, correct, total = carry  # each [T]
        t, d, c, ok = x  # scalars
        h = high[t]
        counts = ok & (d == h)
        b = total[t] + counts.astype(jnp.int32)
        a = correct[t] + (counts & c).astype(jnp.int32)
        check = counts & (b >= config.tau_num)
        promote = check & (a >= config.min_correct)
        new_h = h + promote.astype(jnp.int32)
        new_l = jnp.where(promote, _promote_low(low[t], new_h, config), low[t])
        carry = (
            low.at[t].set(new_l),
            high.at[t].set(new_h),
            correct.at[t].set(jnp.where(check, 0, a)),
            total.at[t].set(jnp.where(check, 0, b)),
        )
        return carry, None

    init_carry = tuple(getattr(state, f).astype(jnp.int32) for f in _STATE_FIELDS)
    (low, high, correct, total), _ = jax.lax.scan(
        step, init_carry, (safe_task, difficulty, is_correct, live)
    )
    return state.replace(low=low, high=high, correct=correct, total=total)


def _task_array(tasks: Any) -> jax.Array:
    arr = _batch_array("tasks", tasks, None, "iu")  # [K]
    if arr.shape[0] == 0:
        raise ValueError("tasks: expected a non-empty collection, got 0 tasks")
    _check_task_ids("tasks", arr)
    return jnp.clip(arr.astype(jnp.int32), 0, NUM_TASKS - 1)


def _check_batch_size(batch_size: Any) -> int:
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def _sample_tasks(key: jax.Array, tasks: jax.Array, batch_size: int) -> jax.Array:
    """Tasks uniform over the collection ``tasks`` i32[K]."""
    index = jax.random.randint(key, (batch_size,), 0, tasks.shape[0])  # [B]
    return tasks[index]  # [B]


def sample(
    key: jax.Array, state: CurriculumState, tasks: Any, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    """``(task i32[B], difficulty i32[B])``: task uniform over ``tasks``, d ~ U{low, high}."""
    batch_size = _check_batch_size(batch_size)
    tasks = _task_array(tasks)  # [K]
    key_task, key_diff = jax.random.split(key)
    task = _sample_tasks(key_task, tasks, batch_size)  # [B]
    low, high = state.low[task], state.high[task]  # [B]
    difficulty = jax.random.randint(key_diff, (batch_size,), low, high + 1)  # [B]
    return task, difficulty.astype(jnp.int32)


def sample_static(
    key: jax.Array, tasks: Any, batch_size: int, low: int, high: int
) -> tuple[jax.Array, jax.Array]:
    """``(task i32[B], difficulty i32[B])`` with d ~ U{low, ..., high} for every task."""
    batch_size = _check_batch_size(batch_size)
    if not _is_int(low) or low < 0:
        raise ValueError(f"low: expected an integer >= 0, got {low!r}")
    if not _is_int(high) or high < low:
        raise ValueError(f"high: expected an integer >= low ({low}), got {high!r}")
    tasks = _task_array(tasks)  # [K]
    key_task, key_diff = jax.random.split(key)
    task = _sample_tasks(key_task, tasks, batch_size)  # [B]
    difficulty = jax.random.randint(key_diff, (batch_size,), low, high + 1)  # [B]
    return task, difficulty.astype(jnp.int32)


def to_dict(state: CurriculumState) -> dict[str, Any]:
    """A JSON-friendly dict: config plus ``{task name: {low, high, correct, total}}``."""
    config = state.config
    columns = {f: np.asarray(getattr(state, f)).tolist() for f in _STATE_FIELDS}
    return {
        "env_ids": list(TASK_NAMES),
        "tau_acc": config.tau_acc,
        "tau_num": config.tau_num,
        "d_delta": config.d_delta,
        "variant": config.variant,
        "states": {
            name: {f: int(columns[f][i]) for f in _STATE_FIELDS}
            for i, name in enumerate(TASK_NAMES)
        },
    }


def _field_int(where: str, entry: Mapping[str, Any], field: str) -> int:
    if field not in entry:
        raise ValueError(f"{where}.{field}: missing")
    value = entry[field]
    if not _is_int(value) or value < 0:
        raise ValueError(f"{where}.{field}: expected an integer >= 0, got {value!r}")
    return int(value)


def from_dict(data: Mapping[str, Any]) -> CurriculumState:
    """The state written by ``to_dict``; tasks absent from ``states`` start at ``[0, 0]``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"data: expected a mapping, got {type(data).__name__}")
    config = CurriculumConfig(
        tau_acc=data.get("tau_acc", DEFAULT_TAU_ACC),
        tau_num=data.get("tau_num", DEFAULT_TAU_NUM),
        d_delta=data.get("d_delta", DEFAULT_D_DELTA),
        variant=data.get("variant", "rlve"),
    )
    states = data.get("states", {})
    if not isinstance(states, Mapping):
        raise ValueError(f"states: expected a mapping, got {type(states).__name__}")
    columns = {f: [0] * NUM_TASKS for f in _STATE_FIELDS}
    for name, entry in states.items():
        if name not in _TASK_ID:
            raise ValueError(f"states: unknown task name {name!r}; expected one of {TASK_NAMES}")
        if not isinstance(entry, Mapping):
            raise ValueError(f"states.{name}: expected a mapping, got {type(entry).__name__}")
        values = {f: _field_int(f"states.{name}", entry, f) for f in _STATE_FIELDS}
        if values["low"] > values["high"]:
            raise ValueError(f"states.{name}.low: {values['low']} > high {values['high']}")
        if values["correct"] > values["total"]:
            raise ValueError(
                f"states.{name}.correct: {values['correct']} > total {values['total']}"
            )
        if values["total"] >= config.tau_num:
            raise ValueError(
                f"states.{name}.total: {values['total']} >= tau_num {config.tau_num}"
            )
        for f in _STATE_FIELDS:
            columns[f][_TASK_ID[name]] = values[f]
    arrays = {f: jnp.asarray(columns[f], jnp.int32) for f in _STATE_FIELDS}
    return CurriculumState(**arrays, config=config)


def summary(state: CurriculumState) -> dict[str, dict[str, Any]]:
    """Per task name: ``low``, ``high``, ``frontier_accuracy`` (None before any frontier
    episode) and ``frontier_total`` for logging."""
    columns = {f: np.asarray(getattr(state, f)).tolist() for f in _STATE_FIELDS}
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(TASK_NAMES):
        total = int(columns["total"][i])
        out[name] = {
            "low": int(columns["low"][i]),
            "high": int(columns["high"][i]),
            "frontier_accuracy": columns["correct"][i] / total if total else None,
            "frontier_total": total,
        }
    return out


__all__ = (
    "TASK_NAMES",
    "NUM_TASKS",
    "COLLECTIONS",
    "VARIANTS",
    "STATIC_LOW",
    "STATIC_HIGH",
    "CurriculumConfig",
    "CurriculumState",
    "collection_tasks",
    "init",
    "update",
    "sample",
    "sample_static",
    "to_dict",
    "from_dict",
    "summary",
)
