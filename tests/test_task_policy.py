"""POLICY (store-policy QA): the oracle (policy.search, then the row's answer) is correct at every difficulty;
do-nothing, guessed ids, another row's answer and a numeric answer 10% off all fail; the generator draws
rules with exactly min(B_branch(d), 7) clauses, several distinct rules even at the top difficulty; the
jitted scoring equals the host scorer `policy_kb.score_answer`.

One jitted runner drives every policy: each episode's mode (oracle or one adversary) is a function of its
episode key, and the batch is assembled from keys whose mode is known (one environment compile)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomjax.oracle
from ecomjax.env import make
from ecomjax.tasks import policy
from ecomjax.tasks.action import no_answer, noop_action
from ecomjax.tasks.difficulty import difficulty
from ecomjax.tasks.episode import AGENT_DONE
from ecomjax.tasks.goal import MAX_REC, TASK, empty_intent
from ecomjax.testing.adversaries import pick
from ecomjax.testing.rollout import batch_runner
from ecomjax.world import policy_kb as kb
from ecomjax.world.state import empty_world

pytestmark = pytest.mark.slow          # whole-task oracle/adversary rollouts: CI runs them separately

LEVELS = 21
ORACLE_PER_D = 200
ADV_PER_D = 12
MAX_STEPS = 4                        # the oracle answers in turn 2; do-nothing runs are cut at 4 (r_task −1)
MODES = ("oracle", "noop", "guess", "wrong_row", "off10")
ORACLE, NOOP, GUESS, WRONG_ROW, OFF10 = range(len(MODES))
DUPLICATES = 21
KB = kb.kb_arrays()
# jnp views of the task's numpy tables, for indexing with traced rule/row ids
NUMERIC, NUM_ROWS = jnp.asarray(policy.NUMERIC), jnp.asarray(policy.NUM_ROWS)
ANSWER_NUM, ANSWER_CAT = jnp.asarray(policy.ANSWER_NUM), jnp.asarray(policy.ANSWER_CAT)


def episode_key(key):
    """EpisodeState.key of an episode run from runner key `key` (rollout.episode -> ShopEnv.reset)."""
    k_reset, _ = jax.random.split(key)
    return jax.random.split(k_reset, 4)[3]


def mode_of(ep_key):
    return jax.random.randint(jax.random.fold_in(ep_key, 0xAD7), (), 0, len(MODES))


def other_row(goal):
    """A row of the same rule whose answer differs from the goal row's (-1 if none)."""
    rows = jnp.arange(ANSWER_NUM.shape[1])
    rule = jnp.clip(goal.rule, 0)
    valid = rows < NUM_ROWS[rule]
    differs = jnp.where(NUMERIC[rule], ANSWER_NUM[rule] != goal.answer_num,
                        ANSWER_CAT[rule] != goal.answer_cat)
    ok = valid & (rows != goal.row) & differs
    return jnp.where(jnp.any(ok), jnp.argmax(ok), -1)


def mixed_policy(key, state, params):
    mode = mode_of(state.key)
    act = ecomjax.oracle.act(key, state, params)
    goal = jax.tree.map(lambda x: x[0], state.goal)
    noop = noop_action(params.cap)
    ids = jax.random.randint(jax.random.fold_in(state.key, 1), (MAX_REC,), 0, params.catalog.num_products)
    guess = noop.replace(presented=ids, answer=noop.answer.replace(
        present=jnp.asarray(True), task=goal.task, rec=ids, n_rec=jnp.int32(MAX_REC), done=jnp.asarray(True)))
    r = jnp.clip(other_row(goal), 0)
    rule = jnp.clip(goal.rule, 0)
    wrong = act.replace(answer=act.answer.replace(policy_num=ANSWER_NUM[rule, r],
                                                  policy_cat=ANSWER_CAT[rule, r]))
    off = act.replace(answer=act.answer.replace(policy_num=act.answer.policy_num * 0.9))
    return pick(mode, (act, noop, guess, wrong, off))


@pytest.fixture(scope="module")
def setup(small_catalog):
    catalog, _ = small_catalog
    return make("POLICY", catalog)


