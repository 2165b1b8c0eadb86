"""jinad-fab: neural-search Flows over ZeroMQ, on one machine or across an inventory of hosts."""

__version__ = "0.1.0"

from .client import AsyncClient, Client  # noqa: E402
from .document import Document, DocumentArray  # noqa: E402
from .executors import Executor, requests  # noqa: E402
from .flow import Flow  # noqa: E402

__all__ = ["Document", "DocumentArray", "Executor", "requests", "Flow", "Client", "AsyncClient", "__version__"]
