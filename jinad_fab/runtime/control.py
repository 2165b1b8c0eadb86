"""Control commands: the one dispatcher every runtime process (Pea, Pod host, Gateway) serves.

A control socket is a ZeroMQ REP socket. A command is a JSON object ``{"cmd": NAME, ...}``; the
answer is ``{"ok": true, ...fields}`` or ``{"ok": false, "error": why}``. Each process gives
:class:`Commands` its handlers (``connect``, ``status``, ``terminate``, ``pod_failed``...); how
a command is read, answered and refused lives here once, so a malformed or failing command
never takes a process down and every process answers an unknown one the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import zmq

Handler = Callable[[dict], "dict[str, Any] | None"]
"""Takes the command, returns the answer's fields (None: just ``ok``); raises to refuse it."""


class Commands:
    def __init__(self, sock: zmq.Socket, handlers: Mapping[str, Handler]):
        self.sock = sock
        self.handlers = dict(handlers)

    def serve_one(self) -> str | None:
        """Read one command (one is waiting), run its handler and answer.
        Returns the command's name when it succeeded, None when it was refused."""
        raw = self.sock.recv()
        try:
            cmd = json.loads(raw)
        except ValueError as exc:
            self._answer(False, error=f"not JSON: {exc}")
            return None
        op = cmd.get("cmd") if isinstance(cmd, dict) else None
        handler = self.handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            self._answer(False, error=f"unknown command {op!r}")
            return None
        try:
            fields = handler(cmd) or {}
        except Exception as exc:  # a bad control command must not kill the process
            self._answer(False, error=f"{type(exc).__name__}: {exc}")
            return None
        self._answer(True, **fields)
        return op

    def _answer(self, ok: bool, **fields: Any) -> None:
        self.sock.send_json({"ok": ok, **fields})
