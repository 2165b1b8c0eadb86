"""TLS to every daemon with the fleet CA `provision deploy` makes: two real `jinad` daemons on
loopback serving certificates issued next to an inventory, and every client path checking them
(remote Pods, `jinad-fab hosts|ping|flow`). A wrong CA, an expired certificate and a certificate
for another name each fail start, naming the host and what to fix, with no traceback."""

from __future__ import annotations

import datetime
import json
import os

import pytest
import yaml
from click.testing import CliRunner

from jinad_fab import Document, Flow
from jinad_fab.cli.main import _register, cli
from jinad_fab.deploy import pki
from jinad_fab.deploy.inventory import Inventory
from jinad_fab.errors import BadAddress, DaemonUnreachable, PeaStartError
from jinad_fab.remote import DaemonClient
from tests.support.daemons import Daemon, reap

pytestmark = pytest.mark.timeout(240)

TOKEN = "fleet-tls-" + os.urandom(6).hex()


class Fleet:
    def __init__(self, folder, ca, daemons):
        self.folder = folder
        self.ca = ca
        self.daemons = daemons
        self.inventory = folder / "hosts.yml"

    @property
    def ca_file(self) -> str:
        return str(self.ca.cert_path)

    def write_inventory(self, **extra_hosts) -> None:
        hosts = {name: {"ansible_connection": "local", "ansible_host": "127.0.0.1", "jinad_port": d.port,
                        "jinad_token": TOKEN} for name, d in self.daemons.items()}
        hosts.update(extra_hosts)
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))  # not a word about TLS


