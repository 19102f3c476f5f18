"""The simulated customer's decisions in JAX (SPEC §8): which act to reply with, which slot to reveal,
satisfaction, quitting and JOURNEY progression. Text realisation happens on the host (`user.text`)."""

import jax
import jax.numpy as jnp
from flax import struct

from ecomjax.tasks.action import ASK, Action
from ecomjax.tasks.difficulty import Difficulty
from ecomjax.tasks.episode import (
    ACT_CLARIFY, ACT_CONFIRM, ACT_CONTINUE, ACT_DISSATISFIED, ACT_DONE, ACT_ELABORATE, ACT_RAGEQUIT,
    EpisodeState, UserMessage, pending_slots,
)
from ecomjax.tasks.goal import GENERIC_SLOT, MAX_INTENTS

UNHAPPY = 0.3
NEUTRAL = 0.5


@struct.dataclass
class Feedback:
    """A task's reaction to the agent's turn (CART candidates and cart, RETURN disambiguation, ...)."""

    applies: jnp.ndarray       # [] bool the task has something to say this turn
    act: jnp.ndarray           # [] int32
    item: jnp.ndarray          # [] int32
    issue: jnp.ndarray         # [] int32
    satisfaction: jnp.ndarray  # [] float32 (NaN: unchanged)
    reveal: jnp.ndarray        # [] int32 slot the reply reveals, -1 none


def no_feedback() -> Feedback:
    return Feedback(applies=jnp.asarray(False), act=jnp.int32(ACT_CONTINUE), item=jnp.int32(-1), issue=jnp.int32(0),
                    satisfaction=jnp.float32(jnp.nan), reveal=jnp.int32(-1))


def current_intent(state: EpisodeState) -> jnp.ndarray:
    """The intent the conversation is on: the earliest introduced one still unanswered (after a topic
    switch the agent may still be working on it), else the latest introduced."""
    open_ = (jnp.arange(MAX_INTENTS) < state.introduced) & ~state.answered
    return jnp.where(jnp.any(open_), jnp.argmax(open_), jnp.maximum(state.introduced - 1, 0))


def reply(key: jax.Array, state: EpisodeState, action: Action, diff: Difficulty,
          fb: Feedback) -> tuple[EpisodeState, jnp.ndarray]:
    """The customer's answer to a non-final agent turn, given the task's `fb` for the current intent.
    Returns (state with message/revealed/satisfaction/introduced updated, quit)."""
    i = current_intent(state)
    k_switch, _ = jax.random.split(key)
    patience_out = state.turn >= diff.t_max
    unhappy = jnp.all(state.satisfaction < UNHAPPY)

    pending = pending_slots(state, i)
    asked = action.msg_act == ASK
    generic = action.ask_slot == GENERIC_SLOT
    ask_slot = jnp.clip(action.ask_slot, 0, pending.shape[0] - 1)
    slot = jnp.where(generic, jnp.where(jnp.any(pending), jnp.argmax(pending), -1),
                     jnp.where((action.ask_slot >= 0) & pending[ask_slot], ask_slot, -1))
    clarify = asked & (slot >= 0)

    # JOURNEY: the next intent comes when the current one is answered, or earlier as a topic switch.
    more = state.introduced < state.num_intents
    switch = jax.random.uniform(k_switch) < diff.p_switch
    advance = more & (state.answered[i] | switch) & ~clarify
    all_answered = jnp.all(state.answered | (jnp.arange(MAX_INTENTS) >= state.num_intents))

    act = jnp.select(
        [patience_out | unhappy, clarify, fb.applies, advance, all_answered],
        [ACT_RAGEQUIT, ACT_CLARIFY, fb.act, ACT_ELABORATE, ACT_DONE],
        jnp.where(jnp.nanmean(state.satisfaction) < UNHAPPY, ACT_DISSATISFIED, ACT_CONTINUE),
    ).astype(jnp.int32)
    revealed_slot = jnp.select([clarify, fb.applies & (fb.reveal >= 0)], [slot, fb.reveal], -1)
    revealed = state.revealed.at[i].set(
        state.revealed[i] | ((jnp.arange(pending.shape[0]) == revealed_slot) & (revealed_slot >= 0)))
    introduced = state.introduced + (act == ACT_ELABORATE).astype(jnp.int32)
    sat = jnp.where(fb.applies & ~jnp.isnan(fb.satisfaction), fb.satisfaction, NEUTRAL)
    message = UserMessage(
        act=act, intent=jnp.where(act == ACT_ELABORATE, introduced - 1, i), slot=revealed_slot,
        item=jnp.where(fb.applies, fb.item, -1), issue=jnp.where(fb.applies & (act == fb.act), fb.issue, 0),
        new_intent=act == ACT_ELABORATE,
    )
    counts = (act == ACT_CONFIRM) | (act == ACT_CLARIFY)
    new = state.replace(
        revealed=revealed, introduced=introduced, message=message,
        satisfaction=jnp.stack([state.satisfaction[1], sat]),
        clarify_turns=state.clarify_turns + counts.astype(jnp.int32),
    )
    return new, act == ACT_RAGEQUIT
