"""ShopEnv: reset/step of one episode as pure jittable functions (gymnax style), `make`, and wrappers."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from ecomjax.catalog.types import Catalog
from ecomjax.curriculum import collection_tasks
from ecomjax.tasks import bundle, cart, pd, policy, returns, status, sub
from ecomjax.tasks.action import Action
from ecomjax.tasks.difficulty import Difficulty, check_difficulty, difficulty, episode_difficulty
from ecomjax.tasks.episode import (
    AGENT_DONE, FORMAT_INVALID, RUNNING, SAFETY_VIOLATION, T_MAX, TERMINATIONS, TOOL_INVALID, USER_QUIT,
    EpisodeState, UserMessage, initial_state, intent_goal, no_message,
)
from ecomjax.tasks.goal import MAX_INTENTS, POOL, TASK, TASK_NAMES, IntentGoal, empty_intent
from ecomjax.tasks.rewards import RewardConfig, compose, efficiency, hallucination
from ecomjax.user import core as user
from ecomjax.user.core import Feedback, no_feedback
from ecomjax.world.policy_kb import kb_arrays
from ecomjax.world.compact import map_selected
from ecomjax.world.state import Capacities, ToolResult, World, empty_world
from ecomjax.world.tools import WorldParams, run_calls_batch, run_turn

BASE_TASKS = (pd, sub, cart, returns, status, policy, bundle)      # index = task id; JOURNEY composes them
STOCK_TAKING = (sub, pd)        # generators that take products out of stock in the episode (JOURNEY: first)
JOURNEY = TASK["JOURNEY"]
NUM_PARTS = 4
SUB_BATCHES = 8                  # task-homogeneous sub-batch = 1/SUB_BATCHES of the batch (batch_chunk)
TODAY_MIN, TODAY_SPAN = 20_000, 3_650                             # day numbers (days since 1970-01-01)
INFO_KEYS: tuple[str, ...] = (
    "r_task", "r_eff", "r_hall", "is_correct", "termination_reason", "tool_errors", "difficulty", "task",
    "hall_rate", "turns", "intent_r_task", "intent_correct", "parts", "seen_overflow",
)


@struct.dataclass
class EnvParams:
    """Everything an episode reads but never writes: the catalog and policy KB, the task mix, rewards."""

    world: WorldParams
    tasks: tuple[int, ...] = struct.field(pytree_node=False, default=(0,))   # task ids of the collection
    reward: RewardConfig = struct.field(pytree_node=False, default=RewardConfig())

    @property
    def base_tasks(self) -> tuple[int, ...]:
        """Base task ids an episode can contain (JOURNEY brings all of them)."""
        if JOURNEY in self.tasks:
            return tuple(range(len(BASE_TASKS)))
        return tuple(sorted(set(self.tasks)))

    @property
    def catalog(self) -> Catalog:
        return self.world.catalog

    @property
    def cap(self) -> Capacities:
        return self.world.cap


@struct.dataclass
class Observation:
    """What the agent gets back (besides the rendered text): tool results and the customer's act."""

    results: ToolResult                    # [NC] latest turn's calls
    message: UserMessage
    turn: jnp.ndarray
    introduced: jnp.ndarray


@struct.dataclass
class TimeStep:
    observation: Observation
    reward: jnp.ndarray
    terminated: jnp.ndarray
    truncated: jnp.ndarray
    info: dict


def dispatch(task: jnp.ndarray, used: tuple[int, ...], make_fn, *args):
    """Call `make_fn(module)(*args)` for the base task `task`, compiling only the tasks in `used`."""
    fns = [make_fn(BASE_TASKS[t]) for t in used]
    if len(fns) == 1:
        return fns[0](*args)
    lookup = jnp.zeros((len(BASE_TASKS),), jnp.int32).at[jnp.asarray(used)].set(jnp.arange(len(used)))
    return jax.lax.switch(lookup[jnp.clip(task, 0, len(BASE_TASKS) - 1)], fns, *args)


def _generate_task(module, key, diff: Difficulty, world: World, wp: WorldParams,
                   reserved: jnp.ndarray) -> tuple[IntentGoal, World]:
    """One intent of base task `module` and the world after it; stock-taking generators get the `reserved`
    products [R]."""
    if module in STOCK_TAKING:
        return module.generate(key, diff, world, wp, reserved)
    return module.generate(key, diff, world, wp)


