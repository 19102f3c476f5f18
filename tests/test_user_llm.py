"""LLM customer tier (issue 6 §7): a Flax Qwen3 paraphrases the template customer messages in one batched call
per reset/step; a paraphrase that drops a fact or adds an id/value is replaced by the template and counted.

A tiny random Qwen3 (saved with `save_pretrained` + the built-in tokenizer) checks the plumbing; scripted
generations check acceptance and every rejection reason. One STATUS TextEnv (batch of 4) is compiled for the
whole file: tests swap its `customer_llm` rather than compile a second env (2-core CI budget).
"""

import contextlib
import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from ecomjax.evaluate import customer_llm as eval_customer_llm
from ecomjax.evaluate import parse_args
from ecomjax.models.qwen3 import Generation, Qwen3, save_pretrained, tiny_config
from ecomjax.tasks.episode import ACT_CLARIFY, ACT_CONFIRM, UserMessage
from ecomjax.tasks.goal import SLOT_ORDER
from ecomjax.text import TextEnv, load_tokenizer, save_builtin
from ecomjax.user import llm as L
from ecomjax.user import text as T
from ecomjax.user.llm import CustomerRequest, LLMCustomer, LLMStats, validate
from ecomjax.user.transcript import customer_message

SEEDS = [0, 1, 2, 3]
N = len(SEEDS)
MAX_NEW = 16
NOISY_D = 20                         # a difficulty with a high typo rate


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = load_tokenizer(None)
    path = tmp_path_factory.mktemp("user_model")
    save_pretrained(Qwen3.from_config(tiny_config(vocab_size=len(tok)), rngs=nnx.Rngs(0)), path)
    save_builtin(path)
    return path


@pytest.fixture(scope="module")
def llm(model_dir):
    return LLMCustomer.from_pretrained(model_dir, max_new_tokens=MAX_NEW, batch_size=N)


@pytest.fixture(scope="module")
def tenv(small_catalog, status_env, llm):
    return TextEnv(*status_env, small_catalog[1], customer_llm=llm)


@contextlib.contextmanager
def customer(tenv, paraphraser):
    """Run with another customer LLM (None: the template path) and fresh counters."""
    saved = tenv.customer_llm, tenv.customer_llm_stats
    tenv.customer_llm, tenv.customer_llm_stats = paraphraser, LLMStats()
    try:
        yield tenv
    finally:
        tenv.customer_llm, tenv.customer_llm_stats = saved


def play(tenv, ds, turns=3):
    """Reset STATUS episodes SEEDS at difficulties ds and play `turns` oracle turns; returns the transcripts."""
    tenv.reset_batch(SEEDS, ["STATUS"] * N, ds)
    for _ in range(turns):
        if all(ep.done for ep in tenv.episodes):
            break
        tenv.step_batch(tenv.oracle_actions())
    return [tenv.messages(b) for b in range(N)]


class Counting:
    """Wraps a paraphraser and records the size of each paraphrase_batch call."""

    def __init__(self, inner):
        self.inner, self.calls, self.results = inner, [], []

    def paraphrase_batch(self, requests, vocab=None):
        self.calls.append(list(requests))
        self.results.append(self.inner.paraphrase_batch(requests, vocab))
        return self.results[-1]


def scripted(llm, monkeypatch, make):
    """`llm` whose generations are `make(index in the batch, request) -> (text, finished)`, not the model's."""
    batch = []

    def fake_paraphrase(requests, vocab=None):
        batch[:] = requests
        return LLMCustomer.paraphrase_batch(llm, requests, vocab)

    monkeypatch.setattr(llm, "generate", lambda prompts, budgets, seeds=None: [
        make(i, r) for i, r in enumerate(batch) if r.facts is not None])
    monkeypatch.setattr(llm, "paraphrase_batch", fake_paraphrase)
    return llm


# ------------------------------------------------------------------------------------------ validation

