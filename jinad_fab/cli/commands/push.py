"""`jinad-fab push -i INV -l PATTERN LOCAL REMOTE`: copy a file to many hosts over SSH."""

from __future__ import annotations

import os

import click

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
from ._progress import host_bars


@examples(
    "jinad-fab push -i prod model.onnx /opt/models/           # to every host, keeping the name",
    "jinad-fab push -i prod -l gpu --mode 0600 key.pem /etc/jinad/tls/key.pem",
    "jinad-fab push -i prod -l 'cpu[0:1]' --json flow.yml /srv/flows/",
)
@click.command("push")
@ssh_options
@click.option("--mode", default=None, help="octal file mode to set, e.g. 0644")
@json_option
@click.argument("local", type=click.Path(dir_okay=False, exists=True))
@click.argument("remote")
def command(inventory, vault_password_file, limit, forks, connect_timeout, mode, as_json, local,
            remote) -> None:
    """Copy LOCAL to REMOTE on every selected host (REMOTE ending in / is a folder)."""
    from ...deploy.ssh import SshGroup

    inv = load_inventory(inventory, vault_password_file)
    file_mode = int(mode, 8) if mode else None
    hosts = inv.select(limit)
    # a bar per host on a terminal, as the bytes reach each one; nothing extra in a pipe or a log
    with host_bars([h.name for h in hosts], os.path.getsize(local)) as on_progress:
        result = SshGroup(hosts, max_parallel=forks, connect_timeout=connect_timeout).put(
            local, remote, mode=file_mode, on_progress=on_progress)
    if as_json:
        print_json(list(result.as_dict().values()))
    else:
        console().print(table(None, ("host", "result", "detail"),
                              [(h, status_markup(r.ok, r.unreachable), r.stdout or r.error)
                               for h, r in result.items()]))
    finish(result, "push")
