"""RETURN task: generator properties (one world, uniquely described target line, age from t_days with
edge cases, eligibility from the tool, feasible replacement constraints, JOURNEY-style appending,
determinism), the oracle at every difficulty, adversaries (do-nothing, guessed ids, a return on a wrong
line, returns on the target and another line, forcing an ineligible return, a plain return when an
exchange is wanted, a wrong selection) and the customer's RETURN disambiguation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ecomjax.oracle
from ecomjax.env import make
from ecomjax.tasks import constraints as C
from ecomjax.tasks import returns
from ecomjax.tasks.action import ASK, noop_action, set_call
from ecomjax.tasks.difficulty import difficulty
from ecomjax.tasks.episode import (
    ACT_CLARIFY, ACT_CORRECT, AGENT_DONE, T_MAX, TOOL_INVALID, USER_QUIT, initial_state, intent_goal, no_message,
)
from ecomjax.tasks.goal import SLOT_ORDER, SLOT_REASON, TASK
from ecomjax.user.core import reply
from ecomjax.world.returns import eligibility
from ecomjax.world.state import DELIVERED, NO_DAY, make_call
from ecomjax.world.tools import TOOL_INDEX

pytestmark = pytest.mark.slow          # whole-task oracle/adversary rollouts: CI runs them separately

D_LEVELS = 21               # difficulties 0..20
N_ORACLE = 200              # oracle episodes per difficulty
N_ADV = 8                   # adversary episodes per difficulty and mode
N_DUP = 5                   # oracle episodes per difficulty run twice (determinism of whole episodes)
STEPS = 14                  # T_max(20)
M = C.MAX_CONSTRAINTS
MODES = ("oracle", "noop", "guess", "guess_return", "wrong_line", "both", "force_ineligible", "no_exchange",
         "wrong_select")
INITIATE = TOOL_INDEX["return.initiate"]


def t_max(d):
    return 4 + np.asarray(d) // 2


def h_orders(d):
    return 1 + np.asarray(d) // 2


@pytest.fixture(scope="module")
def env_params(small_catalog):
    catalog, _ = small_catalog
    return make("RETURN", catalog)


def run_episodes(env, policy):
    """`testing.rollout.run_batch` with a per-episode policy mode: a jitted (keys, d, mode, active, params)
    -> (final states, timesteps) that resets, then steps (`env.step_batch`) until every `active` episode is
    done (at most STEPS turns); finished episodes are frozen. One compile serves the oracle and the
    adversaries (`policy(key, state, params, mode)`)."""
    def run(keys, d, mode, active, params):
        split = jax.vmap(jax.random.split)(keys)
        k_run = split[:, 1]
        states, ts = jax.vmap(lambda k, dd: env.reset(k, params, dd))(split[:, 0], d)

        def freeze(done, old, new):
            return jax.tree.map(lambda o, n: jnp.where(done.reshape(done.shape + (1,) * (o.ndim - 1)), o, n),
                                old, new)

        def body(carry):
            states, ts, t = carry
            keys = jax.vmap(jax.random.split)(jax.vmap(lambda k: jax.random.fold_in(k, t))(k_run))
            actions = jax.vmap(lambda k, s, m: policy(k, s, params, m))(keys[:, 0], states, mode)
            new_states, new_ts = env.step_batch(keys[:, 1], states, actions, params)
            return freeze(states.done, states, new_states), freeze(states.done, ts, new_ts), t + 1

        def cond(carry):
            states, _, t = carry
            return (t < STEPS) & jnp.any(active & ~states.done)

        states, ts, _ = jax.lax.while_loop(cond, body, (states, ts, jnp.int32(0)))
        return states, ts

    return jax.jit(run)


# --------------------------------------------------------------------------------- oracle + adversaries

def _other_line(world, catalog, goal):
    """A line other than the target (peeking at the world): an eligible one if any, else any existing one,
    else a slot holding no line (whose return then errors). Returns (order, line)."""
    o, nl = world.line_product.shape
    oo, ll = jnp.meshgrid(jnp.arange(o), jnp.arange(nl), indexing="ij")
    oo, ll = oo.reshape(-1), ll.reshape(-1)
    exists, elig, _, _ = jax.vmap(lambda a, b: eligibility(world, catalog, a, b))(oo, ll)
    other = ~((oo == goal.order) & (ll == goal.line))
    rank = jnp.where(other & elig, 0, jnp.where(other & exists, 1, jnp.where(other, 2, 3)))
    k = jnp.argmin(rank)
    return oo[k], ll[k]


def adversary(key, state, params, mode):
    """MODES[mode], a traced int. All but noop/guess start from the oracle's action."""
    wp = params.world
    catalog, cap = wp.catalog, wp.cap
    goal = intent_goal(state, 0)
    base = ecomjax.oracle.act(key, state, params)
    noop = noop_action(cap)
    final = base.answer.present
    o2, l2 = _other_line(state.world, catalog, goal)
    stray = make_call(cap, INITIATE, order=o2, line=l2, reason=0, method=1)
    slot = lambda a, j: jax.tree.map(lambda x: x[j], a.calls)  # noqa: E731
    when = lambda c, a, b: jax.tree.map(lambda x, y: jnp.where(c, x, y), a, b)  # noqa: E731

    k_o, k_l = jax.random.split(key)
    go = jax.random.randint(k_o, (), 0, cap.orders)
    gl = jax.random.randint(k_l, (), 0, cap.order_lines)
    guess_answer = noop.answer.replace(present=True, task=TASK["RETURN"], order=go, line=gl, done=True)
    guess = noop.replace(answer=guess_answer)
    guess_return = set_call(guess, 0, make_call(cap, INITIATE, order=go, line=gl, reason=0, method=1))

    wrong_line = when(final, set_call(base, 0, stray), base)
    used0 = base.calls.tool[0] >= 0
    both = when(final & used0, set_call(base, 1, stray), when(final, set_call(base, 0, stray), base))
    force = make_call(cap, INITIATE, order=goal.order, line=goal.line, reason=goal.reason, method=1)
    force_ineligible = when(final & ~goal.eligible, set_call(base, 0, force), base)
    c0 = slot(base, 0)
    plain = c0.replace(tool=jnp.where(c0.tool == TOOL_INDEX["return.exchange"], INITIATE, c0.tool))
    no_exchange = set_call(base, 0, plain)
    wrong_select = base.replace(answer=base.answer.replace(line=(base.answer.line + 1) % cap.order_lines))
    options = (base, noop, guess, guess_return, wrong_line, both, force_ineligible, no_exchange, wrong_select)
    return jax.tree.map(lambda *xs: jnp.select([mode == m for m in range(len(xs) - 1)], list(xs[:-1]), xs[-1]),
                        *options)


