"""The real deploy playbook on this machine (connection=local) in wheelhouse mode, into
temporary folders on a random port: deploy, hosts, a second deploy that changes nothing,
verify, teardown - and the daemon is gone afterwards. TLS both ways: the fleet CA jinad-fab makes,
then the operator's own CA, certificate and key; a certificate missing on the controller stops the
role before it installs anything."""

from __future__ import annotations

import datetime
import getpass
import grp
import ipaddress
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import zipfile

import httpx
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jinad_fab.cli.main import _register, cli
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(900)


def test_the_wheel_ships_playbooks_roles_templates_and_inventories(wheels: pathlib.Path) -> None:
    (wheel,) = wheels.glob("jinad_fab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("playbooks/deploy.yml", "playbooks/upgrade.yml", "roles/jinad/tasks/main.yml",
                 "roles/jinad/meta/argument_specs.yml", "roles/nvidia_toolkit/handlers/main.yml",
                 "templates/flow.yml.j2", "inventories/example/hosts.yml", "ansible.cfg"):
        assert f"jinad_fab/assets/{path}" in names, path


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    body = result.output.split("\nError:")[0]
    return result.exit_code, body, result.output


def operator_pki(folder: pathlib.Path, names: list[str]) -> dict[str, pathlib.Path]:
    """An operator's own CA and one host certificate it signed (as `openssl` or a corporate PKI would
    make them), written where the operator keeps them: not next to the inventory."""
    folder.mkdir()
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = {"ca": folder / "ca.pem", "cert": folder / "host.pem", "key": folder / "host-key.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    out["key"].chmod(0o600)
    return out


def test_deploy_hosts_redeploy_verify_teardown_on_this_machine(tmp_path: pathlib.Path, wheels: pathlib.Path) -> None:
    _register()
    port = free_port()
    install, home = tmp_path / "install", tmp_path / "home"
    inventory = tmp_path / "inv" / "hosts.yml"
    inventory.parent.mkdir()
    here = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "jinad_address": "127.0.0.1",
        "jinad_port": port,
        "jinad_fab_become": False,
        "jinad_create_user": False,
        "jinad_user": getpass.getuser(),
        "jinad_group": grp.getgrgid(os.getgid()).gr_name,
        "jinad_install_dir": str(install),
        "jinad_home": str(home),
        "jinad_service_manager": "process",
        "jinad_python": sys.executable,
        "jinad_wait_timeout": 90,
        "jinad_logrotate_install": False,
        "jinad_logrotate_conf_dir": str(tmp_path / "logrotate.d"),
        "jinad_logrotate_size": "1k",
    }

    def write(**more) -> None:
        inventory.write_text(yaml.safe_dump({"all": {"hosts": {"here": {**here, **more}}}}))

    inv = str(inventory)
    try:
        # the operator's certificate is missing on the controller: the role says which file, before
        # anything is installed on the host (and jinad-fab made no fleet CA for a host with its own)
        write(jinad_tls_cert_src=str(tmp_path / "nowhere" / "here.pem"), jinad_tls_key_src=str(tmp_path / "k.pem"))
        code, body, out = run("provision", "deploy", "-i", inv, "--wheelhouse", str(wheels), "--json")
        assert code != 0, out[-4000:]
        assert (f"Nothing was installed on here: it serves HTTPS (jinad_tls), but the controller has no file "
                f"{tmp_path / 'nowhere' / 'here.pem'} nor {tmp_path / 'k.pem'}") in out, out[-4000:]
        assert not install.exists() and not home.exists() and not _listening(port)
        assert not (inventory.parent / "credentials" / "tls").exists()

        write()
        # a dry run lists what would change and changes nothing: not the host, not the controller
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        code, body, out = run("provision", "deploy", "-i", inv, "--wheelhouse", str(wheels), "--check", "--diff",
                              "--json")
        assert code == 0, out[-4000:]
        recap = json.loads(body)["hosts"]["here"]
        would = [c["task"] for c in recap["changes"]]
        # every task that would change is listed, except no_log ones (Ansible hides even whether they changed)
        assert recap["changed"] >= len(would) > 0 and "Install jinad-fab into the release's virtualenv" in would
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no token, no lock
        assert not _listening(port)

        code, body, out = run("provision", "deploy", "-i", inv, "--wheelhouse", str(wheels), "--json")
        assert code == 0, out[-4000:]
        recap = json.loads(body)["hosts"]["here"]
        assert recap["succeeded"] and recap["changed"] > 0
        token = (inventory.parent / "credentials" / "jinad_token").read_text().strip()
        assert len(token) == 40
        assert (home / "token").read_text().strip() == token  # the daemon reads it with --token-file
        assert oct((home / "token").stat().st_mode & 0o777) == "0o600"
        assert oct(home.stat().st_mode & 0o777) == "0o700"
        assert token not in (home / "jinad.env").read_text()
        assert oct((home / "jinad.env").stat().st_mode & 0o777) == "0o600"
        assert token not in out

        # TLS by default: the fleet CA made next to the inventory, the host's certificate installed,
        # and `hosts` checks the daemon against that CA (the inventory says nothing about TLS)
        tls = inventory.parent / "credentials" / "tls"
        assert oct((tls / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
        assert (home / "tls" / "cert.pem").read_bytes() == (tls / "hosts" / "here.pem").read_bytes()
        assert oct((home / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
        code, body, out = run("hosts", "-i", inv, "--json")
        assert code == 0, out
        (row,) = json.loads(body)
        assert row["value"]["alive"]["version"] and row["url"] == f"https://127.0.0.1:{port}"
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{port}/alive", timeout=5)
        assert (home / "tls" / "ca.pem").read_bytes() == (tls / "ca.pem").read_bytes()  # the role's checks verify

        code, body, out = run("provision", "deploy", "-i", inv, "--wheelhouse", str(wheels), "--json")
        assert code == 0, out[-4000:]
        assert json.loads(body)["hosts"]["here"]["changed"] == 0  # idempotent

        code, body, out = run("provision", "verify", "-i", inv, "--json")
        assert code == 0, out[-4000:]

        # the role's logrotate rule rotates the daemon's log, and the daemon goes on writing to it
        rule = tmp_path / "logrotate.d" / "jinad"
        log = home / "logs" / "jinad.log"
        assert f"{log} {{" in rule.read_text() and "copytruncate" in rule.read_text()
        if shutil.which("logrotate") or os.path.exists("/usr/sbin/logrotate"):
            with log.open("a") as fh:  # past the 1k threshold, whatever the daemon wrote so far
                fh.write("filler line for the rotation test\n" * 64)
            subprocess.run([shutil.which("logrotate") or "/usr/sbin/logrotate", "-s", str(tmp_path / "lr.state"),
                            str(rule)], check=True, timeout=60, capture_output=True)
            rotated = home / "logs" / "jinad.log.1"
            assert "filler line for the rotation test" in rotated.read_text() and log.stat().st_size == 0
            subprocess.run([str(install / "jinad-ctl"), "restart"], check=True, timeout=120, capture_output=True)
            code, body, out = run("provision", "verify", "-i", inv, "--json")
            assert code == 0, out[-4000:]
            text = log.read_bytes()
            assert text and b"\0" not in text  # appended at the start of the emptied file, no hole

        # an upgrade is a new release beside the running one; rollback switches back behind /alive.
        # It applies the whole role, so the host moves to the operator's own CA with it: certificate,
        # key and CA of theirs, kept outside the inventory (jinad-fab makes none for such a host)
        own = operator_pki(tmp_path / "operator-pki", ["here", "127.0.0.1"])
        byo = {"jinad_tls_cert_src": str(own["cert"]), "jinad_tls_key_src": str(own["key"]),
               "jinad_ca_file": str(own["ca"])}
        write(**byo)
        assert (install / "current").resolve() == install / "releases" / "initial"
        code, body, out = run("provision", "upgrade", "-i", inv, "--wheelhouse", str(wheels), "--json")
        assert code == 0, out[-4000:]
        upgraded = (install / "current").resolve()
        assert upgraded.parent == install / "releases" and upgraded.name != "initial"
        assert (install / "previous").resolve() == install / "releases" / "initial"
        assert (home / "tls" / "cert.pem").read_bytes() == own["cert"].read_bytes()
        assert (home / "tls" / "ca.pem").read_bytes() == own["ca"].read_bytes()
        assert oct((home / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
        code, body, out = run("hosts", "-i", inv, "--json")  # jinad-fab checks it with the operator's CA
        assert code == 0 and json.loads(body)[0]["ok"], out
        assert httpx.get(f"https://127.0.0.1:{port}/alive", verify=ssl.create_default_context(
            cafile=str(own["ca"])), timeout=10).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # no longer the fleet's
            httpx.get(f"https://127.0.0.1:{port}/alive", verify=ssl.create_default_context(cafile=str(tls / "ca.pem")),
                      timeout=10)
        # the role's checks do verify: with another CA in the host's ca.pem, `verify` refuses the daemon
        (home / "tls" / "ca.pem").write_bytes((tls / "ca.pem").read_bytes())
        write(**byo, jinad_wait_timeout=2)
        code, body, out = run("provision", "verify", "-i", inv, "--json")
        assert code != 0 and "CERTIFICATE_VERIFY_FAILED" in out, out[-4000:]
        (home / "tls" / "ca.pem").write_bytes(own["ca"].read_bytes())
        write(**byo)

        pid_before = (home / "jinad-supervisor.pid").read_text()
        code, body, out = run("provision", "rollback", "-i", inv, "--json")
        assert code == 0, out[-4000:]
        assert json.loads(body)["hosts"]["here"]["changed"] > 0
        assert (install / "current").resolve() == install / "releases" / "initial"
        assert (install / "previous").resolve() == upgraded  # a second rollback would undo this one
        assert (home / "jinad-supervisor.pid").read_text() != pid_before  # restarted on the old release
        code, body, out = run("hosts", "-i", inv, "--json")
        assert code == 0 and json.loads(body)[0]["ok"], out

        code, body, out = run("provision", "teardown", "-i", inv, "--json")
        assert code == 0, out[-4000:]
        assert json.loads(body)["hosts"]["here"]["changed"] > 0
        assert not _listening(port)
        assert not install.exists()
    finally:
        ctl = install / "jinad-ctl"
        if ctl.exists():
            subprocess.run([str(ctl), "stop"], timeout=60, check=False)
