"""Static wiring on this machine: every service of a Flow started on its own, from the Flow alone.

Each process is ``python -m jinad_fab.launch static --yaml flow.yml --role SERVICE --local-base-port N``
(what an exported container runs, with loopback addresses instead of service names). Nobody wires
them at run time: they find each other from the plan, in whatever order they start, and again
after one of them is killed and started anew.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from jinad_fab import Client, Document, DocumentArray
from jinad_fab.flow.static import plan
from jinad_fab.flow.yaml import load_flow

pytestmark = pytest.mark.timeout(180)

FLOW = """\
version: 1
with:
  protocol: http
  port_http: {http}
  port_native: {native}
pods:
  - name: prep
    uses: _pass
    parallel: 2
  - name: idx
    uses: _index
    shards: 2
    uses_with: {{top_k: 3}}
"""


def _free_block(n: int) -> int:
    """The first port of `n` consecutive ports nothing listens on (loopback)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65000:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free block of ports")


class Services:
    """The processes of a statically wired Flow; every one is stopped at the end, even on failure."""

    def __init__(self, root, flow_file, base: int):
        self.root, self.flow_file, self.base = root, flow_file, base
        self.procs: dict[tuple[str, int], subprocess.Popen] = {}

    def start(self, role: str, replica: int = 0) -> None:
        status = self.root / f"{role}-{replica}.json"
        status.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "jinad_fab.launch", "static", "--yaml", str(self.flow_file), "--role", role,
               "--replica", str(replica), "--local-base-port", str(self.base), "--status-file", str(status)]
        self.procs[(role, replica)] = subprocess.Popen(cmd, cwd=self.root, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for (role, replica), proc in self.procs.items():
            status = self.root / f"{role}-{replica}.json"
            while not status.exists():
                assert proc.poll() is None, f"{role} exited with {proc.returncode}"
                assert time.monotonic() < deadline, f"{role} not ready in {timeout}s"
                time.sleep(0.05)
            assert json.loads(status.read_text())["state"] == "ready"

    def kill(self, role: str, replica: int = 0) -> None:
        proc = self.procs.pop((role, replica))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def services(tmp_path):
    from tests.support.ports import free_port

    http, native = free_port(), free_port()
    flow_file = tmp_path / "flow.yml"
    flow_file.write_text(FLOW.format(http=http, native=native))
    s = Services(tmp_path, flow_file, _free_block(40))
    yield s, http
    s.close()


def _docs(n: int, dim: int = 8) -> DocumentArray:
    rng = np.random.default_rng(7)
    return DocumentArray([Document(id=f"d{i}", embedding=rng.standard_normal(dim).astype("float32")) for i in range(n)])


def _search_is_exact(client: Client, docs: DocumentArray) -> None:
    found = client.post("/search", DocumentArray([Document(id=d.id, embedding=d.embedding) for d in docs]))
    assert [d.id for d in found] == [d.id for d in docs]
    for d in found:
        # both shards answered and were merged: three matches, the Document itself first at distance 0
        assert len(d.matches) == 3
        assert d.matches[0].id == d.id and d.matches[0].scores["euclidean"] == 0.0


def test_services_started_in_any_order_find_each_other_and_again_after_a_restart(services):
    svc, http = services
    roles = [(s["name"], s["replicas"]) for s in plan(load_flow(str(svc.flow_file)), local_base_port=svc.base)["services"]]
    assert [r for r, _ in roles] == ["gateway", "prep", "prep-peas", "idx", "idx-shard-0", "idx-shard-1"]
    # the Peas first, the Gateway and the heads they connect to last: connections wait for their peer
    for role, replicas in reversed(roles):
        for r in range(replicas):
            svc.start(role, r)
    svc.wait_ready()
    docs = _docs(40)
    with Client(port=http, protocol="http", timeout=30) as client:
        client.post("/index", docs)
        _search_is_exact(client, docs[:10])
        # a replica and a shard die and come back: their peers reconnect, the shard's data is still there
        svc.kill("prep-peas", 1)
        svc.kill("idx-shard-1")
        svc.start("idx-shard-1")
        svc.start("prep-peas", 1)
        svc.wait_ready()
        _search_is_exact(client, docs[10:30])


def test_probe_answers_for_a_live_service_and_fails_for_a_dead_one(services):
    svc, _ = services
    p = plan(load_flow(str(svc.flow_file)), local_base_port=svc.base)
    svc.start("idx")
    svc.wait_ready()
    ctrl = next(s["ctrl_port"] for s in p["services"] if s["name"] == "idx")

    def probe(port: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jinad_fab.launch", "probe", "--address",
                               f"tcp://127.0.0.1:{port}"], capture_output=True, text=True, timeout=30,
                              env={**os.environ})

    assert probe(ctrl).returncode == 0
    svc.kill("idx")
    dead = probe(ctrl)
    assert dead.returncode == 1 and "unhealthy" in dead.stdout
