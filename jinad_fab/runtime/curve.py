"""CURVE on a Flow's ZeroMQ sockets: the keys, the ZAP allow-list, and refusals logged.

Whoever starts a Flow makes its keys (:func:`flow_keys`): one *server* key pair that every bound
socket of the Flow uses (so a connecting socket needs no per-address key), and one *client* key
pair per Pod, for the Gateway and for the Flow's own controller. A bound socket admits a peer only
when the peer's client public key is on the Flow's allow-list; pyzmq's ZAP authenticator
(:class:`zmq.auth.thread.ThreadAuthenticator`) does the check during the handshake, before any
message can reach a Pea.

A refusal is logged with the peer's address: a CURVE client with a key not on the list by the
ZAP handler (which knows the address), a peer that does not speak CURVE or does not know the
server key by a socket monitor (the handshake fails before ZAP is asked).

Keys travel to processes outside argv and logs (see :mod:`.entry`, ``--secrets-fd``); the
secret halves are kept out of ``repr``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket as pysocket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from ..errors import BadConfig

log = logging.getLogger("jinad_fab.curve")

ZAP_DOMAIN = "jinad"
_KEY_LEN = 40  # a 32-byte key in Z85
_QUIET_SECONDS = 10.0  # a peer retrying all the time is logged once per this many seconds


@dataclasses.dataclass(frozen=True, repr=False)
class CurveKeys:
    """What one process of a Flow needs: the Flow's server key pair, its own client key pair, and
    the client public keys its bound sockets admit. All keys are Z85 text."""

    server_public: str
    server_secret: str
    public: str
    secret: str
    allowed: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CurveKeys:
        try:
            keys = cls(server_public=data["server_public"], server_secret=data["server_secret"],
                       public=data["public"], secret=data["secret"], allowed=tuple(data["allowed"]))
        except (KeyError, TypeError) as exc:
            raise BadConfig(f"CURVE keys: missing or malformed field {exc}") from None
        for key in (keys.server_public, keys.server_secret, keys.public, keys.secret, *keys.allowed):
            if not isinstance(key, str) or len(key) != _KEY_LEN:
                raise BadConfig("CURVE keys: every key is 40 characters of Z85 text")
        return keys

    def to_dict(self) -> dict[str, Any]:
        return {"server_public": self.server_public, "server_secret": self.server_secret,
                "public": self.public, "secret": self.secret, "allowed": list(self.allowed)}

    def __repr__(self) -> str:
        return f"<CurveKeys public={self.public} server={self.server_public} allowed={len(self.allowed)}>"


def flow_keys(members: Iterable[str]) -> dict[str, CurveKeys]:
    """Fresh keys for one Flow: a server key pair shared by its bound sockets and one client key
    pair per member (Pod names, the Gateway, the controller); every member's client key is allowed."""
    server_public, server_secret = (k.decode() for k in zmq.curve_keypair())
    pairs = {m: tuple(k.decode() for k in zmq.curve_keypair()) for m in members}
    allowed = tuple(public for public, _ in pairs.values())
    return {m: CurveKeys(server_public, server_secret, public, secret, allowed)
            for m, (public, secret) in pairs.items()}


def as_keys(value: CurveKeys | Mapping[str, Any] | None) -> CurveKeys | None:
    if value is None or isinstance(value, CurveKeys):
        return value
    return CurveKeys.from_dict(value)


def secure_client(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Make a connecting socket a CURVE client of the Flow's servers (before it connects)."""
    sock.curve_serverkey = keys.server_public.encode()
    sock.curve_publickey = keys.public.encode()
    sock.curve_secretkey = keys.secret.encode()


class _AllowList(ThreadAuthenticator):
    """pyzmq's ZAP authenticator with the Flow's client keys as its CURVE allow-list; a refused
    key is logged with the address the ZAP request names."""

    def __init__(self, ctx: zmq.Context, allowed: Iterable[str]):
        super().__init__(ctx, log=logging.getLogger("jinad_fab.curve.zap"))
        # (pyzmq's Authenticator keeps its address lists in _allowed/_denied: names of our own here)
        self._flow_keys = frozenset(k.encode() for k in allowed)
        self._peer = "?"
        self._refused_at: dict[str, float] = {}

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # requests are handled one at a time on the authenticator's thread: the callback below
        # runs inside this call and can name the peer
        self._peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def callback(self, domain: str, client_key: bytes) -> bool:
        if client_key in self._flow_keys:
            return True
        if _not_recently(self._refused_at, self._peer):
            log.warning("refused a CURVE handshake from %s: its client key %s is not one of this Flow's",
                        self._peer, client_key.decode("ascii", "replace"))
        return False


def _not_recently(seen: dict[str, float], peer: str) -> bool:
    now = time.monotonic()
    if now - seen.get(peer, -_QUIET_SECONDS) < _QUIET_SECONDS:
        return False
    seen[peer] = now
    return True


_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}
_RESOLVED = {zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_AUTH, *_FAILED}
_WHY = {
    getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", -1): "it does not speak CURVE",
    getattr(zmq, "PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC", -2): "it does not hold the Flow's server key",
}


