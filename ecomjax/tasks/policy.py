"""POLICY — store-policy QA: the customer asks a question that states every condition value of one rule;
the agent finds the rule with `policy.search`, applies the conditions to its answer table and answers.

The generator draws the clause count n = min(B_branch(d), 7), a random rule with exactly n clauses (the KB
has several rules for every count 1..7, so high d does not collapse onto one rule, fixing R§4.6) and a
random row of its answer table; the question text (host side, `policy_kb.question(rule, row, rng)`) states
a context selecting exactly that row. Nothing is withheld: the intent has no slots, the opening message is
the question. The world is not touched.

Scoring (SPEC §5): numeric answers 2·ρ − 1 with ρ = (min(|x|,|y|)/max(|x|,|y|))^4 (both zero → ρ = 1, one
zero → ρ = 0, missing / NaN / infinite → −1); categorical answers are answer-vocabulary ids (the text layer
matches case- and space-insensitively) scored +1 on an exact id match, else −1. Correct iff r_task ≥ 0.95.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ecomjax.catalog.schema import QUERY_TOKENS
from ecomjax.tasks.action import INFORM, Action, noop_action, set_call
from ecomjax.tasks.difficulty import Difficulty
from ecomjax.tasks.episode import EpisodeState, intent_goal
from ecomjax.tasks.goal import TASK, IntentGoal, empty_intent
from ecomjax.user.core import no_feedback
from ecomjax.world.policy_kb import MAX_CLAUSES, SCORE_BETA, kb_arrays
from ecomjax.world.state import World, make_call
from ecomjax.world.tools import TOOL_INDEX, WorldParams

CORRECT_AT = 0.95
SEARCH_TOP_K = 5
NUM_PARTS = 4

_KB = kb_arrays()
NUMERIC = np.asarray(_KB["numeric"])                          # [NR] bool
NUM_ROWS = np.asarray(_KB["num_rows"])                        # [NR] int32
ANSWER_NUM = np.asarray(_KB["answer_num"])                    # [NR, MR] float32 (NaN: categorical / pad)
ANSWER_CAT = np.asarray(_KB["answer_cat"])                    # [NR, MR] int32 (-1: numeric / pad)
RULES_BY_CLAUSES = np.asarray(_KB["rules_by_clauses"])        # [MAX_CLAUSES + 1, MAXPER] int32, -1 pads
NUM_RULES_BY_CLAUSES = np.asarray(_KB["num_rules_by_clauses"])  # [MAX_CLAUSES + 1] int32
QUERY = np.asarray(_KB["tokens"][:, :QUERY_TOKENS])           # [NR, QT] a rule's own search tokens
NUM_RULES = int(_KB["num_clauses"].shape[0])
del _KB


def generate(key: jax.Array, diff: Difficulty, world: World, wp: WorldParams) -> tuple[IntentGoal, World]:
    del wp
    k_rule, k_row = jax.random.split(key)
    n = jnp.clip(diff.b_branch, 1, MAX_CLAUSES)
    count = jnp.asarray(NUM_RULES_BY_CLAUSES)[n]
    rule = jnp.asarray(RULES_BY_CLAUSES)[n, jax.random.randint(k_rule, (), 0, jnp.maximum(count, 1))]
    row = jax.random.randint(k_row, (), 0, jnp.asarray(NUM_ROWS)[rule])
    goal = empty_intent().replace(
        task=jnp.int32(TASK["POLICY"]), rule=rule.astype(jnp.int32), row=row.astype(jnp.int32),
        answer_num=jnp.asarray(ANSWER_NUM)[rule, row], answer_cat=jnp.asarray(ANSWER_CAT)[rule, row],
    )
    return goal, world


def numeric_score(x: jnp.ndarray, y: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(r, ρ): r = 2ρ − 1 with ρ = (min/max of magnitudes)^β; both zero → ρ = 1; x not finite → r = −1."""
    ax, ay = jnp.abs(x), jnp.abs(y)
    hi = jnp.maximum(ax, ay)
    ratio = jnp.where(hi > 0, jnp.minimum(ax, ay) / jnp.where(hi > 0, hi, 1.0), 1.0)
    ok = jnp.isfinite(x) & jnp.isfinite(y)
    rho = jnp.where(ok, ratio ** SCORE_BETA, 0.0)
    return jnp.where(ok, 2.0 * rho - 1.0, -1.0), rho


def verify(wp: WorldParams, world: World, goal: IntentGoal, answer, diff: Difficulty):
    """(r_task, is_correct, parts [r_task, numeric rule, ρ, categorical match])."""
    del wp, world, diff
    numeric = jnp.asarray(NUMERIC)[jnp.clip(goal.rule, 0, NUM_RULES - 1)] & (goal.rule >= 0)
    r_num, rho = numeric_score(answer.policy_num, goal.answer_num)
    match = (answer.policy_cat == goal.answer_cat) & (goal.answer_cat >= 0)
    r_cat = jnp.where(match, 1.0, -1.0)
    r_task = jnp.clip(jnp.where(numeric, r_num, r_cat), -1.0, 1.0)
    r_task = jnp.where(answer.present & (goal.rule >= 0), r_task, -1.0)
    parts = jnp.stack([r_task, numeric.astype(jnp.float32), jnp.where(numeric, rho, 0.0),
                       (match & ~numeric).astype(jnp.float32)])
    return r_task, r_task >= CORRECT_AT, parts


def search_call(goal: IntentGoal, cap):
    """`policy.search` with the rule's own search tokens (title, topic, fields) as the query."""
    query = jnp.asarray(QUERY)[jnp.clip(goal.rule, 0, NUM_RULES - 1)]
    return make_call(cap, TOOL_INDEX["policy.search"], query=query, top_k=SEARCH_TOP_K)


def oracle(key: jax.Array, state: EpisodeState, i, wp: WorldParams, diff: Difficulty) -> Action:
    """Turn 1: search the policy KB. Turn 2 (once the rule is among the results): apply the conditions the
    question states to the rule's table and answer that row's value."""
    del key, diff
    goal = intent_goal(state, i)
    action = noop_action(wp.cap)
    res = state.last_results
    found = (res.tool[0] == TOOL_INDEX["policy.search"]) & (res.error[0] == 0) & jnp.any(res.policy[0] == goal.rule)
    search = set_call(action, 0, search_call(goal, wp.cap))
    answer = action.answer.replace(present=jnp.asarray(True), task=goal.task, intent=jnp.asarray(i, jnp.int32),
                                   policy_num=goal.answer_num, policy_cat=goal.answer_cat, done=jnp.asarray(True))
    final = action.replace(msg_act=jnp.int32(INFORM), answer=answer)
    return jax.tree.map(lambda f, s: jnp.where(found, f, s), final, search)


def feedback(state: EpisodeState, i, action: Action, wp: WorldParams):
    del state, i, action, wp
    return no_feedback()
