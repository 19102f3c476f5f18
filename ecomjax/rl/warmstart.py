"""Supervised warm-up on oracle transcripts: the scripted oracle plays episodes through the text protocol,
and the policy learns its turns (loss on the oracle's tokens only), so that a model trained from scratch
speaks the protocol before RL starts."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ecomjax.models.qwen3 import Qwen3, token_logprobs
from ecomjax.text.env import TextEnv
from ecomjax.text.tokens import Conversation, Renderer, encode, pad_batch


@dataclass(frozen=True)
class WarmStartConfig:
    episodes: int = 256               # oracle episodes per pass
    passes: int = 1                   # fresh episodes per pass
    epochs: int = 2                   # passes over each batch of episodes
    batch: int = 16                   # sequences per SFT step
    lr: float = 1e-3
    max_seq_len: int = 4096
    max_turns: int = 80

    def __post_init__(self) -> None:
        for name in ("episodes", "passes", "epochs", "batch", "max_seq_len", "max_turns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"warm_start.{name}: expected an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"warm_start.lr: expected a number > 0, got {self.lr!r}")


def oracle_conversations(tenv: TextEnv, renderer: Renderer, seeds: list[int], env_ids: list[str],
                         difficulties: list[int], max_turns: int) -> tuple[list[Conversation], np.ndarray]:
    """The oracle's episodes as token sequences (its turns as policy tokens) and whether each was correct."""
    tenv.reset_batch(seeds, env_ids, difficulties)
    convs = [Conversation() for _ in seeds]
    for b, c in enumerate(convs):
        c.add_env(renderer.prompt(tenv.messages(b)))
    for _ in range(max_turns):
        live = [not ep.done for ep in tenv.episodes]
        if not any(live):
            break
        actions = tenv.oracle_actions()
        for b, act in enumerate(actions):
            if live[b]:
                ids = encode(renderer.tokenizer, act) + [renderer.im_end]
                convs[b].add_policy(ids, [0.0] * len(ids))
        tenv.step_batch(actions)
        for b, ep in enumerate(tenv.episodes):
            if live[b] and not ep.done:
                convs[b].add_env(renderer.env_turn(ep.new_messages, closed=True))
    return convs, np.asarray([bool(ep.info["is_correct"]) for ep in tenv.episodes])


def _truncate(c: Conversation, length: int) -> Conversation:
    return Conversation(c.ids[:length], c.mask[:length], c.logprobs[:length])


def sft_loss(model: Qwen3, tokens: jax.Array, attention: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean negative log-likelihood of the masked target tokens."""
    logp = token_logprobs(model, tokens, attention)                                     # [B, T - 1]
    m = mask[:, 1:].astype(jnp.float32)
    return -jnp.sum(logp * m) / jnp.maximum(jnp.sum(m), 1.0)


@nnx.jit
def sft_step(model: Qwen3, optimizer: nnx.Optimizer, tokens, attention, mask) -> jax.Array:
    loss, grads = nnx.value_and_grad(sft_loss)(model, tokens, attention, mask)
    optimizer.update(model, grads)
    return loss


def warm_start(model: Qwen3, tenv: TextEnv, renderer: Renderer, cfg: WarmStartConfig, env_ids: list[str],
               difficulties: list[int], seed: int, length_bucket: int = 256, progress=None) -> list[float]:
    """Train `model` in place on oracle transcripts of the given (task, difficulty) mix (cycled over the
    episodes); returns the loss of every SFT step."""
    steps = cfg.passes * cfg.epochs * -(-cfg.episodes // cfg.batch)
    optimizer = nnx.Optimizer(model, optax.adamw(optax.cosine_decay_schedule(cfg.lr, max(steps, 1), 0.1)),
                              wrt=nnx.Param)
    pad = renderer.tokenizer.pad_token_id if renderer.tokenizer.pad_token_id is not None else renderer.im_end
    rng = np.random.default_rng(seed)
    losses = []
    for p in range(cfg.passes):
        n = cfg.episodes
        seeds = [seed * 7919 + p * n + i for i in range(n)]
        convs, _ = oracle_conversations(tenv, renderer, seeds, [env_ids[i % len(env_ids)] for i in range(n)],
                                        [difficulties[i % len(difficulties)] for i in range(n)], cfg.max_turns)
        convs = [_truncate(c, cfg.max_seq_len) for c in convs]
        for _ in range(cfg.epochs):
            order = rng.permutation(n)
            for start in range(0, n, cfg.batch):
                idx = order[start:start + cfg.batch]
                batch = [convs[i] for i in idx] + [Conversation()] * (cfg.batch - len(idx))
                length = -(-max(len(c) for c in batch) // length_bucket) * length_bucket
                arr = pad_batch(batch, length, pad)
                loss = sft_step(model, optimizer, jnp.asarray(arr["tokens"]), jnp.asarray(arr["attention"]),
                                jnp.asarray(arr["loss_mask"]))
                losses.append(float(loss))
                if progress is not None:
                    progress(len(losses), steps, losses[-1])
    return losses
