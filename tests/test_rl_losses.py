"""GRPO-family losses (ecomjax.rl.losses) against straightforward NumPy references."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecomjax.rl import (
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

RTOL = 1e-5
ATOL = 1e-6
MAX_TOKENS = 6

_loss = jax.jit(policy_loss, static_argnames=("cfg",))
_loss_grad = jax.jit(jax.value_and_grad(policy_loss, has_aux=True), static_argnames=("cfg",))
_advantages = jax.jit(group_advantages, static_argnames=("scale", "eps"))
_overlong = jax.jit(overlong_penalty, static_argnames=("max_len", "cache_len"))
_kl = jax.jit(kl_penalty, static_argnames=("estimator",))


# ----------------------------------------------------------------------------- NumPy references


def np_advantages(rewards: np.ndarray, scale: str, eps: float) -> np.ndarray:
    rewards = np.asarray(rewards, np.float64)
    out = np.zeros_like(rewards)
    batch_std = float(np.std(rewards, ddof=1)) if rewards.size > 1 else 0.0
    for p, group in enumerate(rewards):
        if np.all(group == group[0]):
            continue
        centred = group - group.mean()
        if scale == "group":
            centred = centred / (np.std(group, ddof=1) + eps)
        elif scale == "batch":
            centred = centred / (batch_std + eps)
        out[p] = centred
    return out


def np_overlong(lengths: np.ndarray, max_len: int, cache_len: int) -> np.ndarray:
    out = []
    for n in lengths:
        if n <= max_len - cache_len:
            out.append(0.0)
        elif n <= max_len:
            out.append(((max_len - cache_len) - n) / cache_len)
        else:
            out.append(-1.0)
    return np.asarray(out)


def np_kl(logp: float, ref: float, estimator: str) -> float:
    if estimator == "k1":
        return logp - ref
    return math.exp(ref - logp) - (ref - logp) - 1.0


def np_token_loss(logp, old, adv, mask, cfg: LossConfig, ref=None) -> np.ndarray:
    out = np.zeros(logp.shape)
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if not mask[b, t]:
                continue
            rho = math.exp(float(logp[b, t]) - float(old[b, t]))
            a = float(adv[b])
            clipped = min(max(rho, 1.0 - cfg.eps_low), 1.0 + cfg.eps_high)
            value = -min(rho * a, clipped * a)
            if cfg.beta > 0:
                value += cfg.beta * np_kl(float(logp[b, t]), float(ref[b, t]), cfg.kl_estimator)
            out[b, t] = value
    return out


def np_policy_loss(logp, old, adv, mask, cfg, ref=None, global_tokens=None, global_sequences=None):
    per_token = np_token_loss(logp, old, adv, mask, cfg, ref)
    counts = mask.sum(axis=1)
    total = per_token.sum()
    if cfg.loss_type == "grpo":
        rows = [per_token[b].sum() / counts[b] for b in range(len(counts)) if counts[b] > 0]
        return float(np.mean(rows)) if rows else 0.0
    if cfg.loss_type == "bnpo":
        return total / counts.sum() if counts.sum() else 0.0
    if cfg.loss_type == "dapo":
        tokens = counts.sum() if global_tokens is None else global_tokens
        return total / tokens if tokens else 0.0
    sequences = logp.shape[0] if global_sequences is None else global_sequences
    return total / (sequences * cfg.max_tokens)


def np_clip_shares(logp, old, adv, mask, cfg) -> tuple[float, float]:
    low = high = 0
    for b, t in zip(*np.nonzero(mask)):
        rho = math.exp(float(logp[b, t]) - float(old[b, t]))
        low += rho < 1.0 - cfg.eps_low and adv[b] < 0
        high += rho > 1.0 + cfg.eps_high and adv[b] > 0
    n = int(mask.sum())
    return (low / n, high / n) if n else (0.0, 0.0)


# ----------------------------------------------------------------------------- hand-made batch


def _batch(garbage: float = 0.0):
    """B=4, T=6: a prefix row, a row with a tool gap, an empty row, a full row."""
    rng = np.random.default_rng(7)
    mask = np.array(
        [[1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool
    )
    logp = rng.uniform(-3.0, -0.1, mask.shape).astype(np.float32)
    old = (logp + rng.uniform(-0.6, 0.6, mask.shape)).astype(np.float32)
    ref = (logp + rng.uniform(-0.4, 0.4, mask.shape)).astype(np.float32)
    adv = np.array([1.2, -0.7, 0.5, -1.5], np.float32)
    for x in (logp, old, ref):
        x[~mask] = garbage
    return logp, old, adv, mask, ref


def _cfg(loss_type: str, beta: float = 0.0, estimator: str = "k3") -> LossConfig:
    return LossConfig(loss_type=loss_type, beta=beta, kl_estimator=estimator, max_tokens=MAX_TOKENS)


# ----------------------------------------------------------------------------- advantages


REWARDS = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1], [0.3, -1.0, 2.5, 0.3], [-1.0, -1.0, -1.0, -1.0]],
    np.float32,
)


@pytest.mark.parametrize("scale", SCALE_REWARDS)
def test_group_advantages_match_numpy(scale):
    adv = np.asarray(_advantages(jnp.asarray(REWARDS), scale, 1e-4))
    np.testing.assert_allclose(adv, np_advantages(REWARDS, scale, 1e-4), rtol=RTOL, atol=ATOL)
    assert np.all(np.isfinite(adv))
    assert np.all(adv[[1, 3]] == 0.0), "constant-reward groups get exactly 0"


def test_group_advantages_hand_values():
    # [1, 0, 0, 0]: mean 0.25, Bessel std 0.5.
    adv = np.asarray(_advantages(jnp.asarray(REWARDS[:1]), "group", 1e-4))[0]
    np.testing.assert_allclose(adv, np.array([0.75, -0.25, -0.25, -0.25]) / 0.5001, rtol=RTOL)
    none = np.asarray(_advantages(jnp.asarray(REWARDS[:1]), "none", 1e-4))[0]
    np.testing.assert_allclose(none, [0.75, -0.25, -0.25, -0.25], rtol=RTOL)


@pytest.mark.parametrize("scale", SCALE_REWARDS)
def test_constant_groups_get_exact_zero(scale):
    # float32 means of 8 x 0.1 carry a rounding residue: none may leak into the advantage.
    rewards = jnp.asarray([[0.1] * 8, [1.0] + [0.0] * 7], jnp.float32)
    assert float(jnp.mean(rewards[0])) != float(rewards[0, 0])
    adv = np.asarray(_advantages(rewards, scale, 1e-4))
    assert np.all(adv[0] == 0.0) and np.all(adv[1] != 0.0)


def test_group_advantages_single_rollout_and_bad_scale():
    assert np.all(np.asarray(_advantages(jnp.ones((3, 1)), "group", 1e-4)) == 0.0)
    assert np.all(np.asarray(_advantages(jnp.ones((1, 1)), "batch", 0.0)) == 0.0)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(jnp.ones((2, 2)), "global", 1e-4)


def test_informative():
    keep = np.asarray(informative(jnp.asarray(REWARDS)))
    np.testing.assert_array_equal(keep, [True, False, True, False])


# ----------------------------------------------------------------------------- overlong, KL


def test_overlong_penalty_hand_values():
    lengths = jnp.array([0, 16, 17, 18, 20, 21, 100])
    out = _overlong(lengths, 20, 4)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), [0, 0, -0.25, -0.5, -1, -1, -1], rtol=RTOL)


@pytest.mark.parametrize(("max_len", "cache_len"), [(20, 4), (10, 10), (12, 0), (7, 3)])
def test_overlong_penalty_matches_numpy(max_len, cache_len):
    lengths = np.arange(0, 2 * max_len + 2)
    out = np.asarray(_overlong(jnp.asarray(lengths), max_len, cache_len))
    np.testing.assert_allclose(out, np_overlong(lengths, max_len, cache_len), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("max_len", "cache_len"), [(0, 0), (10, 11), (10, -1), (10.0, 2)])
def test_overlong_penalty_rejects_bad_lengths(max_len, cache_len):
    with pytest.raises(ValueError, match="len"):
        overlong_penalty(jnp.arange(3), max_len, cache_len)


@pytest.mark.parametrize("estimator", KL_ESTIMATORS)
def test_kl_penalty_matches_numpy(estimator):
    logp, _, _, _, ref = _batch()
    out = np.asarray(_kl(jnp.asarray(logp), jnp.asarray(ref), estimator))
    expected = np.vectorize(lambda a, b: np_kl(a, b, estimator))(logp.astype(np.float64), ref)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=ATOL)
    if estimator == "k3":
        assert np.all(out >= 0.0)
    same = _kl(jnp.asarray(logp), jnp.asarray(logp), estimator)
    np.testing.assert_allclose(np.asarray(same), 0.0)
    with pytest.raises(ValueError, match="estimator"):
        kl_penalty(jnp.asarray(logp), jnp.asarray(ref), "k2")


# ----------------------------------------------------------------------------- policy loss


@pytest.mark.parametrize(("beta", "estimator"), [(0.0, "k3"), (0.1, "k1"), (0.1, "k3")])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_policy_loss_matches_numpy(loss_type, beta, estimator):
    logp, old, adv, mask, ref = _batch()
    cfg = _cfg(loss_type, beta, estimator)
    loss, metrics = _loss(*map(jnp.asarray, (logp, old, adv, mask)), cfg, jnp.asarray(ref))
    expected = np_policy_loss(logp, old, adv, mask, cfg, ref)
    np.testing.assert_allclose(float(loss), expected, rtol=RTOL, atol=ATOL)
    low, high = np_clip_shares(logp, old, adv, mask, cfg)
    assert 0.0 < low and 0.0 < high, "the hand-made batch exercises both clips"
    np.testing.assert_allclose(float(metrics["clip_ratio_low"]), low, rtol=RTOL)
    np.testing.assert_allclose(float(metrics["clip_ratio_high"]), high, rtol=RTOL)
    assert float(metrics["policy_tokens"]) == mask.sum()
    rho = np.exp(logp.astype(np.float64) - old)[mask]
    np.testing.assert_allclose(float(metrics["ratio_mean"]), rho.mean(), rtol=RTOL)
    kl = np.vectorize(lambda a, b: np_kl(a, b, estimator))(logp.astype(np.float64), ref)[mask]
    expected_kl = kl.mean() if beta else 0.0
    np.testing.assert_allclose(float(metrics["kl_mean"]), expected_kl, rtol=1e-4, atol=ATOL)


def test_aggregations_differ_on_ragged_masks():
    logp, old, adv, mask, ref = _batch()
    batch = [jnp.asarray(x) for x in (logp, old, adv, mask, ref)]
    losses = {t: float(_loss(*batch[:4], _cfg(t), batch[4])[0]) for t in LOSS_TYPES}
    assert losses["dapo"] == pytest.approx(losses["bnpo"], rel=RTOL), "dapo defaults to local"
    assert len({round(v, 6) for v in (losses["grpo"], losses["dapo"], losses["dr_grpo"])}) == 3


def test_clipping_both_sides_both_signs():
    # One token per sequence: rho in {1.5, 0.5} x A in {+1, -1}, plus 1.1 and 1.25 (inside
    # Clip-Higher's [1 + eps_low, 1 + eps_high]) with A = +1, and 0.85 with A = -1.
    rho = np.array([1.5, 0.5, 0.5, 1.5, 1.1, 1.25, 0.85], np.float32)
    adv = np.array([1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0], np.float32)
    n = len(rho)
    old = np.full((n, 1), -1.0, np.float32)
    logp = old + np.log(rho)[:, None]
    mask = np.ones((n, 1), bool)
    cfg = _cfg("bnpo")
    (loss, metrics), grad = _loss_grad(*map(jnp.asarray, (logp, old, adv, mask)), cfg)
    # Per token: -1.28 (high clip binds), -0.5, +0.8 (low clip binds), +1.5, -1.1, -1.25, +0.85.
    per_token = np.array([-1.28, -0.5, 0.8, 1.5, -1.1, -1.25, 0.85])
    np.testing.assert_allclose(float(loss), per_token.mean(), rtol=1e-5)
    assert float(metrics["clip_ratio_high"]) == pytest.approx(1 / n)
    assert float(metrics["clip_ratio_low"]) == pytest.approx(1 / n)
    assert float(metrics["clip_ratio"]) == pytest.approx(2 / n)
    grad = np.asarray(grad)[:, 0]
    assert grad[0] == 0.0 and grad[2] == 0.0, "binding clips stop the gradient"
    unclipped = [1, 3, 4, 5, 6]
    np.testing.assert_allclose(grad[unclipped], -(rho * adv)[unclipped] / n, rtol=1e-5)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_empty_mask_and_garbage_outside_mask(loss_type):
    logp, old, adv, mask, ref = _batch(garbage=np.nan)
    adv[2] = np.nan  # row 2 holds no policy tokens (padding)
    cfg = _cfg(loss_type, beta=0.1)
    args = list(map(jnp.asarray, (logp, old, adv, mask)))
    (loss, _), grad = _loss_grad(*args, cfg, jnp.asarray(ref))
    clean = np_policy_loss(*_batch()[:4], cfg, _batch()[4])
    np.testing.assert_allclose(float(loss), clean, rtol=RTOL, atol=ATOL)
    assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.asarray(grad)[~mask] == 0.0)
    args[3] = jnp.zeros_like(args[3])
    (loss, metrics), grad = _loss_grad(*args, cfg, jnp.asarray(ref))
    assert float(loss) == 0.0 and np.all(np.asarray(grad) == 0.0)
    assert all(float(v) == 0.0 for v in metrics.values())


def test_policy_loss_argument_errors():
    logp, old, adv, mask, ref = map(jnp.asarray, _batch())
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(logp, old, adv, mask, _cfg("dapo", beta=0.1))
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(logp, old, adv[:2], mask, _cfg("dapo"))
    with pytest.raises(ValueError, match="mask"):
        policy_loss(logp, old, adv, mask[:, :3], _cfg("dapo"))


# ----------------------------------------------------------------------------- accumulation


@pytest.mark.parametrize("loss_type", ["dapo", "dr_grpo"])
def test_gradient_accumulation_equals_full_batch(loss_type):
    logp, old, adv, mask, ref = _batch()
    logp, old, adv, mask, ref = (np.concatenate([x, x[::-1]]) for x in (logp, old, adv, mask, ref))
    mask[5, 1:] = False  # ragged: the micro-batches hold different token counts
    cfg = _cfg(loss_type, beta=0.05)
    batch = [jnp.asarray(x) for x in (logp, old, adv, mask, ref)]
    (full, _), full_grad = _loss_grad(*batch[:4], cfg, batch[4])
    totals = {"global_tokens": jnp.asarray(mask.sum()), "global_sequences": jnp.asarray(len(mask))}
    micro_losses, micro_grads, local_losses = [], [], []
    for part in np.split(np.arange(len(mask)), 4):
        sliced = [jnp.asarray(x[part]) for x in (logp, old, adv, mask, ref)]
        (loss, _), grad = _loss_grad(*sliced[:4], cfg, sliced[4], **totals)
        micro_losses.append(float(loss))
        micro_grads.append(np.asarray(grad))
        local_losses.append(float(_loss(*sliced[:4], cfg, sliced[4])[0]))
    assert sum(local_losses) != pytest.approx(float(full), rel=1e-3), "the global count matters"
    np.testing.assert_allclose(sum(micro_losses), float(full), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        np.concatenate(micro_grads), np.asarray(full_grad), rtol=RTOL, atol=1e-7
    )


# ----------------------------------------------------------------------------- toy policy


TOY_T, TOY_V = 3, 4
TOY_TOKENS = np.array([[0, 1, 2], [3, 3, 3], [1, 2, 0]])  # [B, T]
TOY_MASK = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1]], bool)
TOY_ADV = np.array([1.0, -1.0, 0.5], np.float32)


def _toy_logp(theta: jax.Array) -> jax.Array:
    """Per-position softmax policy theta [T, V]; log-probs [B, T] of TOY_TOKENS."""
    logprobs = jax.nn.log_softmax(theta, axis=-1)  # [T, V]
    return jnp.take_along_axis(logprobs.T, jnp.asarray(TOY_TOKENS).T, axis=0).T


def _toy_loss(theta, old, ref, cfg):
    adv, mask = jnp.asarray(TOY_ADV), jnp.asarray(TOY_MASK)
    return policy_loss(_toy_logp(theta), old, adv, mask, cfg, ref)[0]


_toy_value = jax.jit(_toy_loss, static_argnames=("cfg",))
_toy_grad = jax.jit(jax.grad(_toy_loss), static_argnames=("cfg",))


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_toy_policy_gradient_matches_finite_differences(loss_type):
    rng = np.random.default_rng(3)
    theta = jnp.asarray(rng.normal(size=(TOY_T, TOY_V)), jnp.float32)
    old = _toy_logp(theta + jnp.asarray(rng.normal(scale=0.15, size=(TOY_T, TOY_V)), jnp.float32))
    ref = _toy_logp(theta + jnp.asarray(rng.normal(scale=0.3, size=(TOY_T, TOY_V)), jnp.float32))
    cfg = _cfg(loss_type, beta=0.05)
    grad = np.asarray(_toy_grad(theta, old, ref, cfg))
    step = 1e-2
    numeric = np.zeros_like(grad)
    for idx in np.ndindex(grad.shape):
        delta = jnp.zeros_like(theta).at[idx].set(step)
        up = float(_toy_value(theta + delta, old, ref, cfg))
        down = float(_toy_value(theta - delta, old, ref, cfg))
        numeric[idx] = (up - down) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-2, atol=2e-4)
    assert np.abs(grad).max() > 1e-2


def test_toy_policy_step_moves_log_probs_with_advantage_sign():
    theta = jnp.zeros((TOY_T, TOY_V), jnp.float32)
    before = _toy_logp(theta)
    cfg = _cfg("dapo")
    theta_new = theta - 0.5 * _toy_grad(theta, before, None, cfg)
    delta = np.asarray(_toy_logp(theta_new) - before)
    assert np.all(delta[0][TOY_MASK[0]] > 0), "positive-advantage tokens gain log-prob"
    assert np.all(delta[1][TOY_MASK[1]] < 0), "negative-advantage tokens lose log-prob"


# ----------------------------------------------------------------------------- properties


PROP_B, PROP_T = 4, 5
PROP_KL = [(0.0, "k3"), (0.04, "k1"), (0.04, "k3")]


@given(
    shape=st.tuples(st.integers(1, PROP_B), st.integers(1, PROP_T)),
    loss_type=st.sampled_from(LOSS_TYPES),
    kl=st.sampled_from(PROP_KL),
    seed=st.integers(0, 2**16),
)
def test_policy_loss_property(shape, loss_type, kl, seed):
    """Random [B, T] batches, padded to one compiled shape with masked garbage rows/columns."""
    rng = np.random.default_rng(seed)
    logp = rng.uniform(-12.0, 0.0, shape).astype(np.float32)
    old = np.clip(logp + rng.normal(scale=1.0, size=shape), -20.0, 0.0).astype(np.float32)
    ref = np.clip(logp + rng.normal(scale=1.0, size=shape), -20.0, 0.0).astype(np.float32)
    adv = rng.normal(scale=2.0, size=shape[:1]).astype(np.float32)
    mask = rng.random(shape) < rng.uniform(0.0, 1.0)
    cfg = _cfg(loss_type, *kl)
    pad = ((0, PROP_B - shape[0]), (0, PROP_T - shape[1]))
    padded = [np.pad(x, pad, constant_values=np.inf) for x in (logp, old, ref)]
    padded_mask = np.pad(mask, pad, constant_values=False)
    padded_adv = np.pad(adv, pad[:1], constant_values=np.nan)
    loss, metrics = _loss(
        *map(jnp.asarray, (padded[0], padded[1], padded_adv, padded_mask)),
        cfg,
        jnp.asarray(padded[2]),
        global_sequences=jnp.asarray(shape[0]),
    )
    assert np.isfinite(float(loss)) and all(np.isfinite(float(v)) for v in metrics.values())
    for key in ("clip_ratio_low", "clip_ratio_high", "clip_ratio"):
        assert 0.0 <= float(metrics[key]) <= 1.0
    expected = np_policy_loss(logp, old, adv, mask, cfg, ref)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4, atol=1e-5)
    low, high = np_clip_shares(logp, old, adv, mask, cfg)
    np.testing.assert_allclose(float(metrics["clip_ratio_low"]), low, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(metrics["clip_ratio_high"]), high, rtol=1e-5, atol=1e-7)


def _all_scales(rewards: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
    return {s: group_advantages(rewards, s, 1e-4) for s in SCALE_REWARDS}, informative(rewards)


_all_scales_jit = jax.jit(_all_scales)


@given(
    shape=st.tuples(st.sampled_from([1, 3]), st.sampled_from([1, 2, 8])),
    seed=st.integers(0, 2**16),
)
def test_group_advantages_property(shape, seed):
    """Few compiled shapes, many reward draws from a small value set (many constant groups)."""
    rng = np.random.default_rng(seed)
    rewards = rng.choice(np.array([-1.0, 0.0, 0.1, 1.0], np.float32), size=shape)
    by_scale, keep = _all_scales_jit(jnp.asarray(rewards))
    constant = np.array([np.all(g == g[0]) for g in rewards])
    np.testing.assert_array_equal(~np.asarray(keep), constant)
    for scale, adv in by_scale.items():
        adv = np.asarray(adv)
        assert np.all(np.isfinite(adv)) and np.all(adv[constant] == 0.0)
        np.testing.assert_allclose(adv, np_advantages(rewards, scale, 1e-4), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("loss_type", "ppo"),
        ("eps_low", 1.0),
        ("eps_low", -0.1),
        ("eps_high", -0.01),
        ("eps_high", float("nan")),
        ("beta", -1.0),
        ("beta", "0.1"),
        ("kl_estimator", "k2"),
        ("scale_rewards", True),
        ("max_tokens", 0),
        ("max_tokens", 12.0),
        ("max_tokens", True),
        ("adv_eps", -1e-4),
    ],
)
def test_loss_config_validation(field, value):
    with pytest.raises(ValueError, match=rf"LossConfig\.{field}.*{re.escape(repr(value))}"):
        LossConfig(**{field: value})


def test_loss_config_defaults_are_dapo_and_hashable():
    cfg = LossConfig()
    fields = (cfg.loss_type, cfg.eps_low, cfg.eps_high, cfg.beta, cfg.kl_estimator)
    assert fields == ("dapo", 0.2, 0.28, 0.0, "k3") and cfg.scale_rewards == "group"
    assert hash(cfg) == hash(LossConfig()) and cfg == LossConfig()
