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
from ecomjax.world.policy_kb import kb_arrays
from ecomjax.world.compact import map_selected
from ecomjax.world.state import Capacities, ToolResult, World, empty_world
from ecomjax.world.tools import WorldParams, run_calls_batch, run_turn

BASE_TASKS = (pd, sub, cart, returns, status, policy, bundle)      # index = task id; JOURNEY composes them
STOCK_TAKING = (sub, pd)        # generators that take products out of stock in the episode (JOURNEY: first)
JOURNEY = TASK["JOURNEY"]
NUM_PARTS = 4
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


def _generate(key, task, diff: Difficulty, world: World, wp: WorldParams, used: tuple[int, ...]):
    """Goals [I] (in dialogue order) and the world for an episode of `task` (JOURNEY: min(L_int(d), |used|)
    distinct base tasks on one world, in a random dialogue order, generated in `generation_order`; `used`
    holds all seven base tasks, EnvParams.base_tasks, when the collection contains JOURNEY).

    Each base task's generator is traced once and runs once per episode (masked off when the episode does not
    contain it), so a vmapped reset of a task mix costs one pass over the generators, not one per intent."""
    k_tasks, k_gen = jax.random.split(key)
    journey = task == JOURNEY
    order = jax.random.permutation(k_tasks, len(used))                # distinct tasks: intents never share a
    sub_tasks = jnp.asarray(used)[jnp.resize(order, (MAX_INTENTS,))]  # cart or a return line
    n = jnp.where(journey, jnp.minimum(diff.l_int, len(used)), 1)   # never more intents than distinct tasks
    tasks = jnp.where(journey, sub_tasks, jnp.full((MAX_INTENTS,), task))               # [I]
    tasks = jnp.where(jnp.arange(MAX_INTENTS) < n, tasks, -1)
    keys = jax.random.split(k_gen, MAX_INTENTS)
    goals = jax.tree.map(lambda x: jnp.broadcast_to(x, (MAX_INTENTS, *x.shape)), empty_intent())
    reserved = jnp.full((len(used), POOL), -1, jnp.int32)                                # pools so far
    for step, t in enumerate(generation_order(used)):
        slot = jnp.argmax(tasks == t)                                 # dialogue index of task t
        active = tasks[slot] == t
        goal, w_new = _generate_task(BASE_TASKS[t], keys[slot], diff, world, wp, reserved.reshape(-1))
        world = jax.tree.map(lambda a, b: jnp.where(active, a, b), w_new, world)
        goals = jax.tree.map(lambda all_, g: jnp.where(active, all_.at[slot].set(g), all_), goals, goal)
        reserved = reserved.at[step].set(jnp.where(active, goal.pool, -1))
    return goals, world, n


