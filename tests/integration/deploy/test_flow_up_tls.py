"""`jinad-fab flow up` on a fleet that serves HTTPS from its fleet CA (the default a deploy makes):
the Flow the keeper daemon runs reaches the other daemon over HTTPS, checked against the CA that
`flow up` ships beside it, and `flow down` removes everything, all over TLS."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys

import httpx
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from jinad_fab.deploy import pki
from jinad_fab.deploy.inventory import Inventory
from tests.support.fleet_flows import documents, write_project

pytestmark = pytest.mark.timeout(600)

def test_flow_up_reaches_every_daemon_over_https(tmp_path, daemon_factory) -> None:
    folder = tmp_path / "inv"
    folder.mkdir()
    names = {"g1": {"ansible_host": "127.0.0.1"}, "c1": {"ansible_host": "127.0.0.1"}}
    made = pki.ensure_fleet_certificates(
        Inventory.from_ansible_json({"_meta": {"hostvars": names}, "all": {"hosts": list(names)}},
                                    source=folder / "hosts.yml"), [])
    assert made.ca is None  # nothing asked for: nothing made
    inv0 = Inventory.from_ansible_json({"_meta": {"hostvars": names}, "all": {"hosts": list(names)}},
                                       source=folder / "hosts.yml")
    made = pki.ensure_fleet_certificates(inv0, list(inv0.hosts.values()))
    tokens = {n: "tls-up-" + os.urandom(8).hex() for n in names}
    daemons = {h.name: daemon_factory(token=tokens[h.name], scheme="https", verify=str(made.ca),
                                      extra=["--tls-certfile", str(h.cert), "--tls-keyfile", str(h.key)])
               for h in made.hosts}
    (folder / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "gpu": {"hosts": {"g1": {"jinad_address": "127.0.0.1", "jinad_port": daemons["g1"].port,
                                 "jinad_token": tokens["g1"]}}},
        "cpu": {"hosts": {"c1": {"jinad_address": "127.0.0.1", "jinad_port": daemons["c1"].port,
                                 "jinad_token": tokens["c1"]}}},
    }}}))
    proj = tmp_path / "proj"
    write_project(proj)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINAD")}
    env["JINAD_FAB_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", "from jinad_fab.cli.main import main; main()", "flow", "up",
                           str(proj / "flow.yml"), "-i", str(folder / "hosts.yml"), "--name", "tls", "--json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    up = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {(p["pod"], p["host"]) for p in up["placement"]} == {("encode", "c1"), ("index", "g1")}
    assert all(p["target"].startswith("https://") for p in up["placement"])

    base = f"http://{up['gateway']['host']}:{up['gateway']['http_port']}"
    docs = documents(10)
    r = httpx.post(f"{base}/index", json={"data": docs}, timeout=60)
    assert r.status_code == 200, r.text
    assert [(d["id"], d["text"]) for d in r.json()["data"]] == [(d["id"], d["text"]) for d in docs]
    r = httpx.post(f"{base}/search", json={"data": [{"text": "document number 7"}], "parameters": {"top_k": 1}},
                   timeout=60)
    assert r.status_code == 200 and r.json()["data"][0]["matches"][0]["id"] == "7", r.text

    ca = ssl.create_default_context(cafile=str(made.ca))
    with httpx.Client(base_url=daemons["g1"].url, verify=ca, timeout=30,
                      headers={"Authorization": f"Bearer {tokens['g1']}"}) as g1:
        assert [p["state"] for p in g1.get("/pods").json()["items"]] == ["RUNNING"]  # started by c1's Flow

    _register()
    down = CliRunner(env={"JINAD_FAB_CACHE_DIR": str(tmp_path / "cache")}).invoke(
        cli, ["flow", "down", "tls", "-i", str(folder / "hosts.yml"), "-y", "--json"])
    assert down.exit_code == 0, down.output
    for name, d in daemons.items():
        with httpx.Client(base_url=d.url, verify=ca, timeout=30,
                          headers={"Authorization": f"Bearer {tokens[name]}"}) as c:
            assert [p for p in c.get("/pods").json()["items"] if p["state"] == "RUNNING"] == [], name
            assert [f for f in c.get("/flows").json()["items"] if f["state"] == "RUNNING"] == [], name
