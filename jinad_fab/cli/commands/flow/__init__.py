"""`jinad-fab flow`: Flows on one host's jinad (create, ls, logs, delete) and across an inventory
(up, ps, tail, down, rollback). One group, one subpackage: ``host`` and ``fleet`` each add their commands."""

from __future__ import annotations

import contextlib

import click

from .._common import examples
from . import host


@examples(
    "jinad-fab flow create flow.yml --host gpu1:8000   # one host's jinad runs the whole Flow",
    "jinad-fab flow up flow.yml -i prod --name search  # deployed over an inventory; returns once it answers",
    "jinad-fab flow ps search -i prod --json           # what runs where, from any machine",
)
@click.group("flow")
def command() -> None:
    """Run Flows: on one host's jinad (create, ls, logs, delete; scale, update, dump while they run) or
    deployed over an inventory (up, ps, tail, down, rollback; scale and update by the deployment's name)."""


for _sub in host.COMMANDS:
    command.add_command(_sub)
with contextlib.suppress(ImportError):  # the inventory commands need the deploy extra
    from . import fleet

    for _sub in fleet.COMMANDS:
        command.add_command(_sub)

__all__ = ["command"]
