"""Three SSH hosts provisioned by the real playbooks in wheelhouse mode, then driven by the CLI:
hosts, exec, a second deploy that changes nothing, and a host stopped mid-run. A Flow deployed
over them (issue 16's proof): it outlives its controller, re-applies with changed=0, rolls only
the encoder when its `uses_with` changes and back with `flow rollback`, scales it with `flow
scale`, each with no failed request; the encoder's host stopped mid-search, its Pod re-placed on
the other cpu host, and nothing running twice once the host is back. The test prints the times."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from tests.support.fleet_flows import Searcher, documents, flow_yaml, write_project

from .conftest import docker

pytestmark = pytest.mark.timeout(1800)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output.split("\nError:")[0], result.output


@pytest.fixture(scope="module")
def deployed(fleet, wheels):
    _register()
    code, body, out = run("provision", "deploy", "-i", str(fleet.inventory), "--wheelhouse", str(wheels),
                          "--forks", "3", "--json")
    assert code == 0, out[-6000:]
    return json.loads(body)


def test_deploy_provisions_every_host_over_ssh(fleet, deployed) -> None:
    recaps = deployed["hosts"]
    assert sorted(recaps) == ["cpu-1", "cpu-2", "gpu-1"]
    for name, recap in recaps.items():
        assert recap["succeeded"] and recap["changed"] > 0 and recap["unreachable"] == 0, (name, recap)
    # each host has its own filesystem with the package installed from the copied wheelhouse
    for h in fleet.hosts:
        out = docker("exec", h.container, "/opt/jinad/current/venv/bin/python", "-c",
                     "import jinad_fab.daemon.app, importlib.metadata as m; print(m.version('jinad-fab'))")
        assert out == "0.1.0"
        assert docker("exec", h.container, "sh", "-c", "ls /opt/jinad/wheelhouse | grep -c whl") != "0"
        # exactly one daemon, running as the jinad account (a restart must not leave an orphan)
        assert docker("exec", h.container, "pgrep", "-u", "jinad", "-fc", "venv/bin/jinad") == "1"
        assert docker("exec", h.container, "pgrep", "-fc", "venv/bin/jinad") == "1"


def test_hosts_shows_all_three_alive(fleet, deployed) -> None:
    code, body, out = run("hosts", "-i", str(fleet.inventory), "--json")
    assert code == 0, out
    rows = {r["host"]: r for r in json.loads(body)}
    assert sorted(rows) == ["cpu-1", "cpu-2", "gpu-1"]
    ids = set()
    for h in fleet.hosts:
        row = rows[h.name]
        # TLS by default: the inventory says nothing of it, the deploy made the fleet CA and each
        # host's certificate, and `hosts` checked every daemon against that CA
        assert row["ok"] and row["url"] == f"https://{h.address}:8000"
        assert row["groups"] == list(h.groups)
        ids.add(row["value"]["alive"]["daemon_id"])
        with pytest.raises(httpx.HTTPError):  # and nothing is served in clear
            httpx.get(f"http://{h.address}:8000/alive", timeout=5)
    assert len(ids) == 3  # three daemons, not one answering thrice
    tls = fleet.inventory.parent / "credentials" / "tls"
    assert (tls / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (tls / "hosts").glob("*-key.pem")) == ["cpu-1-key.pem", "cpu-2-key.pem",
                                                                         "gpu-1-key.pem"]
    token = (fleet.inventory.parent / "credentials" / "jinad_token").read_text().strip()
    assert token not in out


def test_exec_runs_on_a_group_with_per_host_output(fleet, deployed) -> None:
    code, body, out = run("exec", "-i", str(fleet.inventory), "-l", "cpu[0:1]", "--json", "hostname")
    assert code == 0, out
    assert [(r["host"], r["stdout"].strip()) for r in json.loads(body)] == [("cpu-1", "cpu-1"), ("cpu-2", "cpu-2")]


def test_logs_come_from_every_host_prefixed(fleet, deployed) -> None:
    code, body, out = run("logs", "-i", str(fleet.inventory), "-n", "50")
    assert code == 0, out
    for h in fleet.hosts:
        assert f"{h.name} | " in out


def test_a_second_deploy_changes_nothing(fleet, deployed, wheels) -> None:
    code, body, out = run("provision", "deploy", "-i", str(fleet.inventory), "--wheelhouse", str(wheels), "--json")
    assert code == 0, out[-6000:]
    recaps = json.loads(body)["hosts"]
    assert {name: r["changed"] for name, r in recaps.items()} == {"cpu-1": 0, "cpu-2": 0, "gpu-1": 0}


def test_verify_checks_every_daemon(fleet, deployed) -> None:
    code, body, out = run("provision", "verify", "-i", str(fleet.inventory), "--json")
    assert code == 0, out[-4000:]
    assert all(r["succeeded"] for r in json.loads(body)["hosts"].values())


def test_upgrade_restarts_a_batch_behind_a_health_barrier(fleet, deployed, wheels) -> None:
    def uptimes() -> dict[str, float]:
        code, body, out = run("hosts", "-i", str(fleet.inventory), "--json")
        assert code == 0, out
        return {r["host"]: r["value"]["alive"]["uptime"] for r in json.loads(body)}

    before = uptimes()
    code, body, out = run("provision", "upgrade", "-i", str(fleet.inventory), "-l", "gpu-1",
                          "--wheelhouse", str(wheels), "--json")
    assert code == 0, out[-6000:]
    recaps = json.loads(body)["hosts"]
    assert list(recaps) == ["gpu-1"] and recaps["gpu-1"]["changed"] > 0
    after = uptimes()
    assert after["gpu-1"] < before["gpu-1"]  # its uptime started again: restarted, and answering
    assert after["cpu-1"] > before["cpu-1"] and after["cpu-2"] > before["cpu-2"]  # outside the limit
    assert docker("exec", fleet.host("gpu-1").container, "pgrep", "-fc", "venv/bin/jinad") == "1"
    gpu1 = fleet.host("gpu-1").container
    upgraded = docker("exec", gpu1, "readlink", "/opt/jinad/current")
    assert docker("exec", gpu1, "readlink", "/opt/jinad/previous").endswith("/releases/initial")
    assert upgraded.startswith("/opt/jinad/releases/") and not upgraded.endswith("/initial")

    # rollback: back to the release before the upgrade, restarted behind the same /alive barrier
    pid_upgraded = docker("exec", gpu1, "pgrep", "-f", "venv/bin/jinad")
    code, body, out = run("provision", "rollback", "-i", str(fleet.inventory), "-l", "gpu-*", "--json")
    assert code == 0, out[-6000:]
    assert list(json.loads(body)["hosts"]) == ["gpu-1"]
    assert docker("exec", gpu1, "readlink", "/opt/jinad/current").endswith("/releases/initial")
    assert docker("exec", gpu1, "readlink", "/opt/jinad/previous") == upgraded
    assert docker("exec", gpu1, "pgrep", "-fc", "venv/bin/jinad") == "1"
    assert docker("exec", gpu1, "pgrep", "-f", "venv/bin/jinad") != pid_upgraded  # a new daemon process
    assert uptimes().keys() == {"gpu-1", "cpu-1", "cpu-2"}  # every daemon answers
    assert "/var/lib/jinad/logs/jinad.log {" in docker("exec", gpu1, "cat", "/etc/logrotate.d/jinad")


LOST_AFTER = 5
"""The Flow's `lost_after` here (the default is 10 s): a stopped host's Pods are LOST after it."""

FLOW = dict(index="_index", parallel=2, tail=True, options={"lost_after": LOST_AFTER})

TIMINGS: dict[str, float] = {}
COUNTS: dict[str, str] = {}


def _flow_up(fleet, tmp_path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from jinad_fab.cli.main import main; main()", "flow", "up",
         str(tmp_path / "flow.yml"), "-i", str(fleet.inventory), "--name", "search", "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("JINAD")},
    )


def _controller(fleet, tmp_path, *args: str) -> dict:
    """`jinad-fab ARGS -i INV --json` as a controller process of its own; its JSON answer."""
    proc = subprocess.run([sys.executable, "-c", "from jinad_fab.cli.main import main; main()", *args,
                           "-i", str(fleet.inventory), "--json"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env={k: v for k, v in os.environ.items() if not k.startswith("JINAD")})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _running_pods(fleet) -> dict[str, list[tuple[str, str]]]:
    """Each daemon's RUNNING Pods (GET /pods through `flow ps` without a name): host -> [(name, id)]."""
    code, body, out = run("flow", "ps", "-i", str(fleet.inventory), "--json")
    assert code == 0, out
    return {r["host"]: sorted(((p.get("args") or {}).get("name") or "", p["id"]) for p in r["value"]["pods"]
                              if p["state"] == "RUNNING") for r in json.loads(body)}


