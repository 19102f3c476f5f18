"""The GRPO/DAPO trainer (SPEC §10, DESIGN §6): curriculum -> G rollouts per problem -> verifier rewards ->
group-relative advantages -> clipped policy loss on policy tokens -> optax update -> curriculum update.

One `Trainer` holds the policy (Flax NNX Qwen3), its optimiser, an optional frozen reference, the text env
and the curriculum. `step()` runs one iteration; everything it draws comes from `(seed, step)`, so a run
restored from a checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ecomjax import curriculum as cur
from ecomjax.core.keys import Stream, seed_key, stream_key, stream_seeds
from ecomjax.rl import distributed
from ecomjax.models.qwen3 import Qwen3, token_logprobs
from ecomjax.models.qwen3.sharding import DATA, shard_model
from ecomjax.rl.losses import LossConfig, group_advantages, informative, overlong_penalty, policy_loss
from ecomjax.rl.rollout import RolloutConfig, Rollouts, rollout
from ecomjax.tasks.goal import TASK_NAMES
from ecomjax.text.env import TextEnv
from ecomjax.text.tokens import Conversation, Renderer, pad_batch


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run (defaults: DAPO with the RLVE curriculum)."""

    num_envs: int = 64                    # episodes per step = problems x group_size
    group_size: int = 8
    tasks: tuple[int, ...] = (0,)
    steps: int = 100
    lr: float = 1e-5
    warmup_steps: int = 5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    micro_batch: int = 0                  # sequences per gradient micro-batch; 0 = the whole batch
    loss: LossConfig = LossConfig()
    rollout: RolloutConfig = RolloutConfig()
    dynamic_sampling: bool = True
    max_resample_rounds: int = 3          # extra problem batches drawn to refill dropped groups
    overlong_tokens: int = 0              # DAPO soft punishment when policy tokens exceed this (0 = off)
    overlong_cache: int = 256
    curriculum: cur.CurriculumConfig = cur.CurriculumConfig()
    static_difficulty: tuple[int, int] | None = None   # sample d ~ U[lo, hi] instead of the curriculum
    seed: int = 0

    def __post_init__(self) -> None:
        ints = {"num_envs": 1, "group_size": 2, "steps": 0, "warmup_steps": 0, "micro_batch": 0,
                "max_resample_rounds": 0, "overlong_tokens": 0, "overlong_cache": 1, "seed": 0}
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
        if self.num_envs % self.group_size:
            raise ValueError(f"num_envs ({self.num_envs}) must be a multiple of group_size ({self.group_size})")
        for name in ("lr", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
                    name == "lr" and value == 0):
                raise ValueError(f"{name}: expected a finite number {'> 0' if name == 'lr' else '>= 0'}, got {value!r}")
        if not self.tasks or any(t not in range(len(TASK_NAMES)) for t in self.tasks):
            raise ValueError(f"tasks: expected task ids in 0..{len(TASK_NAMES) - 1}, got {self.tasks!r}")

    @property
    def problems(self) -> int:
        return self.num_envs // self.group_size


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on a linear-warmup + cosine schedule over the run."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0 if cfg.warmup_steps else cfg.lr, peak_value=cfg.lr, warmup_steps=cfg.warmup_steps,
        decay_steps=max(cfg.steps, cfg.warmup_steps + 1), end_value=cfg.lr * 0.1)
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                       optax.adamw(schedule, weight_decay=cfg.weight_decay))


# ------------------------------------------------------------------------------------------ batches

def training_arrays(convs: list[Conversation], advantages: np.ndarray, weights: np.ndarray, length: int,
                    rows: int, pad_id: int) -> dict[str, np.ndarray]:
    """Next-token arrays of a batch, padded to `rows` sequences of `length` tokens: tokens/attention [R, L],
    and aligned to targets (position t scores token t + 1) loss_mask/old_logp [R, L - 1], adv [R].
    Rows with weight 0 (and padding rows) have an empty loss mask."""
    arr = pad_batch(convs + [Conversation()] * (rows - len(convs)), length, pad_id)
    w = np.zeros(rows, np.float32)
    w[: len(convs)] = weights
    adv = np.zeros(rows, np.float32)
    adv[: len(convs)] = advantages
    return {"tokens": arr["tokens"], "attention": arr["attention"],
            "loss_mask": arr["loss_mask"][:, 1:] * (w[:, None] > 0), "old_logp": arr["logprobs"][:, 1:],
            "adv": adv}