def _peer_of(fd: int) -> str:
    """The remote address of a connection libzmq just accepted (its fd, from the monitor)."""
    try:
        s = pysocket.socket(fileno=fd)
    except OSError:
        return "an unknown peer"
    try:
        host, port = s.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "an unknown peer"
    finally:
        s.detach()  # the descriptor is libzmq's: never close it here


def _why(kind: int, value: int) -> str:
    if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # the value is an errno (the peer hung up...)
        return f"its handshake failed ({os.strerror(value)})"
    return _WHY.get(value, f"its handshake broke the protocol (error {value:#x})")


class _HandshakeWatch:
    """Socket monitors on the bound sockets: logs a handshake that failed before ZAP was asked.

    libzmq's monitor names the accepted connection's descriptor but not its handshake's; handshakes
    on one socket resolve in the order the connections were accepted, so accepted peers wait in a
    queue per socket until their handshake succeeds or fails."""

    def __init__(self, ctx: zmq.Context):
        self.ctx = ctx
        self._monitors: list[tuple[zmq.Socket, str, deque[str]]] = []
        self._lock = threading.Lock()
        self._stop = False
        self._last: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="curve-monitor", daemon=True)
        self._started = False

    def watch(self, sock: zmq.Socket, endpoint: str) -> None:
        events = zmq.EVENT_ACCEPTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        for e in _FAILED:
            events |= e
        mon = sock.get_monitor_socket(events)
        with self._lock:
            self._monitors.append((mon, endpoint, deque(maxlen=256)))
        if not self._started:
            self._started = True
            self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        known: set[int] = set()
        while not self._stop:
            with self._lock:
                monitors = list(self._monitors)
            for mon, _, _ in monitors:
                if id(mon) not in known:
                    poller.register(mon, zmq.POLLIN)
                    known.add(id(mon))
            try:
                ready = dict(poller.poll(100))
            except zmq.ZMQError:
                return
            for mon, endpoint, queue in monitors:
                if mon not in ready:
                    continue
                try:
                    event = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
                except zmq.ZMQError:
                    continue
                self._on_event(event, endpoint, queue)

    def _on_event(self, event: dict, endpoint: str, queue: deque[str]) -> None:
        kind = event["event"]
        if kind == zmq.EVENT_ACCEPTED:
            queue.append(_peer_of(int(event["value"])))
            return
        if kind not in _RESOLVED:
            return
        peer = queue.popleft() if queue else "an unknown peer"
        if kind in _FAILED and _not_recently(self._last, f"{peer.rsplit(':', 1)[0]} {endpoint}"):
            log.warning("refused a connection from %s to %s: %s", peer, endpoint, _why(kind, int(event["value"])))

    def close(self) -> None:
        self._stop = True
        if self._started:
            self._thread.join(timeout=2)
        with self._lock:
            for mon, _, _ in self._monitors:
                mon.close(linger=0)
            self._monitors.clear()


class Guard:
    """The server side of CURVE in one process: the ZAP authenticator and the handshake monitor,
    started on the first secure bind of a context and stopped before it terminates."""

    def __init__(self, ctx: zmq.Context, keys: CurveKeys):
        self.keys = keys
        self.auth = _AllowList(ctx, keys.allowed)
        self.auth.start()
        self.auth.configure_curve_callback(ZAP_DOMAIN, self.auth)
        self.watch = _HandshakeWatch(ctx)

    def secure_server(self, sock: zmq.Socket) -> None:
        """Before bind: the socket answers CURVE handshakes with the Flow's server key, via ZAP."""
        sock.curve_server = True
        sock.curve_secretkey = self.keys.server_secret.encode()
        sock.zap_domain = ZAP_DOMAIN.encode()

    def close(self) -> None:
        self.watch.close()
        self.auth.stop()
