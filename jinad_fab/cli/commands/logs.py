"""`jinad-fab logs -i INV [-l PATTERN] [-f]`: the jinad daemon's log from many hosts, merged."""

from __future__ import annotations

import threading

import click
from rich.text import Text

from ...deploy.render import host_vars_for_role
from ...deploy.results import GroupResult
from ...deploy.ssh import SshGroup, tail_command
from ._common import (
    console,
    examples,
    finish,
    json_option,
    load_inventory,
    print_ndjson,
    ssh_options,
    tail_option,
)

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red")


@examples(
    "jinad-fab logs -i prod                      # the last 50 lines of every host's jinad log",
    "jinad-fab logs -i prod -l 'gpu[0]' -n 200   # the first gpu host, more lines",
    "jinad-fab logs -i prod -l cpu -f            # follow, Ctrl-C stops",
    "jinad-fab logs -i prod -f --json | jq -r 'select(.host==\"gpu-1\") | .line'",
)
@click.command("logs")
@ssh_options
@tail_option(default=50, old_lines_flag=True, per=" of each host")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines (Ctrl-C stops)")
@json_option
def command(inventory, vault_password_file, limit, forks, connect_timeout, tail, follow, as_json) -> None:
    """Print the tail of each selected host's jinad log, every line prefixed by its host.

    With --json each line is a JSON object {host, stream, line} as it arrives, then one object
    per host with its outcome.
    """
    inv = load_inventory(inventory, vault_password_file)
    hosts = inv.select(limit)
    out = console()
    lock = threading.Lock()
    colour = {h.name: _COLOURS[i % len(_COLOURS)] for i, h in enumerate(hosts)}
    width = max((len(h.name) for h in hosts), default=0)

    def on_line(host: str, stream: str, line: str) -> None:
        with lock:
            if as_json:
                print_ndjson({"host": host, "stream": stream, "line": line})
                return
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
        group = SshGroup(members, max_parallel=forks, connect_timeout=connect_timeout)
        cmd = tail_command(path, tail, follow)

        def work(group=group, cmd=cmd) -> None:
            results.update(group.run(cmd, on_output=on_line))

        t = threading.Thread(target=work, daemon=True)
        t.start()
        threads.append(t)
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        return
    result = GroupResult((h.name, results[h.name]) for h in hosts if h.name in results)
    if as_json:
        for outcome in result.as_dict().values():
            print_ndjson({k: v for k, v in outcome.items() if k not in ("stdout", "stderr")})
    finish(result, "logs")
