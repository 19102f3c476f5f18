"""Reward composer (SPEC §7): hard fails, then clip(w_task·r_task + w_eff·r_eff + w_hall·r_hall, -1, 1)."""

import jax.numpy as jnp
from flax import struct

from ecomjax.tasks.action import Answer
from ecomjax.world.state import World, was_seen


@struct.dataclass
class RewardConfig:
    """Weights and the tool-error policy of the composer."""

    w_task: float = struct.field(pytree_node=False, default=0.75)
    w_eff: float = struct.field(pytree_node=False, default=0.15)
    w_hall: float = struct.field(pytree_node=False, default=0.10)
    tool_error_any_turn: bool = struct.field(pytree_node=False, default=False)


def efficiency(turns: jnp.ndarray, clarify_turns: jnp.ndarray, t_max: jnp.ndarray) -> jnp.ndarray:
    """r_eff = clip(1 − 2·(T_eff − 1)/(T_max − 1), −1, 1) with T_eff = max(1, T − clarification turns)."""
    t_eff = jnp.maximum(1, turns - clarify_turns).astype(jnp.float32)
    denom = jnp.maximum(t_max - 1, 1).astype(jnp.float32)
    r = jnp.clip(1.0 - 2.0 * (t_eff - 1.0) / denom, -1.0, 1.0)
    return jnp.where(t_max <= 1, jnp.where(turns <= 1, 1.0, -1.0), r)


def hallucination(answers: Answer, answered: jnp.ndarray, world: World) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(r_hall, hall_rate): share of recommended ids (all intents) never shown to the agent. answers [I]."""
    listed = (answers.rec != -1) & answered[:, None]                                # [I, R]
    unseen = listed & ~was_seen(world, answers.rec.reshape(-1)).reshape(answers.rec.shape)
    rate = jnp.sum(unseen) / jnp.maximum(jnp.sum(listed), 1)
    return -jnp.clip(rate, 0.0, 1.0), rate


def compose(cfg: RewardConfig, r_task, r_eff, r_hall, hard_fail) -> jnp.ndarray:
    total = jnp.clip(cfg.w_task * r_task + cfg.w_eff * r_eff + cfg.w_hall * r_hall, -1.0, 1.0)
    return jnp.where(hard_fail, -1.0, total)
