"""Throughput and latency of Flows of pass-through Pods, local and created through a local jinad.

    python benchmarks/flow_throughput.py [--quick] [--floor-only] [--curve-only] [--rounds 5]

First, the floor: a raw pyzmq chain of the same shape as a 2-Pod Flow (client PUSH -> two
forwarding processes, PULL -> PUSH -> client PULL) carrying the very frames jinad-fab's wire
produces for each batch (encoded before the clock, as the raw chain never encodes), with the same
64 requests in flight as the Client, measured in alternation with the 2-Pod Flow round by round;
the table prints the medians and the Flow's share of the floor (throughput) or its multiple of it
(1-Document p50), with the load average of the machine. The Flow is measured through its own
client (which plans and sends in-process, skipping the Gateway process, when every Pod is local
and plain: runtime.direct; the title says which path ran) and through its Gateway
(``client(direct=False)``, the path remote clients take), next to the raw chain with a gateway hop.

Then one table: docs/s for 10,000 and 100,000 Documents with request_size=100 through 2 and 3
`_pass` Pods (text Documents, and 128-d float32 embeddings), and the latency of 1-Document
requests (p50/p99 over 1,000 sequential requests) through the native and the HTTP gateway.
Documents are built before the clock starts; the clock covers send -> all answers received.

Then CURVE's cost (issue 14): 2 `_pass` Pods created through a local jinad, once with plain ZeroMQ
and once with CURVE (``secure=True``), both Flows running at once and measured in alternation
(every 10,000 Documents, text and 128-d embeddings, request_size=100; 1-Document requests one by
one), so both see the same load; the table prints the medians side by side. In the same rounds, the
raw pyzmq chain runs once with plain and once with CURVE hops (libzmq's own cost of CURVE for the
same frames over the same three hops), and every side's CPU per request is counted. Last, the CPU
time libsodium alone needs per request (one box and one open of each frame on each of the three
hops, with the calls libzmq makes and the library it runs) and the ratio a CPU-bound machine could
reach if that were CURVE's only cost: on a box whose cores every process shares, that is the ceiling.

The Jina 1.3.1 column holds figures measured with Jina 1.3.1 in a peer virtual environment (see
benchmarks/README.md for the recipe).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np
import psutil
import zmq
from rich.console import Console
from rich.table import Table

from jinad_fab import Document, DocumentArray, Flow
from jinad_fab.wire import Message, new_header

REFERENCE = {"text": 53_000, "embedding": 40_000, "p50_ms": 1.8, "p99_ms": 2.9, "http": 5_500}
REMOTE_REFERENCE = {"text": 39_000, "p50_ms": 3.1}  # real Jina 1.3.1 through JinaD, same machine


@contextlib.contextmanager
def local_daemon():
    """A real `jinad` on a free loopback port with a throw-away home: yields its address and token."""
    with tempfile.TemporaryDirectory(prefix="jinad-bench-") as home:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.cli.daemon", "--port", str(port), "--home", home,
                                 "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/alive", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("jinad did not start")
                time.sleep(0.1)
            token = (pathlib.Path(home) / "token").read_text().strip()  # written at start, 0600
            yield f"127.0.0.1:{port}", token
        finally:
            proc.terminate()
            proc.wait(15)


def make_docs(n: int, kind: str) -> DocumentArray:
    """n Documents built column by column (new ids, then their texts or a 128-d float32 embedding
    matrix), as a user feeding a Flow from a list of texts or a matrix does."""
    docs = DocumentArray.empty(n)
    if kind == "embedding":
        docs.embeddings = np.random.default_rng(0).random((n, 128), dtype=np.float32)
    else:
        docs.texts = [f"document number {i}" for i in range(n)]
    return docs


def throughput(flow: Flow, docs: DocumentArray, protocol: str = "native", warm: bool = True,
               client=None) -> float:
    client = client or flow.client(protocol=protocol)
    if warm:
        client.post("/index", docs[:200], request_size=100, return_results=False)  # warm up
    count = [0]

    def done(resp):
        count[0] += 1

    t0 = time.perf_counter()
    client.post("/index", docs, request_size=100, return_results=False, on_done=done)
    dt = time.perf_counter() - t0
    sent = -(-len(docs) // 100)
    if count[0] != sent:  # nothing lost on the way: every request answered, once
        raise RuntimeError(f"{sent} requests sent, {count[0]} answered")
    return len(docs) / dt


def latency_native(flow: Flow, n: int) -> tuple[float, float]:
    client = flow.client()
    doc = [Document(text="one")]
    for _ in range(50):
        client.post("/index", doc)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.post("/index", doc)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), float(np.percentile(samples, 99))


def latency_http(flow: Flow, n: int) -> tuple[float, float]:
    url = f"http://127.0.0.1:{flow.gateway_ports['http_port']}/index"
    body = {"data": [{"text": "one"}]}
    samples = []
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(transport=transport) as http:
        for _ in range(50):
            http.post(url, json=body)
        for _ in range(n):
            t0 = time.perf_counter()
            r = http.post(url, json=body)
            samples.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200
    return statistics.median(samples), float(np.percentile(samples, 99))


# ---------------------------------------------------------------------- the raw pyzmq floor
def cpu_seconds(procs: list) -> float:
    total = 0.0
    for p in procs:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def _curve_pair(pull: zmq.Socket, push: zmq.Socket, keys: tuple[bytes, ...] | None) -> None:
    """With keys (server public, server secret, client public, client secret): the PULL is a CURVE
    server, the PUSH a CURVE client (before bind/connect)."""
    if keys:
        pull.curve_server = True
        pull.curve_secretkey = keys[1]
        push.curve_serverkey, push.curve_publickey, push.curve_secretkey = keys[0], keys[2], keys[3]


def _forwarder(port_in: int, port_out: int, ready, keys: tuple[bytes, ...] | None = None) -> None:
    """One hop of the raw chain: PULL -> PUSH, frames untouched."""
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    push = ctx.socket(zmq.PUSH)
    _curve_pair(pull, push, keys)
    pull.bind(f"tcp://127.0.0.1:{port_in}")
    push.connect(f"tcp://127.0.0.1:{port_out}")
    ready.set()
    while True:
        frames = pull.recv_multipart(copy=False)
        if len(frames) == 1 and frames[0].bytes == b"stop":
            push.send(b"stop")
            break
        push.send_multipart(frames, copy=False)
    pull.close(linger=0)
    push.close(linger=1000)
    ctx.term()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawChain:
    """client PUSH -> forwarder -> forwarder -> client PULL, over TCP on loopback like a Flow;
    ``curve=True``: every hop is CURVE (libzmq's own, without a ZAP handler)."""

    def __init__(self, hops: int = 2, curve: bool = False):
        mp = multiprocessing.get_context("spawn")
        ports = [_free_port() for _ in range(hops + 1)]
        keys = (*zmq.curve_keypair(), *zmq.curve_keypair()) if curve else None
        self.ctx = zmq.Context()
        self.pull = self.ctx.socket(zmq.PULL)
        self.push = self.ctx.socket(zmq.PUSH)
        _curve_pair(self.pull, self.push, keys)
        self.pull.bind(f"tcp://127.0.0.1:{ports[-1]}")
        self.procs = []
        for i in range(hops):
            ready = mp.Event()
            p = mp.Process(target=_forwarder, args=(ports[i], ports[i + 1], ready, keys), daemon=True)
            p.start()
            ready.wait(30)
            self.procs.append(p)
        self.push.connect(f"tcp://127.0.0.1:{ports[0]}")
        self.push.send(b"warm")
        self.pull.recv()

    def throughput(self, batches: list[list], per_batch: int, window: int = 64) -> float:
        """docs/s sending pre-encoded batches with at most `window` in flight."""
        send, recv = self.push.send_multipart, self.pull.recv_multipart
        inflight = done = 0
        it = iter(batches)
        t0 = time.perf_counter()
        pending = len(batches)
        while done < pending:
            while inflight < window:
                frames = next(it, None)
                if frames is None:
                    break
                send(frames, copy=False)
                inflight += 1
            recv(copy=False)
            inflight -= 1
            done += 1
        return done * per_batch / (time.perf_counter() - t0)

    def latency(self, frames: list, n: int) -> tuple[float, float]:
        for _ in range(50):
            self.push.send_multipart(frames, copy=False)
            self.pull.recv_multipart(copy=False)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.push.send_multipart(frames, copy=False)
            self.pull.recv_multipart(copy=False)
            samples.append((time.perf_counter() - t0) * 1000)
        return statistics.median(samples), float(np.percentile(samples, 99))

    def close(self) -> None:
        self.push.send(b"stop")
        self.pull.recv()
        for p in self.procs:
            p.join(10)
        self.push.close(linger=0)
        self.pull.close(linger=0)
        self.ctx.term()


def _gateway_hop(port_client: int, port_first: int, port_results: int, ready) -> None:
    """A Gateway's two crossings without its work: ROUTER (the client's DEALER) -> PUSH to the first
    hop, and PULL from the last hop -> ROUTER back to the client, frames untouched."""
    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    front.bind(f"tcp://127.0.0.1:{port_client}")
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port_first}")
    back = ctx.socket(zmq.PULL)
    back.bind(f"tcp://127.0.0.1:{port_results}")
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    ready.set()
    client = b""
    while True:
        events = dict(poller.poll())
        if front in events:
            frames = front.recv_multipart(copy=False)
            client = frames[0].bytes
            push.send_multipart(frames[1:], copy=False)
        if back in events:
            frames = back.recv_multipart(copy=False)
            front.send_multipart([client, *frames], copy=False)
            if len(frames) == 1 and frames[0].bytes == b"stop":
                break
    for s in (front, push, back):
        s.close(linger=1000)
    ctx.term()


