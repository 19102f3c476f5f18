"""RLVE curriculum (SPEC §9): windows, frontier counting, batch == sequential, sampling, I/O."""

from __future__ import annotations

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecomjax import curriculum as cur

PD, SUB, CART, RETURN, STATUS = (
    cur.TASK_NAMES.index(n) for n in ("PD", "SUB", "CART", "RETURN", "STATUS")
)
_FIELDS = ("low", "high", "correct", "total")
update_jit = jax.jit(cur.update)
sample_jit = jax.jit(cur.sample, static_argnums=(3,))


def _feed(state, task, difficulty, is_correct, valid=None):
    """Run a jitted batch update on python lists."""
    n = len(task)
    return update_jit(
        state,
        jnp.asarray(task, jnp.int32).reshape(n),
        jnp.asarray(difficulty, jnp.int32).reshape(n),
        jnp.asarray(is_correct, bool).reshape(n),
        None if valid is None else jnp.asarray(valid, bool).reshape(n),
    )


def _columns(state) -> tuple[list[int], ...]:
    return tuple(np.asarray(getattr(state, f)).tolist() for f in _FIELDS)


def _state(low, high, correct, total, config) -> cur.CurriculumState:
    return cur.CurriculumState(
        low=jnp.asarray(low, jnp.int32),
        high=jnp.asarray(high, jnp.int32),
        correct=jnp.asarray(correct, jnp.int32),
        total=jnp.asarray(total, jnp.int32),
        config=config,
    )


def reference_update(columns, outcomes, config):
    """The algorithm of SPEC §9 / R§6, one episode at a time, on python ints."""
    low, high, correct, total = (list(c) for c in columns)
    for t, d, c, ok in outcomes:
        if not ok or d != high[t]:
            continue
        total[t] += 1
        correct[t] += int(c)
        if total[t] >= config.tau_num:
            if correct[t] / total[t] >= config.tau_acc:
                high[t] += 1
                if config.variant == "rlve":
                    low[t] = max(low[t], high[t] - config.d_delta + 1)
                elif high[t] - low[t] > config.d_delta:
                    low[t] = high[t] - config.d_delta
            correct[t] = total[t] = 0
    return low, high, correct, total


# --------------------------------------------------------------------------- collections


def test_collections_code_and_blog_nesting():
    assert cur.collection_tasks("C1") == (PD,)
    assert cur.collection_tasks("C2") == (PD, SUB)
    assert cur.collection_tasks("C4") == (PD, SUB, CART, RETURN)
    assert sorted(cur.collection_tasks("C8")) == list(range(cur.NUM_TASKS))
    assert cur.collection_tasks("C1-blog") == (CART,)
    assert set(cur.collection_tasks("C2-blog")) == {CART, SUB}
    assert set(cur.collection_tasks("C4-blog")) == {CART, SUB, PD, RETURN}
    assert sorted(cur.collection_tasks("C8-blog")) == list(range(cur.NUM_TASKS))
    assert cur.collection_tasks("JOURNEY") == (cur.TASK_NAMES.index("JOURNEY"),)


@pytest.mark.parametrize("bad", ["C3", "c1", "", "C8-Blog"])
def test_collection_unknown_name_is_named(bad):
    with pytest.raises(ValueError, match=f"collection.*{bad!r}"):
        cur.collection_tasks(bad)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"tau_acc": 1.5}, "tau_acc"),
        ({"tau_acc": -0.1}, "tau_acc"),
        ({"tau_acc": float("nan")}, "tau_acc"),
        ({"tau_acc": "0.9"}, "tau_acc"),
        ({"tau_num": 0}, "tau_num"),
        ({"tau_num": 3.0}, "tau_num"),
        ({"d_delta": 0}, "d_delta"),
        ({"d_delta": True}, "d_delta"),
        ({"variant": "paper"}, "variant"),
    ],
)
def test_config_validation_names_field_and_value(kwargs, field):
    (value,) = kwargs.values()
    with pytest.raises(ValueError, match=field) as err:
        cur.CurriculumConfig(**kwargs)
    assert repr(value) in str(err.value)


