"""Throughput and latency of Flows of pass-through Pods, local and created through a local jinad.

    python benchmarks/flow_throughput.py [--quick]

Prints one table: docs/s for 10,000 and 100,000 Documents with request_size=100 through 2 and 3
`_pass` Pods (text Documents, and 128-d float32 embeddings), and the latency of 1-Document
requests (p50/p99 over 1,000 sequential requests) through the native and the HTTP gateway.
Documents are built before the clock starts; the clock covers send -> all answers received.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from jinad_fab import Document, DocumentArray, Flow

REFERENCE = {"text": 53_000, "embedding": 40_000, "p50_ms": 1.8, "p99_ms": 2.9, "http": 5_500}
REMOTE_REFERENCE = {"text": 39_000, "p50_ms": 3.1}  # real Jina 1.3.1 through JinaD, same machine


@contextlib.contextmanager
def local_daemon():
    """A real `jinad` on a free loopback port with a throw-away home."""
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
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(15)


def make_docs(n: int, kind: str) -> DocumentArray:
    docs = DocumentArray(Document(text=f"document number {i}") for i in range(n))
    if kind == "embedding":
        docs = DocumentArray(Document() for _ in range(n))
        docs.embeddings = np.random.default_rng(0).random((n, 128), dtype=np.float32)
    return docs


def throughput(flow: Flow, docs: DocumentArray, protocol: str = "native") -> float:
    client = flow.client(protocol=protocol)
    client.post("/index", docs[:200], request_size=100, return_results=False)  # warm up
    count = [0]

    def done(resp):
        count[0] += len(resp.docs) if protocol == "http" else 100

    t0 = time.perf_counter()
    client.post("/index", docs, request_size=100, return_results=False, on_done=done)
    dt = time.perf_counter() - t0
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10k docs only, 200 latency samples")
    ns = ap.parse_args()
    sizes = [10_000] if ns.quick else [10_000, 100_000]
    lat_n = 200 if ns.quick else 1_000
    table = Table(title="Flow throughput (local Pods, request_size=100)")
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
    with local_daemon() as host:
        f = Flow(quiet_remote_logs=True).add(name="r0", uses="_pass", host=host).add(name="r1", uses="_pass",
                                                                                    host=host)
        with f:
            for n in sizes:
                rate = throughput(f, make_docs(n, "text"))
                table.add_row("2 remote", f"{n:,}", "text", "native", f"{rate:,.0f}",
                              f"{rate / REMOTE_REFERENCE['text']:.1f}x (JinaD)")
            p50, p99 = latency_native(f, lat_n)
            lat.add_row("2 remote", "native", f"{p50:.2f}", f"{p99:.2f}", f"{REMOTE_REFERENCE['p50_ms']} / - (JinaD)")
    console = Console()
    console.print(table)
    console.print(lat)


if __name__ == "__main__":
    main()
