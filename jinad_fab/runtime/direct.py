"""The in-process path of a Flow's own client: the Gateway's planning without the Gateway's hops.

A Flow started from a program (``with flow: flow.index(...)``) sends its requests to its first
Pods itself and receives the answers from its last Pods directly, so a request crosses the
processes that work on it and no other: the Gateway process, which every request would otherwise
cross twice, stays for everyone else (remote native and HTTP clients, Flows run by ``jinad``).

The planning is the Gateway's own (:class:`~.planner.Planner`: replica sets, least-loaded choice,
retries of idempotent requests on a dead replica, parked requests, missing shards); the Flow sends
every control command it sends its Gateway to this path too, so both plan onto the same members.
The last Pods' way back is a replica set ``@reply`` of two members, ``gateway`` (the default) and
``direct`` (this process's results socket), which a request planned here names in its plan.

Threads: the caller's thread sends and receives; the Flow's monitor thread runs control commands
(a dead replica, a scale step). A lock guards the planner and its sockets; an answer made outside
the caller's thread (a request failed because its replica died) wakes the caller through an
inproc socket bound next to the results socket. One call at a time takes this path
(:meth:`DirectPath.begin`): a call made meanwhile from another thread goes through the Gateway.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Iterable

import zmq

from ..wire import Message
from .planner import Planner
from .sockets import bind, connect_host, recv_frames, send_frames
from .targets import Targets

REPLY_SET = "@reply"
_ids = itertools.count()


def reply_target(gateway_results: str, direct: str) -> dict:
    """The last Pods' target: the Gateway's results, or this process's when the plan says so."""
    return {"set": REPLY_SET, "replicas": {"gateway": gateway_results, "direct": direct}, "default": "gateway"}


class DirectPath(Planner):
    """Plans, sends and receives a Flow's requests in the caller's process (see the module)."""

    def __init__(self, ctx: zmq.Context, host: str = "127.0.0.1", num_parts: int = 1,
                 upstream: list[str] | None = None, park_timeout: float = 30.0):
        super().__init__(Targets(ctx), num_parts=num_parts, upstream=upstream, park_timeout=park_timeout)
        self.extra_plan = {REPLY_SET: "direct"}  # the last Pods answer this process, not the Gateway
        self.ctx = ctx
        self.results, port = bind(ctx, zmq.PULL, host)
        self.results.setsockopt(zmq.RCVTIMEO, 100)  # how often a wait looks at the Flow's health
        self.address = f"tcp://{connect_host(host)}:{port}"
        self._wake_address = f"inproc://jinad-direct-{next(_ids)}-{id(self):x}"
        self.results.bind(self._wake_address)
        self._wake: zmq.Socket | None = None
        self._lock = threading.Lock()  # the planner's state and the roots' sockets
        self._user = threading.Lock()  # held by the one call that uses this path
        self._owner: int | None = None
        self.ready: collections.deque[Message] = collections.deque()
        self.closed = False

    # ---- the planner's ends ----
    def _waiting(self) -> list[str]:
        return [fl.rid for fl in self.flights.values()] + [fl.rid for fl in self.parked]

    def _answer(self, rid: str, msg: Message) -> None:
        msg.header.pop("merge", None)
        msg.header.pop("src", None)
        self.ready.append(msg)
        if threading.get_ident() != self._owner:  # made by a control command: wake the caller
            if self._wake is None:
                self._wake = self.ctx.socket(zmq.PUSH)
                self._wake.setsockopt(zmq.LINGER, 0)
                self._wake.setsockopt(zmq.SNDHWM, 0)
                self._wake.connect(self._wake_address)
            send_frames(self._wake, [b""])

    # ---- the caller's side ----
    def begin(self) -> bool:
        """Take this path for one call (False: it is closed, or another thread's call holds it)."""
        if not self._user.acquire(blocking=False):
            return False
        if self.closed:
            self._user.release()
            return False
        self._owner = threading.get_ident()
        return True

    def end(self, abandoned: Iterable[str] = ()) -> None:
        """The call is over; the requests it gave up on (``abandoned``) are forgotten."""
        gone = set(abandoned)
        with self._lock:
            if gone:
                for fl in [fl for fl in self.flights.values() if fl.rid in gone]:
                    self._release(fl)
                self.parked = [fl for fl in self.parked if fl.rid not in gone]
            self._owner = None
        self._user.release()

    def send_burst(self, requests: list[tuple[dict, list]]) -> None:
        """Plan the requests (header, body frames), then send them one after the other (see
        :meth:`Planner.held`); the caller's one way to send on this path."""
        with self._lock, self.held():
            for header, body in requests:
                self._dispatch(header, body, header["rid"])

    def wait(self) -> bool:
        """Receive one answer (or wake-up) into ``ready``; False after 100 ms without any."""
        results = self.results
        try:
            frames = recv_frames(results)
        except zmq.Again:
            if self.parked:
                with self._lock:
                    self._expire_parked()
            return False
        # one answer per call, like a bare PULL: asking whether another one waits (zmq_poll) costs a
        # system call per answer, more than a turn of the caller's loop
        if len(frames) > 1:
            with self._lock:
                self._on_result(frames)
                if self.parked:
                    self._expire_parked()
        return True

    # ---- the Flow's side ----
    def command(self, cmd: dict) -> dict:
        """Run one control command (the Gateway's: members, connect, replica_died, shards, pod_failed, status)."""
        handler = self.handlers().get(cmd.get("cmd"))
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd.get('cmd')!r}"}
        with self._lock:
            if self.closed:
                return {"ok": False, "error": "closed"}
            return {"ok": True, **(handler(cmd) or {})}

    def close(self, timeout: float = 5.0) -> None:
        """Fail what waits, let a call in progress see it, then close the sockets."""
        with self._lock:
            if self.closed:
                return
            if self._waiting():
                self._pod_failed({"pod": "gateway", "detail": "the Flow was closed"})
            self.closed = True
        held = self._user.acquire(timeout=timeout)
        try:
            with self._lock:
                if not held:
                    return  # a call still runs: its sockets go with the Flow's context
                self.roots.close(0)
                self.results.close(linger=0)
                if self._wake is not None:
                    self._wake.close(linger=0)
        finally:
            if held:
                self._user.release()
