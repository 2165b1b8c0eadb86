"""Schemathesis against a live daemon's OpenAPI document: every check, every phase, 0 failures.

The run is bounded: a few examples per operation, deterministic generation, no shrinking, one
worker, loopback only. ``POST /pods`` and ``POST /peas`` are sent to a workspace id that does not
exist (the bodies are still validated first, so a body the schema allows and the daemon refuses is
still found): with a real workspace, a body the schema allows may ask for 64 shards of 64 replicas,
thousands of processes on a machine other tests share, and whether the Executor class it names
exists is something no schema can say.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

CONFIG = """
headers = { Authorization = "Bearer ${JINAD_SCHEMATHESIS_TOKEN}" }

[[operations]]
include-path-regex = "^/(pods|peas)$"
include-method = "POST"
parameters = { "workspace_id" = "jworkspace-00000000000000000000000000000000" }
"""


@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing(jinad, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / "junit.xml"
    env = dict(os.environ, JINAD_SCHEMATHESIS_TOKEN=jinad.token)  # the token stays out of argv
    cmd = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()",
           "--config-file", str(config), "run", f"{jinad.url}/openapi.json",
           "--checks", "all", "--max-examples", "5", "--generation-deterministic", "--no-shrink",
           "--workers", "1", "--request-timeout", "60", "--max-response-time", "120",
           "--report", "junit", "--report-junit-path", str(report)]
    out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=840)
    summary = out.stdout[-6000:]
    assert out.returncode == 0, summary + out.stderr[-2000:]
    suite = ET.parse(report).getroot()
    assert int(suite.get("tests", 0)) >= 20, summary  # every operation was exercised
    assert suite.get("failures") == "0" and suite.get("errors") == "0", summary
    with jinad.client() as c:  # the bound held: no Pod or Pea was started
        assert c.get("/pods").json()["items"] == [] and c.get("/peas").json()["items"] == []
