"""Small ZeroMQ helpers shared by Peas, Pods, the Gateway and the Client.

A context made with CURVE keys (``make_context(keys)``) makes every socket these helpers bind a
CURVE server behind the Flow's allow-list, and every socket they connect a CURVE client (see
:mod:`.curve`); without keys the same calls make plain sockets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zmq
from zmq.backend import Socket as _CSocket
from zmq.backend import zmq_poll as _zmq_poll

from ..errors import RuntimeFailure
from .curve import CurveKeys, Guard, as_keys, secure_client

# Multipart I/O on the hot path. pyzmq's send_multipart/recv_multipart are Python loops over
# per-frame calls that type-check every part, build enum flags (``SNDMORE | flags``) and read
# RCVMORE through the option wrapper (which makes an enum of the option on every call): for the
# three small frames of a request that costs more than the copies. These call the compiled
# socket's send/recv directly and read "more" from the received frame, with the same semantics as
# ``send_multipart(frames, flags, copy=False)`` and ``recv_multipart(flags, copy=False)``.
_c_send, _c_recv = _CSocket.send, _CSocket.recv
_SNDMORE, _POLLIN = int(zmq.SNDMORE), int(zmq.POLLIN)
NOBLOCK = int(zmq.NOBLOCK)


def send_frames(sock: zmq.Socket, frames: list, flags: int = 0) -> None:
    """Send one multipart message (frames of 64 KiB and more leave without a copy)."""
    more = _SNDMORE | flags
    for f in frames[:-1]:
        _c_send(sock, f, more, False)
    _c_send(sock, frames[-1], flags, False)


def recv_frames(sock: zmq.Socket, flags: int = 0) -> list:
    """Receive one multipart message as zmq.Frame objects (no copy)."""
    f = _c_recv(sock, flags, False)
    parts = [f]
    while f.more:
        f = _c_recv(sock, flags, False)
        parts.append(f)
    return parts


def readable(sock: zmq.Socket) -> bool:
    """Whether a message waits on `sock`: a burst asks this instead of receiving until zmq.Again,
    whose exception costs several times the check."""
    return bool(_zmq_poll([(sock, _POLLIN)], 0))


def signal_wakeup_fd() -> int:
    """A pipe that receives a byte whenever a signal arrives; poll it next to the sockets.

    Python retries an interrupted poll, so without this a SIGTERM is only noticed at the
    poll's next timeout.
    """
    import os
    import signal

    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    return r


def drain(fd: int) -> None:
    import os

    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


class Context(zmq.Context):
    """A ZeroMQ context that knows the process's CURVE keys (None: plain sockets)."""

    curve: CurveKeys | None = None
    _guard: Guard | None = None

    def guard(self) -> Guard:
        """The ZAP authenticator and handshake monitor, started on the first secure bind: a process
        that forks its Peas creates the context first but binds only after the forks."""
        if self._guard is None:
            assert self.curve is not None
            self._guard = Guard(self, self.curve)
        return self._guard

    def _stop_guard(self) -> None:
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    def term(self) -> None:
        self._stop_guard()
        super().term()

    def destroy(self, linger: int | None = None) -> None:
        self._stop_guard()
        super().destroy(linger)


def make_context(keys: CurveKeys | Mapping[str, Any] | None = None) -> Context:
    ctx = Context()
    ctx.curve = as_keys(keys)
    return ctx


def secure(ctx: zmq.Context) -> bool:
    return getattr(ctx, "curve", None) is not None


def _client(ctx: zmq.Context, kind: int) -> zmq.Socket:
    s = ctx.socket(kind)
    if secure(ctx):
        secure_client(s, ctx.curve)
    return s


