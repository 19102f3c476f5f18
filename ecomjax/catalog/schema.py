"""Names shared by every catalog: attribute keys, filter keys, value lists, denied categories."""

DISCRETE_ATTRS: tuple[str, ...] = (
    "color", "size", "material", "connector_type", "item_form", "skin_type", "finish_type", "age_range",
)
NUMERIC_ATTRS: tuple[str, ...] = ("wattage", "weight_lbs", "screen_size_inches")

# Equality filter keys of `catalog.search` (prior system's FILTER_KEYS).
EQ_FILTER_KEYS: tuple[str, ...] = (
    "cat", "brand", "color", "size", "material", "connector_type", "store", "item_form", "skin_type", "finish_type",
)
# Numeric fields that range filters act on, in column order of `Catalog.range_values`.
RANGE_FIELDS: tuple[str, ...] = (
    "price", "rating", "rating_count", "ship_days", "wattage", "weight_lbs", "screen_size_inches",
)
# Range filter key -> (field, bound) where bound 0 = lower (min), 1 = upper (max).
RANGE_FILTER_KEYS: dict[str, tuple[str, int]] = {
    "price_min": ("price", 0),
    "price_max": ("price", 1),
    "rating_min": ("rating", 0),
    "rating_max": ("rating", 1),
    "rating_count_min": ("rating_count", 0),
    "ship_days_max": ("ship_days", 1),
    "wattage_min": ("wattage", 0),
    "wattage_max": ("wattage", 1),
    "weight_lbs_max": ("weight_lbs", 1),
    "screen_size_inches_min": ("screen_size_inches", 0),
    "screen_size_inches_max": ("screen_size_inches", 1),
}

DENIED_CATEGORIES: frozenset[str] = frozenset({
    "weapons", "firearms", "ammunition", "explosives", "adult_explicit", "controlled_substances",
    "tobacco", "counterfeit_goods", "surveillance_equipment", "hazardous_materials",
})

ATTR_VALUES: dict[str, tuple[str, ...]] = {
    "color": ("black", "white", "gray", "silver", "red", "blue", "navy", "green", "yellow", "orange",
              "pink", "purple", "brown", "beige", "gold", "teal", "multicolor"),
    "size": ("XS", "S", "M", "L", "XL", "XXL"),
    "material": ("cotton", "polyester", "wool", "leather", "nylon", "silk", "denim", "linen", "plastic",
                 "metal", "aluminum", "steel", "wood", "glass"),
    "connector_type": ("USB-A", "USB-C", "Lightning", "Micro-USB", "HDMI", "DisplayPort", "3.5mm",
                       "Thunderbolt", "Bluetooth", "Wi-Fi"),
    "item_form": ("cream", "gel", "liquid", "powder", "spray", "bar", "lotion", "stick", "capsule", "tablet"),
    "skin_type": ("dry", "oily", "combination", "normal", "sensitive"),
    "finish_type": ("matte", "glossy", "satin", "natural", "metallic"),
    "age_range": ("toddler", "child", "teen", "adult"),
}

# Return windows (days) by top-level category; anything else gets the default.
RETURN_WINDOWS: dict[str, int] = {"electronics": 15, "clothing": 30, "furniture": 30, "groceries": 0}
DEFAULT_RETURN_WINDOW = 30

# Order statuses of the world (index = status id); real order histories are mapped onto these.
ORDER_STATUSES: tuple[str, ...] = ("CONFIRMED", "SHIPPED", "IN_TRANSIT", "DELIVERED", "CANCELLED")

MAX_VARIANTS = 4          # catalog variants per product (slots; -1 = empty)
QUERY_TOKENS = 16         # token slots of a structured query
TEXT_TOKENS = 8           # token slots of a name (category, brand, value) in the token tables
