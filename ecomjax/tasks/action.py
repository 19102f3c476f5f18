"""The structured agent turn: a message act, up to B tool calls and an optional answer."""

import jax
import jax.numpy as jnp
from flax import struct

from ecomjax.tasks.goal import MAX_REC
from ecomjax.world.state import Capacities, ToolCall, no_call

MSG_ACTS: tuple[str, ...] = ("inform", "present", "ask", "confirm")
INFORM, PRESENT, ASK, CONFIRM = range(len(MSG_ACTS))


@struct.dataclass
class Answer:
    """The agent's answer fields (SPEC §2); `present` False means the turn carried no answer."""

    present: jnp.ndarray       # [] bool
    task: jnp.ndarray          # [] int32 the `env` tag
    intent: jnp.ndarray        # [] int32 which JOURNEY intent it answers (0 elsewhere)
    rec: jnp.ndarray           # [MAX_REC] int32 recommended product ids, -1 pads (out of range = unknown id)
    n_rec: jnp.ndarray         # [] int32 ids the agent listed (may exceed MAX_REC; counted for r_hall)
    order: jnp.ndarray         # [] int32 selected order, -1 none
    line: jnp.ndarray          # [] int32 selected order line, -1 none
    status: jnp.ndarray        # [] int32 order status id, -1 none
    policy_num: jnp.ndarray    # [] float32 numeric policy answer, NaN none
    policy_cat: jnp.ndarray    # [] int32 categorical policy answer id, -1 none
    done: jnp.ndarray          # [] bool


@struct.dataclass
class Action:
    """One agent turn. Non-LLM policies build it directly; the text layer parses LLM output into it."""

    msg_act: jnp.ndarray       # [] int32 index into MSG_ACTS
    ask_slot: jnp.ndarray      # [] int32 slot asked about (goal.GENERIC_SLOT: generic), -1 none
    presented: jnp.ndarray     # [MAX_REC] int32 products named in the message, -1 pads
    calls: ToolCall            # [NC]
    answer: Answer
    format_ok: jnp.ndarray     # [] bool


def no_answer() -> Answer:
    return Answer(
        present=jnp.asarray(False), task=jnp.int32(-1), intent=jnp.int32(0),
        rec=jnp.full((MAX_REC,), -1, jnp.int32), n_rec=jnp.int32(0), order=jnp.int32(-1), line=jnp.int32(-1),
        status=jnp.int32(-1), policy_num=jnp.float32(jnp.nan), policy_cat=jnp.int32(-1), done=jnp.asarray(False),
    )


def noop_action(cap: Capacities) -> Action:
    """A turn that says something and does nothing: no calls, no answer."""
    calls = jax.tree.map(lambda x: jnp.stack([x] * cap.calls_per_turn), no_call(cap))
    return Action(msg_act=jnp.int32(INFORM), ask_slot=jnp.int32(-1), presented=jnp.full((MAX_REC,), -1, jnp.int32),
                  calls=calls, answer=no_answer(), format_ok=jnp.asarray(True))


def set_call(action: Action, i: int, call: ToolCall) -> Action:
    """The action with call slot i replaced."""
    return action.replace(calls=jax.tree.map(lambda xs, x: xs.at[i].set(x), action.calls, call))
