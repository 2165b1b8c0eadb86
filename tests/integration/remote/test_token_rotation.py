"""`jinad-fab provision rotate-token -i INV`: two real daemons on loopback (HTTPS, fleet CA) take a
new token over their API while a Flow runs on one of them; the Flow is not restarted, the old
token stops working, the token file next to the inventory holds the new one. A host that cannot
take it leaves every host of its token file on the old token."""

from __future__ import annotations

import json
import os

import httpx
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from jinad_fab.deploy import pki
from jinad_fab.deploy.inventory import Inventory
from jinad_fab.remote import DaemonClient
from tests.support.daemons import FLOW_YML, Daemon, active_workspace, processes_of
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def fleet(tmp_path, daemon_factory, monkeypatch):
    folder = tmp_path / "fleet"
    folder.mkdir()
    names = {"alpha": {"ansible_host": "127.0.0.1"}, "beta": {"ansible_host": "127.0.0.1"}}
    inv = Inventory.from_ansible_json({"_meta": {"hostvars": names}, "all": {"hosts": list(names)}},
                                      source=folder / "hosts.yml")
    made = pki.ensure_fleet_certificates(inv, list(inv.hosts.values()))
    token = "rotate-" + os.urandom(12).hex()
    daemons = {h.name: daemon_factory(token=token, scheme="https", verify=str(made.ca),
                                      extra=["--tls-certfile", str(h.cert), "--tls-keyfile", str(h.key)])
               for h in made.hosts}
    credentials = folder / "credentials" / "jinad_token"  # where the role keeps the token it generated
    credentials.write_text(token + "\n")
    credentials.chmod(0o600)
    monkeypatch.setenv("JINAD_FAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # the deploy lock's folder
    monkeypatch.delenv("JINAD_TOKEN", raising=False)
    _register()
    return folder, daemons, token, str(made.ca)


def write_inventory(folder, daemons, **more) -> str:
    hosts = {name: {"ansible_connection": "local", "ansible_host": "127.0.0.1", "jinad_port": d.port}
             for name, d in daemons.items()}
    hosts.update(more)
    (folder / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return str(folder / "hosts.yml")


def rotate(inventory: str, *more: str):
    result = CliRunner().invoke(cli, ["provision", "rotate-token", "-i", inventory, "--json", *more])
    return result.exit_code, json.loads(result.output.split("\nError:")[0]), result.output


def status(daemon, token, ca) -> int:
    return httpx.get(f"{daemon.url}/workspaces", headers={"Authorization": f"Bearer {token}"}, verify=_ctx(ca),
                     timeout=10).status_code


def _ctx(ca):
    import ssl

    return ssl.create_default_context(cafile=ca)


def test_rotation_keeps_flows_running_and_retires_the_old_token(fleet):
    folder, daemons, old, ca = fleet
    alpha = daemons["alpha"]
    with httpx.Client(base_url=alpha.url, headers={"Authorization": f"Bearer {old}"}, verify=_ctx(ca),
                      timeout=60) as http:
        wid = active_workspace(http, {"flow.yml": FLOW_YML})
    with DaemonClient(alpha.url, old, ca_file=ca) as c:
        flow = c.create_flow(wid, "flow.yml")
    gateway = f"http://{flow['gateway']['host']}:{flow['gateway']['http_port']}"
    running = {p.pid for p in processes_of(alpha.home)}
    assert running

    # a third host on the same token file that cannot be reached: nobody rotates, nothing breaks
    inventory = write_inventory(folder, daemons, gamma={"ansible_connection": "local", "ansible_host": "127.0.0.1",
                                                       "jinad_port": free_port()})
    code, rows, out = rotate(inventory)
    assert code == 2, out
    by_host = {r["host"]: r for r in rows}
    assert by_host["gamma"]["unreachable"] and "not rotated" in by_host["gamma"]["error"]
    assert all(not r["rotated"] and "gamma" in r["error"] for h, r in by_host.items() if h != "gamma")
    assert (folder / "credentials" / "jinad_token").read_text().strip() == old
    assert all(status(d, old, ca) == 200 for d in daemons.values())  # switched back to the old one

    inventory = write_inventory(folder, daemons)
    code, rows, out = rotate(inventory, "-l", "alpha")  # beta shares alpha's token file: not without it
    assert code == 2 and "shares" in rows[0]["error"] and "beta" in rows[0]["error"], out
    assert all(status(d, old, ca) == 200 for d in daemons.values())

    code, rows, out = rotate(inventory)
    assert code == 0 and all(r["rotated"] and r["ok"] for r in rows), out
    new = (folder / "credentials" / "jinad_token").read_text().strip()
    assert new != old and len(new) == 40 and new not in out
    assert (folder / "credentials" / "jinad_token").stat().st_mode & 0o777 == 0o600
    for d in daemons.values():
        assert status(d, old, ca) == 403 and status(d, new, ca) == 200
        assert d.token_file.read_text().strip() == new  # a restarted daemon keeps requiring the new one

    # the Flow was never restarted: the same processes answer, its record unchanged
    assert {p.pid for p in processes_of(alpha.home)} == running
    answer = httpx.post(gateway + "/index", json={"data": [{"text": "after rotation"}], "parameters": {}},
                        timeout=30)
    assert answer.status_code == 200 and answer.json()["data"][0]["text"] == "after rotation"
    result = CliRunner().invoke(cli, ["hosts", "-i", inventory, "--json"])  # the CLI reads the new token
    assert result.exit_code == 0 and all(r["ok"] for r in json.loads(result.output)), result.output
    with DaemonClient(alpha.url, new, ca_file=ca) as c:
        assert c.flow(flow["id"])["state"] == "RUNNING"
        c.delete_flow(flow["id"])


def test_only_the_current_token_may_rotate(fleet):
    folder, daemons, old, ca = fleet
    beta = daemons["beta"]
    new, stolen = "n" * 32, "s" * 32
    with DaemonClient(beta.url, old, ca_file=ca) as c:
        assert c.rotate_token(new) == {"persisted": True, "previous_accepted": True}
    with httpx.Client(base_url=beta.url, verify=_ctx(ca), timeout=10,
                      headers={"Authorization": f"Bearer {old}"}) as c:
        assert c.get("/workspaces").status_code == 200  # still accepted during the rotation
        refused = c.put("/token", json={"token": stolen})  # but a leaked old token cannot take over
        assert refused.status_code == 403 and "current token" in refused.json()["detail"]
        assert c.delete("/token/previous").status_code == 403
        assert c.put("/token", json={"token": "short"}).status_code in (403, 422)
    with DaemonClient(beta.url, new, ca_file=ca) as c:
        bad = httpx.put(f"{beta.url}/token", json={"token": "has spaces in it, not a token at all"},
                        headers={"Authorization": f"Bearer {new}"}, verify=_ctx(ca), timeout=10)
        assert bad.status_code == 422
        c.forget_previous_token()
    assert status(beta, old, ca) == 403 and status(beta, stolen, ca) == 403 and status(beta, new, ca) == 200


def test_a_token_from_the_environment_cannot_be_rotated(tmp_path):
    d = Daemon(tmp_path / "env-token", env={"JINAD_TOKEN": "e" * 32})
    try:
        d.start()
        d.token = "e" * 32
        with d.client() as c:
            r = c.put("/token", json={"token": "f" * 32})
            assert r.status_code == 409 and "JINAD_TOKEN" in r.json()["detail"]
            assert c.get("/workspaces").status_code == 200  # and the token it has still works
    finally:
        d.stop()


def test_a_flow_started_before_a_rotation_still_stops_its_remote_pods(fleet, monkeypatch):
    """The Flow read its token from the inventory's token file; `provision rotate-token` rewrites that
    file and retires the old token while the Flow runs. Closing the Flow still deletes its remote Pod
    (its daemon client reads the file again after the refusal), and so does an inventory's client
    made before the rotation."""
    from jinad_fab import Document, Flow
    from jinad_fab.deploy.fleet import client_for

    folder, daemons, old, ca = fleet
    alpha = daemons["alpha"]
    token_file = folder / "credentials" / "jinad_token"
    monkeypatch.setenv("JINAD_TOKEN_FILE", str(token_file))
    inventory = write_inventory(folder, daemons)
    inv = Inventory.load(inventory)
    kept = client_for(inv, inv["beta"])  # an inventory's client made before the rotation
    f = Flow(ca_file=ca, quiet_remote_logs=True).add(name="far", uses="_pass", host=alpha.url)
    try:
        with f:
            [pod] = [p for p in f.describe_pods() if p["name"] == "far"]
            assert f.post("/index", [Document(text="before")])[0].text == "before"
            code, rows, out = rotate(inventory)
            assert code == 0 and all(r["rotated"] for r in rows), out
            new = token_file.read_text().strip()
            assert new != old and status(alpha, old, ca) == 403  # the Flow's token is refused from now on
            assert f.post("/index", [Document(text="after")])[0].text == "after"  # ZeroMQ: no token
        with DaemonClient(alpha.url, new, ca_file=ca) as c:
            assert pod["id"] not in {p["id"] for p in c.pods() if p["state"] == "RUNNING"}
        assert processes_of(alpha.home) == []
        assert kept.alive() and kept.workspaces() == []  # sent the old token first, then the file's
    finally:
        kept.close()