FACTS = ("ord_003", "$45.00", "phone cases by Zenka")
TEMPLATE = "It's order ord_003, the phone cases by Zenka. I paid $45.00."


@pytest.mark.parametrize("text", [
    "Order ord_003 - the phone cases by Zenka, $45.00.",
    "ORD_003: I bought Zenka phone cases for $45 there.",          # case, description parts, money by amount
    "The phone cases by zenka from ord_003 cost $45.0.",
])
def test_validate_accepts_faithful_paraphrases(text, small_catalog):
    assert validate(text, TEMPLATE, FACTS, vocab=small_catalog[1]) is None


@pytest.mark.parametrize("text,reason", [
    ("   ", L.EMPTY),
    ("Order ord_003, phone cases by Zenka, $45.00<|im_end|>", L.SPECIAL_TOKEN),
    ("<think>hm</think> ord_003, phone cases by Zenka, $45.00", L.SPECIAL_TOKEN),
    ("Order ord_003,\x01 phone cases by Zenka, $45.00", L.SPECIAL_TOKEN),
    ("Order ord_003, the phone cases by Zenka.", L.MISSING_FACT),                  # money dropped
    ("Order ord_0031, the phone cases by Zenka, $45.00.", L.MISSING_FACT),         # not the same id
    ("Order ord_003, the phone cases by Zenka, $145.00.", L.MISSING_FACT),
    ("Order ord_003, the phone cases, $45.00.", L.MISSING_FACT),                    # brand dropped
    ("Order ord_003 or ord_004, the phone cases by Zenka, $45.00.", L.NEW_ID),
    ("Order ord_003, the phone cases by Zenka (syn_0000012), $45.00.", L.NEW_ID),
    ("Order ord_003, 2 phone cases by Zenka, $45.00.", L.NEW_ID),                   # a number it never said
    ("Order ord_003, the phone cases by Zenka, $45.00 on line_002.", L.NEW_ID),
    ("Order ord_003, the phone cases by Zenka, $45.00 or $50.", L.NEW_ID),
    ("Order ord_003, the phone cases by Zenka in navy, $45.00.", L.NEW_VALUE),      # a colour not in the goal
    ("Order ord_003, the phone cases by Zenka from Vormo, $45.00.", L.NEW_VALUE),   # another brand
])
def test_validate_rejects(text, reason, small_catalog):
    assert validate(text, TEMPLATE, FACTS, vocab=small_catalog[1], special_tokens=("<|endoftext|>",)) == reason


def test_validate_catalog_ids_without_digits(small_catalog):
    """A real catalog's ids need not look like ids: any product id of the Vocab counts as one."""
    vocab = dataclasses.replace(small_catalog[1], product_ids=["alphawidget", "betagadget"], _index=None)
    assert validate("I want the betagadget.", "I want the alphawidget.", (), vocab=vocab) == L.NEW_ID
    assert validate("The alphawidget, please.", "I want the alphawidget.", ("alphawidget",), vocab=vocab) is None


def test_money_and_whole_token_matching():
    assert L.normalise_money("$1,200 or $3.5 or $ 7.25") == "$1200.00 or $3.50 or $7.25"
    assert L.fact_present("I can spend $1200 total", "$1,200.00")
    assert not L.fact_present("I need 13 of them", "3") and L.fact_present("I need 3 of them.", "3")
    assert not L.fact_present("rated 4.55 stars", "4.5") and L.fact_present("rated 4.5 stars", "4.5 stars")
    assert L.id_tokens("Order ord_003 on 2026-11-28 for $45, 2 units.") == {"ord_003", "2026", "11", "28",
                                                                             "$45.00", "2"}


def test_clean_output():
    assert L.clean_output('  "Where is   my\norder ord_001?" ') == "Where is my order ord_001?"


# ------------------------------------------------------------------------------------------ facts helper