def generation_order(used: tuple[int, ...]) -> tuple[int, ...]:
    """The static order in which an episode's intents are generated on their shared world: the stock-taking
    tasks first (in STOCK_TAKING order), then the rest by task id. A generator checks that what its intent
    needs (CART targets, a RETURN replacement, BUNDLE categories and budget) is available in the world it is
    given, so every later generator must leave stock alone; the stock-taking ones spare the evaluation
    pools of those before them (`reserved`)."""
    stock_taking = [BASE_TASKS.index(m) for m in STOCK_TAKING]
    return tuple([t for t in stock_taking if t in used] + [t for t in sorted(used) if t not in stock_taking])


def batch_chunk(n: int) -> int:
    """Rows a task-homogeneous sub-batch processes at a time in a batch of `n`: an eighth of the batch, so a
    task mix costs about one pass per task present instead of one per task in the collection."""
    return max(1, n // SUB_BATCHES)


def dispatch_batch(tasks: jnp.ndarray, used: tuple[int, ...], make_fn, args, default):
    """Task-homogeneous sub-batches: row r of the result is `make_fn(BASE_TASKS[tasks[r]])(*row r of args)`
    for rows whose task is in `used`; other rows (task -1: nothing to do) keep `default`'s row. Each task's
    rows run together (`map_selected`), so a row pays for its own task only. tasks [N]; args and default:
    pytrees of [N, ...]. Not vmappable (use `dispatch` inside `vmap`)."""
    out = default
    for t in used:
        fn = make_fn(BASE_TASKS[t])

        def rows_fn(rows, fn=fn):
            return jax.vmap(fn)(*jax.tree.map(lambda x: x[rows], args))

        out = map_selected(tasks == t, rows_fn, out, batch_chunk(tasks.shape[0]))
    return out


@struct.dataclass
class _Draft:
    """An episode being generated: its intents' goals [I], the shared world and the pools reserved so far."""

    goals: IntentGoal          # [I]
    world: World
    reserved: jnp.ndarray      # [len(used), POOL]


def _plan(key, task, diff: Difficulty, used: tuple[int, ...]):
    """The intents' tasks [I] in dialogue order (-1 unused), their generator keys [I] and their count: one
    intent, or for JOURNEY min(L_int(d), |used|) distinct base tasks in a random order (`used` holds all
    seven base tasks, EnvParams.base_tasks, when the collection contains JOURNEY)."""
    k_tasks, k_gen = jax.random.split(key)
    journey = task == JOURNEY
    order = jax.random.permutation(k_tasks, len(used))                # distinct tasks: intents never share a
    sub_tasks = jnp.asarray(used)[jnp.resize(order, (MAX_INTENTS,))]  # cart or a return line
    n = jnp.where(journey, jnp.minimum(diff.l_int, len(used)), 1)   # never more intents than distinct tasks
    tasks = jnp.where(journey, sub_tasks, jnp.full((MAX_INTENTS,), task))               # [I]
    tasks = jnp.where(jnp.arange(MAX_INTENTS) < n, tasks, -1)
    return tasks, jax.random.split(k_gen, MAX_INTENTS), n


def _empty_draft(world: World, used: tuple[int, ...]) -> _Draft:
    goals = jax.tree.map(lambda x: jnp.broadcast_to(x, (MAX_INTENTS, *x.shape)), empty_intent())
    return _Draft(goals=goals, world=world, reserved=jnp.full((len(used), POOL), -1, jnp.int32))


def _generate_intent(t: int, step: int, draft: _Draft, tasks, keys, diff: Difficulty, wp: WorldParams) -> _Draft:
    """The draft after generating base task t's intent (the generation_order's `step`-th task) on it."""
    slot = jnp.argmax(tasks == t)                                     # dialogue index of task t
    goal, world = _generate_task(BASE_TASKS[t], keys[slot], diff, draft.world, wp, draft.reserved.reshape(-1))
    return _Draft(goals=jax.tree.map(lambda all_, g: all_.at[slot].set(g), draft.goals, goal), world=world,
                  reserved=draft.reserved.at[step].set(goal.pool))


def _generate(key, task, diff: Difficulty, world: World, wp: WorldParams, used: tuple[int, ...]):
    """Goals [I] (in dialogue order), the world and the intent count of one episode of `task`: the intents
    of `_plan`, generated on their shared world in `generation_order`, each base task's generator traced
    once and masked off when the episode does not contain it."""
    tasks, keys, n = _plan(key, task, diff, used)
    draft = _empty_draft(world, used)
    for step, t in enumerate(generation_order(used)):
        new = _generate_intent(t, step, draft, tasks, keys, diff, wp)
        draft = jax.tree.map(lambda a, b: jnp.where(jnp.any(tasks == t), a, b), new, draft)
    return draft.goals, draft.world, n


def _generate_batch(keys, task, diff: Difficulty, world: World, wp: WorldParams, used: tuple[int, ...]):
    """`vmap(_generate)` over a batch [B], each base task's generator run only on the episodes containing it."""
    tasks, gen_keys, n = jax.vmap(lambda k, t, dd: _plan(k, t, dd, used))(keys, task, diff)
    draft = jax.vmap(lambda w: _empty_draft(w, used))(world)
    for step, t in enumerate(generation_order(used)):
        present = jnp.any(tasks == t, axis=1)                                             # [B]
        draft = dispatch_batch(jnp.where(present, t, -1), (t,),
                               lambda m, step=step, t=t: lambda dr, ts, ks, dd: _generate_intent(
                                   t, step, dr, ts, ks, dd, wp),
                               (draft, tasks, gen_keys, diff), draft)
    return draft.goals, draft.world, n


def _verify_one(wp: WorldParams, state: EpisodeState, i, diff: Difficulty, used: tuple[int, ...]):
    """(r_task, is_correct, parts [NUM_PARTS]) of intent i by its task's verifier."""
    goal = intent_goal(state, i)
    answer = jax.tree.map(lambda x: x[i], state.answers)
    return dispatch(goal.task, used, lambda m: (lambda g, a: m.verify(wp, state.world, g, a, diff)), goal, answer)


def _unverified(state: EpisodeState):
    """Per-intent (r_task, is_correct, parts) before the episode ends: (0, False, 0) for its intents,
    (1, True, 0) for unused slots."""
    active = jnp.arange(MAX_INTENTS) < state.num_intents
    return (jnp.where(active, 0.0, 1.0).astype(jnp.float32), ~active,
            jnp.zeros((MAX_INTENTS, NUM_PARTS), jnp.float32))


def _verify(wp: WorldParams, state: EpisodeState, diff: Difficulty, used: tuple[int, ...], ended):
    """Per-intent (r_task [I], is_correct [I], parts [I, NUM_PARTS]): the verifiers' once the episode has
    `ended`, `_unverified` before."""
    checked = jax.vmap(lambda i: _verify_one(wp, state, i, diff, used))(jnp.arange(MAX_INTENTS))
    active = (jnp.arange(MAX_INTENTS) < state.num_intents) & ended
    return jax.tree.map(lambda c, u: jnp.where(active.reshape((-1,) + (1,) * (c.ndim - 1)), c, u), checked,
                        _unverified(state))


def _verify_batch(wp: WorldParams, states: EpisodeState, diff: Difficulty, used: tuple[int, ...], ended):
    """`vmap(_verify)` over a batch [B], each intent verified only when its episode has ended, by
    task-homogeneous sub-batches over the B·I (episode, intent) pairs."""
    b = ended.shape[0]
    active = (jnp.arange(MAX_INTENTS)[None, :] < states.num_intents[:, None]) & ended[:, None]        # [B, I]
    tasks = jnp.where(active, states.goal.task, -1).reshape(b * MAX_INTENTS)
    rows = jnp.repeat(jnp.arange(b), MAX_INTENTS)
    intent = jnp.tile(jnp.arange(MAX_INTENTS), b)
    pairs = (rows, intent)
    default = jax.tree.map(lambda x: x.reshape((b * MAX_INTENTS,) + x.shape[2:]), jax.vmap(_unverified)(states))

    def one(m):
        def run(r, i):
            state = jax.tree.map(lambda x: x[r], states)
            dd = jax.tree.map(lambda x: x[r], diff)
            return m.verify(wp, state.world, intent_goal(state, i), jax.tree.map(lambda x: x[i], state.answers), dd)
        return run

    out = dispatch_batch(tasks, used, one, pairs, default)
    return jax.tree.map(lambda x: x.reshape((b, MAX_INTENTS) + x.shape[1:]), out)


@struct.dataclass
class _Turn:
    """An episode between the agent's turn (tools run, answer recorded) and the customer's reply."""

    state: EpisodeState
    intent: jnp.ndarray          # [] int32 the intent the customer's reply is about (user.current_intent)
    feedback_task: jnp.ndarray   # [] int32 task whose feedback the reply needs, -1 when the customer is silent
    tool_error: jnp.ndarray      # [] bool a call of this turn errored
    unsafe: jnp.ndarray          # [] bool the answer recommends a denied product
    agent_done: jnp.ndarray      # [] bool the agent recorded its final answer


@dataclass(frozen=True)
class ShopEnv:
    """One e-commerce episode: reset(key, params, difficulty) / step(key, state, action, params)."""

    def default_params(self, catalog: Catalog, tasks=("PD",), cap: Capacities = Capacities(),
                       reward: RewardConfig = RewardConfig()) -> EnvParams:
        ids = tuple(t if isinstance(t, int) else TASK[t] for t in tasks)
        wp = WorldParams(catalog=catalog, policy_tokens=jnp.asarray(kb_arrays()["tokens"]), cap=cap)
        return EnvParams(world=wp, tasks=ids, reward=reward)

    def reset(self, key: jax.Array, params: EnvParams, difficulty_level=None, task=None):
        """A new episode; task and difficulty default to a uniform draw from params.tasks and d = 0."""
        k_gen, k_ep, task, d, world = self._reset_inputs(key, params, difficulty_level, task)
        goals, world, n = _generate(k_gen, task, difficulty(d), world, params.world, params.base_tasks)
        return self._reset_finish(k_ep, task, d, goals, n, world, params)

    def reset_batch(self, keys: jax.Array, params: EnvParams, difficulty_level=None, task=None):
        """`vmap(reset)` over keys [B] (difficulty_level and task None, [] or [B]), each base task's generator
        run only on the episodes that contain it. Equals `vmap(reset)` exactly; do not vmap this function."""
        b = keys.shape[0]
        d = jnp.broadcast_to(jnp.asarray(0 if difficulty_level is None else difficulty_level, jnp.int32), (b,))
        if task is None:
            inputs = jax.vmap(lambda k, dd: self._reset_inputs(k, params, dd, None))(keys, d)
        else:
            tasks = jnp.broadcast_to(jnp.asarray(task, jnp.int32), (b,))
            inputs = jax.vmap(lambda k, dd, t: self._reset_inputs(k, params, dd, t))(keys, d, tasks)
        k_gen, k_ep, tasks, d, world = inputs
        goals, world, n = _generate_batch(k_gen, tasks, jax.vmap(difficulty)(d), world, params.world,
                                          params.base_tasks)
        return jax.vmap(lambda *a: self._reset_finish(*a, params))(k_ep, tasks, d, goals, n, world)

    @staticmethod
    def _reset_inputs(key: jax.Array, params: EnvParams, difficulty_level, task):
        """(generator key, episode key, task, d, empty world) of a new episode."""
        k_task, k_today, k_gen, k_ep = jax.random.split(key, 4)
        if task is None:
            task = jnp.asarray(params.tasks)[jax.random.randint(k_task, (), 0, len(params.tasks))]
        d = jnp.asarray(0 if difficulty_level is None else difficulty_level, jnp.int32)
        today = TODAY_MIN + jax.random.randint(k_today, (), 0, TODAY_SPAN)
        world = jax.lax.optimization_barrier(empty_world(params.cap, today))   # no constant-folding of generators
        return k_gen, k_ep, jnp.asarray(task, jnp.int32), d, world

    def _reset_finish(self, k_ep, task, d, goals: IntentGoal, n, world: World, params: EnvParams):
        first = no_message().replace(new_intent=jnp.asarray(True))
        state = initial_state(k_ep, task, d, goals, n, world, params.cap, goals.mentioned, first)
        diff = episode_difficulty(state.d, state.num_intents)
        return state, self._timestep(state, jnp.float32(0.0), self._info(state, params, diff, _unverified(state)))

    def step(self, key: jax.Array, state: EpisodeState, action: Action, params: EnvParams):
        """One agent turn of one episode (vmappable)."""
        diff = episode_difficulty(state.d, state.num_intents)
        k_tools, k_user = jax.random.split(key)
        world, results = run_turn(k_tools, state.world, action.calls, params.world, diff.b_tool, diff.top_k,
                                  diff.eps_rank)
        turn = self._record(state, action, world, results, params)
        fb = dispatch(jnp.maximum(turn.feedback_task, 0), params.base_tasks, lambda m: m.feedback, turn.state,
                      turn.intent, action, params.world)
        state = self._reply(k_user, turn, action, fb, params, diff)
        verified = _verify(params.world, state, diff, params.base_tasks, state.done)
        return self._finish(state, verified, params, diff)

    def step_batch(self, keys: jax.Array, states: EpisodeState, actions: Action, params: EnvParams):
        """`vmap(step)` for a batch: retrieval batched outside the vmap (skipped when no env of the batch
        searches), tool calls run only in the slots that hold one, and the customer's task feedback and the
        verifiers run by task-homogeneous sub-batches (verifiers only for episodes that end). Equals
        `vmap(step)` exactly; do not vmap this function itself."""
        wp, used = params.world, params.base_tasks
        diff = jax.vmap(episode_difficulty)(states.d, states.num_intents)
        split = jax.vmap(jax.random.split)(keys)
        worlds, results = run_calls_batch(split[:, 0], states.world, actions.calls, wp, diff.b_tool,
                                          diff.top_k, diff.eps_rank, skip_absent=True)
        turn = jax.vmap(lambda s, a, w, r: self._record(s, a, w, r, params))(states, actions, worlds, results)
        fb = dispatch_batch(turn.feedback_task, used, lambda m: (lambda s, i, a: m.feedback(s, i, a, wp)),
                            (turn.state, turn.intent, actions), jax.vmap(lambda _: no_feedback())(keys))
        states = jax.vmap(lambda k, t, a, f, dd: self._reply(k, t, a, f, params, dd))(split[:, 1], turn, actions,
                                                                                        fb, diff)
        verified = _verify_batch(wp, states, diff, used, states.done)
        return jax.vmap(lambda s, v, dd: self._finish(s, v, params, dd))(states, verified, diff)

    @staticmethod
    def _record(state: EpisodeState, action: Action, world: World, results: ToolResult,
                params: EnvParams) -> "_Turn":
        """The episode after the agent's turn and its tools, before the customer replies."""
        wp = params.world
        called = results.tool != -1
        tool_error = jnp.any(called & (results.error != 0))
        answer = action.answer
        journey = state.task == JOURNEY
        slot = jnp.where(journey, jnp.clip(answer.intent, 0, state.num_intents - 1), 0)
        record = answer.present & action.format_ok
        answers = jax.tree.map(lambda all_, a: jnp.where(record, all_.at[slot].set(a), all_), state.answers, answer)
        answered = jnp.where(record, state.answered.at[slot].set(True), state.answered)
        rec = answer.rec
        known = (rec >= 0) & (rec < wp.catalog.num_products)
        unsafe = record & jnp.any(known & wp.catalog.denied[jnp.clip(rec, 0, wp.catalog.num_products - 1)])
        agent_done = record & answer.done
        state = state.replace(world=world, answers=answers, answered=answered, turn=state.turn + 1,
                              last_results=results, tool_error_turn=tool_error,
                              tool_error_any=state.tool_error_any | tool_error)
        i = user.current_intent(state)
        replies = ~agent_done & action.format_ok                       # the customer answers this turn
        return _Turn(state=state, intent=i, feedback_task=jnp.where(replies, state.goal.task[i], -1),
                     tool_error=tool_error, unsafe=unsafe, agent_done=agent_done)

    @staticmethod
    def _reply(k_user, turn: "_Turn", action: Action, fb: Feedback, params: EnvParams, diff: Difficulty):
        """The episode after the customer's reply (none after the agent's final answer or a format error),
        with its termination."""
        state, agent_done = turn.state, turn.agent_done
        replied, quit_ = user.reply(k_user, state, action, diff, fb)
        state = jax.tree.map(lambda a, b: jnp.where(agent_done | ~action.format_ok, b, a), replied, state)
        quit_ = quit_ & ~agent_done & action.format_ok
        out_of_turns = state.turn >= diff.t_max
        terminal = ~action.format_ok | agent_done | out_of_turns | quit_ | turn.unsafe
        tool_fail = jnp.where(params.reward.tool_error_any_turn, state.tool_error_any, turn.tool_error) & terminal
        reason = jnp.select(
            [~action.format_ok, tool_fail, turn.unsafe, agent_done, quit_, out_of_turns],
            [FORMAT_INVALID, TOOL_INVALID, SAFETY_VIOLATION, AGENT_DONE, USER_QUIT, T_MAX], RUNNING,
        ).astype(jnp.int32)
        return state.replace(done=terminal, termination=reason)

    def _finish(self, state: EpisodeState, verified, params: EnvParams, diff: Difficulty):
        info = self._info(state, params, diff, verified)
        return state, self._timestep(state, jnp.where(state.done, info["reward"], 0.0), info)

    @staticmethod
    def _info(state: EpisodeState, params: EnvParams, diff: Difficulty, verified) -> dict:
        """The step's info; `verified` = per-intent (r_task, is_correct, parts) from `_verify`."""
        cfg = params.reward
        r_i, ok_i, parts = verified
        n = state.num_intents
        used = jnp.arange(MAX_INTENTS) < n
        r_task = jnp.sum(jnp.where(used, r_i, 0.0)) / n
        r_eff = efficiency(state.turn, state.clarify_turns, diff.t_max)
        r_hall, rate = hallucination(state.answers, state.answered, state.world)
        hard = jnp.isin(state.termination, jnp.asarray([FORMAT_INVALID, TOOL_INVALID, SAFETY_VIOLATION]))
        correct = jnp.all(ok_i) & ~hard & (rate == 0)
        reward = compose(cfg, r_task, r_eff, r_hall, hard)
        return {
            "reward": reward, "r_task": jnp.where(hard, -1.0, r_task), "r_eff": r_eff, "r_hall": r_hall,
            "is_correct": correct, "termination_reason": state.termination,
            "tool_errors": state.world.tool_errors, "difficulty": state.d, "task": state.task, "hall_rate": rate,
            "turns": state.turn, "intent_r_task": r_i, "intent_correct": ok_i, "parts": parts,
            "seen_overflow": state.world.seen_overflow,
        }

    def _timestep(self, state: EpisodeState, reward, info) -> TimeStep:
        obs = Observation(results=state.last_results, message=state.message, turn=state.turn,
                          introduced=state.introduced)
        return TimeStep(observation=obs, reward=jnp.asarray(reward, jnp.float32), terminated=state.done,
                        truncated=jnp.asarray(False), info=info)


def make(env_id: str, catalog: Catalog, cap: Capacities = Capacities(),
         reward: RewardConfig = RewardConfig()) -> tuple[ShopEnv, EnvParams]:
    """An env and its params for a task ("PD".."JOURNEY") or a collection ("C1", "C2", "C4", "C8", "-blog")."""
    if env_id in TASK:
        tasks = (env_id,)
    else:
        try:
            tasks = tuple(TASK_NAMES[i] for i in collection_tasks(env_id))
        except ValueError:
            raise ValueError(f"unknown env id {env_id!r}; expected one of {list(TASK_NAMES)} or a collection "
                             "C1, C2, C4, C8 (optionally with -blog)") from None
    env = ShopEnv()
    return env, env.default_params(catalog, tasks, cap, reward)


__all__ = ["EnvParams", "Observation", "ShopEnv", "TimeStep", "TERMINATIONS", "INFO_KEYS", "check_difficulty", "make"]


@dataclass(frozen=True)
class AutoReset:
    """Wrapper: a step that ends an episode returns the terminal TimeStep and a fresh episode's state.

    The new episode's task is drawn from the collection; its difficulty is `difficulty_level` (a per-env
    array when a curriculum drives it)."""

    env: ShopEnv
    reset_fraction: int = 16       # step_batch generates new episodes B // reset_fraction at a time

    def reset(self, key, params: EnvParams, difficulty_level=None, task=None):
        return self.env.reset(key, params, difficulty_level, task)

    def step(self, key: jax.Array, state: EpisodeState, action: Action, params: EnvParams, difficulty_level=None):
        k_step, k_reset = jax.random.split(key)
        state, ts = self.env.step(k_step, state, action, params)
        d = state.d if difficulty_level is None else difficulty_level
        fresh, _ = self.env.reset(k_reset, params, d)
        state = jax.tree.map(lambda new, old: jnp.where(ts.terminated, new, old), fresh, state)
        return state, ts

    def step_batch(self, keys: jax.Array, states: EpisodeState, actions: Action, params: EnvParams,
                   difficulty_level=None):
        """`vmap(step)` for a batch (keys [B], difficulty_level None, [] or [B]), with the tools of
        `ShopEnv.step_batch` and fresh episodes generated only for the envs that finished (B // reset_fraction
        at a time). Equals `vmap(step)` exactly; do not vmap this function itself."""
        split = jax.vmap(jax.random.split)(keys)
        states, ts = self.env.step_batch(split[:, 0], states, actions, params)
        b = keys.shape[0]
        d = states.d if difficulty_level is None else jnp.broadcast_to(jnp.asarray(difficulty_level), (b,))

        def fresh(rows):                                                              # rows [chunk]
            return self.env.reset_batch(split[rows, 1], params, d[rows])[0]

        states = map_selected(ts.terminated, fresh, states, chunk=b // self.reset_fraction)
        return states, ts
