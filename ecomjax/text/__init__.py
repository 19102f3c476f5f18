"""The text layer: tokenizers, prompts, tool-result rendering, action parsing, TextEnv and conversation tokens."""

from ecomjax.text.agent import Lexicon, action_to_json, filters_to_dict
from ecomjax.text.chat import ChatFormat
from ecomjax.text.env import TextEnv
from ecomjax.text.parse import ParsedTurn, parse_turn
from ecomjax.text.prompt import system_prompt, tool_lines
from ecomjax.text.tokenizer import builtin_tokenizer, load_tokenizer, save_builtin

__all__ = [
    "ChatFormat", "Lexicon", "ParsedTurn", "TextEnv", "action_to_json", "builtin_tokenizer", "filters_to_dict",
    "load_tokenizer", "parse_turn", "save_builtin", "system_prompt", "tool_lines",
]