class RawGatewayChain(RawChain):
    """The raw chain in a Flow's shape: client DEALER -> gateway hop -> forwarder -> forwarder ->
    the same gateway hop -> client, so every request crosses one process twice as it crosses a
    Flow's Gateway (5 TCP hops, against the floor's 3), with no work done anywhere."""

    def __init__(self, hops: int = 2):
        mp = multiprocessing.get_context("spawn")
        port_client, port_results = _free_port(), _free_port()
        ports = [_free_port() for _ in range(hops)] + [port_results]
        self.ctx = zmq.Context()
        self.procs = []
        for target, args in [(_gateway_hop, (port_client, ports[0], port_results))] + [
                (_forwarder, (ports[i], ports[i + 1])) for i in range(hops)]:
            ready = mp.Event()
            p = mp.Process(target=target, args=(*args, ready), daemon=True)
            p.start()
            ready.wait(30)
            self.procs.append(p)
        self.push = self.pull = self.ctx.socket(zmq.DEALER)  # one socket both ways, as the Client's
        self.push.connect(f"tcp://127.0.0.1:{port_client}")
        self.push.send(b"warm")
        self.pull.recv()


def wire_frames(docs: DocumentArray, request_size: int = 100) -> list[list]:
    """The frames the Client sends for these Documents (header included), one list per request."""
    return [Message(new_header(os.urandom(16).hex(), "/index"), docs=docs[i:i + request_size]).frames()
            for i in range(0, len(docs), request_size)]


