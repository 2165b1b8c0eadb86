"""Client: send Documents to a Flow's Gateway in batches, pipelined, with callbacks.

``Client(port=...)`` speaks the Gateway's native ZeroMQ protocol (default) or HTTP/JSON
(``protocol="http"``). ``post`` accepts Documents, dicts, strings, bytes or arrays, as a list,
an iterable or a generator, cuts them into requests of ``request_size`` and keeps up to
``prefetch`` requests in flight. Each answer goes to ``on_done`` (or ``on_error``) and then
``on_always``; an error with no ``on_error`` raises :class:`~jinad_fab.errors.RequestError`
naming the Pod that failed. :class:`AsyncClient` is the same for asyncio code.

The calling forms of Jina 1.x/2.x work: keyword arguments that are not options of ``post`` are
endpoint parameters (``search(docs, top_k=3)`` sends ``parameters={"top_k": 3}``), and
``show_progress=True`` draws a progress bar on stderr. Jina spellings that mean something else
here (``input_fn=``, ``output_fn=``, ``batch_size=``...) are refused, naming the new form.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import orjson
import zmq
import zmq.asyncio

from .document import Document, DocumentArray
from .errors import BadInput, PodDied, RequestError, RequestTimeout
from .runtime.sockets import recv_frames, send_frames
from .wire import Message, encode_docs, new_header

__all__ = ["Client", "AsyncClient", "Response"]

log = logging.getLogger("jinad_fab.client")

Callback = Callable[["Response"], Any] | None

# the options of `post`; any other keyword argument is an endpoint parameter
_OPTIONS = ("parameters", "request_size", "on_done", "on_error", "on_always", "return_results", "timeout",
            "show_progress")
_CALLBACKS = ("on_done", "on_error", "on_always")
# Jina 1.x/2.x keyword arguments spelled differently here: refused, naming what to write instead
_RENAMED = {
    "input_fn": "inputs=... (or the second positional argument)",
    "output_fn": "on_done=...",
    "callback": "on_done=...",
    "batch_size": "request_size=...",
    "continue_on_error": "on_error=<callback> (a failed request goes to it instead of raising)",
    "exec_endpoint": "post('/endpoint', inputs)",
}


def endpoint_parameters(parameters: dict | None, kwargs: dict[str, Any]) -> dict | None:
    """``parameters`` plus the keyword arguments that are not options of `post` (Jina's form)."""
    if not kwargs:
        return parameters
    if parameters is not None and not isinstance(parameters, dict):
        raise BadInput("`parameters` must be a dict")
    merged = dict(parameters or {})
    for key, value in kwargs.items():
        if key in _RENAMED:
            raise BadInput(f"`{key}=` is a Jina 1.x/2.x keyword; here write `{_RENAMED[key]}`")
        close = difflib.get_close_matches(key, _OPTIONS, n=1, cutoff=0.8)
        if close or callable(value):
            hint = (f"did you mean `{close[0]}=`?" if close else
                    f"a callback goes in {', '.join(c + '=' for c in _CALLBACKS)}")
            raise BadInput(f"`{key}=` is not an option of post(); other keyword arguments are endpoint "
                           f"parameters (JSON values, like top_k=3): {hint}")
        if key in merged and merged[key] != value:
            raise BadInput(f"`{key}` is given twice, as {key}={value!r} and in parameters ({merged[key]!r})")
        merged[key] = value
    return merged


class _ProgressBar:
    """``show_progress=True``: a rich progress bar on stderr, advanced as answers arrive."""

    def __init__(self, on: str, inputs: Any):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        if isinstance(inputs, (Document, dict, str, bytes)):
            total: int | None = 1
        else:  # a generator has no length: the bar then counts without a total
            total = len(inputs) if hasattr(inputs, "__len__") else None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed} Documents"),
            TextColumn("{task.fields[requests]} requests"), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), console=Console(stderr=True))
        self._task = self._progress.add_task(on, total=total, requests=0, rate="")
        self._started = time.monotonic()
        self._docs = self._requests = 0

    def __enter__(self) -> _ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def wrap(self, on_always: Callback) -> Callback:
        def advance(resp: Response) -> None:
            try:
                self._docs += len(resp.docs)
                self._requests += 1
                rate = self._docs / max(time.monotonic() - self._started, 1e-6)
                self._progress.update(self._task, completed=self._docs, requests=self._requests,
                                      rate=f"{rate:,.0f} Documents/s")
            finally:
                if on_always is not None:
                    on_always(resp)

        return advance


