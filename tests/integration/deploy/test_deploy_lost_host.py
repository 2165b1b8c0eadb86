"""A lost host under a deployed Flow, with real daemons on loopback: the encoder's host vanishes
(its daemon SIGKILLed, everything it started killed) while a client searches without pause. The
Pod is marked LOST after the Flow's `lost_after`, started on the other host of its group and
wired in; searches answer exactly again; when the host's daemon comes back, the stale copy is
removed there (nothing runs twice). Then the keeper's host is lost: the copies of the record on
the other daemons still name the deployment, its Gateway LOST, and `flow down` stops what the
other daemons run for it."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from tests.support.daemons import reap
from tests.support.fleet_flows import ENCODER, Searcher, documents

pytestmark = pytest.mark.timeout(600)

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
    httpx.post(f"{base}/index", json={"data": documents(20)}, timeout=60).raise_for_status()

    searcher = Searcher(base, timeout=5, pause=0.02)
    searcher.start()
    try:
        time.sleep(1.5)
        assert searcher.results and not searcher.failed
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
        # the client's failures are the requests around the loss; every one sent once the Pod was
        # re-placed (plus a client timeout for the ones queued to the lost host) is exact: searched
        # until 20 such answers are in, however long a busy machine takes to send them
        settled = lost_at + t_replaced + 5
        deadline = time.monotonic() + 120
        while sum(1 for sent, _, _ in searcher.results if sent > settled) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        searcher.stop.set()
        searcher.join(30)
    after = [ok for sent, ok, _ in searcher.results if sent > settled]
    timeline = [(round(sent - lost_at, 2), ok) for sent, ok, _ in searcher.results if sent > lost_at - 1]
    assert after and all(after), (t_lost, t_replaced, timeline)
    assert searcher.failed_between(0, lost_at) == []  # only the loss costs answers
    failed = len(searcher.failed)
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

    # now the keeper's host is lost: `flow ps` finds the deployment through the copies of its
    # record the other daemons keep, and says its Gateway is LOST (not "no such deployment")
    keeper.kill()
    reap(keeper.home)
    ps = _cli("flow", "ps", "lost", "-i", str(inv), "--json")
    assert ps.exit_code == 4 and "LOST on keeper" in ps.output, ps.output
    st = json.loads(ps.stdout)
    rows = {r["pod"]: r for r in st["pods"]}
    assert st["keeper"] == "keeper" and st["release"] == 1 and set(rows) == {"gateway", "encode", "index"}
    assert rows["gateway"]["state"] == "LOST" and rows["gateway"]["error"] == "keeper does not answer"
    assert rows["index"]["state"] == "LOST"  # it ran in the keeper's Flow
    # `flow down` without its keeper stops what the other daemons run for it (the encoder re-placed
    # on cpu-b: `flow ps` brought the copies up to date), names what it could not stop, exits 0
    down = _cli("flow", "down", "lost", "-i", str(inv), "-y")
    assert down.exit_code == 0, down.output
    assert "keeper (its keeper) does not answer" in down.output and "cpu-b/encode" in down.output, down.output
    assert "not stopped: gateway on keeper (LOST)" in down.output, down.output
    for d in (a, b):  # nothing of it runs there, and the copies went with it
        with httpx.Client(base_url=d.url, headers={"Authorization": f"Bearer {d.token}"}, timeout=30) as c:
            assert [p for p in c.get("/pods").json()["items"] if p["state"] == "RUNNING"] == []
            assert c.get("/workspaces").json()["items"] == []
            assert c.get("/deployments/lost").status_code == 404
    keeper.start()  # back: its own record goes with a second `flow down`
    again = _cli("flow", "down", "lost", "-i", str(inv), "-y", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["keeper_lost"] is False
    assert _cli("flow", "down", "lost", "-i", str(inv), "-y").exit_code == 2  # no such deployment now
