"""Flax NNX Qwen3 decoder: RMSNorm, RoPE, grouped-query attention with per-head q/k norm, SwiGLU MLP.

Shape letters: B batch, T query tokens, S key slots (cache length), E hidden, H query heads,
K key/value heads, G = H // K query heads per key/value head, D head dim, F MLP width, V vocab.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from ecomjax.models.qwen3.config import Qwen3Config

Array = jax.Array
DType = jnp.dtype | type
# Finite (not -inf) so that a query row with no visible key (a left-pad token) stays NaN-free.
MASK_VALUE = -1e30


class LayerCache(NamedTuple):
    """Preallocated keys and values of one decoder layer, indexed by cache slot."""

    k: Array  # [B, S, K, D]
    v: Array  # [B, S, K, D]


KVCache = tuple[LayerCache, ...]


def init_cache(cfg: Qwen3Config, batch: int, length: int, dtype: DType = jnp.float32) -> KVCache:
    """An all-zero cache with `length` slots per sequence for every layer."""
    shape = (batch, length, cfg.num_kv_heads, cfg.head_dim)
    return tuple(
        LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(cfg.num_layers)
    )


def positions_from_mask(mask: Array) -> Array:
    """Token positions that skip padding: the i-th real token of a row gets position i (pads get 0)."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)  # [B, T]


def causal_key_mask(key_valid: Array, query_slots: Array) -> Array:
    """Causal mask restricted to valid keys: query at slot t sees key slot s iff s <= t and s is valid."""
    key_slots = jnp.arange(key_valid.shape[-1])  # [S]
    causal = key_slots[None, :] <= query_slots[:, None]  # [T, S]
    return causal[None] & key_valid.astype(bool)[:, None, :]  # [B, T, S]


def rope_tables(positions: Array, head_dim: int, theta: float) -> tuple[Array, Array]:
    """Rotary cos/sin tables (float32) for the given integer positions."""
    exponents = jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim  # [D/2]
    inv_freq = 1.0 / (theta**exponents)
    freqs = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, D/2]
    angles = jnp.concatenate([freqs, freqs], axis=-1)  # [B, T, D]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
    """Rotates each head of x (half-split convention, as in Hugging Face)."""
    cos = cos[:, :, None, :].astype(x.dtype)  # [B, T, 1, D]
    sin = sin[:, :, None, :].astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)  # [B, T, H, D]
    return x * cos + rotated * sin


def grouped_attention(q: Array, k: Array, v: Array, mask: Array, scale: float) -> Array:
    """Softmax attention of H query heads over K shared key/value heads (softmax in float32)."""
    b, t, h, d = q.shape
    kv_heads = k.shape[2]
    qg = q.reshape(b, t, kv_heads, h // kv_heads, d)  # [B, T, K, G, D]
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32)  # [B, K, G, T, S]
    scores = jnp.where(mask[:, None, None], scores * scale, MASK_VALUE)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v)  # [B, T, K, G, D]
    return out.reshape(b, t, h, d)


def _linear(
    cfg: Qwen3Config, n_in: int, n_out: int, bias: bool, dtype: DType, param_dtype: DType, rngs: nnx.Rngs
) -> nnx.Linear:
    return nnx.Linear(
        n_in,
        n_out,
        use_bias=bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nnx.initializers.normal(cfg.initializer_range),
        rngs=rngs,
    )


class RMSNorm(nnx.Module):
    """Root-mean-square norm over the last axis (statistics in float32)."""

    def __init__(self, dim: int, eps: float, *, dtype: DType, param_dtype: DType) -> None:
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * normed.astype(self.dtype)


class Attention(nnx.Module):
    """Grouped-query self-attention with RMS-normalised queries and keys, writing into an optional cache."""

    def __init__(self, cfg: Qwen3Config, *, dtype: DType, param_dtype: DType, rngs: nnx.Rngs) -> None:
        e, h, kv, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        bias = cfg.attention_bias
        self.q_proj = _linear(cfg, e, h * d, bias, dtype, param_dtype, rngs)
        self.k_proj = _linear(cfg, e, kv * d, bias, dtype, param_dtype, rngs)
        self.v_proj = _linear(cfg, e, kv * d, bias, dtype, param_dtype, rngs)
        self.o_proj = _linear(cfg, h * d, e, bias, dtype, param_dtype, rngs)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.num_heads, self.num_kv_heads, self.head_dim = h, kv, d

    def __call__(
        self,
        x: Array,  # [B, T, E]
        rope: tuple[Array, Array],
        mask: Array,  # [B, T, S]
        cache: LayerCache | None,
        cache_index: Array | int,
    ) -> tuple[Array, LayerCache | None]:
        b, t, _ = x.shape
        cos, sin = rope
        q = apply_rope(self.q_norm(self.q_proj(x).reshape(b, t, self.num_heads, self.head_dim)), cos, sin)
        k = apply_rope(self.k_norm(self.k_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)), cos, sin)
        v = self.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)  # [B, T, K, D]
        if cache is not None:
            start = (0, cache_index, 0, 0)
            cache = LayerCache(
                jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), start),
                jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), start),
            )
            k, v = cache.k, cache.v  # [B, S, K, D]
        out = grouped_attention(q, k, v, mask, self.head_dim**-0.5)  # [B, T, H, D]
        return self.o_proj(out.reshape(b, t, self.num_heads * self.head_dim)), cache


