"""CPU one `_pass` Pea process spends per message, next to a bare pyzmq forwarder in the same run.

    python benchmarks/pea_cpu.py [--messages 20000] [--rounds 5] [--syscalls]

One hop, alone: a driver PUSH -> the hop's PULL, the hop's PUSH -> the driver's PULL, over TCP on
loopback. The hop is either a bare forwarder (``recv_multipart`` -> ``send_multipart``, frames
untouched: the floor's hop in flow_throughput.py) or a `_pass` Pea started through the runtime's
own entry point, as a Flow starts it. Both carry the frames jinad-fab's wire produces for a request
of 100 text Documents (and of 100 128-d embeddings), and are measured in alternation, round by
round, with two traffic shapes:

* ``64 in flight``: the driver keeps 64 requests queued, so the hop always has one waiting (what
  the raw chain's client does);
* ``one at a time``: the driver waits for each answer before it sends the next, so the hop sleeps
  and is woken for every message (what a Pea fed slower than it forwards pays; 1-Document latency).

For each: the hop process's CPU time per message (user + system, all its threads, from the kernel's
accounting), its voluntary context switches per message (how often it slept), and messages/s. The
table gives the medians of the rounds and the Pea's CPU as a multiple of the forwarder's. With
``--syscalls`` (where ``perf`` may count the kernel's syscall tracepoint) it also gives the system
calls per message of the hop's main thread (the one that runs Python; its ZeroMQ I/O thread makes
the same calls in both): on a shared machine CPU times move with the load, these counts do not.
Counting slows every system call of the counted process, so the CPU columns of such a run are not
comparable with a run without it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
import zmq
from flow_throughput import _free_port, make_docs, wire_frames
from rich.console import Console
from rich.table import Table


def _bare_forwarder(port_in: int, port_out: int, ready) -> None:
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(f"tcp://127.0.0.1:{port_in}")
    push.connect(f"tcp://127.0.0.1:{port_out}")
    ready.set()
    while True:
        push.send_multipart(pull.recv_multipart(copy=False), copy=False)


def _perf_usable() -> bool:
    if shutil.which("perf") is None:
        return False
    r = subprocess.run(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "--", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "not supported" not in r.stderr and "raw_syscalls" in r.stderr


def _perf_start(pid: int) -> tuple[subprocess.Popen, str]:
    out = tempfile.mktemp(prefix="pea-cpu-perf-")
    proc = subprocess.Popen(["perf", "stat", "--per-thread", "-x", ",", "-e", "raw_syscalls:sys_enter",
                             "-p", str(pid), "-o", out], stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # attached (what the idle hop does meanwhile is a few calls at most)
    return proc, out


def _perf_stop(perf: tuple[subprocess.Popen, str], pid: int) -> float:
    proc, out = perf
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    try:
        with open(out) as fh:
            for line in fh:  # "<comm>-<tid>,<count>,,raw_syscalls:sys_enter,..."
                parts = line.strip().split(",")
                if len(parts) > 3 and parts[0].rsplit("-", 1)[-1] == str(pid) and parts[1].isdigit():
                    return float(parts[1])
    finally:
        os.unlink(out)
    return float("nan")


class Hop:
    """One hop between a driver's PUSH and PULL: a bare forwarder or a `_pass` Pea."""

    def __init__(self, ctx: zmq.Context, kind: str):
        self.kind = kind
        self.pull = ctx.socket(zmq.PULL)
        port_out = self.pull.bind_to_random_port("tcp://127.0.0.1")
        self.push = ctx.socket(zmq.PUSH)
        port_in = _free_port()
        if kind == "forwarder":
            ready = multiprocessing.get_context("spawn").Event()
            self.proc = multiprocessing.get_context("spawn").Process(
                target=_bare_forwarder, args=(port_in, port_out, ready), daemon=True)
            self.proc.start()
            ready.wait(30)
            self.pid = self.proc.pid
        else:
            self.tmp = tempfile.TemporaryDirectory(prefix="pea-cpu-")
            status = os.path.join(self.tmp.name, "status.json")
            args = {"name": "hop/0", "pod": "hop", "uses": "_pass", "host": "127.0.0.1", "port_in": port_in,
                    "targets": [[f"tcp://127.0.0.1:{port_out}"]]}
            self.proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.runtime", "pea", "--args-json",
                                          json.dumps(args), "--status-file", status, "--log-level", "WARNING"])
            deadline = time.monotonic() + 60
            while not os.path.exists(status):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Pea did not start")
                time.sleep(0.05)
            self.pid = self.proc.pid
        self.push.connect(f"tcp://127.0.0.1:{port_in}")
        self.ps = psutil.Process(self.pid)

    def run(self, frames: list, n: int, window: int, count_syscalls: bool = False) -> tuple[float, ...]:
        """Send n messages with at most `window` in flight: (CPU s/message, sleeps/message, messages/s,
        main-thread system calls/message or NaN)."""
        perf = _perf_start(self.pid) if count_syscalls else None
        c0, s0 = self.ps.cpu_times(), self.ps.num_ctx_switches().voluntary
        t0 = time.perf_counter()
        inflight = sent = done = 0
        send, recv = self.push.send_multipart, self.pull.recv_multipart
        while done < n:
            while inflight < window and sent < n:
                send(frames, copy=False)
                inflight += 1
                sent += 1
            recv(copy=False)
            inflight -= 1
            done += 1
        dt = time.perf_counter() - t0
        c1, s1 = self.ps.cpu_times(), self.ps.num_ctx_switches().voluntary
        cpu = (c1.user + c1.system) - (c0.user + c0.system)
        calls = _perf_stop(perf, self.pid) / n if perf is not None else float("nan")
        return cpu / n, (s1 - s0) / n, n / dt, calls

    def close(self) -> None:
        if self.kind == "forwarder":
            self.proc.terminate()
            self.proc.join(10)
        else:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
            self.tmp.cleanup()
        self.push.close(linger=0)
        self.pull.close(linger=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000, help="messages per hop, shape and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--syscalls", action="store_true", help="count the main thread's system calls with perf")
    ns = ap.parse_args()
    count = ns.syscalls and _perf_usable()
    if ns.syscalls and not count:
        print("perf cannot count raw_syscalls:sys_enter here: no system call columns")
    payloads = {kind: [bytes(memoryview(f).cast("B")) for f in wire_frames(make_docs(100, kind))[0]]
                for kind in ("text", "embedding")}
    shapes = {"64 in flight": 64, "one at a time": 1}
    ctx = zmq.Context()
    hops = {kind: Hop(ctx, kind) for kind in ("forwarder", "pea")}
    got: dict[tuple, list] = {}
    try:
        for hop in hops.values():  # warm up: connections made, code paths run
            hop.run(payloads["text"], 500, 64)
        for _ in range(ns.rounds):
            for kind, frames in payloads.items():
                for shape, window in shapes.items():
                    n = ns.messages if window > 1 else ns.messages // 4
                    for name, hop in hops.items():
                        got.setdefault((kind, shape, name), []).append(hop.run(frames, n, window, count))
    finally:
        for hop in hops.values():
            hop.close()
        ctx.term()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    t = Table(title=f"One hop: a `_pass` Pea vs a bare pyzmq forwarder, CPU per message of the hop process "
                    f"(all its threads), median of {ns.rounds} alternating rounds; load average {load} on "
                    f"{os.cpu_count()} CPUs")
    for col in ("request (100 docs)", "traffic", "forwarder us/msg", "Pea us/msg", "Pea vs forwarder",
                "forwarder sleeps/msg", "Pea sleeps/msg", "forwarder msg/s", "Pea msg/s",
                "forwarder syscalls/msg (main thread)", "Pea syscalls/msg (main thread)"):
        t.add_column(col, justify="right")
    for kind in payloads:
        for shape in shapes:
            fw, pea = ([statistics.median(r[i] for r in got[(kind, shape, name)]) for i in range(4)]
                       for name in ("forwarder", "pea"))
            t.add_row(kind, shape, f"{fw[0] * 1e6:.1f}", f"{pea[0] * 1e6:.1f}", f"{pea[0] / fw[0]:.2f}x",
                      f"{fw[1]:.2f}", f"{pea[1]:.2f}", f"{fw[2]:,.0f}", f"{pea[2]:,.0f}",
                      *(("-", "-") if not count else (f"{fw[3]:.2f}", f"{pea[3]:.2f}")))
    Console(width=200).print(t)


if __name__ == "__main__":
    main()
