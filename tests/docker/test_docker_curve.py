"""A Pod in a container gets its CURVE keys from jinad without Docker keeping them.

Docker stores every container's command and environment on disk (``docker inspect``): the keys
must be in neither. The daemon moves the sealed half into the container's own status directory
and the Pod deletes it once read; that the Pod really holds its keys shows on its control port,
which answers a member of the Flow and nobody else.
"""

from __future__ import annotations

import json

import pytest
import zmq.utils.z85

from jinad_fab.errors import RuntimeFailure
from jinad_fab.runtime.curve import flow_keys
from jinad_fab.runtime.sockets import ctrl_request, make_context
from tests.support.daemons import upload, wait_state

pytestmark = pytest.mark.timeout(600)


def _leaks(blob: bytes, secrets: list[str]) -> bool:
    return any(s.encode() in blob or zmq.utils.z85.decode(s.encode()) in blob for s in secrets)


def test_a_pod_in_a_container_holds_its_keys_and_docker_keeps_none(docker_daemon, engine):
    keys = flow_keys(["far", "member"])
    secrets = [keys["far"].secret, keys["far"].server_secret]
    d = docker_daemon()
    with d.client() as c:
        r = upload(c, {"README.md": "a workspace for one Pod\n"}, runtime="docker")
        assert r.status_code == 201, r.text
        ws = wait_state(c, f"/workspaces/{r.json()['id']}", {"ACTIVE", "FAILED"}, timeout=300)
        assert ws["state"] == "ACTIVE", ws
        r = c.post("/pods", params={"workspace_id": ws["id"]},
                   json={"name": "far", "uses": "_pass", "curve": keys["far"].to_dict(), "changeable": True})
        assert r.status_code == 201, r.text
        pod = r.json()
        assert pod["state"] == "RUNNING", pod
        ctrl = pod["ctrl_address"]
        member, stranger = make_context(keys["member"]), make_context()
        try:
            status = ctrl_request(member, ctrl, {"cmd": "status"}, timeout=10)
            assert status["ok"] is True
            # asked to be changeable, it is one Pea all the same: a replica added in a container would
            # listen on a port the engine does not publish (issue 15)
            assert "members" not in status and "pending" in status
            with pytest.raises(RuntimeFailure):
                ctrl_request(stranger, ctrl, {"cmd": "status"}, timeout=2)
        finally:
            member.destroy(linger=0)
            stranger.destroy(linger=0)
        (container,) = engine.containers.list(filters={"label": f"jinad.id={pod['id']}"})
        assert "--args-json" in container.attrs["Config"]["Cmd"]  # its arguments are there, its keys are not
        assert not _leaks(json.dumps(container.attrs).encode(), secrets)
        listing = container.exec_run(["ls", "-A", "/jinad/status"]).output.decode()
        assert ".sealed" not in listing  # read and deleted by the Pod
        assert not _leaks(json.dumps(c.get(f"/pods/{pod['id']}").json()).encode(), secrets)
        for p in d.home.rglob("*"):
            if p.is_file() and not p.is_symlink():
                assert not _leaks(p.read_bytes(), secrets), p
        assert c.delete(f"/workspaces/{ws['id']}").status_code in (200, 204)
