"""An `_index` Pod's host is lost under a deployed Flow (issue 16), with real daemons on loopback:
the host's daemon stops answering (SIGSTOP: cut off, its Pod still running). Within the Flow's
`lost_after` (plus the probe's second) the Flow names the Pod's shards missing: with every shard
of the Pod gone, every request fails at once with PodDied naming them (none waits for the
client's timeout), and `flow ps NAME` reports each shard LOST by name. When the host answers
again, the shards are back: whole, exact answers without the header."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from tests.support.fleet_flows import ENCODER

pytestmark = pytest.mark.timeout(300)

FLOW = """!Flow
version: '1'
with:
  protocol: http
  lost_after: 2
gateway:
  host: a
pods:
  - name: encode
    uses: HashEncoder
    py_modules: [encoder.py]
    host: a
  - name: index
    uses: _index
    host: b
    shards: 2
"""


def _cli(*args: str):
    _register()
    return CliRunner().invoke(cli, list(args))


def test_an_index_pods_lost_host_fails_requests_naming_its_shards_until_it_answers_again(tmp_path, daemon_factory) -> None:
    a, b = (daemon_factory(token=f"tok-{n}-" + "z" * 20) for n in "ab")
    inv = tmp_path / "inv" / "hosts.yml"
    inv.parent.mkdir()
    inv.write_text(yaml.safe_dump({"all": {"children": {"fleet": {"hosts": {
        n: {"jinad_address": "127.0.0.1", "jinad_port": d.port, "jinad_token": d.token} for n, d in (("a", a), ("b", b))
    }}}}}))
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "encoder.py").write_text(ENCODER)
    (tmp_path / "proj" / "flow.yml").write_text(FLOW)
    up = _cli("flow", "up", str(tmp_path / "proj" / "flow.yml"), "-i", str(inv), "--name", "shards", "--json")
    assert up.exit_code == 0, up.output
    info = json.loads(up.stdout)
    base = f"http://127.0.0.1:{info['gateway']['http_port']}"
    texts = [f"document number {i}" for i in range(40)]
    r = httpx.post(f"{base}/index", json={"data": [{"id": str(i), "text": t} for i, t in enumerate(texts)]}, timeout=60)
    assert r.status_code == 200, r.text

    os.kill(b.proc.pid, signal.SIGSTOP)  # the host stops answering (cut off); its Pod runs on unseen
    try:
        both = ["index/shard-0", "index/shard-1"]
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=10) as c:
            while True:  # until the Flow has named the shards missing (lost_after + its probe)
                r = c.post(f"{base}/search", json={"data": [{"id": "q", "text": texts[0]}], "parameters": {"top_k": 1}})
                if r.status_code != 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            # every shard of the Pod is gone with its host: requests fail at once naming them, none hangs
            for ep in ("/search", "/index"):
                r = c.post(f"{base}{ep}", json={"data": [{"id": "q", "text": texts[0]}]})
                assert r.status_code == 503, r.text
                assert r.json()["header"]["err"]["shards"] == both and all(s in r.json()["detail"] for s in both)

        deadline = time.monotonic() + 20
        while True:  # the Flow reports its Pods to its daemon about twice a second
            ps = _cli("flow", "ps", "shards", "-i", str(inv))  # (b does not answer: each call waits on it)
            if "shards LOST" in ps.output or time.monotonic() > deadline:
                break
        assert ps.exit_code == 4, ps.output
        assert all(f"shard {s} LOST" in ps.output for s in both), ps.output
        assert "shards LOST: index/shard-0, index/shard-1" in ps.output, ps.output
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)

    # the host answers again and the Pod still runs there: whole, exact answers without the header
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=10) as c:
        while True:
            r = c.post(f"{base}/search", json={"data": [{"id": "q", "text": texts[7]}], "parameters": {"top_k": 1}})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.status_code == 200 and "missing_shards" not in r.json()["header"], r.text
        assert "x-missing-shards" not in r.headers and r.json()["data"][0]["matches"][0]["id"] == "7"
    assert _cli("flow", "down", "shards", "-i", str(inv), "-y").exit_code == 0
