"""The Gateway: the Flow's front door, speaking a native ZeroMQ protocol and HTTP/JSON.

Threads of a Gateway process:

* the *router* thread owns every ZeroMQ socket: ``native`` (ROUTER, clients' DEALERs connect),
  ``results`` (PULL, the last Pods push answers here), ``ctrl`` (REP), one PUSH per root Pod and
  an inproc PULL fed by the HTTP side. It forwards raw frames (no Document decoding) and joins
  the parts of an answer when the Flow ends in several Pods or shards;
* the main thread runs uvicorn with a small Starlette app: ``POST /<endpoint>`` with
  ``{"data": [...], "parameters": {...}}``, answered with ``{"data": [...], "header": {...}}``.

Every request is *planned*: for each replica set of the Flow (the replicas of a Pod, or of one
shard) the Gateway picks the least loaded member and writes the choice into the request's header;
senders on the way follow it (:mod:`.targets`). So the Gateway knows which replica holds which
request: when the Flow reports a dead replica (ctrl ``replica_died``), nothing more is planned onto
it, its read-only requests (``/search`` and endpoints an Executor marks idempotent) are sent once
more to a survivor, and the others fail with PodDied naming the Pod. ``members`` changes a set
(scaling, a rolling update, a restart); a request finding a set empty waits for a member (a restart)
up to ``park_timeout``. When the Flow reports a dead Pod (ctrl ``pod_failed``), every request in
flight and every new one is answered at once with an error naming that Pod: callers never hang on
a dead Pea. When it reports a shard gone for good (ctrl ``shards``: no replica left and none
coming, or its host LOST), reads are answered by the other shards with ``missing_shards`` in their
header and writes that need it fail with PodDied naming it (:mod:`.shards`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import orjson
import zmq

from ..document import DocumentArray
from ..errors import BadInput, JinadFabError
from ..wire import Message, new_header
from .control import Commands
from .merge import merge_parts
from .shards import HEADER as MISSING
from .shards import MissingShards, parts_expected
from .sockets import NOBLOCK, bind, make_context, readable, recv_frames, send_frames
from .targets import Targets

log = logging.getLogger("jinad_fab.gateway")

_HTTP_INPROC = "inproc://gateway-http"
MISSING_HTTP = "X-Missing-Shards"  # the HTTP response header naming the shards an answer lacks


class _Flight:
    """One request between the Gateway and its answer: what to send again if its replica dies."""

    __slots__ = ("rid", "cur", "header", "body", "plan", "tries", "since", "missing", "parts")

    def __init__(self, rid: str, header: dict, body: list):
        self.rid = rid  # the client's request id
        self.cur = rid  # the id of the attempt in flight (a retry has its own, so late parts are told apart)
        self.header = header
        self.body = body
        self.plan: dict[str, str] = {}
        self.tries = 0
        self.since = 0.0
        self.missing: list[str] = []  # shards this attempt goes without (named in its answer's header)
        self.parts = 1  # how many parts its answer comes in


class _Router:
    def __init__(self, ctx: zmq.Context, args: dict):
        self.ctx = ctx
        host = args.get("host") or "127.0.0.1"
        self.num_parts = int(args.get("num_parts") or 1)
        self.upstream = list(args.get("upstream") or [])
        # clients are not members of the Flow: their port stays plain (CURVE guards the Flow's inside)
        self.native, self.port_native = bind(ctx, zmq.ROUTER, host, int(args.get("port_native") or 0),
                                             curve=False)
        self.results, self.port_results = bind(ctx, zmq.PULL, args.get("results_host") or host,
                                               int(args.get("port_results") or 0))
        self.ctrl, self.port_ctrl = bind(ctx, zmq.REP, args.get("ctrl_host") or host, int(args.get("port_ctrl") or 0))
        self.static = bool(args.get("static"))  # wired from configuration: watch the root Pods' connections
        self.http_in = ctx.socket(zmq.PULL)
        self.http_in.bind(_HTTP_INPROC)
        self.roots = Targets(ctx, watch=self.static)
        self.wired = False
        self.native_pending: dict[str, bytes] = {}
        self.http_pending: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self.parts: dict[str, list[Message]] = {}
        self.failed: dict | None = None
        self.stopping = False
        # replica sets of the Flow: set name -> {"pod": Pod name, "members": [replica ids]}; every
        # request is planned onto one member of each, so a dead replica's requests are known
        self.sets: dict[str, dict[str, Any]] = {}
        self.load: dict[str, dict[str, int]] = {}
        self.flights: dict[str, _Flight] = {}
        self.parked: list[_Flight] = []  # waiting for a replica of an empty set (one being restarted)
        self.park_timeout = float(args.get("park_timeout") or 30.0)
        self.retryable = {"/search"}
        self.missing = MissingShards()
        self._turn = 0

    def connect(self, targets: list) -> None:
        self.roots.update(targets)
        self.wired = True

    def loop(self) -> None:
        poller = zmq.Poller()
        for s in (self.native, self.results, self.ctrl, self.http_in):
            poller.register(s, zmq.POLLIN)
        commands = Commands(self.ctrl, {"connect": lambda cmd: self.connect(cmd["targets"]),
                                        "pod_failed": self._pod_failed, "status": self._status,
                                        "members": self._members, "replica_died": self._replica_died,
                                        "shards": self._shards,
                                        "terminate": self._terminate})
        while not self.stopping:
            events = dict(poller.poll(50))  # `stopping` is set from another thread: look often
            if self.ctrl in events:
                commands.serve_one()
            if self.native in events:
                _burst(self.native, self._on_native)
            if self.http_in in events:
                _burst(self.http_in, self._on_http)
            if self.results in events:
                _burst(self.results, self._on_result)
            if self.parked:
                self._expire_parked()
        self.roots.close(0)
        for s in (self.native, self.results, self.ctrl, self.http_in):
            s.close(linger=0)

    # ---- control ----
    def _pod_failed(self, cmd: dict) -> dict:
        self.failed = {"pod": cmd.get("pod", "?"), "type": "PodDied", "msg": cmd.get("detail", "")}
        pending = list(self.native_pending) + list(self.http_pending)
        self.flights.clear()
        self.parked.clear()
        self.parts.clear()
        for loads in self.load.values():
            for k in loads:
                loads[k] = 0
        for rid in pending:
            self._fail(rid, self.failed)
        return {"failed": len(pending)}

    def _status(self, cmd: dict) -> dict:
        return {"pending": len(self.native_pending) + len(self.http_pending), "failed": self.failed,
                "inflight": {name: dict(loads) for name, loads in self.load.items()},
                "members": {name: list(st["members"]) for name, st in self.sets.items()},
                "parked": len(self.parked), "missing_shards": self.missing.view()}

    def _members(self, cmd: dict) -> dict:
        """Replace the members of the named replica sets (what new requests are planned onto)."""
        for name, st in (cmd.get("sets") or {}).items():
            members = [str(m) for m in st.get("replicas") or []]
            self.sets[name] = {"pod": st.get("pod") or name.split("/", 1)[0], "members": members}
            loads = self.load.setdefault(name, {})
            for m in members:
                loads.setdefault(m, 0)
            for m in [m for m, n in loads.items() if m not in members and n == 0]:
                del loads[m]  # a replica that left and holds nothing more
            if members and name in self.missing:
                self.missing.back([name], why="dead")  # a shard restarted: it answers again
        for name in cmd.get("drop") or ():
            self.sets.pop(name, None)
            self.load.pop(name, None)
        if cmd.get("idempotent") is not None:
            self.retryable = {"/search", *cmd["idempotent"]}
        if self.parked:
            parked, self.parked = self.parked, []
            for fl in parked:
                self._send(fl)
        return {"parked": len(self.parked)}

    def _replica_died(self, cmd: dict) -> dict:
        """A replica died: plan nothing more onto it; send its read-only requests again, fail the rest."""
        name, replica = cmd["set"], str(cmd["replica"])
        st = self.sets.get(name)
        pod = st["pod"] if st else name.split("/", 1)[0]
        if st is not None and replica in st["members"]:
            st["members"].remove(replica)
        retried = failed = 0
        for fl in [fl for fl in self.flights.values() if fl.plan.get(name) == replica]:
            self._release(fl)
            if fl.tries == 0 and fl.header.get("ep") in self.retryable:
                retried += 1
                fl.tries += 1
                self._send(fl)
            else:
                failed += 1
                self._fail(fl.rid, {"pod": pod, "type": "PodDied",
                                    "msg": f"{cmd.get('detail') or 'a replica died'} while it held the request"})
        self.load.get(name, {}).pop(replica, None)
        return {"retried": retried, "failed": failed}

    def _shards(self, cmd: dict) -> dict:
        """Shards gone for good (``missing``: set name -> ``{pod, shard, shards, polling, detail, why}``)
        or back (``back``: set names). Requests an attempt planned onto a newly missing shard are
        sent again without it (reads) or failed with PodDied naming it (writes); parked requests go."""
        added = self.missing.mark(cmd.get("missing") or {})
        back = self.missing.back(cmd.get("back") or ())
        retried = failed = 0
        if added:
            gone = set(added)
            for fl in [fl for fl in self.flights.values() if gone & set(fl.plan)]:
                self._release(fl)
                if fl.header.get("ep") in self.retryable:
                    retried += 1
                    fl.tries += 1
                    self._send(fl)
                else:
                    failed += 1
                    names = sorted(gone & set(fl.plan))
                    self._fail(fl.rid, {"pod": self.missing.sets[names[0]]["pod"], "type": "PodDied",
                                        "shards": names, "msg": f"shard {', '.join(names)} went missing while it "
                                                                f"held the request: {self.missing.sets[names[0]]['detail']}"})
        if added or back:
            log.warning("missing shards now: %s", ", ".join(sorted(self.missing.sets)) or "none")
        if self.parked:
            parked, self.parked = self.parked, []
            for fl in parked:
                self._send(fl)
        return {"retried": retried, "failed": failed, "missing": self.missing.view()}

    def _terminate(self, cmd: dict) -> None:
        self.stopping = True

    # ---- requests ----
    def _on_http(self, frames: list) -> None:
        header = orjson.loads(frames[0].bytes)
        self._dispatch(header, frames[1:], header["rid"])

    def _on_native(self, frames: list) -> None:
        ident, rest = frames[0].bytes, frames[1:]
        try:
            header = orjson.loads(rest[0].bytes)
            rid = header["rid"]
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            log.error("dropped a malformed request from a native client")
            return
        self.native_pending[rid] = ident
        self._dispatch(header, rest[1:], rid)

    def _dispatch(self, header: dict, body: list, rid: str) -> None:
        if self.failed is not None:
            self._fail(rid, self.failed)
            return
        if not self.wired:
            self._fail(rid, {"pod": "gateway", "type": "NotReady", "msg": "the Flow is not wired yet"})
            return
        self._send(_Flight(rid, header, body))

    def _plan(self) -> dict[str, str] | None:
        """One member of every replica set, the least loaded (ties taken in turn); None when a set
        has no member at all (a shard known to be missing is left out instead)."""
        plan = {}
        self._turn += 1
        for name, st in self.sets.items():
            if name in self.missing:
                continue
            members = st["members"]
            n = len(members)
            if n == 1:
                plan[name] = members[0]
                continue
            if n == 0:
                return None
            loads = self.load[name]
            best, low = None, None
            for k in range(n):
                m = members[(self._turn + k) % n]
                if low is None or loads[m] < low:
                    best, low = m, loads[m]
            plan[name] = best
        return plan

    def _send(self, fl: _Flight) -> None:
        missing: list[str] = []
        if self.missing:  # (the common case, every shard there, costs one test)
            missing, err = self.missing.check(fl.header, fl.body, self.retryable)
            if err is not None:
                self._fail(fl.rid, err)
                return
        plan = self._plan()
        if plan is None:
            fl.since = time.monotonic()
            self.parked.append(fl)
            return
        fl.cur = fl.rid if not fl.tries else f"{fl.rid}~{fl.tries}"
        fl.plan = plan
        fl.missing = missing
        fl.parts = parts_expected(self.num_parts, self.upstream, {MISSING: missing}) if missing else self.num_parts
        self.flights[fl.cur] = fl
        for name, m in plan.items():
            self.load[name][m] += 1
        if missing:
            header = dict(fl.header, rid=fl.cur, plan=plan, **{MISSING: missing})
        else:
            header = dict(fl.header, rid=fl.cur, plan=plan) if plan or fl.tries else fl.header
        self.roots.send_all([orjson.dumps(header), *fl.body], header)

    def _release(self, fl: _Flight) -> None:
        """Forget an attempt: its replicas hold it no more, and parts of it that come late are dropped."""
        if self.flights.pop(fl.cur, None) is None:
            return
        self.parts.pop(fl.cur, None)
        for name, m in fl.plan.items():
            loads = self.load.get(name)
            if loads is not None and m in loads:
                loads[m] -= 1

    def _expire_parked(self) -> None:
        now = time.monotonic()
        while self.parked and now - self.parked[0].since > self.park_timeout:
            fl = self.parked.pop(0)
            empty = [st["pod"] for name, st in self.sets.items() if not st["members"] and name not in self.missing]
            self._fail(fl.rid, {"pod": empty[0] if empty else "?", "type": "PodDied",
                                "msg": f"no replica came back within {self.park_timeout:g}s"})

    def _on_result(self, frames: list) -> None:
        try:
            msg = Message.from_frames(frames)
        except JinadFabError as exc:
            log.error("dropped a malformed answer: %s", exc)
            return
        rid = msg.request_id
        fl = self.flights.get(rid)
        if fl is None:
            return  # an attempt given up on (its replica died and it was sent again, or failed)
        if self.num_parts > 1:
            got = self.parts.setdefault(rid, [])
            got.append(msg)
            if len(got) < fl.parts:
                return
            del self.parts[rid]
            msg = merge_parts(got, self.upstream)
        self._release(fl)
        msg.header["rid"] = fl.rid
        msg.header.pop("plan", None)
        if fl.missing:
            msg.header[MISSING] = fl.missing  # the answer says which shards it lacks, never silently
        else:
            msg.header.pop(MISSING, None)
        self._answer(fl.rid, msg)

    def _answer(self, rid: str, msg: Message) -> None:
        ident = self.native_pending.pop(rid, None)
        if ident is not None:
            msg.header.pop("merge", None)
            msg.header.pop("src", None)
            send_frames(self.native, [ident, *msg.frames()])
            return
        waiter = self.http_pending.pop(rid, None)
        if waiter is not None:
            loop, fut = waiter
            loop.call_soon_threadsafe(_set_result, fut, msg)

    def _fail(self, rid: str, err: dict) -> None:
        self.parts.pop(rid, None)
        header = {"rid": rid, "err": err}
        self._answer(rid, Message(header))


def _burst(sock: zmq.Socket, handle) -> None:
    """Handle up to 64 waiting messages (poll said one is there), then let the loop look at the others."""
    for _ in range(64):
        try:
            frames = recv_frames(sock, NOBLOCK)
        except zmq.Again:
            return
        handle(frames)
        if not readable(sock):
            return


def _set_result(fut: asyncio.Future, msg: Message) -> None:
    if not fut.done():
        fut.set_result(msg)


def _http_app(router: _Router, ctx: zmq.Context, name: str, static_dir: str | None = None):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    local = threading.local()

    def push_socket() -> zmq.Socket:
        s = getattr(local, "sock", None)
        if s is None:
            s = ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(_HTTP_INPROC)
            local.sock = s
        return s

    def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
        return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                        media_type="application/json", headers=headers)

    async def health(request: Request) -> Response:
        return JSONResponse({"name": name, "alive": router.failed is None, "failed": router.failed,
                             "pending": len(router.http_pending) + len(router.native_pending)})

    async def post(request: Request) -> Response:
        endpoint = "/" + request.path_params["endpoint"]
        try:
            body = orjson.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise BadInput("the request body must be a JSON object")
            data = body.get("data") or []
            params = body.get("parameters") or {}
            if not isinstance(data, list) or not isinstance(params, dict):
                raise BadInput("`data` must be a list of Documents and `parameters` an object")
            docs = DocumentArray.from_list(data)
        except orjson.JSONDecodeError as exc:
            return json_response({"detail": f"invalid JSON: {exc}"}, 400)
        except JinadFabError as exc:
            return json_response({"detail": str(exc)}, 422)
        rid = os.urandom(16).hex()
        msg = Message(new_header(rid, endpoint, params), docs=docs)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        router.http_pending[rid] = (loop, fut)
        push_socket().send_multipart(msg.frames(), copy=False)
        timeout = float(request.query_params.get("timeout", 0) or 0) or None
        try:
            answer: Message = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            router.http_pending.pop(rid, None)
            return json_response({"detail": f"no answer within {timeout:g}s"}, 504)
        err = answer.header.get("err")
        header = {k: v for k, v in answer.header.items() if k not in ("merge", "src", "plan")}
        if err:
            status = 503 if err.get("type") in ("PodDied", "NotReady") else 500
            return json_response({"detail": f"Pod {err.get('pod')!r} failed the request: "
                                            f"{err.get('type')}: {err.get('msg')}", "header": header}, status)
        missing = header.get(MISSING)
        # an answer some shards did not give says so in its JSON header and in an HTTP header
        return json_response({"data": answer.docs.to_list(), "header": header},
                             headers={MISSING_HTTP: ", ".join(missing)} if missing else None)

    async def page(request: Request) -> Response:
        return FileResponse(os.path.join(static_dir, "index.html"))

    routes = [Route("/alive", health, methods=["GET"]), Route("/{endpoint:path}", post, methods=["POST"])]
    if static_dir:
        # a Flow may serve one static page (and its assets) next to its JSON API
        routes.insert(0, Route("/", page, methods=["GET"]))
        routes.insert(1, Mount("/static", app=StaticFiles(directory=static_dir), name="static"))
    else:
        routes.insert(0, Route("/", health, methods=["GET"]))
    return Starlette(routes=routes)


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's Server, but a stop request is acted on at once instead of at the next 100 ms tick."""

        async def main_loop(self) -> None:
            self._wake = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864000
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.1)
                except asyncio.TimeoutError:
                    pass
                should_exit = await self.on_tick(counter)

        async def shutdown(self, sockets=None) -> None:
            # uvicorn always sleeps 100 ms to let open connections wind down; with none open
            # there is nothing to wait for
            if self.server_state.connections or self.server_state.tasks:
                await super().shutdown(sockets)
                return
            for server in self.servers:
                server.close()
            for sock in sockets or []:
                sock.close()
            if not self.force_exit:
                await self.lifespan.shutdown()

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            self.wake()

        def wake(self) -> None:
            loop, wake = getattr(self, "_loop", None), getattr(self, "_wake", None)
            if loop is None or wake is None or loop.is_closed():
                return  # not serving yet, or done: nothing to wake
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop closed in between (the Gateway stopped meanwhile)
                pass

    return Server