def _verify(wp: WorldParams, world: World, state: EpisodeState, diff: Difficulty, used: tuple[int, ...]):
    """Per-intent (r_task, is_correct, parts [NUM_PARTS]); unused intents get (1, True)."""
    def one(i):
        goal = intent_goal(state, i)
        answer = jax.tree.map(lambda x: x[i], state.answers)
        r, ok, parts = dispatch(goal.task, used, lambda m: (lambda g, a: m.verify(wp, world, g, a, diff)), goal, answer)
        active = i < state.num_intents
        return jnp.where(active, r, 1.0), jnp.where(active, ok, True), jnp.where(active, parts, 0.0)

    return jax.vmap(one)(jnp.arange(MAX_INTENTS))




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
        k_task, k_today, k_gen, k_ep = jax.random.split(key, 4)
        if task is None:
            task = jnp.asarray(params.tasks)[jax.random.randint(k_task, (), 0, len(params.tasks))]
        d = jnp.asarray(0 if difficulty_level is None else difficulty_level, jnp.int32)
        diff = difficulty(d)
        today = TODAY_MIN + jax.random.randint(k_today, (), 0, TODAY_SPAN)
        world = jax.lax.optimization_barrier(empty_world(params.cap, today))   # no constant-folding of generators
        goals, world, n = _generate(k_gen, jnp.asarray(task, jnp.int32), diff, world, params.world,
                                    params.base_tasks)
        first = no_message().replace(new_intent=jnp.asarray(True))
        state = initial_state(k_ep, task, d, goals, n, world, params.cap, goals.mentioned, first)
        return state, self._timestep(state, jnp.float32(0.0), self._info(state, params, None))

    def step(self, key: jax.Array, state: EpisodeState, action: Action, params: EnvParams):
        """One agent turn of one episode (vmappable)."""
        diff = episode_difficulty(state.d, state.num_intents)
        k_tools, k_user = jax.random.split(key)
        world, results = run_turn(k_tools, state.world, action.calls, params.world, diff.b_tool, diff.top_k,
                                  diff.eps_rank)
        return self._after_tools(k_user, state, action, world, results, params)

    def step_batch(self, keys: jax.Array, states: EpisodeState, actions: Action, params: EnvParams):
        """`vmap(step)` for a batch, with retrieval batched outside the vmap (skipped when no env of the
        batch searches). Equals `vmap(step)` exactly; do not vmap this function itself."""
        diff = jax.vmap(episode_difficulty)(states.d, states.num_intents)
        split = jax.vmap(jax.random.split)(keys)
        worlds, results = run_calls_batch(split[:, 0], states.world, actions.calls, params.world, diff.b_tool,
                                          diff.top_k, diff.eps_rank, skip_absent=True)
        return jax.vmap(lambda k, s, a, w, r: self._after_tools(k, s, a, w, r, params))(
            split[:, 1], states, actions, worlds, results)

    def _after_tools(self, k_user, state: EpisodeState, action: Action, world: World, results: ToolResult,
                     params: EnvParams):
        wp, cfg = params.world, params.reward
        diff = episode_difficulty(state.d, state.num_intents)
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
        turn = state.turn + 1
        agent_done = record & answer.done
        state = state.replace(world=world, answers=answers, answered=answered, turn=turn, last_results=results,
                              tool_error_turn=tool_error, tool_error_any=state.tool_error_any | tool_error)
        replied, quit_ = user.reply(k_user, state, action, wp, diff, params.base_tasks, self._feedback)
        state = jax.tree.map(lambda a, b: jnp.where(agent_done | ~action.format_ok, b, a), replied, state)
        quit_ = quit_ & ~agent_done & action.format_ok
        terminal = ~action.format_ok | agent_done | (turn >= diff.t_max) | quit_ | unsafe
        tool_fail = jnp.where(cfg.tool_error_any_turn, state.tool_error_any, tool_error) & terminal
        reason = jnp.select(
            [~action.format_ok, tool_fail, unsafe, agent_done, quit_, turn >= diff.t_max],
            [FORMAT_INVALID, TOOL_INVALID, SAFETY_VIOLATION, AGENT_DONE, USER_QUIT, T_MAX], RUNNING,
        ).astype(jnp.int32)
        state = state.replace(done=terminal, termination=reason)
        info = self._info(state, params, diff)
        reward = jnp.where(terminal, info["reward"], 0.0)
        return state, self._timestep(state, reward, info)

    @staticmethod
    def _feedback(task, used, state, i, action, wp):
        return dispatch(task, used, lambda m: m.feedback, state, i, action, wp)

    def _info(self, state: EpisodeState, params: EnvParams, diff: Difficulty | None) -> dict:
        wp, cfg = params.world, params.reward
        diff = episode_difficulty(state.d, state.num_intents) if diff is None else diff
        r_i, ok_i, parts = _verify(wp, state.world, state, diff, params.base_tasks)
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
            return jax.vmap(lambda k, dd: self.env.reset(k, params, dd)[0])(split[rows, 1], d[rows])

        states = map_selected(ts.terminated, fresh, states, chunk=b // self.reset_fraction)
        return states, ts
