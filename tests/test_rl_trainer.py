"""Rollouts, the GRPO trainer, checkpoints/resume, sharding and the train CLI on a tiny random Qwen3."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import ecomjax
from ecomjax.models.qwen3 import Qwen3, SamplingParams, make_mesh, tiny_config, token_logprobs
from ecomjax.rl import checkpoint
from ecomjax.rl.losses import LossConfig
from ecomjax.rl.rollout import RolloutConfig, rollout
from ecomjax.rl.trainer import TrainConfig, Trainer
from ecomjax.rl.warmstart import WarmStartConfig, oracle_conversations, warm_start
from ecomjax.tasks.goal import TASK
from ecomjax.text import TextEnv
from ecomjax.text.tokenizer import BUILTIN_TOKENIZER, builtin_tokenizer, load_tokenizer, tokenizer_sha256
from ecomjax.text.tokens import Renderer

ROLLOUT = RolloutConfig(max_new_tokens=12, max_seq_len=1536, length_bucket=512,
                        sampling=SamplingParams(temperature=1.0))
CFG = TrainConfig(num_envs=8, group_size=4, tasks=(TASK["STATUS"],), steps=4, lr=1e-3, warmup_steps=0, rollout=ROLLOUT,
                  max_resample_rounds=0, dynamic_sampling=False, seed=3)


@pytest.fixture(scope="module")
def tenv(small_catalog, status_env):
    return TextEnv(*status_env, small_catalog[1], tool_result_tokens=48)


def tiny_model(tenv, seed=0):
    return Qwen3(tiny_config(vocab_size=len(tenv.tokenizer), hidden_size=32, intermediate_size=64), rngs=nnx.Rngs(seed))


def params_of(model):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_rollout_keeps_generated_ids_and_their_logprobs(tenv):
    model = tiny_model(tenv)
    r = Renderer(tenv.tokenizer)
    ro = rollout(model, tenv, r, [5, 5, 6, 6, 7, 7, 8, 8], ["STATUS"] * 8, [0] * 8, jax.random.key(0), ROLLOUT)
    assert ro.conversations[0].ids[:40] == ro.conversations[1].ids[:40]         # a group shares its episode
    assert ro.rewards.shape == (8,) and np.all(ro.rewards >= -1) and np.all(ro.rewards <= 1)
    for c in ro.conversations:
        ids, mask = np.asarray(c.ids)[None], np.ones((1, len(c)), np.int32)
        logp = np.asarray(token_logprobs(model, ids, mask))[0]                  # scores token t + 1
        on = np.asarray(c.mask[1:]) == 1
        assert on.sum() == c.policy_tokens > 0
        np.testing.assert_allclose(logp[on], np.asarray(c.logprobs[1:])[on], atol=2e-4)
        assert c.mask[0] == 0 and np.all(np.asarray(c.logprobs)[np.asarray(c.mask) == 0] == 0)


def test_oracle_transcripts_are_correct(tenv):
    convs, ok = oracle_conversations(tenv, Renderer(tenv.tokenizer), list(range(8)), ["STATUS"] * 8, [0] * 8,
                                     max_turns=10)
    assert ok.all() and all(c.policy_tokens > 0 for c in convs)


@pytest.mark.slow
def test_warm_start_lowers_the_loss(tenv):
    r = Renderer(tenv.tokenizer)
    model = tiny_model(tenv)
    losses = warm_start(model, tenv, r, WarmStartConfig(episodes=8, steps=6, batch=8, lr=3e-3, warmup=0,
                                                        max_seq_len=1536), ["STATUS"], [0], seed=0, length_bucket=512)
    assert losses[-1] < losses[0] - 0.5


def test_train_step_feeds_the_curriculum_and_updates_on_signal(tenv):
    trainer = Trainer(tiny_model(tenv), tenv, CFG)
    res = trainer.step()
    m = res.metrics
    for key in ("step", "reward_mean", "is_correct_mean", "loss", "grad_norm", "curriculum/STATUS/l",
                "curriculum/STATUS/h", "dropped_share", "policy_tokens"):
        assert key in m, key
    assert int(trainer.curriculum.total[TASK["STATUS"]]) == CFG.num_envs        # every episode counted at d = h = 0
    assert np.isfinite(m["loss"]) and m["step"] == 0 and trainer.step_index == 1
    before = params_of(trainer.model)
    ro = res.rollouts
    signal = np.array([1.0, -1.0, 0.5, -0.5] * (len(ro.rewards) // 4), np.float32)   # varied rewards in each group
    out = trainer.update(ro, signal, np.ones_like(signal))
    after = params_of(trainer.model)
    assert out["grad_norm"] > 0
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_resumed_run_equals_the_uninterrupted_run(tenv, tmp_path):
    straight = Trainer(tiny_model(tenv), tenv, CFG)
    for _ in range(2):
        straight.step()
    first = Trainer(tiny_model(tenv), tenv, CFG)
    first.step()
    mgr = checkpoint.manager(tmp_path / "ckpt")
    checkpoint.save(mgr, first)
    mgr.wait_until_finished()
    resumed = Trainer(tiny_model(tenv, seed=99), tenv, CFG)
    meta = checkpoint.restore(checkpoint.manager(tmp_path / "ckpt"), resumed)
    assert meta["step"] == 1 and resumed.step_index == 1
    resumed.step()
    for a, b in zip(jax.tree.leaves(params_of(straight.model)), jax.tree.leaves(params_of(resumed.model))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert cur_dict(straight) == cur_dict(resumed)
    other = Trainer(Qwen3(tiny_config(vocab_size=len(tenv.tokenizer), hidden_size=48, intermediate_size=64),
                          rngs=nnx.Rngs(0)), tenv, CFG)
    with pytest.raises(ValueError, match="hidden_size=32"):
        checkpoint.restore(checkpoint.manager(tmp_path / "ckpt"), other)


def cur_dict(trainer):
    return json.dumps(ecomjax.curriculum.to_dict(trainer.curriculum), sort_keys=True)


def chatml_word_tokenizer(name="tiny-chatml"):
    """A small ChatML tokenizer other than the built-in one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "<|im_start|>", "<|im_end|>", "hello"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", name_or_path=name,
                                   additional_special_tokens=words[1:3])