class Response:
    """One answer from the Gateway: its header and Documents (decoded on first access)."""

    __slots__ = ("_msg",)

    def __init__(self, msg: Message):
        self._msg = msg

    @property
    def header(self) -> dict:
        return self._msg.header

    @property
    def docs(self) -> DocumentArray:
        return self._msg.docs

    @property
    def request_id(self) -> str:
        return self._msg.request_id

    @property
    def endpoint(self) -> str:
        return self._msg.endpoint

    @property
    def parameters(self) -> dict:
        return self._msg.parameters

    @property
    def missing_shards(self) -> list[str]:
        """The shards (``pod/shard-N``) that could not answer: a read answered by the others. Empty
        when the answer is whole."""
        return list(self._msg.header.get("missing_shards") or ())

    @property
    def error(self) -> dict | None:
        return self._msg.header.get("err")

    @property
    def ok(self) -> bool:
        return not self.error

    def exception(self) -> RequestError | PodDied | None:
        err = self.error
        if not err:
            return None
        if err.get("type") == "PodDied":
            return PodDied(err.get("pod", "?"), err.get("msg", ""), response=self, shards=err.get("shards"))
        return RequestError(err.get("pod", "?"), err.get("type", "Error"), err.get("msg", ""), err.get("tb", ""),
                            response=self)

    def __repr__(self) -> str:
        state = f"ok, {len(self.docs)} Documents" if self.ok else f"error from {self.error.get('pod')!r}"
        return f"<Response {self.endpoint} {self.request_id[:8]} {state}>"


