"""The simulated customer's LLM tier (DESIGN §5, issue 6 §7): a Flax Qwen3 rewrites the template messages.

The JAX decision core picks the customer's act (`user.core`); `user.text` realises it as a template message.
This tier asks a local Qwen3 to say the same thing in its own words, for every episode of a batch in one
batched generation. The act stays the source of truth: a paraphrase is used only when `validate` accepts it,
otherwise the template text is kept and the reason is counted.

What a request carries (`CustomerRequest`): the persona, a short goal summary, the act name, the template text
and its facts. The facts are the template's protected values (`user.text.opening_message_facts` /
`reply_message_facts`): slot values, order references, dates, product ids and descriptions, the values of a
correction. The goal summary names only the kind of task, never a value: values reach the model only as facts
of the template, so it has nothing it could leak that the act did not reveal.

Validation (`validate`, pure and host-side) rejects, in this order: an empty message; ChatML / special tokens
or control characters; a fact that is missing (case-insensitive, as a whole token: "ord_003" is not found in
"ord_0031"; money is compared by amount, "$45" states "$45.00"; a product description "<noun> by <brand>" may
also be stated as both parts); an id-like token the template does not contain (anything with a digit or an
underscore: product ids, `ord_…`, `line_…`, money, numbers, dates; and any catalog product id); a brand, store
or distinctive attribute value (colour, material, connector) the template does not contain. A generation that
hits its token budget without a stop token is rejected as truncated before validation.

Batching (`LLMCustomer.paraphrase_batch`): rows are padded to a power of two (at least `MIN_ROWS`, at most
`batch_size`; more requests take several calls) and prompts LEFT padded to a multiple of `length_bucket`, so a
run compiles the sampler for a handful of shapes. Each row's budget is a multiple of its template's length, so
a batch of short acts stops early. Each row samples with its own key (the sampler's per-row keys), made from
`LLMCustomer.seed` and the request's `seed` (TextEnv: drawn from the episode key and turn; without one, a
checksum of the prompt): a paraphrase never depends on what else is in the batch or what ran before, and the
identical episodes of a GRPO group hear identical customers.

`paraphrase_turns` is the TextEnv hook: template messages of one reset/step batch -> requests -> one
`paraphrase_batch` call -> per-message outcome, counted in an `LLMStats`. An accepted paraphrase gets the
episode's typo rate (`with_noise`), so difficulty keeps its meaning in the LLM tier.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np

from ecomjax.core.keys import Stream, stream_id, stream_key
from ecomjax.tasks.episode import USER_ACTS
from ecomjax.tasks.goal import PERSONAS, TASK_NAMES
from ecomjax.text.chat import IM_END, IM_START, ChatFormat
from ecomjax.user.text import add_noise, opening_message_facts, reply_message_facts, rng_for
from ecomjax.user.transcript import p_noise_at

OPENING_ACT = "opening"                  # the act name of an episode's first message (USER_ACTS has no opening)
DEFAULT_MAX_NEW_TOKENS = 96
DEFAULT_BATCH_SIZE = 64
DEFAULT_LENGTH_BUCKET = 128
DEFAULT_MAX_PROMPT_TOKENS = 1024
MIN_ROWS = 8                             # smallest batch shape a call compiles (rows are padded to a power of 2)
BUDGET_RATIO, BUDGET_SLACK = 2, 16       # row budget = ratio x template tokens + slack (capped at max_new_tokens)
DEFAULT_SAMPLING = dict(temperature=0.7, top_p=0.95)
_SEED_MASK = 0x7FFFFFFF
# Qwen3 chat templates think unless told not to; an empty think block is how their template switches it off.
THINK_OFF = "<think>\n\n</think>\n\n"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
NAMED_VALUE_ATTRS = ("color", "material", "connector_type")   # attribute values distinctive enough to police
MIN_NAMED_VALUE_CHARS = 3

# Rejection reasons (`Paraphrase.reason`, `LLMStats.fallbacks`).
EMPTY, TRUNCATED, SPECIAL_TOKEN, MISSING_FACT, NEW_ID, NEW_VALUE = (
    "empty", "truncated", "special_token", "missing_fact", "new_id", "new_value")
PROMPT_TOO_LONG, TEMPLATE_MISMATCH = "prompt_too_long", "template_mismatch"
REASONS = (EMPTY, TRUNCATED, SPECIAL_TOKEN, MISSING_FACT, NEW_ID, NEW_VALUE, PROMPT_TOO_LONG, TEMPLATE_MISMATCH)

PERSONA_TEXT = {
    "budget": "price-conscious; wants to spend as little as possible",
    "quality": "cares most about quality and good reviews",
    "speed": "in a hurry; wants it delivered fast",
    "balanced": "wants a good all-round option",
}
GOAL_TEXT = {
    "PD": "find a product that fits your requirements",
    "SUB": "find a substitute for a product that is out of stock",
    "CART": "get the right items, variants and quantities into your cart",
    "RETURN": "return an item you bought",
    "STATUS": "find out the status of one of your orders",
    "POLICY": "get an answer to a question about the shop's policies",
    "BUNDLE": "pick one product from each of several categories within a budget",
    "JOURNEY": "sort out several requests, one after the other",
}
ACT_TEXT = {
    OPENING_ACT: "your first message: say what you need",
    "none": "nothing to say",
    "confirm": "you accept what the assistant proposed",
    "clarify": "you answer the assistant's question",
    "correct": "you point out what is wrong",
    "elaborate": "you add detail or a new request",
    "continue": "you let the assistant carry on",
    "ragequit": "you give up and leave, annoyed",
    "done": "your need is met; you thank the assistant and finish",
    "dissatisfied": "you are not happy with what was offered",
}
INSTRUCTIONS = (
    "You play a customer of an online shop, chatting with the shop's assistant. Rewrite the customer's draft "
    "message in your own words, as this customer would write it, keeping its meaning. Copy every listed fact "
    "exactly as written. Do not add product ids, order ids, prices, dates, numbers, brands or stores that the "
    "draft does not contain. Reply with the message only.")


# ------------------------------------------------------------------------------------------ requests / results

@dataclasses.dataclass(frozen=True)
class CustomerRequest:
    """One message to paraphrase. `facts` are the values the template states (None: unknown, never generated)."""

    persona: str                        # a PERSONAS name
    goal: str                           # short goal summary, without values
    act: str                            # a USER_ACTS name or OPENING_ACT
    template: str                       # the template realisation (the fallback)
    facts: tuple[str, ...] | None = ()
    seed: int | None = None             # sampling seed of this row (None: a checksum of its prompt)


@dataclasses.dataclass(frozen=True)
class Paraphrase:
    """The outcome of one request: `text` is what the customer says (the paraphrase or the template)."""

    text: str
    accepted: bool
    reason: str | None = None           # why it was rejected (one of REASONS); None when accepted
    raw: str = ""                       # the model's decoded output ("" when nothing was generated)


@dataclasses.dataclass
class LLMStats:
    """Cumulative counters of the LLM tier: requests, accepted paraphrases, fallbacks by reason, batched calls."""

    requests: int = 0
    accepted: int = 0
    fallbacks: Counter = dataclasses.field(default_factory=Counter)
    calls: int = 0

    def record(self, results: Sequence[Paraphrase]) -> None:
        """Count one `paraphrase_batch` call's results."""
        self.calls += 1
        self.requests += len(results)
        self.accepted += sum(r.accepted for r in results)
        self.fallbacks.update(r.reason for r in results if not r.accepted)

    def as_dict(self) -> dict:
        """JSON-ready counters (`fallback_total` is the sum over reasons)."""
        return {"requests": self.requests, "accepted": self.accepted,
                "fallback_total": sum(self.fallbacks.values()), "fallbacks": dict(sorted(self.fallbacks.items())),
                "calls": self.calls}


