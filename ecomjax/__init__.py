"""ecomjax: adaptive, verifiable e-commerce environments in batched JAX."""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("catalog", "world", "tasks", "user", "env", "oracle", "curriculum", "models", "testing", "text")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"ecomjax.{name}")
    if name == "make":
        return importlib.import_module("ecomjax.env").make
    raise AttributeError(f"module 'ecomjax' has no attribute {name!r}")