def test_message_facts_are_the_protected_values_and_text_is_unchanged(tenv):
    """The facts helpers give the same text as opening_message / reply_message, every fact is in it, and they
    are exactly the values the marked message protects (ids, dates, descriptions)."""
    tenv.reset_batch(SEEDS, ["STATUS"] * N, [0, 5, 10, 20])
    from ecomjax.text.env import _index

    for b in range(N):
        state = _index(tenv.host_states, b)
        goal = jax.tree.map(lambda x: x[0], state.goal)
        for turn in range(6):
            rng = lambda: T.rng_for(state.key, turn)  # noqa: E731
            for p in (0.0, 0.3):
                text, info = T.opening_message(goal, state.world, tenv.catalog, tenv.vocab, rng(), p_noise=p)
                text2, info2, facts = T.opening_message_facts(goal, state.world, tenv.catalog, tenv.vocab, rng(),
                                                              p_noise=p)
                assert (text2, info2) == (text, info) and facts and all(f in text for f in facts)
                assert any(f.startswith("ord_") or f.count("-") == 2 for f in facts)
                msg = UserMessage(act=np.int32(ACT_CLARIFY), intent=np.int32(0), slot=np.int32(SLOT_ORDER),
                                  item=np.int32(-1), issue=np.int32(0), new_intent=np.bool_(False))
                reply = T.reply_message(msg, state.goal, state.world, tenv.catalog, tenv.vocab, rng(), p_noise=p)
                reply2, rfacts = T.reply_message_facts(msg, state.goal, state.world, tenv.catalog, tenv.vocab, rng(),
                                                       p_noise=p)
                assert reply2 == reply and T.order_ref(int(goal.order)) in rfacts
    plain = dict(act=np.int32(ACT_CONFIRM), intent=np.int32(0), slot=np.int32(-1), item=np.int32(-1),
                 issue=np.int32(0), new_intent=np.bool_(False))
    state = _index(tenv.host_states, 0)
    _, facts = T.reply_message_facts(plain, state.goal, state.world, tenv.catalog, tenv.vocab, T.rng_for(state.key, 1))
    assert facts == ()


# ------------------------------------------------------------------------------------------ loading

def test_from_pretrained_fails_with_one_clear_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        LLMCustomer.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"lacks config\.json; model\.safetensors .*; tokenizer files"):
        LLMCustomer.from_pretrained(tmp_path)


def test_model_and_tokenizer_load(llm):
    assert llm.model.config.vocab_size == len(llm.tokenizer) and llm.think_off == ""
    assert llm.tokenizer.convert_ids_to_tokens(llm.stop_tokens[0]) in ("<|im_end|>", "<|endoftext|>")


# ------------------------------------------------------------------------------------------ batching

def test_generation_uses_fixed_shapes(llm, monkeypatch):
    """Rows are padded to a power of two (>= MIN_ROWS, <= batch_size) and lengths to the bucket; each row's
    budget follows its template."""
    shapes, budgets = [], []

    def fake_generate(model, ids, mask, key, *, max_new_tokens, max_new_per_seq, **kw):
        shapes.append(ids.shape)
        budgets.append(np.asarray(max_new_per_seq))
        b = ids.shape[0]
        tokens = np.full((b, max_new_tokens), kw["pad_id"], np.int32)
        tokens[:, 0] = llm.im_end
        return Generation(tokens, np.zeros(tokens.shape, np.float32), np.zeros_like(tokens), np.ones(b, np.int32))

    monkeypatch.setattr("ecomjax.models.qwen3.generate", fake_generate)
    big = LLMCustomer(llm.model, llm.tokenizer, batch_size=16, length_bucket=64)
    reqs = [CustomerRequest("budget", "g", "continue", "Okay, go on." * (1 + i % 3)) for i in range(21)]
    out = big.paraphrase_batch(reqs)
    assert [s[0] for s in shapes] == [16, 8] and all(s[1] % 64 == 0 for s in shapes)
    assert all(r.reason == L.EMPTY and r.text == q.template for r, q in zip(out, reqs))
    assert budgets[0][0] < budgets[0][1] < budgets[0][2] <= big.max_new_tokens and budgets[1][5:].sum() == 0