@pytest.fixture(scope="module")
def runs(env_params):
    """One compile, one call: the oracle for 21 d × N_ORACLE episodes, N_DUP per d again (determinism),
    every adversary for 21 d × N_ADV (do-nothing episodes above d = 2 do not hold the
    loop open).
    Returns {part: dict(info, goal (intent 0), goals [I], world, d, revealed (intent 0))}, dup."""
    env, params = env_params
    run = run_episodes(env, adversary)
    n_or, n_adv = D_LEVELS * N_ORACLE, D_LEVELS * N_ADV
    dup = np.concatenate([np.arange(N_DUP) + N_ORACLE * j for j in range(D_LEVELS)])
    k_or = jax.random.split(jax.random.key(0), n_or)
    keys = jnp.concatenate([k_or, k_or[dup], jax.random.split(jax.random.key(1), n_adv * (len(MODES) - 1))])
    d_or = np.repeat(np.arange(D_LEVELS), N_ORACLE)
    d = np.concatenate([d_or, d_or[dup], np.tile(np.repeat(np.arange(D_LEVELS), N_ADV), len(MODES) - 1)])
    mode = np.concatenate([np.zeros(n_or + len(dup), int), np.repeat(np.arange(1, len(MODES)), n_adv)])
    active = (mode != MODES.index("noop")) | (d <= 2)
    states, ts = run(keys, jnp.asarray(d), jnp.asarray(mode), jnp.asarray(active), params)
    whole = {
        "info": jax.tree.map(np.asarray, ts.info), "goals": jax.tree.map(np.asarray, states.goal),
        "world": jax.tree.map(np.asarray, states.world), "d": d, "revealed": np.asarray(states.revealed)[:, 0],
        "num_intents": np.asarray(states.num_intents),
    }
    whole["goal"] = jax.tree.map(lambda x: x[:, 0], whole["goals"])
    bounds = [("oracle", n_or), ("dup", len(dup))] + [(m, n_adv) for m in MODES[1:]]
    out, start = {}, 0
    for name, n in bounds:
        out[name] = _at(whole, slice(start, start + n))
        start += n
    return out, dup


