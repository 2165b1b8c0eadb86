"""The whole life cycle against a real jinad: upload, build, start a Flow, index, logs, delete."""

from __future__ import annotations

import json
import time

import httpx

from tests.support.daemons import FLOW_YML, active_workspace, processes_of, upload, wait_state


def test_health_and_status_show_no_secrets(daemon_factory):
    d = daemon_factory(token="s3cret-token")
    with d.client() as c:
        alive = httpx.get(d.url + "/alive").json()  # health needs no token
        assert alive["runtimes"] and "process" in alive["runtimes"]
        assert alive["daemon_id"].startswith("jinad-") and alive["uptime"] >= 0
        assert c.get("/").json()["daemon_id"] == alive["daemon_id"]  # only /alive goes without the token
        assert httpx.get(d.url + "/").status_code == 401
        status = c.get("/status")
        assert status.status_code == 200
        assert status.json()["resources"]["cpu_count"] >= 1
        for body in (alive, status.json()):
            assert "s3cret-token" not in json.dumps(body)
            assert "PATH" not in json.dumps(body)
    assert httpx.get(d.url + "/status").status_code == 401
    assert httpx.get(d.url + "/workspaces", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert httpx.get(d.url + "/workspaces", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_flow_life_cycle(jinad):
    with jinad.client() as c:
        r = upload(c, {"flow.yml": FLOW_YML, "data/notes.txt": "kept in a sub-directory"})
        assert r.status_code == 201 and r.json()["state"] == "PENDING"
        wid = r.json()["id"]
        ws = wait_state(c, f"/workspaces/{wid}", {"ACTIVE", "FAILED"})
        assert ws["state"] == "ACTIVE", ws
        assert sorted(ws["files"]) == ["data/notes.txt", "flow.yml"]
        assert (jinad.home / "workspaces" / wid / "files" / "data" / "notes.txt").read_text() == "kept in a sub-directory"
        assert [w["id"] for w in c.get("/workspaces").json()["items"]] == [wid]

        r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"})
        assert r.status_code == 201, r.text
        flow = r.json()
        assert flow["state"] == "RUNNING" and flow["gateway"]["http_port"]
        gw = f"http://{flow['gateway']['host']}:{flow['gateway']['http_port']}"

        answer = httpx.post(gw + "/index", json={"data": [{"text": "hi"}, {"text": "there"}], "parameters": {}},
                            timeout=30)
        assert answer.status_code == 200, answer.text
        assert [d["text"] for d in answer.json()["data"]] == ["hi", "there"]

        assert c.get(f"/flows/{flow['id']}").json()["state"] == "RUNNING"
        assert [f["id"] for f in c.get("/flows").json()["items"]] == [flow["id"]]
        assert c.get(f"/workspaces/{wid}").json()["objects"] == [flow["id"]]

        lines = [json.loads(x) for x in c.get(f"/logs/{flow['id']}").text.splitlines()]
        assert all(isinstance(x, dict) for x in lines)
        msgs = " ".join(str(x.get("msg")) for x in lines)
        assert "starting flow" in msgs and "ready" in msgs and "/index" in msgs
        assert len(c.get(f"/logs/{flow['id']}", params={"tail": 2}).text.splitlines()) == 2
        build_log = c.get(f"/logs/{wid}").text
        assert "build finished" in build_log

        pids = processes_of(jinad.home)
        assert pids, "the Flow's processes should be running"
        r = c.delete(f"/flows/{flow['id']}")
        assert r.status_code == 200 and r.json()["state"] == "STOPPED"
        assert c.delete(f"/flows/{flow['id']}").json()["state"] == "STOPPED"  # idempotent
        assert [p.pid for p in processes_of(jinad.home)] == []
        try:
            httpx.post(gw + "/index", json={"data": [{"text": "x"}]}, timeout=2)
            raise AssertionError("the gateway still answers after DELETE")
        except httpx.TransportError:
            pass

        assert c.delete(f"/workspaces/{wid}").status_code == 204
        assert c.get(f"/workspaces/{wid}").status_code == 404
        assert not (jinad.home / "workspaces" / wid).exists()


def test_pod_and_pea_ports_and_cascade_delete(jinad):
    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW_YML})
        pod = c.post("/pods", params={"workspace_id": wid}, json={"name": "enc", "uses": "_logforward", "parallel": 2})
        assert pod.status_code == 201, pod.text
        pod = pod.json()
        assert pod["state"] == "RUNNING" and pod["in_addresses"] and pod["ctrl_address"].startswith("tcp://127.0.0.1:")
        pea = c.post("/peas", params={"workspace_id": wid}, json={"name": "one", "uses": "_logforward"})
        assert pea.status_code == 201, pea.text
        assert pea.json()["id"].startswith("jpea-") and pea.json()["state"] == "RUNNING"
        assert len(c.get("/pods").json()["items"]) == 1 and len(c.get("/peas").json()["items"]) == 1
        assert c.get(f"/pods/{pod['id']}").json()["args"]["parallel"] == 2
        assert processes_of(jinad.home)

        started = time.monotonic()
        assert c.delete(f"/workspaces/{wid}").status_code == 204
        assert time.monotonic() - started < 30
        assert processes_of(jinad.home) == []
        assert c.get(f"/pods/{pod['id']}").status_code == 404


def test_follow_logs_and_reconnect_from_offset(jinad):
    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW_YML})
        pea = c.post("/peas", params={"workspace_id": wid}, json={"name": "p", "uses": "_logforward"}).json()
        first = c.get(f"/logs/{pea['id']}").text.splitlines()
        assert first
        received: list[str] = []
        with c.stream("GET", f"/logs/{pea['id']}", params={"follow": True, "offset": len(first)},
                      timeout=30) as stream:
            c2 = jinad.client()
            c2.delete(f"/peas/{pea['id']}")
            c2.close()
            for line in stream.iter_lines():  # ends by itself once the pea is STOPPED
                received.append(line)
        whole = c.get(f"/logs/{pea['id']}").text.splitlines()
        assert first + received == whole
        assert any("stopped" in json.loads(x).get("msg", "") for x in received)
