"""A Pod started with a lease (what a deployed Flow gives a Pod it may re-place elsewhere) lives
while its Flow renews it and is stopped by its own daemon once the renewals stop: a host that
comes back after being cut off never runs a stale copy beside the one that replaced it."""

from __future__ import annotations

import json
import time

import psutil
import pytest

from tests.support.daemons import active_workspace, wait_state

pytestmark = pytest.mark.timeout(120)


def test_a_pod_whose_lease_runs_out_is_stopped_by_its_daemon(daemon_factory) -> None:
    d = daemon_factory(token="lease-" + "a" * 20, env={"JINAD_RECONCILE_INTERVAL": "0.3"})
    with d.client() as c:
        wid = active_workspace(c, {"x.txt": "x"})
        r = c.post("/pods", params={"workspace_id": wid}, json={"name": "leased", "uses": "_pass", "lease": 2})
        assert r.status_code == 201, r.text
        leased = r.json()["id"]
        r = c.post("/pods", params={"workspace_id": wid}, json={"name": "kept", "uses": "_pass"})
        kept = r.json()["id"]
        pid = c.get(f"/pods/{leased}").json()["pid"]
        renewing_until = time.monotonic() + 4
        while time.monotonic() < renewing_until:  # its Flow renews it: it outlives its lease
            last_renewal = time.monotonic()  # the daemon renews it after this, on receiving the request
            assert c.get(f"/pods/{leased}", params={"renew": "true"}).json()["state"] == "RUNNING"
            time.sleep(0.5)
        body = wait_state(c, f"/pods/{leased}", {"STOPPED", "FAILED"}, timeout=30)
        # not before its lease ran out: measured from the last renewal, which a busy machine only
        # makes later (from the end of the renewals, a late wake-up after them would eat the margin)
        assert body["state"] == "STOPPED" and time.monotonic() - last_renewal >= 2
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        log = [json.loads(line)["msg"] for line in c.get(f"/logs/{leased}").text.splitlines()]
        assert any("lease expired" in m for m in log), log
        assert c.get(f"/pods/{kept}").json()["state"] == "RUNNING"  # no lease: never stopped for it
        r = c.post("/pods", params={"workspace_id": wid}, json={"name": "bad", "uses": "_pass", "lease": -1})
        assert r.status_code == 422
