"""Partition rules for Qwen3 parameters, KV cache and batches over a ("data", "model") mesh.

Batches are split over "data"; attention heads, the MLP width and the vocabulary over "model".
A dimension that a mesh axis does not divide evenly is replicated instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx, traverse_util
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA = "data"
MODEL = "model"
MESH_AXES = (DATA, MODEL)

# (regex over the "/"-joined NNX parameter path, spec); the first match wins.
PARAM_RULES: tuple[tuple[str, P], ...] = (
    (r"embed_tokens/embedding$", P(MODEL, None)),  # [V, E]
    (r"self_attn/[qkv]_proj/kernel$", P(None, MODEL)),  # [E, heads * D]
    (r"self_attn/[qkv]_proj/bias$", P(MODEL)),  # [heads * D]
    (r"self_attn/o_proj/kernel$", P(MODEL, None)),  # [H * D, E]
    (r"self_attn/o_proj/bias$", P()),  # [E]
    (r"mlp/(gate|up)_proj/kernel$", P(None, MODEL)),  # [E, F]
    (r"mlp/down_proj/kernel$", P(MODEL, None)),  # [F, E]
    (r"lm_head/kernel$", P(None, MODEL)),  # [E, V]
    (r"/scale$", P()),  # RMSNorm weights
)


def make_mesh(data: int, model: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A data x model mesh over the first data * model devices."""
    devices = jax.devices() if devices is None else devices
    if len(devices) < data * model:
        raise ValueError(f"mesh {data}x{model} needs {data * model} devices, have {len(devices)}")
    return Mesh(np.asarray(devices[: data * model]).reshape(data, model), MESH_AXES)


def fit_spec(spec: P, shape: tuple[int, ...], mesh: Mesh) -> P:
    """`spec` with every axis that does not evenly divide its dimension replaced by None."""
    fitted = []
    for dim, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        names = (axis,) if isinstance(axis, str) else tuple(axis or ())
        size = int(np.prod([mesh.shape[n] for n in names])) if names else 1
        fitted.append(axis if names and dim % size == 0 else None)
    return P(*fitted)


def param_spec(path: str, shape: tuple[int, ...], mesh: Mesh) -> P:
    """The partition spec of one parameter; unknown parameters are an error, not silently replicated."""
    for pattern, spec in PARAM_RULES:
        if re.search(pattern, path):
            return fit_spec(spec, shape, mesh)
    raise ValueError(f"no partition rule matches Qwen3 parameter {path!r}")


def param_shardings(model: nnx.Module, mesh: Mesh) -> dict:
    """A pure dict (same nesting as `nnx.to_pure_dict(nnx.state(model))`) of NamedShardings."""
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model)))
    return traverse_util.unflatten_dict(
        {
            path: NamedSharding(mesh, param_spec("/".join(map(str, path)), value.shape, mesh))
            for path, value in flat.items()
        }
    )


def shard_model(model: nnx.Module, mesh: Mesh) -> nnx.Module:
    """Moves the model's parameters onto `mesh` by PARAM_RULES (in place; returns the model)."""
    state = nnx.state(model)
    pure = jax.tree.map(jax.device_put, nnx.to_pure_dict(state), param_shardings(model, mesh))
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


def batch_spec() -> P:
    """Spec of [B, ...] batch arrays (tokens, masks, per-sequence budgets)."""
    return P(DATA)


def cache_spec() -> P:
    """Spec of one layer's cached keys or values [B, S, K, D]."""
    return P(DATA, None, MODEL, None)


def shard_batch(x: jax.Array, mesh: Mesh) -> jax.Array:
    """Places a [B, ...] array with its batch split over "data" (replicated if B does not divide)."""
    return jax.device_put(x, NamedSharding(mesh, fit_spec(batch_spec(), x.shape, mesh)))
