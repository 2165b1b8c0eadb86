"""A Pea whose Executor does not touch Documents (`_pass`) forwards the body frames it received,
byte for byte, without decoding them; it asks its Executor for a handler only when the Executor
binds an endpoint at all, and any Executor with a bound method still runs."""

from __future__ import annotations

import threading

import numpy as np
import orjson
import pytest
import zmq

from jinad_fab import DocumentArray, Executor, requests
from jinad_fab.executors import load_executor
from jinad_fab.runtime.pea import PeaRuntime
from jinad_fab.wire import Message, new_header


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
    """Start a serving Pea of an Executor in this process: its input PUSH and output PULL."""
    started = []

    def start(uses: str = "_pass", uses_requests: dict | None = None) -> tuple[zmq.Socket, zmq.Socket]:
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
        return inp, out

    yield start
    for rt, thread, ctx, inp, out in started:
        rt.stop()
        thread.join(10)
        rt.close()
        inp.close(linger=0)
        out.close(linger=0)
        ctx.term()


@pytest.fixture
def pass_pea(pea_of):
    return pea_of("_pass")


def _call(pea: tuple[zmq.Socket, zmq.Socket], header: dict) -> dict:
    inp, out = pea
    inp.send_multipart([orjson.dumps(header), b'{"n":0,"id":[]}'])
    return orjson.loads(out.recv_multipart()[0])


def test_a_pass_pea_forwards_the_body_frames_it_received_byte_for_byte(pass_pea):
    inp, out = pass_pea
    docs = DocumentArray.empty(50)
    docs.embeddings = np.random.default_rng(0).random((50, 128), dtype=np.float32)
    docs[:10][3].text = "one of them has a text"  # a body of Documents, not only columns
    sent = Message(new_header("r1", "/index", {"k": 1}), docs=docs).frames()
    inp.send_multipart(sent, copy=False)
    got = out.recv_multipart()
    assert len(got) == len(sent)
    assert got[1:] == [memoryview(f).cast("B").tobytes() for f in sent[1:]]
    header = orjson.loads(got[0])
    assert header == dict(orjson.loads(sent[0]), src="p/0")


def test_a_body_that_decoding_and_encoding_again_would_change_leaves_unchanged(pass_pea):
    inp, out = pass_pea
    # spaces and key order the encoder never writes: any decode + encode on the way shows
    body = b'{"text": ["x", "y"],  "id": ["a", "b"], "n": 2}'
    inp.send_multipart([orjson.dumps(new_header("r2", "/search")), body])
    got = out.recv_multipart()
    assert got[1] == body
    assert orjson.loads(got[0])["rid"] == "r2"


def test_a_pass_pea_forwards_and_a_pea_with_a_bound_method_runs_it(pea_of):
    got = _call(pea_of("_pass"), new_header("r1", "/index", {"k": 1}))
    assert got == {"rid": "r1", "ep": "/index", "params": {"k": 1}, "src": "p/0"}
    assert _call(pea_of("Unbound", {"/index": "mark"}), new_header("r2", "/index"))["params"] == {"marked": True}
    assert _call(pea_of("Dynamic"), new_header("r3", "/search"))["params"] == {"dynamic": "/search"}
    # an errored request still passes a running Pea by, its Executor untouched
    failed = dict(new_header("r4", "/index"), err={"pod": "up", "type": "X", "msg": "boom", "tb": ""})
    assert "marked" not in _call(pea_of("Marked"), failed)["params"]