def to_document(item: Any) -> Document:
    if isinstance(item, Document):
        return item
    if isinstance(item, dict):
        return Document.from_dict(item)
    if isinstance(item, str):
        return Document(text=item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return Document(buffer=bytes(item))
    if isinstance(item, np.ndarray):
        return Document(blob=item)
    raise BadInput(f"cannot make a Document from {type(item).__name__}; pass Documents, dicts, str, bytes "
                   "or numpy arrays")


def batches(inputs: Any, request_size: int) -> Iterator[DocumentArray]:
    """Cut any input form into DocumentArrays of at most `request_size` Documents."""
    if not isinstance(request_size, int) or isinstance(request_size, bool) or request_size < 1:
        raise BadInput(f"request_size must be a positive integer, got {request_size!r}")
    if inputs is None:
        yield DocumentArray()
        return
    if isinstance(inputs, (Document, dict, str, bytes)):
        inputs = [inputs]
    elif isinstance(inputs, np.ndarray) and inputs.ndim and inputs.dtype.kind in "biufc":
        # one array per Document (its blob), built column-wise: rows are views of the input
        for i in range(0, len(inputs), request_size):
            yield DocumentArray._of_column("_blob", inputs[i:i + request_size])
        return
    elif isinstance(inputs, np.ndarray):
        inputs = iter(inputs)
    elif callable(inputs):
        inputs = inputs()
    if isinstance(inputs, DocumentArray):
        n = len(inputs)
        for i in range(0, n, request_size):
            yield inputs._range(i, min(i + request_size, n))
        return
    if isinstance(inputs, (list, tuple)):
        for i in range(0, len(inputs), request_size):
            yield _batch(inputs[i:i + request_size])
        return
    chunk: list = []
    for item in inputs:
        chunk.append(item)
        if len(chunk) >= request_size:
            yield _batch(chunk)
            chunk = []
    if chunk:
        yield _batch(chunk)


def _batch(items: list | tuple) -> DocumentArray:
    if all(map(str.__instancecheck__, items)):  # texts: built column-wise, no per-item dispatch
        return DocumentArray._of_column("text", list(items))
    return DocumentArray([to_document(x) for x in items])


class _Run:
    """Bookkeeping of one `post` call, shared by the sync and async drivers."""

    def __init__(self, on: str, parameters: dict | None, on_done: Callback, on_error: Callback,
                 on_always: Callback, return_results: bool):
        if not isinstance(on, str) or not on:
            raise BadInput(f"`on` must name an endpoint such as '/index', got {on!r}")
        if parameters is not None and not isinstance(parameters, dict):
            raise BadInput("`parameters` must be a dict")
        self.on = on
        self._endpoint = new_header("", on)["ep"]  # as every request of the call names it
        self.parameters = parameters or {}
        self.on_done, self.on_error, self.on_always = on_done, on_error, on_always
        self.return_results = return_results
        # whether the inputs are all in memory already (see Client._fill): requests may then wait
        # for each other to leave together; a generator's wait for its next item must not hold one back
        self.in_memory = False
        self._answers: dict[int, DocumentArray] = {}  # request number -> its Documents
        self._seq: dict[str, int] = {}
        self.inflight: dict[str, float] = {}
        self.missing_shards: set[str] = set()  # shards some answer of this call was given without
        # request ids: 96 random bits per call and a counter (one getrandom call, not one per request)
        self._prefix = os.urandom(12).hex()
        self._count = 0

    def request(self, docs: DocumentArray) -> tuple[str, list]:
        header, body = self.request_parts(docs)
        return header["rid"], [orjson.dumps(header), *body]

    def request_parts(self, docs: DocumentArray) -> tuple[dict, list]:
        """A new request's header and its body frames (the Documents encoded)."""
        n = self._count
        self._count = n + 1
        rid = self._prefix + format(n, "08x")
        self.inflight[rid] = time.monotonic()
        if self.return_results:  # (the order answers are put back in)
            self._seq[rid] = n
        # new_header's dict, without its checks once per request (the parameters dict is shared
        # by every request of the call: nothing changes a request's header in place)
        return {"rid": rid, "ep": self._endpoint, "params": self.parameters}, encode_docs(docs)

    @property
    def results(self) -> DocumentArray | None:
        """All answered Documents in the order the requests were sent (answers may arrive out of order)."""
        if not self.return_results:
            return None
        parts = [self._answers[k] for k in sorted(self._answers)]
        joined = DocumentArray._joined(parts)  # answers still held as columns: no Document built
        if joined is not None:
            return joined
        out = DocumentArray()
        for part in parts:
            out.extend(part)
        return out

    def answer(self, msg: Message) -> None:
        header = msg.header
        rid = header.get("rid", "")
        if self.inflight.pop(rid, None) is None:
            return  # a late answer to an earlier, abandoned call
        resp = Response(msg)
        exc = resp.exception() if header.get("err") else None
        if header.get("missing_shards"):  # a partial answer is never silent, even to a caller
            missing = set(resp.missing_shards) - self.missing_shards  # that only reads the Documents
            if missing:
                self.missing_shards |= missing
                log.warning("%s answered without shard(s) %s (their Pods lost them); see Response.missing_shards",
                            self.on, ", ".join(sorted(missing)))
        try:
            if exc is None:
                if self.on_done is not None:
                    self.on_done(resp)
                if self.return_results:
                    self._answers[self._seq.pop(rid)] = resp.docs
            elif self.on_error is not None:
                self.on_error(resp)
        finally:
            if self.on_always is not None:
                self.on_always(resp)
        if exc is not None and self.on_error is None:
            raise exc

    def oldest(self) -> float:
        return min(self.inflight.values()) if self.inflight else time.monotonic()


class _Base:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None, protocol: str = "native",
                 timeout: float | None = None, prefetch: int = 64,
                 health: Callable[[], dict | None] | None = None):
        """``health``, when given, is asked before each wait: it returns an error dict
        (``{"pod": name, "msg": why}``) once a Pod of the Flow is known to be dead (what Flow.client passes)."""
        if protocol not in ("native", "http"):
            raise BadInput(f"protocol must be 'native' or 'http', got {protocol!r}")
        if port is None:
            raise BadInput("Client needs the Gateway's port (Flow.port_expose)")
        self.host, self.port, self.protocol = host, int(port), protocol
        self.timeout = timeout
        self.prefetch = max(1, int(prefetch))
        self._health = health

    def _check(self, run: _Run, timeout: float | None) -> None:
        if self._health is not None:
            err = self._health()
            if err:
                raise PodDied(err.get("pod", "?"), err.get("msg", ""))
        if timeout is not None and run.inflight and time.monotonic() - run.oldest() > timeout:
            raise RequestTimeout(timeout, next(iter(run.inflight)))


