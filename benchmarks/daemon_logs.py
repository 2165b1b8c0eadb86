"""`GET /logs/{id}?tail=100` on a 300 MB log against a real `jinad`: time, daemon RSS, /alive.

Prints: the tail request's time (median of 20), the daemon's peak RSS growth while serving it, and
/alive p50/p99 alone (the reference, same run) and while tail requests run back to back.
Run: python benchmarks/daemon_logs.py  (LOG_MB=300 by default)
"""

from __future__ import annotations

import json
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
import psutil

LOG_MB = int(os.environ.get("LOG_MB", "300"))
OBJECT_ID = "jflow-" + "0" * 31 + "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_log(path: pathlib.Path, mb: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps({"ts": 1.0, "level": "INFO", "source": "pea", "msg": "x" * 180}) + "\n").encode()
    block = line * (1024 * 1024 // len(line))
    with open(path, "wb") as fh:
        for _ in range(mb):
            fh.write(block)
    return path.stat().st_size


def alive_p(url: str, n: int, headers: dict) -> tuple[float, float]:
    out = []
    with httpx.Client(headers=headers) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            c.get(url + "/alive")
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.005)
    q = statistics.quantiles(out, n=100)
    return q[49], q[98]


def main() -> None:
    home = pathlib.Path(tempfile.mkdtemp(prefix="jinad-bench-")) / "home"
    size = write_log(home / "logs" / f"{OBJECT_ID}.log", LOG_MB)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.cli.daemon", "--port", str(port), "--home", str(home),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                if httpx.get(url + "/alive", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        headers = {"authorization": "Bearer " + (home / "token").read_text().strip()}
        daemon = psutil.Process(proc.pid)
        ref = alive_p(url, 300, headers)
        rss0 = daemon.memory_info().rss
        peak = rss0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, daemon.memory_info().rss)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        times = []
        with httpx.Client(headers=headers, timeout=120) as c:
            for _ in range(20):
                t0 = time.perf_counter()
                r = c.get(f"{url}/logs/{OBJECT_ID}", params={"tail": 100})
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200 and r.text.count("\n") == 100, r.text[:200]

        def hammer() -> None:
            with httpx.Client(headers=headers, timeout=120) as c:
                while not stop.is_set():
                    c.get(f"{url}/logs/{OBJECT_ID}", params={"tail": 100})

        h = threading.Thread(target=hammer)
        h.start()
        loaded = alive_p(url, 300, headers)
        stop.set()
        h.join()
        sampler.join()
        print(f"jinad GET /logs/{{id}}?tail=100 on a {size / 1e6:.0f} MB log, load average {os.getloadavg()[0]:.2f}")
        print(f"tail=100: median {statistics.median(times):.1f} ms (min {min(times):.1f}, max {max(times):.1f})")
        print(f"daemon RSS {rss0 / 1e6:.0f} MB, peak growth while serving tails {(peak - rss0) / 1e6:.1f} MB")
        print(f"{'/alive':<34}{'p50 ms':>10}{'p99 ms':>10}")
        print(f"{'reference (no log reads)':<34}{ref[0]:>10.2f}{ref[1]:>10.2f}")
        print(f"{'while tail=100 runs back to back':<34}{loaded[0]:>10.2f}{loaded[1]:>10.2f}")
    finally:
        proc.terminate()
        proc.wait(15)


if __name__ == "__main__":
    main()
