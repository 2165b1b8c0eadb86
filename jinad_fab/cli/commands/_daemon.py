"""Options shared by the commands that talk to one host's `jinad`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ...flow.remote_pods import split_host
from ...remote import DaemonClient


def host_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--token", envvar="JINAD_TOKEN", default=None, show_envvar=True,
                      help="the daemon's Bearer token (never printed)")(fn)
    return click.option("--host", "host", required=True, metavar="HOST[:PORT]",
                        help="the jinad daemon, e.g. gpu1:8000 (port 8000 when left out)")(fn)


def daemon(host: str, token: str | None, timeout: float = 30.0) -> DaemonClient:
    name, port = split_host(host)
    return DaemonClient(f"http://{name}:{port}", token=token, name=f"{name}:{port}", timeout=timeout)
