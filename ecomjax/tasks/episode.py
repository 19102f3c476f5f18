"""Episode state shared by the env loop, the verifiers, the simulated customer and the oracles."""

import jax
import jax.numpy as jnp
from flax import struct

from ecomjax.tasks.action import Answer, no_answer
from ecomjax.tasks.goal import MAX_INTENTS, IntentGoal
from ecomjax.world.state import Capacities, ToolResult, World, empty_result

USER_ACTS: tuple[str, ...] = (
    "none", "confirm", "clarify", "correct", "elaborate", "continue", "ragequit", "done", "dissatisfied",
)
(ACT_NONE, ACT_CONFIRM, ACT_CLARIFY, ACT_CORRECT, ACT_ELABORATE, ACT_CONTINUE, ACT_RAGEQUIT, ACT_DONE,
 ACT_DISSATISFIED) = range(len(USER_ACTS))
TERMINATIONS: tuple[str, ...] = (
    "running", "format_invalid", "tool_invalid", "safety_violation", "agent_done", "t_max", "user_quit",
)
(RUNNING, FORMAT_INVALID, TOOL_INVALID, SAFETY_VIOLATION, AGENT_DONE, T_MAX, USER_QUIT) = range(len(TERMINATIONS))


@struct.dataclass
class UserMessage:
    """The structured content of the customer's latest message (realised as text on the host)."""

    act: jnp.ndarray           # [] int32 index into USER_ACTS
    intent: jnp.ndarray        # [] int32 intent the message is about
    slot: jnp.ndarray          # [] int32 slot revealed, -1 none
    item: jnp.ndarray          # [] int32 CART item / RETURN line concerned, -1 none
    issue: jnp.ndarray         # [] int32 task-specific feedback code, 0 none
    new_intent: jnp.ndarray    # [] bool the message introduces the intent `intent` (JOURNEY)


def no_message() -> UserMessage:
    z = jnp.int32(0)
    return UserMessage(act=z, intent=z, slot=jnp.int32(-1), item=jnp.int32(-1), issue=z, new_intent=jnp.asarray(False))


@struct.dataclass
class EpisodeState:
    """Everything about one running episode. I intents, S slots, NC calls per turn."""

    key: jax.Array
    task: jnp.ndarray          # [] int32 episode task (JOURNEY for multi-intent)
    d: jnp.ndarray             # [] int32 difficulty
    goal: IntentGoal           # [I]
    num_intents: jnp.ndarray   # [] int32
    introduced: jnp.ndarray    # [] int32 intents the customer has stated so far
    world: World
    turn: jnp.ndarray          # [] int32 agent turns taken
    revealed: jnp.ndarray      # [I, S] bool slots the customer has told the agent (opening message included)
    answers: Answer            # [I] latest answer per intent
    answered: jnp.ndarray      # [I] bool
    satisfaction: jnp.ndarray  # [2] float32 last two satisfaction values (NaN before any)
    clarify_turns: jnp.ndarray # [] int32 user turns that were confirm/clarify (discounted in r_eff)
    message: UserMessage       # latest customer message
    last_results: ToolResult   # [NC] results of the latest turn's calls
    tool_error_turn: jnp.ndarray  # [] bool a call errored in the latest turn
    tool_error_any: jnp.ndarray   # [] bool a call errored in any turn
    done: jnp.ndarray          # [] bool
    termination: jnp.ndarray   # [] int32 index into TERMINATIONS


def initial_state(key: jax.Array, task, d, goal: IntentGoal, num_intents, world: World, cap: Capacities,
                  revealed: jnp.ndarray, first: UserMessage) -> EpisodeState:
    answers = jax.tree.map(lambda x: jnp.stack([x] * MAX_INTENTS), no_answer())
    results = jax.tree.map(lambda x: jnp.stack([x] * cap.calls_per_turn), empty_result(cap, -1))
    return EpisodeState(
        key=key, task=jnp.asarray(task, jnp.int32), d=jnp.asarray(d, jnp.int32), goal=goal,
        num_intents=jnp.asarray(num_intents, jnp.int32), introduced=jnp.int32(1), world=world, turn=jnp.int32(0),
        revealed=revealed, answers=answers, answered=jnp.zeros((MAX_INTENTS,), bool),
        satisfaction=jnp.full((2,), jnp.nan, jnp.float32), clarify_turns=jnp.int32(0), message=first,
        last_results=results, tool_error_turn=jnp.asarray(False), tool_error_any=jnp.asarray(False),
        done=jnp.asarray(False), termination=jnp.int32(RUNNING),
    )


def intent_goal(state: EpisodeState, i) -> IntentGoal:
    """Goal of intent i. # scalar fields"""
    return jax.tree.map(lambda x: x[i], state.goal)


def pending_slots(state: EpisodeState, i) -> jnp.ndarray:
    """Slots intent i needs that the agent has not been told. # [S] bool"""
    return state.goal.needed[i] & ~state.revealed[i]


