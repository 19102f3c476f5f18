"""RL training for ecomjax: GRPO-family losses (SPEC §10)."""

from ecomjax.rl.losses import (
    KL_ESTIMATORS,
    LOSS_TYPES,
    SCALE_REWARDS,
    LossConfig,
    group_advantages,
    informative,
    kl_penalty,
    overlong_penalty,
    policy_loss,
)

__all__ = [
    "KL_ESTIMATORS",
    "LOSS_TYPES",
    "SCALE_REWARDS",
    "LossConfig",
    "group_advantages",
    "informative",
    "kl_penalty",
    "overlong_penalty",
    "policy_loss",
]
