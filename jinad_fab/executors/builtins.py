"""Built-in Executors, addressable by name in ``uses``: ``_pass`` and ``_logforward``."""

from __future__ import annotations

from .base import Executor, requests


class PassExecutor(Executor):
    """Forwards every request untouched. Has no handler, so the Pea never decodes Documents."""


class LogForwardExecutor(Executor):
    """Logs one line per request (endpoint, request id, document count) and forwards it."""

    @requests
    def log(self, endpoint: str, header: dict) -> None:
        # no `docs` argument: the Pea forwards the Documents without decoding them
        self.logger.info("%s request %s with %s documents", endpoint, header.get("rid"), header.get("_ndocs"))


BUILTINS: dict[str, str] = {
    "_pass": "PassExecutor",
    "_logforward": "LogForwardExecutor",
    "_index": "IndexExecutor",
}
