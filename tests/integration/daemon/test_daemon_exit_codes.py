"""`jinad` exits with the codes `jinad-fab` uses: 1 for a wrong command line, 2 when it cannot serve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.support.daemons import REPO_PARENT


def _jinad(*args: str, home) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO_PARENT)
    return subprocess.run([sys.executable, "-m", "jinad_fab.cli.daemon", "--home", str(home), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_bad_flag_is_a_usage_error(tmp_path):
    r = _jinad("--port", "eighty", home=tmp_path / "h")
    assert r.returncode == 1 and "--port" in r.stderr and "Traceback" not in r.stderr
    r = _jinad("--port", "70000", home=tmp_path / "h")
    assert r.returncode == 1 and "65535" in r.stderr


def test_a_taken_port_fails_with_2(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = _jinad("--port", str(port), home=tmp_path / "h")
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"port {port}" in r.stderr and "already in use" in r.stderr, r.stderr[-2000:]
    assert "startup complete" not in (r.stdout + r.stderr).lower() and "Traceback" not in r.stderr
