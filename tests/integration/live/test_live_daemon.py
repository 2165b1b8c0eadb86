"""A Flow run by a real jinad, changed over REST (PUT /flows/{id}) while twenty clients search."""

import json
import os
import signal
import time

import pytest

from jinad_fab import Client, Document
from tests.integration.live._load import CORPUS, Load
from tests.support.daemons import active_workspace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

EXECS = os.path.join(os.path.dirname(__file__), "_live_execs.py")
FLOW = """!Flow
version: '1'
pods:
  - name: enc
    uses: VersionedEncoder
    py_modules: [_live_execs.py]
    parallel: 3
    uses_with: {version: v1, delay: 0.002}
  - name: idx
    uses: _index
    shards: 2
"""


def wait_change(c, fid: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = c.get(f"/flows/{fid}").json()["live"]
        if live["change"] and live["change"]["state"] != "running":
            return live
        time.sleep(0.1)
    raise AssertionError("the change did not finish")


def test_scale_update_dump_and_restart_a_daemon_run_flow_over_rest(daemon_factory):
    jinad = daemon_factory()
    with open(EXECS, encoding="utf-8") as fh:
        execs = fh.read()
    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW, "_live_execs.py": execs})
        r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"}, timeout=120)
        assert r.status_code == 201, r.text
        fid, port = r.json()["id"], r.json()["gateway"]["native_port"]
        with Client(port=port, timeout=60) as feed:
            feed.post("/index", [Document(id=t, text=t) for t in CORPUS], request_size=50)
        body = c.get(f"/flows/{fid}").json()
        assert body["live"]["pods"]["enc"] == {"replicas": 3, "restarts": 0} and body["live"]["change"] is None

        # bad input: 400 naming the field, before anything changes
        for change, field in (({"kind": "scale", "pod": "enc", "replicas": 0}, "replicas"),
                              ({"kind": "scale", "pod": "nope", "replicas": 2}, "pod"),
                              ({"kind": "grow", "pod": "enc"}, "kind"),
                              ({"kind": "dump", "pod": "idx", "path": "../../outside"}, "path"),
                              ({"kind": "rolling_update", "pod": "idx", "dump_path": "/etc"}, "dump_path"),
                              ({"kind": "scale", "pod": "enc", "replicas": 2, "uses": "X"}, "uses")):
            r = c.put(f"/flows/{fid}", json=change)
            assert r.status_code == 400, (change, r.text)
            assert r.json()["detail"].startswith(field), (change, r.text)
        assert not (jinad.home / "workspaces" / wid / "outside").exists()

        with Load(lambda: Client(port=port, timeout=60)) as load:
            load.wait_answers(40)
            r = c.put(f"/flows/{fid}", json={"kind": "scale", "pod": "enc", "replicas": 5}, timeout=120)
            assert r.status_code == 200, r.text
            live = r.json()["live"]
            assert live["pods"]["enc"]["replicas"] == 5
            assert [e["step"] for e in live["change"]["events"]] == ["started", "started"]

            # a second change while one runs: 409; the first one goes on
            r = c.put(f"/flows/{fid}", json={"kind": "rolling_update", "pod": "enc",
                                            "uses_with": {"version": "v2", "delay": 0.002}, "wait": False})
            assert r.status_code == 202, r.text
            r = c.put(f"/flows/{fid}", json={"kind": "scale", "pod": "enc", "replicas": 1})
            assert r.status_code == 409 and "in progress" in r.json()["detail"]
            live = wait_change(c, fid)
            assert live["change"]["state"] == "done" and live["pods"]["enc"]["replicas"] == 5
            updated_at = time.monotonic()
            load.wait_answers(60)

            # SIGKILL one encoder replica: a Flow run by jinad restarts it (on-failure by default)
            with load.lock:
                victim = next(iter(load.pids[-1]))
            os.kill(int(victim), signal.SIGKILL)
            deadline = time.monotonic() + 30
            while c.get(f"/flows/{fid}").json()["live"]["pods"]["enc"]["restarts"] < 1:
                assert time.monotonic() < deadline, "the replica was not restarted"
                time.sleep(0.05)
            load.wait_answers(60)

            r = c.put(f"/flows/{fid}", json={"kind": "dump", "pod": "idx", "path": "dumps/one"}, timeout=120)
            assert r.status_code == 200, r.text
            r = c.put(f"/flows/{fid}", json={"kind": "rolling_update", "pod": "idx", "dump_path": "dumps/one"},
                      timeout=120)
            assert r.status_code == 200, r.text
            load.wait_answers(60)
        assert load.errors == [] and load.wrong == []
        assert all(len(v) == 1 for _, _, v in load.answers)
        assert all(v == {"v2"} for sent, _, v in load.answers if sent > updated_at)
        body = c.get(f"/flows/{fid}").json()
        assert body["state"] == "RUNNING" and body["live"]["pods"]["enc"] == {"replicas": 5, "restarts": 1}
        dumps = [p for p in (jinad.home / "workspaces" / wid).rglob("one") if p.is_dir()]
        assert dumps and sorted(os.listdir(dumps[0])) == ["0", "1"]
        log = c.get(f"/logs/{fid}").text
        assert "live change: scale of Pod 'enc' done" in log


