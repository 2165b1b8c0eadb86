"""`jinad-fab flow up|ps|down` with an inventory of two real daemons on loopback: the `_index`
Pod lands on the gpu-group host, the encoder on the cpu-group host; index + search answer
exactly; stopping `flow up` leaves nothing running; `flow down` clears what is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli

pytestmark = pytest.mark.timeout(600)

ENCODER = textwrap.dedent("""
    import zlib
    import numpy as np
    from jinad_fab import Executor, requests

    class HashEncoder(Executor):
        @requests
        def encode(self, docs, parameters):
            for d in docs:
                rng = np.random.default_rng(zlib.crc32(d.text.encode()))
                d.embedding = rng.standard_normal(16).astype("float32")
                d.tags["encoded_on"] = "cpu"
""")

FLOW = """!Flow
version: '1'
with:
  protocol: http
pods:
  - name: encode
    uses: HashEncoder
    py_modules: [encoder.py]
    hosts: cpu
  - name: index
    uses: _index
    hosts: gpu
"""


def test_flow_up_spreads_pods_and_answers_exactly(tmp_path, jinads) -> None:
    (gpu_port, gpu_token), (cpu_port, cpu_token) = jinads(), jinads()
    inv = tmp_path / "inv" / "hosts.yml"
    inv.parent.mkdir()
    inv.write_text(yaml.safe_dump({"all": {"children": {
        "gpu": {"hosts": {"g1": {"jinad_address": "127.0.0.1", "jinad_port": gpu_port, "jinad_token": gpu_token,
                                 "jinad_gpus": 1}}},
        "cpu": {"hosts": {"c1": {"jinad_address": "127.0.0.1", "jinad_port": cpu_port, "jinad_token": cpu_token}}},
    }}}))
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "encoder.py").write_text(ENCODER)
    (tmp_path / "proj" / "flow.yml").write_text(FLOW)

    proc = subprocess.Popen(
        [sys.executable, "-c", "from jinad_fab.cli.main import main; main()", "flow", "up",
         str(tmp_path / "proj" / "flow.yml"), "-i", str(inv), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("JINAD")},
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-4000:] if proc.poll() is not None else "no output from flow up"
        info = json.loads(line)
        assert {(p["pod"], p["host"]) for p in info["placement"]} == {("encode", "c1"), ("index", "g1")}
        assert gpu_token not in line and cpu_token not in line
        base = f"http://127.0.0.1:{info['gateway']['http_port']}"
        docs = [{"id": str(i), "text": f"document number {i}"} for i in range(20)]
        r = httpx.post(f"{base}/index", json={"data": docs}, timeout=60)
        assert r.status_code == 200, r.text
        assert [d["id"] for d in r.json()["data"]] == [str(i) for i in range(20)]
        r = httpx.post(f"{base}/search", json={"data": [{"id": "q", "text": "document number 7"}],
                                               "parameters": {"top_k": 3}}, timeout=60)
        assert r.status_code == 200, r.text
        (hit,) = r.json()["data"]
        assert hit["tags"]["encoded_on"] == "cpu"
        assert hit["matches"][0]["id"] == "7"
        assert hit["matches"][0]["scores"]["euclidean"] == pytest.approx(0.0, abs=1e-4)

        _register()
        ps = CliRunner().invoke(cli, ["flow", "ps", "-i", str(inv), "--json"])
        assert ps.exit_code == 0, ps.output
        running = {r["host"]: [p for p in r["value"]["pods"] if p["state"] == "RUNNING"] for r in json.loads(ps.output)}
        assert len(running["g1"]) == 1 and len(running["c1"]) == 1

        merged = CliRunner().invoke(cli, ["flow", "tail", "-i", str(inv), "-n", "5"])
        assert merged.exit_code == 0, merged.output
        prefixes = {line.split(" | ")[0] for line in merged.output.splitlines() if " | " in line}
        assert {"g1/index", "c1/encode"} <= prefixes, merged.output
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    with proc.stdout, proc.stderr:
        assert proc.returncode == 0, proc.stderr.read()[-4000:]

    deadline = time.monotonic() + 30
    while True:
        ps = CliRunner().invoke(cli, ["flow", "ps", "-i", str(inv), "--json"])
        rows = json.loads(ps.output)
        live = [p for r in rows for p in r["value"]["pods"] if p["state"] in ("STARTING", "RUNNING")]
        if not live or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert live == []
    down = CliRunner().invoke(cli, ["flow", "down", "-i", str(inv), "--json"])
    assert down.exit_code == 0, down.output
    assert all(r["value"]["pods"] == 0 and r["value"]["flows"] == 0 for r in json.loads(down.output))