def bind(ctx: zmq.Context, kind: int, host: str, port: int = 0, *, curve: bool = True) -> tuple[zmq.Socket, int]:
    """Bind a socket on host:port (0 = a free port chosen by the OS); returns it and the port.

    With a secure context it is a CURVE server admitting only the Flow's keys, unless ``curve`` is
    False (a Gateway's port for clients, which are not members of the Flow)."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    guard = ctx.guard() if curve and secure(ctx) else None
    if guard is not None:
        guard.secure_server(s)
    if kind in (zmq.PULL, zmq.ROUTER):
        s.setsockopt(zmq.RCVHWM, 0)
    if kind == zmq.ROUTER:
        s.setsockopt(zmq.ROUTER_MANDATORY, 0)
        s.setsockopt(zmq.SNDHWM, 0)
    try:
        if port:
            s.bind(f"tcp://{host}:{port}")
        else:
            port = s.bind_to_random_port(f"tcp://{host}")
    except zmq.ZMQError as exc:
        s.close(linger=0)
        raise RuntimeFailure(f"cannot bind tcp://{host}:{port or '*'}: {exc}") from exc
    if guard is not None:
        guard.watch.watch(s, f"tcp://{host}:{port}")
    return s, port


def push_targets(ctx: zmq.Context, old: list[zmq.Socket], targets: list[list[str] | dict],
                 linger_ms: int = 0, watch: bool = False) -> list[zmq.Socket]:
    """Replace `old` PUSH sockets with one per target, each connected to all of the target's
    addresses (replicas: ZeroMQ load-balances between them); sends never block (no HWM).

    A target ``{"bind": "tcp://0.0.0.0:5560"}`` is a PUSH bound there instead: the target's Peas
    connect to it, so however many of them an engine starts share its load (static wiring).
    ``watch`` sets :func:`watch_peers` on each socket."""
    for s in old:
        s.close(linger=0)
    out = []
    for addrs in targets:
        bound = isinstance(addrs, dict)
        guard = ctx.guard() if bound and secure(ctx) else None
        s = ctx.socket(zmq.PUSH) if bound else _client(ctx, zmq.PUSH)
        if guard is not None:  # a bound output is the server of the Peas that connect to it
            guard.secure_server(s)
        s.setsockopt(zmq.LINGER, linger_ms)
        s.setsockopt(zmq.SNDHWM, 0)
        if watch:
            watch_peers(s)
        try:
            if bound:
                s.bind(addrs["bind"])
                if guard is not None:
                    guard.watch.watch(s, addrs["bind"])
            else:
                for a in addrs:
                    s.connect(a)
        except zmq.ZMQError as exc:
            s.close(linger=0)
            for done in out:
                done.close(linger=0)
            raise RuntimeFailure(f"cannot wire an output to {addrs}: {exc}") from exc
        out.append(s)
    return out


# Static wiring (containers started by an engine): a peer may restart, or come back on another IP
# under the same service name. libzmq resolves a tcp:// host name again on every connection attempt,
# so reconnecting is enough; heartbeats make a connection to a vanished peer (no RST, e.g. a deleted
# Kubernetes Pod) fail within seconds instead of hanging until TCP gives up.
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 500
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000


def watch_peers(s: zmq.Socket) -> None:
    """Reconnect with a bounded back-off and drop connections whose peer stops answering heartbeats."""
    s.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    s.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    s.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    s.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)


def connect_pull(ctx: zmq.Context, address: str) -> zmq.Socket:
    """A PULL connected to a head's bound PUSH (static wiring): it reconnects, re-resolving the name."""
    s = _client(ctx, zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    watch_peers(s)
    try:
        s.connect(address)
    except zmq.ZMQError as exc:
        s.close(linger=0)
        raise RuntimeFailure(f"cannot connect to {address}: {exc}") from exc
    return s


def ctrl_request(ctx: zmq.Context, address: str, cmd: dict, timeout: float = 10.0) -> dict:
    """One request/reply on a control socket, with a deadline (a dead peer never hangs us)."""
    s = _client(ctx, zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    s.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    try:
        s.connect(address)
        s.send_json(cmd)
        return s.recv_json()
    except zmq.Again as exc:
        raise RuntimeFailure(f"no answer from {address} to {cmd.get('cmd')!r} within {timeout:g}s") from exc
    finally:
        s.close(linger=0)


def connect_host(bind_host: str) -> str:
    """The address peers on this machine use for a socket bound on `bind_host`."""
    return "127.0.0.1" if bind_host in ("0.0.0.0", "", "*") else bind_host