@pytest.fixture(scope="module")
def run(setup):
    env, params = setup
    cand = jax.random.split(jax.random.key(2025), 60_000)
    modes = np.asarray(jax.jit(jax.vmap(lambda k: mode_of(episode_key(k))))(cand))
    picks, ds, want = [], [], []
    pool = {m: list(np.nonzero(modes == m)[0]) for m in range(len(MODES))}
    for d in range(LEVELS):
        for m in range(len(MODES)):
            n = ORACLE_PER_D if m == ORACLE else ADV_PER_D
            take, pool[m] = pool[m][:n], pool[m][n:]
            assert len(take) == n
            picks += take
            ds += [d] * n
            want += [m] * n
    picks += picks[:DUPLICATES]
    ds += ds[:DUPLICATES]
    want += want[:DUPLICATES]
    runner = batch_runner(env, mixed_policy, params, max_steps=MAX_STEPS)
    states, ts = runner(cand[np.asarray(picks)], jnp.asarray(ds, jnp.int32))
    mode = np.asarray(jax.vmap(mode_of)(states.key))
    assert (mode == np.asarray(want)).all(), "episode keys no longer follow rollout.episode/ShopEnv.reset"
    return states, ts, np.asarray(ds), mode


def _np(x):
    return np.asarray(x)


def test_oracle_is_correct_at_every_difficulty(run):
    _, ts, ds, mode = run
    sel = mode == ORACLE
    sel[-DUPLICATES:] = False
    correct = _np(ts.info["is_correct"])[sel]
    d = ds[sel]
    acc = np.array([correct[d == k].mean() for k in range(LEVELS)])
    print("POLICY oracle accuracy per d:", np.round(acc, 3).tolist(), "worst", acc.min(), "at d =", acc.argmin())
    assert acc.min() >= 0.99, acc
    assert (_np(ts.info["termination_reason"])[sel] == AGENT_DONE).all()
    assert (_np(ts.info["turns"])[sel] == 2).all()


def test_rewards_finite_and_bounded(run):
    _, ts, _, _ = run
    for x in (ts.reward, ts.info["r_task"], ts.info["intent_r_task"], ts.info["parts"]):
        assert np.isfinite(_np(x)).all()
    for x in (ts.reward, ts.info["r_task"]):
        x = _np(x)
        assert (x >= -1).all() and (x <= 1).all()


def test_do_nothing_and_guessed_ids_score_minus_one(run):
    _, ts, _, mode = run
    r, ok = _np(ts.info["r_task"]), _np(ts.info["is_correct"])
    for m in (NOOP, GUESS):
        assert (r[mode == m] == -1.0).all() and not ok[mode == m].any()
    assert (_np(ts.info["hall_rate"])[mode == GUESS] > 0).all()


def test_another_rows_answer_is_incorrect(run):
    states, ts, _, mode = run
    goal = jax.tree.map(lambda x: x[:, 0], states.goal)
    has_other = _np(jax.vmap(other_row)(goal)) >= 0
    sel = (mode == WRONG_ROW) & has_other
    assert sel.sum() >= 150
    r, ok = _np(ts.info["r_task"]), _np(ts.info["is_correct"])
    print("POLICY wrong-row correct rate", ok[sel].mean(), "mean r_task", r[sel].mean())
    assert ok[sel].mean() <= 0.02
    assert r[mode == ORACLE].mean() - r[sel].mean() >= 0.5


def test_numeric_answer_ten_percent_off(run):
    states, ts, _, mode = run
    goal = jax.tree.map(lambda x: _np(x)[:, 0], states.goal)
    numeric = KB["numeric"][goal.rule] & (goal.answer_num != 0)
    sel = (mode == OFF10) & numeric
    assert sel.sum() >= 100
    np.testing.assert_allclose(_np(ts.info["r_task"])[sel], 2 * 0.9 ** 4 - 1, rtol=1e-5)
    assert not _np(ts.info["is_correct"])[sel].any()


