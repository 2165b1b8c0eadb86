"""`jinad-fab hello images --inventory`: the demo's Pods placed on two real daemons by group."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

pytestmark = pytest.mark.timeout(300)


def test_hello_images_across_a_gpu_and_a_cpu_host(daemons, tmp_path):
    gpu, cpu = daemons(), daemons()
    inv = tmp_path / "hosts.yml"
    inv.write_text(f"""all:
  children:
    gpu:
      hosts:
        g1:
          ansible_host: 127.0.0.1
          jinad_port: {gpu.port}
    cpu:
      hosts:
        c1:
          ansible_host: 127.0.0.1
          jinad_port: {cpu.port}
        g1: {{}}
""")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    # g1 is in both groups: the encoder's one Pea there, the index's two shards spread over c1 and g1
    out = subprocess.run([sys.executable, "-m", "jinad_fab.cli.main", "hello", "images", "--inventory", str(inv),
                          "--workdir", str(tmp_path / "w"), "--parallel", "1", "--json"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["placement"]["encoder"]["hosts"] == ["g1"] and summary["placement"]["index"]["hosts"] == ["c1", "g1"]
    assert summary["pods"]["index"]["hosts"] == ["c1", "g1"]
    assert summary["placement"]["encoder"]["target"] == f"127.0.0.1:{gpu.port}"
    assert summary["metrics"]["precision@10"] >= 0.85
    assert f"🌏 127.0.0.1:{gpu.port} encoder" in out.stderr
    assert f"🌏 127.0.0.1:{cpu.port} index" in out.stderr and f"🌏 127.0.0.1:{gpu.port} index" in out.stderr
    assert (tmp_path / "w" / "hello-world.html").read_text().count("c1") >= 1
    for d in (gpu, cpu):  # the demo removed what it made on both hosts
        with d.client() as c:
            assert c.get("/workspaces").json()["items"] == []
    assert {p.pid for p in psutil.Process().children(recursive=True)} - before <= {gpu.proc.pid, cpu.proc.pid}
