"""A Flow whose Pod died for good says why in GET /flows/{id}, and its log has no traceback."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.support.daemons import active_workspace, wait_state

FLOW = """!Flow
version: '1'
pods:
  - name: fast
    uses: _pass
  - name: slow
    uses: PidFile
    py_modules: [pidfile.py]
    restart: never
"""

EXECUTOR = """import os
from jinad_fab import Executor


class PidFile(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with open("slow.pid.tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace("slow.pid.tmp", "slow.pid")
"""


def test_a_dead_pods_reason_reaches_get_flow(jinad):
    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW, "pidfile.py": EXECUTOR})
        r = c.post("/flows", params={"workspace_id": wid})
        assert r.status_code == 201, r.text
        flow = r.json()
        pid_file = jinad.home / "workspaces" / wid / "files" / "slow.pid"
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        failed = wait_state(c, f"/flows/{flow['id']}", {"FAILED"}, timeout=60)
        assert "Pod 'slow' died: Pea slow exited with code -9" in failed["error"], failed["error"]
        lines = [json.loads(line) for line in c.get(f"/logs/{flow['id']}").text.splitlines()]
        text = "\n".join(f"{x.get('msg', '')} {x.get('exc', '')}" for x in lines)
        assert any("Pod 'slow' died" in str(x.get("msg")) for x in lines), text[-3000:]
        assert "Traceback" not in text, text[-3000:]