def test_min_correct_matches_ratio_rule():
    assert cur.CurriculumConfig().min_correct == 29  # 29/32 >= 0.9 > 28/32
    assert cur.CurriculumConfig(tau_acc=0.9, tau_num=10).min_correct == 9
    assert cur.CurriculumConfig(tau_acc=1.0, tau_num=7).min_correct == 7
    assert cur.CurriculumConfig(tau_acc=0.0, tau_num=7).min_correct == 0


# --------------------------------------------------------------------------- update rules


def test_only_frontier_episodes_count():
    config = cur.CurriculumConfig(tau_num=4)
    start = _state([1] * 8, [3] * 8, [2] * 8, [3] * 8, config)
    n = 400
    rng = np.random.default_rng(1)
    task = rng.integers(0, cur.NUM_TASKS, n)
    difficulty = rng.choice([0, 1, 2, 4, 5, 9], n)  # never the frontier 3
    out = _feed(start, task, difficulty, np.ones(n, bool))
    assert _columns(out) == _columns(start)
    # frontier episodes that are marked invalid do not count either
    out = _feed(start, task, np.full(n, 3), np.ones(n, bool), np.zeros(n, bool))
    assert _columns(out) == _columns(start)


def test_counters_reset_at_every_check():
    config = cur.CurriculumConfig()  # tau_num 32, needs 29 correct
    state = cur.init(config)
    fail = [True] * 28 + [False] * 4  # 28/32 = 0.875 < 0.9
    state = _feed(state, [CART] * 32, [0] * 32, fail)
    low, high, correct, total = _columns(state)
    assert (high[CART], correct[CART], total[CART]) == (0, 0, 0)
    state = _feed(state, [CART] * 31, [0] * 31, [True] * 31)
    assert _columns(state)[1][CART] == 0 and _columns(state)[3][CART] == 31
    state = _feed(state, [CART, CART], [0, 0], [False, True])  # 31/32 at the check
    low, high, correct, total = _columns(state)
    assert (high[CART], correct[CART], total[CART]) == (1, 0, 0)
    # the second episode was at d=0, no longer the frontier: it does not count
    assert low[CART] == 0


def test_promotion_at_exact_threshold():
    config = cur.CurriculumConfig()
    state = _feed(cur.init(config), [PD] * 32, [0] * 32, [True] * 29 + [False] * 3)
    assert _columns(state)[1][PD] == 1


@pytest.mark.parametrize(
    "variant, lows",
    [("rlve", [0, 0, 0, 0, 1, 2, 3, 4]), ("shoprlve", [0, 0, 0, 0, 0, 1, 2, 3])],
)
def test_window_rule_per_variant(variant, lows):
    config = cur.CurriculumConfig(tau_num=1, d_delta=4, variant=variant)
    state = cur.init(config)
    for h in range(len(lows)):
        low, high, _, _ = _columns(state)
        assert (low[SUB], high[SUB]) == (lows[h], h)
        assert high[SUB] - low[SUB] + 1 <= config.window
        state = _feed(state, [SUB], [h], [True])


def test_shoprlve_variant_is_the_prior_code_on_narrow_windows():
    """The prior code only lowers l when h - l > d_delta; a window loaded narrow stays narrow."""
    config = cur.CurriculumConfig(tau_num=2, d_delta=2, variant="shoprlve")
    state = _state([5] * 8, [6] * 8, [0] * 8, [0] * 8, config)
    state = _feed(state, [STATUS] * 2, [6, 6], [True, True])
    low, high, _, _ = _columns(state)
    assert (low[STATUS], high[STATUS]) == (5, 7)
    state = _feed(state, [STATUS] * 2, [7, 7], [True, True])
    low, high, _, _ = _columns(state)
    assert (low[STATUS], high[STATUS]) == (6, 8)  # h - l = 3 > 2 -> l = h - 2


