"""The real deploy playbook on this machine (connection=local) in wheelhouse mode, into
temporary folders on a random port: deploy, hosts, a second deploy that changes nothing,
verify, teardown - and the daemon is gone afterwards."""

from __future__ import annotations

import getpass
import grp
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import zipfile

import httpx
import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from jinad_fab.deploy import provision_wheels
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> pathlib.Path:
    root = provision_wheels.project_root()
    assert root is not None, "these tests run from a checkout"
    dest = tmp_path_factory.mktemp("wheelhouse")
    provision_wheels.build(dest, root)
    return dest


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


def test_deploy_hosts_redeploy_verify_teardown_on_this_machine(tmp_path: pathlib.Path, wheels: pathlib.Path) -> None:
    _register()
    port = free_port()
    install, home = tmp_path / "install", tmp_path / "home"
    inventory = tmp_path / "inv" / "hosts.yml"
    inventory.parent.mkdir()
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"here": {
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
    }}}}))
    inv = str(inventory)
    try:
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

        # an upgrade is a new release beside the running one; rollback switches back behind /alive
        assert (install / "current").resolve() == install / "releases" / "initial"
        code, body, out = run("provision", "upgrade", "-i", inv, "--wheelhouse", str(wheels), "--json")
        assert code == 0, out[-4000:]
        upgraded = (install / "current").resolve()
        assert upgraded.parent == install / "releases" and upgraded.name != "initial"
        assert (install / "previous").resolve() == install / "releases" / "initial"
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
