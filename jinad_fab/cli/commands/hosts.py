"""`jinad-fab hosts -i INV`: ask every daemon /alive and /status, print one row per host."""

from __future__ import annotations

import click

from ...deploy.fleet import fan_out, health
from ._common import (
    console,
    examples,
    finish,
    forks_option,
    inventory_option,
    json_option,
    limit_option,
    load_inventory,
    print_json,
    status_markup,
    table,
)


def _gib(n) -> str:
    try:
        return f"{int(n) / 2**30:.1f}G"
    except (TypeError, ValueError):
        return "?"


@examples(
    "jinad-fab hosts -i prod",
    "jinad-fab hosts -i prod -l 'gpu[0]'                  # Ansible host patterns, as with -l elsewhere",
    "jinad-fab hosts -i prod -l '~cpu-\\d+' --json | jq '.[] | {host, ok}'",
)
@click.command("hosts")
@inventory_option
@limit_option
@forks_option(default=16)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="seconds per daemon")
@json_option
def command(inventory: str, vault_password_file: str | None, limit: str | None, forks: int, timeout: float,
            as_json: bool) -> None:
    """Show every host's daemon: alive?, version, uptime, runtimes, GPUs, load, memory.

    Exit 0 when all answer, 4 when the failing ones are unreachable, 2 otherwise.
    """
    inv = load_inventory(inventory, vault_password_file)
    hosts = inv.select(limit)
    result = fan_out(inv, hosts, health, timeout=timeout, max_parallel=forks)
    if as_json:
        print_json([
            {**r.as_dict(), "groups": sorted(g for g in inv.hosts[h].groups if g not in ("all", "ungrouped"))}
            for h, r in result.items()
        ])
    else:
        rows = []
        for name, r in result.items():
            host = inv.hosts[name]
            groups = ",".join(sorted(g for g in host.groups if g not in ("all", "ungrouped")))
            if r.ok:
                alive, status = r.value["alive"], r.value["status"]
                res = status.get("resources", status)
                rows.append((name, groups, r.url, status_markup(True), alive.get("version"),
                             f"{float(alive.get('uptime', 0)):.0f}s", ",".join(alive.get("runtimes", [])),
                             len(alive.get("gpus", [])), res.get("cpu_percent", "?"),
                             f"{_gib(res.get('memory_available'))}/{_gib(res.get('memory_total'))}", ""))
            else:
                rows.append((name, groups, r.url, status_markup(False, r.unreachable), "", "", "", "", "", "",
                             r.error))
        console().print(table(f"{len(hosts)} host(s) in {inventory}",
                              ("host", "groups", "daemon", "state", "version", "uptime", "runtimes", "gpus",
                               "cpu%", "mem free", "error"), rows))
    finish(result, "hosts")