class Paraphraser(Protocol):
    """What TextEnv needs from a customer LLM (LLMCustomer, or a test double)."""

    def paraphrase_batch(self, requests: Sequence[CustomerRequest], vocab: Any = None) -> list[Paraphrase]: ...


# ------------------------------------------------------------------------------------------ validation

_MONEY = re.compile(r"\$\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
_TOKEN = re.compile(r"\$\d+\.\d\d|[\w.]+")
_SPECIAL = re.compile(r"<\|[^<>|]*\|>|</?(?:think|tool_call|tool_response)>")
_FACT_PARTS = " by "
_NAMED_CACHE: dict[int, tuple[Any, re.Pattern | None]] = {}


def normalise_money(text: str) -> str:
    """Every money amount written canonically: "$1,200" and "$1200.0" -> "$1200.00"."""
    def canon(m: re.Match) -> str:
        cents = (m.group(2) or "")[:2].ljust(2, "0")
        return f"${int(m.group(1).replace(',', ''))}.{cents}"
    return _MONEY.sub(canon, text)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", normalise_money(text)).strip().lower()


def _has(norm_text: str, norm_fact: str) -> bool:
    """Whether `norm_fact` occurs in `norm_text` as a whole token run (not inside a longer id or number)."""
    left = r"(?<![\w$])(?<!\d[.,])" if re.match(r"[\w$]", norm_fact) else ""
    right = r"(?!\w)(?![.,]\d)" if re.search(r"\w$", norm_fact) else ""
    return re.search(left + re.escape(norm_fact) + right, norm_text) is not None


def fact_present(text: str, fact: str) -> bool:
    """Whether `text` states `fact` (case-insensitive whole-token match, money by amount; a description
    "<noun> by <brand>" also counts when both parts are there)."""
    t, f = _norm(text), _norm(fact)
    if _has(t, f):
        return True
    parts = [p for p in f.split(_FACT_PARTS) if p]
    return len(parts) > 1 and all(_has(t, p) for p in parts)


def id_tokens(text: str, vocab: Any = None) -> set[str]:
    """The id-like tokens of `text` (lower-cased, money canonical): tokens with a digit or an underscore, and
    any catalog product id of `vocab`."""
    out = set()
    for raw in _TOKEN.findall(normalise_money(text)):
        tok = raw if raw.startswith("$") else raw.strip(".")
        if not tok:
            continue
        if any(c.isdigit() or c == "_" for c in tok) or (vocab is not None and vocab.product_index(tok) >= 0):
            out.add(tok.lower())
    return out


def _named_pattern(vocab: Any) -> re.Pattern | None:
    """One case-insensitive whole-word regex of the catalog's brands, stores and NAMED_VALUE_ATTRS values."""
    hit = _NAMED_CACHE.get(id(vocab))
    if hit is not None and hit[0] is vocab:
        return hit[1]
    names = set(vocab.brands) | set(vocab.stores)
    for attr in NAMED_VALUE_ATTRS:
        names |= set(vocab.attr_values.get(attr, ()))
    names = sorted((n for n in names if len(n) >= MIN_NAMED_VALUE_CHARS), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, names)) + r")(?![\w-])", re.I) if names else None
    _NAMED_CACHE[id(vocab)] = (vocab, pattern)
    return pattern