def _loss(model: Qwen3, batch: dict, cfg: LossConfig, global_tokens, global_sequences, ref_logp=None):
    logp = token_logprobs(model, batch["tokens"], batch["attention"])          # [B, T - 1]
    return policy_loss(logp, batch["old_logp"], batch["adv"], batch["loss_mask"], cfg, ref_logp,
                       global_tokens=global_tokens, global_sequences=global_sequences)


@nnx.jit(static_argnames=("cfg",))
def grad_step(model: Qwen3, batch: dict, cfg: LossConfig, global_tokens, global_sequences, ref_logp=None):
    """(loss, metrics, grads) of one micro-batch."""
    (loss, metrics), grads = nnx.value_and_grad(_loss, has_aux=True)(model, batch, cfg, global_tokens,
                                                                    global_sequences, ref_logp)
    return loss, metrics, grads


@nnx.jit
def apply_grads(optimizer: nnx.Optimizer, model: Qwen3, grads) -> jax.Array:
    """One optimiser update; returns the gradient's global norm."""
    optimizer.update(model, grads)
    return optax.tree.norm(grads)


@nnx.jit
def reference_logprobs(model: Qwen3, tokens: jax.Array, attention: jax.Array) -> jax.Array:
    return token_logprobs(model, tokens, attention)


# ------------------------------------------------------------------------------------------ trainer

@dataclass
class StepResult:
    """What one training step did, for logging."""

    metrics: dict[str, float]
    rollouts: Rollouts
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


