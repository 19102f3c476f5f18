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

from ecomjax.core.keys import Stream, stream_seed, stream_seeds
from ecomjax.models.qwen3 import Qwen3, token_logprobs
from ecomjax.text.env import TextEnv
from ecomjax.text.tokens import Conversation, Renderer, encode, pad_batch


@dataclass(frozen=True)
class WarmStartConfig:
    episodes: int = 256               # distinct oracle transcripts
    steps: int = 400                  # SFT steps (batches drawn from the transcripts, epoch by epoch)
    batch: int = 8                    # sequences per SFT step
    lr: float = 3e-3
    warmup: int = 20
    max_seq_len: int = 4096
    max_turns: int = 80
    play_batch: int = 32              # oracle episodes played at once (use the RL batch: one compile serves both)

    def __post_init__(self) -> None:
        for name in ("episodes", "steps", "batch", "max_seq_len", "max_turns", "play_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"warm_start.{name}: expected an integer >= 1, got {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warm_start.warmup: expected an integer >= 0, got {self.warmup!r}")
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
               difficulties: list[int], seed: int, length_bucket: int = 128, progress=None) -> list[float]:
    """Train `model` in place on oracle transcripts of the given (task, difficulty) mix (cycled over the
    episodes) for `cfg.steps` steps; returns the loss of every step."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, min(cfg.warmup, cfg.steps - 1), cfg.steps,
                                                  cfg.lr * 0.1)
    optimizer = nnx.Optimizer(model, optax.adamw(schedule), wrt=nnx.Param)
    pad = renderer.tokenizer.pad_token_id if renderer.tokenizer.pad_token_id is not None else renderer.im_end
    n = -(-cfg.episodes // cfg.play_batch) * cfg.play_batch
    convs: list[Conversation] = []
    for start in range(0, n, cfg.play_batch):
        idx = range(start, start + cfg.play_batch)
        seeds = stream_seeds(Stream.WARMSTART_PROBLEM, seed, np.asarray(idx)).tolist()
        part, _ = oracle_conversations(tenv, renderer, seeds,
                                       [env_ids[i % len(env_ids)] for i in idx],
                                       [difficulties[i % len(difficulties)] for i in idx], cfg.max_turns)
        convs += [_truncate(c, cfg.max_seq_len) for c in part]
    rng = np.random.default_rng(stream_seed(Stream.WARMSTART_ORDER, seed))
    order: list[int] = []
    losses = []
    for _ in range(cfg.steps):
        while len(order) < cfg.batch:
            order += rng.permutation(n).tolist()
        idx, order = order[: cfg.batch], order[cfg.batch:]
        batch = [convs[i] for i in idx]
        length = -(-max(len(c) for c in batch) // length_bucket) * length_bucket
        arr = pad_batch(batch, length, pad)
        loss = sft_step(model, optimizer, jnp.asarray(arr["tokens"]), jnp.asarray(arr["attention"]),
                        jnp.asarray(arr["loss_mask"]))
        losses.append(float(loss))
        if progress is not None:
            progress(len(losses), cfg.steps, losses[-1])
    return losses
