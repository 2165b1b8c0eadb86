"""A Pea saturated with requests still answers its control socket and its signals: a busy Pea
waits in a blocking receive on its input and looks at the rest between messages (see
PeaRuntime.serve), so these run a real Pea process fed faster than it forwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import orjson
import pytest
import zmq

from jinad_fab.runtime.sockets import ctrl_request
from jinad_fab.wire import new_header

BODY = b'{"n":1,"id":["d"],"text":["one"]}'


class Sink:
    """A PULL bound on loopback that counts what arrives, in a thread."""

    def __init__(self, ctx: zmq.Context):
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 50)
        self.address = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.sock.recv_multipart(copy=False)
            except zmq.Again:
                continue
            self.count += 1

    def wait_for_more(self, than: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.count <= than and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.count

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close(linger=0)


class Feeder:
    """Pushes requests into the Pea as fast as it can until stopped, more than it forwards, but never
    more than AHEAD ahead of what the sink received (a flood, not a heap of queued messages)."""

    AHEAD = 3000

    def __init__(self, ctx: zmq.Context, address: str, sink: Sink):
        self.sink = sink
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.connect(address)
        self.sent = 0
        self.most_ahead = 0  # the longest queue seen: more than the Pea forwards meanwhile
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        header = orjson.dumps(new_header("r", "/index"))
        while not self.stop.is_set():
            if self.sent - self.sink.count > self.AHEAD:
                time.sleep(0.001)
                continue
            for _ in range(500):  # a burst: faster than the Pea forwards
                self.sent += 1  # before the send: never fewer than the sink has counted
                self.sock.send_multipart([header, BODY])
            self.most_ahead = max(self.most_ahead, self.sent - self.sink.count)
            time.sleep(0)  # let the other threads of this test run

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close(linger=0)


@pytest.fixture
def busy_pea(tmp_path):
    """A `_pass` Pea process (the real entry point) forwarding to a sink while a feeder floods it."""
    ctx = zmq.Context()
    sink = Sink(ctx)
    status = tmp_path / "status.json"
    args = {"name": "busy/0", "pod": "busy", "uses": "_pass", "host": "127.0.0.1", "targets": [[sink.address]]}
    proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.runtime", "pea", "--args-json", json.dumps(args),
                             "--status-file", str(status), "--log-level", "WARNING"])
    feeder = None
    try:
        deadline = time.monotonic() + 30
        while not status.exists():
            assert proc.poll() is None, "the Pea exited before it was ready"
            assert time.monotonic() < deadline, "the Pea did not get ready"
            time.sleep(0.02)
        ready = json.loads(status.read_text())
        assert ready["state"] == "ready"
        feeder = Feeder(ctx, f"tcp://127.0.0.1:{ready['port_in']}", sink)
        sink.wait_for_more(0)
        yield proc, f"tcp://127.0.0.1:{ready['port_ctrl']}", ctx, feeder, sink
    finally:
        if feeder is not None:
            feeder.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        sink.close()
        ctx.destroy(linger=0)


def _flooded(feeder: Feeder, sink: Sink) -> None:
    """Requests still flow, and the Pea has had a queue of them: it is busy, not idle."""
    before = sink.count
    assert sink.wait_for_more(before) > before, "requests stopped flowing"
    # measured after each of the feeder's bursts; the first few may all be forwarded as they are sent
    deadline = time.monotonic() + 10
    while feeder.most_ahead <= 100 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert feeder.most_ahead > 100, "the Pea was never behind its input"


def test_a_busy_pea_answers_control_commands_and_takes_new_targets_while_requests_flow(busy_pea):
    proc, ctrl, ctx, feeder, sink = busy_pea
    _flooded(feeder, sink)
    for _ in range(3):
        answer = ctrl_request(ctx, ctrl, {"cmd": "status"}, timeout=10)
        assert answer["ok"] is True and answer["targets"] == 1
        _flooded(feeder, sink)
    second = Sink(ctx)
    try:
        # a rolling update or a scale re-points a Pea while requests flow
        answer = ctrl_request(ctx, ctrl, {"cmd": "connect", "targets": [[sink.address], [second.address]]},
                              timeout=10)
        assert answer == {"ok": True}
        assert second.wait_for_more(0) > 0, "the new target received nothing"
        _flooded(feeder, sink)
        assert ctrl_request(ctx, ctrl, {"cmd": "status"}, timeout=10)["targets"] == 2
    finally:
        second.close()
    assert ctrl_request(ctx, ctrl, {"cmd": "terminate"}, timeout=10) == {"ok": True}
    assert proc.wait(10) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_busy_pea(busy_pea, signum):
    proc, ctrl, ctx, feeder, sink = busy_pea
    _flooded(feeder, sink)
    os.kill(proc.pid, signum)
    assert proc.wait(10) == 0  # stopped cleanly (a hang fails here), with its input still flooded
