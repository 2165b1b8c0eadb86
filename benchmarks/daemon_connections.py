"""500 slow sockets against a real `jinad` on loopback: is /alive still fast, are they all closed?

Prints a table: /alive latency (p50/p99 over N requests) with no slow sockets (the reference, same
run) and with 500 sockets that connect and trickle header bytes; then how many slow sockets the
daemon closed and when (its --header-timeout is the bound). Run: python benchmarks/daemon_connections.py
"""

from __future__ import annotations

import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx

SLOW = int(os.environ.get("SLOW_SOCKETS", "500"))
REQUESTS = int(os.environ.get("ALIVE_REQUESTS", "300"))
HEADER_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive_latencies(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client() as c:
        for _ in range(n):
            t0 = time.perf_counter()
            assert c.get(url + "/alive").status_code == 200
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.005)
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    home = pathlib.Path(tempfile.mkdtemp(prefix="jinad-bench-")) / "home"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.cli.daemon", "--port", str(port), "--home", str(home),
                             "--log-level", "warning", "--header-timeout", str(HEADER_TIMEOUT)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/alive", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        ref = alive_latencies(url, REQUESTS)
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(SLOW)]
        opened = time.monotonic()
        closed_at: list[float | None] = [None] * SLOW
        stop = threading.Event()
        header = b"GET /alive HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000
        sent = [0] * SLOW

        def trickle() -> None:
            while not stop.is_set() and any(c is None for c in closed_at):
                for i, s in enumerate(socks):
                    if closed_at[i] is not None:
                        continue
                    try:
                        s.send(header[sent[i]:sent[i] + 1])  # one byte of a valid header a round
                        sent[i] += 1
                        s.setblocking(False)
                        if s.recv(1) == b"":
                            closed_at[i] = time.monotonic() - opened
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed_at[i] = time.monotonic() - opened
                time.sleep(0.5)

        t = threading.Thread(target=trickle)
        t.start()
        loaded = alive_latencies(url, REQUESTS)
        t.join(HEADER_TIMEOUT * 3)
        stop.set()
        done = [c for c in closed_at if c is not None]
        print(f"jinad /alive with {SLOW} slow sockets (header timeout {HEADER_TIMEOUT:.0f} s), "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"{'case':<28}{'p50 ms':>10}{'p99 ms':>10}")
        print(f"{'reference (no slow sockets)':<28}{pct(ref, 50):>10.2f}{pct(ref, 99):>10.2f}")
        print(f"{f'{SLOW} trickling sockets':<28}{pct(loaded, 50):>10.2f}{pct(loaded, 99):>10.2f}")
        print(f"slow sockets closed by the daemon: {len(done)}/{SLOW}"
              + (f", the last after {max(done):.1f} s" if done else ""))
        for s in socks:
            s.close()
    finally:
        proc.terminate()
        proc.wait(15)


if __name__ == "__main__":
    main()
