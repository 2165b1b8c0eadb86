"""`jinad-fab logs -i INV [-g GROUP] [-f]`: the jinad daemon's log from many hosts, merged."""

from __future__ import annotations

import threading

import click
from rich.text import Text

from ...deploy.render import host_vars_for_role
from ...deploy.ssh import SshGroup, tail_command
from ._common import console, finish, json_option, load_inventory, print_json
from .exec_ import ssh_options

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red")


@click.command("logs")
@ssh_options
@click.option("-n", "--lines", type=click.IntRange(0), default=50, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines (Ctrl-C stops)")
@json_option
def command(inventory, vault_password_file, pattern, max_parallel, connect_timeout, lines, follow, as_json) -> None:
    """Print the tail of each selected host's jinad log, every line prefixed by its host."""
    inv = load_inventory(inventory, vault_password_file)
    hosts = inv.select(pattern)
    out = console()
    lock = threading.Lock()
    colour = {h.name: _COLOURS[i % len(_COLOURS)] for i, h in enumerate(hosts)}
    width = max((len(h.name) for h in hosts), default=0)

    def on_line(host: str, stream: str, line: str) -> None:
        with lock:
            prefix = Text(f"{host:<{width}} | ", style=colour.get(host, ""))
            out.print(prefix + Text(line), soft_wrap=True)

    # Every host may keep its log elsewhere: each gets its own command, run in parallel.
    results = {}
    groups = {}
    for host in hosts:
        path = str(host_vars_for_role(host).get("jinad_log_file"))
        groups.setdefault(path, []).append(host)
    threads = []
    for path, members in groups.items():
        group = SshGroup(members, max_parallel=max_parallel, connect_timeout=connect_timeout)
        cmd = tail_command(path, lines, follow)

        def work(group=group, cmd=cmd) -> None:
            results.update(group.run(cmd, on_output=None if as_json else on_line))

        t = threading.Thread(target=work, daemon=True)
        t.start()
        threads.append(t)
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        return
    from ...deploy.results import GroupResult

    result = GroupResult((h.name, results[h.name]) for h in hosts if h.name in results)
    if as_json:
        print_json(list(result.as_dict().values()))
    finish(result, "logs")
