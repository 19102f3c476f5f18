"""Qwen3 KV-cache sampler: cache/full-forward agreement, padding invariance, sampling, stops, sharding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ecomjax.models.qwen3 import Qwen3, forward, positions_from_mask, tiny_config, token_logprobs
from ecomjax.models.qwen3.sampler import (
    GREEDY,
    TRACE_COUNTS,
    SamplingParams,
    filter_logits,
    generate,
)
from ecomjax.models.qwen3.sharding import make_mesh, shard_model

VOCAB = 128
NEW = 8
LOGIT_TOL = 1e-4
LOGPROB_TOL = 1e-5
PROMPTS = ([5, 17, 99, 3, 42], [7, 8], [64, 1, 2, 3, 4, 5, 6])


@pytest.fixture(scope="module")
def model() -> Qwen3:
    cfg = tiny_config(vocab_size=VOCAB, initializer_range=0.3)
    return Qwen3.from_config(cfg, rngs=nnx.Rngs(0))


def left_pad(prompts, extra: int = 0, pad_id: int = 0) -> tuple[jax.Array, jax.Array]:
    """[B, P] tokens and mask with each prompt right-aligned; P = longest prompt + extra."""
    width = max(map(len, prompts)) + extra
    tokens = np.full((len(prompts), width), pad_id, np.int32)
    mask = np.zeros((len(prompts), width), np.int32)
    for row, prompt in enumerate(prompts):
        tokens[row, width - len(prompt) :] = prompt
        mask[row, width - len(prompt) :] = 1
    return jnp.asarray(tokens), jnp.asarray(mask)


def test_cached_decoding_equals_full_forward(model: Qwen3) -> None:
    tokens, mask = left_pad(PROMPTS)
    out = generate(model, tokens, mask, jax.random.key(0), max_new_tokens=NEW, params=GREEDY, return_logits=True)
    assert out.tokens.shape == out.logprobs.shape == out.mask.shape == (len(PROMPTS), NEW)
    assert np.all(out.mask == 1)
    seq = jnp.concatenate([tokens, out.tokens], axis=1)
    seq_mask = jnp.concatenate([mask, out.mask], axis=1)
    full = forward(model, seq, positions_from_mask(seq_mask), seq_mask)
    prompt_len = tokens.shape[1]
    step_logits = full[:, prompt_len - 1 : -1]  # logits that predicted each generated token
    np.testing.assert_allclose(out.logits, step_logits, atol=LOGIT_TOL, rtol=0)
    np.testing.assert_array_equal(out.tokens, jnp.argmax(step_logits, axis=-1))
    expected = token_logprobs(model, seq, seq_mask)[:, prompt_len - 1 :]
    np.testing.assert_allclose(out.logprobs, expected, atol=LOGPROB_TOL, rtol=0)


def test_result_does_not_depend_on_padding(model: Qwen3) -> None:
    outs = [
        generate(model, *left_pad(PROMPTS, extra), jax.random.key(0), max_new_tokens=NEW, params=GREEDY)
        for extra in (0, 5)
    ]
    np.testing.assert_array_equal(outs[0].tokens, outs[1].tokens)
    np.testing.assert_allclose(outs[0].logprobs, outs[1].logprobs, atol=LOGPROB_TOL, rtol=0)
    alone = generate(model, *left_pad(PROMPTS[1:2]), jax.random.key(0), max_new_tokens=NEW, params=GREEDY)
    np.testing.assert_array_equal(alone.tokens[0], outs[0].tokens[1])
    np.testing.assert_allclose(alone.logprobs[0], outs[0].logprobs[1], atol=LOGPROB_TOL, rtol=0)


@pytest.mark.parametrize(
    "params",
    [SamplingParams(temperature=0.8), SamplingParams(top_k=5), SamplingParams(temperature=1.3, top_p=0.7)],
    ids=["temperature", "top_k", "top_p"],
)
def test_sampling_is_reproducible_and_logprobs_are_raw(model: Qwen3, params: SamplingParams) -> None:
    tokens, mask = left_pad(PROMPTS)

    def run(seed: int):
        key = jax.random.key(seed)
        return generate(model, tokens, mask, key, max_new_tokens=NEW, params=params, return_logits=True)

    first, again, other = run(1), run(1), run(2)
    np.testing.assert_array_equal(first.tokens, again.tokens)
    np.testing.assert_array_equal(first.logprobs, again.logprobs)
    assert not np.array_equal(first.tokens, other.tokens)
    raw = jnp.take_along_axis(jax.nn.log_softmax(first.logits, -1), first.tokens[..., None], -1)[..., 0]
    np.testing.assert_allclose(first.logprobs, raw, atol=1e-6)
    allowed = np.isfinite(np.asarray(jax.vmap(lambda lg: filter_logits(lg, params))(first.logits)))
    assert np.take_along_axis(allowed, np.asarray(first.tokens)[..., None], -1).all()
    if params.top_k:
        rank = jnp.sum(first.logits > jnp.take_along_axis(first.logits, first.tokens[..., None], -1), -1)
        assert np.all(rank < params.top_k)


def test_per_row_keys_make_a_row_independent_of_the_batch(model: Qwen3) -> None:
    params = SamplingParams(temperature=1.0)
    keys = jax.random.split(jax.random.key(3), len(PROMPTS))
    batch = generate(model, *left_pad(PROMPTS), keys, max_new_tokens=NEW, params=params)
    alone = generate(model, *left_pad(PROMPTS[2:3]), keys[2:3], max_new_tokens=NEW, params=params)
    np.testing.assert_array_equal(alone.tokens[0], batch.tokens[2])
    np.testing.assert_allclose(alone.logprobs[0], batch.logprobs[2], atol=LOGPROB_TOL, rtol=0)
    swapped = generate(model, *left_pad(PROMPTS[::-1]), keys[::-1], max_new_tokens=NEW, params=params)
    np.testing.assert_array_equal(swapped.tokens[::-1], batch.tokens)
    other = generate(model, *left_pad(PROMPTS), jax.random.split(jax.random.key(4), len(PROMPTS)),
                     max_new_tokens=NEW, params=params)
    assert not np.array_equal(other.tokens, batch.tokens)


def test_filter_logits_top_k_and_top_p() -> None:
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.15, 0.1]]))
    top2 = filter_logits(logits, SamplingParams(top_k=2))
    np.testing.assert_array_equal(np.isfinite(top2), [[True, True, False, False]])
    nucleus = filter_logits(logits, SamplingParams(top_p=0.7))
    np.testing.assert_array_equal(np.isfinite(nucleus), [[True, True, False, False]])
    assert np.isfinite(filter_logits(logits, SamplingParams(top_p=0.1))).sum() == 1


def test_stop_tokens_and_per_sequence_budgets(model: Qwen3) -> None:
    tokens, mask = left_pad(PROMPTS)
    free = generate(model, tokens, mask, jax.random.key(0), max_new_tokens=NEW, params=GREEDY)
    stop = int(free.tokens[0, 2])
    first_stop = [int(np.argmax(np.asarray(row) == stop)) if stop in row else NEW for row in free.tokens]
    budgets = jnp.array([NEW, 3, 0])
    out = generate(
        model,
        tokens,
        mask,
        jax.random.key(0),
        max_new_tokens=NEW,
        params=GREEDY,
        stop_tokens={stop, VOCAB + 1},
        max_new_per_seq=budgets,
    )
    for row in range(len(PROMPTS)):
        length = min(first_stop[row] + 1, int(budgets[row]))
        assert int(out.lengths[row]) == length
        np.testing.assert_array_equal(out.mask[row], np.arange(NEW) < length)
        np.testing.assert_array_equal(out.tokens[row, :length], free.tokens[row, :length])
        np.testing.assert_allclose(out.logprobs[row, :length], free.logprobs[row, :length], atol=LOGPROB_TOL)
        assert np.all(out.tokens[row, length:] == 0) and np.all(out.logprobs[row, length:] == 0)
    assert int(out.tokens[0, first_stop[0]]) == stop


def test_no_retrace_for_same_shapes(model: Qwen3) -> None:
    tokens, mask = left_pad(PROMPTS, extra=1)
    params = SamplingParams(temperature=0.9, top_k=7)
    generate(model, tokens, mask, jax.random.key(0), max_new_tokens=NEW, params=params)
    before = TRACE_COUNTS["generate"]
    other_tokens, other_mask = left_pad(([9, 9, 9], [1], [2, 3, 4, 5, 6, 7, 8, 9]))
    out = generate(model, other_tokens, other_mask, jax.random.key(5), max_new_tokens=NEW, params=params)
    jax.block_until_ready(out)
    assert TRACE_COUNTS["generate"] == before


def test_rejects_right_padding(model: Qwen3) -> None:
    tokens, mask = left_pad(PROMPTS)
    with pytest.raises(ValueError, match="LEFT padded"):
        generate(model, tokens[:, ::-1], mask[:, ::-1], jax.random.key(0), max_new_tokens=2)


def test_sharded_generation_equals_unsharded(model: Qwen3, cpu_devices) -> None:
    prompts = PROMPTS + ([11, 12, 13], [100])
    tokens, mask = left_pad(prompts + prompts[:3])  # batch 8 splits over data=4
    ref = generate(model, tokens, mask, jax.random.key(0), max_new_tokens=NEW, params=GREEDY)
    mesh = make_mesh(4, 2, cpu_devices)
    sharded = shard_model(nnx.clone(model), mesh)
    q_kernel = sharded.layers[0].self_attn.q_proj.kernel[...]
    assert len(q_kernel.sharding.device_set) == 8 and not q_kernel.sharding.is_fully_replicated
    out = generate(sharded, tokens, mask, jax.random.key(0), max_new_tokens=NEW, params=GREEDY, mesh=mesh)
    assert len(out.tokens.sharding.device_set) == 8
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=LOGPROB_TOL, rtol=0)