def saved(tenv, directory, extra=None):
    """The manager of a checkpoint of a fresh tiny trainer written to `directory` (this version's format)."""
    mgr = checkpoint.manager(directory)
    checkpoint.save(mgr, Trainer(tiny_model(tenv), tenv, CFG), extra=extra)
    mgr.wait_until_finished()
    return mgr


def test_checkpoint_holds_its_tokenizer_and_format_version(tenv, tmp_path, monkeypatch):
    mgr = saved(tenv, tmp_path / "ckpt")
    meta = checkpoint.read_meta(mgr)
    assert meta["format_version"] == checkpoint.CHECKPOINT_FORMAT and meta["tokenizer"] == BUILTIN_TOKENIZER
    assert meta["tokenizer_sha256"] == tokenizer_sha256(builtin_tokenizer())
    files = tmp_path / "ckpt" / "0" / checkpoint.TOKENIZER_ITEM
    assert (files / "tokenizer.json").is_file() and (files / "tokenizer_config.json").is_file()
    assert tokenizer_sha256(load_tokenizer(files)) == meta["tokenizer_sha256"]
    assert checkpoint.saved_tokenizer(mgr, meta) is builtin_tokenizer()

    other = chatml_word_tokenizer()
    monkeypatch.setattr(tenv, "tokenizer", other)
    mgr = saved(tenv, tmp_path / "other")
    meta = checkpoint.read_meta(mgr)
    loaded = checkpoint.saved_tokenizer(mgr, meta)
    assert loaded.name_or_path == "tiny-chatml" and tokenizer_sha256(loaded) == tokenizer_sha256(other)
    assert loaded("hello there")["input_ids"] == other("hello there")["input_ids"]