class Trainer:
    """GRPO/DAPO on a TextEnv with a Qwen3 policy. `mesh` (data x model) shards the batch over "data" and
    the parameters by `models.qwen3.sharding.PARAM_RULES`."""

    def __init__(self, model: Qwen3, tenv: TextEnv, cfg: TrainConfig, mesh: Mesh | None = None,
                 reference: Qwen3 | None = None):
        if cfg.loss.beta > 0 and reference is None:
            raise ValueError(f"loss.beta = {cfg.loss.beta} > 0 needs a frozen reference model")
        self.cfg, self.tenv, self.mesh = cfg, tenv, mesh
        self.model = shard_model(model, mesh) if mesh is not None else model
        self.reference = reference
        self.optimizer = nnx.Optimizer(self.model, make_optimizer(cfg), wrt=nnx.Param)
        self.renderer = Renderer(tenv.tokenizer)
        self.pad_id = tenv.tokenizer.pad_token_id if tenv.tokenizer.pad_token_id is not None else self.renderer.im_end
        self.curriculum = cur.init(cfg.curriculum)
        self.step_index = 0
        self.key = seed_key(cfg.seed)
        self.process_index, self.num_processes = distributed.process()
        if cfg.problems % self.num_processes:
            raise ValueError(f"num_envs / group_size = {cfg.problems} problems must split evenly over "
                             f"{self.num_processes} processes")

    # -------------------------------------------------------------------------------- sampling

    def _problems(self, step: int, round_: int, count: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(tasks [count], difficulties [count], env seeds) of one batch of problems."""
        key = stream_key(self.key, Stream.TRAIN_SAMPLE, step, round_)
        if self.cfg.static_difficulty is not None:
            lo, hi = self.cfg.static_difficulty
            tasks, ds = cur.sample_static(key, self.cfg.tasks, count, lo, hi)
        else:
            tasks, ds = cur.sample(key, self.curriculum, self.cfg.tasks, count)
        seeds = stream_seeds(Stream.TRAIN_PROBLEM, self.cfg.seed, step, round_ * count + np.arange(count)).tolist()
        return np.asarray(tasks), np.asarray(ds), seeds

    def _rollout_groups(self, step: int, round_: int) -> Rollouts:
        """This process's share of one batch of problems (a contiguous block), G rollouts each."""
        g, p = self.cfg.group_size, self.cfg.problems
        tasks, ds, seeds = self._problems(step, round_, p)
        local = p // self.num_processes
        mine = slice(self.process_index * local, (self.process_index + 1) * local)
        tasks, ds, seeds = tasks[mine], ds[mine], seeds[mine]
        key = stream_key(self.key, Stream.TRAIN_ROLLOUT, step, round_)
        return rollout(self.model, self.tenv, self.renderer, [s for s in seeds for _ in range(g)],
                       [TASK_NAMES[int(t)] for t in tasks for _ in range(g)],
                       [int(d) for d in ds for _ in range(g)], key, self.cfg.rollout,
                       first_index=self.process_index * local * g)

    def _rewards(self, ro: Rollouts) -> np.ndarray:
        r = ro.rewards.astype(np.float32)
        if self.cfg.overlong_tokens:
            r = r + np.asarray(overlong_penalty(jnp.asarray(ro.policy_tokens), self.cfg.overlong_tokens,
                                                self.cfg.overlong_cache))
        return r

    def collect(self, step: int) -> tuple[Rollouts, np.ndarray, np.ndarray, dict]:
        """Rollouts of one step with dynamic sampling: groups whose rewards are all equal carry no signal
        and are dropped; extra problem batches refill the batch up to `max_resample_rounds` times. Every
        generated episode updates the curriculum. Returns (rollouts [N], rewards [N], weights [N], stats); the
        stats' episode means are over the first round, the problems the curriculum drew, before any filtering."""
        g, p = self.cfg.group_size, self.cfg.problems // self.num_processes
        kept_groups: list[Rollouts] = []
        kept_rewards: list[np.ndarray] = []
        generated = dropped = 0
        fallback: tuple[Rollouts, np.ndarray] | None = None
        for round_ in range(1 + (self.cfg.max_resample_rounds if self.cfg.dynamic_sampling else 0)):
            ro = self._rollout_groups(step, round_)
            outcomes = [distributed.gather(x) for x in (ro.tasks, ro.difficulties, ro.is_correct)]
            self.curriculum = cur.update(self.curriculum, *(jnp.asarray(x) for x in outcomes))
            rewards = self._rewards(ro)
            generated += p
            if fallback is None:
                fallback = (ro, rewards)
            if not self.cfg.dynamic_sampling:
                kept_groups, kept_rewards = [ro], [rewards]
                break
            good = np.asarray(informative(jnp.asarray(rewards.reshape(p, g))))
            dropped += int((~good).sum())
            for q in np.nonzero(good)[0]:
                if sum(len(k.rewards) for k in kept_groups) < p * g:
                    idx = np.arange(q * g, (q + 1) * g)
                    kept_groups.append(ro.select(idx))
                    kept_rewards.append(rewards[idx])
            full = sum(len(k.rewards) for k in kept_groups) >= p * g
            if distributed.gather(np.asarray([full])).all():         # every process stops at the same round
                break
        stats = {"groups_generated": generated, "groups_dropped": dropped,
                 "dropped_share": dropped / max(generated, 1), **episode_metrics(fallback[0])}
        if not kept_groups:
            ro, rewards = fallback
            return ro, rewards, np.zeros(len(rewards), np.float32), stats
        ro, rewards = Rollouts.concat(kept_groups), np.concatenate(kept_rewards)
        return ro, rewards, np.ones(len(rewards), np.float32), stats

    # -------------------------------------------------------------------------------- update

    def _shard(self, x: np.ndarray) -> jax.Array:
        if self.mesh is None:
            return jnp.asarray(x)
        return jax.device_put(x, NamedSharding(self.mesh, P(DATA, *([None] * (x.ndim - 1)))))

    def update(self, ro: Rollouts, rewards: np.ndarray, weights: np.ndarray) -> dict[str, float]:
        """One optimiser step on the batch (gradient accumulation over micro-batches)."""
        g = self.cfg.group_size
        adv = np.asarray(group_advantages(jnp.asarray(rewards.reshape(-1, g)), self.cfg.loss.scale_rewards,
                                          self.cfg.loss.adv_eps)).reshape(-1)
        rows = len(ro.conversations)
        micro = self.cfg.micro_batch or rows
        rows_padded = -(-rows // micro) * micro
        length = -(-max(len(c) for c in ro.conversations) // self.cfg.rollout.length_bucket) \
            * self.cfg.rollout.length_bucket
        arrays = training_arrays(ro.conversations, adv, weights, length, rows_padded, self.pad_id)
        global_tokens = distributed.global_sum(float(arrays["loss_mask"].sum()))
        global_sequences = distributed.global_sum(float(rows))
        local = self.cfg.loss.loss_type in ("grpo", "bnpo")
        n_micro = rows_padded // micro
        total, grads_sum, metrics_sum = 0.0, None, {}
        for m in range(n_micro):
            batch = {k: self._shard(v[m * micro:(m + 1) * micro]) for k, v in arrays.items()}
            ref = None
            if self.reference is not None:
                ref = reference_logprobs(self.reference, batch["tokens"], batch["attention"])
            loss, metrics, grads = grad_step(self.model, batch, self.cfg.loss, global_tokens, global_sequences, ref)
            scale = 1.0 / (n_micro * self.num_processes) if local else 1.0
            grads = jax.tree.map(lambda x: x * scale, grads)
            grads_sum = grads if grads_sum is None else jax.tree.map(jnp.add, grads_sum, grads)
            total += float(loss) * scale
            for k, v in metrics.items():
                metrics_sum[k] = metrics_sum.get(k, 0.0) + float(v) / n_micro
        grad_norm = float(apply_grads(self.optimizer, self.model, distributed.allreduce_sum(grads_sum)))
        return {"loss": total, "grad_norm": grad_norm, **{k: v for k, v in metrics_sum.items()},
                "policy_tokens": global_tokens, "seq_len": float(length)}

    def step(self) -> StepResult:
        """One training iteration; returns its metrics (also the curriculum window per task)."""
        step = self.step_index
        ro, rewards, weights, stats = self.collect(step)
        metrics = {"step": step, **stats}
        if weights.any():
            metrics.update(self.update(ro, rewards, weights))
        else:
            metrics.update({"loss": 0.0, "grad_norm": 0.0, "skipped_update": 1.0})
        metrics.update(self.curriculum_metrics())
        self.step_index += 1
        return StepResult(metrics=metrics, rollouts=ro, kept=weights > 0)

    def curriculum_metrics(self) -> dict[str, float]:
        out = {}
        for t in self.cfg.tasks:
            name = TASK_NAMES[t]
            out[f"curriculum/{name}/l"] = int(self.curriculum.low[t])
            out[f"curriculum/{name}/h"] = int(self.curriculum.high[t])
        return out

    # -------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds besides arrays: step, curriculum, configs and the text protocol the
        policy was trained on (system prompt style, tool-result budget)."""
        return {"step": self.step_index, "curriculum": cur.to_dict(self.curriculum),
                "train_config": config_dict(self.cfg), "model_config": dataclasses.asdict(self.model.config),
                "text": {"prompt_style": self.tenv.prompt_style,
                         "tool_result_tokens": self.tenv.tool_result_tokens}}

    def load_state_dict(self, meta: dict[str, Any]) -> None:
        self.step_index = int(meta["step"])
        self.curriculum = cur.from_dict(meta["curriculum"])


def episode_metrics(ro: Rollouts) -> dict[str, float]:
    """Means over a step's episodes, overall and per task."""
    out = {"reward_mean": float(ro.rewards.mean()), "is_correct_mean": float(ro.is_correct.mean()),
           "turns_mean": float(ro.turns.mean()), "truncated_share": float(ro.truncated.mean()),
           "policy_tokens_mean": float(ro.policy_tokens.mean()),
           "format_error_share": float(np.mean([i.get("format_error") is not None for i in ro.infos])),
           "r_task_mean": float(np.mean([i["r_task"] for i in ro.infos]))}
    for t in np.unique(ro.tasks):
        sel = ro.tasks == t
        out[f"task/{TASK_NAMES[int(t)]}/reward"] = float(ro.rewards[sel].mean())
        out[f"task/{TASK_NAMES[int(t)]}/is_correct"] = float(ro.is_correct[sel].mean())
    return out


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as JSON-friendly values."""
    out = dataclasses.asdict(cfg)
    out["tasks"] = [TASK_NAMES[t] for t in cfg.tasks]
    return out
