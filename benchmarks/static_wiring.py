"""What static wiring (issue 17: exported Flows) costs next to the wiring Flow.start does.

    python benchmarks/static_wiring.py [--rounds 5] [--docs 10000]

One Flow, `a` (`_pass`, 2 replicas) then `b` (`_pass`), run twice at once on this machine:

* reference: ``Flow.start`` wires it (the Gateway and `b` push straight to `a`'s two replicas);
* static: every service started on its own with ``python -m jinad_fab.launch static
  --local-base-port`` (what an exported container runs, on loopback): `a` gets a head that the
  replicas connect to, so each request takes one hop more.

Both are measured in alternation, round by round, so they see the same load: docs/s for
``--docs`` text Documents (request_size=100, native protocol) and the p50/p99 of 500 one-Document
requests. Then, for the static Flow only, the time from a restarted head's process start to the
first answer through it (the replicas and the Gateway reconnect by themselves).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

from jinad_fab import Client, Document, DocumentArray, Flow
from jinad_fab.flow.static import plan
from jinad_fab.flow.yaml import load_flow

FLOW = """\
version: 1
with:
  port_native: {native}
  port_http: {http}
pods:
  - name: a
    uses: _pass
    parallel: 2
  - name: b
    uses: _pass
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_block(n: int) -> int:
    while True:
        base = _free_port()
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()


class StaticFlow:
    def __init__(self, root: pathlib.Path):
        self.root = root
        self.flow_file = root / "flow.yml"
        self.native, http = _free_port(), _free_port()
        self.flow_file.write_text(FLOW.format(native=self.native, http=http))
        self.base = _free_block(40)
        self.procs: dict[tuple[str, int], subprocess.Popen] = {}
        self.services = plan(load_flow(str(self.flow_file)), local_base_port=self.base)["services"]

    def start(self, role: str, replica: int = 0) -> subprocess.Popen:
        status = self.root / f"{role}-{replica}.json"
        status.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.launch", "static", "--yaml", str(self.flow_file),
                                 "--role", role, "--replica", str(replica), "--local-base-port", str(self.base),
                                 "--status-file", str(status)], cwd=self.root, stdin=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs[(role, replica)] = proc
        return proc

    def wait(self, role: str, replica: int = 0) -> None:
        status = self.root / f"{role}-{replica}.json"
        deadline = time.monotonic() + 60
        while not status.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{role} did not start")
            time.sleep(0.01)

    def up(self) -> None:
        for s in self.services:
            for r in range(s["replicas"]):
                self.start(s["name"], r)
        for role, r in list(self.procs):
            self.wait(role, r)

    def close(self) -> None:
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def throughput(client: Client, docs: DocumentArray) -> float:
    started = time.perf_counter()
    client.post("/index", docs, request_size=100)
    return len(docs) / (time.perf_counter() - started)


def latency(client: Client, n: int = 500) -> tuple[float, float]:
    one = DocumentArray([Document(text="hello")])
    times = []
    for _ in range(n):
        t = time.perf_counter()
        client.post("/index", one)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def reconnect_ms(static: StaticFlow, client: Client) -> float:
    """From the restarted head's process start to the first answer through it."""
    head = static.procs.pop(("a", 0))
    head.send_signal(signal.SIGKILL)
    head.wait()
    one = DocumentArray([Document(text="again")])
    started = time.perf_counter()
    static.start("a")
    while True:
        try:
            with Client(port=static.native, timeout=0.5) as c:
                c.post("/index", one)
            return (time.perf_counter() - started) * 1000
        except Exception:
            if time.perf_counter() - started > 60:
                raise


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--docs", type=int, default=10_000)
    ns = ap.parse_args()
    docs = DocumentArray([Document(text=f"document {i}") for i in range(ns.docs)])
    with tempfile.TemporaryDirectory(prefix="jinad-bench-static-") as tmp:
        static = StaticFlow(pathlib.Path(tmp))
        ref_flow = Flow().add(name="a", uses="_pass", parallel=2).add(name="b", uses="_pass")
        try:
            static.up()
            ref_flow.start()
            results: dict[str, dict[str, list[float]]] = {k: {"docs/s": [], "p50": [], "p99": []}
                                                          for k in ("Flow.start", "static")}
            with ref_flow.client() as ref, Client(port=static.native, timeout=30) as st:
                for _ in range(ns.rounds):
                    for name, client in (("Flow.start", ref), ("static", st)):
                        results[name]["docs/s"].append(throughput(client, docs))
                        p50, p99 = latency(client)
                        results[name]["p50"].append(p50)
                        results[name]["p99"].append(p99)
                restarts = [reconnect_ms(static, st) for _ in range(3)]
        finally:
            ref_flow.close()
            static.close()
    table = Table(title=f"static wiring vs Flow.start: 2 x _pass (a: 2 replicas), medians of {ns.rounds} rounds "
                        f"(load average {' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    for col in ("wiring", f"docs/s ({ns.docs:,} text docs)", "1-doc p50 ms", "1-doc p99 ms"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        table.add_row(name, f"{statistics.median(r['docs/s']):,.0f}", f"{statistics.median(r['p50']):.2f}",
                      f"{statistics.median(r['p99']):.2f}")
    console = Console()
    console.print(table)
    console.print(f"static: a killed head answers again {statistics.median(restarts):.0f} ms (median of 3) after "
                  "its new process starts (Python start-up and imports included)")


if __name__ == "__main__":
    main()
