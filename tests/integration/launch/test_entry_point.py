"""The edge entry point: a real `python -m jinad_fab.launch flow` process, as jinad starts it."""

import json
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

pytestmark = pytest.mark.timeout(90)


def test_launch_entry_point_reports_ready_in_a_status_file(tmp_path):
    """What jinad relies on: `python -m jinad_fab.launch flow --yaml ... --status-file ...`."""
    (tmp_path / "flow.yml").write_text("!Flow\nversion: 1\npods:\n  - name: a\n    uses: _logforward\n")
    status = tmp_path / "status.json"
    proc = subprocess.Popen([sys.executable, "-m", "jinad_fab.launch", "flow", "--yaml", "flow.yml",
                             "--status-file", str(status), "--log-json"], cwd=tmp_path,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = json.loads(status.read_text())
        assert info["state"] == "ready" and info["pid"] == proc.pid
        port = info["gateway"]["http_port"]
        r = httpx.post(f"http://127.0.0.1:{port}/index", json={"data": [{"text": "hello"}]})
        assert r.status_code == 200 and r.json()["data"][0]["text"] == "hello"
        kids = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert psutil.wait_procs(kids, timeout=10)[1] == []
        lines = [json.loads(x) for x in proc.stderr.read().decode().splitlines() if x.startswith("{")]
        assert any("/index request" in x["msg"] and x["source"] == "a" for x in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


def test_launch_entry_point_reports_failure(tmp_path):
    status = tmp_path / "status.json"
    (tmp_path / "flow.yml").write_text("!Flow\nversion: 1\npods:\n  - name: a\n    uses: Nope\n")
    code = subprocess.call([sys.executable, "-m", "jinad_fab.launch", "flow", "--yaml", "flow.yml",
                            "--status-file", str(status)], cwd=tmp_path, stderr=subprocess.DEVNULL, timeout=30)
    info = json.loads(status.read_text())
    assert code == 1 and info["state"] == "failed" and "Nope" in info["error"]
