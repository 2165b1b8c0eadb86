"""`jinad-fab exec -i INV -g GROUP 'command'`: run a shell command on many hosts over SSH."""

from __future__ import annotations

import click

from ...deploy.ssh import SshGroup
from ._common import (
    console,
    finish,
    inventory_option,
    json_option,
    load_inventory,
    print_json,
    status_markup,
    table,
)


def ssh_options(fn):
    fn = click.option("--connect-timeout", type=float, default=10.0, show_default=True)(fn)
    fn = click.option("-p", "--parallel", "max_parallel", type=click.IntRange(1, 256), default=10,
                      show_default=True, help="hosts worked on at the same time")(fn)
    fn = click.option("-g", "--group", "pattern", default="all", show_default=True,
                      help="hosts: a group, host, or pattern like gpu:!gpu-2")(fn)
    return inventory_option(fn)


@click.command("exec")
@ssh_options
@click.option("--timeout", type=float, default=None, help="seconds the command may run on each host")
@json_option
@click.argument("shell_command")
def command(inventory, vault_password_file, pattern, max_parallel, connect_timeout, timeout, as_json,
            shell_command) -> None:
    """Run SHELL_COMMAND on every selected host; print each host's exit code and output."""
    inv = load_inventory(inventory, vault_password_file)
    group = SshGroup(inv.select(pattern), max_parallel=max_parallel, connect_timeout=connect_timeout)
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
