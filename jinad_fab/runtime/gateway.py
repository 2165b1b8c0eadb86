"""The Gateway: the Flow's front door, speaking a native ZeroMQ protocol and HTTP/JSON.

Threads of a Gateway process:

* the *router* thread owns every ZeroMQ socket: ``native`` (ROUTER, clients' DEALERs connect),
  ``results`` (PULL, the last Pods push answers here), ``ctrl`` (REP), one PUSH per root Pod and
  an inproc PULL fed by the HTTP side. It forwards raw frames (no Document decoding) and joins
  the parts of an answer when the Flow ends in several Pods or shards;
* the main thread runs uvicorn with a small Starlette app: ``POST /<endpoint>`` with
  ``{"data": [...], "parameters": {...}}``, answered with ``{"data": [...], "header": {...}}``.

Every request is planned onto one replica of each replica set of the Flow, retried or failed
when a replica dies, and answered without the shards gone for good: see :mod:`.planner`, which
the in-process path of a Flow's own client (:mod:`.direct`) shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from typing import Any

import orjson
import zmq

from ..document import DocumentArray
from ..errors import BadInput, JinadFabError
from ..wire import Message, new_header
from .control import Commands
from .planner import Planner
from .shards import HEADER as MISSING
from .sockets import NOBLOCK, bind, make_context, readable, recv_frames, send_frames
from .targets import Targets

log = logging.getLogger("jinad_fab.gateway")

_HTTP_INPROC = "inproc://gateway-http"
MISSING_HTTP = "X-Missing-Shards"  # the HTTP response header naming the shards an answer lacks


class _Router(Planner):
    def __init__(self, ctx: zmq.Context, args: dict):
        self.ctx = ctx
        host = args.get("host") or "127.0.0.1"
        # clients are not members of the Flow: their port stays plain (CURVE guards the Flow's inside)
        self.native, self.port_native = bind(ctx, zmq.ROUTER, host, int(args.get("port_native") or 0),
                                             curve=False)
        self.results, self.port_results = bind(ctx, zmq.PULL, args.get("results_host") or host,
                                               int(args.get("port_results") or 0))
        self.ctrl, self.port_ctrl = bind(ctx, zmq.REP, args.get("ctrl_host") or host, int(args.get("port_ctrl") or 0))
        self.static = bool(args.get("static"))  # wired from configuration: watch the root Pods' connections
        self.http_in = ctx.socket(zmq.PULL)
        self.http_in.bind(_HTTP_INPROC)
        super().__init__(Targets(ctx, watch=self.static), num_parts=int(args.get("num_parts") or 1),
                         upstream=list(args.get("upstream") or []),
                         park_timeout=float(args.get("park_timeout") or 30.0))
        self.native_pending: dict[str, bytes] = {}
        self.http_pending: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self.stopping = False

    def loop(self) -> None:
        poller = zmq.Poller()
        for s in (self.native, self.results, self.ctrl, self.http_in):
            poller.register(s, zmq.POLLIN)
        commands = Commands(self.ctrl, {**self.handlers(), "terminate": self._terminate})
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

    def _waiting(self) -> list[str]:
        return list(self.native_pending) + list(self.http_pending)

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
