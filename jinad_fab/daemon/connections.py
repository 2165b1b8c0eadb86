"""Bounded connections: a header-read timeout on top of uvicorn's concurrency limit and keep-alive.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a connection that
never finishes its request headers (it sends nothing, or one byte a second) is held forever. The
protocol below arms a timer when a connection opens and after each response, cancels it when a
request's headers are complete, and closes the connection when it fires.
"""

from __future__ import annotations

import asyncio
from typing import Any


def header_timeout_protocol(header_timeout: float) -> type:
    """uvicorn's httptools protocol with a header-read timeout of ``header_timeout`` seconds."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._header_timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timed_out(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers get the same bound

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol
