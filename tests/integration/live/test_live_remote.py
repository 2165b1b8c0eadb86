"""A Flow with a Pod on a real jinad, changed while twenty clients search (issue 15)."""

import os
import shutil
import signal
import time

import pytest

from jinad_fab import Document, Flow
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