# ------------------------------------------------------------------------------------------ TextEnv hook

def test_default_path_has_no_llm_fields(small_catalog, status_env, tenv):
    plain = TextEnv(*status_env, small_catalog[1])
    assert plain.customer_llm is None and plain.customer_llm_stats is None
    with customer(tenv, None):
        tenv.reset_batch(SEEDS, ["STATUS"] * N, [0] * N)
        assert all("customer_llm" not in ep.info for ep in tenv.episodes)


def test_random_model_is_called_once_per_batch_and_falls_back_to_the_template(tenv, llm):
    """Plumbing and fallback: one paraphrase_batch call per reset/step holding every new customer message; a
    random model's outputs are all rejected, so the transcript is exactly the template one, and counted."""
    ds = [0, 3, 6, 9]
    with customer(tenv, None):
        reference = play(tenv, ds)
    spy = Counting(llm)
    with customer(tenv, spy):
        tenv.reset_batch(SEEDS, ["STATUS"] * N, ds)
        assert len(spy.calls) == 1
        assert [r.template for r in spy.calls[0]] == [ep.conversation[0]["content"] for ep in tenv.episodes]
        assert all(r.act == L.OPENING_ACT and r.facts and r.goal == L.GOAL_TEXT["STATUS"] for r in spy.calls[0])
        infos = [ep.info["customer_llm"] for ep in tenv.episodes]
        for _ in range(3):
            live = [not ep.done for ep in tenv.episodes]
            if not any(live):
                break
            before = len(spy.calls)
            results = tenv.step_batch(tenv.oracle_actions())
            step_infos = [r[3]["customer_llm"] for r, lv in zip(results, live) if lv]
            requested = sum(i["requested"] for i in step_infos)
            assert len(spy.calls) - before == (requested > 0)
            assert requested == 0 or len(spy.calls[-1]) == requested
            infos += step_infos
        transcripts = [tenv.messages(b) for b in range(N)]
        stats = tenv.customer_llm_stats.as_dict()
    assert transcripts == reference
    assert stats["calls"] == len(spy.calls) >= 2
    assert stats["requests"] == sum(len(c) for c in spy.calls) == stats["fallback_total"] >= N
    assert stats["accepted"] == 0 and set(stats["fallbacks"]) <= set(L.REASONS)
    assert sum(i["requested"] for i in infos) == stats["requests"]
    assert all(i["fallback"] and not i["used"] and i["reason"] in L.REASONS for i in infos if i["requested"])


def test_a_paraphrase_does_not_depend_on_its_batch(tenv, llm):
    """Rows sample with their own keys (episode key and turn): the same episode hears the same customer
    alone or in any batch, and the identical episodes of a GRPO group hear identical ones."""
    spy = Counting(llm)
    with customer(tenv, spy):
        tenv.reset_batch([0, 0, 1, 1], ["STATUS"] * N, [3] * N)
    requests, raws = spy.calls[0], [r.raw for r in spy.results[0]]
    assert requests[0].seed == requests[1].seed != requests[2].seed
    assert raws[0] == raws[1] and raws[2] == raws[3] and raws[0] != raws[2]
    alone = [llm.paraphrase_batch([r], tenv.vocab)[0].raw for r in (requests[0], requests[2])]
    assert alone == [raws[0], raws[2]]
    swapped = llm.paraphrase_batch([requests[2], requests[0]], tenv.vocab)
    assert [r.raw for r in swapped] == [raws[2], raws[0]]