def _skill_run(config, skills, batches, batch_size, seed=0):
    """A learner that is correct iff d <= skill; yields the state after every batch."""
    skills = jnp.asarray(skills, jnp.int32)  # [T]
    tasks = jnp.arange(cur.NUM_TASKS, dtype=jnp.int32)

    @jax.jit
    def step(state, key):
        task, difficulty = cur.sample(key, state, tasks, batch_size)
        return cur.update(state, task, difficulty, difficulty <= skills[task])

    state = cur.init(config)
    for key in jax.random.split(jax.random.key(seed), batches):
        state = step(state, key)
        yield state


@pytest.mark.parametrize("variant", cur.VARIANTS)
def test_known_skill_learner_reaches_skill_plus_one_and_stays(variant):
    config = cur.CurriculumConfig(variant=variant)
    skills = np.array([0, 1, 2, 3, 5, 0, 2, 7])
    prev_low, prev_high = np.zeros(8, int), np.zeros(8, int)
    history = []
    for state in _skill_run(config, skills, batches=50, batch_size=512):
        low, high, correct, total = (np.asarray(c) for c in _columns(state))
        assert np.all(high <= skills + 1), "promoted beyond the learner's skill"
        assert np.all(low >= prev_low) and np.all(high >= prev_high), "window went down"
        assert np.all(low == np.maximum(0, high - config.window + 1)), "window rule broken"
        assert np.all(total < config.tau_num) and np.all(correct <= total)
        prev_low, prev_high = low, high
        history.append(high)
    history = np.stack(history)  # [batches, T]
    np.testing.assert_array_equal(history[-1], skills + 1)
    settled = np.argmax(np.all(history == skills + 1, axis=1))
    assert settled < 30, "did not reach skill + 1 early enough to test that it stays"
    assert np.all(history[settled:] == skills + 1)


_CONFIGS = (
    cur.CurriculumConfig(tau_acc=0.6, tau_num=3, d_delta=2, variant="rlve"),
    cur.CurriculumConfig(tau_acc=1.0, tau_num=2, d_delta=1, variant="rlve"),
    cur.CurriculumConfig(tau_acc=0.5, tau_num=1, d_delta=3, variant="shoprlve"),
)
_PAD = 48


@st.composite
def _scenario(draw):
    config = draw(st.sampled_from(_CONFIGS))
    high = draw(st.lists(st.integers(0, 2), min_size=8, max_size=8))
    low = [draw(st.integers(0, h)) for h in high]
    total = draw(st.lists(st.integers(0, config.tau_num - 1), min_size=8, max_size=8))
    correct = [draw(st.integers(0, b)) for b in total]
    outcomes = draw(
        st.lists(
            st.tuples(st.integers(0, 1), st.integers(0, 4), st.booleans() | st.just(True),
                      st.booleans() | st.just(True)),
            min_size=8,
            max_size=_PAD,
        )
    )
    return config, (low, high, correct, total), outcomes


@given(_scenario())
def test_batch_update_equals_sequential(scenario):
    config, columns, outcomes = scenario
    expected = reference_update(columns, outcomes, config)
    padded = outcomes + [(0, 0, True, False)] * (_PAD - len(outcomes))
    task, difficulty, is_correct, valid = (list(x) for x in zip(*padded))
    start = _state(*columns, config)
    batched = _feed(start, task, difficulty, is_correct, valid)
    assert _columns(batched) == tuple(expected)
    one_by_one = start
    for t, d, c, ok in outcomes:
        one_by_one = _feed(one_by_one, [t], [d], [c], [ok])
    assert _columns(one_by_one) == tuple(expected)


def test_batch_crossing_several_promotions_equals_sequential():
    config = cur.CurriculumConfig(tau_num=4, tau_acc=0.75, d_delta=2)
    outcomes = (
        [(RETURN, 0, True, True)] * 3 + [(RETURN, 0, False, True)]  # 3/4 -> h = 1
        + [(RETURN, 0, True, True)] * 5  # old frontier: ignored
        + [(RETURN, 1, True, True)] * 4  # h = 2, l = 1
        + [(RETURN, 2, False, True)] * 4  # fail, reset
        + [(RETURN, 2, True, True)] * 6  # 4/4 -> h = 3, l = 2; then 2 at d=2 ignored
        + [(RETURN, 3, True, True)] * 2  # counted at the new frontier
    )
    columns = _columns(cur.init(config))
    expected = reference_update(columns, outcomes, config)
    assert (expected[0][RETURN], expected[1][RETURN], expected[3][RETURN]) == (2, 3, 2)
    out = _feed(cur.init(config), *zip(*outcomes))
    assert _columns(out) == tuple(expected)


