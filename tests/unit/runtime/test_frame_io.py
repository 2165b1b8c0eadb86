"""The hot-path multipart helpers behave as pyzmq's send_multipart/recv_multipart(copy=False)."""

import numpy as np
import pytest
import zmq

from jinad_fab.runtime.sockets import NOBLOCK, readable, recv_frames, send_frames


@pytest.fixture
def pair():
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    for s in (a, b):
        s.setsockopt(zmq.LINGER, 0)
    port = b.bind_to_random_port("tcp://127.0.0.1")
    a.connect(f"tcp://127.0.0.1:{port}")
    yield a, b
    a.close(linger=0)
    b.close(linger=0)
    ctx.term()


def test_frames_arrive_as_sent_small_large_and_forwarded(pair):
    a, b = pair
    big = np.random.default_rng(0).random((300, 128), dtype=np.float32)  # over the zero-copy threshold
    sent = [b'{"rid":"1"}', memoryview(b"body"), big, b""]
    send_frames(a, sent)
    b.setsockopt(zmq.RCVTIMEO, 5000)
    got = recv_frames(b)
    assert all(isinstance(f, zmq.Frame) for f in got)
    assert [f.bytes for f in got] == [b'{"rid":"1"}', b"body", big.tobytes(), b""]
    send_frames(a, got)  # received frames go on untouched, as a forwarding Pea sends them
    assert [f.bytes for f in recv_frames(b)] == [f.bytes for f in got]


def test_readable_tells_whether_a_message_waits(pair):
    a, b = pair
    assert not readable(b)
    with pytest.raises(zmq.Again):
        recv_frames(b, NOBLOCK)
    send_frames(a, [b"one"])
    assert b.poll(5000)
    assert readable(b)
    assert [f.bytes for f in recv_frames(b, NOBLOCK)] == [b"one"]
    assert not readable(b)
