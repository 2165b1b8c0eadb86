"""Latency of the jinad REST API against a real daemon on loopback; prints a table.

    python benchmarks/daemon_api.py [--rounds 30]

Measures p50/p99 of: health, create/delete a 2-Pod Flow, create/delete a Pod, and health under
100 concurrent clients. Reference numbers are real JinaD 1.3.1 on the same kind of machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

REFERENCE_MS = {"health": 1.7, "create flow": 105, "delete flow": 523, "create pod": 37, "delete pod": 121}
FLOW_YML = "!Flow\nversion: '1'\npods:\n  - name: a\n    uses: _logforward\n  - name: b\n    uses: _logforward\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


async def _concurrent_health(url: str, clients: int, per_client: int) -> list[float]:
    out: list[float] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as c:
        async def one() -> None:
            for _ in range(per_client):
                t = time.perf_counter()
                r = await c.get("/alive")
                out.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200
        await asyncio.gather(*(one() for _ in range(clients)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ns = ap.parse_args()
    repo = pathlib.Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="jinad-bench-") as home:
        port = _free_port()
        env = dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.cli.daemon", "--port", str(port), "--home", home,
                                 "--log-level", "warning"], env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            c = httpx.Client(base_url=url, timeout=60)
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if c.get("/alive").status_code == 200:
                        break
                time.sleep(0.05)
            wid = c.post("/workspaces", files=[("files", ("flow.yml", FLOW_YML.encode()))]).json()["id"]
            while c.get(f"/workspaces/{wid}").json()["state"] not in ("ACTIVE", "FAILED"):
                time.sleep(0.05)
            results: dict[str, list[float]] = {k: [] for k in REFERENCE_MS}
            for _ in range(200):
                results["health"].append(_timed(lambda: c.get("/alive").raise_for_status()))
            box: dict = {}  # the last created object
            for _ in range(ns.rounds):
                results["create flow"].append(_timed(lambda: box.update(
                    c.post("/flows", params={"workspace_id": wid}).raise_for_status().json())))
                results["delete flow"].append(_timed(lambda: c.delete(f"/flows/{box['id']}").raise_for_status()))
                results["create pod"].append(_timed(lambda: box.update(
                    c.post("/pods", params={"workspace_id": wid}, json={"name": "p"}).raise_for_status().json())))
                results["delete pod"].append(_timed(lambda: c.delete(f"/pods/{box['id']}").raise_for_status()))
            results["health x100 clients"] = asyncio.run(_concurrent_health(url, 100, 20))
            c.delete(f"/workspaces/{wid}")
            c.close()
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"{'operation':<22}{'p50 ms':>10}{'p99 ms':>10}{'JinaD 1.3.1':>13}{'target':>9}{'n':>6}")
    for name, xs in results.items():
        ref = REFERENCE_MS.get(name)
        refs = f"{ref:>13g}{ref / 3:>9.1f}" if ref else f"{'-':>13}{'-':>9}"
        print(f"{name:<22}{statistics.median(xs):>10.1f}{_pct(xs, 0.99):>10.1f}{refs}{len(xs):>6}")


if __name__ == "__main__":
    main()
