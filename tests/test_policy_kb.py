"""Policy KB: rule inventory per clause count, exclusive/satisfiable rows, questions that state every condition
value, answer scoring, fixed-shape arrays and the jitted `policy.search` scores."""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecomjax.catalog.lexical import hash_text, token_hash, tokenize
from ecomjax.catalog.schema import QUERY_TOKENS
from ecomjax.world import policy_kb as kb

SEEDS = range(4)


def _candidates(field: str) -> list:
    """Every categorical value; numeric: domain ends, every bound named in the KB and its neighbours, plus
    a spread of interior points."""
    f = kb.FIELDS[field]
    if not f.numeric:
        return list(f.values)
    points = {f.low, f.high}
    for rule in kb.RULES:
        for row in rule.rows:
            for c in row.conditions:
                if c.field == field:
                    lo, hi = c.support()
                    points |= {lo - 1, lo, lo + 1, hi - 1, hi, hi + 1}
    points |= set(np.linspace(f.low, f.high, 9).astype(int).tolist())
    return sorted(p for p in points if f.low <= p <= f.high)


CANDIDATES = {name: _candidates(name) for name in kb.FIELDS}


def _matches(rule_idx: int, context: dict) -> list[int]:
    rule = kb.RULES[rule_idx]
    return [r for r, row in enumerate(rule.rows) if all(c.admits(context[c.field]) for c in row.conditions)]


def _mentions(text: str, shown: str) -> bool:
    return re.search(r"(?<![\w.])" + re.escape(shown.lower()) + r"(?!\w)", text.lower()) is not None


