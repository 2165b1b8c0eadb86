"""The in-process path of a Flow's own client (runtime.direct): it skips the Gateway's process, and
keeps the Gateway's planning (replicas, shards, joins), retries and failures."""

import os
import signal
import threading
import time

import pytest

from jinad_fab import Document, DocumentArray, Flow
from jinad_fab.errors import PodDied

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LIVE_EXECS = os.path.join(os.path.dirname(__file__), "..", "live", "_live_execs.py")


def _answers(docs: DocumentArray) -> list:
    return [(d.id, d.text, [m.id for m in d.matches], [m.scores["d"].value for m in d.matches],
             [t.split(":")[0] for t in d.tags["seen_by"]]) for d in docs]


def test_the_own_client_and_the_gateway_answer_alike_and_the_own_one_never_crosses_the_gateway(execs):
    f = (Flow()
         .add(name="st", parallel=2, **execs("Stamp"))
         .add(name="sh", shards=2, polling="all", **execs("ShardEcho")))
    queries = [Document(id=f"q{i}", text=f"query {i}") for i in range(24)]
    with f:
        assert f.direct is True
        own = f.search(queries, request_size=5, parameters={"top_k": 2})
        with f.client(direct=False) as c:
            via_gateway = c.post("/search", queries, request_size=5, parameters={"top_k": 2})
        with f.client(protocol="http") as c:
            via_http = c.post("/search", queries, request_size=5, parameters={"top_k": 2})
        assert _answers(own) == _answers(via_gateway) == _answers(via_http)
        assert own.ids == [q.id for q in queries] and own[0].matches.ids == ["shard0", "shard1"]
        with f.client(prefetch=1) as c:  # every answer in before the next request leaves: none is skipped
            assert c.post("/search", queries, request_size=3).ids == own.ids
        # both replicas of `st` took requests planned in this process
        assert {t.split(":")[1] for d in own for t in d.tags["seen_by"]} == {str(p.pid) for p in f._running["st"].processes}
        gateway = f._gateway.proc.pid
        os.kill(gateway, signal.SIGSTOP)  # the Gateway cannot move a byte now
        try:
            again = f.search(queries[:7], request_size=2, parameters={"top_k": 2}, timeout=10)
        finally:
            os.kill(gateway, signal.SIGCONT)
        assert _answers(again) == _answers(own[:7])
        status = f._gateway_cmd({"cmd": "status"})  # the Gateway's and the own client's loads together
        assert status["pending"] == 0
        assert all(n == 0 for loads in status["inflight"].values() for n in loads.values())


def test_a_dead_replicas_requests_on_the_own_path_are_retried_or_failed_naming_the_pod():
    f = Flow(timeout=60).add(name="held", uses="Held", py_modules=[LIVE_EXECS], restart="on-failure")
    with f:
        first = int(f.post("/pid", Document(id="p"))[0].tags["pid"])
        out: dict = {}

        def call(endpoint: str) -> None:
            try:  # request_size=1: three requests held by the one replica when it dies
                out[endpoint] = f.post(endpoint, [Document(id=f"{endpoint}{i}") for i in range(3)],
                                       request_size=1, parameters={"hold": 0.4})
            except BaseException as exc:
                out[endpoint] = exc

        t = threading.Thread(target=call, args=("/lookup",))
        t.start()
        _wait_held(f)
        os.kill(first, signal.SIGKILL)
        t.join(60)
        got = out["/lookup"]
        assert isinstance(got, DocumentArray) and got.ids == ["/lookup0", "/lookup1", "/lookup2"]
        assert all(d.tags["looked_up_by"] != first for d in got)  # all answered by the restarted replica
        second = int(f.post("/pid", Document(id="p2"))[0].tags["pid"])
        t = threading.Thread(target=call, args=("/charge",))
        t.start()
        _wait_held(f)
        os.kill(second, signal.SIGKILL)
        t.join(60)
        assert isinstance(out["/charge"], PodDied) and out["/charge"].pod == "held"
        assert f.post("/pid", Document(id="p3"))[0].tags["pid"] not in (first, second)
        assert f.failure is None


def _wait_held(f: Flow) -> None:
    """Until the own path has requests in flight on the replica (no sleeping on a guess)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(n for n in f._direct.command({"cmd": "status"})["inflight"].get("held", {}).values()):
            return
        time.sleep(0.01)
    raise AssertionError("no request reached the replica")
