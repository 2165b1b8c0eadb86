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
