"""jinad-fab: neural-search Flows over ZeroMQ, on one machine or across an inventory of hosts.

The public names are loaded on first use, so ``import jinad_fab.daemon`` (or a Pea process)
does not pay for the Flow builder, the Client or the remote-Pod machinery it never uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Document": "document",
    "DocumentArray": "document",
    "Executor": "executors",
    "requests": "executors",
    "Flow": "flow",
    "Client": "client",
    "AsyncClient": "client",
}

__all__ = ["Document", "DocumentArray", "Executor", "requests", "Flow", "Client", "AsyncClient", "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .client import AsyncClient, Client
    from .document import Document, DocumentArray
    from .executors import Executor, requests
    from .flow import Flow


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jinad_fab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
