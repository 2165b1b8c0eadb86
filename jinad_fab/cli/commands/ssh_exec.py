"""`jinad-fab exec -i INV -l PATTERN 'command'`: run a shell command on many hosts over SSH."""

from __future__ import annotations

import click

from ...deploy.ssh import SshGroup
from ._common import (
    console,
    examples,
    finish,
    json_option,
    load_inventory,
    print_json,
    ssh_options,
    status_markup,
    table,
)


@examples(
    "jinad-fab exec -i prod 'nvidia-smi -L'                 # every host",
    "jinad-fab exec -i prod -l 'gpu[0]' 'df -h /opt/jinad'  # the first gpu host",
    "jinad-fab exec -i prod -l '~cpu-[12]' --forks 2 uptime  # hosts whose name matches a regex",
    "jinad-fab exec -i prod --json 'systemctl is-active jinad' | jq '.[].stdout'",
)
@click.command("exec")
@ssh_options
@click.option("--timeout", type=float, default=None, help="seconds the command may run on each host")
@json_option
@click.argument("shell_command")
def command(inventory, vault_password_file, limit, forks, connect_timeout, timeout, as_json,
            shell_command) -> None:
    """Run SHELL_COMMAND on every selected host; print each host's exit code and output.

    Exit 0 when it succeeded everywhere, 2 when it failed on a host, 4 when the failing hosts
    could not be reached.
    """
    inv = load_inventory(inventory, vault_password_file)
    group = SshGroup(inv.select(limit), max_parallel=forks, connect_timeout=connect_timeout)
    result = group.run(shell_command, timeout=timeout)
    if as_json:
        print_json(list(result.as_dict().values()))
    else:
        out = console()
        for name, r in result.items():
            out.rule(f"{name}: {status_markup(r.ok, r.unreachable)} exit={r.exit_code}")
            text = (r.stdout + r.stderr).rstrip() or r.error
            if text:
                out.print(text, markup=False)
        out.print(table(None, ("host", "result", "exit"),
                        [(h, status_markup(r.ok, r.unreachable), r.exit_code) for h, r in result.items()]))
    finish(result, "exec")
