"""`jinad-fab demo`: quiet by default (the summary only), the Peas' logs with -v."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import cli


def _demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli("demo", "--docs", "1000", "--request-size", "50", *args), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.timeout(240)
def test_demo_is_quiet_by_default_and_shows_logs_with_v():
    quiet = _demo()
    assert quiet.returncode == 0, quiet.stderr
    assert "every Document came back intact" in quiet.stdout
    assert "request" not in quiet.stderr and len(quiet.stderr.splitlines()) <= 2, quiet.stderr
    loud = _demo("-v")
    assert loud.returncode == 0, loud.stderr
    assert "every Document came back intact" in loud.stdout
    per_request = [line for line in loud.stderr.splitlines() if "/index request" in line and "with 50 documents" in line]
    assert len(per_request) == 1000 // 50, loud.stderr[-2000:]