SMALL = """!Flow
version: '1'
pods:
  - name: enc
    uses: VersionedEncoder
    py_modules: [_live_execs.py]
"""


def test_the_cli_scales_and_updates_with_a_line_per_replica(daemon_factory):
    from click.testing import CliRunner

    from jinad_fab.cli.main import _register, cli

    _register()
    jinad = daemon_factory()
    with open(EXECS, encoding="utf-8") as fh:
        execs = fh.read()
    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": SMALL, "_live_execs.py": execs})
        fid = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"}, timeout=120).json()["id"]
    opts = ["--host", f"127.0.0.1:{jinad.port}", "--token-file", str(jinad.token_file)]
    result = CliRunner().invoke(cli, ["flow", "scale", fid, "enc", "3", *opts], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("enc/replica-") == 2 and result.output.count(" started") == 2
    assert f"{fid}: scale of Pod 'enc' done" in result.output
    result = CliRunner().invoke(cli, ["flow", "update", fid, "enc", "--uses-with", "version=v2", *opts, "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["state"] == "done" and [e["step"] for e in body["events"]] == ["started", "draining", "stopped"] * 3
    result = CliRunner().invoke(cli, ["flow", "scale", fid, "nope", "2", *opts])
    assert result.exit_code != 0 and "pod: the Flow has no Pod 'nope'" in result.output
    with jinad.client() as c:
        port = c.get(f"/flows/{fid}").json()["gateway"]["native_port"]
    with Client(port=port, timeout=30) as client:
        assert client.post("/search", Document(text="x"))[0].tags["version"] == "v2"


def test_put_pods_scales_and_rolls_a_standalone_pod(daemon_factory):
    import zmq

    from jinad_fab.wire import Message, new_header

    jinad = daemon_factory()
    with open(EXECS, encoding="utf-8") as fh:
        execs = fh.read()
    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": SMALL, "_live_execs.py": execs})
        pod = c.post("/pods", params={"workspace_id": wid}, json={
            "name": "enc", "uses": "VersionedEncoder", "py_modules": ["_live_execs.py"], "parallel": 2}, timeout=120)
        assert pod.status_code == 201, pod.text
        pid = pod.json()["id"]
        for change, field in (({"kind": "dump", "pod": "enc", "path": "d"}, "kind"),
                              ({"kind": "scale", "pod": "enc"}, "replicas"),
                              ({"kind": "rolling_update", "pod": "enc", "dump_path": "../x"}, "dump_path")):
            r = c.put(f"/pods/{pid}", json=change)
            assert r.status_code == 400 and r.json()["detail"].startswith(field), (change, r.text)
        r = c.put(f"/pods/{pid}", json={"kind": "scale", "pod": "enc", "replicas": 3}, timeout=120)
        assert r.status_code == 200, r.text
        live = r.json()["live"]
        assert live["members"]["enc"]["replicas"] == ["0", "1", "2"]
        assert [e["step"] for e in live["events"]] == ["started"]
        r = c.put(f"/pods/{pid}", json={"kind": "rolling_update", "pod": "enc", "uses_with": {"version": "v2"}},
                  timeout=120)
        assert r.status_code == 200, r.text
        live = r.json()["live"]
        assert [e["step"] for e in live["events"]] == ["started", "stopped"] * 3
        replicas = live["in_target"]["replicas"]
        assert sorted(replicas) == ["3", "4", "5"]
        ctrl = r.json()["ctrl_address"]
    # every new replica answers, with the new version: wire the Pod's output here and ask each one
    ctx = zmq.Context()
    try:
        out = ctx.socket(zmq.PULL)
        port = out.bind_to_random_port("tcp://127.0.0.1")
        req = ctx.socket(zmq.REQ)
        req.connect(ctrl)
        req.send_json({"cmd": "connect", "targets": [[f"tcp://127.0.0.1:{port}"]]})
        assert req.recv_json()["ok"]
        for rid, addr in replicas.items():
            push = ctx.socket(zmq.PUSH)
            push.connect(addr)
            msg = Message(dict(new_header(f"r{rid}", "/search"), plan={"enc": rid}), docs=[Document(text="x")])
            push.send_multipart(msg.frames())
            assert out.poll(30000), f"replica {rid} did not answer"
            answer = Message.from_frames(out.recv_multipart())
            assert answer.request_id == f"r{rid}" and answer.docs[0].tags["version"] == "v2"
            push.close(0)
    finally:
        ctx.destroy(0)
