"""SIGKILL the daemon with a Flow running; a restarted daemon finds it again and it keeps serving."""

from __future__ import annotations

import httpx

from tests.support.daemons import FLOW_YML, active_workspace, processes_of


def test_flow_survives_daemon_sigkill_and_is_readopted(daemon_factory):
    d = daemon_factory()
    with d.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW_YML})
        flow = c.post("/flows", params={"workspace_id": wid}).json()
        assert flow["state"] == "RUNNING", flow
        pea = c.post("/peas", params={"workspace_id": wid}, json={"name": "solo"}).json()
    gw = f"http://{flow['gateway']['host']}:{flow['gateway']['http_port']}"
    before = sorted(p.pid for p in processes_of(d.home))
    port = d.port

    d.kill()
    # the children live on without the daemon, and serve
    assert sorted(p.pid for p in processes_of(d.home)) == before
    assert httpx.post(gw + "/index", json={"data": [{"text": "alone"}]}, timeout=30).json()["data"][0]["text"] == "alone"
    # one object vanishes while the daemon is down
    [victim] = [p for p in processes_of(d.home) if p.pid == pea["pid"]]
    victim.kill()
    victim.wait(10)

    d2 = daemon_factory(home=d.home)
    d2.port = port  # not required, but proves the port is free again at once (no inherited socket)
    d2.stop()
    d2.start()
    with d2.client() as c:
        again = c.get(f"/flows/{flow['id']}").json()
        assert again["state"] == "RUNNING" and again["gateway"] == flow["gateway"]
        assert [f["id"] for f in c.get("/flows").json()["items"]] == [flow["id"]]
        lost = c.get(f"/peas/{pea['id']}").json()
        assert lost["state"] == "FAILED" and "vanished" in lost["error"]
        answer = httpx.post(gw + "/index", json={"data": [{"text": "after restart"}]}, timeout=30)
        assert answer.json()["data"][0]["text"] == "after restart"
        log = c.get(f"/logs/{flow['id']}").text
        assert "re-adopted after a daemon restart" in log

        assert c.delete(f"/flows/{flow['id']}").json()["state"] == "STOPPED"
        assert processes_of(d2.home) == []
        assert c.delete(f"/workspaces/{wid}").status_code == 204
