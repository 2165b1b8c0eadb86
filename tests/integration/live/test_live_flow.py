"""Changing a running local Flow under load: scale, rolling update, restarts, retries (issue 15).

Twenty clients search without a pause while the Flow changes; every answer is checked against a
brute-force search, and not one request may fail.
"""

import os
import signal
import threading
import time

import pytest

from jinad_fab import Document, DocumentArray, Flow
from jinad_fab.errors import ChangeInProgress, PodDied
from tests.integration.live._load import CORPUS, Load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EXECS = os.path.join(os.path.dirname(__file__), "_live_execs.py")


def indexed_flow(tmp_path, idx: dict | None = None, **enc) -> Flow:
    f = (Flow(workspace=str(tmp_path), timeout=60)
         .add(name="enc", uses="VersionedEncoder", py_modules=[EXECS], parallel=3,
              uses_with={"version": "v1", "delay": 0.002}, **enc)
         .add(name="idx", uses="_index", shards=2, **(idx or {})))
    return f


def pids_of(f: Flow, pod: str) -> list[int]:
    return [p.pid for row in f._running[pod].peas for p in row]


def test_scale_and_rolling_update_under_twenty_clients_lose_nothing(tmp_path):
    events = []
    with indexed_flow(tmp_path) as f:
        f.index([Document(id=t, text=t) for t in CORPUS], request_size=50)
        with Load(f.client) as load:
            load.wait_answers(40)
            for n in (5, 1, 3):
                result = f.scale("enc", n, progress=events.append)
                assert result["replicas"] == n
                assert len(pids_of(f, "enc")) == n and f.live_status()["pods"]["enc"]["replicas"] == n
                load.wait_answers(40)
            old = set(pids_of(f, "enc"))
            f.rolling_update("enc", uses_with={"version": "v2", "delay": 0.002}, progress=events.append)
            updated_at = time.monotonic()
            assert not set(pids_of(f, "enc")) & old and len(pids_of(f, "enc")) == 3
            load.wait_answers(60)
        assert load.errors == []
        assert load.wrong == []
        assert all(len(v) == 1 for _, _, v in load.answers), "a request met two versions"
        after = [v for sent, _, v in load.answers if sent > updated_at]
        assert after and all(v == {"v2"} for v in after)
        assert {v for _, _, vs in load.answers for v in vs} == {"v1", "v2"}
    steps = [(e["step"]) for e in events]
    # 3->5: two started; 5->1: four drained and stopped; 1->3: two started; update: 3 x (started, drained, stopped)
    assert steps.count("started") == 2 + 2 + 3 and steps.count("stopped") == 4 + 3