class _ThreadSocket:
    """One thread's DEALER to the Gateway; when the thread ends and drops it, the socket is closed."""

    def __init__(self, sock: zmq.Socket, registry: set[zmq.Socket], lock: threading.Lock):
        self.sock = sock
        weakref.finalize(self, _forget, sock, registry, lock)


def _forget(sock: zmq.Socket, registry: set[zmq.Socket], lock: threading.Lock) -> None:
    with lock:
        registry.discard(sock)
    sock.close(linger=0)


class Client(_Base):
    """Synchronous client of a Flow's Gateway. One Client may be called from several threads at
    once: each thread talks over its own connection (a ZeroMQ socket is not thread-safe, and the
    answers to one thread's requests must not reach another's call)."""

    _http: Any = None
    # set by Flow.client: the Flow's in-process path to its Pods (runtime.direct), taken by native
    # calls when no other thread's call holds it
    _direct: Any = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._socks: set[zmq.Socket] = set()  # every thread's socket, for close()

    def _socket(self) -> zmq.Socket:
        # one DEALER per thread, kept open: a new TCP connection per call would cost more than the call
        mine = getattr(self._local, "socket", None)
        if mine is not None and not mine.sock.closed:
            return mine.sock
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVTIMEO, 100)  # how often a wait looks at the Flow's health and the timeout
        s.connect(f"tcp://{self.host}:{self.port}")
        with self._lock:
            self._socks.add(s)
        self._local.socket = _ThreadSocket(s, self._socks, self._lock)
        return s

    def _drop_socket(self) -> None:
        """Close this thread's socket only (other threads' calls keep theirs)."""
        mine = getattr(self._local, "socket", None)
        if mine is not None:
            self._local.socket = None
            _forget(mine.sock, self._socks, self._lock)

    def _http_client(self) -> Any:
        with self._lock:  # httpx.Client is safe to share between threads; make only one
            if self._http is None:
                import httpx

                # TCP_NODELAY: headers and body go out as separate writes; Nagle would hold the body for
                # the peer's delayed ACK (~40 ms per request)
                transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
                self._http = httpx.Client(base_url=f"http://{self.host}:{self.port}", transport=transport)
            return self._http

    def close(self) -> None:
        """Close every thread's connection to the Gateway (the next call reconnects). Not while
        another thread is in a call."""
        with self._lock:
            socks = list(self._socks)
            self._socks.clear()
            http, self._http = self._http, None
        for s in socks:
            s.close(linger=0)
        if http is not None:
            http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def post(self, on: str, inputs: Any = None, *, parameters: dict | None = None, request_size: int = 100,
             on_done: Callback = None, on_error: Callback = None, on_always: Callback = None,
             return_results: bool = True, timeout: float | None = None, show_progress: bool = False,
             **endpoint_params: Any) -> DocumentArray | None:
        """Send `inputs` to endpoint `on`; other keyword arguments are endpoint parameters (top_k=3)."""
        parameters = endpoint_parameters(parameters, endpoint_params)
        if show_progress:
            with _ProgressBar(on, inputs) as bar:
                return self.post(on, inputs, parameters=parameters, request_size=request_size, on_done=on_done,
                                 on_error=on_error, on_always=bar.wrap(on_always),
                                 return_results=return_results, timeout=timeout)
        run = _Run(on, parameters, on_done, on_error, on_always, return_results)
        run.in_memory = inputs is None or isinstance(inputs, (DocumentArray, list, tuple, np.ndarray, Document, dict,
                                                              str, bytes))
        timeout = timeout if timeout is not None else self.timeout
        if self.protocol == "http":
            self._post_http(run, batches(inputs, request_size), timeout)
        elif self._direct is not None and self._direct.begin():
            ok = False
            try:
                self._post_direct(run, batches(inputs, request_size), timeout)
                ok = True
            finally:
                self._direct.end(() if ok else list(run.inflight))
        else:
            self._post_native(run, batches(inputs, request_size), timeout)
        return run.results

    def _post_direct(self, run: _Run, reqs: Iterator[DocumentArray], timeout: float | None) -> None:
        """Through the Flow's in-process path (runtime.direct): planned here, sent to the first
        Pods, answered by the last Pods straight into this process."""
        path = self._direct
        ready = path.ready
        exhausted = False
        while True:
            exhausted = exhausted or self._fill(run, reqs, run.request_parts, path.send_burst)
            while ready:
                run.answer(ready.popleft())
            if not run.inflight:
                if exhausted:
                    break
                continue  # every answer is in (a burst can bring them all): send the next ones
            if not path.wait():
                self._check(run, timeout)

    def _fill(self, run: _Run, reqs: Iterator[DocumentArray], make: Callable[[DocumentArray], Any],
              send: Callable[[list], Any]) -> bool:
        """Fill the ``prefetch`` window: make the next requests and ``send`` them; whether the inputs
        ran out. From inputs already in memory, requests leave in bursts, back to back, once half
        of the window is answered: the socket's I/O thread (and the next process's) then wakes once
        per burst, not once per request (a send made after it went back to sleep costs a system
        call that wakes it). A request cut from a generator leaves as soon as it is made: the
        generator's next item may wait for its answer."""
        inflight = run.inflight
        prefetch = self.prefetch
        if not run.in_memory:
            while len(inflight) < prefetch:
                batch = next(reqs, None)
                if batch is None:
                    return True
                send([make(batch)])
            return False
        if len(inflight) > prefetch - max(1, prefetch // 2):
            return False
        burst = []
        exhausted = False
        while len(inflight) < prefetch:
            batch = next(reqs, None)
            if batch is None:
                exhausted = True
                break
            burst.append(make(batch))
        if burst:
            send(burst)
        return exhausted

    def _post_native(self, run: _Run, reqs: Iterator[DocumentArray], timeout: float | None) -> None:
        sock = self._socket()

        def send(burst: list[list]) -> None:
            for frames in burst:
                send_frames(sock, frames)

        ok = False
        try:
            exhausted = False
            while True:
                exhausted = exhausted or self._fill(run, reqs, lambda batch: run.request(batch)[1], send)
                if not run.inflight:
                    if exhausted:
                        break
                    continue
                try:  # a blocking receive (RCVTIMEO 100 ms): one call per answer, no poll before it
                    frames = recv_frames(sock)
                except zmq.Again:
                    self._check(run, timeout)
                    continue
                run.answer(Message.from_frames(frames))
            ok = True
        finally:
            if not ok:  # answers to abandoned requests must not reach this thread's next call
                self._drop_socket()

    def _post_http(self, run: _Run, reqs: Iterator[DocumentArray], timeout: float | None) -> None:
        import httpx

        http = self._http_client()
        for batch in reqs:
            rid, _ = run.request(batch)
            try:
                r = http.post(run.on, json={"data": batch.to_list(), "parameters": run.parameters},
                              timeout=timeout)
            except httpx.TimeoutException as exc:
                raise RequestTimeout(timeout or 0, rid) from exc
            except httpx.TransportError as exc:
                raise RequestError("gateway", type(exc).__name__, str(exc)) from exc
            run.answer(_http_message(r, rid, run.on))

    def index(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        return self.post("/index", inputs, **kwargs)

    def search(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        return self.post("/search", inputs, **kwargs)

    def update(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        return self.post("/update", inputs, **kwargs)

    def delete(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        """Delete by Documents or by ids: ``delete(['id1', 'id2'])``, ``delete('id1')``, or a mix."""
        return self.post("/delete", ids_to_documents(inputs), **kwargs)


def ids_to_documents(inputs: Any) -> Any:
    """For `delete`: a str is an id (not a text), in a list or alone."""
    if isinstance(inputs, str):
        return [Document(id=inputs)]
    if isinstance(inputs, (list, tuple)):
        return [Document(id=x) if isinstance(x, str) else x for x in inputs]
    return inputs


def _http_message(r: Any, rid: str, on: str) -> Message:
    body = r.json()
    header = body.get("header") or {"rid": rid, "ep": on}
    header["rid"] = rid
    if r.status_code >= 400 and not header.get("err"):
        header["err"] = {"pod": "gateway", "type": f"HTTP{r.status_code}", "msg": str(body.get("detail"))}
    return Message(header, docs=DocumentArray.from_list(body.get("data") or []))


class AsyncClient(_Base):
    """The asyncio twin of :class:`Client`: ``await client.post(...)``, or iterate ``stream(...)``."""

    async def post(self, on: str, inputs: Any = None, *, parameters: dict | None = None,
                   request_size: int = 100, on_done: Callback = None, on_error: Callback = None,
                   on_always: Callback = None, return_results: bool = True,
                   timeout: float | None = None, show_progress: bool = False,
                   **endpoint_params: Any) -> DocumentArray | None:
        if show_progress:
            with _ProgressBar(on, inputs) as bar:
                return await self.post(on, inputs, parameters=parameters, request_size=request_size,
                                       on_done=on_done, on_error=on_error, on_always=bar.wrap(on_always),
                                       return_results=return_results, timeout=timeout, **endpoint_params)
        run = _Run(on, endpoint_parameters(parameters, endpoint_params), on_done, on_error, on_always,
                   return_results)
        async for _ in self._drive(run, batches(inputs, request_size), timeout):
            pass
        return run.results

    async def stream(self, on: str, inputs: Any = None, *, parameters: dict | None = None,
                     request_size: int = 100, timeout: float | None = None) -> AsyncIterator[Response]:
        """Yield each Response as it arrives; a failed one raises."""
        got: list[Response] = []
        run = _Run(on, parameters, got.append, None, None, False)
        async for _ in self._drive(run, batches(inputs, request_size), timeout):
            while got:
                yield got.pop(0)

    async def _drive(self, run: _Run, reqs: Iterator[DocumentArray], timeout: float | None):
        timeout = timeout if timeout is not None else self.timeout
        if self.protocol == "http":
            import httpx

            transport = httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            async with httpx.AsyncClient(base_url=f"http://{self.host}:{self.port}", timeout=timeout,
                                         transport=transport) as http:
                for batch in reqs:
                    rid, _ = run.request(batch)
                    r = await http.post(run.on, json={"data": batch.to_list(), "parameters": run.parameters})
                    run.answer(_http_message(r, rid, run.on))
                    yield
            return
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://{self.host}:{self.port}")
        try:
            exhausted = False
            while True:
                while not exhausted and len(run.inflight) < self.prefetch:
                    batch = next(reqs, None)
                    if batch is None:
                        exhausted = True
                        break
                    _, frames = run.request(batch)
                    await sock.send_multipart(frames, copy=False)
                if not run.inflight:
                    break
                if await sock.poll(100):
                    frames = await sock.recv_multipart(copy=False)
                    run.answer(Message.from_frames(frames))
                    yield
                else:
                    self._check(run, timeout)
        finally:
            sock.close(linger=0)

    async def index(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        return await self.post("/index", inputs, **kwargs)

    async def search(self, inputs: Any = None, **kwargs: Any) -> DocumentArray | None:
        return await self.post("/search", inputs, **kwargs)

