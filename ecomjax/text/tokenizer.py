"""Tokenizers: the built-in one ecomjax ships, and any local Hugging Face tokenizer directory.

The built-in tokenizer is a byte-level BPE (`tokenizers`), one token per digit (ids, prices and dates are
copied digit by digit, which small models learn far more easily), trained on ecomjax's own text: the system
prompts, the customer templates, the policy KB, the names and titles of a small synthetic catalog and the
JSON the protocol uses. Byte-level means every string encodes. It is wrapped as a
`transformers.PreTrainedTokenizerFast` with a ChatML chat template (system, user, assistant and tool roles),
the format Qwen3 tokenizers use too.

The built-in tokenizer is frozen: it ships as `BUILTIN_FILE` (the `tokenizers` JSON) and is read from that
file, never trained at run time, so editing a template or prompt does not change the token ids a saved
policy expects. `write_builtin_file()` trains it from today's text and rewrites the file; run it only to
change the token ids on purpose (then update the pinned hash in tests/test_text.py and say so in the
changelog: checkpoints keep the tokenizer they were trained with). Nothing is downloaded: a real tokenizer
is read from a local directory with `local_files_only`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from ecomjax.text.chat import IM_END, IM_START, chat_template

BUILTIN_VOCAB_SIZE = 2048
BUILTIN_TOKENIZER = "builtin"       # the name runs and checkpoints give the built-in tokenizer
BUILTIN_FILE = Path(__file__).parent / "data" / "builtin_tokenizer.json"
EOS = "<|endoftext|>"
SPECIAL_TOKENS: tuple[str, ...] = (EOS, IM_START, IM_END, "<tool_call>", "</tool_call>", "<think>", "</think>")
TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
CORPUS_CATALOG_PRODUCTS = 300


def _template_strings() -> list[str]:
    """Every customer template of `user.text` (module-level tuples and dicts of strings)."""
    from ecomjax.user import text as user_text

    out: list[str] = []
    for name in sorted(vars(user_text)):
        value = getattr(user_text, name)
        if not name.isupper():
            continue
        items = value.values() if isinstance(value, dict) else [value]
        for item in items:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, tuple):
                out += [x for x in item if isinstance(x, str)]
    return out


def _json_samples(catalog, vocab) -> list[str]:
    """Tool results and agent turns in the exact shapes the protocol uses, over a small synthetic world."""
    import jax

    from ecomjax.tasks.goal import TASK_NAMES
    from ecomjax.text import ids, results
    from ecomjax.world.orders import generate_orders
    from ecomjax.world.state import ORDER_STATUSES, Capacities, empty_world

    world = generate_orders(jax.random.key(0), empty_world(Capacities(), 20_000), catalog, 12)
    world, host = results.host_tree(world), results.host_tree(catalog)
    n = vocab.num_products
    out = [results.compact_json([results.product_card(p, world, host, vocab) for p in range(k, k + 3)])
           for k in range(0, n - 3, 3)]
    out += [results.compact_json(results.order_detail(o, world, vocab)) for o in range(12)]
    out += [results.compact_json(results.order_summary(o, world, vocab)) for o in range(12)]
    for p in range(0, n, 5):
        pid, task = vocab.product_id(p), TASK_NAMES[p % len(TASK_NAMES)]
        out.append(results.compact_json({"assistant_message": f"Here are my picks: {pid}.", "tool_calls": [
            {"name": "cart.add", "args": {"product_id": pid, "variant_id": ids.variant_id(pid, p % 3), "quantity": 2}},
            {"name": "catalog.search", "args": {"query": vocab.category_name(int(host.category[p])).split("/")[-1],
                                                "filters": {"price_max": 20 + p, "brand": vocab.brands[p % 40]},
                                                "top_k": 10}}],
            "answer": {"env": task, "recommended_product_ids": [pid], "selected_order_id": ids.order_id(p % 12),
                       "selected_line_id": ids.order_line_id(p % 12, p % 5),
                       "order_status": ORDER_STATUSES[p % len(ORDER_STATUSES)], "done": True}}))
    return out


def corpus() -> list[str]:
    """The built-in tokenizer's training text (deterministic)."""
    from ecomjax.catalog.synthetic import synthetic
    from ecomjax.tasks.goal import TASK_NAMES
    from ecomjax.text import agent
    from ecomjax.text.prompt import PROMPT_STYLES, system_prompt
    from ecomjax.world import policy_kb

    catalog, vocab = synthetic(CORPUS_CATALOG_PRODUCTS, seed=0)
    texts = [system_prompt(t, 4, style) for t in TASK_NAMES for style in PROMPT_STYLES]
    texts += _template_strings()
    texts += [policy_kb.render_rule(r) for r in range(policy_kb.NUM_RULES)]
    texts += list(agent.KEY_QUESTIONS.values()) + [agent.GENERIC_QUESTION, agent.ORDER_QUESTION,
                                                   agent.BUDGET_QUESTION, agent.REASON_QUESTION]
    texts += vocab.categories + vocab.brands + vocab.stores
    texts += _json_samples(catalog, vocab)
    return texts


def train_builtin(vocab_size: int = BUILTIN_VOCAB_SIZE):
    """The built-in tokenizer trained from today's `corpus()`, as a `tokenizers.Tokenizer` (deterministic:
    a fixed corpus in a fixed order gives the same tokenizer on every machine)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer=trainer)
    return tok


def write_builtin_file(path: str | Path = BUILTIN_FILE) -> Path:
    """Train the built-in tokenizer and write it as `tokenizers` JSON: with the default path this replaces
    the shipped file and so changes the built-in token ids (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(train_builtin().to_str(pretty=True) + "\n", encoding="utf-8")
    return path


@functools.lru_cache(maxsize=1)
def builtin_tokenizer():
    """The built-in tokenizer as a `PreTrainedTokenizerFast`, read from `BUILTIN_FILE` (cached)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(BUILTIN_FILE)), name_or_path=BUILTIN_TOKENIZER, eos_token=IM_END,
        pad_token=EOS, bos_token=None, unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS, IM_END)],
        chat_template=chat_template(), model_max_length=1 << 20, clean_up_tokenization_spaces=False)


def tokenizer_sha256(tokenizer: Any) -> str:
    """SHA-256 of what decides a tokenizer's token ids (its `tokenizers` JSON without the padding and
    truncation settings): equal for the same tokenizer however it was saved and loaded."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("padding", None)
    spec.pop("truncation", None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def save_builtin(path: str | Path) -> Path:
    """Write the built-in tokenizer to a directory `AutoTokenizer.from_pretrained` reads."""
    path = Path(path)
    builtin_tokenizer().save_pretrained(str(path))
    return path


def load_tokenizer(path: str | Path | None = None):
    """The tokenizer of a local Hugging Face directory, or the built-in one for None.

    Fails with one message naming the directory when it is missing, holds no tokenizer files, or has no
    ChatML tokens (<|im_start|>, <|im_end|>)."""
    if path is None:
        return builtin_tokenizer()
    from transformers import AutoTokenizer

    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer path {str(path)!r} is not a directory")
    if not any((directory / f).exists() for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"tokenizer directory {str(path)!r} has no tokenizer files "
                                f"(expected one of {', '.join(TOKENIZER_FILES)})")
    tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    missing = [t for t in (IM_START, IM_END) if tok.convert_tokens_to_ids(t) in (None, tok.unk_token_id)]
    if missing:
        raise ValueError(f"tokenizer directory {str(path)!r} lacks the ChatML tokens {missing}; ecomjax renders "
                         "conversations in ChatML (as Qwen3 does)")
    return tok
