"""Qwen3 policy in Flax NNX: model, Hugging Face weights, KV-cache sampler and sharding rules."""

from ecomjax.models.qwen3.config import Qwen3Config, from_hf_config, load_config, tiny_config, to_hf_config
from ecomjax.models.qwen3.modules import (
    KVCache,
    LayerCache,
    Qwen3,
    forward,
    init_cache,
    positions_from_mask,
    token_logprobs,
)
from ecomjax.models.qwen3.sampler import GREEDY, Generation, SamplingParams, generate
from ecomjax.models.qwen3.sharding import PARAM_RULES, make_mesh, shard_batch, shard_model
from ecomjax.models.qwen3.weights import from_pretrained, hf_key_map, save_pretrained

__all__ = [
    "GREEDY",
    "PARAM_RULES",
    "Generation",
    "SamplingParams",
    "generate",
    "make_mesh",
    "shard_batch",
    "shard_model",
    "KVCache",
    "LayerCache",
    "Qwen3",
    "Qwen3Config",
    "forward",
    "from_hf_config",
    "from_pretrained",
    "hf_key_map",
    "init_cache",
    "load_config",
    "positions_from_mask",
    "save_pretrained",
    "tiny_config",
    "to_hf_config",
    "token_logprobs",
]
