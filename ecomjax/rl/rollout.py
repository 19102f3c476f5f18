"""Multi-turn batched rollouts: generate (Qwen3 sampler) -> parse -> env step -> customer reply -> next
turn, until every episode ends.

Every episode keeps its token ids as generated (`text.tokens.Conversation`): the policy's own ids with
their behaviour log-probs (loss mask 1) and the environment's replies (mask 0). Each turn the whole batch
generates at once with a fixed batch size and a prompt length rounded up to `length_bucket`, so a run
compiles the sampler for a handful of shapes only; finished episodes get a budget of zero new tokens.
An episode whose next prompt would not fit `max_seq_len` is stopped there (`truncated`) and scored as it
stands, like one that ran out of turns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ecomjax.models.qwen3 import Qwen3, SamplingParams, generate
from ecomjax.text.env import TextEnv
from ecomjax.text.tokens import Conversation, Renderer

LENGTH_BUCKET = 256


@dataclass(frozen=True)
class RolloutConfig:
    """Generation limits of a rollout (static)."""

    max_new_tokens: int = 128                 # per agent turn
    max_seq_len: int = 4096                   # whole episode (prompt, all turns, all replies)
    sampling: SamplingParams = SamplingParams(temperature=1.0)
    length_bucket: int = LENGTH_BUCKET
    max_turns: int = 80
    gen_batch: int = 256                      # sequences per sampler call (bounds KV-cache memory)
    prefill_chunk: int = 512                  # prompt tokens per prefill pass (bounds attention memory)

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "max_seq_len", "length_bucket", "max_turns", "gen_batch", "prefill_chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if self.max_new_tokens >= self.max_seq_len:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be < max_seq_len ({self.max_seq_len})")


@dataclass
class Rollouts:
    """N finished episodes: tokens, outcomes and the text they produced."""

    conversations: list[Conversation]
    rewards: np.ndarray            # [N] float32 composed reward
    is_correct: np.ndarray         # [N] bool
    tasks: np.ndarray              # [N] int32
    difficulties: np.ndarray       # [N] int32
    truncated: np.ndarray          # [N] bool stopped at the context limit
    turns: np.ndarray              # [N] int32
    infos: list[dict]
    transcripts: list[list[dict]]

    @property
    def policy_tokens(self) -> np.ndarray:
        return np.asarray([c.policy_tokens for c in self.conversations], np.int32)

    def select(self, index: np.ndarray) -> Rollouts:
        """The episodes at `index`, in that order."""
        idx = [int(i) for i in index]
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return dataclasses.replace(
            self, conversations=pick(self.conversations), rewards=self.rewards[idx], is_correct=self.is_correct[idx],
            tasks=self.tasks[idx], difficulties=self.difficulties[idx], truncated=self.truncated[idx],
            turns=self.turns[idx], infos=pick(self.infos), transcripts=pick(self.transcripts))

    @staticmethod
    def concat(parts: list[Rollouts]) -> Rollouts:
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        join = lambda name: [x for p in parts for x in getattr(p, name)]  # noqa: E731
        return Rollouts(conversations=join("conversations"), rewards=cat("rewards"), is_correct=cat("is_correct"),
                        tasks=cat("tasks"), difficulties=cat("difficulties"), truncated=cat("truncated"),
                        turns=cat("turns"), infos=join("infos"), transcripts=join("transcripts"))


def _bucket(n: int, size: int) -> int:
    return -(-n // size) * size


def left_pad(sequences: list[list[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, length] ids and 1/0 mask with each sequence at the right end (empty rows get one pad token
    marked real, which the sampler needs; their budget is zero)."""
    ids = np.full((len(sequences), length), pad_id, np.int32)
    mask = np.zeros((len(sequences), length), np.int32)
    for b, seq in enumerate(sequences):
        seq = seq or [pad_id]
        ids[b, length - len(seq):] = seq
        mask[b, length - len(seq):] = 1
    return ids, mask


