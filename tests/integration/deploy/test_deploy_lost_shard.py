"""An `_index` Pod of two shards on another daemon under a deployed Flow (issue 16), with real
daemons on loopback:

1. one shard's Pea is SIGKILLed (``restart: never``): its Pod host goes on with the other shard;
   searches answer from it, exactly over its Documents, with `missing_shards` naming the dead one
   (JSON and HTTP header), and an index of a Document that belongs to it fails naming it;
2. then the host stops answering (its daemon SIGSTOPped: cut off, its Pod still running). Within
   the Flow's `lost_after` (plus the probe's second) its other shard is missing too: with every
   shard of the Pod gone, every request fails at once with PodDied naming both (none waits for
   the client's timeout), and `flow ps NAME` names the shards, the lost one LOST (exit 4);
3. the host answers again with its Pod: the lost shard is back, searches answer from it again
   (still naming the dead one)."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import numpy as np
import psutil
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from jinad_fab.runtime.shards import shard_of
from tests.support.fleet_flows import ENCODER, embedding

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
    restart: never
"""
TEXTS = [f"document number {i}" for i in range(40)]


def _cli(*args: str):
    _register()
    return CliRunner().invoke(cli, list(args))



def _nearest(shard: int, query: str, k: int) -> list[str]:
    """Brute force over the Documents one shard holds."""
    held = [i for i in range(len(TEXTS)) if shard_of(str(i), 2) == shard]
    d = ((np.stack([embedding(TEXTS[i]) for i in held]).astype(np.float64) - embedding(query)) ** 2).sum(1)
    return [str(held[i]) for i in np.argsort(d, kind="stable")[:k]]


def _kill_a_shard_pea(daemon) -> None:
    """SIGKILL one shard Pea of the index's Pod host on ``daemon`` (not its head, which listens on the
    Pod's input port)."""
    with daemon.client() as c:
        pod = next(p for p in c.get("/pods").json()["items"] if p["args"]["name"] == "index" and p["state"] == "RUNNING")

    def listening(p: psutil.Process) -> set[int]:
        conns = getattr(p, "net_connections", p.connections)(kind="tcp")
        return {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}

    shards = [c for c in psutil.Process(pod["pid"]).children() if pod["ports"]["port_in"] not in listening(c)]
    assert len(shards) == 2, shards
    shards[0].kill()


def _search(c: httpx.Client, base: str, q: int, k: int = 3) -> httpx.Response:
    return c.post(f"{base}/search", json={"data": [{"id": "q", "text": TEXTS[q]}], "parameters": {"top_k": k}})


def _until(check, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got is not None or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_an_index_shard_dead_then_its_host_lost_and_back(tmp_path, daemon_factory) -> None:
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
    base = f"http://127.0.0.1:{json.loads(up.stdout)['gateway']['http_port']}"
    r = httpx.post(f"{base}/index", json={"data": [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)]}, timeout=60)
    assert r.status_code == 200, r.text
    both = ["index/shard-0", "index/shard-1"]

    with httpx.Client(timeout=10) as c:
        # 1. a shard's Pea dies for good: the other shard answers, and the answer names the dead one
        _kill_a_shard_pea(b)
        t0 = time.monotonic()
        r = _until(lambda: (lambda r: r if r.status_code != 200 or r.json()["header"].get("missing_shards") else None)(
            _search(c, base, 0)))
        assert r is not None and r.status_code == 200, r and r.text
        t_dead = time.monotonic() - t0
        (dead,) = r.json()["header"]["missing_shards"]
        assert dead in both and r.headers["x-missing-shards"] == dead
        (alive,) = set(both) - {dead}
        for q in range(0, len(TEXTS), 9):
            r = _search(c, base, q)
            assert r.status_code == 200 and r.json()["header"]["missing_shards"] == [dead], r.text
            assert [m["id"] for m in r.json()["data"][0]["matches"]] == _nearest(int(alive[-1]), TEXTS[q], 3)
        to_dead = next(str(n) for n in range(100, 200) if shard_of(str(n), 2) == int(dead[-1]))
        r = c.post(f"{base}/index", json={"data": [{"id": to_dead, "text": "new"}]})
        assert r.status_code == 503 and r.json()["header"]["err"]["shards"] == [dead], r.text

        # 2. the host stops answering: its other shard is missing too, and every request fails at once
        os.kill(b.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            r = _until(lambda: (lambda r: r if r.status_code != 200 else None)(_search(c, base, 0)))
            t_lost = time.monotonic() - t0
            assert r is not None and r.status_code == 503, r and r.text
            for ep in ("/search", "/index"):
                r = c.post(f"{base}{ep}", json={"data": [{"id": "q", "text": TEXTS[0]}]})
                assert r.status_code == 503 and r.json()["header"]["err"]["shards"] == both, r.text
                assert all(s in r.json()["detail"] for s in both)
            # the Flow reports its Pods to its daemon about twice a second; b does not answer flow ps either
            ps = _until(lambda: (lambda ps: ps if "shards LOST" in ps.output else None)(
                _cli("flow", "ps", "shards", "-i", str(inv))), 20)
            assert ps is not None and ps.exit_code == 4, ps and ps.output
            assert f"shard {dead} DEAD" in ps.output and f"shard {alive} LOST" in ps.output, ps.output
            assert f"shards LOST: {alive}" in ps.output, ps.output
        finally:
            os.kill(b.proc.pid, signal.SIGCONT)
            t0 = time.monotonic()

        # 3. the host answers again with its Pod: the lost shard answers again, the dead one is still named
        r = _until(lambda: (lambda r: r if r.status_code == 200 else None)(_search(c, base, 7)))
        t_back = time.monotonic() - t0
        assert r is not None and r.json()["header"]["missing_shards"] == [dead], r and r.text
        assert [m["id"] for m in r.json()["data"][0]["matches"]] == _nearest(int(alive[-1]), TEXTS[7], 3)
    assert _cli("flow", "down", "shards", "-i", str(inv), "-y").exit_code == 0
    print(f"\nmissing shards: partial answers {t_dead:.2f}s after the shard's SIGKILL; the host's shards named "
          f"missing {t_lost:.1f}s after it went silent (lost_after 2s); answering again {t_back:.1f}s after it "
          "came back")