def test_a_killed_replica_or_shard_head_is_restarted_and_its_searches_retried(tmp_path):
    with indexed_flow(tmp_path, restart="on-failure", idx={"restart": "on-failure"}) as f:
        f.index([Document(id=t, text=t) for t in CORPUS], request_size=50)
        with Load(f.client) as load:
            load.wait_answers(40)
            victim = pids_of(f, "enc")[1]
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while f.live_status()["pods"]["enc"]["restarts"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert f.live_status()["pods"]["enc"] == {"replicas": 3, "restarts": 1}
            assert victim not in pids_of(f, "enc")
            load.wait_answers(60)
            # the head of the sharded index: every search goes through it
            head = f._running["idx"].head
            os.kill(head.pid, signal.SIGKILL)
            while f.live_status()["pods"]["idx"]["restarts"] < 1 and time.monotonic() < deadline + 30:
                time.sleep(0.02)
            assert f.live_status()["pods"]["idx"] == {"replicas": 1, "restarts": 1}
            new_head = f._running["idx"].head
            assert new_head is not head and new_head.alive()
            load.wait_answers(60)
        assert load.errors == [] and load.wrong == []
        assert f.failure is None


def test_a_dead_replicas_idempotent_requests_are_retried_and_the_others_fail_naming_the_pod(tmp_path):
    f = Flow(timeout=60).add(name="held", uses="Held", py_modules=[EXECS], restart="on-failure")
    with f:
        c1, c2 = f.client(), f.client()
        out: dict = {}

        def call(client, endpoint, key):
            try:
                out[key] = client.post(endpoint, Document(id=key), parameters={"hold": 1.5})
            except BaseException as exc:
                out[key] = exc

        first = f.post("/pid", Document(id="p"))[0].tags["pid"]
        threads = [threading.Thread(target=call, args=(c1, "/lookup", "lookup")),
                   threading.Thread(target=call, args=(c2, "/charge", "charge"))]
        for t in threads:
            t.start()
        time.sleep(0.5)  # both held by the one replica: it runs one request at a time
        os.kill(int(first), signal.SIGKILL)
        for t in threads:
            t.join(60)
        c1.close()
        c2.close()
        assert isinstance(out["charge"], PodDied) and out["charge"].pod == "held"
        assert isinstance(out["lookup"], DocumentArray)
        assert out["lookup"][0].tags["looked_up_by"] != first  # answered by the restarted replica
        assert f.post("/pid", Document(id="p2"))[0].tags["pid"] != first
        assert f.live_status()["pods"]["held"]["restarts"] == 1 and f.failure is None


def test_without_a_restart_policy_a_pod_with_no_replica_left_fails_the_flow(tmp_path):
    with Flow().add(name="held", uses="Held", py_modules=[EXECS]) as f:
        pid = int(f.post("/pid", Document(id="p"))[0].tags["pid"])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while f.failure is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert f.failure is not None and f.failure["pod"] == "held"
        with pytest.raises(PodDied) as info:
            f.post("/pid", Document(id="p2"))
        assert info.value.pod == "held"


def test_a_second_change_while_one_runs_is_refused(tmp_path):
    with Flow().add(name="enc", uses="VersionedEncoder", py_modules=[EXECS]) as f:
        started = threading.Event()
        done: list = []

        def progress(event):
            started.set()
            time.sleep(0.5)

        t = threading.Thread(target=lambda: done.append(f.scale("enc", 2, progress=progress)))
        t.start()
        assert started.wait(60)
        with pytest.raises(ChangeInProgress) as info:
            f.scale("enc", 3)
        assert "scale Pod 'enc'" in str(info.value) and info.value.http_status == 409
        t.join(60)
        assert done and done[0]["replicas"] == 2
        assert f.search(Document(text="x"))[0].tags["version"] == "v1"


def test_dump_then_rolling_update_of_the_index_from_it_under_twenty_clients(tmp_path):
    dump = tmp_path / "dump"
    events = []
    with indexed_flow(tmp_path / "ws") as f:
        f.index([Document(id=t, text=t) for t in CORPUS], request_size=50)
        with Load(f.client) as load:
            load.wait_answers(40)
            result = f.dump("idx", str(dump))
            assert result["path"] == str(dump)
            assert sorted(os.listdir(dump)) == ["0", "1"]  # one part per shard
            old = set(pids_of(f, "idx"))
            f.rolling_update("idx", dump_path=str(dump), progress=events.append)
            assert not set(pids_of(f, "idx")) & old and len(pids_of(f, "idx")) == 2
            assert f._running["idx"].args["dump_path"] == str(dump)
            load.wait_answers(60)
        assert load.errors == [] and load.wrong == []
    assert [e["step"] for e in events].count("started") == 2


def test_restarts_stop_at_the_cap_and_the_pod_then_fails_the_flow(tmp_path):
    f = Flow(timeout=60).add(name="held", uses="Held", py_modules=[EXECS], restart="on-failure",
                             restart_limit=1, restart_window=600)
    with f:
        first = int(f.post("/pid", Document(id="a"))[0].tags["pid"])
        os.kill(first, signal.SIGKILL)
        # idempotent: planned onto the dead replica before its death was seen, it is sent again
        second = int(f.post("/lookup", Document(id="b"))[0].tags["looked_up_by"])
        assert second != first and f.live_status()["pods"]["held"]["restarts"] == 1
        os.kill(second, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while f.failure is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert f.failure is not None and f.failure["pod"] == "held"
        assert "not restarted again (1 restarts within 600s)" in f.failure["msg"]
        assert f.live_status()["pods"]["held"]["given_up"] == "1 restarts within 600s"