def named_values(text: str, vocab: Any) -> set[str]:
    """The brands, stores and distinctive attribute values `text` names (lower-cased)."""
    pattern = None if vocab is None else _named_pattern(vocab)
    return set() if pattern is None else {m.group().lower() for m in pattern.finditer(text)}


def _bad_chars(text: str, special_tokens: Sequence[str]) -> bool:
    if _SPECIAL.search(text) or any(t and t in text for t in special_tokens):
        return True
    return any(unicodedata.category(c) in ("Cc", "Cs", "Co") and c not in "\n\t" for c in text) or "\ufffd" in text


def clean_output(text: str) -> str:
    """A decoded generation as a one-line message: whitespace collapsed, one pair of wrapping quotes removed."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def validate(paraphrase: str, template: str, facts: Sequence[str], *, vocab: Any = None,
             special_tokens: Sequence[str] = ()) -> str | None:
    """Why `paraphrase` may not replace `template` (a reason of REASONS), or None when it may (see the module
    docstring for the rules). `facts` are the values the template states; `vocab` enables the catalog checks."""
    if not paraphrase.strip():
        return EMPTY
    if _bad_chars(paraphrase, special_tokens):
        return SPECIAL_TOKEN
    if not all(fact_present(paraphrase, f) for f in facts if f):
        return MISSING_FACT
    if id_tokens(paraphrase, vocab) - id_tokens(template, vocab):
        return NEW_ID
    if named_values(paraphrase, vocab) - named_values(template, vocab):
        return NEW_VALUE
    return None


# ------------------------------------------------------------------------------------------ prompts

def prompt_messages(request: CustomerRequest) -> list[dict]:
    """The chat (system instructions, user brief) that asks for one paraphrase."""
    facts = "; ".join(f'"{f}"' for f in request.facts or ()) or "none"
    brief = (f"Customer: {PERSONA_TEXT.get(request.persona, request.persona)}\n"
             f"Goal: {request.goal}\n"
             f"Act: {request.act} ({ACT_TEXT.get(request.act, request.act)})\n"
             f"Facts to keep exactly: {facts}\n"
             f"Draft: {request.template}")
    return [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": brief}]


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def _left_pad(sequences: list[list[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, length] ids and mask with each sequence right-aligned (empty rows: one pad marked real, budget 0)."""
    ids = np.full((len(sequences), length), pad_id, np.int32)
    mask = np.zeros((len(sequences), length), np.int32)
    for b, seq in enumerate(sequences):
        seq = seq or [pad_id]
        ids[b, length - len(seq):] = seq
        mask[b, length - len(seq):] = 1
    return ids, mask


