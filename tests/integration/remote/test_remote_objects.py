"""The object layer (`Workspace`, `FlowHandle`, `PodHandle`) against a real `jinad` on loopback."""

from __future__ import annotations

import httpx
import pytest

from jinad_fab.errors import (
    EXIT_FAILED,
    BuildFailed,
    Forbidden,
    NotFound,
    NotReady,
    StartFailed,
    Unauthorized,
)
from jinad_fab.remote import DaemonClient, FlowHandle, PodHandle, Workspace

pytestmark = pytest.mark.timeout(180)

FLOW = "!Flow\nversion: '1'\nwith:\n  protocol: http\npods:\n  - name: a\n    uses: _logforward\n"


def test_workspace_flow_and_pod_handles(daemons):
    h = daemons(token="tok")
    with DaemonClient.from_address(f"http://127.0.0.1:{h.port}", "tok") as c:
        ws = Workspace.create(c, {"flow.yml": FLOW.encode()})
        assert ws.state == "PENDING" and ws.id.startswith("jworkspace-")
        seen: list[str] = []
        assert ws.wait_active(timeout=120, interval=0.05, on_state=lambda w: seen.append(w.state)) is ws
        assert seen[0] == "PENDING" and seen[-1] == "ACTIVE" and ws.reload().state == "ACTIVE"

        flow = ws.start_flow("flow.yml")
        assert flow.state == "RUNNING" and flow.workspace_id == ws.id
        r = httpx.post(f"http://127.0.0.1:{flow.gateway['http_port']}/index", json={"data": [{"text": "x"}]},
                       timeout=30)
        assert r.status_code == 200
        again = FlowHandle.get(c, flow.id)
        assert again.gateway == flow.gateway and again.wait_active(timeout=0) is again
        assert any("/index" in str(line.get("msg") or line.get("message")) for line in flow.logs())
        assert len(list(flow.logs(tail=1))) == 1

        pod = ws.start_pod({"name": "p", "uses": "_logforward", "parallel": 2})
        assert pod.state == "RUNNING" and len(pod.in_addresses) == 2 and pod.ctrl_address.startswith("tcp://")
        assert PodHandle.get(c, pod.id).in_addresses == pod.in_addresses
        pod.delete()
        assert pod.reload().state == "STOPPED"  # kept, stopped, until its workspace goes

        flow.delete()
        ws.delete()
        with pytest.raises(NotFound) as info:
            Workspace.get(c, ws.id)
        assert info.value.status_code == 404 and ws.id in info.value.message
        with pytest.raises(NotFound):
            pod.reload()


def test_a_failed_build_is_build_failed_with_the_build_log_tail(daemons):
    h = daemons()
    with DaemonClient.from_address(f"127.0.0.1:{h.port}", h.token) as c:
        ws = Workspace.create(c, {"requirements.txt": b"no-such-package-jinad-fab-test==9.9\n"})
        with pytest.raises(BuildFailed) as info:
            ws.wait_active(timeout=120, interval=0.05)
        err = info.value
        assert err.object_id == ws.id and ws.state == "FAILED" and err.exit_code == EXIT_FAILED
        assert any("no-such-package" in line for line in err.log_tail)
        assert f"workspace {ws.id} failed to build" in str(err) and "--- last log lines ---" in str(err)
        ws.delete()


def test_a_start_failure_is_the_daemons_message_and_log_tail_not_json(daemons):
    h = daemons()
    with DaemonClient.from_address(f"127.0.0.1:{h.port}", h.token) as c:
        ws = Workspace.create(c, {"readme.txt": b"x"}).wait_active(timeout=120, interval=0.05)
        with pytest.raises(StartFailed) as info:
            ws.start_pod({"name": "p", "uses": "NoSuchExecutor"})
        err = info.value
        assert err.status_code == 400 and err.object_id.startswith("jpod-") and err.host == f"127.0.0.1:{h.port}"
        assert "failed to start" in err.message and "NoSuchExecutor" in err.message
        assert "{" not in str(err).splitlines()[0]  # the message, not the daemon's JSON
        assert err.log_tail and any("NoSuchExecutor" in line for line in err.log_tail)
        assert PodHandle.get(c, err.object_id).state == "FAILED"
        ws.delete()


def test_not_ready_in_time_and_token_errors(daemons):
    h = daemons(token="right")
    with DaemonClient.from_address(f"127.0.0.1:{h.port}", "right") as c:
        ws = Workspace.create(c, {"readme.txt": b"x"})
        with pytest.raises(NotReady) as info:
            ws.wait_active(timeout=0)  # the answer to the upload says PENDING
        assert info.value.object_id == ws.id and "still PENDING" in str(info.value)
        ws.wait_active(timeout=120, interval=0.05).delete()
    with DaemonClient.from_address(f"127.0.0.1:{h.port}", "wrong") as c:
        with pytest.raises(Forbidden) as info:
            c.workspaces()
        assert info.value.status_code == 403 and str(info.value) == f"127.0.0.1:{h.port}: wrong token"
    with DaemonClient.from_address(f"127.0.0.1:{h.port}") as c:
        with pytest.raises(Unauthorized) as info:
            c.workspaces()
        assert type(info.value) is Unauthorized and info.value.status_code == 401
