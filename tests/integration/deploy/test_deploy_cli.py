"""`jinad-fab render|hosts|exec|push|logs` through CliRunner against real daemons and a real sshd."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from tests.support.daemons import Daemon, running
from tests.support.ports import free_port

FLOW = """!Flow
version: '1'
pods:
  - name: encode
    uses: Encoder
    hosts: cpu
    parallel: 2
  - name: _index
    uses: Indexer
    hosts: gpu
    gpus: 1
"""


@pytest.fixture(scope="module", autouse=True)
def _commands() -> None:
    _register()


@pytest.fixture(scope="module")
def jinad(tmp_path_factory):
    """One real `jinad` with a token for the module's `hosts` tests, which only read /alive and
    /status from it: (port, token)."""
    with running(Daemon(tmp_path_factory.mktemp("hosts") / "jinad", token="t0ken-" + os.urandom(8).hex())) as d:
        yield d.port, d.token


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def write_inventory(tmp_path: pathlib.Path, hosts: dict[str, dict]) -> str:
    path = tmp_path / "inventory" / "hosts.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"all": {"children": {"fleet": {"hosts": hosts}}}}))
    return str(path)


def test_render_flow_for_the_example_inventory(tmp_path: pathlib.Path) -> None:
    (tmp_path / "flow.yml").write_text(FLOW)
    result = invoke("render", "flow", str(tmp_path / "flow.yml"), "-i", "example")
    assert result.exit_code == 0, result.output
    assert "host: 203.0.113.11:8000" in result.output  # _index on gpu-1
    assert "host: 203.0.113.21:8000" in result.output  # encode on cpu-1
    as_json = json.loads(invoke("render", "flow", str(tmp_path / "flow.yml"), "-i", "example", "--json").output)
    assert [(p["pod"], p["host"]) for p in as_json["placement"]] == [("encode", "cpu-1"), ("_index", "gpu-1")]


def test_render_flow_that_cannot_be_placed_exits_2_with_the_reason(tmp_path: pathlib.Path) -> None:
    (tmp_path / "flow.yml").write_text(FLOW.replace("gpus: 1", "gpus: 3"))
    result = CliRunner().invoke(cli, ["render", "flow", str(tmp_path / "flow.yml"), "-i", "example"])
    assert result.exit_code == 2
    assert "cannot place Pod '_index'" in result.output


def test_render_unit_for_a_host() -> None:
    result = invoke("render", "unit", "-i", "example", "-H", "cpu-2")
    assert result.exit_code == 0
    assert "ExecStart=/opt/jinad/current/venv/bin/jinad" in result.output and "[Install]" in result.output


def test_hosts_shows_every_daemon_and_exit_codes_follow_failures(tmp_path, jinad) -> None:
    port, token = jinad
    dead = free_port()
    good = {"ansible_connection": "local", "jinad_address": "127.0.0.1", "jinad_port": port, "jinad_token": token}
    inv = write_inventory(tmp_path, {"up": good})
    result = invoke("hosts", "-i", inv, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["ok"] and row["value"]["alive"]["version"] and row["value"]["status"]["resources"]["cpu_count"] >= 1
    assert token not in result.output

    table = invoke("hosts", "-i", inv)
    assert table.exit_code == 0 and "up" in table.output and "ok" in table.output and token not in table.output

    down = dict(good, jinad_port=dead)
    inv = write_inventory(tmp_path, {"up": good, "down": down})
    result = CliRunner().invoke(cli, ["hosts", "-i", inv])
    assert result.exit_code == 4
    assert "unreachable: down" in result.output

    inv = write_inventory(tmp_path, {"up": good, "badtoken": dict(good, jinad_token="wrong")})
    result = CliRunner().invoke(cli, ["hosts", "-i", inv, "--json"])
    assert result.exit_code == 2
    rows = {r["host"]: r for r in json.loads(result.output.split("\nError")[0])}
    assert rows["badtoken"]["status_code"] in (401, 403) and not rows["badtoken"]["unreachable"]


def test_hosts_asks_every_daemon_at_once_and_names_the_stopped_one(tmp_path, jinads, daemon_factory) -> None:
    running = {f"up{i}": jinads() for i in range(4)}
    stopped = daemon_factory(token="t0ken-" + os.urandom(8).hex())
    stopped.stop()  # a daemon that answered once and is now stopped
    stopped_port, stopped_token = stopped.port, stopped.token
    hosts = {name: {"ansible_connection": "local", "jinad_address": "127.0.0.1", "jinad_port": port,
                    "jinad_token": token} for name, (port, token) in running.items()}
    hosts["stopped"] = dict(hosts["up0"], jinad_port=stopped_port, jinad_token=stopped_token)
    inv = write_inventory(tmp_path, hosts)
    result = CliRunner().invoke(cli, ["hosts", "-i", inv, "--json", "--timeout", "30"])
    assert result.exit_code == 4, result.output
    body, error = result.output.split("\nError")
    rows = {r["host"]: r for r in json.loads(body)}
    assert set(rows) == set(hosts)  # one answer per host, the failure did not stop the others
    assert all(rows[h]["ok"] and rows[h]["value"]["alive"]["version"] for h in running)
    assert len({rows[h]["value"]["alive"]["daemon_id"] for h in running}) == len(running)  # four daemons, not one
    assert rows["stopped"]["unreachable"] and not rows["stopped"]["ok"]
    assert "stopped" in error and "up0" not in error


def test_hosts_imports_only_what_it_uses(tmp_path, jinad) -> None:
    port, token = jinad
    inv = write_inventory(tmp_path, {"up": {"ansible_connection": "local", "jinad_address": "127.0.0.1",
                                            "jinad_port": port, "jinad_token": token}})
    probe = (
        "import atexit, json, sys\n"
        "heavy = ('numpy', 'jinad_fab.flow', 'jinad_fab.runtime', 'jinad_fab.daemon', 'ansible', 'fabric',"
        " 'jinja2', 'jinad_fab.cli.commands.flow')\n"
        "atexit.register(lambda: sys.stderr.write('LOADED ' + json.dumps(sorted(m for m in heavy"
        " if m in sys.modules)) + '\\n'))\n"
        "from jinad_fab.cli.main import main\n"
        "main()\n"
    )
    for _ in range(2):  # Ansible parses the inventory in a subprocess, then its answer is cached
        proc = subprocess.run([sys.executable, "-c", probe, "hosts", "-i", inv, "--json"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)[0]["ok"]
        assert "LOADED []" in proc.stderr, proc.stderr


def test_hosts_reads_the_token_the_role_generated_next_to_the_inventory(tmp_path, jinad) -> None:
    port, token = jinad
    inv = write_inventory(tmp_path, {"up": {"jinad_address": "127.0.0.1", "jinad_port": port}})
    (tmp_path / "inventory" / "credentials").mkdir()
    (tmp_path / "inventory" / "credentials" / "jinad_token").write_text(token)
    result = invoke("hosts", "-i", inv, "--json")
    assert result.exit_code == 0, result.output


def ssh_host(port: int, user: str, key: pathlib.Path) -> dict:
    return {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": user,
            "ansible_ssh_private_key_file": str(key)}


def test_exec_push_logs_over_real_ssh_with_per_host_results(tmp_path, sshd) -> None:
    port, user, key = sshd
    marker = tmp_path / "remote" / "marker.txt"
    inv = write_inventory(tmp_path, {"s1": ssh_host(port, user, key), "s2": ssh_host(port, user, key)})

    result = invoke("exec", "-i", inv, "--json", "--forks", "1", "echo hello-$((6*7)); hostname >/dev/null")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["host"], r["exit_code"], r["stdout"].strip()) for r in rows] == [("s1", 0, "hello-42"), ("s2", 0, "hello-42")]

    src = tmp_path / "payload.txt"
    src.write_text("payload\n")
    result = invoke("push", "-i", inv, "-l", "s1", "--mode", "0600", str(src), str(marker))
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "payload\n" and (marker.stat().st_mode & 0o777) == 0o600

    log = tmp_path / "jinad.log"
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    inv = write_inventory(tmp_path, {"s1": {**ssh_host(port, user, key), "jinad_log_file": str(log)}})
    result = invoke("logs", "-i", inv, "-n", "2")
    assert result.exit_code == 0, result.output
    assert "s1 | line 8" in result.output and "s1 | line 9" in result.output and "line 7" not in result.output

    inv = write_inventory(tmp_path, {"s1": ssh_host(port, user, key), "gone": ssh_host(free_port(), user, key)})
    result = CliRunner().invoke(cli, ["exec", "-i", inv, "--connect-timeout", "3", "true"])
    assert result.exit_code == 4 and "unreachable: gone" in result.output
    result = CliRunner().invoke(cli, ["exec", "-i", inv, "--connect-timeout", "3", "--json", "exit 3"])
    assert result.exit_code == 2
    rows = {r["host"]: r for r in json.loads(result.output.split("\nError")[0])}
    assert rows["s1"]["exit_code"] == 3 and rows["gone"]["unreachable"]


def test_provision_names_an_unreachable_host_and_exits_4(tmp_path, sshd) -> None:
    port, user, key = sshd
    inv = write_inventory(tmp_path, {"gone": ssh_host(free_port(), user, key)})
    result = CliRunner().invoke(cli, ["provision", "verify", "-i", inv, "--json"])
    assert result.exit_code == 4, result.output
    recap = json.loads(result.output.split("\nError:")[0])["hosts"]["gone"]
    assert recap["unreachable"] == 1 and not recap["succeeded"]
    assert "unreachable: gone" in result.output


def test_provision_check_mode_reports_per_host_without_changing_anything(tmp_path, sshd) -> None:
    port, user, key = sshd
    host = {**ssh_host(port, user, key), "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "jinad_fab_become": False, "jinad_install_dir": str(tmp_path / "install"),
            "jinad_home": str(tmp_path / "home"), "jinad_service_manager": "process"}
    inv = write_inventory(tmp_path, {"s1": host})
    result = CliRunner().invoke(cli, ["provision", "deploy", "-i", inv, "--check", "--json"])
    body = result.output.split("\nError:")[0]
    recap = json.loads(body)["hosts"]["s1"]
    assert recap["unreachable"] == 0 and recap["ok"] > 0, result.output
    assert not (tmp_path / "install").exists() and not (tmp_path / "home").exists()
