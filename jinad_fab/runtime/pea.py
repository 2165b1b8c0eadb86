"""A Pea: one process hosting one Executor behind ZeroMQ sockets.

Sockets of a Pea:

* ``in``  (PULL, bound): requests from upstream (the Gateway, other Pods, or this Pod's head);
* ``ctrl`` (REP, bound): control commands from whoever started it (connect, status, terminate);
* its downstream targets (:mod:`.targets`): one PUSH per Pod it feeds, or one per replica of a
  replica set, where each request goes to the replica the Gateway planned for it.

Static wiring (``static: true``, for engines that start every container themselves, see
:mod:`jinad_fab.flow.static`): the Pea is given everything at start - ``targets`` with service
names, and either a port to bind ``in`` on or ``in_connect``, the address of its head's PUSH that
its ``in`` connects to (so any number of replicas share the head's output). A head's output to
replicas is then a bound PUSH (``{"bind": address}``); until a replica connects, what it routes
waits in a backlog instead of blocking the Pea. ``ctrl`` binds on ``ctrl_host`` (loopback: only
the container's own health probe talks to it).

A Pea expecting ``num_parts`` > 1 joins the parts of each request before running its Executor
(see :mod:`.merge`). A head Pea (``route`` set) splits requests across shard targets instead of
copying them to every target.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import time
import traceback
from typing import Any

import zmq
from zmq.backend import zmq_poll

from ..document import DocumentArray
from ..errors import JinadFabError
from ..executors import load_executor
from ..wire import Message, doc_count
from . import orphan
from .control import Commands
from .merge import merge_parts
from .shards import HEADER as MISSING
from .shards import parts_expected, shard_of
from .sockets import (
    NOBLOCK,
    bind,
    connect_pull,
    drain,
    make_context,
    recv_frames,
    send_frames,
    signal_wakeup_fd,
)
from .targets import Targets

log = logging.getLogger("jinad_fab.pea")

_POLL_MS = 250
_POLLIN = int(zmq.POLLIN)
_BACKLOG_POLL_MS = 20  # while routed messages wait for a replica to connect
_WAIT_MS = 20  # how long a busy Pea waits in a receive before it polls every socket again
_LOOK_S = 0.02  # how often a busy Pea looks at its control socket and for signals
_TICK_S = 0.5

# True while this process imports user code for its Executor. A script that defines an Executor
# and starts a Flow at top level would otherwise start that Flow again inside every Pea (and so on).
LOADING_EXECUTOR = False


class _Stop(Exception):
    pass


class _StoppedWhileLoading(BaseException):
    """SIGTERM/SIGINT while the Executor is still being constructed: nothing is ready, nothing is
    in flight, so the Pea leaves at once instead of finishing a constructor that may take minutes
    (and being killed after its starter's grace period). A BaseException, so that an Executor's own
    ``except Exception`` does not swallow it; its ``finally`` blocks still run."""


def _error_header(pod: str, exc: BaseException) -> dict:
    return {"pod": pod, "type": type(exc).__name__, "msg": str(exc),
            "tb": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]}


class PeaRuntime:
    """The body of a Pea process: load the Executor, bind, then serve until told to stop."""

    def __init__(self, args: dict):
        self.args = args
        self.name = args.get("name") or "pea"
        self.pod = args.get("pod") or self.name
        self.num_parts = int(args.get("num_parts") or 1)
        self.upstream = list(args.get("upstream") or [])
        self.route = args.get("route")  # None, or {"polling": {endpoint: "all"|"id", "*": ...}}
        self.pending: dict[str, list[Message]] = {}
        self.targets: Targets | None = None
        self.executor = None
        self.static = bool(args.get("static"))
        self.backlog: dict[zmq.Socket, collections.deque] = {}  # bound outputs with no peer yet
        self.idempotent: list[str] = []  # endpoints the Executor marks safe to run twice
        self.runs = True  # False: the Executor binds no endpoint, every request passes through untouched
        self._stop = False

    # ---- set-up ----
    def load(self) -> None:
        a = self.args
        if self.route is None:
            runtime_args = {k: a.get(k) for k in ("shard_id", "replica_id", "shards", "parallel", "dump_path")}
            self.executor = load_executor(a.get("uses") or "_pass", uses_with=a.get("uses_with"),
                                          uses_metas=_metas(a), py_modules=a.get("py_modules") or (),
                                          base_dir=a.get("base_dir"), runtime_args=runtime_args,
                                          uses_requests=a.get("uses_requests"))
            self.idempotent = sorted(getattr(self.executor, "idempotent_endpoints", ()) or ())
            self.runs = bool(getattr(self.executor, "handles_requests", True))

    def bind(self) -> dict:
        self.ctx = make_context(self.args.get("curve"))
        host = self.args.get("host") or "127.0.0.1"
        if self.args.get("in_connect"):
            self.sock_in, port_in = connect_pull(self.ctx, self.args["in_connect"]), None
        else:
            self.sock_in, port_in = bind(self.ctx, zmq.PULL, host, int(self.args.get("port_in") or 0))
        self.sock_ctrl, port_ctrl = bind(self.ctx, zmq.REP, self.args.get("ctrl_host") or host,
                                         int(self.args.get("port_ctrl") or 0))
        return {"port_in": port_in, "port_ctrl": port_ctrl}

    def connect(self, targets: list[list[str] | dict]) -> None:
        # linger: answers already queued still leave when the Pea stops
        if self.targets is None:
            self.targets = Targets(self.ctx, linger_ms=1000, watch=self.static, send=self._send)
        self.targets.update(targets)
        kept = self.targets.sockets()
        self.backlog = {s: w for s, w in self.backlog.items() if s in kept}

    def _send(self, target: zmq.Socket, frames: list) -> None:
        """Send without ever blocking: a bound PUSH with no peer yet keeps the message for later."""
        waiting = self.backlog.get(target)
        if waiting:
            waiting.append(frames)
            return
        try:
            send_frames(target, frames, NOBLOCK)
        except zmq.Again:
            self.backlog.setdefault(target, collections.deque()).append(frames)

    def _flush(self) -> None:
        for target, waiting in self.backlog.items():
            while waiting:
                try:
                    send_frames(target, waiting[0], NOBLOCK)
                except zmq.Again:
                    break
                waiting.popleft()

    # ---- serving ----
    def serve(self, on_tick=None, wake_fd: int | None = None) -> None:
        """Serve until stopped. While requests flow, the Pea waits in a blocking receive on its
        input, as a bare forwarder does: a message already queued is taken without a system call,
        where a poll before each burst and a readiness check (ZMQ_EVENTS) after each message asked
        the kernel again. Between messages it looks at its control socket and the signal wake-up
        pipe every ``_LOOK_S``, so a command (a `connect` during a rolling update) or a SIGTERM is
        answered within about that long however busy it is; once the input has been quiet for
        ``_WAIT_MS`` it polls all of them again, so an idle Pea answers at once."""
        # zmq_poll itself, not zmq.Poller: its Python wrapper costs more than the poll
        items = [(self.sock_in, _POLLIN), (self.sock_ctrl, _POLLIN)]
        if wake_fd is not None:
            items.append((wake_fd, _POLLIN))
        others = items[1:]
        sock_in = self.sock_in
        sock_in.setsockopt(zmq.RCVTIMEO, _WAIT_MS)
        commands = Commands(self.sock_ctrl, {"connect": lambda cmd: self.connect(cmd["targets"]),
                                             "status": self._status, "terminate": self._terminate})
        monotonic = time.monotonic
        next_look = next_tick = 0.0
        busy = False
        while not self._stop:
            if busy:
                try:
                    frames = recv_frames(sock_in)  # waits at most _WAIT_MS
                except zmq.Again:
                    busy = False  # quiet: back to polling every socket
                    continue
                self._on_frames(frames)
                if self.backlog:
                    self._flush()
                now = monotonic()
                if now < next_look:
                    continue
                next_look = now + _LOOK_S
                ready = zmq_poll(others, 0)
                idle = False
            else:
                ready = zmq_poll(items, _BACKLOG_POLL_MS if self._waiting() else _POLL_MS)
                if self.backlog:
                    self._flush()
                now = monotonic()
                idle = not ready
            for s, _ in ready:
                if s is sock_in:
                    busy = True
                elif s is self.sock_ctrl:
                    commands.serve_one()
                else:
                    drain(wake_fd)
            # the tick (is the parent alive?) costs a system call: on an idle poll, or twice a second
            if on_tick is not None and (idle or now >= next_tick):
                next_tick = now + _TICK_S
                on_tick()

    def _waiting(self) -> bool:
        return any(self.backlog.values())

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        if self.executor is not None:
            try:
                self.executor.close()
            except Exception:
                log.exception("%s: Executor.close() raised", self.name)
        if self.targets is not None:
            self.targets.close()
        for s in [getattr(self, "sock_in", None), getattr(self, "sock_ctrl", None)]:
            if s is not None:
                s.close(linger=0)
        if getattr(self, "ctx", None) is not None:
            self.ctx.term()

    def _terminate(self, cmd: dict) -> None:
        self._stop = True

    def _status(self, cmd: dict) -> dict:
        # `idempotent`: whoever plans requests learns which ones may be retried wherever this Pea runs
        return {"pending": len(self.pending), "targets": len(self.targets or ()),
                "backlog": sum(len(w) for w in self.backlog.values()), "idempotent": self.idempotent}

    def _on_frames(self, frames: list) -> None:
        # the header as bytes: parsing a few dozen bytes copied costs half of parsing them through a
        # zmq.Frame's buffer (the body and arrays stay the received frames, forwarded untouched)
        frames[0] = frames[0].bytes
        try:
            msg = Message.from_frames(frames)
        except JinadFabError as exc:
            log.error("%s: dropped a malformed message: %s", self.name, exc)
            return
        if self.num_parts > 1:
            # a shard the Gateway knows is missing sends no part (see .shards)
            need = parts_expected(self.num_parts, self.upstream, msg.header)
            parts = self.pending.setdefault(msg.request_id, [])
            parts.append(msg)
            if len(parts) < need:
                return
            del self.pending[msg.request_id]
            msg = merge_parts(parts, self.upstream)
        if self.route is not None:
            self._route(msg)
            return
        header = msg.header
        # `only`: a request meant for one Pod (Flow.dump); the others pass it on untouched
        if self.runs and not header.get("err") and header.get("only", self.pod) == self.pod:
            self._run(msg)
        header["src"] = self.name  # lets a join downstream order the parts it waits for
        if self.targets is not None:
            self.targets.send_all(msg.frames(), header)

    def _run(self, msg: Message) -> None:
        handler = self.executor.handler_for(msg.endpoint)
        if handler is None:
            return
        fn, names = handler
        try:
            kwargs: dict[str, Any] = {}
            if "docs" in names:
                kwargs["docs"] = msg.docs
            if "parameters" in names:
                kwargs["parameters"] = msg.parameters
            if "endpoint" in names:
                kwargs["endpoint"] = msg.endpoint
            if "header" in names:
                if "docs" not in names:
                    msg.header["_ndocs"] = doc_count(msg)
                kwargs["header"] = msg.header
            result = fn(**kwargs)
            msg.header.pop("_ndocs", None)
            if result is not None:
                if isinstance(result, DocumentArray) or isinstance(result, list):
                    msg.docs = DocumentArray(result)
                elif isinstance(result, dict):
                    msg.parameters.update(result)
        except Exception as exc:
            log.error("%s: %s raised on %s: %s", self.pod, type(self.executor).__name__, msg.endpoint, exc)
            msg.header.pop("_ndocs", None)
            msg.header["err"] = _error_header(self.pod, exc)

    def _route(self, msg: Message) -> None:
        polling = self.route.get("polling") or {}
        mode = polling.get(msg.endpoint) or polling.get("*") or "all"
        if msg.header.get("only"):
            mode = "all"  # a request for this Pod's Executors (a dump) reaches every shard
        targets = self.targets
        n = len(targets or ())
        if mode == "all" or n <= 1 or msg.header.get("err"):
            if targets is not None:
                targets.send_all(msg.frames(), msg.header)
            return
        # "id": each Document goes to the shard its id hashes to, so update/delete find it again
        buckets: list[list[int]] = [[] for _ in range(n)]
        docs = msg.docs
        for i, d in enumerate(docs):
            buckets[shard_of(d.id, n)].append(i)
        missing = msg.header.get(MISSING)
        if missing:
            _hand_over(buckets, [targets.set_name(t) in missing for t in range(n)])
        for t, idx in enumerate(buckets):
            header = dict(msg.header, pos=idx)
            header.pop("src", None)
            part = Message(header, docs=DocumentArray([docs[i] for i in idx]))
            targets.send(t, part.frames(), header)


def _hand_over(buckets: list[list[int]], gone: list[bool]) -> None:
    """The Documents of a read bound for missing shards go to the first shard left, so the answer
    keeps every Document (a search gets that shard's matches for them; the Gateway only lets reads
    through with a missing shard's Documents, see .shards)."""
    heir = next((t for t, g in enumerate(gone) if not g), None)
    if heir is None:
        return
    moved = [i for t, g in enumerate(gone) if g for i in buckets[t]]
    if moved:
        buckets[heir] = sorted(buckets[heir] + moved)
        for t, g in enumerate(gone):
            if g:
                buckets[t] = []


def _metas(args: dict) -> dict:
    metas = dict(args.get("uses_metas") or {})
    if args.get("workspace"):
        metas.setdefault("workspace", args["workspace"])
    if args.get("pod"):
        metas.setdefault("name", args["pod"])
    return metas


def _orphan_check() -> None:
    if orphan.parent_gone():
        raise _Stop()


def run_pea(args: dict, report, die_with_parent: bool = False) -> int:
    """Entry point of a Pea process. ``report(event_dict)`` tells the starter what happened."""
    rt = PeaRuntime(args)
    tick = _orphan_check if die_with_parent else None

    def on_term(signum, frame):
        rt.stop()
        if LOADING_EXECUTOR:
            raise _StoppedWhileLoading

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    wake = signal_wakeup_fd()
    global LOADING_EXECUTOR
    try:
        LOADING_EXECUTOR = True
        try:
            rt.load()
        finally:
            LOADING_EXECUTOR = False
        ports = rt.bind()
    except _StoppedWhileLoading:
        log.warning("%s: stopped while loading its Executor", rt.name)
        return 0
    except Exception as exc:
        report({"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        log.error("%s: failed to start: %s", rt.name, exc)
        return 1
    if args.get("targets") is not None:
        rt.connect(args["targets"])
    report({"state": "ready", "pid": os.getpid(), "ports": ports, **ports, "idempotent": rt.idempotent})
    started = time.monotonic()
    try:
        rt.serve(on_tick=tick, wake_fd=wake)
    except _Stop:
        log.warning("%s: parent process is gone, shutting down", rt.name)
    finally:
        rt.close()
    log.debug("%s: served for %.1fs", rt.name, time.monotonic() - started)
    return 0
