"""The per-episode world (cart, orders, returns, seen ids, overrides) and the 17 tools as pure functions."""

from ecomjax.world.errors import ToolError, message
from ecomjax.world.state import Capacities, ToolCall, ToolResult, World, empty_world, make_call, no_call
from ecomjax.world.tools import (
    TOOL_ARGS, TOOL_INDEX, TOOL_NAMES, WorldParams, apply_call, run_calls, run_calls_batch, run_turn,
)

__all__ = [
    "Capacities", "TOOL_ARGS", "TOOL_INDEX", "TOOL_NAMES", "ToolCall", "ToolError", "ToolResult", "World",
    "WorldParams", "apply_call", "empty_world", "make_call", "message", "no_call", "run_calls",
    "run_calls_batch", "run_turn",
]
