"""PD — product discovery: find k_rec products meeting the customer's constraints, ranked for their persona.

The generator draws a target product and m(d) constraints it satisfies (price bound and leaf category
always), tightens the price bound so at most POOL products pass every constraint (the whole feasible set
fits in one search), and makes a p_oos(d) share of them out of stock in this episode.

The customer's stated priority decides correctness (SPEC §5): at d ≥ 1 a feasible, in-stock product's
relevance is 2^−r, r its dense rank among the pool by the priority (budget: lower price; quality: higher
rating; speed: fewer shipping days; balanced: the all-round persona utility of price, rating, shipping and
brand), so a list of feasible products that ignores the priority loses most of its nDCG and is not correct;
at d = 0 every feasible, in-stock product is equally relevant. Correct iff r_task ≥ 0.95 and the list holds
at most k_rec products.
"""

import jax
import jax.numpy as jnp

from ecomjax.tasks import constraints as C
from ecomjax.tasks import discovery as D
from ecomjax.tasks.action import PRESENT, Action, Answer, noop_action, set_call
from ecomjax.tasks.difficulty import Difficulty
from ecomjax.tasks.episode import EpisodeState, intent_goal, pending_slots
from ecomjax.tasks.goal import GENERIC_SLOT, NUM_SLOTS, PERSONAS, TASK, IntentGoal, empty_intent
from ecomjax.world.state import World, make_call
from ecomjax.world.tools import TOOL_INDEX, WorldParams

W_RANK, W_CONS, W_OOS = 0.55, 0.35, 0.10
CORRECT_AT = 0.95
SEARCH_TOP_K = 50
NUM_PARTS = 4


def draw_target(key: jax.Array, catalog, world: World) -> jnp.ndarray:
    """A random in-stock, allowed product (rejection sampling over a fixed number of draws)."""
    cand = jax.random.randint(key, (64,), 0, catalog.num_products)
    ok = (catalog.stock[cand] > 0) & ~catalog.denied[cand] & ~jnp.isin(cand, world.oos)
    return cand[jnp.argmax(ok)]


def omit_slots(key: jax.Array, c_mask: jnp.ndarray, p_missing: jnp.ndarray) -> jnp.ndarray:
    """Which constraint slots the opening message states: price and category always, the rest unless
    omitted with probability p_missing. # [NUM_SLOTS] bool"""
    mentioned = jnp.zeros((NUM_SLOTS,), bool)
    omit = jax.random.uniform(key, c_mask.shape) < p_missing
    states = c_mask & (~omit | (jnp.arange(c_mask.shape[0]) < 2))
    return mentioned.at[: c_mask.shape[0]].set(states)


def generate(key: jax.Array, diff: Difficulty, world: World, wp: WorldParams,
             reserved: jnp.ndarray = D.NO_RESERVED) -> tuple[IntentGoal, World]:
    """A PD intent; its close distractors made out of stock never include `reserved` products [R] (those
    other intents of a JOURNEY rely on being available)."""
    catalog = wp.catalog
    k_target, k_cons, k_persona, k_oos, k_omit = jax.random.split(key, 5)
    target = draw_target(k_target, catalog, world)
    c_key, c_op, c_value, c_mask = D.draw_constraints(k_cons, catalog, target, diff.m, diff)
    c_value = D.tighten_price(catalog, c_key, c_op, c_value, c_mask)
    members = D.pool_members(catalog, c_key, c_op, c_value, c_mask)
    keep = members[jnp.argmax(D.available(world, catalog, members))]
    world = D.make_distractors_oos(k_oos, world, catalog, members, diff.p_oos, keep, reserved)
    needed = jnp.zeros((NUM_SLOTS,), bool).at[: c_mask.shape[0]].set(c_mask)
    goal = empty_intent().replace(
        task=jnp.int32(TASK["PD"]), c_key=c_key, c_op=c_op, c_value=c_value, c_mask=c_mask,
        mentioned=omit_slots(k_omit, c_mask, diff.p_missing), needed=needed,
        persona=jax.random.randint(k_persona, (), 0, len(PERSONAS)), anchor=target, k_rec=diff.k_rec,
    )
    return D.finish_pool(wp, world, goal, diff, sim_anchor=False), world


def score_list(wp: WorldParams, world: World, goal: IntentGoal, answer: Answer, diff: Difficulty,
               rel: jnp.ndarray, w_rank: float, w_cons: float, w_oos: float):
    """Shared PD/SUB scoring of a recommendation list given its relevances. Returns (r_task, parts)."""
    listed = answer.rec != -1
    top = listed & (jnp.arange(answer.rec.shape[0]) < goal.k_rec)
    r_rank = 2.0 * D.ndcg(jnp.where(top, rel, 0.0), goal.k_rec, goal.idcg) - 1.0
    sat = C.satisfaction(wp.catalog, jnp.where(top, answer.rec, -1), goal.c_key, goal.c_op, goal.c_value, goal.c_mask)
    s_best = jnp.max(jnp.where(top, sat, 0.0))
    r_cons = 2.0 * s_best ** diff.alpha.astype(jnp.float32) - 1.0
    oos = D.out_of_stock(world, wp.catalog, answer.rec) & top
    oos_rate = jnp.where(jnp.any(top), jnp.sum(oos) / jnp.maximum(jnp.sum(top), 1), 1.0)
    r_oos = 1.0 - 2.0 * jnp.clip(oos_rate, 0.0, 1.0)
    r_task = jnp.clip(w_rank * r_rank + w_cons * r_cons + w_oos * r_oos, -1.0, 1.0)
    r_task = jnp.where(answer.present, r_task, -1.0)
    return r_task, jnp.stack([r_rank, r_cons, r_oos, oos_rate])