def test_jit_equals_no_jit_and_no_retrace():
    config = cur.CurriculumConfig(tau_num=8)
    rng = np.random.default_rng(3)
    n = 256
    batches = [
        (jnp.asarray(rng.integers(0, 8, n), jnp.int32),
         jnp.asarray(rng.integers(0, 3, n), jnp.int32),
         jnp.asarray(rng.random(n) < 0.9),
         jnp.asarray(rng.random(n) < 0.95))
        for _ in range(3)
    ]

    @jax.jit
    @chex.assert_max_traces(n=1)
    def traced_update(state, task, difficulty, is_correct, valid):
        return cur.update(state, task, difficulty, is_correct, valid)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def traced_sample(key, state):
        return cur.sample(key, state, jnp.asarray(cur.collection_tasks("C8")), 64)

    eager = jitted = cur.init(config)
    for i, batch in enumerate(batches):
        eager = cur.update(eager, *batch)
        jitted = traced_update(jitted, *batch)
        assert _columns(eager) == _columns(jitted)
        key = jax.random.key(i)
        for a, b in zip(cur.sample(key, eager, jnp.arange(8), 64), traced_sample(key, jitted)):
            np.testing.assert_array_equal(a, b)
    assert max(_columns(eager)[1]) >= 1, "the batches should have promoted something"
    chex.clear_trace_counter()


def test_update_rejects_bad_concrete_input_and_ignores_it_under_jit():
    state = cur.init(cur.CurriculumConfig(tau_num=1))
    with pytest.raises(ValueError, match="task id 8"):
        cur.update(state, jnp.array([0, 8]), jnp.array([0, 0]), jnp.array([True, True]))
    with pytest.raises(ValueError, match="difficulty.*-1"):
        cur.update(state, jnp.array([0]), jnp.array([-1]), jnp.array([True]))
    with pytest.raises(ValueError, match="is_correct.*length"):
        cur.update(state, jnp.array([0, 1]), jnp.array([0, 0]), jnp.array([True]))
    with pytest.raises(ValueError, match="is_correct.*float"):
        cur.update(state, jnp.array([0]), jnp.array([0]), jnp.array([0.5]))
    # invalid entries are not checked, and under jit out-of-range entries are ignored
    cur.update(state, jnp.array([9]), jnp.array([-3]), jnp.array([True]), jnp.array([False]))
    out = _feed(state, [-1, 8, 0], [0, 0, -1], [True, True, True])
    assert _columns(out) == _columns(state)


# --------------------------------------------------------------------------- sampling


def test_sampling_respects_windows_and_collection():
    config = cur.CurriculumConfig()
    state = _state([0, 2, 5, 1, 0, 0, 0, 0], [0, 5, 5, 4, 9, 9, 9, 9], [0] * 8, [0] * 8, config)
    tasks = jnp.asarray(cur.collection_tasks("C4"))
    task, difficulty = sample_jit(jax.random.key(0), state, tasks, 8192)
    task, difficulty = np.asarray(task), np.asarray(difficulty)
    assert task.dtype == np.int32 and difficulty.dtype == np.int32
    assert set(task.tolist()) == {PD, SUB, CART, RETURN}
    low, high, _, _ = (np.asarray(c) for c in _columns(state))
    assert np.all(difficulty >= low[task]) and np.all(difficulty <= high[task])
    for t in (PD, SUB, CART, RETURN):
        levels = set(difficulty[task == t].tolist())
        assert levels == set(range(low[t], high[t] + 1)), (t, levels)
    counts = np.bincount(task, minlength=8)[:4]
    assert counts.min() > 0.2 * len(task)  # roughly uniform over the 4 tasks
    with pytest.raises(ValueError, match="tasks: task id 8"):
        cur.sample(jax.random.key(0), state, jnp.array([0, 8]), 4)
    with pytest.raises(ValueError, match="batch_size.*0"):
        cur.sample(jax.random.key(0), state, jnp.array([0]), 0)


