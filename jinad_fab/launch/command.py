"""The command line of ``python -m jinad_fab.launch``, built from structured values.

Whoever starts a launch process (the daemon's runtimes) calls :func:`launch_argv` instead of
writing or rewriting option strings, so the options exist in two places only: here and in the
parser of :mod:`jinad_fab.launch.__main__` (a test round-trips one through the other).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MODULE = "jinad_fab.launch"
"""What ``python -m`` runs."""

POD_PORTS = ("port_in", "port_ctrl")
FLOW_PORTS = ("port_http", "port_native", "port_ctrl")
FLOW_LOCAL_PORTS = ("port_ctrl",)
"""A Flow's ports only its own daemon talks to (live changes): a container runtime publishes them
on the host's loopback alone, whatever address it publishes the others on."""


def launch_argv(kind: str, *, args: Mapping[str, Any] | None = None, yaml: str | None = None,
                host: str | None = None, workspace: str | None = None, ports: Mapping[str, int | None] | None = None,
                status_file: str | None = None, log_json: bool = False, role: str | None = None,
                replica: int | None = None, address: str | None = None, ctrl_host: str | None = None) -> list[str]:
    """The arguments after ``python -m jinad_fab.launch`` for one object.

    ``args`` are a Pea/Pod/Gateway's arguments (ignored for a Flow, whose arguments are its YAML
    file); ``host``, ``workspace`` and ``ports`` (``port_in``/``port_ctrl`` for a Pod or Pea,
    ``port_http``/``port_native``/``port_ctrl`` for a Flow; 0 or None: the object picks one) override
    them. A Flow's control socket (live changes) binds on loopback unless ``ctrl_host`` says
    otherwise (a container binds it everywhere inside, and is published on the host's loopback).
    ``static`` runs the service ``role`` (replica ``replica``) of the Flow in ``yaml`` with its
    static wiring; ``probe`` asks the control ``address`` for a status (an exported container's
    health check).
    """
    ports = {k: int(v) for k, v in (ports or {}).items() if v}
    if kind == "flow":
        if not yaml:
            raise ValueError("a flow is launched from its YAML file")
        argv = ["flow", "--yaml", yaml]
        if host:
            argv += ["--host", host]
        if ctrl_host:
            argv += ["--ctrl-host", ctrl_host]
        for key in FLOW_PORTS:
            if key in ports:
                argv += [f"--{key.replace('_', '-')}", str(ports[key])]
    elif kind == "static":
        if not yaml or not role:
            raise ValueError("a static service is launched from its Flow's YAML file and its role")
        argv = ["static", "--yaml", yaml, "--role", role]
        if replica is not None:
            argv += ["--replica", str(int(replica))]
    elif kind == "probe":
        if not address:
            raise ValueError("a probe needs the control address to ask")
        argv = ["probe", "--address", address]
    elif kind in ("pea", "pod", "gateway"):
        values = dict(args or {})
        if host:
            values["host"] = host
        if workspace:
            values["workspace"] = workspace
        values.update(ports)
        argv = [kind, "--args-json", json.dumps(values)]
    else:
        raise ValueError(f"cannot launch a {kind!r}")
    if status_file:
        argv += ["--status-file", status_file]
    if log_json:
        argv.append("--log-json")
    return argv
