"""Hugging Face safetensors <-> NNX Qwen3 parameters through an explicit key map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util
from jax.sharding import Mesh
from safetensors import safe_open
from safetensors.numpy import save_file

from ecomjax.models.qwen3.config import Qwen3Config, load_config, to_hf_config
from ecomjax.models.qwen3.modules import DType, Qwen3
from ecomjax.models.qwen3.sharding import shard_model

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SHARD_PATTERN = "model-{index:05d}-of-{total:05d}.safetensors"
SAFETENSORS_METADATA = {"format": "pt"}
DEFAULT_MAX_SHARD_BYTES = 4 * 1024**3
# Derived buffers some older exporters wrote; they carry no learned weights.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
TIED_HEAD = "lm_head.weight"

ParamPath = tuple[str | int, ...]


class Mapping(NamedTuple):
    """Where a Hugging Face tensor lives in the NNX model and whether it is a transposed Linear weight."""

    path: ParamPath
    transpose: bool


def hf_key_map(cfg: Qwen3Config) -> dict[str, Mapping]:
    """Every Hugging Face tensor name of a Qwen3ForCausalLM checkpoint and its NNX parameter."""
    keys = {
        "model.embed_tokens.weight": Mapping(("embed_tokens", "embedding"), False),
        "model.norm.weight": Mapping(("norm", "scale"), False),
    }
    if not cfg.tie_word_embeddings:
        keys[TIED_HEAD] = Mapping(("lm_head", "kernel"), True)
    for i in range(cfg.num_layers):
        hf, nx = f"model.layers.{i}", ("layers", i)
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            keys[f"{hf}.self_attn.{proj}.weight"] = Mapping((*nx, "self_attn", proj, "kernel"), True)
            if cfg.attention_bias:
                keys[f"{hf}.self_attn.{proj}.bias"] = Mapping((*nx, "self_attn", proj, "bias"), False)
        for norm in ("q_norm", "k_norm"):
            keys[f"{hf}.self_attn.{norm}.weight"] = Mapping((*nx, "self_attn", norm, "scale"), False)
        for proj in ("gate_proj", "up_proj", "down_proj"):
            keys[f"{hf}.mlp.{proj}.weight"] = Mapping((*nx, "mlp", proj, "kernel"), True)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            keys[f"{hf}.{norm}.weight"] = Mapping((*nx, norm, "scale"), False)
    return keys


def checkpoint_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory (single file or sharded with an index)."""
    index, single = directory / INDEX_FILE, directory / SINGLE_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = [directory / name for name in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{index} lists shards that do not exist: {missing}")
        return files
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"no {SINGLE_FILE} or {INDEX_FILE} in checkpoint directory {directory}")


def read_tensors(directory: Path) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint by Hugging Face name (host numpy arrays, stored dtype)."""
    tensors: dict[str, np.ndarray] = {}
    for file in checkpoint_files(directory):
        with safe_open(file, framework="numpy") as handle:
            for name in handle.keys():
                if name in tensors:
                    raise ValueError(f"tensor {name!r} appears in more than one shard of {directory}")
                tensors[name] = handle.get_tensor(name)
    return tensors


def _check_names(tensors: dict[str, np.ndarray], key_map: dict[str, Mapping], directory: Path) -> None:
    missing = sorted(set(key_map) - set(tensors))
    if missing:
        raise ValueError(f"checkpoint {directory} lacks tensors {missing}")
    unmapped = sorted(
        name
        for name in set(tensors) - set(key_map)
        if not name.endswith(IGNORED_SUFFIXES) and name != TIED_HEAD
    )
    if unmapped:
        raise ValueError(f"checkpoint {directory} has tensors with no Qwen3 parameter: {unmapped}")
    if TIED_HEAD in tensors and TIED_HEAD not in key_map:
        if not np.array_equal(tensors[TIED_HEAD], tensors["model.embed_tokens.weight"]):
            raise ValueError(
                f"checkpoint {directory}: config ties word embeddings but {TIED_HEAD} differs from them"
            )


def _to_param(name: str, array: np.ndarray, mapping: Mapping, expected: jax.ShapeDtypeStruct) -> jax.Array:
    value = array.T if mapping.transpose else array
    if value.shape != expected.shape:
        raise ValueError(
            f"tensor {name!r} has shape {array.shape}; parameter {mapping.path} needs {expected.shape}"
            f"{' (transposed)' if mapping.transpose else ''}"
        )
    return jnp.asarray(value, dtype=expected.dtype)


def load_params(model_abstract: Qwen3, directory: Path) -> Qwen3:
    """Fills an abstract (eval_shape) model with the tensors of a checkpoint directory."""
    cfg = model_abstract.config
    key_map = hf_key_map(cfg)
    graphdef, state = nnx.split(model_abstract)
    targets = traverse_util.flatten_dict(nnx.to_pure_dict(state))
    uncovered = sorted(set(targets) - {m.path for m in key_map.values()})
    if uncovered:
        raise ValueError(f"Qwen3 parameters {uncovered} have no Hugging Face tensor in the key map")
    tensors = read_tensors(directory)
    _check_names(tensors, key_map, directory)
    values = {m.path: _to_param(name, tensors[name], m, targets[m.path]) for name, m in key_map.items()}
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(values))
    return nnx.merge(graphdef, state)


def from_pretrained(
    path: str | Path,
    dtype: DType = jnp.float32,
    param_dtype: DType | None = None,
    mesh: Mesh | None = None,
) -> Qwen3:
    """A Qwen3 model loaded from a Hugging Face checkpoint directory (config.json + safetensors).

    `dtype` is the compute dtype; `param_dtype` (default: `dtype`) the stored parameter dtype;
    with a ("data", "model") `mesh` the parameters are placed by `sharding.PARAM_RULES`.
    """
    directory = Path(path)
    cfg = load_config(directory)
    abstract = nnx.eval_shape(lambda: Qwen3(cfg, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype))
    model = load_params(abstract, directory)
    return model if mesh is None else shard_model(model, mesh)


def hf_tensors(model: Qwen3) -> dict[str, np.ndarray]:
    """The model's parameters as Hugging Face-named host arrays (Linear weights as [out, in])."""
    params = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    tensors = {}
    for name, mapping in hf_key_map(model.config).items():
        value = np.asarray(jax.device_get(params[mapping.path]))
        tensors[name] = np.ascontiguousarray(value.T if mapping.transpose else value)
    return tensors


def _shards(tensors: dict[str, np.ndarray], max_shard_bytes: int) -> list[dict[str, np.ndarray]]:
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, value in tensors.items():
        if shards[-1] and size + value.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = value
        size += value.nbytes
    return shards


def save_pretrained(model: Qwen3, path: str | Path, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
    """Writes config.json and safetensors (sharded with an index above `max_shard_bytes`) loadable by
    `transformers.Qwen3ForCausalLM.from_pretrained` and by `from_pretrained`."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = hf_tensors(model)
    shards = _shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(tensors, directory / SINGLE_FILE, metadata=SAFETENSORS_METADATA)
    else:
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            file_name = SHARD_PATTERN.format(index=i, total=len(shards))
            save_file(shard, directory / file_name, metadata=SAFETENSORS_METADATA)
            weight_map.update(dict.fromkeys(shard, file_name))
        index = {"metadata": {"total_size": sum(v.nbytes for v in tensors.values())}, "weight_map": weight_map}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True))
    stored_dtype = next(iter(tensors.values())).dtype
    to_hf_config(model.config, dtype=str(jnp.dtype(stored_dtype))).save_pretrained(directory)