def preload() -> None:
    """Import what a Gateway needs, so processes forked later start serving at once."""
    import starlette.applications  # noqa: F401
    import starlette.staticfiles  # noqa: F401
    import uvicorn  # noqa: F401
    from uvicorn.config import HTTP_PROTOCOLS, LIFESPAN
    from uvicorn.importer import import_from_string

    # what uvicorn's Config.load() imports when the server starts (the HTTP protocol, httptools when it
    # is installed): tens of ms a forked Gateway would spend after saying it is ready, holding the GIL
    # its router thread needs to answer the Flow's wiring
    for name in (HTTP_PROTOCOLS["auto"], LIFESPAN["off"]):
        with contextlib.suppress(Exception):
            import_from_string(name)


def run_gateway(args: dict, report, die_with_parent: bool = False) -> int:
    """Entry point of a Gateway process."""
    import uvicorn

    ctx = make_context(args.get("curve"))
    host = args.get("host") or "127.0.0.1"
    try:
        router = _Router(ctx, args)
        if args.get("targets") is not None:
            router.connect(args["targets"])
        http_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        http_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit this; without it a keep-alive client waits ~40 ms per answer
        # (headers and body are two writes: Nagle holds the body until the client's delayed ACK)
        http_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        http_sock.bind((host, int(args.get("port_http") or 0)))
        http_sock.listen(512)
        http_sock.set_inheritable(False)
    except (OSError, JinadFabError) as exc:
        report({"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    thread = threading.Thread(target=router.loop, name="gateway-router", daemon=True)
    thread.start()
    ports = {"port_native": router.port_native, "port_http": http_sock.getsockname()[1],
             "port_results": router.port_results, "port_ctrl": router.port_ctrl}
    static_dir = args.get("static_dir")
    if static_dir and not os.path.isfile(os.path.join(static_dir, "index.html")):
        report({"state": "failed", "error": f"static_dir {static_dir!r} has no index.html"})
        return 1
    config = uvicorn.Config(_http_app(router, ctx, args.get("name") or "gateway", static_dir), log_level="warning",
                            lifespan="off", access_log=False, ws="none")  # no websocket routes: nothing to import
    server = _server_class()(config)
    if die_with_parent:
        from . import orphan

        async def watch() -> None:
            while not server.should_exit:
                if orphan.parent_gone():
                    server.should_exit = True
                await asyncio.sleep(0.5)
    else:
        watch = None

    def stop_on_router_exit() -> None:
        thread.join()
        server.should_exit = True
        server.wake()

    threading.Thread(target=stop_on_router_exit, daemon=True).start()
    report({"state": "ready", "pid": os.getpid(), "ports": ports, **ports})

    async def serve() -> None:
        if watch is not None:
            asyncio.get_running_loop().create_task(watch())
        await server.serve(sockets=[http_sock])

    try:
        asyncio.run(serve())
    finally:
        router.stopping = True
        thread.join(timeout=5)
        ctx.destroy(linger=0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return 0
