"""A Flow or Pod that cannot start is refused with 400 and the reason, never a 500."""

from __future__ import annotations

from tests.support.daemons import active_workspace


def test_a_flow_that_cannot_start_is_a_400_with_its_log_tail(jinad):
    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": "!Flow\nversion: 1\npods:\n  - name: a\n    uses: NoSuchExecutor\n"})
        r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"})
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert "failed to start" in detail["message"] and "NoSuchExecutor" in detail["message"]
        assert detail["id"].startswith("jflow-")
        assert c.get(f"/flows/{detail['id']}").json()["state"] == "FAILED"


def test_a_pod_that_cannot_start_is_a_400(jinad):
    with jinad.client() as c:
        wid = active_workspace(c, {"readme.txt": "x"})
        r = c.post("/pods", params={"workspace_id": wid}, json={"name": "p", "uses": "NoSuchExecutor"})
        assert r.status_code == 400, r.text
        assert "NoSuchExecutor" in r.json()["detail"]["message"]