def _at(tree, index):
    """Every leaf of tree indexed by `index` (a row, a slice, an index tuple)."""
    return jax.tree.map(lambda x: x[index], tree)


# ------------------------------------------------------------------------------------------ generator

@pytest.fixture(scope="module")
def product_values(small_catalog):
    """Every product's constraint-key values [P, NUM_KEYS] (NaN / -1 missing)."""
    catalog, _ = small_catalog
    return np.asarray(jax.vmap(lambda p: C.product_values(catalog, p))(jnp.arange(catalog.num_products)))


def _lines_like(catalog, w, p):
    """(order, line) pairs of world w whose product shares p's (leaf, brand)."""
    leaf, brand = np.asarray(catalog.category), np.asarray(catalog.brand)
    lp = w.line_product
    same = (lp >= 0) & (leaf[np.clip(lp, 0, None)] == leaf[p]) & (brand[np.clip(lp, 0, None)] == brand[p])
    return [tuple(x) for x in np.argwhere(same)]


def _check_target(catalog, values, g, w, d):
    """One RETURN goal against the world it lives in. Returns (window, days since the order)."""
    o, ln = int(g.order), int(g.line)
    today = int(w.today)
    assert g.task == TASK["RETURN"]
    assert w.order_valid[o] and w.line_product[o, ln] == g.anchor >= 0
    assert w.order_status[o] == DELIVERED
    days = today - w.order_day[o]
    assert days >= 1 and w.order_day[o] <= w.order_eta[o] <= today               # delivered, not in the future
    window = int(np.asarray(catalog.return_window)[np.asarray(catalog.top_category)[g.anchor]])
    assert g.eligible == (window > 0 and days <= window)
    assert not np.asarray(catalog.denied)[g.anchor] and np.asarray(catalog.stock)[g.anchor] > 0
    assert _lines_like(catalog, w, g.anchor) == [(o, ln)]                            # described uniquely
    # slots: the order is needed and never stated; the reason is needed; constraints only with a replacement
    assert g.needed[SLOT_ORDER] and not g.mentioned[SLOT_ORDER] and g.needed[SLOT_REASON]
    assert np.all(g.mentioned <= g.needed)
    assert np.array_equal(g.needed[:M], g.c_mask)
    assert not g.replacement or g.eligible
    if g.replacement:
        n = int(g.c_mask.sum())
        assert 2 <= n <= max(2, 1 + d // 2) and np.all(g.c_mask[:n])               # a prefix: price, category, ...
        assert g.mentioned[0] and g.mentioned[1]
        assert g.c_key[0] == C.KEY["price"] and g.c_key[1] == C.KEY["cat"]
        assert g.c_value[0] >= 1.5 * np.asarray(catalog.price_cents)[g.anchor] / 100.0 - 0.01   # float32 cents
        ok = np.ones(len(values), bool)                                             # feasible products
        for k, op, v in zip(g.c_key[:n], g.c_op[:n], g.c_value[:n], strict=True):
            x = values[:, k]
            ok &= ~np.isnan(x) & np.select([op == C.EQ, op == C.LTE, op == C.GTE], [x == v, x <= v, x >= v], False)
        assert ok[g.anchor]
        ids = np.arange(len(values))
        avail = (np.asarray(catalog.stock) > 0) & ~np.asarray(catalog.denied) & ~np.isin(ids, w.oos)
        assert np.sum(ok & avail & (ids != g.anchor)) >= 1                          # another product fits
    else:
        assert not g.c_mask.any()
    assert 0 <= g.reason < 8
    return window, days


def test_generator_properties(runs, small_catalog, product_values):
    catalog, _ = small_catalog
    parts, _ = runs
    run = parts["oracle"]
    g, w, d = run["goal"], run["world"], run["d"]
    edge = np.zeros(len(d), bool)
    windows = np.zeros(len(d), int)
    for b in range(len(d)):
        gb, wb = _at(g, b), _at(w, b)
        assert wb.order_valid.sum() == h_orders(d[b])                               # H_orders(d) orders
        valid = wb.order_valid
        assert np.all(wb.order_day[valid] >= wb.today - 90) and np.all(wb.order_day[valid] <= wb.today)
        assert np.all(wb.order_day[~valid] == NO_DAY) and np.all(wb.line_product[~valid] == -1)
        windows[b], days = _check_target(catalog, product_values, gb, wb, d[b])
        edge[b] = windows[b] > 0 and abs(days - windows[b]) <= 1
    by_d = lambda x: x.reshape(D_LEVELS, N_ORACLE).mean(axis=1)  # noqa: E731
    edge_share, elig, repl = by_d(edge), by_d(g.eligible), by_d(g.replacement)
    print("edge share", edge_share.round(2).tolist(), "\neligible", elig.round(2).tolist(),
          "\nreplacement", repl.round(2).tolist())
    assert edge_share[:2].mean() < 0.1 and edge_share[15:].mean() > 0.55            # p_edge 0.03 / 0.7
    assert elig[:2].mean() > 0.85 and elig[15:].mean() < 0.85
    assert 0.4 < g.replacement.mean() / g.eligible.mean() < 0.6                     # P(replacement | eligible) = ½
    assert np.all(~g.eligible[windows == 0])                                        # groceries: never eligible
    assert np.any(windows == 0) and np.any(windows == 15) and np.any(windows == 30)
    ment = by_d(g.mentioned[:, SLOT_REASON])
    assert ment[0] > 0.8 and ment[20] < 0.35                                         # omitted with p_missing(d)
    assert len(np.unique(g.order[d == 0])) >= 10                                     # ids are not guessable
    n_cons = g.c_mask.sum(axis=1)
    assert n_cons[g.replacement & (d >= 16)].mean() > n_cons[g.replacement & (d <= 3)].mean() + 0.5   # m(d)


def test_journey_intents_share_one_world(journey_resets, small_catalog, product_values):
    """JOURNEY episodes (L_int(d) distinct tasks on one world; test_task_status.py checks the order counts):
    while the orders fit, the RETURN intent's target is intact and uniquely described in the shared world."""
    catalog, _ = small_catalog
    goals, w, d, k = (journey_resets[key] for key in ("goals", "world", "d", "order_intents"))
    has_return = (goals.task == TASK["RETURN"]).any(axis=1)
    fits = has_return & (k * h_orders(d) <= 12)
    assert fits.sum() >= 40 and (has_return & (k == 2)).sum() >= 10          # shared with a STATUS intent
    for b in np.nonzero(fits)[0]:
        i = int(np.argmax(goals.task[b] == TASK["RETURN"]))
        _check_target(catalog, product_values, _at(goals, (b, i)), _at(w, b), d[b])
        status_orders = goals.order[b][goals.task[b] == TASK["STATUS"]]
        assert not np.any(status_orders == goals.order[b, i])                       # one new order each


# ------------------------------------------------------------------------------------- oracle, adversaries

def test_oracle_correct_at_every_difficulty(runs):
    parts, _ = runs
    info, g = parts["oracle"]["info"], parts["oracle"]["goal"]
    ok = info["is_correct"]
    acc = ok.reshape(D_LEVELS, N_ORACLE).mean(axis=1)
    worst = int(np.argmin(acc))
    turns = info["turns"].reshape(D_LEVELS, N_ORACLE)
    print(f"RETURN oracle accuracy per d: {np.round(acc, 3).tolist()} (worst d={worst}: {acc[worst]:.3f}); "
          f"max turns per d: {turns.max(axis=1).tolist()}")
    assert np.all(acc >= 0.99), acc
    r = info["r_task"]
    assert np.all(np.isfinite(r)) and np.all(np.abs(r) <= 1.0) and np.all(np.isfinite(info["reward"]))
    assert np.all(r[ok] == 1.0)
    assert np.all(turns <= t_max(np.arange(D_LEVELS))[:, None])
    assert np.all(info["tool_errors"] == 0)
    assert np.all(info["termination_reason"] == AGENT_DONE)
    assert g.eligible.sum() > 500 and (~g.eligible).sum() > 300 and g.replacement.sum() > 500


def test_whole_episodes_are_deterministic(runs):
    parts, dup = runs
    first = _at(parts["oracle"], dup)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(parts["dup"]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_rewards_finite_and_bounded(runs):
    parts, _ = runs
    for m in MODES:
        info = parts[m]["info"]
        for k in ("r_task", "reward"):
            assert np.all(np.isfinite(info[k])) and np.all(np.abs(info[k]) <= 1.0), (m, k)
        assert np.all(np.isfinite(info["parts"])), m


def test_do_nothing_scores_minus_one(runs):
    parts, _ = runs
    info = parts["noop"]["info"]
    assert np.all(info["r_task"] == -1.0) and not np.any(info["is_correct"])
    short = parts["noop"]["d"] <= 2                       # these run to the customer's patience limit
    assert np.all(np.isin(info["termination_reason"][short], [USER_QUIT, T_MAX]))
    assert np.all(info["turns"][short] == t_max(parts["noop"]["d"][short]))


def test_guessed_order_ids_rarely_correct(runs):
    parts, _ = runs
    oracle_mean = parts["oracle"]["info"]["r_task"].mean()
    for m in ("guess", "guess_return"):
        info = parts[m]["info"]
        print(m, "correct rate", info["is_correct"].mean(), "mean r_task", info["r_task"].mean())
        assert info["is_correct"].mean() <= 0.04, m           # an (order, line) pair out of 12 × 5 slots
        assert info["r_task"].mean() <= oracle_mean - 0.5, m


def test_return_on_a_wrong_line_is_incorrect(runs):
    parts, _ = runs
    oracle_mean = parts["oracle"]["info"]["r_task"].mean()
    for m in ("wrong_line", "both"):
        info = parts[m]["info"]
        assert not np.any(info["is_correct"]), m
        assert info["r_task"].mean() <= oracle_mean - 0.5, m
        stray = info["parts"][:, 0, 3]
        done = info["termination_reason"] == AGENT_DONE
        assert np.all(info["r_task"][done & (stray > 0)] <= 0.1 + 1e-6), m         # r_ret = −1
        assert (stray > 0).mean() > 0.5, m                    # the stray return happened in most episodes
    # "both": the target line was returned too, and a return on any other line still makes it incorrect
    w, g = parts["both"]["world"], parts["both"]["goal"]
    on_target = np.any((w.ret_order == g.order[:, None]) & (w.ret_line == g.line[:, None]), axis=1)
    stray = parts["both"]["info"]["parts"][:, 0, 3] > 0
    assert (on_target & stray).sum() > 50
    # ineligible target: answering the line is not enough once another line got returned
    info, g = parts["wrong_line"]["info"], parts["wrong_line"]["goal"]
    inel = ~g.eligible & (info["parts"][:, 0, 3] > 0)
    assert inel.sum() > 10
    assert np.all(info["parts"][inel, 0, 0] == 1.0)                                # it selected the right line
    assert not np.any(info["is_correct"][inel])


def test_forcing_an_ineligible_return_errors(runs):
    parts, _ = runs
    run = parts["force_ineligible"]
    info, inel = run["info"], ~run["goal"].eligible
    assert inel.sum() > 15
    assert np.all(info["termination_reason"][inel] == TOOL_INVALID)
    assert np.all(info["r_task"][inel] == -1.0) and not np.any(info["is_correct"][inel])
    assert np.all(run["world"].ret_order[inel] == -1)                              # nothing was recorded
    assert info["is_correct"][~inel].mean() >= 0.99                                # eligible: the oracle's run


def test_plain_return_when_an_exchange_is_wanted(runs):
    parts, _ = runs
    info, rep = parts["no_exchange"]["info"], parts["no_exchange"]["goal"].replacement
    assert rep.sum() > 30
    assert not np.any(info["is_correct"][rep])
    np.testing.assert_allclose(info["r_task"][rep], 0.8, atol=1e-5)                # r_rep = −1
    assert info["is_correct"][~rep].mean() >= 0.99


def test_wrong_selection_is_incorrect(runs):
    parts, _ = runs
    info = parts["wrong_select"]["info"]
    assert not np.any(info["is_correct"])
    assert np.all(info["parts"][:, 0, 0] == -1.0)
    assert info["r_task"].mean() <= parts["oracle"]["info"]["r_task"].mean() - 0.5


# ------------------------------------------------------------------------------------------- customer

@pytest.fixture(scope="module")
def probe(env_params, runs):
    """The customer's reaction to scripted turns, on the untouched worlds of the do-nothing episodes."""
    env, params = env_params
    wp = params.world
    cap = wp.cap
    parts, _ = runs
    goals, worlds, d = parts["noop"]["goals"], parts["noop"]["world"], parts["noop"]["d"]

    def one(goals, world, dd, wp):
        state = initial_state(jax.random.key(0), TASK["RETURN"], dd, goals, 1, world, cap, goals.mentioned,
                              no_message())
        goal = intent_goal(state, 0)
        noop = noop_action(cap)
        res = state.last_results

        def with_result(s, tool, error):
            return s.replace(last_results=res.replace(tool=res.tool.at[0].set(tool), error=res.error.at[0].set(error)))

        fb = lambda s, a: returns.feedback(s, 0, a, wp)  # noqa: E731
        call = lambda tool, **kw: set_call(noop, 0, make_call(cap, tool, **kw))  # noqa: E731
        listing = call(TOOL_INDEX["order.list"], days=365)
        known = state.replace(revealed=state.revealed.at[0, SLOT_ORDER].set(True))
        other = jnp.where(goal.line > 0, 0, 1)                                     # another line of the order
        wrong = call(INITIATE, order=goal.order, line=other, reason=0, method=1)
        right = call(INITIATE, order=goal.order, line=goal.line, reason=0, method=1)
        out = {
            "list": fb(with_result(state, TOOL_INDEX["order.list"], 0), listing),
            "list_known": fb(with_result(known, TOOL_INDEX["order.list"], 0), listing),
            "ask_order": fb(state, noop.replace(msg_act=jnp.int32(ASK), ask_slot=jnp.int32(SLOT_ORDER))),
            "wrong_line": fb(with_result(known, INITIATE, 0), wrong),
            "wrong_line_failed": fb(with_result(known, INITIATE, 13), wrong),
            "right_line": fb(with_result(known, INITIATE, 0), right),
            "nothing": fb(state, noop),
        }
        replied, _ = reply(jax.random.key(1), with_result(state, TOOL_INDEX["order.list"], 0), listing, wp,
                           difficulty(dd), (TASK["RETURN"],), env._feedback)
        return out, replied.message, replied.revealed[0]

    run = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))
    return jax.tree.map(np.asarray, run(goals, worlds, jnp.asarray(d), wp))


def test_return_disambiguation(probe):
    out, message, revealed = probe
    fb = out["list"]
    assert np.all(fb.applies) and np.all(fb.act == ACT_CLARIFY) and np.all(fb.reveal == SLOT_ORDER)
    assert np.all(out["ask_order"].applies) and np.all(out["ask_order"].reveal == SLOT_ORDER)
    assert not np.any(out["list_known"].applies)                 # the order is named once
    assert not np.any(out["nothing"].applies)
    fb = out["wrong_line"]
    assert np.all(fb.applies) and np.all(fb.act == ACT_CORRECT) and np.all(fb.issue == returns.ISSUE_WRONG_LINE)
    assert np.all(fb.reveal == -1) and np.all(fb.satisfaction == 0.0)
    assert not np.any(out["wrong_line_failed"].applies)          # a failed call harmed nothing
    assert not np.any(out["right_line"].applies)
    # through the customer core: an order lookup gets the order named (CLARIFY, SLOT_ORDER revealed)
    assert np.all(message.act == ACT_CLARIFY) and np.all(message.slot == SLOT_ORDER)
    assert np.all(revealed[:, SLOT_ORDER])
