"""ChatML rendering of conversations, message by message, so token ids can be appended turn by turn
without re-rendering (and re-tokenizing) what came before.

Two tool-message styles: ecomjax's built-in template gives tools their own `tool` role; Qwen3's template
wraps tool results in `<tool_response>` blocks inside a user turn (consecutive results share one turn).
`ChatFormat.for_tokenizer` picks the style a tokenizer's own chat template uses; for the built-in
tokenizer `ChatFormat.render` equals `tokenizer.apply_chat_template` (tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ROLES = ("system", "user", "assistant", "tool")
TOOL_ROLE, QWEN_TOOLS = "tool", "qwen"


def chat_template() -> str:
    """The Jinja chat template of the built-in tokenizer (ChatML with a `tool` role)."""
    return ("{%- for message in messages %}{{ '" + IM_START + "' + message['role'] + '\\n' + message['content'] + '"
            + IM_END + "\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '" + IM_START
            + "assistant\\n' }}{%- endif %}")


@dataclass(frozen=True)
class ChatFormat:
    """How messages become text: ChatML with tool messages in `tool_style`."""

    tool_style: str = TOOL_ROLE

    @staticmethod
    def for_tokenizer(tokenizer) -> ChatFormat:
        template = getattr(tokenizer, "chat_template", None) or ""
        return ChatFormat(QWEN_TOOLS if "<tool_response>" in template else TOOL_ROLE)

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """Text of `messages` ({"role", "content"}), each ending in a newline."""
        out = []
        for i, m in enumerate(messages):
            role, content = m["role"], m["content"]
            if role not in ROLES:
                raise ValueError(f"message role must be one of {ROLES}, got {role!r}")
            if role == "tool" and self.tool_style == QWEN_TOOLS:
                prev_tool = i > 0 and messages[i - 1]["role"] == "tool"
                nxt_tool = i + 1 < len(messages) and messages[i + 1]["role"] == "tool"
                out.append(("\n" if prev_tool else IM_START + "user\n") + "<tool_response>\n" + content
                           + "\n</tool_response>" + ("" if nxt_tool else IM_END + "\n"))
            else:
                out.append(f"{IM_START}{role}\n{content}{IM_END}\n")
        if add_generation_prompt:
            out.append(self.generation_prompt())
        return "".join(out)

    @staticmethod
    def generation_prompt() -> str:
        return f"{IM_START}assistant\n"
