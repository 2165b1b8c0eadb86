"""A Pea whose Executor does not touch Documents (`_pass`) forwards the body frames it received,
byte for byte, without decoding them."""

import threading

import numpy as np
import orjson
import pytest
import zmq

from jinad_fab import DocumentArray
from jinad_fab.runtime.pea import PeaRuntime
from jinad_fab.wire import Message, new_header


@pytest.fixture
def pass_pea():
    rt = PeaRuntime({"name": "p/0", "pod": "p", "uses": "_pass"})
    rt.load()
    ports = rt.bind()
    ctx = zmq.Context()
    out = ctx.socket(zmq.PULL)
    out.setsockopt(zmq.LINGER, 0)
    out.setsockopt(zmq.RCVTIMEO, 10_000)
    port_out = out.bind_to_random_port("tcp://127.0.0.1")
    rt.connect([[f"tcp://127.0.0.1:{port_out}"]])
    inp = ctx.socket(zmq.PUSH)
    inp.setsockopt(zmq.LINGER, 0)
    inp.connect(f"tcp://127.0.0.1:{ports['port_in']}")
    thread = threading.Thread(target=rt.serve, daemon=True)
    thread.start()
    yield inp, out
    rt.stop()
    thread.join(10)
    rt.close()
    inp.close(linger=0)
    out.close(linger=0)
    ctx.term()


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
