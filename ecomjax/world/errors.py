"""Tool error codes (int32 inside jitted code) and the messages the agent sees."""

import enum


class ToolError(enum.IntEnum):
    OK = 0
    UNKNOWN_TOOL = 1
    BUDGET_EXCEEDED = 2
    BAD_ARGUMENT = 3
    UNKNOWN_PRODUCT = 4
    UNKNOWN_VARIANT = 5
    BAD_QUANTITY = 6
    OUT_OF_STOCK = 7
    UNKNOWN_LINE = 8
    CART_FULL = 9
    EMPTY_CART = 10
    UNKNOWN_ORDER = 11
    UNKNOWN_ORDER_LINE = 12
    NOT_ELIGIBLE = 13
    DUPLICATE_RETURN = 14
    RETURNS_FULL = 15
    ORDERS_FULL = 16
    UNKNOWN_ADDRESS = 17
    UNKNOWN_PAYMENT = 18
    EMPTY_QUERY = 19


MESSAGES: dict[ToolError, str] = {
    ToolError.OK: "",
    ToolError.UNKNOWN_TOOL: "unknown tool name",
    ToolError.BUDGET_EXCEEDED: "tool call budget exceeded for this turn",
    ToolError.BAD_ARGUMENT: "invalid argument",
    ToolError.UNKNOWN_PRODUCT: "product_id not found in the catalog",
    ToolError.UNKNOWN_VARIANT: "variant_id does not belong to this product",
    ToolError.BAD_QUANTITY: "quantity out of range",
    ToolError.OUT_OF_STOCK: "not enough stock for the requested quantity",
    ToolError.UNKNOWN_LINE: "line_id not found in the cart",
    ToolError.CART_FULL: "the cart has no room for another line",
    ToolError.EMPTY_CART: "the cart is empty",
    ToolError.UNKNOWN_ORDER: "order_id not found",
    ToolError.UNKNOWN_ORDER_LINE: "line_id not found in that order",
    ToolError.NOT_ELIGIBLE: "this order line is not eligible for return",
    ToolError.DUPLICATE_RETURN: "a return or exchange already exists for this order line",
    ToolError.RETURNS_FULL: "no room for another return",
    ToolError.ORDERS_FULL: "no room for another order",
    ToolError.UNKNOWN_ADDRESS: "shipping_address_id not found",
    ToolError.UNKNOWN_PAYMENT: "payment_method_id not found",
    ToolError.EMPTY_QUERY: "query must contain at least one word",
}


def message(code: int) -> str:
    """The agent-facing message of an error code."""
    return MESSAGES[ToolError(int(code))]
