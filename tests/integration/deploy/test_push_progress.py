"""`jinad-fab push` reports each host's bytes as they arrive: the SSH group's callback over a real
OpenSSH server on loopback, and one bar per host on a terminal (none in a pipe)."""

from __future__ import annotations

import os
import re
import sys

import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from jinad_fab.deploy.inventory import Inventory
from jinad_fab.deploy.ssh import SshGroup
from tests.support.terminal import run_with_terminal_stderr

pytestmark = pytest.mark.timeout(300)
_register()

SIZE = 2 * 1024 * 1024 + 4321


def _inventory(tmp_path, port, user, key) -> str:
    ssh = {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": user,
           "ansible_ssh_private_key_file": str(key)}
    path = tmp_path / "inventory" / "hosts.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"all": {"children": {"fleet": {"hosts": {
        "s1": ssh, "s2": ssh, "here": {"ansible_connection": "local"}}}}}}))
    return str(path)


def test_every_host_reports_its_bytes_up_to_the_file_size(tmp_path, sshd) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(SIZE))
    src.chmod(0o640)
    inv = Inventory.load(_inventory(tmp_path, *sshd))
    seen: dict[str, list[tuple[int, int]]] = {}
    result = SshGroup(inv.select("all"), max_parallel=1).put(
        src, str(tmp_path / "remote") + "/", on_progress=lambda host, sent, total: seen.setdefault(host, []).append(
            (sent, total)))
    assert not result.failed, result.as_dict()
    assert sorted(seen) == ["here", "s1", "s2"]
    for host, calls in seen.items():
        sent = [s for s, _ in calls]
        assert calls[-1] == (SIZE, SIZE) and sent == sorted(sent) and len(calls) > 1, host  # as it went
    copied = tmp_path / "remote" / "model.bin"
    assert copied.read_bytes() == src.read_bytes() and (copied.stat().st_mode & 0o777) == 0o640


def test_push_draws_a_bar_per_host_on_a_terminal_and_none_in_a_pipe(tmp_path, sshd) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(SIZE))
    inv = _inventory(tmp_path, *sshd)
    dest = str(tmp_path / "remote") + "/"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    code, out, shown = run_with_terminal_stderr(
        [sys.executable, "-m", "jinad_fab.cli.main", "push", "-i", inv, "-l", "s1,s2", "--forks", "1", str(src),
         dest], env=env)
    assert code == 0, shown[-3000:] + out
    mib = f"{SIZE / 1024 ** 2:.1f}"
    for host in ("s1", "s2"):
        bars = re.findall(rf"^{host} .*?(\d+\.\d)/(\d+\.\d) MiB", shown, re.M)
        assert bars and bars[-1] == (mib, mib), (host, shown[-3000:])
    assert "here" not in shown  # only the hosts of -l

    result = CliRunner().invoke(cli, ["push", "-i", inv, "-l", "s1", str(src), dest])
    assert result.exit_code == 0, result.output
    assert "MiB" not in result.stderr and "━" not in result.stderr