def _generate_turn(model: Qwen3, convs: list[Conversation], live: list[bool], keys: jax.Array, cfg: RolloutConfig,
                   stops: tuple[int, ...], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One turn of generation for every live episode, `gen_batch` rows per sampler call (the last call padded
    with empty rows); episode b samples with its own `keys[b]`, so batching never changes what it says.
    Returns tokens/logprobs [N, max_new_tokens] and lengths [N]."""
    n = len(convs)
    rows = min(cfg.gen_batch, n)
    tokens = np.zeros((n, cfg.max_new_tokens), np.int32)
    logprobs = np.zeros((n, cfg.max_new_tokens), np.float32)
    lengths = np.zeros(n, np.int32)
    for start in range(0, n, rows):
        idx = list(range(start, min(start + rows, n)))
        if not any(live[i] for i in idx):
            continue
        row_keys = keys[np.asarray(idx + [idx[0]] * (rows - len(idx)))]
        seqs = [convs[i].ids if live[i] else [] for i in idx] + [[]] * (rows - len(idx))
        length = _bucket(max(len(s) for s in seqs), cfg.length_bucket)
        prompt, mask = left_pad(seqs, length, pad_id)
        budget = np.asarray([cfg.max_new_tokens if live[i] else 0 for i in idx] + [0] * (rows - len(idx)), np.int32)
        gen = generate(model, prompt, mask, row_keys, max_new_tokens=cfg.max_new_tokens,
                       params=cfg.sampling, stop_tokens=stops, max_new_per_seq=budget, pad_id=pad_id,
                       prefill_chunk=min(cfg.prefill_chunk, length))
        t, lp, ln = (np.asarray(x) for x in jax.device_get((gen.tokens, gen.logprobs, gen.lengths)))
        tokens[idx], logprobs[idx], lengths[idx] = t[: len(idx)], lp[: len(idx)], ln[: len(idx)]
    return tokens, logprobs, lengths


def rollout(model: Qwen3, tenv: TextEnv, renderer: Renderer, seeds: list[int], env_ids: list[str],
            difficulties: list[int], key: jax.Array, cfg: RolloutConfig, first_index: int = 0) -> Rollouts:
    """Play len(seeds) episodes with `model` to their ends. Episodes with equal seeds, task and difficulty
    start identically (a GRPO group); their sampling keys differ. Episode b samples with keys derived from
    (`key`, `first_index + b`, turn) only: a batch split over processes samples what one process would."""
    tok = renderer.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else renderer.im_end
    stops = tuple(sorted({renderer.im_end, *([tok.eos_token_id] if tok.eos_token_id is not None else [])}))
    tenv.reset_batch(seeds, env_ids, difficulties)
    n = len(seeds)
    convs = [Conversation() for _ in range(n)]
    for b in range(n):
        convs[b].add_env(renderer.prompt(tenv.messages(b)))
    truncated = np.zeros(n, bool)
    for turn in range(cfg.max_turns):
        live = [not ep.done for ep in tenv.episodes]
        if not any(live):
            break
        turn_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), turn))(
            jnp.arange(first_index, first_index + n))
        tokens, logprobs, lengths = _generate_turn(model, convs, live, turn_keys, cfg, stops, pad_id)
        texts, closed = [], []
        for b in range(n):
            ids = tokens[b, : lengths[b]].tolist() if live[b] else []
            if live[b]:
                convs[b].add_policy(ids, logprobs[b, : lengths[b]].tolist())
            texts.append(renderer.decode_turn(ids))
            closed.append(bool(ids) and ids[-1] in stops)
        tenv.step_batch(texts)
        for b in range(n):
            ep = tenv.episodes[b]
            if not live[b] or ep.done:
                continue
            reply = renderer.env_turn(ep.new_messages, closed[b])
            if len(convs[b]) + len(reply) + cfg.max_new_tokens > cfg.max_seq_len:
                tenv.stop(b, "context_limit")
                truncated[b] = True
            else:
                convs[b].add_env(reply)
    for b, ep in enumerate(tenv.episodes):
        if not ep.done:
            tenv.stop(b, "max_turns")
            truncated[b] = True
    infos = [ep.info for ep in tenv.episodes]
    return Rollouts(
        conversations=convs, rewards=np.asarray([ep.reward for ep in tenv.episodes], np.float32),
        is_correct=np.asarray([bool(i["is_correct"]) for i in infos]),
        tasks=np.asarray([int(i["task_id"]) for i in infos], np.int32),
        difficulties=np.asarray([int(i["difficulty"]) for i in infos], np.int32), truncated=truncated,
        turns=np.asarray([int(i["turns"]) for i in infos], np.int32), infos=infos,
        transcripts=[tenv.messages(b) for b in range(n)])