# ------------------------------------------------------------------------------------------ the model

class LLMCustomer:
    """A Qwen3 that paraphrases customer messages in batches (see the module docstring).

    model: a `models.qwen3.Qwen3`; tokenizer: a HF tokenizer with the ChatML tokens; sampling: a
    `SamplingParams` (default temperature 0.7, top-p 0.95); max_new_tokens: the longest paraphrase;
    batch_size: the most rows one sampler call holds; length_bucket: prompt lengths are rounded up to a
    multiple of it; max_prompt_tokens: longer prompts fall back to the template; seed: sampling seed."""

    def __init__(self, model: Any, tokenizer: Any, sampling: Any = None, *,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, batch_size: int = DEFAULT_BATCH_SIZE,
                 length_bucket: int = DEFAULT_LENGTH_BUCKET, max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
                 seed: int = 0):
        from ecomjax.models.qwen3 import SamplingParams

        for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size),
                            ("length_bucket", length_bucket), ("max_prompt_tokens", max_prompt_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only "
                             f"{model.config.vocab_size}")
        self.model, self.tokenizer = model, tokenizer
        self.sampling = SamplingParams(**DEFAULT_SAMPLING) if sampling is None else sampling
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.length_bucket, self.max_prompt_tokens, self.seed = length_bucket, max_prompt_tokens, seed
        self.chat = ChatFormat.for_tokenizer(tokenizer)
        self.im_end = tokenizer.convert_tokens_to_ids(IM_END)
        self.stop_tokens = tuple(sorted({self.im_end, *([tokenizer.eos_token_id] if tokenizer.eos_token_id
                                                         is not None else [])}))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.im_end
        template = getattr(tokenizer, "chat_template", None) or ""
        self.think_off = THINK_OFF if "enable_thinking" in template else ""
        self.special_tokens = tuple(sorted(set(getattr(tokenizer, "all_special_tokens", ())) | {IM_START, IM_END}))

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> LLMCustomer:
        """A customer LLM from a local directory holding Qwen3 weights (config.json + safetensors) and its
        tokenizer. A missing directory or missing files fail with one message naming what is missing."""
        from ecomjax.models.qwen3 import from_pretrained
        from ecomjax.text.tokenizer import TOKENIZER_FILES, load_tokenizer

        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"user model path {str(path)!r} is not a directory")
        missing = [name for name, ok in (
            ("config.json", (directory / "config.json").is_file()),
            (" or ".join(WEIGHT_FILES), any((directory / f).is_file() for f in WEIGHT_FILES)),
            ("tokenizer files (" + ", ".join(TOKENIZER_FILES) + ")",
             any((directory / f).exists() for f in TOKENIZER_FILES))) if not ok]
        if missing:
            raise FileNotFoundError(f"user model directory {str(path)!r} lacks {'; '.join(missing)} "
                                    "(expected a Hugging Face Qwen3 checkpoint with its tokenizer)")
        return cls(from_pretrained(directory), load_tokenizer(directory), **kwargs)

    # ---------------------------------------------------------------------------------- generation

    def prompt_ids(self, request: CustomerRequest) -> list[int]:
        """Token ids of one request's prompt (ChatML, generation prompt, thinking off for Qwen3 templates)."""
        text = self.chat.render(prompt_messages(request), add_generation_prompt=True) + self.think_off
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def budget(self, request: CustomerRequest) -> int:
        """New-token budget of one request: BUDGET_RATIO x its template's tokens + BUDGET_SLACK, capped."""
        n = len(self.tokenizer(request.template, add_special_tokens=False)["input_ids"])
        return min(self.max_new_tokens, BUDGET_RATIO * n + BUDGET_SLACK)

    def row_keys(self, seeds: list[int]) -> jax.Array:
        """[len(seeds)] sampling keys, one per row, from `self.seed` and each row's seed."""
        base = stream_key(self.seed, Stream.CUSTOMER_LLM_SAMPLE)
        return jax.vmap(lambda s: jax.random.fold_in(base, s))(np.asarray(seeds, np.uint32))

    def generate(self, prompts: list[list[int]], budgets: list[int],
                 seeds: list[int | None] | None = None) -> list[tuple[str, bool]]:
        """(decoded text without its stop token, finished with a stop token) for each prompt, in sampler calls
        of at most `batch_size` rows padded to power-of-two batch and `length_bucket` length shapes. Row b
        samples with its own key from `seeds[b]` (None or no seeds: a checksum of its prompt)."""
        from ecomjax.models.qwen3 import generate

        seeds = [None] * len(prompts) if seeds is None else seeds
        seeds = [(zlib.crc32(np.asarray(p, np.int32).tobytes()) if s is None else s) & _SEED_MASK
                 for p, s in zip(prompts, seeds)]
        out: list[tuple[str, bool]] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk, chunk_budgets = prompts[start:start + self.batch_size], budgets[start:start + self.batch_size]
            rows = min(self.batch_size, max(MIN_ROWS, _pow2_at_least(len(chunk))))
            length = -(-max(len(p) for p in chunk) // self.length_bucket) * self.length_bucket
            ids, mask = _left_pad(chunk + [[]] * (rows - len(chunk)), length, self.pad_id)
            budget = np.asarray(list(chunk_budgets) + [0] * (rows - len(chunk)), np.int32)
            row_seeds = seeds[start:start + len(chunk)]
            keys = self.row_keys(row_seeds + [row_seeds[0]] * (rows - len(chunk)))
            gen = generate(self.model, ids, mask, keys, max_new_tokens=self.max_new_tokens, params=self.sampling,
                           stop_tokens=self.stop_tokens, max_new_per_seq=budget, pad_id=self.pad_id)
            tokens, lengths = (np.asarray(x) for x in jax.device_get((gen.tokens, gen.lengths)))
            for r in range(len(chunk)):
                row = tokens[r, : lengths[r]].tolist()
                finished = bool(row) and row[-1] in self.stop_tokens
                text = self.tokenizer.decode(row[:-1] if finished else row, skip_special_tokens=False)
                out.append((text, finished))
        return out

    def paraphrase_batch(self, requests: Sequence[CustomerRequest], vocab: Any = None) -> list[Paraphrase]:
        """Paraphrases of every request, generated together; a rejected one keeps the template text.
        `vocab` (the catalog's Vocab) enables the product-id and named-value checks."""
        results: list[Paraphrase | None] = [None] * len(requests)
        todo, prompts, budgets, seeds = [], [], [], []
        for i, req in enumerate(requests):
            if req.facts is None:
                results[i] = Paraphrase(req.template, False, TEMPLATE_MISMATCH)
                continue
            ids = self.prompt_ids(req)
            if len(ids) > self.max_prompt_tokens:
                results[i] = Paraphrase(req.template, False, PROMPT_TOO_LONG)
                continue
            todo.append(i)
            prompts.append(ids)
            budgets.append(self.budget(req))
            seeds.append(req.seed)
        for i, (raw, finished) in zip(todo, self.generate(prompts, budgets, seeds) if todo else []):
            results[i] = self.judge(requests[i], raw, finished, vocab)
        return results  # type: ignore[return-value]

    def judge(self, request: CustomerRequest, raw: str, finished: bool = True, vocab: Any = None) -> Paraphrase:
        """The outcome of one generation: the cleaned paraphrase when it is finished and valid, else the template."""
        if not finished:
            return Paraphrase(request.template, False, TRUNCATED, raw)
        text = clean_output(raw)
        reason = validate(text, request.template, request.facts or (), vocab=vocab,
                          special_tokens=self.special_tokens)
        return Paraphrase(request.template if reason else text, reason is None, reason, raw)


# ------------------------------------------------------------------------------------------ TextEnv hook

def _goal_at(goal: Any, intent: int) -> Any:
    return jax.tree.map(lambda x: x[intent], goal)


def customer_request(state: Any, template: str, catalog: Any, vocab: Any, asked_slot: int = -1) -> CustomerRequest:
    """The request for one (unbatched, host) episode's latest customer message `template`, rendered again
    with its facts exactly as `user.transcript.customer_message` renders it; when the two texts differ the
    facts are unknown (None) and the request falls back without generating (TEMPLATE_MISMATCH)."""
    turn = int(state.turn)
    rng, p_noise = rng_for(state.key, turn), p_noise_at(int(state.d))
    if turn == 0:
        intent, act = 0, OPENING_ACT
        text, _, facts = opening_message_facts(_goal_at(state.goal, 0), state.world, catalog, vocab, rng,
                                               p_noise=p_noise, journey_hint=int(state.num_intents) > 1)
    else:
        intent, act = int(state.message.intent), USER_ACTS[int(state.message.act)]
        text, facts = reply_message_facts(state.message, state.goal, state.world, catalog, vocab, rng,
                                          p_noise=p_noise, asked_slot=asked_slot)
    goal = _goal_at(state.goal, intent)
    persona, task = int(goal.persona), int(goal.task)
    return CustomerRequest(
        persona=PERSONAS[persona] if 0 <= persona < len(PERSONAS) else "balanced",
        goal=GOAL_TEXT.get(TASK_NAMES[task] if 0 <= task < len(TASK_NAMES) else "", "get help with a purchase"),
        act=act, template=template, facts=facts if text == template else None,
        seed=int(rng_for(state.key, turn, stream_id(Stream.CUSTOMER_LLM_SEED)).integers(_SEED_MASK)))


NOT_REQUESTED = {"requested": False, "used": False, "fallback": False, "reason": None}


def _outcome(result: Paraphrase) -> dict:
    return {"requested": True, "used": result.accepted, "fallback": not result.accepted, "reason": result.reason}


def paraphrase_turns(llm: Paraphraser, turns: Sequence[tuple[int, dict, Any, int]], catalog: Any, vocab: Any,
                     stats: LLMStats) -> dict[int, dict]:
    """The TextEnv hook: `turns` are (episode, customer message dict, host state, asked slot) of one
    reset/step batch. Non-empty messages are paraphrased in one `llm.paraphrase_batch` call; accepted texts
    replace the message content in place. Returns {episode: info["customer_llm"]} for those episodes."""
    todo = [t for t in turns if t[1]["content"]]
    out = {b: dict(NOT_REQUESTED) for b, *_ in turns}
    if not todo:
        return out
    requests = [customer_request(state, msg["content"], catalog, vocab, asked) for _, msg, state, asked in todo]
    results = llm.paraphrase_batch(requests, vocab)
    if len(results) != len(requests):
        raise ValueError(f"paraphrase_batch returned {len(results)} results for {len(requests)} requests")
    stats.record(results)
    for (b, msg, state, _), request, result in zip(todo, requests, results):
        msg["content"] = with_noise(result.text, state, request.facts) if result.accepted else result.text
        out[b] = _outcome(result)
    return out


def with_noise(text: str, state: Any, facts: Sequence[str] | None) -> str:
    """An accepted paraphrase with the episode's R§8.2 typo rate, like the template it replaces: drawn from the
    episode key and turn (stream CUSTOMER_LLM_NOISE); facts, their "<noun> by <brand>" parts and anything with a digit,
    `_` or `$` are never touched, so the paraphrase stays valid."""
    p_noise = p_noise_at(int(state.d))
    if p_noise <= 0.0:
        return text
    protected = tuple(facts or ()) + tuple(p for f in facts or () for p in f.split(_FACT_PARTS))
    return add_noise(text, p_noise, rng_for(state.key, int(state.turn), stream_id(Stream.CUSTOMER_LLM_NOISE)),
                     protected)


__all__ = [
    "ACT_TEXT", "CustomerRequest", "GOAL_TEXT", "LLMCustomer", "LLMStats", "NOT_REQUESTED", "OPENING_ACT",
    "PERSONA_TEXT", "Paraphrase", "Paraphraser", "REASONS", "customer_request", "fact_present", "id_tokens",
    "named_values", "normalise_money", "paraphrase_turns", "prompt_messages", "validate", "with_noise",
]