def _count(pods: dict[str, list[tuple[str, str]]], name: str) -> dict[str, int]:
    return {host: n for host, rows in pods.items() if (n := sum(1 for p, _ in rows if p == name))}


def _others(pods: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
    return {host: [p for p in rows if p[0] != "encode"] for host, rows in pods.items()}


def _rolls_only_the_encoder(fleet, tmp_path, base: str, info: dict) -> None:
    """The encoder's `uses_with` changed and applied again, then `flow rollback`, then `flow scale`,
    each while a client searches: only the encoder's replicas change, no request fails."""
    before = _running_pods(fleet)
    with Searcher(base) as searcher:
        t0 = time.monotonic()
        (tmp_path / "flow.yml").write_text(flow_yaml("v2", **FLOW))
        rolled = _controller(fleet, tmp_path, "flow", "up", str(tmp_path / "flow.yml"), "--name", "search")
        TIMINGS["flow up, encoder's uses_with changed (rolling update)"] = time.monotonic() - t0
        assert rolled["changed"] == 1 and rolled["release"] == 2 and rolled["action"] == "rolled encode"
        assert rolled["flow_id"] == info["flow_id"]
        time.sleep(0.5)
        during_update, seen = len(searcher.results), set(searcher.versions)
        t0 = time.monotonic()
        back = _controller(fleet, tmp_path, "flow", "rollback", "search")
        TIMINGS["flow rollback (rolling update back)"] = time.monotonic() - t0
        assert back["release"] == 3 and "release 1" in back["action"] and back["flow_id"] == info["flow_id"]
        rolled_back = _running_pods(fleet)
        t0 = time.monotonic()  # and `flow scale NAME` of the encoder, whose replicas run on other daemons
        scaled = _controller(fleet, tmp_path, "flow", "scale", "search", "encode", "3")
        TIMINGS["flow scale search encode 3 (2 -> 3 replicas)"] = time.monotonic() - t0
        assert scaled["release"] == 4 and scaled["changed"] == 1 and scaled["flow_id"] == info["flow_id"]
        assert [e["step"] for e in scaled["steps"]].count("started") == 1, scaled["steps"]
        time.sleep(0.5)
    assert searcher.failed == [] and during_update > 0 and len(searcher.results) > during_update, searcher.failed[:3]
    assert "v2" in seen and searcher.versions == {"v1", "v2"}
    COUNTS["update + rollback + scale"] = f"{searcher.ok} searches, {len(searcher.failed)} failed"
    after = _running_pods(fleet)
    assert _others(after) == _others(before)  # _index and tail: the same Pods, untouched
    assert _count(rolled_back, "encode") == _count(before, "encode")  # rolled in place: the same spread
    assert sum(_count(after, "encode").values()) == 3
    code, body, out = run("flow", "ps", "search", "-i", str(fleet.inventory), "--json")
    assert code == 0, out
    encode = next(p for p in json.loads(body)["pods"] if p["pod"] == "encode")
    assert (encode["state"], encode["replicas"], encode["restarts"]) == ("RUNNING", 3, 0), encode


def _loses_a_host_and_heals(fleet, tmp_path, base: str) -> None:
    """A cpu host stops while a client searches: its Pods (an encoder replica, `tail`) are LOST
    after `lost_after`, started on the other cpu host and wired in; when the host is back,
    nothing runs twice."""
    from jinad_fab.cli.inventory_cache import load
    from jinad_fab.deploy.fleet import client_for

    inv = load(fleet.inventory)
    victim = fleet.host("cpu-1")
    label = inv["cpu-1"].daemon_address.label
    before = _running_pods(fleet)
    assert {"encode", "tail"} <= {n for n, _ in before["cpu-1"]}, before
    with Searcher(base, timeout=5, pause=0.02) as searcher:
        time.sleep(2)
        stopped = time.monotonic()
        docker("stop", "-t", "0", victim.container)
        t_lost = t_replaced = None
        with client_for(inv, inv["cpu-2"], timeout=5) as keeper:  # what the keeper's Flow sees
            while time.monotonic() < stopped + 120 and t_replaced is None:
                rows = {p["name"]: p for p in keeper.deployment("search")["flow"]["pods"]}
                if t_lost is None and any(r.get("lost") for r in rows.values()):
                    t_lost = time.monotonic() - stopped
                parts = rows["encode"].get("parts") or []
                if ((rows["tail"].get("lost") or {}).get("state") == "REPLACED" and len(parts) == 3
                        and all(p["daemon"] != label for p in parts)):
                    t_replaced = time.monotonic() - stopped
                time.sleep(0.2)
        assert t_lost is not None and t_replaced is not None, ("not at full width within 120 s", rows)
        time.sleep(max(0.0, stopped + 20 - time.monotonic()))  # at least 5 s of answers after the 15 s mark
    TIMINGS[f"host stopped -> its Pods LOST (lost_after {LOST_AFTER} s)"] = t_lost
    TIMINGS["host stopped -> full width again (re-placed, wired in)"] = t_replaced
    first_ok = min((sent for sent, exact, _ in searcher.results if exact and sent > stopped + t_lost), default=None)
    assert first_ok is not None, searcher.failed[-5:]
    TIMINGS["host stopped -> first exact answer sent after the LOST"] = first_ok - stopped
    lost_requests = searcher.failed_between(stopped)
    COUNTS["host lost"] = (f"{len(lost_requests)} of {len([r for r in searcher.results if r[0] >= stopped])} "
                           f"searches sent after the stop failed, the last sent at "
                           f"{max((t for t, _ in lost_requests), default=0):.1f} s")
    assert searcher.failed_between(0, stopped) == []
    assert searcher.failed_between(stopped + 15) == [], lost_requests  # none after 15 s from the stop
    code, body, out = run("flow", "ps", "search", "-i", str(fleet.inventory), "--json")
    rows = {r["pod"]: r for r in json.loads(body)["pods"]}
    assert (rows["tail"]["host"], rows["tail"]["state"], rows["tail"]["lost"]["state"]) == (
        "cpu-2", "RUNNING", "REPLACED"), out
    assert (rows["encode"]["state"], rows["encode"]["replicas"], rows["encode"]["hosts"]) == (
        "RUNNING", 3, ["cpu-2"]), out
    assert rows["_index"]["state"] == "RUNNING"

    # the host comes back (its service manager starts jinad): the stale Pods are removed, nothing runs twice
    address = victim.address
    docker("start", victim.container)
    assert docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                  victim.container) == address
    docker("exec", victim.container, "/opt/jinad/jinad-ctl", "start")
    back = time.monotonic()
    deadline = back + 90
    while True:
        code, body, out = run("flow", "ps", "-i", str(fleet.inventory), "--json")
        hosts = {r["host"]: r for r in json.loads(body)}
        if hosts["cpu-1"]["ok"] and not [p for p in hosts["cpu-1"]["value"]["pods"] if p["state"] == "RUNNING"]:
            break
        assert time.monotonic() < deadline, out[-3000:]
        time.sleep(1)
    TIMINGS["host back (jinad started) -> its stale Pods gone"] = time.monotonic() - back
    running = _running_pods(fleet)
    assert running["cpu-1"] == [] and running["gpu-1"] == before["gpu-1"], running
    # each Pod once: the encoder's 3 replicas, one tail, one _index, over all the daemons
    assert {n: sum(_count(running, n).values()) for n in ("encode", "tail", "_index")} == {
        "encode": 3, "tail": 1, "_index": 1}, running
    assert len({i for rows in running.values() for _, i in rows}) == 5
    assert httpx.post(f"{base}/search", json={"data": [{"text": "document number 9"}], "parameters": {"top_k": 1}},
                      timeout=30).json()["data"][0]["matches"][0]["id"] == "9"


