"""`jinad-fab render flow|unit|dockerfile|compose|kubernetes`: print what would be used, without doing it."""

from __future__ import annotations

import importlib

import click

from ...deploy.render import render_flow, render_unit
from ._common import examples, inventory_option, json_option, load_inventory, print_json
from .export import render_command

# `render dockerfile` is written by the Docker runtime's side: a module exposing `command`
# (a click.Command) is added to this group under the name `dockerfile` when it is present.
DOCKERFILE_COMMAND_MODULE = "jinad_fab.cli.commands.render_dockerfile"


@examples(
    "jinad-fab render flow flow.yml -i prod      # the Flow with every Pod's host filled in",
    "jinad-fab render unit -i prod -H gpu-1      # the systemd unit the jinad role installs there",
    "jinad-fab render dockerfile ./my-executor   # the image a docker-runtime jinad would build",
    "jinad-fab render compose flow.yml --json    # what `jinad-fab export compose` would write",
)
@click.group("render")
def command() -> None:
    """Print the files jinad-fab would use: a concrete Flow, the jinad unit, a Dockerfile, an export."""


command.add_command(render_command("compose"))
command.add_command(render_command("kubernetes"))


@examples(
    "jinad-fab render flow flow.yml -i example",
    "jinad-fab render flow flow.yml -i prod --json | jq '.placement[] | {pod, host}'",
)
@command.command("flow")
@click.argument("flow_file", type=click.File("r", encoding="utf-8"))
@inventory_option
@json_option
def flow(flow_file, inventory: str, vault_password_file: str | None, as_json: bool) -> None:
    """Place FLOW_FILE's Pods on the inventory's hosts and print the concrete Flow YAML.

    Pods say `hosts: GROUP` (any host of the group, or an Ansible pattern such as `gpu[0:1]`,
    `~gpu-.*`) or `host: NAME`; the result names each Pod's daemon as `host: address:port`, and
    where `flow up` would run the Gateway (`gateway: {hosts: cpu}` at the top of the Flow).
    """
    inv = load_inventory(inventory, vault_password_file)
    rendered = render_flow(flow_file.read(), inv, what=getattr(flow_file, "name", "Flow YAML"),
                           inventory_name=inventory, place_gateway=True)
    if as_json:
        gw = rendered.placement.gateway
        print_json({"placement": [a.as_dict() for a in rendered.placement], "gateway": gw.as_dict() if gw else None,
                    "yaml": rendered.text})
    else:
        click.echo(rendered.text, nl=False)


@examples(
    "jinad-fab render unit -i prod            # the first host's",
    "jinad-fab render unit -i prod -H cpu-2",
)
@command.command("unit")
@inventory_option
@click.option("-H", "--host", "host_name", default=None, help="inventory host [the first one]")
def unit(inventory: str, vault_password_file: str | None, host_name: str | None) -> None:
    """Print the systemd unit the jinad role installs on a host."""
    inv = load_inventory(inventory, vault_password_file)
    if not inv.hosts:
        raise click.UsageError("the inventory has no hosts")
    host = inv[host_name] if host_name else next(iter(inv.hosts.values()))
    click.echo(render_unit(host), nl=False)


def _add_dockerfile() -> None:
    try:
        module = importlib.import_module(DOCKERFILE_COMMAND_MODULE)
    except ImportError:
        return
    sub = getattr(module, "command", None)
    if isinstance(sub, click.Command):
        command.add_command(sub, "dockerfile")


_add_dockerfile()
