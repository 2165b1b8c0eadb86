"""Where a sender's messages go: its downstream targets, kept across re-wiring.

A sender (the Gateway, a Pea, a shard head) has one *target* per downstream Pod (and the last
Pods one for the Gateway's results). A target is given in one of two shapes:

* a list of addresses: one PUSH socket connected to all of them (a head, the Gateway's results,
  or a peer that knows nothing of replica sets);
* ``{"bind": address}``: one PUSH bound there, that the target's Peas connect to (static wiring,
  see :func:`.sockets.push_targets`);
* a *replica set* ``{"set": name, "replicas": {replica_id: address}}``: one PUSH socket per
  replica. A request goes to the replica its header's ``plan`` names for that set (the Gateway
  plans every request, so it knows which replica holds it); a request without a plan, or whose
  planned replica is gone, goes to the replica its request id hashes to, the same one for every
  sender, so the parts of one request still meet. A set the request's header names among its
  ``missing_shards`` is skipped (see :mod:`.shards`). With ``"default": replica_id`` a request
  whose plan does not name the set goes to that replica instead: the last Pods' way back, where
  the Flow's own client in its process names itself (:mod:`.direct`) and every other request
  goes to the Gateway.

:meth:`Targets.update` keeps the sockets of addresses that stay (messages queued on them are not
lost) and closes only those of replicas that left, so a Pod can be scaled while requests flow.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import zmq

from ..errors import RuntimeFailure
from .shards import HEADER as MISSING
from .sockets import _client, secure, send_frames, watch_peers


def pick(replicas: list[str], rid: str) -> str:
    """The replica a request without a (usable) plan goes to: stable for one request id."""
    return replicas[zlib.crc32(rid.encode("utf-8")) % len(replicas)]


class _Set:
    __slots__ = ("name", "socks", "ids", "default")

    def __init__(self, name: str, default: str | None = None):
        self.name = name
        self.socks: dict[str, zmq.Socket] = {}
        self.ids: list[str] = []
        self.default = default


_send = send_frames


class Targets:
    """``send(socket, frames)`` sends one message (a Pea passes one that never blocks on a bound
    PUSH with no peer yet); ``watch`` makes every socket reconnect and heartbeat (static wiring)."""

    def __init__(self, ctx: zmq.Context, linger_ms: int = 0, *, watch: bool = False,
                 send: Callable[[zmq.Socket, list], None] | None = None):
        self.ctx = ctx
        self.linger_ms = linger_ms
        self.watch = watch
        self._send = send or _send
        self._entries: list[Any] = []  # zmq.Socket (fixed addresses) or _Set
        self._fixed: dict[tuple, zmq.Socket] = {}
        self._by_addr: dict[str, zmq.Socket] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _socket(self, addrs: tuple, bind: str | None = None) -> zmq.Socket:
        guard = self.ctx.guard() if bind and secure(self.ctx) else None
        s = self.ctx.socket(zmq.PUSH) if bind else _client(self.ctx, zmq.PUSH)
        if guard is not None:  # a bound output is the server of the Peas that connect to it
            guard.secure_server(s)
        s.setsockopt(zmq.LINGER, self.linger_ms)
        s.setsockopt(zmq.SNDHWM, 0)  # sends never block
        if self.watch:
            watch_peers(s)
        try:
            if bind:
                s.bind(bind)
                if guard is not None:
                    guard.watch.watch(s, bind)
            else:
                for a in addrs:
                    s.connect(a)
        except zmq.ZMQError as exc:
            s.close(linger=0)
            raise RuntimeFailure(f"cannot wire an output to {bind or list(addrs)}: {exc}") from exc
        return s

    def update(self, spec: list) -> None:
        """Point this sender at ``spec`` (see the module's docstring), reusing sockets that stay."""
        fixed: dict[tuple, zmq.Socket] = {}
        by_addr: dict[str, zmq.Socket] = {}
        entries: list[Any] = []
        try:
            self._build(spec, fixed, by_addr, entries)
        except BaseException:
            old_socks = {id(x) for x in (*self._fixed.values(), *self._by_addr.values())}
            for x in (*fixed.values(), *by_addr.values()):
                if id(x) not in old_socks:
                    x.close(linger=0)  # made for this update only: the sender keeps its old wiring
            raise
        keep = {id(x) for x in (*fixed.values(), *by_addr.values())}
        for x in (*self._fixed.values(), *self._by_addr.values()):
            if id(x) not in keep:
                x.close(linger=0)
        self._entries, self._fixed, self._by_addr = entries, fixed, by_addr

    def _build(self, spec: list, fixed: dict, by_addr: dict, entries: list) -> None:
        for target in spec:
            if isinstance(target, dict) and "bind" in target:
                key = ("bind", target["bind"])
                sock = fixed.get(key) or self._fixed.get(key) or self._socket((), bind=target["bind"])
                fixed[key] = sock
                entries.append(sock)
            elif isinstance(target, dict):
                default = target.get("default")
                st = _Set(str(target["set"]), None if default is None else str(default))
                for rid, addr in sorted((target.get("replicas") or {}).items(), key=lambda kv: _order(kv[0])):
                    sock = by_addr.get(addr) or self._by_addr.get(addr) or self._socket((addr,))
                    by_addr[addr] = sock
                    st.socks[str(rid)] = sock
                st.ids = list(st.socks)
                entries.append(st)
            else:
                key = tuple(target)
                sock = fixed.get(key) or self._fixed.get(key) or self._socket(key)
                fixed[key] = sock
                entries.append(sock)

    def set_name(self, i: int) -> str | None:
        """The replica set target ``i`` is (None for a target of fixed addresses)."""
        entry = self._entries[i]
        return entry.name if isinstance(entry, _Set) else None

    def sockets(self) -> set:
        return {*self._fixed.values(), *self._by_addr.values()}

    def send(self, i: int, frames: list, header: dict) -> None:
        """Send to target ``i`` (to the planned replica when it is a replica set)."""
        entry = self._entries[i]
        if entry.__class__ is _Set:
            self._send_set(entry, frames, header)
        else:
            self._send(entry, frames)

    def _send_set(self, entry: _Set, frames: list, header: dict) -> None:
        missing = header.get(MISSING)
        if missing and entry.name in missing:
            return  # a shard known to be gone: the joins downstream wait for one part fewer
        if not entry.ids:
            return  # a set with no replica left: the Gateway fails or retries what it planned there
        plan = header.get("plan")
        rep = plan.get(entry.name) if plan else None
        sock = entry.socks.get(rep) if rep is not None else None
        if sock is None:
            sock = entry.socks.get(entry.default) if entry.default is not None else None
            if sock is None:
                sock = entry.socks[pick(entry.ids, header.get("rid", ""))]
        self._send(sock, frames)

    def send_all(self, frames: list, header: dict) -> None:
        """Send to every target (the sender's hot path: one loop over the targets, no index)."""
        send = self._send
        for entry in self._entries:
            if entry.__class__ is _Set:
                self._send_set(entry, frames, header)
            else:
                send(entry, frames)

    def close(self, linger_ms: int | None = None) -> None:
        linger = self.linger_ms if linger_ms is None else linger_ms
        for s in (*self._fixed.values(), *self._by_addr.values()):
            s.close(linger=linger)
        self._entries, self._fixed, self._by_addr = [], {}, {}


def _order(rid: Any) -> tuple:
    s = str(rid)
    return (0, int(s), s) if s.isdigit() else (1, 0, s)