def test_flow_up_deploys_returns_and_outlives_its_controller(fleet, deployed, tmp_path) -> None:
    write_project(tmp_path, **FLOW)
    t0 = time.monotonic()
    proc = _flow_up(fleet, tmp_path, "--attach")  # follows the logs after deploying: killed below
    searcher = None
    try:
        line = proc.stdout.readline()
        TIMINGS["flow up, cold workspaces (3 hosts)"] = time.monotonic() - t0
        assert line, proc.stderr.read()[-6000:] if proc.poll() is not None else "no output from flow up"
        info = json.loads(line)
        assert info["changed"] == 1 and info["release"] == 1 and info["keeper"] == "cpu-2"
        # the encoder's replicas spread over the cpu group, one on each host; `tail` joins the less loaded
        assert {(p["pod"], tuple(p["hosts"])) for p in info["placement"]} == {
            ("encode", ("cpu-1", "cpu-2")), ("_index", ("gpu-1",)), ("tail", ("cpu-1",))}
        base = f"http://{fleet.host('cpu-2').address}:{info['gateway']['http_port']}"
        r = httpx.post(f"{base}/index", json={"data": documents(30)}, timeout=120)
        assert r.status_code == 200, r.text
        r = httpx.post(f"{base}/search", json={"data": [{"id": "q", "text": "document number 7"}],
                                               "parameters": {"top_k": 3}}, timeout=120)
        assert r.status_code == 200, r.text
        (hit,) = r.json()["data"]
        assert hit["tags"]["encoded_on"] in ("cpu-1", "cpu-2")  # the encoder really ran on those containers
        assert hit["matches"][0]["id"] == "7"
        assert hit["matches"][0]["scores"]["euclidean"] == pytest.approx(0.0, abs=1e-4)
        searcher = Searcher(base, n=30)
        searcher.start()
        time.sleep(1)
        proc.kill()  # the controller dies; the Flow lives on the fleet
        proc.wait(30)
        time.sleep(3)
        assert searcher.ok > 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    try:
        # another controller: the same spec changes nothing, restarts nothing
        t0 = time.monotonic()
        again = _flow_up(fleet, tmp_path)
        out, err = again.communicate(timeout=300)
        TIMINGS["flow up again, nothing changed (fresh controller process)"] = time.monotonic() - t0
        assert again.returncode == 0, err[-4000:]
        info2 = json.loads(out.strip().splitlines()[-1])
        assert info2["changed"] == 0 and info2["flow_id"] == info["flow_id"]
        code, body, out = run("flow", "ps", "search", "-i", str(fleet.inventory), "--json")
        assert code == 0, out
        st = json.loads(body)
        assert {(p["pod"], p["host"], p["state"]) for p in st["pods"]} == {
            ("gateway", "cpu-2", "RUNNING"), ("encode", "cpu-1", "RUNNING"), ("_index", "gpu-1", "RUNNING"),
            ("tail", "cpu-1", "RUNNING")}
        assert next(p for p in st["pods"] if p["pod"] == "encode")["hosts"] == ["cpu-1", "cpu-2"]
        time.sleep(2)
    finally:
        if searcher is not None:
            searcher.stop.set()
            searcher.join(60)
    assert searcher.failed == [] and searcher.ok > 10, (searcher.ok, searcher.failed[:5])
    t0 = time.monotonic()
    _rolls_only_the_encoder(fleet, tmp_path, base, info)
    _loses_a_host_and_heals(fleet, tmp_path, base)
    COUNTS["test time of the update, rollback and lost-host phases"] = f"{time.monotonic() - t0:.1f}s"
    code, body, out = run("flow", "down", "search", "-i", str(fleet.inventory), "-y", "--json")
    assert code == 0, out
    deadline = time.monotonic() + 60
    while True:  # the Peas' processes are gone from every host, not only marked stopped
        left = {h.name: docker("exec", h.container, "pgrep", "-fc", "jinad_fab[.]runtime", check=False)
                for h in fleet.hosts}
        if set(left.values()) == {"0"} or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert set(left.values()) == {"0"}, left
    t0 = time.monotonic()
    warm = _flow_up(fleet, tmp_path)  # the hosts have built these files before: a warm start
    out, err = warm.communicate(timeout=300)
    TIMINGS["flow up, warm (3 hosts)"] = time.monotonic() - t0
    assert warm.returncode == 0, err[-4000:]
    assert json.loads(out.strip().splitlines()[-1])["release"] == 1
    code, body, out = run("flow", "down", "search", "-i", str(fleet.inventory), "-y", "--json")
    assert code == 0, out
    t0 = time.monotonic()
    code, _, _ = run("hosts", "-i", str(fleet.inventory), "--json")
    TIMINGS["reference: jinad-fab hosts (in-process, 3 hosts)"] = time.monotonic() - t0
    load = os.getloadavg()
    print("\n" + "\n".join(f"{k:<62} {v:6.2f}s" for k, v in TIMINGS.items())
          + "".join(f"\n{k:<62} {v}" for k, v in COUNTS.items())
          + f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def test_a_client_with_another_ca_refuses_every_daemon(fleet, deployed, tmp_path) -> None:
    from jinad_fab.deploy.pki import FleetCA

    other, _ = FleetCA.ensure(tmp_path / "other-ca")
    inventory = tmp_path / "inv" / "hosts.yml"
    inventory.parent.mkdir()
    text = fleet.inventory.read_text().replace("jinad_fab_become: false",
                                               f"jinad_fab_become: false\n    jinad_ca_file: {other.cert_path}")
    inventory.write_text(text.replace("jinad_address:", "jinad_scheme: https\n    jinad_address:"))
    code, body, out = run("hosts", "-i", str(inventory), "--json")
    assert code == 4, out
    rows = {r["host"]: r for r in json.loads(body)}
    for h in fleet.hosts:
        assert not rows[h.name]["ok"] and "certificate is not trusted" in rows[h.name]["error"]
        assert h.address in rows[h.name]["error"]


def test_rotate_token_restarts_nothing(fleet, deployed) -> None:
    import ssl

    def pids() -> dict[str, str]:
        return {h.name: docker("exec", h.container, "pgrep", "-f", "venv/bin/jinad") for h in fleet.hosts}

    credentials = fleet.inventory.parent / "credentials" / "jinad_token"
    old, before = credentials.read_text().strip(), pids()
    code, body, out = run("provision", "rotate-token", "-i", str(fleet.inventory), "--json")
    assert code == 0, out
    assert all(r["rotated"] and r["ok"] for r in json.loads(body))
    new = credentials.read_text().strip()
    assert new != old and pids() == before  # the same daemon processes, never restarted
    ca = ssl.create_default_context(cafile=str(fleet.inventory.parent / "credentials" / "tls" / "ca.pem"))
    for h in fleet.hosts:
        for token, status in ((old, 403), (new, 200)):
            r = httpx.get(f"https://{h.address}:8000/status", headers={"Authorization": f"Bearer {token}"},
                          verify=ca, timeout=10)
            assert r.status_code == status, (h.name, r.text)
        assert docker("exec", h.container, "cat", "/var/lib/jinad/token").strip() == new
    code, body, out = run("hosts", "-i", str(fleet.inventory), "--json")  # reads the new token
    assert code == 0 and all(r["ok"] for r in json.loads(body)), out


CHAIN = """!Flow
version: '1'
with:
  protocol: http{secure}
gateway:
  host: cpu-2
pods:
  - name: first
    uses: _pass
    host: cpu-1
  - name: second
    uses: _pass
    host: gpu-1
  - name: third
    uses: _pass
    host: cpu-2
"""


@pytest.mark.parametrize("secure", [None, False], ids=["default-curve", "plain"])
def test_a_flow_over_three_hosts_is_encrypted_between_them_by_default(fleet, deployed, tmp_path, secure) -> None:
    """CURVE is on by default for a Flow with Pods on other hosts: a capture of the traffic between
    two hosts never shows a Document's text; with ``secure: false`` the same capture does."""
    name = "curve" if secure is None else "plain"
    (tmp_path / "flow.yml").write_text(CHAIN.format(secure="" if secure is None else "\n  secure: false"))
    up = subprocess.run(
        [sys.executable, "-c", "from jinad_fab.cli.main import main; main()", "flow", "up",
         str(tmp_path / "flow.yml"), "-i", str(fleet.inventory), "--name", name, "--json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith("JINAD")})
    assert up.returncode == 0, up.stderr[-6000:]
    info = json.loads(up.stdout.strip().splitlines()[-1])
    assert {(p["pod"], p["host"]) for p in info["placement"]} == {
        ("first", "cpu-1"), ("second", "gpu-1"), ("third", "cpu-2")}
    base = f"http://{fleet.host('cpu-2').address}:{info['gateway']['http_port']}"
    cpu1, gpu1 = fleet.host("cpu-1").address, fleet.host("gpu-1").address
    bridge = "br-" + docker("network", "inspect", "-f", "{{.Id}}", fleet.network)[:12]
    pcap = tmp_path / "between-hosts.pcap"
    marker = "plain text that must not cross the wire " + os.urandom(6).hex()
    docs = [{"id": str(i), "text": f"{marker} #{i} " + "lorem ipsum " * 40} for i in range(50)]  # ~25 kB
    try:
        # tcpdump on the network's bridge sees the frames between the two containers
        dump = subprocess.Popen(["tcpdump", "-i", bridge, "-U", "-s", "0", "-w", str(pcap),
                                 f"tcp and host {cpu1} and host {gpu1}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert "listening on" in dump.stderr.readline()
            answers = []
            with httpx.Client(timeout=120) as http:
                for i in range(0, 50, 10):
                    r = http.post(f"{base}/index", json={"data": docs[i:i + 10]})
                    assert r.status_code == 200, r.text
                    answers += r.json()["data"]
            time.sleep(1)  # let tcpdump write the last packets
        finally:
            dump.send_signal(signal.SIGINT)
            dump.wait(30)
            dump.stderr.close()
    finally:
        code, _, out = run("flow", "down", name, "-i", str(fleet.inventory), "-y", "--json")
        assert code == 0, out
    assert [(d["id"], d["text"]) for d in answers] == [(d["id"], d["text"]) for d in docs]
    captured = pcap.read_bytes()
    assert len(captured) > sum(len(d["text"]) for d in docs)  # the Documents did travel between the two hosts
    if secure is None:
        assert marker.encode() not in captured
    else:
        assert marker.encode() in captured


def test_a_stopped_host_is_named_and_exits_4(fleet, deployed) -> None:
    victim = fleet.host("cpu-2")
    docker("stop", "-t", "1", victim.container)
    try:
        code, body, out = run("hosts", "-i", str(fleet.inventory), "--timeout", "3")
        assert code == 4, out
        assert "unreachable: cpu-2" in out
        code, body, out = run("exec", "-i", str(fleet.inventory), "--connect-timeout", "3", "true")
        assert code == 4 and "unreachable: cpu-2" in out
        code, body, out = run("provision", "verify", "-i", str(fleet.inventory), "--json", "--timeout", "300")
        assert code == 4, out[-4000:]
        recaps = json.loads(body)["hosts"]
        assert recaps["cpu-2"]["unreachable"] > 0 and recaps["cpu-1"]["succeeded"]
    finally:
        docker("start", victim.container)
