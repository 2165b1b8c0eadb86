"""A Flow with a Pod on a real jinad, changed while twenty clients search (issue 15)."""

import os
import shutil
import signal
import threading
import time

import pytest

from jinad_fab import Document, DocumentArray, Flow
from jinad_fab.errors import PodDied
from tests.integration.live._load import CORPUS, Load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

EXECS = os.path.join(os.path.dirname(__file__), "_live_execs.py")


def test_scale_update_and_restart_a_remote_pod_under_twenty_clients(daemon_factory, tmp_path, monkeypatch):
    token = "live-remote-" + os.urandom(6).hex()
    monkeypatch.setenv("JINAD_TOKEN", token)
    jinad = daemon_factory(token=token)
    shutil.copy(EXECS, tmp_path / "_live_execs.py")
    monkeypatch.chdir(tmp_path)
    f = (Flow(workspace=str(tmp_path / "ws"), timeout=60, quiet_remote_logs=True)
         .add(name="enc", uses="VersionedEncoder", py_modules=["_live_execs.py"], parallel=3,
              uses_with={"version": "v1", "delay": 0.002}, host=f"127.0.0.1:{jinad.port}", restart="on-failure")
         .add(name="idx", uses="_index", shards=2))
    events = []
    with f:
        f.index([Document(id=t, text=t) for t in CORPUS], request_size=50)
        with Load(f.client) as load:
            load.wait_answers(40)
            assert f.scale("enc", 5, progress=events.append)["replicas"] == 5
            assert f.live_status()["pods"]["enc"]["replicas"] == 5
            load.wait_answers(40)
            f.scale("enc", 3, progress=events.append)
            f.rolling_update("enc", uses_with={"version": "v2", "delay": 0.002}, progress=events.append)
            updated_at = time.monotonic()
            load.wait_answers(60)
            with load.lock:
                victim = next(iter(load.pids[-1]))
            os.kill(int(victim), signal.SIGKILL)
            deadline = time.monotonic() + 30
            while f.live_status()["pods"]["enc"]["restarts"] < 1:
                assert time.monotonic() < deadline, "the remote replica was not restarted"
                time.sleep(0.05)
            load.wait_answers(60)
        assert load.errors == [] and load.wrong == []
        assert all(len(v) == 1 for _, _, v in load.answers), "a request met two versions"
        assert all(v == {"v2"} for sent, _, v in load.answers if sent > updated_at)
        assert f.live_status()["pods"]["enc"] == {"replicas": 3, "restarts": 1}
        assert f.failure is None
    steps = [e["step"] for e in events]
    assert steps.count("started") == 2 + 3 and steps.count("stopped") == 2 + 3


def test_a_remote_pod_of_one_pea_scales_rolls_and_retries_what_its_executor_marks_idempotent(
        daemon_factory, tmp_path, monkeypatch):
    token = "live-remote-" + os.urandom(6).hex()
    monkeypatch.setenv("JINAD_TOKEN", token)
    jinad = daemon_factory(token=token)
    shutil.copy(EXECS, tmp_path / "_live_execs.py")
    monkeypatch.chdir(tmp_path)
    host = f"127.0.0.1:{jinad.port}"
    # one Pea each (parallel=1, shards=1): no head to add replicas behind, yet both change live
    f = (Flow(workspace=str(tmp_path / "ws"), timeout=60, quiet_remote_logs=True)
         .add(name="enc", uses="VersionedEncoder", py_modules=["_live_execs.py"],
              uses_with={"version": "v1", "delay": 0.002}, host=host)
         .add(name="held", uses="Held", py_modules=["_live_execs.py"], host=host, restart="on-failure")
         .add(name="idx", uses="_index", shards=2, host=host, restart="on-failure"))
    events = []
    with f:
        f.index([Document(id=t, text=t) for t in CORPUS], request_size=50)
        with Load(f.client) as load:
            load.wait_answers(40)
            assert f.scale("enc", 3, progress=events.append)["replicas"] == 3
            assert f.live_status()["pods"]["enc"]["replicas"] == 3
            load.wait_answers(40)
            assert len({p for ps in load.pids[-30:] for p in ps}) > 1, "the new replicas took no request"
            f.rolling_update("enc", uses_with={"version": "v2", "delay": 0.002}, progress=events.append)
            updated_at = time.monotonic()
            load.wait_answers(40)
            # the head of the remote sharded index: restarted by its host when the Flow asks, re-wired
            head = f._running["idx"].ctrl({"cmd": "status"})["pod"]["pids"][0]
            os.kill(head, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while f.live_status()["pods"]["idx"]["restarts"] < 1:
                assert time.monotonic() < deadline, "the remote head was not restarted"
                time.sleep(0.05)
            now = f._running["idx"].ctrl({"cmd": "status"})["pod"]
            assert now["pids"][0] != head
            # the daemon reports where the new head listens, not where the dead one did
            idx = f._running["idx"]
            reported = idx.session.client.pod(idx.pod_id)
            assert reported["in_addresses"] == now["in_addresses"] != idx.info["in_addresses"], reported
            assert reported["ports"]["port_in"] == int(now["in_addresses"][0].rsplit(":", 1)[1])
            load.wait_answers(40)
        assert load.errors == [] and load.wrong == []
        assert all(len(v) == 1 for _, _, v in load.answers), "a request met two versions"
        assert all(v == {"v2"} for sent, _, v in load.answers if sent > updated_at)
        steps = [e["step"] for e in events]
        assert steps.count("started") == 2 + 3 and steps.count("stopped") == 3

        # `held` runs on the daemon: its Executor's idempotent mark still reaches the Gateway, so
        # /lookup held by a Pea that dies is sent again (to the restarted Pea); /charge fails
        c1, c2 = f.client(), f.client()
        out: dict = {}

        def call(client, endpoint, key):
            try:
                out[key] = client.post(endpoint, Document(id=key), parameters={"hold": 1.5})
            except BaseException as exc:
                out[key] = exc

        first = int(f.post("/pid", Document(id="p"))[0].tags["pid"])
        threads = [threading.Thread(target=call, args=(c1, "/lookup", "lookup")),
                   threading.Thread(target=call, args=(c2, "/charge", "charge"))]
        for t in threads:
            t.start()
        time.sleep(0.5)  # both held by the one Pea: it runs one request at a time
        os.kill(first, signal.SIGKILL)
        for t in threads:
            t.join(60)
        c1.close()
        c2.close()
        assert isinstance(out["charge"], PodDied) and out["charge"].pod == "held", out["charge"]
        assert isinstance(out["lookup"], DocumentArray), out["lookup"]
        assert out["lookup"][0].tags["looked_up_by"] not in (first, None)  # the restarted Pea answered
        assert f.live_status()["pods"]["held"]["restarts"] == 1 and f.failure is None