@pytest.mark.parametrize("bounds", [cur.STATIC_LOW, cur.STATIC_HIGH])
def test_sample_static_ranges(bounds):
    lo, hi = bounds
    tasks = jnp.asarray(cur.collection_tasks("C2-blog"))
    task, difficulty = cur.sample_static(jax.random.key(1), tasks, 4096, lo, hi)
    assert set(np.asarray(task).tolist()) == {CART, SUB}
    assert set(np.asarray(difficulty).tolist()) == set(range(lo, hi + 1))
    with pytest.raises(ValueError, match="high"):
        cur.sample_static(jax.random.key(1), tasks, 8, 3, 2)


# --------------------------------------------------------------------------- state I/O


def test_to_dict_from_dict_round_trip_through_json():
    config = cur.CurriculumConfig(tau_acc=0.75, tau_num=16, d_delta=3, variant="shoprlve")
    state = _state([0, 1, 2, 3, 0, 0, 4, 0], [2, 3, 5, 6, 0, 1, 7, 0],
                   [0, 5, 1, 0, 0, 0, 9, 2], [0, 6, 3, 0, 0, 1, 15, 2], config)
    data = json.loads(json.dumps(cur.to_dict(state)))
    assert data["states"]["BUNDLE"] == {"low": 4, "high": 7, "correct": 9, "total": 15}
    back = cur.from_dict(data)
    assert back.config == config
    assert _columns(back) == _columns(state)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(state)


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"states": {"SHIP": {"low": 0, "high": 0, "correct": 0, "total": 0}}}, "'SHIP'"),
        ({"states": {"PD": {"low": 2, "high": 1, "correct": 0, "total": 0}}}, "PD.low"),
        ({"states": {"PD": {"low": 0, "high": 1, "correct": 0, "total": 40}}}, "PD.total: 40"),
        ({"states": {"PD": {"low": -1, "high": 1, "correct": 0, "total": 0}}}, "PD.low.*-1"),
        ({"states": {"PD": {"low": 0, "high": 1, "total": 0}}}, "PD.correct: missing"),
        ({"tau_num": 0}, "tau_num.*0"),
        ({"variant": "v2"}, "variant.*'v2'"),
    ],
)
def test_from_dict_validation(patch, message):
    data = {**cur.to_dict(cur.init()), **patch}
    with pytest.raises(ValueError, match=message):
        cur.from_dict(data)


def test_state_is_a_plain_pytree_of_int_arrays():
    state = cur.init()
    leaves = jax.tree_util.tree_leaves(state)
    assert len(leaves) == 4
    assert all(leaf.shape == (cur.NUM_TASKS,) and leaf.dtype == jnp.int32 for leaf in leaves)
    doubled = jax.tree_util.tree_map(lambda x: x + 1, state)
    assert isinstance(doubled, cur.CurriculumState) and doubled.config == state.config


def test_summary_per_task_name():
    state = _state([0] * 8, [2, 0, 0, 0, 0, 0, 0, 0], [3] + [0] * 7, [4] + [0] * 7,
                   cur.CurriculumConfig())
    info = cur.summary(state)
    assert list(info) == list(cur.TASK_NAMES)
    assert info["PD"] == {"low": 0, "high": 2, "frontier_accuracy": 0.75, "frontier_total": 4}
    assert info["SUB"]["frontier_accuracy"] is None


def test_orbax_checkpoint_round_trip(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    config = cur.CurriculumConfig(variant="shoprlve")
    state = _feed(cur.init(config), [CART] * 40, [0] * 32 + [1] * 8, [True] * 40)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "curriculum", state)
    checkpointer.wait_until_finished()
    back = checkpointer.restore(tmp_path / "curriculum", cur.init(config))
    checkpointer.close()
    assert isinstance(back, cur.CurriculumState) and back.config == config
    assert _columns(back) == _columns(state)
    assert _columns(back)[1][CART] == 1 and _columns(back)[3][CART] == 8
