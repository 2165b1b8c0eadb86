"""Executors: the base class, ``@requests``, the safe loader and the built-ins."""

from . import builtins as _builtins  # noqa: F401 - registers _pass and _logforward
from .base import Executor, requests
from .loader import load_executor

__all__ = ["Executor", "requests", "load_executor"]
