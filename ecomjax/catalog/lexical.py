"""Hashed lexical embeddings: text -> stable token hashes -> signed feature-hashed count vectors.

The same functions run in NumPy (catalog build, host queries) and in JAX (structured queries inside
jitted code), so product and query vectors live in one space without any model download. Vectors are
integer-valued (not normalised): their dot products are exact in float32 on every backend and in any
summation order, so retrieval does not depend on batch size, chunking, sharding or machine. The
catalog keeps 1/norm per product (`Catalog.emb_scale`) for cosine scores.
"""

import re
from typing import Any

import numpy as np

NUM_FEATURES = 2            # hashed features per token
DEFAULT_DIM = 64            # embedding width of the lexical table
_GOLDEN = np.uint32(0x9E3779B9)
_TOKEN_RE = re.compile(r"[a-z0-9]+")
STOPWORDS: frozenset[str] = frozenset(
    "a an and are as at be by for from has have i im in is it its me my of on or our pls please "
    "some that the this to under want with would you your need looking find get".split()
)


def tokenize(text: str) -> list[str]:
    """Lowercase alphanumeric tokens of `text`, stop words removed."""
    return [t for t in _TOKEN_RE.findall(text.lower()) if t not in STOPWORDS]


def token_hash(token: str) -> int:
    """Stable 31-bit FNV-1a hash of a token; never 0 (0 pads token arrays)."""
    h = 0x811C9DC5
    for byte in token.encode("utf-8"):
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) or 1


def hash_text(text: str, length: int) -> np.ndarray:
    """Token hashes of `text`, truncated or zero-padded to `length`. # [length] int32"""
    out = np.zeros(length, np.int32)
    hashes = [token_hash(t) for t in tokenize(text)][:length]
    out[: len(hashes)] = hashes
    return out


def _fmix32(h: Any, xp: Any) -> Any:
    h = h ^ (h >> 16)
    h = h * xp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * xp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def token_features(hashes: Any, dim: int, xp: Any = np) -> tuple[Any, Any]:
    """Feature indices and signs of token hashes. [..., T] -> ([..., T, F] int32, [..., T, F] float32).

    Padding hashes (0) get sign 0.
    """
    h = xp.asarray(hashes).astype(xp.uint32)[..., None]                      # [..., T, 1]
    salt = xp.arange(NUM_FEATURES, dtype=xp.uint32) * _GOLDEN                 # [F]
    mixed = _fmix32(h + salt, xp)                                             # [..., T, F]
    idx = (mixed % xp.uint32(dim)).astype(xp.int32)
    sign = xp.where((mixed >> 31) == 1, -1.0, 1.0).astype(xp.float32)
    sign = xp.where(h == 0, xp.float32(0.0), sign)
    return idx, sign


def embed_hashes_np(hashes: np.ndarray, dim: int, chunk: int = 65536) -> np.ndarray:
    """Lexical count vectors for rows of token hashes. [N, T] int32 -> [N, D] float32 (integer-valued)."""
    n = hashes.shape[0]
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        rows = hashes[start : start + chunk]
        idx, sign = token_features(rows, dim, np)                            # [c, T, F]
        flat = (np.arange(rows.shape[0], dtype=np.int64)[:, None, None] * dim + idx).ravel()
        vec = np.bincount(flat, weights=sign.ravel(), minlength=rows.shape[0] * dim)
        out[start : start + chunk] = vec.reshape(rows.shape[0], dim)
    return out


def inverse_norms(vectors: np.ndarray) -> np.ndarray:
    """1/||v|| per row, 0 for all-zero rows. [N, D] -> [N] float32."""
    norm = np.linalg.norm(vectors.astype(np.float64), axis=1)
    return np.where(norm > 0, 1.0 / np.maximum(norm, 1e-30), 0.0).astype(np.float32)


def embed_hashes(hashes: Any, dim: int) -> Any:
    """JAX twin of `embed_hashes_np` for structured queries. [..., T] int32 -> [..., D] float32."""
    import jax.numpy as jnp

    idx, sign = token_features(hashes, dim, jnp)                             # [..., T, F]
    return jnp.sum(jnp.where(idx[..., None] == jnp.arange(dim), sign[..., None], 0.0), axis=(-3, -2))


def embed_text(text: str, dim: int = DEFAULT_DIM, length: int = 64) -> np.ndarray:
    """Lexical query vector of free text (host side). # [D] float32 integer-valued"""
    return embed_hashes_np(hash_text(text, length)[None], dim)[0]
