"""TextEnv: the JSON text protocol over the batched JAX core (DESIGN §4, SPEC §2).

Episodes live as one batched `EpisodeState` on the device; `reset_batch`/`step_batch` parse every agent
turn on the host, step all episodes in one jitted call and render what each agent sees next: tool results
as tool messages (compact JSON, cut to a token budget) and the customer's reply. `reset`/`step` are the
same with a batch of one. Observations are dicts compatible with the prior system's (`conversation`,
`tool_results`, `turn`, `env_id`, `done`, `reward`, R§1.2) with the fix that tool results are part of the
conversation; `new_messages` holds what the last call appended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ecomjax import oracle
from ecomjax.catalog.types import Vocab
from ecomjax.core.keys import Stream, seed_keys, stream_key
from ecomjax.env import INFO_KEYS, JOURNEY, EnvParams, ShopEnv
from ecomjax.tasks.action import ASK, noop_action
from ecomjax.tasks.difficulty import check_difficulty, episode_difficulty
from ecomjax.tasks.episode import AGENT_DONE, FORMAT_INVALID, TERMINATIONS
from ecomjax.tasks.goal import MAX_INTENTS, TASK, TASK_NAMES
from ecomjax.text.agent import Lexicon, action_to_json
from ecomjax.text.chat import ChatFormat
from ecomjax.text.parse import ParsedTurn, parse_turn
from ecomjax.text.prompt import PROMPT_STYLES, system_prompt
from ecomjax.text.results import RenderContext, compact_json, host_tree, render_result
from ecomjax.text.tokenizer import load_tokenizer
from ecomjax.user.text import detect_ask
from ecomjax.user.transcript import customer_message
from ecomjax.world.errors import message as error_message

DEFAULT_TOOL_RESULT_TOKENS = 512
TRUNCATION_MARKER = " …[truncated]"
POLICY = TASK["POLICY"]
VERBATIM_POLICY_BELOW = 3               # SPEC §4: policy.search shows a POLICY answer verbatim only below d = 3


@dataclass
class Episode:
    """Host-side text of one episode."""

    env_id: str
    difficulty: int
    system: str
    conversation: list[dict] = field(default_factory=list)
    tool_results: list[dict] = field(default_factory=list)
    new_messages: list[dict] = field(default_factory=list)
    done: bool = False
    reward: float = 0.0
    info: dict = field(default_factory=dict)


def _index(tree: Any, i: int) -> Any:
    return jax.tree.map(lambda x: x[i], tree)


def _scalar(x: Any) -> Any:
    a = np.asarray(x)
    if a.ndim:
        return a.tolist()
    return a.item()


def current_intent(state: Any) -> int:
    """Host twin of `user.core.current_intent` for one host state."""
    introduced = int(state.introduced)
    open_ = [i for i in range(introduced) if not bool(state.answered[i])]
    return open_[0] if open_ else max(introduced - 1, 0)


def batch_bucket(n: int) -> int:
    """The batch size a TextEnv of n episodes compiles for: the next power of two (so any n within a bucket
    reuses one compiled program)."""
    return 1 << max(0, n - 1).bit_length()


def _pad(tree, size: int):
    """Rows [n, ...] padded to [size, ...] with copies of row 0."""
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], size - x.shape[0], axis=0)])
                        if x.shape[0] < size else x, tree)


def _rows(tree, n: int):
    return jax.tree.map(lambda x: x[:n], tree)


@dataclass(frozen=True)
class _Jitted:
    """The jitted batched functions of one env, with `EnvParams` a jit argument (one program per catalog
    shape, not per catalog) and batches padded to `batch_bucket` sizes."""

    reset: object
    step: object
    oracle: object


_JITTED: dict[ShopEnv, _Jitted] = {}


def programs(env: ShopEnv) -> _Jitted:
    """The jitted (reset, step, oracle) programs every TextEnv of `env` shares (their caches show recompiles)."""
    hit = _JITTED.get(env)
    if hit is None:
        def step_live(params, keys, states, actions, live):
            new, ts = env.step_batch(keys, states, actions, params)
            keep = lambda a, b: jnp.where(live.reshape(live.shape + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
            return jax.tree.map(keep, new, states), ts

        hit = _JITTED[env] = _Jitted(reset=jax.jit(lambda p, k, d, t: env.reset_batch(k, p, d, t)),
                                     step=jax.jit(step_live), oracle=jax.jit(lambda p, k, s: oracle.act_batch(k, s, p)))
    return hit


def compiled(env: ShopEnv, params: EnvParams) -> tuple:
    """(reset, step, oracle) of (env, params) on batches of any size: reset(keys, d, tasks),
    step(keys, states, actions, live), oracle(keys, states). Every TextEnv of the same env shares the
    compiled programs, for any params of the same shapes and any batch size within a `batch_bucket`."""
    fns = programs(env)

    def reset(keys, d, tasks):
        n, size = keys.shape[0], batch_bucket(keys.shape[0])
        return _rows(fns.reset(params, *_pad((keys, d, tasks), size)), n)

    def step(keys, states, actions, live):
        n, size = keys.shape[0], batch_bucket(keys.shape[0])
        live = jnp.concatenate([live, jnp.zeros((size - n,), bool)])
        return _rows(fns.step(params, *_pad((keys, states, actions), size), live), n)

    def act(keys, states):
        n, size = keys.shape[0], batch_bucket(keys.shape[0])
        return _rows(fns.oracle(params, *_pad((keys, states), size)), n)

    return reset, step, act


class TextEnv:
    """The text protocol over a `ShopEnv`. `vocab` is the catalog's host strings (from the same
    `synthetic`/`load` call as `params.catalog`); `tokenizer` a HF tokenizer (built-in when None), used
    for the tool-result token budget; `customer_llm` enables the LLM customer tier (see `_init_customer_llm`)."""

    def __init__(self, env: ShopEnv, params: EnvParams, vocab: Vocab, tokenizer=None, *,
                 tool_result_tokens: int = DEFAULT_TOOL_RESULT_TOKENS, disclose_env_id: bool = True,
                 customer_llm=None, prompt_style: str = "full"):
        if not isinstance(vocab, Vocab):
            raise TypeError(f"vocab: expected the catalog's Vocab (catalog, vocab = ecomjax.catalog.synthetic(...)), "
                            f"got {type(vocab).__name__}")
        if vocab.num_products != params.catalog.num_products:
            raise ValueError(f"vocab has {vocab.num_products} products but the catalog has "
                             f"{params.catalog.num_products}: pass the Vocab made with this catalog")
        if tool_result_tokens < 16:
            raise ValueError(f"tool_result_tokens must be >= 16, got {tool_result_tokens}")
        self.env, self.params, self.vocab = env, params, vocab
        self.tokenizer = load_tokenizer(None) if tokenizer is None else tokenizer
        self.chat = ChatFormat.for_tokenizer(self.tokenizer)
        self.tool_result_tokens = tool_result_tokens
        self.disclose_env_id = disclose_env_id
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
        self.prompt_style = prompt_style
        self.catalog = host_tree(params.catalog)
        self.lexicon = Lexicon(vocab)
        self._template = host_tree(noop_action(params.cap))
        self._reset, self._step, self._oracle = compiled(env, params)
        self.states = None
        self.host_states = None
        self.host_info: dict = {}
        self.keys: jax.Array | None = None
        self.episodes: list[Episode] = []
        self._init_customer_llm(customer_llm)

    # ------------------------------------------------------------------------------------ jitted core

    # ------------------------------------------------------------------------------------ reset

    def _task_id(self, env_id: str | None, seed: int) -> int:
        allowed = sorted(set(self.params.tasks))
        if env_id is None:
            return allowed[seed % len(allowed)] if len(allowed) > 1 else allowed[0]
        if env_id not in TASK:
            raise ValueError(f"env_id: unknown task {env_id!r}; expected one of {list(TASK_NAMES)}")
        if TASK[env_id] not in self.params.tasks:
            raise ValueError(f"env_id: {env_id!r} is not in this env's collection "
                             f"{[TASK_NAMES[t] for t in allowed]}")
        return TASK[env_id]

    def reset_batch(self, seeds: list[int], env_ids: list[str | None] | None = None,
                    difficulties: list[int] | None = None) -> list[dict]:
        """Start len(seeds) episodes; episode b is fixed by (seeds[b], env_ids[b], difficulties[b])."""
        n = len(seeds)
        env_ids = [None] * n if env_ids is None else list(env_ids)
        difficulties = [0] * n if difficulties is None else list(difficulties)
        if not (len(env_ids) == len(difficulties) == n) or n == 0:
            raise ValueError(f"seeds, env_ids and difficulties must have the same non-zero length, got "
                             f"{n}, {len(env_ids)}, {len(difficulties)}")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"seed must be an integer >= 0, got {s!r}")
        ds = [check_difficulty(d) for d in difficulties]
        tasks = [self._task_id(e, int(s)) for e, s in zip(env_ids, seeds)]
        base = seed_keys([int(s) for s in seeds])
        reset_keys, self.keys = jax.vmap(jax.random.split)(base)[:, 0], jax.vmap(
            lambda k: stream_key(k, Stream.TEXT_STEP))(base)
        self.states, ts = self._reset(reset_keys, jnp.asarray(ds, jnp.int32), jnp.asarray(tasks, jnp.int32))
        self.host_states = host_tree(self.states)
        self.host_info = host_tree(ts.info)
        self.episodes = []
        for b in range(n):
            state = _index(self.host_states, b)
            env_id = TASK_NAMES[tasks[b]]
            budget = int(episode_difficulty(ds[b], 1).b_tool)
            ep = Episode(env_id=env_id, difficulty=ds[b],
                         system=system_prompt(env_id if self.disclose_env_id else "unknown", budget,
                                              self.prompt_style))
            opening = {"role": "user", "content": customer_message(state, self.catalog, self.vocab)}
            ep.conversation.append(opening)
            ep.new_messages = [opening]
            ep.info = self._info(b)
            self.episodes.append(ep)
            self._customer_turns.append((b, opening, state, -1))
        self._paraphrase_customer(range(n))
        return [self.observation(b) for b in range(n)]

    def reset(self, seed: int = 0, env_id: str | None = None, difficulty: int = 0) -> dict:
        return self.reset_batch([seed], [env_id], [difficulty])[0]

    # ------------------------------------------------------------------------------------ step

    def _parse(self, b: int, text: str) -> ParsedTurn:
        state = _index(self.host_states, b)
        turn = parse_turn(text, self.vocab, self.params.cap, self._template)
        if turn.format_error is not None:
            return turn
        a = turn.action
        i = current_intent(state)
        journey = int(state.task) == JOURNEY
        if bool(a.answer.present):
            if not journey:
                a.answer.intent[...] = 0
            elif not turn.answer_intent_given:
                a.answer.intent[...] = i
            elif int(a.answer.intent) >= int(state.introduced):
                bad = parse_turn("", self.vocab, self.params.cap, self._template)
                bad.format_error = (f"answer.intent: request {int(a.answer.intent)} has not been made yet "
                                    f"(open requests: 0..{int(state.introduced) - 1})")
                return bad
        slot = detect_ask(turn.message, _index(state.goal, i), catalog=self.catalog, vocab=self.vocab,
                          revealed=state.revealed[i])
        if slot >= 0:
            a.msg_act[...] = ASK
            a.ask_slot[...] = slot
        return turn

    def step_batch(self, action_jsons: list[str]) -> list[tuple[dict, float, bool, dict]]:
        """One agent turn for every episode (entries of finished episodes are ignored)."""
        if self.states is None:
            raise RuntimeError("call reset_batch before step_batch")
        if len(action_jsons) != len(self.episodes):
            raise ValueError(f"expected {len(self.episodes)} actions, got {len(action_jsons)}")
        live = np.array([not ep.done for ep in self.episodes])
        parsed = [self._parse(b, t) if live[b] else None for b, t in enumerate(action_jsons)]
        actions = [p.action if p is not None else self._template for p in parsed]
        stacked = jax.tree.map(lambda *x: jnp.asarray(np.stack(x)), *actions)
        turns = jnp.asarray(self.host_states.turn)
        step_keys = jax.vmap(jax.random.fold_in)(self.keys, turns)
        self.states, ts = self._step(step_keys, self.states, stacked, jnp.asarray(live))
        self.host_states = host_tree(self.states)
        self.host_info = host_tree(ts.info)
        for b, ep in enumerate(self.episodes):
            if live[b]:
                self._after_step(b, ep, parsed[b], action_jsons[b])
        self._paraphrase_customer(np.flatnonzero(live))
        return [(self.observation(b), ep.reward, ep.done, ep.info) for b, ep in enumerate(self.episodes)]

    def stop(self, b: int, reason: str) -> None:
        """End episode b outside the env's rules (a caller's context or turn limit). It is scored as it
        stands, like an episode that ran out of turns; `info` gets `truncated` and the reason."""
        ep = self.episodes[b]
        if ep.done:
            return
        ep.done = True
        ep.reward = float(ep.info["reward"])
        ep.info = {**ep.info, "truncated": True, "termination_reason": reason}

    def step(self, action_json: str) -> tuple[dict, float, bool, dict]:
        if len(self.episodes) != 1:
            raise RuntimeError(f"step() drives one episode; this TextEnv holds {len(self.episodes)} (use step_batch)")
        return self.step_batch([action_json])[0]

    def _after_step(self, b: int, ep: Episode, turn: ParsedTurn, text: str) -> None:
        state = _index(self.host_states, b)
        assistant = {"role": "assistant", "content": text if isinstance(text, str) else str(text)}
        ep.conversation.append(assistant)
        ep.new_messages = []
        ep.tool_results = self._tool_results(state, turn)
        for r in ep.tool_results:
            ep.new_messages.append({"role": "tool", "content": self._fit(compact_json(
                {"name": r["name"], "result": r["result"]} if r["error"] is None else
                {"name": r["name"], "error": r["error"]}))})
        ep.done = bool(state.done)
        reason = int(state.termination)
        if reason not in (AGENT_DONE, FORMAT_INVALID):
            asked = int(turn.action.ask_slot) if int(turn.action.msg_act) == ASK else -1
            reply = {"role": "user", "content": customer_message(state, self.catalog, self.vocab, asked)}
            ep.new_messages.append(reply)
            self._customer_turns.append((b, reply, state, asked))
        ep.conversation += ep.new_messages
        ep.info = self._info(b, turn)
        ep.reward = float(ep.info["reward"]) if ep.done else 0.0

    def _tool_results(self, state: Any, turn: ParsedTurn) -> list[dict]:
        results, out = state.last_results, []
        ctx = self._render_context(state)
        for j, call in enumerate(turn.calls):
            res = _index(results, j)
            code = int(res.error)
            args = _index(turn.action.calls, j)
            if call["error"] is not None:
                error, value = call["error"], None
            elif code:
                error, value = f"{call['name']}: {error_message(code)}", None
            else:
                error = None
                value = render_result(int(res.tool), code, res, {"order": int(args.order), "line": int(args.line)},
                                      state.world, self.catalog, self.vocab, ctx)
            out.append({"name": call["name"], "args": call["args"], "result": value, "error": error})
        return out

    def _render_context(self, state: Any) -> RenderContext:
        if int(state.d) >= VERBATIM_POLICY_BELOW:
            return RenderContext()
        rows = {int(state.goal.rule[i]): int(state.goal.row[i]) for i in range(int(state.num_intents))
                if int(state.goal.task[i]) == POLICY}
        return RenderContext(verbatim_rows=rows)

    def _fit(self, content: str) -> str:
        """`content` cut to the tool-result token budget, with a marker when cut."""
        enc = self.tokenizer(content, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) <= self.tool_result_tokens:
            return content
        keep = self.tool_result_tokens - len(self.tokenizer(TRUNCATION_MARKER, add_special_tokens=False)["input_ids"])
        return content[: enc["offset_mapping"][max(keep, 1)][0]] + TRUNCATION_MARKER

    # ------------------------------------------------------------------------------------ LLM customer tier

    def _init_customer_llm(self, customer_llm) -> None:
        """The optional LLM customer tier (`user.llm`, issue 6 §7): `customer_llm` (an `LLMCustomer` or any
        object with its `paraphrase_batch`) rewrites the template customer messages of each reset/step batch in
        one call; `customer_llm_stats` counts requests, accepted paraphrases and fallbacks by reason."""
        self.customer_llm = customer_llm
        self.customer_llm_stats = None
        self._customer_turns: list[tuple] = []
        if customer_llm is not None:
            from ecomjax.user.llm import LLMStats

            self.customer_llm_stats = LLMStats()

    def _paraphrase_customer(self, episodes) -> None:
        """With a customer LLM: paraphrase this batch's customer messages (a rejected one keeps its template
        text) and give each of `episodes` info["customer_llm"]. Without one: nothing (the template path)."""
        turns, self._customer_turns = self._customer_turns, []
        if self.customer_llm is None:
            return
        from ecomjax.user.llm import NOT_REQUESTED, paraphrase_turns

        outcomes = paraphrase_turns(self.customer_llm, turns, self.catalog, self.vocab, self.customer_llm_stats)
        for b in episodes:
            self.episodes[b].info["customer_llm"] = outcomes.get(int(b), dict(NOT_REQUESTED))

    # ------------------------------------------------------------------------------------ views

    def _info(self, b: int, turn: ParsedTurn | None = None) -> dict:
        """Episode b's `TimeStep.info` (stable keys, Python values) plus what the text layer noticed."""
        host = {k: _scalar(self.host_info[k][b]) for k in ("reward", *INFO_KEYS)}
        host["termination_reason"] = TERMINATIONS[host["termination_reason"]]
        host["task_id"], host["task"] = host["task"], TASK_NAMES[host["task"]]
        host["truncated"] = False
        host["format_error"] = None if turn is None else turn.format_error
        host["unknown_keys"] = [] if turn is None else list(turn.unknown_keys)
        host["tool_error_messages"] = [] if turn is None else [c["error"] for c in turn.calls if c["error"]]
        return host

    def observation(self, b: int) -> dict:
        ep = self.episodes[b]
        return {"conversation": list(ep.conversation), "tool_results": list(ep.tool_results),
                "turn": int(self.host_states.turn[b]), "env_id": ep.env_id, "done": ep.done,
                "reward": ep.reward if ep.done else None, "new_messages": list(ep.new_messages),
                "system_prompt": ep.system}

    def messages(self, b: int = 0) -> list[dict]:
        """The chat so far (system prompt first), ready for a chat template."""
        ep = self.episodes[b]
        return [{"role": "system", "content": ep.system}, *ep.conversation]

    def prompt(self, b: int = 0) -> str:
        """The chat rendered for generation (ChatML, generation prompt appended)."""
        return self.chat.render(self.messages(b), add_generation_prompt=True)

    def oracle_actions(self) -> list[str]:
        """The scripted oracle's next turn for every episode, as JSON (finished episodes: a no-op turn)."""
        keys = jax.vmap(lambda k, t: stream_key(k, Stream.TEXT_ORACLE, t))(
            self.keys, jnp.asarray(self.host_states.turn))
        actions = host_tree(self._oracle(keys, self.states))
        out = []
        for b in range(len(self.episodes)):
            action, state = _index(actions, b), _index(self.host_states, b)
            goal = _index(state.goal, min(int(action.answer.intent), MAX_INTENTS - 1))
            out.append(action_to_json(action, goal, self.catalog, self.vocab, self.lexicon))
        return out

    def oracle_action(self, b: int = 0) -> str:
        """The oracle's next turn for episode b as JSON."""
        return self.oracle_actions()[b]
