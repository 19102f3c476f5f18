"""Every random stream of training, evaluation, the warm start, the text env and the customer LLM: named here,
derived here (DESIGN §2, "one definition per concept").

A stream is a `Stream` name with a fixed 32-bit id, the first four bytes of the SHA-256 of the name (stable
across processes and machines; never Python's `hash()`). From a stream and its indices come
- JAX keys: `stream_key(base, stream, *indices)`, the base key folded with the id, then with each index;
- integer seeds in [0, 2**63): `stream_seed` / `stream_seeds` / `episode_seed`, a 64-bit hash of the id and the
  indices. For a fixed stream and fixed leading indices, the last index maps one-to-one onto seeds; across
  streams and prefixes, two draws share a seed with probability about 2**-63.
Episode seeds are keyed by `seed_keys`, which keeps all 64 bits of a seed (`jax.random.key` keeps only the
low 32 unless 64-bit types are on) and equals `jax.random.key(seed)` for seeds below 2**32.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

STREAM_ID_BYTES = 4
SEED_BITS = 63                               # seeds are non-negative int64 values
_WORD = np.uint64(0xFFFFFFFF)
# Murmur3's 64-bit finalizer (a bijection of uint64) and the golden-ratio increment of SplitMix64.
_SHIFT = np.uint64(33)
_MIX1, _MIX2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class Stream(enum.Enum):
    """The named random streams. A value is the stream's name; renaming one changes everything it draws."""

    TRAIN_PROBLEM = "train/problem"              # env seed of a training problem (shared by its G rollouts)
    TRAIN_SAMPLE = "train/sample"                # the curriculum's draw of a problem batch's tasks and difficulties
    TRAIN_ROLLOUT = "train/rollout"              # the policy's sampling during training rollouts
    HELDOUT_PROBLEM = "heldout/problem"          # env seeds of the fixed held-out episodes (`ecomjax.train`)
    HELDOUT_ROLLOUT = "heldout/rollout"          # the policy's sampling on the held-out episodes
    WARMSTART_PROBLEM = "warmstart/problem"      # env seeds of the warm start's oracle transcripts
    WARMSTART_ORDER = "warmstart/order"          # the order in which the warm start visits its transcripts
    EVAL_EPISODE = "eval/episode"                # reset and step keys of a structured policy under evaluation
    EVAL_PROBLEM = "eval/problem"                # env seeds of a checkpoint's evaluation episodes
    EVAL_ROLLOUT = "eval/rollout"                # a checkpoint's sampling during evaluation
    TEXT_STEP = "text/step"                      # TextEnv's per-episode step keys
    TEXT_ORACLE = "text/oracle"                  # TextEnv's oracle turns
    CUSTOMER_LLM_SAMPLE = "customer_llm/sample"  # the customer LLM's sampling keys
    CUSTOMER_LLM_SEED = "customer_llm/seed"      # `user.text.rng_for` stream of a paraphrase request's seed
    CUSTOMER_LLM_NOISE = "customer_llm/noise"    # `user.text.rng_for` stream of an accepted paraphrase's typos


@functools.cache
def stream_id(stream: Stream) -> int:
    """The stream's fixed 32-bit id: the first STREAM_ID_BYTES bytes of the SHA-256 of its name."""
    return int.from_bytes(hashlib.sha256(stream.value.encode()).digest()[:STREAM_ID_BYTES], "big")


def _uint64(values: ArrayLike, what: str) -> np.ndarray:
    """`values` as a uint64 array; ValueError unless every value is an integer in [0, 2**64)."""
    a = values if isinstance(values, np.ndarray) else np.asarray(values, object)
    if a.dtype == object:
        flat = a.ravel().tolist()
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < 2**64 for v in flat):
            return np.asarray(flat, np.uint64).reshape(a.shape)
    elif a.dtype.kind == "u" or (a.dtype.kind == "i" and not bool((a < 0).any())):
        return a.astype(np.uint64)
    raise ValueError(f"{what}: expected integers in [0, 2**64), got {values!r}")


def _mix64(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> _SHIFT)) * _MIX1
    h = (h ^ (h >> _SHIFT)) * _MIX2
    return h ^ (h >> _SHIFT)


def stream_seeds(stream: Stream, *indices: ArrayLike) -> np.ndarray:
    """int64 seeds in [0, 2**SEED_BITS) of `stream` at `indices` (non-negative integers or integer arrays,
    broadcast together): one seed per element of the broadcast shape."""
    arrays = [_uint64(x, f"{stream.name} index {i}") for i, x in enumerate(indices)]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    with np.errstate(over="ignore"):
        h = np.full(shape, _mix64(np.asarray([stream_id(stream)], np.uint64))[0], np.uint64)
        for a in arrays:
            h = _mix64(h ^ _mix64(a + _GOLDEN))
    return (h >> np.uint64(64 - SEED_BITS)).astype(np.int64)


def stream_seed(stream: Stream, *indices: int) -> int:
    """One seed of `stream` at integer `indices` (`stream_seeds` for scalars)."""
    return int(stream_seeds(stream, *indices))


def episode_seed(run_seed: int, step: int, problem: int, stream: Stream = Stream.TRAIN_PROBLEM) -> int:
    """The env seed of problem `problem` of step `step` of the run seeded `run_seed` (shared by its group)."""
    return stream_seed(stream, run_seed, step, problem)


def seed_keys(seeds: Sequence[int] | np.ndarray) -> jax.Array:
    """[len(seeds)] JAX keys of non-negative integer seeds below 2**64: `jax.random.key(seed)` below 2**32 (the
    same with or without 64-bit types), the key of the low word folded with the high word above."""
    s = _uint64(seeds, "seeds").reshape(-1)
    lo, hi = (s & _WORD).astype(np.uint32), (s >> np.uint64(32)).astype(np.uint32)
    low = jax.vmap(jax.random.key)(lo)
    data = jax.random.key_data(low)
    folded = jax.random.key_data(jax.vmap(jax.random.fold_in)(low, hi))
    wide = jnp.asarray(hi != 0).reshape((-1,) + (1,) * (data.ndim - 1))
    return jax.random.wrap_key_data(jnp.where(wide, folded, data), impl=jax.random.key_impl(low))


def seed_key(seed: int) -> jax.Array:
    """The JAX key of one seed (`seed_keys` for a scalar)."""
    return seed_keys([seed])[0]


def stream_key(base: int | jax.Array, stream: Stream, *indices: int | jax.Array) -> jax.Array:
    """The key of `stream` at `indices` under `base` (a seed or a key; traced keys and indices work under jit
    and vmap). Concrete indices must lie in [0, 2**32)."""
    key = seed_key(base) if isinstance(base, (int, np.integer)) else base
    key = jax.random.fold_in(key, stream_id(stream))
    for i, index in enumerate(indices):
        if isinstance(index, (int, np.integer)) and not 0 <= int(index) < 2**32:
            raise ValueError(f"{stream.name} index {i}: expected an integer in [0, 2**32), got {index!r}")
        key = jax.random.fold_in(key, index)
    return key