def test_inventory_ids_and_clause_counts():
    assert kb.NUM_RULES == len(kb.RULES) >= 64
    ids = [r.rule_id for r in kb.RULES]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"pol_\d{3}", i) for i in ids)
    assert all(kb.RULE_INDEX[r.rule_id] == i for i, r in enumerate(kb.RULES))
    counts = {c: len(kb.rules_with_clauses(c)) for c in range(1, kb.MAX_CLAUSES + 1)}
    assert all(counts[c] >= 4 for c in range(3, 8)) and counts[1] >= 8 and counts[2] >= 8
    assert sum(counts.values()) == kb.NUM_RULES
    assert {r.topic for r in kb.RULES} == set(kb.TOPICS)
    for rule in kb.RULES:
        assert rule.num_clauses == len(rule.fields) and len(set(rule.fields)) == rule.num_clauses
        assert 1 <= len(rule.rows) <= kb.MAX_ROWS
        for row in rule.rows:
            assert tuple(c.field for c in row.conditions) == rule.fields
            assert isinstance(row.answer, float if rule.unit else str)
    # Curriculum B_branch(d) = 1 + floor(d/3), capped at 7: several rules at every level, none collapses.
    for d in range(31):
        assert len(kb.rules_with_clauses(min(kb.MAX_CLAUSES, 1 + d // 3))) >= 4


def test_rows_exclusive_and_satisfiable_exhaustive_small_rules():
    """Rules with up to 3 clauses: every combination of candidate values matches at most one row, and every
    row is matched by some combination."""
    for i, rule in enumerate(kb.RULES):
        if rule.num_clauses > 3:
            continue
        hit = set()
        for values in itertools.product(*(CANDIDATES[f] for f in rule.fields)):
            m = _matches(i, dict(zip(rule.fields, values)))
            assert len(m) <= 1, (rule.rule_id, values, m)
            hit.update(m)
        assert hit == set(range(len(rule.rows))), rule.rule_id


def test_rows_exclusive_random_contexts_every_rule():
    rng = np.random.default_rng(0)
    for i, rule in enumerate(kb.RULES):
        for _ in range(300):
            ctx = {f: CANDIDATES[f][rng.integers(len(CANDIDATES[f]))] for f in rule.fields}
            m = _matches(i, ctx)
            assert len(m) <= 1 and kb.evaluate(i, ctx) == (m[0] if m else -1), (rule.rule_id, ctx)


@given(st.data())
def test_rows_exclusive_hypothesis(data):
    i = data.draw(st.integers(0, kb.NUM_RULES - 1))
    rule = kb.RULES[i]
    ctx = {f: data.draw(st.sampled_from(CANDIDATES[f])) for f in rule.fields}
    assert len(_matches(i, ctx)) <= 1


def test_question_states_every_value_and_selects_its_row():
    for i, rule in enumerate(kb.RULES):
        for r, row in enumerate(rule.rows):
            for seed in SEEDS:
                text, ctx = kb.question(i, r, np.random.default_rng(seed))
                assert set(ctx) == set(rule.fields)
                assert kb.evaluate(i, ctx) == r and _matches(i, ctx) == [r]
                assert "{" not in text and "}" not in text
                assert any(ask in text for ask in rule.asks)
                for field, value in ctx.items():
                    assert _mentions(text, kb.format_value(field, value)), (rule.rule_id, field, value, text)
                for c in row.conditions:
                    support = c.support()
                    if isinstance(support, tuple) and support[1] - support[0] >= 2:
                        assert support[0] < ctx[c.field] < support[1]
                assert (text, ctx) == kb.question(i, r, np.random.default_rng(seed))


def test_questions_vary_and_asks_are_rule_specific():
    owners: dict[str, str] = {}
    for rule in kb.RULES:
        assert len(rule.asks) >= 2
        for ask in rule.asks:
            assert ask not in owners, (ask, owners.get(ask), rule.rule_id)
            assert not re.search(r"\d", ask)
            owners[ask] = rule.rule_id
    i = kb.rules_with_clauses(5)[0]
    texts = {kb.question(i, 1, np.random.default_rng(s))[0] for s in range(12)}
    assert len(texts) >= 6


def test_prior_system_facts():
    def ans(title_start: str, **ctx) -> float | str:
        i = next(j for j, r in enumerate(kb.RULES) if r.title.startswith(title_start))
        return kb.answer(i, kb.evaluate(i, ctx))

    windows = {"electronics": 15, "clothing": 30, "furniture": 30, "groceries": 0, "books": 30, "toys": 30}
    for cat, days in windows.items():
        assert ans("Return window by product category", category=cat) == days
    for method, cost in {"standard": 7.99, "express": 14.99, "overnight": 24.99}.items():
        assert ans("Base shipping cost", method=method) == pytest.approx(cost)
    for tier, threshold in {"none": 50, "basic": 35, "premium": 0}.items():
        assert ans("Free shipping threshold", tier=tier) == threshold
    for q, pct in {1: 0, 9: 0, 10: 5, 24: 5, 25: 10, 99: 10, 100: 15, 500: 15}.items():
        assert ans("Bulk purchase discount", quantity=q) == pct
    for cat, months in {"electronics": 12, "furniture": 24, "clothing": 3, "jewelry": 6, "automotive": 12}.items():
        assert ans("Manufacturer warranty length", category=cat) == months
    assert ans("Return label fee", return_method="mail") == pytest.approx(5.99)


def test_evaluate_outside_the_table():
    i = next(j for j, r in enumerate(kb.RULES) if r.title.startswith("Extended warranty price"))
    assert kb.evaluate(i, {"category": "books", "item_price": 300}) == -1
    assert kb.evaluate(i, {"category": "electronics"}) == -1
    assert kb.evaluate(i, {"category": "electronics", "item_price": 300}) == 1


def test_score_answer():
    expected_off = 2 * 0.9 ** 4 - 1
    for i, rule in enumerate(kb.RULES):
        for r, row in enumerate(rule.rows):
            assert kb.score_answer(i, r, row.answer) == 1.0
            assert kb.score_answer(i, r, kb.format_answer(i, r)) == 1.0
            if rule.unit and row.answer != 0:
                assert kb.score_answer(i, r, row.answer * 0.9) == pytest.approx(expected_off)
                assert kb.score_answer(i, r, str(row.answer * 0.9)) == pytest.approx(expected_off)
                assert kb.score_answer(i, r, 0) == -1.0
            elif rule.unit:
                assert kb.score_answer(i, r, 0.0) == 1.0 and kb.score_answer(i, r, "5") == -1.0
            else:
                assert kb.score_answer(i, r, "  " + row.answer.upper().replace(" ", "   ") + " ") == 1.0
                assert kb.score_answer(i, r, row.answer + " please") == -1.0
            assert kb.score_answer(i, r, None) == -1.0
    window = kb.RULE_INDEX["pol_001"]
    assert kb.score_answer(window, 0, "15") == kb.score_answer(window, 0, "15 days") == 1.0
    assert kb.score_answer(window, 0, "about 30 days") == pytest.approx(2 * 0.5 ** 4 - 1)
    assert kb.score_answer(window, 0, "fifteen") == -1.0 and kb.score_answer(window, 0, True) == -1.0
    assert kb.score_answer(window, 0, float("nan")) == -1.0
    shipping = next(j for j, r in enumerate(kb.RULES) if r.title.startswith("Base shipping cost"))
    assert kb.score_answer(shipping, 0, "$7.99") == kb.score_answer(shipping, 0, 7.99) == 1.0
    bulk = next(j for j, r in enumerate(kb.RULES) if r.title.startswith("Bulk purchase discount"))
    assert kb.score_answer(bulk, 1, "5%") == 1.0 and kb.score_answer(bulk, 1, "-5") == 1.0
    assert kb.parse_number("$1,299.50 total") == 1299.5
    assert all(-1.0 <= kb.score_answer(window, 0, x) <= 1.0 for x in (0.001, 1e9, "-3", "0"))


def test_render():
    for i, rule in enumerate(kb.RULES):
        full, short = kb.render_rule(i), kb.render_rule(i, show_answer_table=False)
        assert rule.rule_id in short and rule.title in short and "=>" not in short
        assert full.startswith(short) and full.count("=>") == len(rule.rows)
        assert all(f in full for f in rule.fields)
        for r in range(len(rule.rows)):
            assert f"=> {kb.format_answer(i, r)}\n" in full
            assert kb.render_rule_answer(i, r).endswith(f"the answer is {kb.format_answer(i, r)}.")
        assert "{" not in full and "}" not in full
    assert "category is electronics => 15 days" in kb.render_rule(kb.RULE_INDEX["pol_001"])


def test_arrays_shapes_and_consistency():
    a = kb.kb_arrays()
    nr, mr, tk = kb.NUM_RULES, kb.MAX_ROWS, kb.KB_TOKENS
    shapes = {"num_clauses": (nr,), "numeric": (nr,), "num_rows": (nr,), "answer_num": (nr, mr),
              "answer_cat": (nr, mr), "row_valid": (nr, mr), "tokens": (nr, tk), "topic": (nr,),
              "num_rules_by_clauses": (kb.MAX_CLAUSES + 1,)}
    for key, shape in shapes.items():
        assert a[key].shape == shape, key
    assert a["rules_by_clauses"].shape[0] == kb.MAX_CLAUSES + 1
    assert a["answer_num"].dtype == np.float32 and a["numeric"].dtype == bool and a["row_valid"].dtype == bool
    for key in ("num_clauses", "num_rows", "answer_cat", "tokens", "topic", "rules_by_clauses",
                "num_rules_by_clauses"):
        assert a[key].dtype == np.int32, key
    for i, rule in enumerate(kb.RULES):
        n = len(rule.rows)
        assert a["num_clauses"][i] == rule.num_clauses and a["num_rows"][i] == n
        assert a["numeric"][i] == (rule.answer_type == kb.NUMERIC)
        assert a["row_valid"][i].tolist() == [True] * n + [False] * (mr - n)
        assert kb.TOPICS[a["topic"][i]] == rule.topic
        assert np.isnan(a["answer_num"][i, n:]).all() and (a["answer_cat"][i, n:] == -1).all()
        for r, row in enumerate(rule.rows):
            if rule.unit:
                assert a["answer_num"][i, r] == np.float32(row.answer) and a["answer_cat"][i, r] == -1
            else:
                assert kb.ANSWER_VOCAB[a["answer_cat"][i, r]] == row.answer and np.isnan(a["answer_num"][i, r])
        toks = set(a["tokens"][i][a["tokens"][i] != 0].tolist())
        expected = tokenize(" ".join([rule.title, rule.topic, *rule.fields]))
        assert {token_hash(t) for t in expected} <= toks
        named = {v for row in rule.rows for c in row.conditions if not kb.FIELDS[c.field].numeric and not c.is_any()
                 for v in ([c.value] if isinstance(c.value, str) else c.value)}
        assert {token_hash(t) for v in named for t in tokenize(v)} <= toks
    for c in range(kb.MAX_CLAUSES + 1):
        k = a["num_rules_by_clauses"][c]
        assert a["rules_by_clauses"][c, :k].tolist() == kb.rules_with_clauses(c)
        assert (a["rules_by_clauses"][c, k:] == -1).all()
    assert a["num_rules_by_clauses"][0] == 0 and a["num_rules_by_clauses"].sum() == nr
    a["tokens"][:] = 0
    assert kb.kb_arrays()["tokens"].any()


def _np_scores(tokens_kb: np.ndarray, query: np.ndarray) -> np.ndarray:
    q = {int(t) for t in query if t != 0}
    if not q:
        return np.zeros(tokens_kb.shape[0], np.float32)
    return np.array([len(q & set(row.tolist())) / len(q) for row in tokens_kb], np.float32)


def test_policy_search_scores_jit_matches_numpy_and_vmaps():
    tokens = kb.kb_arrays()["tokens"]
    rng = np.random.default_rng(1)
    pool = np.unique(tokens[tokens != 0])
    queries = []
    for _ in range(24):
        n = int(rng.integers(0, QUERY_TOKENS + 1))
        q = np.zeros(QUERY_TOKENS, np.int32)
        picks = np.where(rng.random(n) < 0.7, rng.choice(pool, n), rng.integers(1, 2 ** 31 - 1, n))
        q[:n] = picks
        if n >= 2:
            q[n - 1] = q[0]                          # duplicates count once
        queries.append(q)
    queries = np.stack(queries)
    score = jax.jit(kb.policy_search_scores)
    tok = jnp.asarray(tokens)
    for q in queries:
        np.testing.assert_allclose(np.asarray(score(tok, jnp.asarray(q))), _np_scores(tokens, q), rtol=1e-6)
    batched = jax.jit(jax.vmap(kb.policy_search_scores, in_axes=(None, 0)))(tok, jnp.asarray(queries))
    np.testing.assert_allclose(np.asarray(batched), np.stack([_np_scores(tokens, q) for q in queries]), rtol=1e-6)
    assert not np.asarray(score(tok, jnp.zeros(QUERY_TOKENS, jnp.int32))).any()


def test_title_query_ranks_its_rule_first():
    tok = jnp.asarray(kb.kb_arrays()["tokens"])
    queries = jnp.asarray(np.stack([hash_text(r.title, QUERY_TOKENS) for r in kb.RULES]))
    scores = np.asarray(jax.jit(jax.vmap(kb.policy_search_scores, in_axes=(None, 0)))(tok, queries))
    for i in range(kb.NUM_RULES):
        assert scores[i, i] == 1.0
        assert (np.delete(scores[i], i) < 1.0).all(), (kb.RULES[i].title, np.argsort(-scores[i])[:3])
    scores = np.asarray(kb.policy_search_scores(tok, jnp.asarray(hash_text("return window electronics",
                                                                            QUERY_TOKENS))))
    assert int(np.argmax(scores)) == kb.RULE_INDEX["pol_001"] and (scores > 0).sum() >= 3