def _serve(daemon_factory, cert, key, verify):
    return daemon_factory(token=TOKEN, extra=["--tls-certfile", str(cert), "--tls-keyfile", str(key)],
                          scheme="https", verify=verify)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The CA and certificates made the way `provision deploy` makes them, then served by two
    daemons for the whole module (each test checks that it leaves them holding nothing, and
    `fleet` checks that each test starts so)."""
    base = tmp_path_factory.mktemp("fleet-tls")
    folder = base / "fleet"
    folder.mkdir()
    names = {"alpha": {"ansible_host": "127.0.0.1"}, "beta": {"ansible_host": "127.0.0.1"}}
    inv = Inventory.from_ansible_json({"_meta": {"hostvars": names}, "all": {"hosts": list(names)}},
                                      source=folder / "hosts.yml")
    made = pki.ensure_fleet_certificates(inv, list(inv.hosts.values()))
    assert made.ca_created and {h.name for h in made.issued} == {"alpha", "beta"}
    ca = pki.FleetCA.load(made.ca.parent)
    daemons: dict[str, Daemon] = {}
    try:
        for h in made.hosts:
            daemons[h.name] = Daemon(base / h.name, token=TOKEN, scheme="https", verify=str(made.ca),
                                     extra=["--tls-certfile", str(h.cert), "--tls-keyfile", str(h.key)])
            daemons[h.name].start()
        yield folder, ca, daemons
    finally:
        for d in daemons.values():
            d.stop()
        for d in daemons.values():
            reap(d.home)


@pytest.fixture
def fleet(served, tmp_path, monkeypatch):
    folder, ca, daemons = served
    for d in daemons.values():  # what an earlier test left would make this one's checks lie
        with d.client() as c:
            assert [c.get(f"/{kind}").json()["items"] for kind in ("workspaces", "flows", "pods")] == [[], [], []]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JINAD_FAB_CACHE_DIR", str(tmp_path / "cache"))
    f = Fleet(folder, ca, daemons)
    f.write_inventory()
    _register()
    return f


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_hosts_checks_every_daemon_against_the_fleet_ca(fleet):
    code, out = invoke("hosts", "-i", str(fleet.inventory), "--json")
    assert code == 0, out
    rows = {r["host"]: r for r in json.loads(out)}
    assert {h: r["url"] for h, r in rows.items()} == {
        name: f"https://127.0.0.1:{d.port}" for name, d in fleet.daemons.items()}
    assert all(r["ok"] for r in rows.values()) and TOKEN not in out

    alpha = fleet.daemons["alpha"]
    code, out = invoke("ping", f"https://127.0.0.1:{alpha.port}", "-c", "1", "--ca-file", fleet.ca_file,
                       "--token-file", str(alpha.token_file))
    assert code == 0 and "1 of 1 answered" in out, out
    code, out = invoke("flow", "ls", "--host", f"https://127.0.0.1:{alpha.port}", "--ca-file", fleet.ca_file,
                       "--token-file", str(alpha.token_file), "--json")
    assert code == 0 and json.loads(out) == [], out


def test_remote_pods_over_https(fleet):
    alpha, beta = fleet.daemons["alpha"], fleet.daemons["beta"]
    f = (Flow(token=TOKEN, quiet_remote_logs=True, ca_file=fleet.ca_file)
         .add(name="a", host=f"127.0.0.1:{alpha.port}", uses="_pass")  # https: the Flow's ca_file applies
         .add(name="b", host=f"127.0.0.1:{beta.port}", uses="_pass", tls=True))
    docs = [Document(id=str(i), text=f"over tls {i}") for i in range(20)]
    with f:
        with DaemonClient(f"https://127.0.0.1:{beta.port}", TOKEN, ca_file=fleet.ca_file) as c:
            assert [p["state"] for p in c.pods()] == ["RUNNING"]  # the Pod really is on beta
        got = f.index(docs)
    assert got.ids == [d.id for d in docs] and [d.text for d in got] == [d.text for d in docs]
    for d in (alpha, beta):  # the Flow removed what it made, over https too
        with d.client() as c:
            assert c.get("/workspaces").json()["items"] == []
    with pytest.raises(BadAddress, match="contradicts tls=True"):  # a usage error, before any connection
        with Flow(token=TOKEN, ca_file=fleet.ca_file).add(host=f"http://127.0.0.1:{beta.port}", tls=True):
            pass


def _bad_certificate(fleet, daemon_factory, tmp_path, case: str):
    """A daemon on loopback that no client of this fleet should accept, and what the refusal says."""
    if case == "wrong CA":  # a certificate of another CA than the one the client checks with
        other, _ = pki.FleetCA.ensure(tmp_path / "other-ca")
        served = other.ensure_host("alpha", ["alpha", "127.0.0.1"])
        return _serve(daemon_factory, served.cert, served.key, str(other.cert_path)), "not trusted"
    now = datetime.datetime.now(datetime.timezone.utc)
    if case == "expired":
        chain, key = fleet.ca.issue(["alpha", "127.0.0.1"], not_before=now - datetime.timedelta(days=30),
                                    not_after=now - datetime.timedelta(days=1))
        expect = "has expired"
    else:  # issued by the right CA, for another host than the one connected to
        chain, key = fleet.ca.issue(["elsewhere", "10.255.0.1"])
        expect = "does not name '127.0.0.1'"
    cert, key_file = tmp_path / f"{case}.pem", tmp_path / f"{case}-key.pem"
    cert.write_bytes(chain)
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    return _serve(daemon_factory, cert, key_file, False), expect


@pytest.mark.parametrize("case", ["wrong CA", "expired", "hostname mismatch"])
def test_an_unverifiable_certificate_fails_start_naming_the_host(fleet, daemon_factory, tmp_path, case):
    bad, expect = _bad_certificate(fleet, daemon_factory, tmp_path, case)
    where = f"127.0.0.1:{bad.port}"

    with pytest.raises(DaemonUnreachable, match=expect) as raised:
        with DaemonClient(f"https://{where}", TOKEN, ca_file=fleet.ca_file) as c:
            c.alive()
    assert where in str(raised.value)

    with pytest.raises(PeaStartError) as failed:
        with Flow(token=TOKEN, ca_file=fleet.ca_file, quiet_remote_logs=True).add(host=where, uses="_pass"):
            pass
    assert where in str(failed.value) and expect in str(failed.value)
    with bad.client() as c:  # refused before a single request: nothing was made there
        assert c.get("/workspaces").json()["items"] == []

    fleet.write_inventory(gamma={"ansible_connection": "local", "ansible_host": "127.0.0.1",
                                 "jinad_port": bad.port, "jinad_token": TOKEN, "jinad_scheme": "https",
                                 "jinad_ca_file": "credentials/tls/ca.pem"})
    code, out = invoke("hosts", "-i", str(fleet.inventory))
    assert code == 4, out  # unreachable: gamma; alpha and beta still answer
    assert "gamma" in out and "Traceback" not in out
    code, out = invoke("hosts", "-i", str(fleet.inventory), "-l", "gamma", "--json")
    (row,) = json.loads(out.split("\nError:")[0])  # the JSON, then the one-line summary
    assert not row["ok"] and expect in row["error"] and where in row["error"]

    code, out = invoke("flow", "ls", "--host", f"https://{where}", "--ca-file", fleet.ca_file,
                       "--token-file", str(bad.token_file))
    assert code == 4 and expect in out and where in out and "Traceback" not in out, out


@pytest.mark.timeout(400)
def test_hello_inventory_places_its_pods_on_https_daemons(fleet, tmp_path):
    """`hello images --inventory` reaches the fleet's daemons over HTTPS, checked against the fleet CA
    (the inventory names neither the scheme nor the CA)."""
    import subprocess
    import sys

    alpha, beta = fleet.daemons["alpha"], fleet.daemons["beta"]
    host = {"ansible_connection": "local", "ansible_host": "127.0.0.1", "jinad_token": TOKEN}
    fleet.inventory.write_text(yaml.safe_dump({"all": {"children": {
        "gpu": {"hosts": {"alpha": {**host, "jinad_port": alpha.port}}},
        "cpu": {"hosts": {"beta": {**host, "jinad_port": beta.port}}},
    }}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINAD")}
    env["JINAD_FAB_CACHE_DIR"] = str(tmp_path / "cache")
    out = subprocess.run([sys.executable, "-m", "jinad_fab.cli.main", "hello", "images", "--inventory",
                          str(fleet.inventory), "--workdir", str(tmp_path / "w"), "--json"],
                         capture_output=True, text=True, timeout=360, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["placement"]["encoder"]["target"] == f"https://127.0.0.1:{alpha.port}"
    assert summary["placement"]["index"]["target"] == f"https://127.0.0.1:{beta.port}"
    assert summary["metrics"]["precision@10"] >= 0.85
    for d in (alpha, beta):  # it removed what it made, over HTTPS
        with d.client() as c:
            assert c.get("/workspaces").json()["items"] == []
