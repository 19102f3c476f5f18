"""TextEnv: the JSON protocol over the JAX core, played by the oracle's own JSON and by bad agents."""

import json

import numpy as np
import pytest

import ecomjax
from ecomjax.env import INFO_KEYS
from ecomjax.tasks.goal import TASK_NAMES
from ecomjax.text import TextEnv

BATCH = 8                               # the batch size the other STATUS TextEnv tests compile for
OBS_KEYS = {"conversation", "tool_results", "turn", "env_id", "done", "reward", "new_messages", "system_prompt"}


@pytest.fixture(scope="session")
def status_tenv(small_catalog, status_env):
    return TextEnv(*status_env, small_catalog[1], tool_result_tokens=64)


@pytest.fixture(scope="session")
def c8_tenv(small_catalog):
    catalog, vocab = small_catalog
    env, params = ecomjax.make("C8", catalog=catalog)
    return TextEnv(env, params, vocab)


def play_oracle(tenv, seeds, env_ids, ds, max_turns=80):
    """Run the oracle's JSON to the end of every episode; returns (transcripts, final step results)."""
    tenv.reset_batch(seeds, env_ids, ds)
    results = None
    for _ in range(max_turns):
        results = tenv.step_batch(tenv.oracle_actions())
        if all(r[2] for r in results):
            break
    return [tenv.messages(b) for b in range(len(seeds))], results


def test_oracle_json_solves_status_and_transcripts_are_deterministic(status_tenv):
    seeds = list(range(BATCH))
    first, res = play_oracle(status_tenv, seeds, ["STATUS"] * BATCH, [0, 4, 8, 12] * (BATCH // 4))
    again, res2 = play_oracle(status_tenv, seeds, ["STATUS"] * BATCH, [0, 4, 8, 12] * (BATCH // 4))
    assert first == again and [r[1] for r in res] == [r[1] for r in res2]
    assert np.mean([r[3]["is_correct"] for r in res]) >= 0.99
    obs, reward, done, info = res[0]
    assert set(obs) == OBS_KEYS and done and obs["reward"] == reward
    assert set(INFO_KEYS) <= set(info) and info["termination_reason"] == "agent_done"
    roles = [m["role"] for m in first[0]]
    assert roles[:2] == ["system", "user"] and "tool" in roles
    assert all("{" not in m["content"] or m["role"] != "user" for m in first[0])


def step_all(tenv, text, d=2, n=8):
    """Reset n STATUS episodes (the batch size the session fixture compiled for) and send `text` to all;
    returns episode 0's step result."""
    tenv.reset_batch(list(range(n)), ["STATUS"] * n, [d] * n)
    return tenv.step_batch([text] * n)[0]


def test_tool_results_are_cut_to_the_token_budget(status_tenv):
    obs, *_ = step_all(status_tenv, json.dumps({"assistant_message": "Checking.", "tool_calls": [
        {"name": "order.list", "args": {"days": 365}}]}), d=10)
    tool = [m for m in obs["new_messages"] if m["role"] == "tool"][0]["content"]
    assert tool.endswith("…[truncated]")
    assert len(status_tenv.tokenizer(tool, add_special_tokens=False)["input_ids"]) <= 64
    assert obs["tool_results"][0]["name"] == "order.list" and obs["tool_results"][0]["error"] is None


def test_bad_agents_through_text(status_tenv):
    obs, reward, done, info = step_all(status_tenv, "I think it's shipped")
    assert done and reward == -1.0 and info["termination_reason"] == "format_invalid"
    assert "not valid JSON" in info["format_error"]
    for deep in ("[" * 5000 + "]" * 5000, "<tool_call>" + '{"a":' * 5000 + "1" + "}" * 5000 + "</tool_call>"):
        obs, reward, done, info = step_all(status_tenv, deep)
        assert done and info["termination_reason"] == "format_invalid" and "nested deeper" in info["format_error"]
    obs, reward, done, info = step_all(status_tenv, '{"assistant_message": "\ud800"}')
    assert done and "lone surrogate" in info["format_error"]

    obs, reward, done, info = step_all(status_tenv, json.dumps({"assistant_message": "Done.", "answer": {"done": True}}))
    assert done and reward == -1.0 and "answer.env is required" in info["format_error"]

    obs, reward, done, info = step_all(status_tenv, json.dumps({"assistant_message": "Looking.", "tool_calls": [
        {"name": "order.get_status", "args": {"order_id": "ord_999"}}, {"name": "order.teleport", "args": {}}]}))
    assert not done and info["tool_errors"] == 2
    errors = [r["error"] for r in obs["tool_results"]]
    assert "order_id not found" in errors[0] and "unknown tool" in errors[1]
    assert [m["role"] for m in obs["new_messages"]] == ["tool", "tool", "user"]



def test_reset_validates_its_arguments(status_tenv, small_catalog):
    with pytest.raises(ValueError, match="not in this env's collection"):
        status_tenv.reset(seed=0, env_id="PD")
    with pytest.raises(ValueError, match="unknown task"):
        status_tenv.reset(seed=0, env_id="SHOPPING")
    with pytest.raises(ValueError, match="difficulty must be >= 0"):
        status_tenv.reset(seed=0, env_id="STATUS", difficulty=-1)
    with pytest.raises(ValueError, match="seed"):
        status_tenv.reset(seed=-5, env_id="STATUS")
    env, params = ecomjax.make("STATUS", catalog=small_catalog[0])
    with pytest.raises(TypeError, match="Vocab"):
        TextEnv(env, params, small_catalog[0])


@pytest.mark.slow
@pytest.mark.parametrize("d", [0, 3, 6, 10, 15, 20])
def test_oracle_json_is_as_correct_as_the_structured_oracle_on_every_task(c8_tenv, d):
    n = 24
    tasks = [t for t in TASK_NAMES for _ in range(n)]
    _, results = play_oracle(c8_tenv, list(range(len(tasks))), tasks, [d] * len(tasks), max_turns=120)
    for t, name in enumerate(TASK_NAMES):
        ok = [r[3]["is_correct"] for r in results[t * n:(t + 1) * n]]
        assert np.mean(ok) >= 0.95, (name, d, [r[3]["termination_reason"] for r in results[t * n:(t + 1) * n]])
    assert np.mean([r[3]["is_correct"] for r in results]) >= 0.99