def floor_table(rounds: int, n: int, lat_n: int) -> Table:
    """2 `_pass` Pods against the raw chain and the raw chain with a gateway hop, alternating in
    small slices so all of them see the same load. The Flow is measured twice: through its own
    client (the in-process path, runtime.direct, when the Flow has one: `Flow.direct`) and through
    its Gateway process (``client(direct=False)``, the path of remote clients).

    Throughput: the n Documents go in slices of 10,000, each slice through the raw chain, the raw
    gateway-hop chain and then the Flow; docs/s is all Documents over the summed time of each side,
    per round, and the table gives the median round. Latency: 1-Document requests alternate one by one."""
    sides = ("raw", "gw", "flow", "flow_gw")
    chains = {"raw": RawChain(2), "gw": RawGatewayChain(2)}
    f = Flow().add(name="p0", uses="_pass").add(name="p1", uses="_pass")
    rates: dict[tuple[str, str], list[float]] = {}
    lat: dict[str, list[float]] = {side: [] for side in sides}
    sizes: dict[str, int] = {}
    step = min(n, 10_000)
    try:
        with f:
            client = f.client()
            clients = {"flow": client, "flow_gw": f.client(direct=False)}
            direct = f.direct
            data = {kind: make_docs(n, kind) for kind in ("text", "embedding")}
            frames = {kind: wire_frames(docs) for kind, docs in data.items()}
            for kind, fr in frames.items():
                sizes[kind] = sum(len(memoryview(x).cast("B")) for x in fr[0])
            one_doc = [Document(text="one")]
            one = wire_frames(DocumentArray(one_doc))[0]
            me = psutil.Process()
            pids = {side: {p.pid for p in chain.procs} for side, chain in chains.items()}
            procs = {side: [me] + [psutil.Process(pid) for pid in pids[side]] for side in chains}
            procs["flow"] = procs["flow_gw"] = [me] + [p for p in me.children(recursive=True)
                                                       if p.pid not in pids["raw"] | pids["gw"]]
            cpu = {(kind, side): 0.0 for kind in ("text", "embedding") for side in sides}
            for c in clients.values():
                throughput(f, data["text"][:2000], client=c)  # warm every path up
            for chain in chains.values():
                chain.throughput(frames["text"][:20], 100)
            for _ in range(rounds):
                for kind in ("text", "embedding"):
                    spent = dict.fromkeys(sides, 0.0)
                    for i in range(0, n, step):
                        for side in sides:
                            c0 = cpu_seconds(procs[side])
                            if side in clients:
                                rate = throughput(f, data[kind][i:i + step], warm=False, client=clients[side])
                            else:
                                rate = chains[side].throughput(frames[kind][i // 100:(i + step) // 100], 100)
                            cpu[(kind, side)] += cpu_seconds(procs[side]) - c0
                            spent[side] += step / rate
                    for side in sides:
                        rates.setdefault((kind, side), []).append(n / spent[side])
            for _ in range(lat_n):
                for side in sides:
                    t0 = time.perf_counter()
                    if side in clients:
                        clients[side].post("/index", one_doc)
                    else:
                        chains[side].push.send_multipart(one, copy=False)
                        chains[side].pull.recv_multipart(copy=False)
                    lat[side].append((time.perf_counter() - t0) * 1000)
    finally:
        for chain in chains.values():
            chain.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    path = ("its own client plans and sends in-process (runtime.direct), no Gateway hop" if direct else
            "this Flow has no in-process path: its own client goes through the Gateway")
    t = Table(title=f"2 `_pass` Pods vs the raw pyzmq chain (floor) and the raw chain with a gateway hop (no "
                    f"work), {n:,} docs, request_size=100, median of {rounds} rounds alternating every 10,000 "
                    f"docs; Flow: {path}; load average {load} on {os.cpu_count()} CPUs")
    for col in ("measure", "bytes/request", "raw pyzmq chain", "raw + gateway hop", "jinad-fab Flow",
                "Flow vs floor", "Flow via its Gateway", "via Gateway vs raw + gateway hop", "target"):
        t.add_column(col, justify="right")
    for kind in ("text", "embedding"):
        raw, gw, flow, fgw = (med[(kind, side)] for side in sides)
        t.add_row(f"{kind} docs/s", f"{sizes[kind]:,}", f"{raw:,.0f}", f"{gw:,.0f} ({gw / raw:.0%})", f"{flow:,.0f}",
                  f"{flow / raw:.0%}", f"{fgw:,.0f} ({fgw / raw:.0%})", f"{fgw / gw:.0%}", ">= 60% of floor")
    requests = rounds * n / 100
    for kind in ("text", "embedding"):  # CPU of every process on each side (the client's counts for all)
        raw, gw, flow, fgw = (cpu[(kind, side)] / requests * 1e6 for side in sides)
        t.add_row(f"{kind} CPU us/request, all processes", "-", f"{raw:,.0f}", f"{gw:,.0f}", f"{flow:,.0f}",
                  f"{raw / flow:.0%}", f"{fgw:,.0f}", f"{gw / fgw:.0%}", "-")
    for q, name in ((50, "p50"), (99, "p99")):
        raw, gw, flow, fgw = (float(np.percentile(lat[side], q)) for side in sides)
        t.add_row(f"1-doc {name} ms ({lat_n:,} each, alternating)", "-", f"{raw:.3f}",
                  f"{gw:.3f} ({gw / raw:.2f}x)", f"{flow:.3f}", f"{flow / raw:.2f}x",
                  f"{fgw:.3f} ({fgw / raw:.2f}x)", f"{fgw / gw:.2f}x", "<= 1.5x floor" if q == 50 else "-")
    return t


def _libsodium() -> ctypes.CDLL | None:
    """The libsodium libzmq runs CURVE with: the copy pyzmq's wheel bundles, else the system's."""
    bundled = sorted(pathlib.Path(zmq.__file__).resolve().parent.parent.glob("pyzmq.libs/libsodium*"))
    name = str(bundled[0]) if bundled else ctypes.util.find_library("sodium")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    if lib.sodium_init() < 0:
        return None
    lib.sodium_version_string.restype = ctypes.c_char_p
    return lib


def sodium_seconds(lib: ctypes.CDLL, sizes: list[int], repeat: int = 300) -> float:
    """Seconds one core spends in libsodium to box and open one message of frames of these sizes,
    with the calls libzmq 4.3 makes per CURVE frame (crypto_box_easy_afternm and
    crypto_box_open_easy_afternm with a precomputed key); the median of 5 runs of `repeat`, in this
    thread's CPU time (on a shared machine the wall clock would count other processes' turns)."""
    public, secret, key = (ctypes.create_string_buffer(32) for _ in range(3))
    lib.crypto_box_keypair(public, secret)
    lib.crypto_box_beforenm(key, public, secret)
    nonce = ctypes.create_string_buffer(24)
    bufs = [(ctypes.create_string_buffer(os.urandom(n), n), ctypes.create_string_buffer(n + 16),
             ctypes.create_string_buffer(n + 16), ctypes.c_ulonglong(n)) for n in sizes]
    runs = []
    for _ in range(5):
        t0 = time.thread_time()
        for _ in range(repeat):
            for plain, boxed, opened, n in bufs:
                lib.crypto_box_easy_afternm(boxed, plain, n, nonce, key)
                if lib.crypto_box_open_easy_afternm(opened, boxed, ctypes.c_ulonglong(n.value + 16), nonce, key):
                    raise RuntimeError("libsodium could not open its own box")
        runs.append((time.thread_time() - t0) / repeat)
    return statistics.median(runs)


def curve_table(rounds: int, n: int, lat_n: int) -> Table:
    """2 remote `_pass` Pods through a local jinad, CURVE off and on, alternating like floor_table,
    next to the raw pyzmq chain with plain and CURVE hops (libzmq's own cost of CURVE for the same
    frames on the same three hops) and to libsodium alone."""
    kinds = ("text", "embedding")
    sides = [("raw", False), ("raw", True), ("flow", False), ("flow", True)]
    rates: dict[tuple[str, tuple[str, bool]], list[float]] = {}
    cpu: dict[tuple[str, tuple[str, bool]], float] = {(k, side): 0.0 for k in kinds for side in sides}
    lat: dict[bool, list[float]] = {False: [], True: []}
    step = min(n, 10_000)
    me = psutil.Process()
    chains = {}
    with local_daemon() as (host, token), contextlib.ExitStack() as stack:
        for secure in (False, True):
            chains[secure] = RawChain(2, curve=secure)
            stack.callback(chains[secure].close)
        procs: dict[tuple[str, bool], list[psutil.Process]] = {
            ("raw", secure): [me] + [psutil.Process(p.pid) for p in chains[secure].procs] for secure in (False, True)}
        flows, seen = {}, {p.pid for p in me.children(recursive=True)}  # jinad, the raw chains
        for secure in (False, True):  # one after the other, to tell each Flow's processes apart
            flows[secure] = Flow(quiet_remote_logs=True, secure=secure, token=token).add(
                name="r0", uses="_pass", host=host).add(name="r1", uses="_pass", host=host)
            stack.enter_context(flows[secure])
            mine = [p for p in me.children(recursive=True) if p.pid not in seen]  # its Gateway, its Pods
            seen |= {p.pid for p in mine}
            procs[("flow", secure)] = [me] + mine
        assert flows[True].secure and not flows[False].secure
        clients = {secure: f.client() for secure, f in flows.items()}
        data = {kind: make_docs(n, kind) for kind in kinds}
        frames = {kind: wire_frames(docs) for kind, docs in data.items()}
        sizes = {kind: [len(memoryview(x).cast("B")) for x in fr[0]] for kind, fr in frames.items()}
        for secure, f in flows.items():  # warm every side up
            throughput(f, data["text"][:2000], client=clients[secure])
            chains[secure].throughput(frames["text"][:20], 100)
        for _ in range(rounds):
            for kind in kinds:
                spent = dict.fromkeys(sides, 0.0)
                for i in range(0, n, step):
                    for side in sides:
                        kind_of, secure = side
                        c0 = cpu_seconds(procs[side])
                        if kind_of == "raw":
                            rate = chains[secure].throughput(frames[kind][i // 100:(i + step) // 100], 100)
                        else:
                            rate = throughput(flows[secure], data[kind][i:i + step], warm=False,
                                              client=clients[secure])
                        cpu[(kind, side)] += cpu_seconds(procs[side]) - c0
                        spent[side] += step / rate
                for side, t in spent.items():
                    rates.setdefault((kind, side), []).append(n / t)
        one_doc = [Document(text="one")]
        for secure in flows:
            for _ in range(50):
                clients[secure].post("/index", one_doc)
        for _ in range(lat_n):
            for secure in (False, True):
                t0 = time.perf_counter()
                clients[secure].post("/index", one_doc)
                lat[secure].append((time.perf_counter() - t0) * 1000)
    sodium = _libsodium()
    crypto = {kind: sodium_seconds(sodium, sizes[kind]) for kind in kinds} if sodium else {}
    med = {k: statistics.median(v) for k, v in rates.items()}
    requests = rounds * n / 100
    us = {k: v / requests * 1e6 for k, v in cpu.items()}
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    t = Table(title=f"2 remote `_pass` Pods through a local jinad: plain ZeroMQ vs CURVE, {n:,} docs, "
                    f"request_size=100, median of {rounds} rounds alternating every {step:,} docs with the raw "
                    f"pyzmq chain (same frames, 3 hops, plain and CURVE); load average {load} on {os.cpu_count()} CPUs")
    for col in ("measure", "raw plain", "raw CURVE", "raw CURVE vs plain", "Flow plain", "Flow CURVE",
                "Flow CURVE vs plain", "target"):
        t.add_column(col, justify="right")
    for kind in kinds:
        r = [med[(kind, side)] for side in sides]
        t.add_row(f"{kind} docs/s", f"{r[0]:,.0f}", f"{r[1]:,.0f}", f"{r[1] / r[0]:.0%}", f"{r[2]:,.0f}",
                  f"{r[3]:,.0f}", f"{r[3] / r[2]:.0%}", ">= 85%")
    for kind in kinds:  # CPU of every process on each side (the client's counts for all four)
        c = [us[(kind, side)] for side in sides]
        t.add_row(f"{kind} CPU us/request, all processes", f"{c[0]:,.0f}", f"{c[1]:,.0f}", f"{c[1] - c[0]:+,.0f}",
                  f"{c[2]:,.0f}", f"{c[3]:,.0f}", f"{c[3] - c[2]:+,.0f}", "-")
    if sodium is not None:
        version = sodium.sodium_version_string().decode()
        for kind in kinds:
            # every request is boxed once and opened once on each of the 3 CURVE hops
            need = 3 * crypto[kind] * 1e6
            mb = 2 * sum(sizes[kind]) / crypto[kind] / 1e6
            t.add_row(f"{kind}: libsodium {version} alone, us/request (3 hops x box+open of "
                      f"{sum(sizes[kind]):,} B, {mb:,.0f} MB/s on one core)", "-", f"{need:,.0f}", "-", "-",
                      f"{need:,.0f}", "-", "-")
            plain = us[(kind, ("flow", False))]
            t.add_row(f"{kind}: CURVE vs plain if CPU-bound and libsodium the only extra cost",
                      "-", "-", "-", "-", "-", f"{plain / (plain + need):.0%}", "-")
    for q, name in ((50, "p50"), (99, "p99")):
        plain, curve = float(np.percentile(lat[False], q)), float(np.percentile(lat[True], q))
        t.add_row(f"1-doc {name} ms ({lat_n:,} each, alternating)", "-", "-", "-", f"{plain:.3f}", f"{curve:.3f}",
                  f"{curve - plain:+.3f} ms", "<= +0.2 ms" if q == 50 else "-")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10k docs only, 200 latency samples")
    ap.add_argument("--floor-only", action="store_true", help="only the comparison with the raw pyzmq chain")
    ap.add_argument("--curve-only", action="store_true", help="only remote Pods with CURVE off and on")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (raw chain, CURVE off/on)")
    ns = ap.parse_args()
    sizes = [10_000] if ns.quick else [10_000, 100_000]
    lat_n = 200 if ns.quick else 1_000
    if ns.curve_only:
        Console(width=150).print(curve_table(ns.rounds, sizes[-1], lat_n))
        return
    Console(width=240).print(floor_table(ns.rounds, sizes[-1], lat_n))
    if ns.floor_only:
        return
    table = Table(title="Flow throughput (request_size=100; native: the Flow's own client, in-process for "
                        "local Pods, through the Gateway for remote ones)")
    for col in ("Pods", "docs", "content", "protocol", "docs/s", "vs Jina 1.3.1"):
        table.add_column(col, justify="right")
    lat = Table(title="1-Document request latency (sequential)")
    for col in ("Pods", "protocol", "p50 ms", "p99 ms", "Jina 1.3.1 p50 / p99"):
        lat.add_column(col, justify="right")
    for pods in (2, 3):
        f = Flow()
        for i in range(pods):
            f = f.add(name=f"p{i}", uses="_pass")
        with f:
            for kind in ("text", "embedding"):
                for n in sizes:
                    docs = make_docs(n, kind)
                    rate = throughput(f, docs)
                    table.add_row(str(pods), f"{n:,}", kind, "native", f"{rate:,.0f}",
                                  f"{rate / REFERENCE[kind]:.1f}x")
            docs = make_docs(10_000, "text")
            rate = throughput(f, docs, protocol="http")
            table.add_row(str(pods), "10,000", "text", "http", f"{rate:,.0f}", f"{rate / REFERENCE['http']:.1f}x")
            p50, p99 = latency_native(f, lat_n)
            lat.add_row(str(pods), "native", f"{p50:.2f}", f"{p99:.2f}",
                        f"{REFERENCE['p50_ms']} / {REFERENCE['p99_ms']}")
            p50, p99 = latency_http(f, lat_n)
            lat.add_row(str(pods), "http", f"{p50:.2f}", f"{p99:.2f}", "-")
    with local_daemon() as (host, token):
        f = Flow(quiet_remote_logs=True, token=token).add(name="r0", uses="_pass", host=host).add(name="r1", uses="_pass",
                                                                                    host=host)
        with f:
            for n in sizes:
                rate = throughput(f, make_docs(n, "text"))
                table.add_row("2 remote", f"{n:,}", "text", "native", f"{rate:,.0f}",
                              f"{rate / REMOTE_REFERENCE['text']:.1f}x (JinaD)")
            p50, p99 = latency_native(f, lat_n)
            lat.add_row("2 remote", "native", f"{p50:.2f}", f"{p99:.2f}", f"{REMOTE_REFERENCE['p50_ms']} / - (JinaD)")
    console = Console(width=150)
    console.print(table)
    console.print(lat)
    console.print(curve_table(ns.rounds, sizes[-1], lat_n))


if __name__ == "__main__":
    main()
