"""Qwen3 architecture configuration, read from and written to Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
HF_ARCHITECTURE = "Qwen3ForCausalLM"
HF_MODEL_TYPE = "qwen3"
SUPPORTED_ACTIVATION = "silu"
SUPPORTED_ROPE_TYPE = "default"
DEFAULT_ROPE_THETA = 1_000_000.0


@dataclasses.dataclass(frozen=True)
class Qwen3Config:
    """Static, hashable description of a Qwen3 decoder (safe to use as a jit static argument)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = DEFAULT_ROPE_THETA
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )

    @property
    def num_groups(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads


def tiny_config(
    vocab_size: int = 128,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 16,
    tie_word_embeddings: bool = True,
    rope_theta: float = 10_000.0,
    **overrides: Any,
) -> Qwen3Config:
    """A small Qwen3 configuration for tests and from-scratch training."""
    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        tie_word_embeddings=tie_word_embeddings,
        rope_theta=rope_theta,
        **overrides,
    )


def _rope_theta(hf: Any) -> float:
    rope = getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", SUPPORTED_ROPE_TYPE))
    if rope_type != SUPPORTED_ROPE_TYPE:
        raise NotImplementedError(f"RoPE type {rope_type!r} is not supported (only {SUPPORTED_ROPE_TYPE!r})")
    theta = rope.get("rope_theta", getattr(hf, "rope_theta", None))
    return float(DEFAULT_ROPE_THETA if theta is None else theta)


def _optional_ids(value: Any) -> int | tuple[int, ...] | None:
    return tuple(value) if isinstance(value, list | tuple) else value


def from_hf_config(hf: Any) -> Qwen3Config:
    """Converts a `transformers.Qwen3Config` into a `Qwen3Config`; rejects features this port lacks."""
    if getattr(hf, "model_type", HF_MODEL_TYPE) != HF_MODEL_TYPE:
        raise ValueError(f"expected model_type {HF_MODEL_TYPE!r}, got {hf.model_type!r}")
    if getattr(hf, "hidden_act", SUPPORTED_ACTIVATION) != SUPPORTED_ACTIVATION:
        raise NotImplementedError(f"activation {hf.hidden_act!r} is not supported")
    if getattr(hf, "use_sliding_window", False):
        raise NotImplementedError("sliding-window attention is not supported")
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    return Qwen3Config(
        vocab_size=hf.vocab_size,
        hidden_size=hf.hidden_size,
        intermediate_size=hf.intermediate_size,
        num_layers=hf.num_hidden_layers,
        num_heads=hf.num_attention_heads,
        num_kv_heads=hf.num_key_value_heads or hf.num_attention_heads,
        head_dim=head_dim,
        rope_theta=_rope_theta(hf),
        rms_norm_eps=float(hf.rms_norm_eps),
        tie_word_embeddings=bool(hf.tie_word_embeddings),
        attention_bias=bool(getattr(hf, "attention_bias", False)),
        max_position_embeddings=hf.max_position_embeddings,
        initializer_range=float(getattr(hf, "initializer_range", 0.02)),
        bos_token_id=hf.bos_token_id,
        eos_token_id=_optional_ids(hf.eos_token_id),
        pad_token_id=hf.pad_token_id,
    )


def to_hf_config(cfg: Qwen3Config, dtype: str = "float32") -> Any:
    """The equivalent `transformers.Qwen3Config` (what `save_pretrained` writes as config.json)."""
    from transformers import Qwen3Config as HFQwen3Config

    eos = list(cfg.eos_token_id) if isinstance(cfg.eos_token_id, tuple) else cfg.eos_token_id
    hf = HFQwen3Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        hidden_act=SUPPORTED_ACTIVATION,
        max_position_embeddings=cfg.max_position_embeddings,
        initializer_range=cfg.initializer_range,
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_word_embeddings,
        rope_parameters={"rope_type": SUPPORTED_ROPE_TYPE, "rope_theta": cfg.rope_theta},
        attention_bias=cfg.attention_bias,
        bos_token_id=cfg.bos_token_id,
        eos_token_id=eos,
        pad_token_id=cfg.pad_token_id,
    )
    hf.architectures = [HF_ARCHITECTURE]
    hf.dtype = dtype
    return hf


def load_config(path: str | Path) -> Qwen3Config:
    """Reads `<path>/config.json` (a Hugging Face Qwen3 checkpoint directory)."""
    from transformers import Qwen3Config as HFQwen3Config

    directory = Path(path)
    config_file = directory / CONFIG_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory does not exist: {directory}")
    if not config_file.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in checkpoint directory {directory}")
    raw = json.loads(config_file.read_text())
    model_type = raw.pop("model_type", HF_MODEL_TYPE)
    if model_type != HF_MODEL_TYPE:
        raise ValueError(f"{config_file}: expected model_type {HF_MODEL_TYPE!r}, got {model_type!r}")
    return from_hf_config(HFQwen3Config.from_dict(raw))
