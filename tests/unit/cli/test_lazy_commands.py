"""`jinad-fab` imports a command's module only when that command is asked for."""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

from click.testing import CliRunner

import jinad_fab.cli.commands as commands_pkg
from jinad_fab.cli.main import COMMAND_MODULES, COMMANDS, cli

# modules that add themselves to another command rather than being listed
_LOADED_BY_THEIR_GROUP = {"render_dockerfile"}
_DEFINES = re.compile(r"^(def command\(|command\s*=|command\.add_command)", re.MULTILINE)


def test_every_command_module_is_listed() -> None:
    folder = pathlib.Path(commands_pkg.__file__).parent
    defined = {p.stem for p in folder.glob("*.py")
               if not p.stem.startswith("_") and _DEFINES.search(p.read_text())}
    defined |= {p.parent.name for p in folder.glob("*/__init__.py") if _DEFINES.search(p.read_text())}
    assert {"hosts", "flow", "ssh_exec", "demo"} <= defined  # the scan sees them (flow/ is a subpackage)
    listed = {m.rsplit(".", 1)[-1] for m in COMMAND_MODULES}
    assert defined - _LOADED_BY_THEIR_GROUP <= listed, defined - listed


def test_help_lists_every_command_with_its_own_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        line = next(x for x in result.output.splitlines() if x.strip().startswith(name + " "))
        assert "unavailable" not in line, line


def test_one_command_loads_only_its_module() -> None:
    probe = (
        "import json, sys, click\n"
        "from jinad_fab.cli.main import cli\n"
        "cli.get_command(click.Context(cli), 'hosts')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('jinad_fab.cli.commands.')"
        " or m in ('numpy', 'jinad_fab.flow', 'fabric', 'ansible'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == ["jinad_fab.cli.commands._common", "jinad_fab.cli.commands.hosts"]


def test_flow_group_has_its_fleet_subcommands() -> None:
    result = CliRunner().invoke(cli, ["flow", "--help"])
    assert result.exit_code == 0
    for sub in ("create", "ls", "up", "ps", "down", "tail"):
        assert f"  {sub} " in result.output


def test_hosts_asks_its_daemons_without_loading_numpy_ansible_fabric_or_trio(tmp_path) -> None:
    # a loopback port nobody listens on: the command goes the whole way (client, request, refusal)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inv = tmp_path / "hosts.yml"
    inv.write_text(f"all:\n  hosts:\n    h1: {{ansible_connection: local, jinad_address: 127.0.0.1, "
                   f"jinad_port: {port}, jinad_token: t}}\n")
    probe = (
        "import atexit, json, sys\n"
        "watch = ('numpy', 'ansible', 'fabric', 'jinad_fab.flow', 'trio', 'httpx', 'httpcore')\n"
        "atexit.register(lambda: print(json.dumps(sorted(m for m in watch if sys.modules.get(m))),"
        " file=sys.stderr))\n"
        "from jinad_fab.cli.main import main\n"
        f"main(['hosts', '-i', {str(inv)!r}, '--json'])\n"
    )
    env = {**os.environ, "JINAD_FAB_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
            for _ in range(2)]  # the first has ansible-inventory read the inventory, the second its cache
    for run in runs:
        assert run.returncode == 4, run.stderr  # unreachable
        [row] = json.loads(run.stdout)
        assert row["host"] == "h1" and row["unreachable"] is True
        assert json.loads(run.stderr.splitlines()[-1]) == ["httpcore", "httpx"]