def within_k(goal: IntentGoal, answer: Answer) -> jnp.ndarray:
    """The answer lists at most the k_rec products asked for (a longer list is never correct). # [] bool"""
    return jnp.maximum(jnp.sum(answer.rec >= 0), answer.n_rec) <= goal.k_rec


def verify(wp: WorldParams, world: World, goal: IntentGoal, answer: Answer, diff: Difficulty):
    """(r_task, is_correct, parts [r_rank, r_cons, r_oos, oos_rate]); correct iff r_task ≥ CORRECT_AT and
    the list holds at most k_rec products."""
    rel = D.relevance(wp, world, goal, answer.rec, sim_anchor=False)
    r_task, parts = score_list(wp, world, goal, answer, diff, rel, W_RANK, W_CONS, W_OOS)
    return r_task, (r_task >= CORRECT_AT) & within_k(goal, answer), parts


def search_call(wp: WorldParams, goal: IntentGoal, cap):
    """The careful agent's search: the category's name as query and every constraint as a filter."""
    leaf = D.constraint_leaf(goal.c_key, goal.c_value, goal.c_mask)
    query = jnp.zeros((16,), jnp.int32).at[: wp.catalog.category_tokens.shape[1]].set(wp.catalog.category_tokens[leaf])
    filters = C.to_filters(goal.c_key, goal.c_op, goal.c_value, goal.c_mask)
    return make_call(cap, TOOL_INDEX["catalog.search"], query=query, filters=filters, top_k=SEARCH_TOP_K)


def ask_or_search(state: EpisodeState, i, wp: WorldParams, recommend):
    """Oracle skeleton of PD/SUB: ask each pending slot, then search with all constraints as filters,
    then answer with `recommend(results_ids)`."""
    goal = intent_goal(state, i)
    cap = wp.cap
    action = noop_action(cap)
    pending = pending_slots(state, i)
    searched = (state.last_results.tool[0] == TOOL_INDEX["catalog.search"]) & (state.last_results.error[0] == 0)
    first_pending = jnp.argmax(pending)
    ask = action.replace(msg_act=jnp.int32(2), ask_slot=jnp.where(jnp.any(pending), first_pending, GENERIC_SLOT))
    search = set_call(action, 0, search_call(wp, goal, cap))
    rec = recommend(state.last_results.ids[0])
    answer = action.answer.replace(present=jnp.asarray(True), task=goal.task, intent=jnp.asarray(i, jnp.int32),
                                   rec=rec, n_rec=jnp.sum(rec >= 0).astype(jnp.int32), done=jnp.asarray(True))
    final = action.replace(msg_act=jnp.int32(PRESENT), presented=rec, answer=answer)
    branch = jnp.where(jnp.any(pending), 0, jnp.where(searched, 2, 1))
    return jax.tree.map(lambda a, s, f: jnp.select([branch == 0, branch == 1], [a, s], f), ask, search, final)


def oracle(key: jax.Array, state: EpisodeState, i, wp: WorldParams, diff: Difficulty) -> Action:
    del key, diff
    goal = intent_goal(state, i)
    return ask_or_search(state, i, wp, lambda ids: D.rank_for(wp, state.world, goal, ids, False))


def presentation_feedback(state: EpisodeState, i, action: Action, wp: WorldParams, sim_anchor: bool):
    """PD/SUB: when the agent presents candidates, the customer confirms the ones that fit or corrects.
    Satisfaction is the share of presented products that are feasible and available (relevance > 0)."""
    from ecomjax.tasks.episode import ACT_CONFIRM, ACT_CORRECT
    from ecomjax.user.core import Feedback, no_feedback

    goal = intent_goal(state, i)
    shown = action.presented
    listed = shown != -1
    rel = D.relevance(wp, state.world, goal, shown, sim_anchor)
    good = jnp.sum(listed & (rel > 0))
    share = good / jnp.maximum(jnp.sum(listed), 1)
    applies = (action.msg_act == PRESENT) & jnp.any(listed)
    fb = Feedback(applies=applies, act=jnp.where(good > 0, ACT_CONFIRM, ACT_CORRECT).astype(jnp.int32),
                  item=jnp.where(good > 0, shown[jnp.argmax(listed & (rel > 0))], -1), issue=jnp.int32(0),
                  satisfaction=share.astype(jnp.float32), reveal=jnp.int32(-1))
    return jax.tree.map(lambda a, b: jnp.where(applies, a, b), fb, no_feedback())


def feedback(state: EpisodeState, i, action: Action, wp: WorldParams):
    return presentation_feedback(state, i, action, wp, sim_anchor=False)
