"""Latency while a running Flow changes: scale, rolling update, a killed replica (issue 15).

    python benchmarks/live_changes.py [--clients 8] [--steady 5] [--remote]

One Flow ``enc (3 replicas) -> _index (2 shards)``, ``--clients`` threads each sending 1-Document
``/search`` requests back to back. The table prints p50/p99 latency of the requests *sent* in each
window: steady state (the reference, measured first and again at the end), during a scale
3 -> 5 -> 3, during a rolling update of the encoder (3 replicas replaced one at a time), and the
ratio of each p99 to the steady one (target: at most 3x). Then the time ``Flow.scale`` takes to go
from 1 to 4 replicas (each new one ready and planned onto), and the time from a replica's SIGKILL
to the Gateway planning onto 3 replicas again (the restart policy at work), the same for the
index's shard head (the requests it held are sent again once a new head is wired; new ones wait
for it), with the requests that failed in the whole run (target: none). ``--remote`` runs the
encoder on a local jinad as a Pod of one Pea instead, and measures the same windows while it is
scaled 1 -> 3 and rolled.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time

from rich.console import Console
from rich.table import Table

from jinad_fab import Document, Flow

HERE = os.path.dirname(os.path.abspath(__file__))
EXECUTOR = os.path.join(HERE, "_live_encoder.py")


class Clients:
    def __init__(self, flow: Flow, n: int):
        self.flow = flow
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (sent, latency seconds)
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self, i: int) -> None:
        c = self.flow.client()
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                sent = time.monotonic()
                try:
                    c.post("/search", Document(text=f"doc-{(i * 31 + n) % 500}"), parameters={"top_k": 5})
                except Exception as exc:
                    with self.lock:
                        self.failed.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self.lock:
                    self.samples.append((sent, time.monotonic() - sent))
        finally:
            c.close()

    def window(self, start: float, end: float) -> list[float]:
        with self.lock:
            return [lat for sent, lat in self.samples if start <= sent < end]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def full_width(f: Flow, pod: str, n: int) -> bool:
    members = f._gateway_cmd({"cmd": "status"})["members"].get(pod) or []
    return len(members) >= n


def head_members(f: Flow) -> list[str]:
    return f._gateway_cmd({"cmd": "status"})["members"].get("idx/head") or []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    ap.add_argument("--steady", type=float, default=5.0, help="seconds of each steady-state window")
    ap.add_argument("--remote", action="store_true",
                    help="the encoder as one Pea on a local jinad instead (scaled 1 -> 3, then rolled)")
    args = ap.parse_args()
    console = Console(width=140)
    if args.remote:
        return remote(args, console)
    rows = []
    with tempfile.TemporaryDirectory() as ws:
        f = (Flow(workspace=ws, timeout=60)
             .add(name="enc", uses="LiveEncoder", py_modules=[EXECUTOR], parallel=3, restart="on-failure",
                  uses_with={"version": "v1"})
             .add(name="idx", uses="_index", shards=2, restart="on-failure"))
        with f:
            f.index([Document(id=f"doc-{i}", text=f"doc-{i}") for i in range(2000)], request_size=200)
            with Clients(f, args.clients) as load:
                time.sleep(1.0)  # warm-up, not measured
                t0 = time.monotonic()
                time.sleep(args.steady)
                t1 = time.monotonic()
                rows.append(("steady state (reference)", t0, t1))

                t0 = time.monotonic()
                f.scale("enc", 5)
                f.scale("enc", 3)
                t1 = time.monotonic()
                rows.append(("during scale 3 -> 5 -> 3", t0, t1))
                scale_window = t1 - t0

                t0 = time.monotonic()
                f.rolling_update("enc", uses_with={"version": "v2"})
                t1 = time.monotonic()
                rows.append(("during rolling update (3 replicas)", t0, t1))
                update_window = t1 - t0

                f.scale("enc", 1)
                t0 = time.monotonic()
                f.scale("enc", 4)
                scale_up = time.monotonic() - t0
                f.scale("enc", 3)

                victim = f._running["enc"].peas[0][1].pid
                t0 = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                while full_width(f, "enc", 3):  # until the Gateway has taken it out
                    time.sleep(0.001)
                while not full_width(f, "enc", 3):
                    time.sleep(0.005)
                healed = time.monotonic() - t0

                head = f._running["idx"].head
                before = head_members(f)
                t0 = time.monotonic()
                os.kill(head.pid, signal.SIGKILL)
                while head_members(f) == before:  # until the Gateway holds requests for a new head
                    time.sleep(0.001)
                while not head_members(f):
                    time.sleep(0.005)
                t1 = time.monotonic()
                head_healed = t1 - t0
                rows.append(("sent while the index's head restarts", t0, t1))

                t0 = time.monotonic()
                time.sleep(args.steady)
                t1 = time.monotonic()
                rows.append(("steady state again", t0, t1))
                failed = list(load.failed)
            # windows are read once every request sent in them is answered (held ones come late)
            rows = [(name, load.window(t0, t1)) for name, t0, t1 in rows]
    times = [("scale 3 -> 5 -> 3 (both calls)", scale_window), ("rolling update of 3 replicas", update_window),
             ("scale 1 -> 4 (Flow.scale returns)", scale_up),
             ("SIGKILL of a replica -> 3 replicas planned onto again", healed),
             ("SIGKILL of the index's shard head -> a new head planned onto", head_healed)]
    return report(console, f"{args.clients} clients, Flow enc(3) -> _index(2 shards)", rows, times, failed)


def remote(args: argparse.Namespace, console: Console) -> int:
    """The encoder on a local jinad as one Pea (a Pod with no head): scaled 1 -> 3, then rolled."""
    from flow_throughput import local_daemon

    rows = []
    os.chdir(HERE)  # a remote Pod's files are uploaded from paths relative to the Flow
    with tempfile.TemporaryDirectory() as ws, local_daemon() as (host, token):
        f = (Flow(workspace=ws, timeout=60, token=token, quiet_remote_logs=True)
             .add(name="enc", uses="LiveEncoder", py_modules=[os.path.basename(EXECUTOR)], host=host,
                  uses_with={"version": "v1"})
             .add(name="idx", uses="_index", shards=2))
        with f:
            f.index([Document(id=f"doc-{i}", text=f"doc-{i}") for i in range(2000)], request_size=200)
            with Clients(f, args.clients) as load:
                time.sleep(1.0)  # warm-up, not measured
                t0 = time.monotonic()
                time.sleep(args.steady)
                rows.append(("steady state (reference)", t0, time.monotonic()))
                t0 = time.monotonic()
                f.scale("enc", 3)
                t1 = time.monotonic()
                width = len(f._gateway_cmd({"cmd": "status"})["members"]["enc"])
                if width != 3:
                    raise SystemExit(f"the Gateway plans onto {width} replicas of enc after the scale, not 3")
                rows.append(("during scale 1 -> 3 of the remote Pod", t0, t1))
                scale_up = t1 - t0
                t0 = time.monotonic()
                f.rolling_update("enc", uses_with={"version": "v2"})
                t1 = time.monotonic()
                rows.append(("during its rolling update (3 replicas)", t0, t1))
                update_window = t1 - t0
                t0 = time.monotonic()
                time.sleep(args.steady)
                rows.append(("steady state again", t0, time.monotonic()))
                failed = list(load.failed)
            rows = [(name, load.window(t0, t1)) for name, t0, t1 in rows]
    times = [("scale 1 -> 3 of a remote Pod of one Pea (Flow.scale returns)", scale_up),
             ("rolling update of its 3 replicas", update_window)]
    return report(console, f"{args.clients} clients, Flow enc(1, on a local jinad) -> _index(2 shards)", rows,
                  times, failed)


def report(console: Console, what: str, rows: list, times: list, failed: list) -> int:
    load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    steady_p99 = pct(rows[0][1], 0.99)
    table = Table(title=f"Latency of 1-Document /search, {what}; load average {load_avg} on {os.cpu_count()} CPUs")
    for col in ("window", "requests", "p50 ms", "p99 ms", "p99 vs steady", "target"):
        table.add_column(col, justify="right" if col != "window" else "left")
    for i, (name, lat) in enumerate(rows):
        p99 = pct(lat, 0.99)
        target = "-" if i == 0 or "restarts" in name else "<= 3x"  # a restart is a failure, not a change
        table.add_row(name, f"{len(lat):,}", f"{pct(lat, 0.5):.2f}", f"{p99:.2f}",
                      "1.00x" if i == 0 else f"{p99 / steady_p99:.2f}x", target)
    console.print(table)
    table = Table(title="Changes")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, seconds in times:
        table.add_row(name, f"{seconds:.2f} s")
    table.add_row("failed requests in the whole run (target 0)", str(len(failed)))
    console.print(table)
    for line in failed[:5]:
        console.print(f"  failed: {line}", markup=False)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
