"""Targets: a sender's downstream, kept across re-wiring, following the Gateway's plan (inproc sockets)."""

import pytest
import zmq

from jinad_fab.errors import RuntimeFailure
from jinad_fab.runtime.targets import Targets, pick

pytestmark = pytest.mark.unit


_OPEN: list = []


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    while _OPEN:
        _OPEN.pop().close(linger=0)
    c.destroy(linger=0)


def pulls(ctx, names):
    """Bound PULLs standing for replicas (closed by the fixture, even when the test fails)."""
    out = {}
    for n in names:
        s = ctx.socket(zmq.PULL)
        _OPEN.append(s)
        s.setsockopt(zmq.LINGER, 0)
        s.bind(f"inproc://{n}")
        out[n] = s
    return out


def received(sock) -> list[bytes]:
    got = []
    while sock.poll(50):
        got.append(sock.recv_multipart()[0])
    return got


def test_a_request_goes_to_the_replica_its_plan_names_and_only_there(ctx):
    peers = pulls(ctx, ["a", "b", "c"])
    t = Targets(ctx)
    t.update([{"set": "enc", "replicas": {"0": "inproc://a", "1": "inproc://b", "2": "inproc://c"}}])
    for rid in ("0", "1", "2", "1"):
        t.send_all([rid.encode()], {"rid": "x", "plan": {"enc": rid}})
    assert received(peers["a"]) == [b"0"] and received(peers["b"]) == [b"1", b"1"] and received(peers["c"]) == [b"2"]
    t.close(0)


def test_without_a_usable_plan_every_sender_picks_the_same_replica_for_a_request(ctx):
    peers = pulls(ctx, ["a", "b"])
    t1, t2 = Targets(ctx), Targets(ctx)
    spec = [{"set": "join", "replicas": {"0": "inproc://a", "1": "inproc://b"}}]
    t1.update(spec)
    t2.update(list(reversed(spec)))
    for rid in ("r1", "r2", "r3", "r4"):
        t1.send_all([rid.encode()], {"rid": rid})
        t2.send_all([rid.encode()], {"rid": rid, "plan": {"join": "9"}})  # a replica that is gone
    a, b = received(peers["a"]), received(peers["b"])
    for rid in ("r1", "r2", "r3", "r4"):
        expect = a if pick(["0", "1"], rid) == "0" else b
        assert expect.count(rid.encode()) == 2  # both parts of one request met on one replica
    t1.close(0)
    t2.close(0)


def test_a_set_with_a_default_sends_what_its_plan_does_not_name_there(ctx):
    # the last Pods' way back: the Gateway unless the plan names the Flow's own client
    peers = pulls(ctx, ["gw", "own"])
    t = Targets(ctx)
    t.update([{"set": "@reply", "replicas": {"gateway": "inproc://gw", "direct": "inproc://own"}, "default": "gateway"}])
    for rid in ("r1", "r2", "r3", "r4", "r5"):
        t.send_all([rid.encode()], {"rid": rid, "plan": {"enc": "0"}})
    t.send_all([b"plain"], {"rid": "r6"})
    t.send_all([b"mine"], {"rid": "r7", "plan": {"enc": "0", "@reply": "direct"}})
    assert received(peers["gw"]) == [b"r1", b"r2", b"r3", b"r4", b"r5", b"plain"]
    assert received(peers["own"]) == [b"mine"]
    t.close(0)


def test_update_keeps_the_sockets_of_replicas_that_stay_and_closes_the_others(ctx):
    pulls(ctx, ["a", "b", "c", "res"])
    t = Targets(ctx)
    t.update([{"set": "enc", "replicas": {"0": "inproc://a", "1": "inproc://b"}}, ["inproc://res"]])
    before = {id(s) for s in t.sockets()}
    kept = {s for s in t.sockets()}
    t.update([{"set": "enc", "replicas": {"1": "inproc://b", "2": "inproc://c"}}, ["inproc://res"]])
    after = t.sockets()
    assert len(after) == 3 and len({id(s) for s in after} & before) == 2
    assert sum(1 for s in kept if s.closed) == 1  # replica 0's socket, and only it
    t.close(0)


def test_a_failed_update_leaves_the_old_wiring_in_place(ctx):
    t = Targets(ctx)
    t.update([["inproc://first"]])
    old = t.sockets()
    with pytest.raises(RuntimeFailure):
        t.update([["inproc://second"], ["not-an-address"]])
    assert t.sockets() == old and not any(s.closed for s in old) and len(t) == 1
    t.close(0)
