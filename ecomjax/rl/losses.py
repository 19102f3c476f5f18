"""GRPO-family policy losses (SPEC §10, RL-ANCHORS §2): advantages, shaping, KL and aggregation.

All functions are pure ``jax.numpy`` and jittable with fixed shapes; every string or integer
option is static (a Python value, or a field of the hashable :class:`LossConfig`).

Per-token loss, with ``rho = exp(logp - old_logp)`` and the sequence advantage ``A`` broadcast
to its tokens::

    l = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * KL(pi || pi_ref)

Aggregation over the policy tokens (``mask``) follows TRL's ``loss_type`` names:

* ``grpo``    mean over sequences of the per-sequence token mean (DeepSeekMath),
* ``bnpo``    token sum / policy tokens of this (local) batch,
* ``dapo``    token sum / policy tokens of the whole *global accumulated* batch (DAPO, default),
* ``dr_grpo`` token sum / (sequences of the global batch * ``max_tokens``) (Dr. GRPO).

Global normalisers (``dapo``, ``dr_grpo``): ``policy_loss`` takes them as two explicit
arguments, ``global_tokens`` (used by ``dapo`` only) and ``global_sequences`` (used by
``dr_grpo`` only). Each is the count over *everything whose gradients are summed into one
optimizer update*: all micro-batches of a gradient-accumulation step and all data-parallel
shards. With these, the sum of the micro-batch losses (and of their gradients) equals the loss
of the one big batch. Both default to this call's own batch (``sum(mask)`` and ``B``), so
without accumulation they can be left out. A trainer may always pass both; the one that the
loss type does not use is ignored. ``grpo`` and ``bnpo`` are local by definition: to accumulate
them, average the micro-batch losses.

Gradients flow only through ``logp``: ``old_logp``, ``ref_logp`` and ``advantages`` are
treated as constants.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

LOSS_TYPES: tuple[str, ...] = ("dapo", "grpo", "bnpo", "dr_grpo")
SCALE_REWARDS: tuple[str, ...] = ("group", "batch", "none")
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k3")

DEFAULT_EPS_LOW = 0.2
DEFAULT_EPS_HIGH = 0.28
DEFAULT_MAX_TOKENS = 1024
DEFAULT_ADV_EPS = 1e-4  # TRL: (r - mean) / (std + 1e-4)
STD_DDOF = 1  # TRL / torch.std: Bessel-corrected standard deviation

Array = jax.Array


def _check_choice(field: str, value: object, choices: tuple[str, ...]) -> None:
    """ValueError naming ``field`` and ``value`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{field} must be one of {choices}, got {value!r}")


def _check_real(field: str, value: object, low: float, high: float, *, high_open: bool) -> None:
    """``value`` is a finite real number in ``[low, high)`` (``high_open``) or ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    above = value >= high if high_open else value > high
    if value < low or above:
        bracket = ")" if high_open else "]"
        raise ValueError(f"{field} must be in [{low}, {high}{bracket}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Static loss settings (hashable, usable as a static argument under ``jax.jit``).

    ``loss_type`` selects the aggregation (``LOSS_TYPES``); ``eps_low`` / ``eps_high`` the
    asymmetric ratio clip (DAPO Clip-Higher); ``beta`` the KL weight to a frozen reference
    (0 = no KL, no reference needed); ``kl_estimator`` k1 or k3; ``scale_rewards`` the
    advantage scaling (``SCALE_REWARDS``); ``max_tokens`` Dr. GRPO's constant ``L`` (maximum
    policy tokens per sequence); ``adv_eps`` the std guard of the advantage.
    """

    loss_type: str = "dapo"
    eps_low: float = DEFAULT_EPS_LOW
    eps_high: float = DEFAULT_EPS_HIGH
    beta: float = 0.0
    kl_estimator: str = "k3"
    scale_rewards: str = "group"
    max_tokens: int = DEFAULT_MAX_TOKENS
    adv_eps: float = DEFAULT_ADV_EPS

    def __post_init__(self) -> None:
        _check_choice("LossConfig.loss_type", self.loss_type, LOSS_TYPES)
        _check_real("LossConfig.eps_low", self.eps_low, 0.0, 1.0, high_open=True)
        _check_real("LossConfig.eps_high", self.eps_high, 0.0, math.inf, high_open=True)
        _check_real("LossConfig.beta", self.beta, 0.0, math.inf, high_open=True)
        _check_choice("LossConfig.kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _check_choice("LossConfig.scale_rewards", self.scale_rewards, SCALE_REWARDS)
        if (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens < 1
        ):
            raise ValueError(f"LossConfig.max_tokens must be an int >= 1, got {self.max_tokens!r}")
        _check_real("LossConfig.adv_eps", self.adv_eps, 0.0, math.inf, high_open=True)


def _std(x: Array, axis: int | None) -> Array:
    """Bessel-corrected std along ``axis`` (all elements when None); 0 for a single element."""
    n = x.size if axis is None else x.shape[axis]
    if n <= STD_DDOF:
        return jnp.zeros(() if axis is None else x.shape[:axis] + x.shape[axis + 1 :], x.dtype)
    return jnp.std(x, axis=axis, ddof=STD_DDOF)


def informative(rewards: Array) -> Array:
    """bool [P]: the group's rewards are not all equal (DAPO dynamic sampling keeps these)."""
    return jnp.any(rewards != rewards[:, :1], axis=1)  # [P]


def group_advantages(rewards: Array, scale: str, eps: float) -> Array:
    """Advantages [P, G] from rewards [P, G] (P problems x G rollouts of one episode key).

    ``r - group mean``, divided by ``group std + eps`` (``scale="group"``), by
    ``std over the whole batch + eps`` (``"batch"``, the mean stays per group), or not at all
    (``"none"``, Dr. GRPO). Stds are Bessel-corrected as in TRL. Groups whose rewards are all
    equal get exactly 0 (no rounding residue, no NaN).
    """
    _check_choice("scale", scale, SCALE_REWARDS)
    rewards = rewards.astype(jnp.float32)  # [P, G]
    centred = rewards - jnp.mean(rewards, axis=1, keepdims=True)  # [P, G]
    if scale == "group":
        denom = _std(rewards, axis=1)[:, None] + eps  # [P, 1]
    elif scale == "batch":
        denom = _std(rewards, axis=None) + eps  # []
    else:
        denom = jnp.ones((), jnp.float32)
    safe_denom = jnp.where(denom > 0, denom, 1.0)
    keep = informative(rewards)[:, None]  # [P, 1]
    return jnp.where(keep, centred / safe_denom, 0.0)  # [P, G]


def overlong_penalty(lengths: Array, max_len: int, cache_len: int) -> Array:
    """DAPO soft overlong punishment [N] float32 for response lengths [N] (in tokens).

    0 up to ``max_len - cache_len``; ``((max_len - cache_len) - len) / cache_len`` (linear from
    0 to -1) up to ``max_len``; -1 beyond. ``max_len`` and ``cache_len`` are static ints with
    ``0 <= cache_len <= max_len``; ``cache_len == 0`` is a hard step at ``max_len``.
    """
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
    bad_cache = isinstance(cache_len, bool) or not isinstance(cache_len, int)
    if bad_cache or not 0 <= cache_len <= max_len:
        raise ValueError(f"cache_len must be an int in [0, max_len={max_len}], got {cache_len!r}")
    lengths = lengths.astype(jnp.float32)  # [N]
    if cache_len == 0:
        return jnp.where(lengths > max_len, -1.0, 0.0).astype(jnp.float32)
    expected = float(max_len - cache_len)
    return jnp.clip((expected - lengths) / cache_len, -1.0, 0.0)  # [N]


def kl_penalty(logp: Array, ref_logp: Array, estimator: str) -> Array:
    """Per-token KL(pi || pi_ref) estimate [B, T] from log-probs [B, T].

    k1 = logp - ref_logp; k3 = e^d - d - 1 with d = ref_logp - logp (Schulman; unbiased, >= 0).
    """
    _check_choice("estimator", estimator, KL_ESTIMATORS)
    if estimator == "k1":
        return logp - ref_logp
    log_ratio = ref_logp - logp  # [B, T]
    return jnp.exp(log_ratio) - log_ratio - 1.0


def _safe_div(num: Array, den: Array) -> Array:
    """num / den, 0 where den == 0."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def _share(hit: Array, tokens: Array) -> Array:
    """Share of the ``tokens`` policy tokens where the bool [B, T] ``hit`` holds."""
    return _safe_div(jnp.sum(hit.astype(jnp.float32)), tokens)


def _check_shapes(
    logp: Array, old_logp: Array, advantages: Array, mask: Array, ref_logp: Array | None
) -> None:
    """ValueError unless logp, old_logp, mask (and ref_logp) are [B, T] and advantages [B]."""
    if logp.ndim != 2:
        raise ValueError(f"logp must be [B, T], got shape {logp.shape}")
    named = {"old_logp": old_logp, "mask": mask}
    if ref_logp is not None:
        named["ref_logp"] = ref_logp
    for name, x in named.items():
        if x.shape != logp.shape:
            raise ValueError(f"{name} must have logp's shape {logp.shape}, got {x.shape}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must be [B] = {logp.shape[:1]}, got {advantages.shape}")


def _aggregate(
    token_loss: Array,
    maskf: Array,
    cfg: LossConfig,
    global_tokens: Array | int | float | None,
    global_sequences: Array | int | float | None,
) -> Array:
    """Scalar loss from the masked per-token loss [B, T] by ``cfg.loss_type``."""
    total = jnp.sum(token_loss)
    local_tokens = jnp.sum(maskf)
    if cfg.loss_type == "grpo":
        seq_tokens = jnp.sum(maskf, axis=1)  # [B]
        seq_mean = _safe_div(jnp.sum(token_loss, axis=1), seq_tokens)  # [B]
        return _safe_div(jnp.sum(seq_mean), jnp.sum(seq_tokens > 0).astype(jnp.float32))
    if cfg.loss_type == "bnpo":
        return _safe_div(total, local_tokens)
    if cfg.loss_type == "dapo":
        tokens = local_tokens if global_tokens is None else jnp.asarray(global_tokens, jnp.float32)
        return _safe_div(total, tokens)
    sequences = token_loss.shape[0] if global_sequences is None else global_sequences
    return _safe_div(total, jnp.asarray(sequences, jnp.float32) * cfg.max_tokens)


def policy_loss(
    logp: Array,
    old_logp: Array,
    advantages: Array,
    mask: Array,
    cfg: LossConfig,
    ref_logp: Array | None = None,
    *,
    global_tokens: Array | int | float | None = None,
    global_sequences: Array | int | float | None = None,
) -> tuple[Array, dict[str, Array]]:
    """Clipped-surrogate loss (scalar) and metrics for one (micro-)batch.

    ``logp`` / ``old_logp`` / ``ref_logp`` [B, T]: log-probs of the taken tokens under the
    current policy / the behaviour policy at sampling time / the frozen reference (required
    when ``cfg.beta > 0``, ignored otherwise). ``advantages`` [B]: one per sequence, broadcast
    to its tokens. ``mask`` [B, T]: nonzero on policy tokens (0 on prompt, tool and
    user-simulator tokens). Values outside the mask (and the advantage of a row without policy
    tokens, e.g. padding) never matter, even if non-finite.

    ``global_tokens``: policy tokens of the global accumulated batch (``dapo``'s normaliser;
    default this batch's ``sum(mask)``). ``global_sequences``: sequences of the global batch
    (``dr_grpo``'s ``B``; default this batch's ``B``, padding rows included). Both may be
    traced scalars. See the module docstring.

    Metrics (over this batch's policy tokens, 0 when there are none): ``clip_ratio_low`` /
    ``clip_ratio_high`` (share where the low / high clip binds: ``rho < 1 - eps_low`` with
    ``A < 0`` / ``rho > 1 + eps_high`` with ``A > 0``), ``clip_ratio`` (either), ``ratio_mean``,
    ``kl_mean`` (0 when ``beta == 0``), ``policy_tokens``.
    """
    if cfg.beta > 0 and ref_logp is None:
        raise ValueError(f"ref_logp is required when LossConfig.beta > 0 (beta={cfg.beta!r})")
    _check_shapes(logp, old_logp, advantages, mask, ref_logp)
    on = mask > 0  # [B, T]
    maskf = on.astype(jnp.float32)  # [B, T]
    logp = jnp.where(on, logp.astype(jnp.float32), 0.0)  # [B, T]
    old_logp = jax.lax.stop_gradient(jnp.where(on, old_logp.astype(jnp.float32), 0.0))  # [B, T]
    has_tokens = jnp.any(on, axis=1, keepdims=True)  # [B, 1]
    adv = jnp.where(has_tokens, advantages.astype(jnp.float32)[:, None], 0.0)  # [B, 1]
    adv = jax.lax.stop_gradient(adv)

    ratio = jnp.exp(logp - old_logp)  # [B, T]
    clipped = jnp.clip(ratio, 1.0 - cfg.eps_low, 1.0 + cfg.eps_high)  # [B, T]
    token_loss = -jnp.minimum(ratio * adv, clipped * adv)  # [B, T]

    kl_sum = jnp.zeros((), jnp.float32)
    if cfg.beta > 0:
        ref = jax.lax.stop_gradient(jnp.where(on, ref_logp.astype(jnp.float32), 0.0))  # [B, T]
        kl = kl_penalty(logp, ref, cfg.kl_estimator)  # [B, T]
        token_loss = token_loss + cfg.beta * kl
        kl_sum = jax.lax.stop_gradient(jnp.sum(jnp.where(on, kl, 0.0)))

    token_loss = jnp.where(on, token_loss, 0.0)  # [B, T]
    loss = _aggregate(token_loss, maskf, cfg, global_tokens, global_sequences)

    tokens = jnp.sum(maskf)
    low = on & (ratio < 1.0 - cfg.eps_low) & (adv < 0)  # [B, T]
    high = on & (ratio > 1.0 + cfg.eps_high) & (adv > 0)  # [B, T]
    metrics = {
        "clip_ratio_low": _share(low, tokens),
        "clip_ratio_high": _share(high, tokens),
        "clip_ratio": _share(low | high, tokens),
        "ratio_mean": _safe_div(jnp.sum(jnp.where(on, jax.lax.stop_gradient(ratio), 0.0)), tokens),
        "kl_mean": _safe_div(kl_sum, tokens),
        "policy_tokens": tokens,
    }
    return loss, metrics
