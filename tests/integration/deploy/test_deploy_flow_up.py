"""`jinad-fab flow up|ps|tail|down|rollback` with an inventory of real daemons on loopback.

`flow up` runs as its own controller process and returns; the Flow keeps answering exactly
after it is gone (its Gateway runs on the cpu host's daemon, the `_index` Pod on the gpu host's);
the deployment's record is found by any later command; a second `flow up` with the same spec
changes nothing; a changed spec is a new release; `rollback` returns to the first; `flow
scale|update NAME` change one Pod of the running Flow as new releases; `flow down NAME` asks
first and stops only what the deployment started, the copies of its record included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from tests.support.fleet_flows import ENCODER, Searcher, documents, flow_yaml, write_project

pytestmark = pytest.mark.timeout(600)

def _cli(*args: str, input: str | None = None):
    _register()
    return CliRunner().invoke(cli, list(args), input=input)


def _controller(*args: str, cwd) -> dict:
    """`jinad-fab ...` as a separate process (a controller that exits), its JSON answer."""
    proc = subprocess.run(
        [sys.executable, "-c", "from jinad_fab.cli.main import main; main()", *args],
        capture_output=True, text=True, cwd=cwd, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("JINAD")},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _search(base: str, text: str) -> dict:
    r = httpx.post(f"{base}/search", json={"data": [{"id": "q", "text": text}], "parameters": {"top_k": 3}},
                   timeout=60)
    assert r.status_code == 200, r.text
    (hit,) = r.json()["data"]
    return hit


@pytest.fixture
def fleet(tmp_path, jinads):
    (g_port, g_token), (c_port, c_token) = jinads(), jinads()
    inv = tmp_path / "inv" / "hosts.yml"
    inv.parent.mkdir()
    inv.write_text(yaml.safe_dump({"all": {"children": {
        "gpu": {"hosts": {"g1": {"jinad_address": "127.0.0.1", "jinad_port": g_port, "jinad_token": g_token,
                                 "jinad_gpus": 1}}},
        "cpu": {"hosts": {"c1": {"jinad_address": "127.0.0.1", "jinad_port": c_port, "jinad_token": c_token}}},
    }}}))
    write_project(tmp_path / "proj")
    clients = {"g1": httpx.Client(base_url=f"http://127.0.0.1:{g_port}", timeout=60,
                                  headers={"Authorization": f"Bearer {g_token}"}),
               "c1": httpx.Client(base_url=f"http://127.0.0.1:{c_port}", timeout=60,
                                  headers={"Authorization": f"Bearer {c_token}"})}
    try:
        yield inv, tmp_path / "proj", clients, (g_token, c_token)
    finally:
        for c in clients.values():
            c.close()


def test_flow_up_returns_and_the_flow_outlives_its_controller(fleet, tmp_path) -> None:
    inv, proj, clients, tokens = fleet
    # something the deployment did not start: `flow down NAME` must leave it alone
    foreign = clients["g1"].post("/workspaces", files=[("files", ("x.txt", b"x", "text/plain"))])
    assert foreign.status_code == 201, foreign.text

    t0 = time.monotonic()
    attached = subprocess.Popen(  # --attach: after deploying, it follows the merged logs until Ctrl-C
        [sys.executable, "-c", "from jinad_fab.cli.main import main; main()", "flow", "up",
         str(proj / "flow.yml"), "-i", str(inv), "--name", "search", "--json", "--attach"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("JINAD")})
    try:
        first = json.loads(attached.stdout.readline() or "{}")
        cold = time.monotonic() - t0
        log_line = attached.stdout.readline()  # a merged log line, as --json prints them
        assert json.loads(log_line)["host"] in ("c1", "g1"), log_line
        attached.send_signal(signal.SIGINT)  # detaches; the Flow keeps running
        assert attached.wait(60) == 0, attached.stderr.read()[-3000:]
    finally:
        if attached.poll() is None:
            attached.kill()
            attached.wait(10)
        attached.stdout.close()
        attached.stderr.close()
    assert first["changed"] == 1 and first["release"] == 1 and first["action"] == "created"
    assert first["keeper"] == "c1"
    assert {(p["pod"], p["host"]) for p in first["placement"]} == {("encode", "c1"), ("index", "g1")}
    assert not any(t in json.dumps(first) for t in tokens)

    # the controller process is gone; the Flow answers, exactly
    base = f"http://{first['gateway']['host']}:{first['gateway']['http_port']}"
    docs = documents(20)
    r = httpx.post(f"{base}/index", json={"data": docs}, timeout=60)
    assert r.status_code == 200, r.text
    hit = _search(base, "document number 7")
    assert hit["matches"][0]["id"] == "7" and hit["tags"]["version"] == "v1"
    assert hit["matches"][0]["scores"]["euclidean"] == pytest.approx(0.0, abs=1e-4)

    # any machine with the inventory finds the deployment
    ps = _cli("flow", "ps", "search", "-i", str(inv), "--json")
    assert ps.exit_code == 0, ps.output
    st = json.loads(ps.stdout)
    assert st["release"] == 1 and st["keeper"] == "c1"
    assert {(p["pod"], p["host"], p["state"]) for p in st["pods"]} == {
        ("gateway", "c1", "RUNNING"), ("encode", "c1", "RUNNING"), ("index", "g1", "RUNNING")}
    # the other daemon involved keeps a copy of the record (`flow ps` finds it if c1 is lost)
    copy = clients["g1"].get("/deployments/search").json()
    assert copy["copy_of"] == "c1" and copy["release"] == 1 and copy["flow"] is None
    assert [p["name"] for p in copy["pods"]] == ["encode", "index"]
    body = {k: copy[k] for k in ("release", "spec_hash", "spec", "placement", "daemons", "flow_id", "pods")}
    clash = clients["c1"].put("/deployments/search/copy", json={**body, "gateway_host": "g1"})
    assert clash.status_code == 409, clash.text  # a copy never overwrites the keeper's own record
    # a replica that dies is restarted by the Flow on the keeper, and `flow ps` counts it
    assert {p["pod"]: p.get("restarts") for p in st["pods"]} == {"gateway": None, "encode": 0, "index": 0}
    os.kill(int(hit["tags"]["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        st = json.loads(_cli("flow", "ps", "search", "-i", str(inv), "--json").stdout)
        restarted = {p["pod"]: p.get("restarts") for p in st["pods"]}
        if restarted["encode"] == 1:
            break
        assert time.monotonic() < deadline, restarted
        time.sleep(0.2)
    assert restarted["index"] == 0 and _search(base, "document number 7")["matches"][0]["id"] == "7"
    table_text = _cli("flow", "ps", "search", "-i", str(inv)).output
    assert "restarts" in table_text and any(" encode " in f" {line} " and " 1 " in line
                                            for line in table_text.splitlines()), table_text
    merged = _cli("flow", "tail", "search", "-i", str(inv), "-n", "5")
    assert merged.exit_code == 0, merged.output
    prefixes = {line.split(" | ")[0] for line in merged.output.splitlines() if " | " in line}
    # the encoder shares the Gateway's host: it runs in the Flow's process there, its lines in the Flow's log
    assert {"c1/gateway", "g1/index"} <= prefixes, merged.output

    # the same spec again: nothing changes, nothing restarts
    t0 = time.monotonic()
    again = _controller("flow", "up", str(proj / "flow.yml"), "-i", str(inv), "--name", "search", "--json",
                        cwd=tmp_path)
    warm_reapply = time.monotonic() - t0
    assert again["changed"] == 0 and again["release"] == 1 and again["flow_id"] == first["flow_id"]
    text = _cli("flow", "up", str(proj / "flow.yml"), "-i", str(inv), "--name", "search")
    assert text.exit_code == 0 and "changed=0" in text.output, text.output
    pods_before = {p["id"] for p in clients["g1"].get("/pods").json()["items"] if p["state"] == "RUNNING"}

    # one changed Pod option: only that Pod is rolled, in the running Flow, while a client searches
    searcher = Searcher(base)
    searcher.start()
    try:
        (proj / "flow.yml").write_text(flow_yaml("v2"))
        second = _controller("flow", "up", str(proj / "flow.yml"), "-i", str(inv), "--name", "search", "--json",
                             cwd=tmp_path)
        time.sleep(0.5)
    finally:
        searcher.stop.set()
        searcher.join(60)
    assert second["changed"] == 1 and second["release"] == 2 and second["action"] == "rolled encode"
    assert second["flow_id"] == first["flow_id"]  # the same Flow, the same Gateway address
    assert searcher.failed == [] and searcher.ok > 0, searcher.failed[:3]
    assert searcher.versions <= {"v1", "v2"}
    assert _search(base, "document number 3")["tags"]["version"] == "v2"
    running = {p["id"] for p in clients["g1"].get("/pods").json()["items"] if p["state"] == "RUNNING"}
    assert running == pods_before  # the index Pod on the other host was left alone

    back = _cli("flow", "rollback", "search", "-i", str(inv), "--json")
    assert back.exit_code == 0, back.output
    rolled = json.loads(back.stdout)
    assert rolled["release"] == 3 and "release 1" in rolled["action"] and rolled["flow_id"] == first["flow_id"]
    assert _search(base, "document number 3")["tags"]["version"] == "v1"
    st = json.loads(_cli("flow", "ps", "search", "-i", str(inv), "--json").stdout)
    assert [r["release"] for r in st["releases"]] == [1, 2, 3]
    assert st["spec_hash"] == st["releases"][0]["spec_hash"]

    # `flow scale|update NAME` from any machine with the inventory, while a client searches: a
    # line per replica step, each change a new release, the index Pod on the other host untouched
    with Searcher(base) as searcher:
        scaled = _cli("flow", "scale", "-i", str(inv), "search", "encode", "3")
        assert scaled.exit_code == 0, scaled.output
        assert scaled.output.count(" started") == 2 and "release 4" in scaled.output, scaled.output
        updated = _controller("flow", "update", "-i", str(inv), "search", "encode", "--uses-with", "version=v3",
                              "--json", cwd=tmp_path)
        time.sleep(0.5)
    assert searcher.failed == [] and searcher.ok > 0, searcher.failed[:3]
    assert searcher.versions <= {"v1", "v3"}
    assert updated["changed"] == 1 and updated["release"] == 5 and updated["flow_id"] == first["flow_id"]
    assert [e["step"] for e in updated["steps"]] == ["started", "draining", "stopped"] * 3
    assert _search(base, "document number 3")["tags"]["version"] == "v3"
    st = json.loads(_cli("flow", "ps", "search", "-i", str(inv), "--json").stdout)
    assert st["release"] == 5 and {p["pod"]: p.get("replicas") for p in st["pods"]}["encode"] == 3
    assert {p["id"] for p in clients["g1"].get("/pods").json()["items"] if p["state"] == "RUNNING"} == pods_before
    same = _cli("flow", "scale", "-i", str(inv), "search", "encode", "3", "--json")
    assert same.exit_code == 0 and json.loads(same.stdout)["changed"] == 0 and json.loads(same.stdout)["release"] == 5
    nope = _cli("flow", "update", "-i", str(inv), "search", "nope", "--uses-with", "version=v4")
    assert nope.exit_code != 0 and "has no Pod named 'nope' (its Pods: encode, index)" in nope.output, nope.output
    # a controller killed while changing it leaves its lock behind: the next one is refused, naming
    # it, until --break-lock or the end of its lease (nobody renews it any more)
    dead = {"owner": "dead" * 8, "ttl": 600, "holder": {"user": "ops", "host": "laptop", "pid": 4242,
                                                        "command": "jinad-fab flow scale search encode 9"}}
    assert clients["c1"].put("/deployments/search/lock", json=dead).status_code == 200
    held = _cli("flow", "scale", "-i", str(inv), "search", "encode", "2")
    assert held.exit_code == 2 and "ops@laptop (pid 4242" in held.output and "--break-lock" in held.output, held.output
    broke = _cli("flow", "scale", "-i", str(inv), "search", "encode", "3", "--break-lock", "--json")
    assert broke.exit_code == 0 and json.loads(broke.stdout)["changed"] == 0, broke.output
    assert clients["c1"].delete("/deployments/search/lock", params={"owner": "dead" * 8}).status_code == 404
    assert clients["c1"].put("/deployments/search/lock", json={**dead, "ttl": 1}).status_code == 200
    deadline = time.monotonic() + 30
    while (taken := clients["c1"].put("/deployments/search/lock", json={**dead, "owner": "0" * 32})).status_code == 409:
        assert "ops@laptop" in taken.text and time.monotonic() < deadline, taken.text
        time.sleep(0.2)
    assert taken.status_code == 200, taken.text  # its lease ended: the lock is free without breaking it
    assert clients["c1"].delete("/deployments/search/lock", params={"owner": "0" * 32}).status_code == 200
    back = _cli("flow", "rollback", "search", "-i", str(inv), "--json")  # to release 4: 3 replicas of v1
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout)["release"] == 6 and "release 4" in json.loads(back.stdout)["action"]
    assert _search(base, "document number 3")["tags"]["version"] == "v1"
    # the Flow file again: what it says (one replica) is rolled in, live
    again = _controller("flow", "up", str(proj / "flow.yml"), "-i", str(inv), "--name", "search", "--json",
                        cwd=tmp_path)
    assert again["changed"] == 1 and again["release"] == 7 and again["flow_id"] == first["flow_id"]
    st = json.loads(_cli("flow", "ps", "search", "-i", str(inv), "--json").stdout)
    assert {p["pod"]: p.get("replicas") for p in st["pods"]}["encode"] == 1

    # a changed file cannot be rolled in: the new release is a new Flow, then the old one stops
    (proj / "encoder.py").write_text(ENCODER.replace('BUILD = "1"', 'BUILD = "2"'))
    third = _controller("flow", "up", str(proj / "flow.yml"), "-i", str(inv), "--name", "search", "--json",
                        cwd=tmp_path)
    assert third["changed"] == 1 and third["release"] == 8 and third["action"] == "replaced"
    assert third["flow_id"] != first["flow_id"]
    assert clients["c1"].get(f"/flows/{first['flow_id']}").json()["state"] == "STOPPED"
    base4 = f"http://{third['gateway']['host']}:{third['gateway']['http_port']}"
    httpx.post(f"{base4}/index", json={"data": docs}, timeout=60).raise_for_status()
    assert _search(base4, "document number 3")["tags"]["build"] == "2"
    running = {p["id"] for p in clients["g1"].get("/pods").json()["items"] if p["state"] == "RUNNING"}
    assert running and not running & pods_before  # the old release's remote Pod went with it
    rolled = third

    # down asks first; without a yes nothing stops
    no = _cli("flow", "down", "search", "-i", str(inv), input="n\n")
    assert no.exit_code != 0
    assert clients["c1"].get(f"/flows/{rolled['flow_id']}").json()["state"] == "RUNNING"
    yes = _cli("flow", "down", "search", "-i", str(inv), "-y", "--json")
    assert yes.exit_code == 0, yes.output
    for name, c in clients.items():
        assert [p for p in c.get("/pods").json()["items"] if p["state"] == "RUNNING"] == [], name
        assert [f for f in c.get("/flows").json()["items"] if f["state"] == "RUNNING"] == [], name
    assert [w["id"] for w in clients["c1"].get("/workspaces").json()["items"]] == []
    assert [w["id"] for w in clients["g1"].get("/workspaces").json()["items"]] == [foreign.json()["id"]]
    assert clients["g1"].get("/deployments/search").status_code == 404  # the copy went with it
    gone = _cli("flow", "ps", "search", "-i", str(inv))
    assert gone.exit_code != 0 and "no daemon of the inventory keeps a deployment named 'search'" in gone.output
    print(f"\nflow up (cold workspaces) {cold:.2f}s, re-apply unchanged {warm_reapply:.2f}s "
          f"(each a fresh controller process)")
