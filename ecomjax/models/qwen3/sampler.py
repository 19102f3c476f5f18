"""Batched autoregressive sampling for Qwen3 with a preallocated KV cache.

Prompts are LEFT padded to a common length P; the cache holds P + N slots (N = max_new_tokens).
The prompt occupies slots 0..P-1 (pads masked out as keys), generated token i occupies slot P + i,
and positions skip padding so a prompt's results do not depend on how much padding it carries.
Prefill (optionally in chunks) and the decode `lax.while_loop` run inside one jitted function.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from ecomjax.models.qwen3.modules import KVCache, Qwen3, init_cache, positions_from_mask
from ecomjax.models.qwen3.sharding import cache_spec, fit_spec, shard_batch

Array = jax.Array
GREEDY_TEMPERATURE = 0.0
# Incremented each time `_generate` is traced (a test hook for "no retracing").
TRACE_COUNTS: Counter[str] = Counter()


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How the next token is drawn. temperature 0 means greedy; top_k 0 and top_p 1 disable those filters."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"invalid sampling parameters {self}")

    @property
    def greedy(self) -> bool:
        """Whether the token is the argmax of the logits."""
        return self.temperature == GREEDY_TEMPERATURE


GREEDY = SamplingParams(temperature=GREEDY_TEMPERATURE)


class Generation(NamedTuple):
    """Sampler output; all arrays are [B, N] except `lengths` [B].

    `logprobs` are log-softmax of the model's raw logits (temperature 1, no top-k/top-p) at the
    sampled token: the behaviour log-probability an RL loss compares against `token_logprobs`.
    `mask` is 1 for tokens actually generated (up to and including a stop token, within the
    sequence's budget); tokens and logprobs are `pad_id` and 0 elsewhere.
    """

    tokens: Array
    logprobs: Array
    mask: Array
    lengths: Array
    logits: Array | None = None  # [B, N, V] raw logits of each step when requested (debugging/tests)


def filter_logits(logits: Array, params: SamplingParams) -> Array:
    """Temperature-scaled logits [B, V] with tokens outside top-k / the top-p nucleus set to -inf."""
    scaled = logits / params.temperature
    if params.top_k:
        kth = jax.lax.top_k(scaled, params.top_k)[0][:, -1:]  # [B, 1]
        scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
    if params.top_p < 1.0:
        ordered = -jnp.sort(-scaled, axis=-1)  # [B, V] descending
        probs = jax.nn.softmax(ordered, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        kept = jnp.sum(mass_before < params.top_p, axis=-1, keepdims=True)  # [B, 1], >= 1
        threshold = jnp.take_along_axis(ordered, kept - 1, axis=-1)
        scaled = jnp.where(scaled < threshold, -jnp.inf, scaled)
    return scaled


def sample_token(key: Array, logits: Array, params: SamplingParams) -> Array:
    """Next token ids [B] drawn from raw logits [B, V]."""
    if params.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, filter_logits(logits, params), axis=-1).astype(jnp.int32)


def _picked_logprob(logits: Array, tokens: Array) -> Array:
    logp = jax.nn.log_softmax(logits, axis=-1)  # [B, V]
    return jnp.take_along_axis(logp, tokens[:, None], axis=-1)[:, 0]  # [B]


def _constrain_cache(x: Array, mesh: Mesh | None) -> Array:
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, fit_spec(cache_spec(), x.shape, mesh)))


def _prefill(
    model: Qwen3,
    prompt: Array,  # [B, P]
    positions: Array,  # [B, P]
    key_valid: Array,  # [B, S]
    cache: KVCache,
    chunk: int,
) -> tuple[Array, KVCache]:
    """Writes the prompt into the cache and returns the raw logits [B, V] after its last token."""
    length = prompt.shape[1]
    h = None
    for start in range(0, length, chunk):
        stop = min(start + chunk, length)
        h, cache = model.hidden_states(
            prompt[:, start:stop], positions[:, start:stop], key_valid, cache, start
        )
    return model.logits(h[:, -1]), cache


class _Loop(NamedTuple):
    step: Array  # [] index of the token sampled last
    token: Array  # [B]
    logits: Array  # [B, V] logits that produced `token`
    done: Array  # [B] finished before this step
    key_valid: Array  # [B, S]
    cache: KVCache
    out_tokens: Array  # [B, N]
    out_logprobs: Array  # [B, N]
    out_mask: Array  # [B, N]
    out_logits: Array | None  # [B, N, V]


def _record(loop: _Loop, stop_ids: Array, budget: Array, pad_id: int) -> tuple[Array, ...]:
    """Writes step `loop.step` into the outputs; returns them with the updated done flags."""
    i = loop.step
    live = ~loop.done  # [B]
    token = jnp.where(live, loop.token, pad_id)
    logprob = jnp.where(live, _picked_logprob(loop.logits, loop.token), 0.0)
    out_tokens = loop.out_tokens.at[:, i].set(token)
    out_logprobs = loop.out_logprobs.at[:, i].set(logprob)
    out_mask = loop.out_mask.at[:, i].set(live.astype(jnp.int32))
    out_logits = None if loop.out_logits is None else loop.out_logits.at[:, i].set(loop.logits)
    done = loop.done | jnp.isin(loop.token, stop_ids) | (i + 1 >= budget)
    return out_tokens, out_logprobs, out_mask, out_logits, done


def _generate(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    prompt: Array,
    prompt_mask: Array,
    budget: Array,
    key: Array,
    *,
    max_new_tokens: int,
    params: SamplingParams,
    stop_tokens: tuple[int, ...],
    pad_id: int,
    prefill_chunk: int,
    return_logits: bool,
    mesh: Mesh | None,
) -> Generation:
    TRACE_COUNTS["generate"] += 1
    model = nnx.merge(graphdef, state)
    cfg = model.config
    batch, prompt_len = prompt.shape
    cache_len = prompt_len + max_new_tokens
    stop_ids = jnp.asarray(stop_tokens or (-1,), jnp.int32)

    prompt_mask = prompt_mask.astype(jnp.int32)
    n_prompt = jnp.sum(prompt_mask, axis=-1)  # [B]
    key_valid = jnp.concatenate(
        [prompt_mask, jnp.zeros((batch, max_new_tokens), jnp.int32)], axis=1
    )  # [B, S]
    cache = init_cache(cfg, batch, cache_len, model.dtype)
    cache = jax.tree.map(lambda c: _constrain_cache(c, mesh), cache)
    logits, cache = _prefill(
        model, prompt, positions_from_mask(prompt_mask), key_valid, cache, prefill_chunk
    )
    per_row = key.ndim == 1
    keys = (jax.vmap(lambda k: jax.random.split(k, max_new_tokens))(key) if per_row
            else jax.random.split(key, max_new_tokens))  # [B, N] or [N]

    def draw(i: Array, logits: Array) -> Array:
        if per_row:
            return jax.vmap(lambda k, row: sample_token(k, row[None], params)[0])(keys[:, i], logits)
        return sample_token(keys[i], logits, params)

    loop = _Loop(
        step=jnp.int32(0),
        token=draw(0, logits),
        logits=logits,
        done=budget <= 0,
        key_valid=key_valid,
        cache=cache,
        out_tokens=jnp.full((batch, max_new_tokens), pad_id, jnp.int32),
        out_logprobs=jnp.zeros((batch, max_new_tokens), jnp.float32),
        out_mask=jnp.zeros((batch, max_new_tokens), jnp.int32),
        out_logits=(
            jnp.zeros((batch, max_new_tokens, cfg.vocab_size), jnp.float32) if return_logits else None
        ),
    )

    def cond(loop: _Loop) -> Array:
        return (loop.step < max_new_tokens - 1) & ~jnp.all(loop.done)

    def body(loop: _Loop) -> _Loop:
        out_tokens, out_logprobs, out_mask, out_logits, done = _record(loop, stop_ids, budget, pad_id)
        i = loop.step
        slot = prompt_len + i
        key_valid = loop.key_valid.at[:, slot].set(1)
        positions = (n_prompt + i)[:, None]  # [B, 1]
        h, cache = model.hidden_states(loop.token[:, None], positions, key_valid, loop.cache, slot)
        logits = model.logits(h[:, 0])  # [B, V]
        token = draw(i + 1, logits)
        return _Loop(
            i + 1, token, logits, done, key_valid, cache, out_tokens, out_logprobs, out_mask, out_logits
        )

    final = jax.lax.while_loop(cond, body, loop)
    out_tokens, out_logprobs, out_mask, out_logits, _ = _record(final, stop_ids, budget, pad_id)
    return Generation(out_tokens, out_logprobs, out_mask, jnp.sum(out_mask, axis=-1), out_logits)


_generate_jit = jax.jit(
    _generate,
    static_argnums=(0,),
    static_argnames=(
        "max_new_tokens",
        "params",
        "stop_tokens",
        "pad_id",
        "prefill_chunk",
        "return_logits",
        "mesh",
    ),
)


def generate(
    model: Qwen3,
    prompt: Array,
    prompt_mask: Array,
    key: Array,
    *,
    max_new_tokens: int,
    params: SamplingParams = SamplingParams(),
    stop_tokens: Sequence[int] = (),
    max_new_per_seq: Array | None = None,
    pad_id: int = 0,
    prefill_chunk: int | None = None,
    return_logits: bool = False,
    mesh: Mesh | None = None,
) -> Generation:
    """Samples up to `max_new_tokens` tokens after each LEFT-padded prompt.

    prompt, prompt_mask: [B, P] token ids and 1/0 real-token mask; every row's last column must be real.
    key: one PRNG key, or a [B] array of keys (one per row): then row b's tokens depend only on its own
    key and prompt, never on the rest of the batch (same episode, same sample, whatever the batching).
    stop_tokens: ids that end a sequence (the stop token itself is kept, with mask 1).
    max_new_per_seq: optional [B] budgets (capped at max_new_tokens).
    prefill_chunk: prompt tokens per prefill pass (bounds attention memory for long prompts).
    mesh: when given, batch arrays are split over "data" and the cache over ("data", "model");
    shard the model with `sharding.shard_model` on the same mesh.
    Compiles once per (model structure, shapes, params, stop_tokens, options).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    batch, prompt_len = prompt.shape
    if prompt_len == 0 or not np.all(np.asarray(prompt_mask[:, -1])):
        raise ValueError("prompts must be non-empty and LEFT padded (last column a real token)")
    budget = jnp.full((batch,), max_new_tokens, jnp.int32)
    if max_new_per_seq is not None:
        budget = jnp.minimum(jnp.asarray(max_new_per_seq, jnp.int32), max_new_tokens)
    prompt, prompt_mask = jnp.asarray(prompt, jnp.int32), jnp.asarray(prompt_mask, jnp.int32)
    if mesh is not None:
        prompt, prompt_mask, budget = (shard_batch(x, mesh) for x in (prompt, prompt_mask, budget))
    graphdef, state = nnx.split(model)
    return _generate_jit(
        graphdef,
        state,
        prompt,
        prompt_mask,
        budget,
        key,
        max_new_tokens=max_new_tokens,
        params=params,
        stop_tokens=tuple(sorted({int(t) for t in stop_tokens})),
        pad_id=pad_id,
        prefill_chunk=prompt_len if prefill_chunk is None else prefill_chunk,
        return_logits=return_logits,
        mesh=mesh,
    )
