"""Latency of the jinad REST API against a real daemon on loopback; prints a table.

    python benchmarks/daemon_api.py [--rounds 30]

Measures p50/p99 of: health, create/delete a 2-Pod Flow, create/delete a Pod, health under 100
concurrent clients, and the first create Pod after the workspace became ACTIVE and after each of
``--restarts`` daemon restarts (the workspace's zygote is started then, not on first use), and the
time from starting `jinad` to its first answer, with an empty home and with one ACTIVE workspace.

JinaD 1.3.1 runs in the same run when ``--jinad131 VENV`` (or ``JINAD131_VENV``) names a virtual
environment with ``jina[daemon]==1.3.1`` installed (recipe in benchmarks/README.md): one daemon of each,
side by side on loopback, the same operations alternating round by round (JinaD: upload the same Flow
YAML into a workspace, create the 2-Pod Flow from it, create a Pod in that workspace, delete each).
Without it, JinaD's column holds the figures it was measured at earlier on the same kind of machine
(labelled so), with the ratios the targets ask for.
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

# JinaD 1.3.1, measured earlier (not in this run): p50 ms
REFERENCE_MS = {"health": 1.7, "create flow": 105, "delete flow": 523, "create pod": 37, "delete pod": 121}
# issue 19: jinad-fab / JinaD p50 measured side by side earlier, and the targets
EARLIER_RATIO = {"create flow": 0.36, "create pod": 0.49, "delete flow": 0.11, "delete pod": 0.11}
TARGET_RATIO = {"create flow": 1 / 4, "create pod": 1 / 3}
FLOW_YML = "!Flow\nversion: '1'\npods:\n  - name: a\n    uses: _logforward\n  - name: b\n    uses: _logforward\n"
# the same shape for JinaD 1.3.1: two Pods that forward requests untouched
JINAD_FLOW_YML = "jtype: Flow\nversion: '1'\npods:\n  - name: a\n  - name: b\n"
JINAD_OPS = ("health", "create flow", "delete flow", "create pod", "delete pod")


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


async def _concurrent_health(url: str, headers: httpx.Headers, clients: int, per_client: int) -> list[float]:
    out: list[float] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:
        async def one() -> None:
            for _ in range(per_client):
                t = time.perf_counter()
                r = await c.get("/alive")
                out.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200
        await asyncio.gather(*(one() for _ in range(clients)))
    return out


def _start_daemon(home: str, port: int, repo: pathlib.Path,
                  took: list[float] | None = None) -> tuple[subprocess.Popen, httpx.Client]:
    """Start jinad and wait for /alive; ``took`` gets the ms from the start to the first answer."""
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.cli.daemon", "--port", str(port), "--home", home,
                             "--log-level", "warning"], env=env)
    c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    token_file = pathlib.Path(home, "token")  # written by a daemon started without a token
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"jinad exited with code {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if c.get("/alive").status_code == 200:  # GET /alive needs no token; the rest does
                if token_file.exists():
                    c.headers["Authorization"] = f"Bearer {token_file.read_text().split()[0]}"
                if took is not None:
                    took.append((time.perf_counter() - started) * 1000)
                return proc, c
        time.sleep(0.05)
    proc.terminate()
    raise SystemExit("jinad did not answer in 60 s")


def _stop_daemon(proc: subprocess.Popen, c: httpx.Client) -> None:
    c.close()
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class JinaD:
    """A JinaD 1.3.1 daemon from its own virtual environment, on a free loopback port."""

    def __init__(self, venv: str, home: str):
        exe = os.path.join(venv, "bin", "jinad")
        if not os.access(exe, os.X_OK):
            raise SystemExit(f"--jinad131: {exe} is not there (see benchmarks/README.md for the recipe)")
        self.port = _free_port()
        os.makedirs(home, exist_ok=True)
        self.log = open(os.path.join(home, "jinad.log"), "wb")  # noqa: SIM115 (closed in stop)
        # its workspaces go under --workspace; it runs in a session of its own, so stop() ends its Pods too
        self.proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port-expose", str(self.port), "--no-fluentd",
                                      "--workspace", os.path.join(home, "ws")], cwd=home, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.c = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        for _ in range(1200):
            if self.proc.poll() is not None:
                raise SystemExit(f"JinaD exited with code {self.proc.returncode}; see {home}/jinad.log")
            with contextlib.suppress(httpx.HTTPError):
                if self.c.get("/").status_code == 200:
                    break
            time.sleep(0.05)
        else:
            self.stop()
            raise SystemExit("JinaD did not answer in 60 s")
        self.wid = self.c.post("/workspaces", files=[("files", ("flow.yml", JINAD_FLOW_YML.encode()))]
                               ).raise_for_status().json()

    def round(self, out: dict[str, list[float]]) -> None:
        """One of each operation, timed."""
        box: dict = {}

        def create_flow() -> None:
            box["flow"] = self.c.post("/flows", files={"flow": ("flow.yml", JINAD_FLOW_YML.encode())},
                                      data={"workspace_id": self.wid}).raise_for_status().json()

        def create_pod() -> None:
            box["pod"] = self.c.post("/pods", json={"workspace_id": self.wid}).raise_for_status().json()

        out["create flow"].append(_timed(create_flow))
        out["delete flow"].append(_timed(lambda: self.c.delete(f"/flows/{box['flow']}").raise_for_status()))
        out["create pod"].append(_timed(create_pod))
        out["delete pod"].append(_timed(lambda: self.c.delete(f"/pods/{box['pod']}").raise_for_status()))

    def health(self, out: dict[str, list[float]], n: int) -> None:
        for _ in range(n):
            out["health"].append(_timed(lambda: self.c.get("/").raise_for_status()))

    def stop(self) -> None:
        self.c.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self.log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--restarts", type=int, default=6, help="daemon restarts to time the first create after")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="every other restart, seconds between the daemon answering and the first create")
    ap.add_argument("--jinad131", default=os.environ.get("JINAD131_VENV"),
                    help="a virtual environment with jina[daemon]==1.3.1: run JinaD in this run too "
                         "(default: $JINAD131_VENV)")
    ns = ap.parse_args()
    repo = pathlib.Path(__file__).resolve().parent.parent
    results: dict[str, list[float]] = {k: [] for k in REFERENCE_MS}
    jd_results: dict[str, list[float]] = {k: [] for k in JINAD_OPS}
    jd: JinaD | None = None
    after_active: list[float] = []  # right after the workspace said ACTIVE
    first: list[float] = []  # right after a restart answered /alive
    settled: list[float] = []  # --settle seconds after a restart
    later: list[float] = []  # the 2nd to 4th create Pod after each restart
    start_empty: list[float] = []  # process start -> /alive, empty home
    start_active: list[float] = []  # the same with one ACTIVE workspace (its zygote is warmed first)
    with tempfile.TemporaryDirectory(prefix="jinad-bench-") as home:
        port = _free_port()
        proc, c = _start_daemon(home, port, repo, start_empty)
        try:
            if ns.jinad131:
                jd = JinaD(ns.jinad131, os.path.join(home, "jinad131"))
                jd.round({k: [] for k in JINAD_OPS})  # its first Flow and Pod import what they use: not timed
            wid = c.post("/workspaces", files=[("files", ("flow.yml", FLOW_YML.encode()))]).json()["id"]
            while c.get(f"/workspaces/{wid}").json()["state"] not in ("ACTIVE", "FAILED"):
                time.sleep(0.01)
            box: dict = {}  # the last created object

            def create_pod() -> None:
                box.update(c.post("/pods", params={"workspace_id": wid}, json={"name": "p"}).raise_for_status().json())

            after_active.append(_timed(create_pod))
            c.delete(f"/pods/{box['id']}").raise_for_status()
            for _ in range(4):  # alternating with JinaD, when it runs, in blocks of 50
                for _ in range(50):
                    results["health"].append(_timed(lambda: c.get("/alive").raise_for_status()))
                if jd is not None:
                    jd.health(jd_results, 50)
            for _ in range(ns.rounds):
                results["create flow"].append(_timed(lambda: box.update(
                    c.post("/flows", params={"workspace_id": wid}).raise_for_status().json())))
                results["delete flow"].append(_timed(lambda: c.delete(f"/flows/{box['id']}").raise_for_status()))
                results["create pod"].append(_timed(create_pod))
                results["delete pod"].append(_timed(lambda: c.delete(f"/pods/{box['id']}").raise_for_status()))
                if jd is not None:
                    jd.round(jd_results)
            if jd is not None:
                jd.stop()
                jd = None
            results["health x100 clients"] = asyncio.run(_concurrent_health(str(c.base_url), c.headers, 100, 20))
            for i in range(ns.restarts):  # the first create Pod after each daemon start
                _stop_daemon(proc, c)
                proc, c = _start_daemon(home, port, repo, start_active)
                if i % 2:
                    time.sleep(ns.settle)
                (settled if i % 2 else first).append(_timed(create_pod))
                c.delete(f"/pods/{box['id']}").raise_for_status()
                for _ in range(3):  # the same restarted daemon's next creates: its own warm figure
                    later.append(_timed(create_pod))
                    c.delete(f"/pods/{box['id']}").raise_for_status()
            c.delete(f"/workspaces/{wid}")
        finally:
            if jd is not None:
                jd.stop()
            _stop_daemon(proc, c)
    results["first pod after ACTIVE"] = after_active
    results["first pod at restart"] = first
    results[f"first pod restart+{ns.settle:g}s"] = settled
    results["2nd-4th pod at restart"] = later
    results["start, empty home"] = start_empty
    results["start, 1 ACTIVE ws"] = start_active
    warm = statistics.median(results["create pod"])
    measured = bool(jd_results["create pod"])
    jd_head = "JinaD p50" if measured else "JinaD ms*"
    print(f"{'operation':<22}{'p50 ms':>9}{'p99 ms':>9}{'n':>5}{jd_head:>11}{'JinaD p99':>10}{'ratio':>8}"
          f"{'earlier':>9}{'target':>8}")
    for name, xs in results.items():
        p50 = statistics.median(xs)
        if measured and jd_results.get(name):
            ref = statistics.median(jd_results[name])
            ref99 = f"{_pct(jd_results[name], 0.99):>10.1f}"
        else:
            ref, ref99 = REFERENCE_MS.get(name), f"{'-':>10}"
        cols = f"{ref:>11.1f}{ref99}{p50 / ref:>7.2f}x" if ref else f"{'-':>11}{'-':>10}{'-':>8}"
        early = f"{EARLIER_RATIO[name]:>8.2f}x" if name in EARLIER_RATIO else f"{'-':>9}"
        target = f"<={TARGET_RATIO[name]:.2f}x" if name in TARGET_RATIO else "-"
        if name.startswith("first "):
            target = f"<={2 * warm:.0f}ms"  # within 2x of a warm create Pod
        print(f"{name:<22}{p50:>9.1f}{_pct(xs, 0.99):>9.1f}{len(xs):>5}{cols}{early}{target:>8}")
    for label, xs in (("right after ACTIVE", after_active), ("at once after a restart", first),
                      (f"{ns.settle:g}s after a restart", settled)):
        if xs:
            print(f"first create Pod {label} / warm create Pod: p50 {statistics.median(xs) / warm:.2f}x, "
                  f"max {max(xs) / warm:.2f}x (target <= 2x)")
    if first and later:
        print(f"first create Pod at once after a restart / the next 3 on the same daemon: p50 "
              f"{statistics.median(first) / statistics.median(later):.2f}x (a fresh daemon process is slower "
              "for a while at every create, not only the first)")
    print("'at once after a restart' = as soon as /alive answers; the daemon warms its ACTIVE workspaces' "
          "zygotes before it serves ('start' rows: process start to the first /alive answer)")
    if measured:
        print(f"JinaD 1.3.1 measured in this run from {ns.jinad131}, alternating with jinad-fab round by round "
              f"({len(jd_results['create pod'])} rounds; its health = GET /); 'earlier' = the ratio measured "
              "before (issue 19).")
    else:
        print("* JinaD 1.3.1 is not installed here (--jinad131 VENV runs it): its p50s are the figures measured "
              "earlier on the same kind of machine, not in this run; 'earlier' = jinad-fab/JinaD measured side "
              "by side then (issue 19).")
    print(f"load: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
