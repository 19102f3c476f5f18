"""The system prompt: the agent's role, every tool with exactly the names and arguments the world
implements (`world.tools.TOOL_ARGS`), the JSON turn protocol of SPEC §2 and the answer fields."""

from ecomjax.catalog.schema import EQ_FILTER_KEYS, RANGE_FILTER_KEYS
from ecomjax.tasks.goal import TASK_NAMES
from ecomjax.world.state import ORDER_STATUSES, RETURN_METHODS, RETURN_REASONS
from ecomjax.world.tools import TOOL_ARGS

TOOL_DOCS: dict[str, str] = {
    "catalog.search": "search products; filters narrow the results before ranking",
    "catalog.rerank": "order candidate product ids by similarity to a query",
    "catalog.get_product": "full details of one product, with its variants",
    "catalog.get_variants": "the variants of one product",
    "cart.view": "the cart's lines and totals",
    "cart.add": "add units of a product (or one of its variants) to the cart",
    "cart.remove": "remove a cart line",
    "cart.set_quantity": "set the units of a cart line (0 removes it)",
    "order.list": "the customer's orders of the last `days` days",
    "order.get_status": "status, dates, tracking and lines of one order",
    "order.checkout": "place an order from the cart",
    "return.check_eligibility": "whether an order line can be returned, the window and the fees",
    "return.initiate": "start a return of an order line",
    "return.exchange": "exchange an order line for another product",
    "policy.search": "search the store's policies",
    "datetime.now": "today's date",
    "user.get_visit_history": "products the customer viewed recently",
}
ANSWER_FIELDS: tuple[tuple[str, str], ...] = (
    ("env", f"required: the task tag, one of {', '.join(TASK_NAMES)}"),
    ("recommended_product_ids", "list of product ids (PD, SUB, BUNDLE)"),
    ("selected_order_id", "an order id such as ord_002 (RETURN, STATUS)"),
    ("selected_line_id", "an order line id such as ord_002_line_01 (RETURN)"),
    ("order_status", f"one of {', '.join(ORDER_STATUSES)} (STATUS)"),
    ("policy_answer", "a number or a short text (POLICY)"),
    ("intent", "JOURNEY only: the index (0, 1, ...) of the request this answer settles"),
    ("done", "true when the customer's request is complete"),
)


def _signature(name: str) -> str:
    args = []
    for arg, kind, default in TOOL_ARGS[name]:
        args.append(f"{arg}: {kind}" if default is None else f"{arg}: {kind} = {default!r}")
    return f"{name}({', '.join(args)})"


def tool_lines(compact: bool = False) -> list[str]:
    """One line per tool: "- name(arg: type, arg: type = default): what it does" (compact: no description)."""
    return [f"- {_signature(name)}" + ("" if compact else f": {TOOL_DOCS[name]}") for name in TOOL_ARGS]


PROMPT_STYLES = ("full", "compact", "minimal")


def system_prompt(env_id: str, calls_per_turn: int | None = None, style: str = "full") -> str:
    """The system message of an episode of task `env_id` (disclosed as in the prior system). The compact
    style keeps every tool signature and answer field and drops the prose; the minimal style only names
    the task, for a model trained from scratch that learns the protocol from oracle transcripts (it cannot
    read instructions, and a long prompt would be most of its compute)."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
    if style == "minimal":
        return f"Task: {env_id}"
    compact = style == "compact"
    budget = f" You may make at most {calls_per_turn} tool calls per turn." if calls_per_turn else ""
    journey = ("\nThis is a JOURNEY: the customer has several requests, one after another. Answer each with "
               '"env": "JOURNEY" and its "intent" index; set "done" on the last one.' if env_id == "JOURNEY" else "")
    tools = "\nTools:\n" + "\n".join(tool_lines(compact))
    if compact:
        fields = ", ".join(k for k, _ in ANSWER_FIELDS)
        return (f"You are a shopping assistant. Task: {env_id}{journey}{tools}"
                f"\nReturn reasons: {', '.join(RETURN_REASONS)}. Methods: {', '.join(RETURN_METHODS)}."
                '\nReply with one JSON object: {"assistant_message": ..., "tool_calls": [{"name": ..., "args": {...}}], '
                f'"answer": {{"env": ..., "done": true}}}}.{budget} Answer fields: {fields}.')
    answer = "\n".join(f"  {k}: {v}" for k, v in ANSWER_FIELDS)
    return (
        "You are a shopping assistant for an online store. Help the customer using the tools. "
        "Never recommend a product you have not seen in a tool result."
        f"\nTask: {env_id}{journey}"
        "\n" + tools +
        f"\nSearch filters: {', '.join(EQ_FILTER_KEYS)} (exact values) and {', '.join(RANGE_FILTER_KEYS)} (numbers)."
        f"\nReturn reasons: {', '.join(RETURN_REASONS)}. Return methods: {', '.join(RETURN_METHODS)}."
        "\n\nReply with exactly one JSON object per turn:"
        '\n{"assistant_message": "what you say to the customer", '
        '"tool_calls": [{"name": "catalog.search", "args": {"query": "...", "top_k": 10}}], '
        '"answer": {"env": "...", "done": true}}'
        f"\ntool_calls and answer are optional.{budget} Tool results come back in the next turn."
        "\nAnswer fields:\n" + answer
    )
