"""Conversation token ids and loss masks for training, built from the generator's own ids.

An episode's sequence is the prompt (system + opening message + generation prompt), then alternately the
policy's generated ids (loss mask 1, with their behaviour log-probs) and the environment's reply (tool
results and the customer's message, then the next generation prompt; mask 0). Generated ids are appended
as generated: text is never decoded and encoded again, so the ids the loss scores are the ids sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecomjax.text.chat import IM_END, ChatFormat


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text`; special tokens written in the text (<|im_start|>) map to their ids."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass
class Conversation:
    """One episode's tokens: ids, loss mask (1 = policy token) and behaviour log-probs (0 off-policy)."""

    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def add_env(self, ids: list[int]) -> None:
        self.ids += ids
        self.mask += [0] * len(ids)
        self.logprobs += [0.0] * len(ids)

    def add_policy(self, ids: list[int], logprobs: list[float]) -> None:
        if len(ids) != len(logprobs):
            raise ValueError(f"{len(ids)} generated ids but {len(logprobs)} log-probs")
        self.ids += ids
        self.mask += [1] * len(ids)
        self.logprobs += list(logprobs)

    @property
    def policy_tokens(self) -> int:
        return int(sum(self.mask))


class Renderer:
    """Messages -> ids for one tokenizer: the prompt of an episode and each environment turn after it."""

    def __init__(self, tokenizer, chat: ChatFormat | None = None):
        self.tokenizer = tokenizer
        self.chat = ChatFormat.for_tokenizer(tokenizer) if chat is None else chat
        self.im_end = tokenizer.convert_tokens_to_ids(IM_END)

    def prompt(self, messages: list[dict]) -> list[int]:
        """Ids of the opening messages plus the generation prompt."""
        return encode(self.tokenizer, self.chat.render(messages, add_generation_prompt=True))

    def env_turn(self, messages: list[dict], closed: bool) -> list[int]:
        """Ids appended after a policy turn: <|im_end|> if the generation did not end with it (`closed`
        False), the newline that ends the assistant message, the new messages and the generation prompt."""
        head = [] if closed else [self.im_end]
        return head + encode(self.tokenizer, "\n" + self.chat.render(messages, add_generation_prompt=True))

    def decode_turn(self, ids: list[int]) -> str:
        """The text of one generated turn, without its closing <|im_end|>."""
        return self.tokenizer.decode([i for i in ids if i != self.im_end], skip_special_tokens=False)


def pad_batch(conversations: list[Conversation], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded arrays [B, length]: tokens, attention (1 = real), loss_mask, logprobs. Sequences longer
    than `length` raise: truncation is decided during the rollout, never silently here."""
    b = len(conversations)
    out = {"tokens": np.full((b, length), pad_id, np.int32), "attention": np.zeros((b, length), np.int32),
           "loss_mask": np.zeros((b, length), np.int32), "logprobs": np.zeros((b, length), np.float32)}
    for i, c in enumerate(conversations):
        n = len(c)
        if n > length:
            raise ValueError(f"conversation {i} has {n} tokens, more than the padded length {length}")
        out["tokens"][i, :n] = c.ids
        out["attention"][i, :n] = 1
        out["loss_mask"][i, :n] = c.mask
        out["logprobs"][i, :n] = c.logprobs
    return out
