"""Qwen3 NNX model: parity with transformers' PyTorch Qwen3, HF checkpoint loading/saving, errors."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from ecomjax.models.qwen3 import (
    Qwen3,
    forward,
    from_pretrained,
    positions_from_mask,
    save_pretrained,
    tiny_config,
    to_hf_config,
    token_logprobs,
)

F32_TOL = 1e-4
BF16_TOL = 0.15
INIT_SCALE = 0.3  # large enough that logits vary and a wrongly mapped weight shows
VOCAB = 160
BATCH, SEQ = 2, 9

PARITY_CONFIGS = {
    "tied-mha": dict(tie_word_embeddings=True, num_heads=4, num_kv_heads=4, head_dim=8),
    "untied-gqa2": dict(tie_word_embeddings=False, num_heads=4, num_kv_heads=2, head_dim=8),
    "tied-gqa4-wide-head": dict(tie_word_embeddings=True, num_heads=4, num_kv_heads=1, head_dim=24),
    "untied-gqa2-theta": dict(
        tie_word_embeddings=False, num_heads=8, num_kv_heads=4, head_dim=16, rope_theta=500.0
    ),
}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip(
        "torch", reason="PyTorch (pip install torch==2.13.0) is needed for transformers parity tests"
    )


def _tokens(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (BATCH, SEQ)).astype(np.int64)


def _hf_model(torch, cfg):
    """A transformers Qwen3ForCausalLM with every weight (norms included) randomised."""
    from transformers import Qwen3ForCausalLM

    hf_cfg = to_hf_config(cfg)
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(hf_cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn_like(p) * INIT_SCALE
            p.copy_(1.0 + noise if "norm" in name else noise)
    return model


def _hf_logits(torch, model, tokens: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    kwargs = {}
    if mask is not None:
        kwargs = dict(
            attention_mask=torch.tensor(mask),
            position_ids=torch.tensor(np.asarray(positions_from_mask(jnp.asarray(mask)))),
        )
    with torch.no_grad():
        return model(torch.tensor(tokens), **kwargs).logits.float().numpy()


def _our_logits(model: Qwen3, tokens: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    mask = np.ones(tokens.shape, np.int32) if mask is None else mask
    mask = jnp.asarray(mask)
    return np.asarray(forward(model, jnp.asarray(tokens), positions_from_mask(mask), mask))


@pytest.mark.parametrize("name", list(PARITY_CONFIGS))
def test_logits_match_transformers(torch, tmp_path: Path, name: str) -> None:
    cfg = tiny_config(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, **PARITY_CONFIGS[name])
    hf = _hf_model(torch, cfg)
    hf.save_pretrained(tmp_path)
    model = from_pretrained(tmp_path)
    assert model.config == cfg
    tokens = _tokens()
    np.testing.assert_allclose(_our_logits(model, tokens), _hf_logits(torch, hf, tokens), atol=F32_TOL, rtol=0)


def test_left_padded_logits_match_transformers(torch, tmp_path: Path) -> None:
    cfg = tiny_config(vocab_size=VOCAB, **PARITY_CONFIGS["untied-gqa2"])
    hf = _hf_model(torch, cfg)
    hf.save_pretrained(tmp_path)
    model = from_pretrained(tmp_path)
    tokens = _tokens(1)
    mask = np.ones_like(tokens)
    mask[0, :3] = 0
    real = mask.astype(bool)
    ours, ref = _our_logits(model, tokens, mask), _hf_logits(torch, hf, tokens, mask)
    np.testing.assert_allclose(ours[real], ref[real], atol=F32_TOL, rtol=0)


def test_sharded_hf_checkpoint_and_bf16(torch, tmp_path: Path) -> None:
    cfg = tiny_config(vocab_size=VOCAB, **PARITY_CONFIGS["tied-gqa4-wide-head"])
    hf = _hf_model(torch, cfg)
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    tokens = _tokens(2)
    ref = _hf_logits(torch, hf, tokens)
    np.testing.assert_allclose(_our_logits(from_pretrained(tmp_path), tokens), ref, atol=F32_TOL, rtol=0)

    bf16 = from_pretrained(tmp_path, dtype=jnp.bfloat16)
    assert bf16.layers[0].mlp.up_proj.kernel[...].dtype == jnp.bfloat16
    logits = _our_logits(bf16, tokens)
    assert logits.dtype == np.float32
    assert np.max(np.abs(logits - ref)) < BF16_TOL * np.max(np.abs(ref))


@pytest.mark.parametrize("tied", [True, False])
def test_save_pretrained_round_trip_through_transformers(torch, tmp_path: Path, tied: bool) -> None:
    from transformers import Qwen3ForCausalLM

    cfg = tiny_config(vocab_size=VOCAB, tie_word_embeddings=tied, initializer_range=INIT_SCALE)
    model = Qwen3.from_config(cfg, rngs=nnx.Rngs(3))
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["tie_word_embeddings"] is tied
    hf = Qwen3ForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    tokens = _tokens(4)
    np.testing.assert_allclose(_hf_logits(torch, hf, tokens), _our_logits(model, tokens), atol=F32_TOL, rtol=0)


def test_save_sharded_and_reload_is_exact(tmp_path: Path) -> None:
    cfg = tiny_config(vocab_size=VOCAB, tie_word_embeddings=False, initializer_range=INIT_SCALE)
    model = Qwen3.from_config(cfg, rngs=nnx.Rngs(5), dtype=jnp.bfloat16)
    save_pretrained(model, tmp_path, max_shard_bytes=8_000)
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    reloaded = from_pretrained(tmp_path, dtype=jnp.bfloat16)
    before = jax.tree.leaves(nnx.state(model, nnx.Param))
    after = jax.tree.leaves(nnx.state(reloaded, nnx.Param))
    assert all(a.dtype == jnp.bfloat16 and np.array_equal(a, b) for a, b in zip(after, before, strict=True))


def test_from_config_shapes_and_dtypes() -> None:
    cfg = tiny_config(vocab_size=VOCAB, num_heads=4, num_kv_heads=2, head_dim=12)
    model = Qwen3.from_config(cfg, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, param_dtype=jnp.float32)
    attn = model.layers[1].self_attn
    assert attn.q_proj.kernel.shape == (cfg.hidden_size, 4 * 12)
    assert attn.k_proj.kernel.shape == (cfg.hidden_size, 2 * 12)
    assert attn.q_norm.scale.shape == (12,)
    assert attn.q_proj.kernel[...].dtype == jnp.float32
    assert not hasattr(model, "lm_head")
    tokens = jnp.asarray(_tokens())
    mask = jnp.ones_like(tokens)
    assert forward(model, tokens, positions_from_mask(mask), mask).shape == (BATCH, SEQ, VOCAB)


def test_token_logprobs_are_log_softmax_of_next_token() -> None:
    cfg = tiny_config(vocab_size=VOCAB, initializer_range=INIT_SCALE)
    model = Qwen3.from_config(cfg, rngs=nnx.Rngs(1))
    tokens = jnp.asarray(_tokens())
    mask = jnp.ones_like(tokens).at[1, -2:].set(0)
    logp = token_logprobs(model, tokens, mask)
    full = jax.nn.log_softmax(forward(model, tokens, positions_from_mask(mask), mask), axis=-1)
    expected = jnp.take_along_axis(full[:, :-1], tokens[:, 1:, None], axis=-1)[..., 0] * mask[:, 1:]
    assert logp.shape == (BATCH, SEQ - 1)
    np.testing.assert_allclose(logp, expected, atol=1e-6)
    assert np.all(np.asarray(logp)[1, -2:] == 0)


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qwen3_ckpt")
    save_pretrained(Qwen3.from_config(tiny_config(vocab_size=VOCAB), rngs=nnx.Rngs(0)), path)
    return path


def test_bad_paths_raise_clear_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(tmp_path)


def _rewrite_weights(src: Path, dst: Path, edit) -> None:
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    tensors = load_file(src / "model.safetensors")
    edit(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_named(saved_checkpoint: Path, tmp_path: Path) -> None:
    name = "model.layers.1.self_attn.k_norm.weight"
    _rewrite_weights(saved_checkpoint, tmp_path / "ckpt", lambda t: t.pop(name))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        from_pretrained(tmp_path / "ckpt")


def test_unmapped_tensor_is_named(saved_checkpoint: Path, tmp_path: Path) -> None:
    name = "model.layers.0.mlp.extra_proj.weight"
    _rewrite_weights(saved_checkpoint, tmp_path / "ckpt", lambda t: t.update({name: np.zeros(3, np.float32)}))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        from_pretrained(tmp_path / "ckpt")


def test_wrong_shape_is_named(saved_checkpoint: Path, tmp_path: Path) -> None:
    name = "model.layers.0.mlp.up_proj.weight"
    _rewrite_weights(saved_checkpoint, tmp_path / "ckpt", lambda t: t.update({name: t[name].T.copy()}))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        from_pretrained(tmp_path / "ckpt")


def test_gradients_flow_to_every_parameter() -> None:
    cfg = tiny_config(vocab_size=VOCAB, tie_word_embeddings=False, initializer_range=INIT_SCALE)
    model = Qwen3.from_config(cfg, rngs=nnx.Rngs(2))
    tokens = jnp.asarray(_tokens())
    mask = jnp.ones_like(tokens).at[0, :2].set(0)

    @nnx.jit
    def loss_and_grads(model: Qwen3):
        return nnx.value_and_grad(lambda m: -jnp.mean(token_logprobs(m, tokens, mask)))(model)

    loss, grads = loss_and_grads(model)
    assert np.isfinite(loss)
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(n) and n > 0 for n in norms)


def test_from_pretrained_onto_mesh(saved_checkpoint: Path, cpu_devices) -> None:
    from ecomjax.models.qwen3 import make_mesh

    mesh = make_mesh(2, 4, cpu_devices)
    sharded = from_pretrained(saved_checkpoint, mesh=mesh)
    embedding = sharded.embed_tokens.embedding[...]
    assert embedding.sharding.spec == jax.sharding.PartitionSpec("model", None)
    tokens = _tokens()
    np.testing.assert_allclose(
        _our_logits(sharded, tokens), _our_logits(from_pretrained(saved_checkpoint), tokens), atol=1e-5, rtol=0
    )
