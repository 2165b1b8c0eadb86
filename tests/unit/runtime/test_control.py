"""The one control-command dispatcher, over a real REQ/REP pair on loopback."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from jinad_fab.runtime.control import Commands
from jinad_fab.runtime.sockets import bind, ctrl_request, make_context


@pytest.fixture
def served():
    """A REP socket served by Commands in a thread; yields (address, calls, ops-returned)."""
    ctx = make_context()
    rep, port = bind(ctx, zmq.REP, "127.0.0.1", 0)
    calls: list[dict] = []
    returned: list[str | None] = []

    def boom(cmd: dict) -> None:
        raise KeyError("targets")

    commands = Commands(rep, {"echo": lambda cmd: calls.append(cmd) or {"seen": cmd.get("x")},
                              "quiet": lambda cmd: None, "boom": boom})
    stop = threading.Event()

    def loop() -> None:
        poller = zmq.Poller()
        poller.register(rep, zmq.POLLIN)
        while not stop.is_set():
            if poller.poll(20):
                returned.append(commands.serve_one())

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield f"tcp://127.0.0.1:{port}", ctx, calls, returned
    stop.set()
    t.join(2)
    rep.close(linger=0)
    ctx.destroy(linger=0)


def _settled(returned: list, n: int) -> list:
    """What the serving thread returned for n commands: it records a return after the answer has
    left, so a client may hold the answer before the record is made."""
    deadline = time.monotonic() + 5
    while len(returned) < n and time.monotonic() < deadline:
        time.sleep(0.001)
    return returned


def test_a_handler_answers_with_its_fields(served):
    addr, ctx, calls, returned = served
    assert ctrl_request(ctx, addr, {"cmd": "echo", "x": 3}) == {"ok": True, "seen": 3}
    assert ctrl_request(ctx, addr, {"cmd": "quiet"}) == {"ok": True}
    assert calls == [{"cmd": "echo", "x": 3}]
    assert _settled(returned, 2) == ["echo", "quiet"]


def test_unknown_malformed_and_failing_commands_are_refused_and_the_socket_keeps_serving(served):
    addr, ctx, calls, returned = served
    assert ctrl_request(ctx, addr, {"cmd": "nope"}) == {"ok": False, "error": "unknown command 'nope'"}
    assert ctrl_request(ctx, addr, ["not", "a", "command"])["error"] == "unknown command None"
    assert ctrl_request(ctx, addr, {"cmd": "boom"}) == {"ok": False, "error": "KeyError: 'targets'"}
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(addr)
    s.send(b"{not json")
    answer = s.recv_json()
    s.close(linger=0)
    assert answer["ok"] is False and answer["error"].startswith("not JSON")
    assert ctrl_request(ctx, addr, {"cmd": "echo", "x": 1})["seen"] == 1  # still serving
    assert _settled(returned, 5) == [None, None, None, None, "echo"]
