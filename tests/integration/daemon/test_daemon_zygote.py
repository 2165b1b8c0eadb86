"""Objects forked from a workspace's zygote: found again by a restarted daemon, zygote gone with it."""

from __future__ import annotations

import time

import psutil

from tests.support.daemons import FLOW_YML, active_workspace, processes_of


def _zygotes_of(home) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["name", "cwd", "status"]):
        if p.info["name"] == "jinad-zygote" and str(home) in (p.info["cwd"] or "") \
                and p.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(p)
    return out


def _wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_restarted_daemon_adopts_zygote_forked_objects(daemon_factory):
    d = daemon_factory()
    with d.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW_YML})
        pod = c.post("/pods", params={"workspace_id": wid}, json={"name": "forked"}).json()
        assert pod["state"] == "RUNNING", pod
        [zygote] = _zygotes_of(d.home)
        # forked by the workspace's zygote, in a session of its own
        proc = psutil.Process(pod["pid"])
        assert proc.ppid() == zygote.pid and proc.name() == "jinad-pod"
        second = c.post("/peas", params={"workspace_id": wid}, json={"name": "again"}).json()
        assert psutil.Process(second["pid"]).ppid() == zygote.pid  # one zygote per workspace, reused

    d.kill()
    zygote.wait(10)  # it follows the daemon...
    assert psutil.Process(pod["pid"]).is_running()  # ...its children do not

    d2 = daemon_factory(home=d.home)
    with d2.client() as c:
        again = c.get(f"/pods/{pod['id']}").json()
        assert again["state"] == "RUNNING" and again["pid"] == pod["pid"], again
        assert "re-adopted after a daemon restart" in c.get(f"/logs/{pod['id']}").text
        assert c.delete(f"/pods/{pod['id']}").json()["state"] == "STOPPED"
        assert c.delete(f"/peas/{second['id']}").json()["state"] == "STOPPED"
        assert processes_of(d2.home) == []

        # the next object gets a fresh zygote; deleting the workspace stops it
        flow = c.post("/flows", params={"workspace_id": wid}).json()
        assert flow["state"] == "RUNNING", flow
        [fresh] = _zygotes_of(d2.home)
        assert fresh.pid != zygote.pid
        assert c.delete(f"/workspaces/{wid}").status_code == 204
        _wait_until(lambda: not _zygotes_of(d2.home) and processes_of(d2.home) == [])


def test_zygote_is_up_when_the_workspace_becomes_active_and_started_again_with_the_daemon(daemon_factory):
    d = daemon_factory()
    with d.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW_YML})
        # no object asked for yet: the build started the zygote before it said ACTIVE
        [zygote] = _zygotes_of(d.home)
        assert "ready to start objects after" in c.get(f"/logs/{wid}").text
        pod = c.post("/pods", params={"workspace_id": wid}, json={"name": "first"}).json()
        assert pod["state"] == "RUNNING", pod
        assert psutil.Process(pod["pid"]).ppid() == zygote.pid  # the warm one, not a second zygote
        assert c.delete(f"/pods/{pod['id']}").json()["state"] == "STOPPED"

    d.kill()
    zygote.wait(10)
    d2 = daemon_factory(home=d.home)
    with d2.client() as c2:
        # the restarted daemon warmed the ACTIVE workspace's zygote before it answered: the first
        # object after a start is forked from it, like any later one
        [zygote2] = _zygotes_of(d2.home)
        assert zygote2.pid != zygote.pid
        zygote_log = d2.home / "runtimes" / "process" / f"zygote-{wid}.log"
        assert f"zygote {zygote2.pid} ready" in zygote_log.read_text()  # done importing, not just started
        pod = c2.post("/pods", params={"workspace_id": wid}, json={"name": "after-restart"}).json()
        assert pod["state"] == "RUNNING", pod
        assert psutil.Process(pod["pid"]).ppid() == zygote2.pid
        assert c2.delete(f"/pods/{pod['id']}").json()["state"] == "STOPPED"