class MLP(nnx.Module):
    """SwiGLU feed-forward block."""

    def __init__(self, cfg: Qwen3Config, *, dtype: DType, param_dtype: DType, rngs: nnx.Rngs) -> None:
        e, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = _linear(cfg, e, f, False, dtype, param_dtype, rngs)
        self.up_proj = _linear(cfg, e, f, False, dtype, param_dtype, rngs)
        self.down_proj = _linear(cfg, f, e, False, dtype, param_dtype, rngs)

    def __call__(self, x: Array) -> Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: Qwen3Config, *, dtype: DType, param_dtype: DType, rngs: nnx.Rngs) -> None:
        norm = dict(dtype=dtype, param_dtype=param_dtype)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **norm)
        self.self_attn = Attention(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **norm)
        self.mlp = MLP(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(
        self,
        x: Array,
        rope: tuple[Array, Array],
        mask: Array,
        cache: LayerCache | None,
        cache_index: Array | int,
    ) -> tuple[Array, LayerCache | None]:
        attn, cache = self.self_attn(self.input_layernorm(x), rope, mask, cache, cache_index)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), cache


class Qwen3(nnx.Module):
    """Qwen3 causal language model (decoder stack plus tied or untied output head)."""

    def __init__(
        self,
        cfg: Qwen3Config,
        *,
        rngs: nnx.Rngs,
        dtype: DType = jnp.float32,
        param_dtype: DType | None = None,
    ) -> None:
        param_dtype = dtype if param_dtype is None else param_dtype
        self.config = cfg
        self.dtype = dtype
        self.embed_tokens = nnx.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            dtype=dtype,
            param_dtype=param_dtype,
            embedding_init=nnx.initializers.normal(cfg.initializer_range),
            rngs=rngs,
        )
        self.layers = nnx.List(
            [DecoderLayer(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs) for _ in range(cfg.num_layers)]
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype=dtype, param_dtype=param_dtype)
        if not cfg.tie_word_embeddings:
            self.lm_head = _linear(cfg, cfg.hidden_size, cfg.vocab_size, False, dtype, param_dtype, rngs)

    @classmethod
    def from_config(
        cls,
        cfg: Qwen3Config,
        *,
        rngs: nnx.Rngs,
        dtype: DType = jnp.float32,
        param_dtype: DType | None = None,
    ) -> Qwen3:
        """A randomly initialised model (normal(initializer_range) weights, unit norms)."""
        return cls(cfg, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

    def hidden_states(
        self,
        tokens: Array,  # [B, T]
        positions: Array,  # [B, T]
        key_valid: Array,  # [B, S]; S = T without a cache, the cache length with one
        cache: KVCache | None = None,
        cache_index: Array | int = 0,
    ) -> tuple[Array, KVCache | None]:
        """Final-norm hidden states [B, T, E]; tokens occupy cache slots cache_index .. cache_index + T - 1."""
        cfg = self.config
        query_slots = cache_index + jnp.arange(tokens.shape[1])  # [T]
        mask = causal_key_mask(key_valid, query_slots)  # [B, T, S]
        rope = rope_tables(positions, cfg.head_dim, cfg.rope_theta)
        x = self.embed_tokens(tokens)  # [B, T, E]
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, layer_cache = layer(x, rope, mask, None if cache is None else cache[i], cache_index)
            new_cache.append(layer_cache)
        return self.norm(x), (None if cache is None else tuple(new_cache))

    def logits(self, h: Array) -> Array:
        """Float32 next-token logits [..., V] from final hidden states [..., E]."""
        if self.config.tie_word_embeddings:
            out = self.embed_tokens.attend(h)
        else:
            out = self.lm_head(h)
        return out.astype(jnp.float32)

    def __call__(
        self,
        tokens: Array,
        positions: Array,
        key_valid: Array,
        cache: KVCache | None = None,
        cache_index: Array | int = 0,
    ) -> tuple[Array, KVCache | None]:
        h, cache = self.hidden_states(tokens, positions, key_valid, cache, cache_index)
        return self.logits(h), cache  # [B, T, V]


def forward(model: Qwen3, tokens: Array, positions: Array, attention_mask: Array) -> Array:
    """Logits [B, T, V] (float32) of a full causal pass; attention_mask [B, T] marks real tokens."""
    logits, _ = model(tokens, positions, attention_mask)
    return logits


def token_logprobs(model: Qwen3, tokens: Array, mask: Array) -> Array:
    """log p(tokens[:, t + 1] | tokens[:, :t + 1]) at temperature 1, shape [B, T - 1], zero where masked.

    `mask` [B, T] marks real tokens (left or right padding both work); positions skip the padding.
    """
    logits = forward(model, tokens, positions_from_mask(mask), mask)[:, :-1]  # [B, T-1, V]
    targets = tokens[:, 1:]
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # [B, T-1]
    return jnp.where(mask[:, 1:].astype(bool), picked, 0.0)
