"""`jinad-fab flow`: Flows on one host's jinad (create, ls, logs, delete) and across an inventory
(up, ps, tail, down). One group, one subpackage: ``host`` and ``fleet`` each add their commands."""

from __future__ import annotations

import contextlib

import click

from .._common import examples
from . import host


@examples(
    "jinad-fab flow create flow.yml --host gpu1:8000   # one host's jinad runs the whole Flow",
    "jinad-fab flow up flow.yml -i prod                # Pods placed over an inventory, Gateway here",
    "jinad-fab flow ps -i prod -l gpu --json           # what runs where",
)
@click.group("flow")
def command() -> None:
    """Run Flows: on one host's jinad (create, ls, logs, delete) or over an inventory (up, ps, tail, down)."""


for _sub in host.COMMANDS:
    command.add_command(_sub)
with contextlib.suppress(ImportError):  # the inventory commands need the deploy extra
    from . import fleet

    for _sub in fleet.COMMANDS:
        command.add_command(_sub)

__all__ = ["command"]
