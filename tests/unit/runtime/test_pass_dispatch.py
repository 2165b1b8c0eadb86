"""A Pea asks its Executor for a handler only when the Executor binds an endpoint at all: `_pass`
passes every request through without the lookup, any Executor with a bound method still runs."""

from __future__ import annotations

import threading

import orjson
import pytest
import zmq

from jinad_fab import Executor, requests
from jinad_fab.executors import load_executor
from jinad_fab.runtime.pea import PeaRuntime
from jinad_fab.wire import new_header


class Unbound(Executor):
    """Has a method but no @requests: it handles nothing until a Pod binds it (uses_requests)."""

    def mark(self, parameters):
        return {"marked": True}


class Dynamic(Executor):
    """Chooses its handler itself."""

    def handler_for(self, endpoint):
        return (lambda parameters: {"dynamic": endpoint}), ("parameters",)


class Marked(Executor):
    @requests
    def mark(self, parameters):
        return {"marked": True}


@pytest.mark.parametrize(("uses", "uses_requests", "handles"), [
    ("_pass", None, False),
    ("_logforward", None, True),
    ("Marked", None, True),
    ("Unbound", None, False),
    ("Unbound", {"/index": "mark"}, True),  # bound by the Pod option, after the class was made
    ("Dynamic", None, True),
])
def test_which_executors_handle_requests(uses, uses_requests, handles):
    assert load_executor(uses, uses_requests=uses_requests).handles_requests is handles


@pytest.fixture
def pea_of():
    started = []

    def start(uses: str, uses_requests: dict | None = None):
        rt = PeaRuntime({"name": "p/0", "pod": "p", "uses": uses, "uses_requests": uses_requests})
        rt.load()
        ports = rt.bind()
        ctx = zmq.Context()
        out = ctx.socket(zmq.PULL)
        out.setsockopt(zmq.LINGER, 0)
        out.setsockopt(zmq.RCVTIMEO, 10_000)
        rt.connect([[f"tcp://127.0.0.1:{out.bind_to_random_port('tcp://127.0.0.1')}"]])
        inp = ctx.socket(zmq.PUSH)
        inp.setsockopt(zmq.LINGER, 0)
        inp.connect(f"tcp://127.0.0.1:{ports['port_in']}")
        thread = threading.Thread(target=rt.serve, daemon=True)
        thread.start()
        started.append((rt, thread, ctx, inp, out))

        def call(header: dict) -> dict:
            inp.send_multipart([orjson.dumps(header), b'{"n":0,"id":[]}'])
            return orjson.loads(out.recv_multipart()[0])
        return call

    yield start
    for rt, thread, ctx, inp, out in started:
        rt.stop()
        thread.join(10)
        rt.close()
        inp.close(linger=0)
        out.close(linger=0)
        ctx.term()


def test_a_pass_pea_forwards_and_a_pea_with_a_bound_method_runs_it(pea_of):
    passing = pea_of("_pass")
    got = passing(new_header("r1", "/index", {"k": 1}))
    assert got == {"rid": "r1", "ep": "/index", "params": {"k": 1}, "src": "p/0"}
    assert pea_of("Unbound", {"/index": "mark"})(new_header("r2", "/index"))["params"] == {"marked": True}
    assert pea_of("Dynamic")(new_header("r3", "/search"))["params"] == {"dynamic": "/search"}
    # an errored request still passes a running Pea by, its Executor untouched
    failed = dict(new_header("r4", "/index"), err={"pod": "up", "type": "X", "msg": "boom", "tb": ""})
    assert "marked" not in pea_of("Marked")(failed)["params"]