def write_format_1(tenv, directory):
    """A checkpoint as ecomjax wrote it before format 2: arrays and meta, the tokenizer only by name."""
    trainer = Trainer(tiny_model(tenv), tenv, CFG)
    mgr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False),
                                item_names=("state", "meta"))
    arrays = {"params": nnx.to_pure_dict(nnx.state(trainer.model, nnx.Param)),
              "opt": nnx.to_pure_dict(nnx.state(trainer.optimizer, nnx.optimizer.OptState))}
    mgr.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(
        {**trainer.state_dict(), "tokenizer": BUILTIN_TOKENIZER})))
    mgr.wait_until_finished()


def test_old_checkpoint_loads_with_the_frozen_tokenizer_and_a_warning(tenv, tmp_path):
    write_format_1(tenv, tmp_path / "old")
    mgr = checkpoint.manager(tmp_path / "old")
    meta = checkpoint.read_meta(mgr)
    with pytest.warns(UserWarning, match="token ids may differ if ecomjax's templates changed"):
        assert checkpoint.saved_tokenizer(mgr, meta) is builtin_tokenizer()
    with pytest.warns(UserWarning, match="token ids may differ"):
        assert checkpoint.restore(mgr, Trainer(tiny_model(tenv, seed=5), tenv, CFG))["step"] == 0


def test_evaluate_plays_a_checkpoint_with_the_tokenizer_it_saved(tenv, tmp_path, status_env):
    from ecomjax import evaluate

    saved(tenv, tmp_path / "run" / "checkpoints")
    write_format_1(tenv, tmp_path / "old" / "checkpoints")
    saved(tenv, tmp_path / "future" / "checkpoints", extra={"format_version": checkpoint.CHECKPOINT_FORMAT + 1})

    def runner(run):
        args = evaluate.parse_args(["--policy", f"checkpoint:{tmp_path / run}", "--tasks", "STATUS"])
        return evaluate.model_runner(str(tmp_path / run), *status_env, tenv.vocab, args)

    assert runner("run").text_env.tokenizer is builtin_tokenizer()
    with pytest.warns(UserWarning, match="token ids may differ"):
        assert runner("old").text_env.tokenizer is builtin_tokenizer()
    with pytest.raises(SystemExit, match="reads formats up to"):
        runner("future")


def test_checkpoint_of_another_tokenizer_is_refused_naming_both(tenv, tmp_path, monkeypatch):
    saved(tenv, tmp_path / "ckpt")
    write_format_1(tenv, tmp_path / "old")
    monkeypatch.setattr(tenv, "tokenizer", chatml_word_tokenizer())
    for directory in ("ckpt", "old"):
        with pytest.raises(ValueError, match="tokenizer 'builtin'.*this run's tokenizer is 'tiny-chatml'"):
            checkpoint.restore(checkpoint.manager(tmp_path / directory), Trainer(tiny_model(tenv), tenv, CFG))


def test_update_sharded_over_8_devices_equals_one_device(tenv, cpu_devices):
    single = Trainer(tiny_model(tenv), tenv, CFG)
    ro, rewards, weights, _ = single.collect(0)
    sharded = Trainer(tiny_model(tenv), tenv, CFG, mesh=make_mesh(4, 2))
    m1 = single.update(ro, rewards, weights)
    m8 = sharded.update(ro, rewards, weights)
    np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(params_of(single.model)), jax.tree.leaves(params_of(sharded.model))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_gradient_accumulation_equals_one_batch(tenv):
    full = Trainer(tiny_model(tenv), tenv, CFG)
    ro, rewards, weights, _ = full.collect(0)
    micro = Trainer(tiny_model(tenv), tenv, TrainConfig(**{**CFG.__dict__, "micro_batch": 2}))
    full.update(ro, rewards, weights)
    micro.update(ro, rewards, weights)
    for a, b in zip(jax.tree.leaves(params_of(full.model)), jax.tree.leaves(params_of(micro.model))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of group_size"):
        TrainConfig(num_envs=10, group_size=4)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="tasks"):
        TrainConfig(tasks=(42,))
    with pytest.raises(ValueError, match="max_new_tokens"):
        RolloutConfig(max_new_tokens=64, max_seq_len=64)
    with pytest.raises(ValueError):
        LossConfig(loss_type="ppo")
