"""A lost host under a deployed Flow, with real daemons on loopback: the encoder's host vanishes
(its daemon SIGKILLed, everything it started killed) while a client searches without pause. The
Pod is marked LOST after the Flow's `lost_after`, started on the other host of its group and
wired in; searches answer exactly again; when the host's daemon comes back, the stale copy is
removed there (nothing runs twice)."""

from __future__ import annotations

import json
import textwrap
import threading
import time

import httpx
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from tests.support.daemons import reap

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
""")

FLOW = """!Flow
version: '1'
with:
  protocol: http
  lost_after: 2
gateway:
  host: keeper
pods:
  - name: encode
    uses: HashEncoder
    py_modules: [encoder.py]
    hosts: cpu
  - name: index
    uses: _index
    host: keeper
"""


def _cli(*args: str):
    _register()
    return CliRunner().invoke(cli, list(args))


class Searcher(threading.Thread):
    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base, self.stop = base, threading.Event()
        self.results: list[tuple[float, bool]] = []  # (time sent, exact answer)

    def run(self) -> None:
        with httpx.Client(timeout=5) as c:
            i = 0
            while not self.stop.is_set():
                n, sent = i % 20, time.monotonic()
                try:
                    r = c.post(f"{self.base}/search", json={"data": [{"id": "q", "text": f"document number {n}"}],
                                                            "parameters": {"top_k": 1}})
                    ok = r.status_code == 200 and r.json()["data"][0]["matches"][0]["id"] == str(n)
                except (httpx.HTTPError, KeyError, IndexError, ValueError):
                    ok = False
                self.results.append((sent, ok))
                i += 1
                time.sleep(0.02)


def test_a_lost_hosts_stateless_pod_is_replaced_and_its_stale_copy_removed(tmp_path, daemon_factory) -> None:
    keeper, a, b = (daemon_factory(token=f"tok-{n}-" + "x" * 20) for n in "kab")
    inv = tmp_path / "inv" / "hosts.yml"
    inv.parent.mkdir()
    host = lambda d: {"jinad_address": "127.0.0.1", "jinad_port": d.port, "jinad_token": d.token}  # noqa: E731
    inv.write_text(yaml.safe_dump({"all": {"children": {
        "gw": {"hosts": {"keeper": host(keeper)}},
        "cpu": {"hosts": {"cpu-a": host(a), "cpu-b": host(b)}},
    }}}))
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "encoder.py").write_text(ENCODER)
    (tmp_path / "proj" / "flow.yml").write_text(FLOW)

    up = _cli("flow", "up", str(tmp_path / "proj" / "flow.yml"), "-i", str(inv), "--name", "lost", "--json")
    assert up.exit_code == 0, up.output
    info = json.loads(up.stdout)
    assert {(p["pod"], p["host"], tuple(p["fallbacks"])) for p in info["placement"]} == {
        ("encode", "cpu-a", ("cpu-b",)), ("index", "keeper", ())}
    base = f"http://127.0.0.1:{info['gateway']['http_port']}"
    docs = [{"id": str(i), "text": f"document number {i}"} for i in range(20)]
    httpx.post(f"{base}/index", json={"data": docs}, timeout=60).raise_for_status()

    searcher = Searcher(base)
    searcher.start()
    try:
        time.sleep(1.5)
        assert searcher.results and all(ok for _, ok in searcher.results)
        lost_at = time.monotonic()
        a.kill()  # the host vanishes: its daemon and everything it started
        killed = reap(a.home)
        assert killed, "the encoder's processes on the lost host"
        t_lost = t_replaced = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and t_replaced is None:
            ps = _cli("flow", "ps", "lost", "-i", str(inv), "--json")
            st = json.loads(ps.stdout)
            row = next(r for r in st["pods"] if r["pod"] == "encode")
            if row["state"] == "LOST":
                assert ps.exit_code == 4 and "LOST on cpu-a" in ps.output, ps.output
            if t_lost is None and (row["state"] == "LOST" or row.get("lost")):
                t_lost = time.monotonic() - lost_at
            if row["host"] == "cpu-b" and row["state"] == "RUNNING":
                t_replaced = time.monotonic() - lost_at
                assert row["lost"]["state"] == "REPLACED" and row["lost"]["daemon"] == a.address
            time.sleep(0.3)
        assert t_lost is not None and t_replaced is not None, st
        time.sleep(8)
    finally:
        searcher.stop.set()
        searcher.join(30)
    # the client's failures are the requests around the loss; every one sent once the Pod was
    # re-placed (plus a client timeout for the ones queued to the lost host) is exact
    settled = lost_at + t_replaced + 5
    after = [ok for sent, ok in searcher.results if sent > settled]
    timeline = [(round(sent - lost_at, 2), ok) for sent, ok in searcher.results if sent > lost_at - 1]
    assert after and all(after), (t_lost, t_replaced, timeline)
    assert all(ok for sent, ok in searcher.results if sent < lost_at)  # only the loss costs answers
    failed = sum(1 for _, ok in searcher.results if not ok)
    print(f"\nlost host: LOST seen after {t_lost:.1f}s, full width after {t_replaced:.1f}s "
          f"(lost_after 2s); {failed} failed of {len(searcher.results)} searches")

    # the host comes back: its daemon finds the old Pod gone, the Flow removes its record and workspace
    a.start()
    with httpx.Client(base_url=a.url, headers={"Authorization": f"Bearer {a.token}"}, timeout=30) as c:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pods = c.get("/pods").json()["items"]
            if not c.get("/workspaces").json()["items"] and not [p for p in pods if p["state"] == "RUNNING"]:
                break
            time.sleep(0.5)
        assert [p for p in c.get("/pods").json()["items"] if p["state"] == "RUNNING"] == []
        assert c.get("/workspaces").json()["items"] == []
    assert _cli("flow", "down", "lost", "-i", str(inv), "-y").exit_code == 0
