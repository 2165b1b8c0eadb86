"""`jinad --tls-certfile/--tls-keyfile` serves HTTPS; clients verify it against the certificate."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from jinad_fab.errors import DaemonUnreachable
from jinad_fab.remote import DaemonClient


@pytest.fixture
def cert(tmp_path):
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return crt, key


def test_https_with_a_verified_certificate(daemon_factory, cert, tmp_path):
    crt, key = cert
    d = daemon_factory(token="t0k", extra=["--tls-certfile", str(crt), "--tls-keyfile", str(key)], scheme="https",
                       verify=str(crt))
    with DaemonClient.from_address(f"https://127.0.0.1:{d.port}", token="t0k", ca_file=str(crt)) as c:
        assert c.alive()["version"]
        assert c.workspaces() == []
    with pytest.raises(DaemonUnreachable):  # a client that does not trust the certificate stops here
        with DaemonClient(f"https://127.0.0.1:{d.port}", token="t0k") as c:
            c.alive()
    with pytest.raises(httpx.HTTPError):  # and plain HTTP is not served
        httpx.get(f"http://127.0.0.1:{d.port}/alive", timeout=5)


def test_half_a_tls_pair_is_refused(cert, tmp_path):
    crt, _ = cert
    out = subprocess.run(["jinad", "--home", str(tmp_path / "h"), "--tls-certfile", str(crt)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "both a certificate and its key" in out.stderr


def test_a_remote_pod_and_the_cli_reach_an_https_daemon_with_a_ca_bundle(daemon_factory, cert, tmp_path,
                                                                         monkeypatch):
    """Every caller goes through DaemonClient.from_address: remote Pods, `jinad-fab` and inventory fan-outs."""
    import json

    import yaml
    from click.testing import CliRunner

    from jinad_fab import Document, Flow
    from jinad_fab.cli.main import _register, cli
    from jinad_fab.errors import PeaStartError

    crt, key = cert
    d = daemon_factory(token="t0k", extra=["--tls-certfile", str(crt), "--tls-keyfile", str(key)], scheme="https",
                       verify=str(crt))
    url = f"https://127.0.0.1:{d.port}"
    monkeypatch.chdir(tmp_path)

    f = Flow(ca_file=str(crt), token="t0k", quiet_remote_logs=True).add(name="far", host=url, uses="_pass")
    with f:
        got = f.index([Document(id=str(i), text=f"doc {i}") for i in range(5)])
    assert got.ids == [str(i) for i in range(5)]
    with pytest.raises(PeaStartError, match="not trusted"):  # the same Pod without the CA bundle
        with Flow(token="t0k", quiet_remote_logs=True).add(name="far", host=url, uses="_pass"):
            pass
    with d.client() as c:
        assert c.get("/workspaces").json()["items"] == []  # both Flows cleaned up after themselves

    _register()
    ok = CliRunner().invoke(cli, ["flow", "ls", "--host", url, "--ca-file", str(crt), "--token-file", str(d.token_file),
                                "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output) == [], ok.output
    refused = CliRunner().invoke(cli, ["flow", "ls", "--host", url, "--token-file", str(d.token_file)])
    assert refused.exit_code == 4 and "certificate is not trusted" in refused.output

    inv = tmp_path / "inv" / "hosts.yml"
    inv.parent.mkdir()
    crt_copy = inv.parent / "fleet-ca.pem"
    crt_copy.write_bytes(crt.read_bytes())
    host = {"ansible_connection": "local", "jinad_address": "127.0.0.1", "jinad_port": d.port, "jinad_token": "t0k",
            "jinad_scheme": "https", "jinad_ca_file": "fleet-ca.pem"}  # relative to the inventory
    inv.write_text(yaml.safe_dump({"all": {"children": {"fleet": {"hosts": {"tls": host}}}}}))
    hosts = CliRunner().invoke(cli, ["hosts", "-i", str(inv), "--json"])
    assert hosts.exit_code == 0, hosts.output
    (row,) = json.loads(hosts.output)
    assert row["ok"] and row["url"] == url and "t0k" not in hosts.output