def test_scripted_paraphrases_are_used_or_rejected(tenv, llm, monkeypatch):
    """A valid paraphrase replaces the template; one that drops a fact, adds an order id, or is cut off is
    replaced by the template; info and counters say which."""
    def make(i, req):
        facts = " and ".join(req.facts)
        return [("Hello again, any news about " + facts + "?", True),
                ("Hello again, any news about my order?", True),            # drops the facts
                ("Any news about " + facts + " or ord_999?", True),          # adds an order id
                ("Any news about " + facts, False)][i]                       # cut off at its budget

    with customer(tenv, None):
        tenv.reset_batch(SEEDS, ["STATUS"] * N, [0] * N)
        templates = [ep.conversation[0]["content"] for ep in tenv.episodes]
    with customer(tenv, scripted(llm, monkeypatch, make)):
        tenv.reset_batch(SEEDS, ["STATUS"] * N, [0] * N)
        infos = [ep.info["customer_llm"] for ep in tenv.episodes]
        texts = [ep.conversation[0]["content"] for ep in tenv.episodes]
        new = [ep.new_messages[0]["content"] for ep in tenv.episodes]
        stats = tenv.customer_llm_stats.as_dict()
    assert [i["used"] for i in infos] == [True, False, False, False]
    assert [i["reason"] for i in infos] == [None, L.MISSING_FACT, L.NEW_ID, L.TRUNCATED]
    assert texts[0].startswith("Hello again, any news about ") and texts[0] != templates[0]
    assert texts[1:] == templates[1:] and new == texts
    assert stats == {"requests": N, "accepted": 1, "fallback_total": 3, "calls": 1,
                     "fallbacks": {L.MISSING_FACT: 1, L.NEW_ID: 1, L.TRUNCATED: 1}}


def test_accepted_paraphrase_gets_the_episode_noise(tenv, llm, monkeypatch):
    """At a high difficulty an accepted paraphrase carries typos like the template would, never in a fact."""
    line = "Hello there, please could you look into this for me: "
    with customer(tenv, scripted(llm, monkeypatch, lambda i, r: (line + " and ".join(r.facts) + ".", True))):
        tenv.reset_batch(SEEDS, ["STATUS"] * N, [NOISY_D] * N)
        texts = [ep.conversation[0]["content"] for ep in tenv.episodes]
        assert all(ep.info["customer_llm"]["used"] for ep in tenv.episodes)
        states = [jax.tree.map(lambda x, b=b: x[b], tenv.host_states) for b in range(N)]
        requests = [L.customer_request(s, customer_message(s, tenv.catalog, tenv.vocab), tenv.catalog, tenv.vocab)
                    for s in states]
    assert any(not t.startswith(line) for t in texts)
    for text, req in zip(texts, requests):
        assert req.facts and all(L.fact_present(text, f) for f in req.facts)


def test_template_mismatch_falls_back_without_generating(tenv, llm):
    from ecomjax.text.env import _index

    tenv.reset_batch(SEEDS, ["STATUS"] * N, [0] * N)
    req = L.customer_request(_index(tenv.host_states, 0), "not what the template said", tenv.catalog, tenv.vocab)
    assert req.facts is None
    assert llm.paraphrase_batch([req]) == [L.Paraphrase(req.template, False, L.TEMPLATE_MISMATCH)]


# ------------------------------------------------------------------------------------------ CLI

def test_evaluate_user_model_path_flag(tmp_path, model_dir):
    checkpoint = ["--policy", f"checkpoint:{tmp_path}"]
    catalog = ["--catalog", "synthetic", "--num-products", "1000"]     # so parsing does not read the checkpoint
    with pytest.raises(SystemExit, match="only used with --policy checkpoint"):
        parse_args(["--user-model-path", str(model_dir)])
    with pytest.raises(SystemExit, match="--user-model-path: .* is not a directory"):
        parse_args(checkpoint + ["--user-model-path", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="no ecomjax checkpoint in"):
        parse_args(checkpoint + ["--user-model-path", str(model_dir)])
    args = parse_args(checkpoint + catalog + ["--user-model-path", str(model_dir)])
    assert args.user_model_path == str(model_dir)
    with pytest.raises(SystemExit, match="--user-model-path: user model directory .* lacks config.json"):
        eval_customer_llm(str(tmp_path))
    assert eval_customer_llm(None) is None