def test_clause_count_follows_difficulty_and_rules_vary(run):
    states, _, ds, _ = run
    goal = jax.tree.map(lambda x: _np(x)[:, 0], states.goal)
    assert (goal.task == TASK["POLICY"]).all()
    want = np.minimum(1 + ds // 3, kb.MAX_CLAUSES)
    assert (KB["num_clauses"][goal.rule] == want).all()
    for n in range(1, kb.MAX_CLAUSES + 1):
        d = 3 * (n - 1)
        drawn = goal.rule[ds == d]
        assert (KB["num_clauses"][drawn] == n).all()
        assert len(set(drawn.tolist())) == KB["num_rules_by_clauses"][n], (n, sorted(set(drawn.tolist())))
    top = goal.rule[ds >= 18]
    assert len(set(top.tolist())) > 1
    # the row is one of the rule's rows and the goal's answer is that row's answer
    assert ((goal.row >= 0) & (goal.row < KB["num_rows"][goal.rule])).all()
    num = KB["answer_num"][goal.rule, goal.row]
    np.testing.assert_array_equal(np.isnan(goal.answer_num), np.isnan(num))
    np.testing.assert_array_equal(goal.answer_num[~np.isnan(num)], num[~np.isnan(num)])
    np.testing.assert_array_equal(goal.answer_cat, KB["answer_cat"][goal.rule, goal.row])
    assert (KB["numeric"][goal.rule] == (goal.answer_cat < 0)).all()
    # the question states everything: no slots
    assert not goal.needed.any() and not goal.mentioned.any()


def test_rule_tokens_query_ranks_the_rule_first():
    tok = jnp.asarray(KB["tokens"])
    scores = _np(jax.jit(jax.vmap(kb.policy_search_scores, in_axes=(None, 0)))(tok, policy.QUERY))
    for r in range(kb.NUM_RULES):
        assert scores[r, r] == 1.0 and (np.delete(scores[r], r) < 1.0).all(), (r, np.argsort(-scores[r])[:3])


def test_verify_matches_host_scorer(setup):
    _, params = setup
    cases = []                                                      # (rule, row, numeric value or cat id)
    zero = [(i, r) for i, rule in enumerate(kb.RULES) if rule.unit for r, row in enumerate(rule.rows)
            if row.answer == 0][:2]
    numeric = [(i, 0) for i, rule in enumerate(kb.RULES) if rule.unit][:6] + zero
    for i, r in numeric:
        y = float(kb.answer(i, r))
        for x in (y, 0.9 * y, 1.1 * y, -y, 0.0, 2.0 * y + 1.0, 0.995 * y, math.nan, math.inf):
            cases.append((i, r, x, -1))
    categorical = [(i, r) for i, rule in enumerate(kb.RULES) if not rule.unit for r in range(len(rule.rows))][:8]
    for i, r in categorical:
        truth = kb.ANSWER_VOCAB.index(kb.answer(i, r))
        for c in (truth, (truth + 1) % len(kb.ANSWER_VOCAB), -1):
            cases.append((i, r, math.nan, c))
    rule = jnp.asarray([c[0] for c in cases], jnp.int32)
    row = jnp.asarray([c[1] for c in cases], jnp.int32)
    value = jnp.asarray([c[2] for c in cases], jnp.float32)
    cat = jnp.asarray([c[3] for c in cases], jnp.int32)

    def score(rule, row, value, cat, present):
        goal = empty_intent().replace(task=jnp.int32(TASK["POLICY"]), rule=rule, row=row,
                                      answer_num=ANSWER_NUM[rule, row], answer_cat=ANSWER_CAT[rule, row])
        answer = no_answer().replace(present=present, task=goal.task, policy_num=value, policy_cat=cat)
        r, ok, parts = policy.verify(params.world, None, goal, answer, difficulty(0))
        return r, ok, parts

    fn = jax.jit(jax.vmap(score, in_axes=(0, 0, 0, 0, None)))
    r, ok, parts = map(_np, fn(rule, row, value, cat, jnp.asarray(True)))
    for k, (i, rw, x, c) in enumerate(cases):
        given = kb.ANSWER_VOCAB[c] if c >= 0 else (None if math.isnan(x) else x)
        expect = kb.score_answer(i, rw, given)
        assert r[k] == pytest.approx(expect, abs=1e-5), (kb.RULES[i].title, rw, x, c, r[k], expect)
        assert ok[k] == (expect >= 0.95)
    assert np.isfinite(parts).all()
    r_absent, ok_absent, _ = map(_np, fn(rule, row, value, cat, jnp.asarray(False)))
    assert (r_absent == -1).all() and not ok_absent.any()


def test_determinism_and_world_untouched(run, setup):
    states, ts, _, _ = run
    _, params = setup
    n = len(ts.reward)
    a = jax.tree.map(lambda x: _np(x)[:DUPLICATES], (states.goal, states.world, ts.info))
    b = jax.tree.map(lambda x: _np(x)[n - DUPLICATES:], (states.goal, states.world, ts.info))
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), a, b)
    world = empty_world(params.cap, 20_000)
    gen = jax.jit(policy.generate)
    g1, w1 = gen(jax.random.key(3), difficulty(19), world, params.world)
    g2, w2 = gen(jax.random.key(3), difficulty(19), world, params.world)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(_np(x), _np(y)), (g1, w1), (g2, w2))
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(_np(x), _np(y)), w1, world)
