"""A Pod hosted in its own process (what `jinad` starts for ``POST /pods``).

The host process starts the Pod's Peas, reports the Pod's input addresses and a control
address, and relays ``connect`` commands so whoever owns the Flow can wire the Pod's outputs
(possibly from another machine). It stops its Peas on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import zmq

from ..errors import JinadFabError
from .control import Commands
from .pod import Pod
from .sockets import bind, drain, make_context, signal_wakeup_fd

log = logging.getLogger("jinad_fab.pod")


def run_pod(args: dict, report, die_with_parent: bool = False) -> int:
    if int(args.get("parallel") or 1) == 1 and int(args.get("shards") or 1) == 1:
        return _run_single(args, report, die_with_parent)
    stop = {"flag": False}

    def on_term(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    wake = signal_wakeup_fd()
    ctx = make_context(args.get("curve"))  # its authenticator starts on the first bind, after the forks
    pod = None
    try:
        from . import pea  # noqa: F401 - loaded once here, inherited by every forked Pea

        pod = Pod({k: v for k, v in args.items() if k not in ("targets", "port_ctrl")}, die_with_parent=True,
                  fork=True)
        pod.start()
        pod.wait_ready(time.monotonic() + float(args.get("timeout_ready") or 60))
        host = args.get("host") or "127.0.0.1"
        ctrl, port_ctrl = bind(ctx, zmq.REP, host, int(args.get("port_ctrl") or 0))
        if args.get("targets") is not None:
            pod.connect(args["targets"])
    except (JinadFabError, OSError) as exc:
        report({"state": "failed", "error": str(exc)})
        if pod is not None:
            pod.close()
        ctx.destroy(linger=0)
        return 1
    in_ports = [int(a.rsplit(":", 1)[1]) for a in pod.in_addresses]
    report({"state": "ready", "pid": os.getpid(), "in_addresses": pod.in_addresses,
            "ctrl_address": f"tcp://{host}:{port_ctrl}", "out_parts": pod.out_parts,
            "ports": {"port_in": in_ports[0], "ports_in": in_ports, "port_ctrl": port_ctrl}})
    parent = os.getppid()
    commands = Commands(ctrl, {"connect": lambda cmd: pod.connect(cmd["targets"]),
                               "status": lambda cmd: {"dead": pod.dead(), "pod": pod.describe()},
                               "terminate": lambda cmd: None})
    poller = zmq.Poller()
    poller.register(ctrl, zmq.POLLIN)
    poller.register(wake, zmq.POLLIN)
    code = 0
    while not stop["flag"]:
        events = dict(poller.poll(250))
        if wake in events:
            drain(wake)
            if stop["flag"]:
                break
        if events.get(ctrl) and commands.serve_one() == "terminate":
            break
        dead = pod.dead()
        if dead:
            log.error("Pod %s: Pea %s exited with code %s; stopping the Pod", pod.name, dead[0][0], dead[0][1])
            code = 1
            break
        if die_with_parent and os.getppid() != parent:
            break
    pod.close()
    ctrl.close(linger=0)
    ctx.destroy(linger=0)
    return code


# a Pod of one Pea hands that Pea everything but its counts, routing and process set-up (applied here)
_NOT_FOR_THE_PEA = frozenset({"parallel", "shards", "polling", "env", "gpus", "timeout_ready", "log_json"})


def _run_single(args: dict, report, die_with_parent: bool) -> int:
    """A Pod of one Pea is that Pea, in this very process: no host process and no second fork.

    It reports what a Pod host reports (input addresses and a control address that takes
    ``connect``), so whoever started it cannot tell the difference.
    """
    from .pea import run_pea
    from .sockets import connect_host

    for key, value in (args.get("env") or {}).items():
        os.environ[str(key)] = str(value)
    host = args.get("host") or "127.0.0.1"
    pea_args = {k: v for k, v in args.items() if k not in _NOT_FOR_THE_PEA and v is not None}
    pea_args["pod"] = args.get("name") or "pod"

    def as_pod(event: dict) -> None:
        if event.get("state") != "ready":
            report(event)
            return
        port_in, port_ctrl = event["port_in"], event["port_ctrl"]
        report({"state": "ready", "pid": os.getpid(), "in_addresses": [f"tcp://{connect_host(host)}:{port_in}"],
                "ctrl_address": f"tcp://{host}:{port_ctrl}", "out_parts": 1,
                "ports": {"port_in": port_in, "ports_in": [port_in], "port_ctrl": port_ctrl}})

    return run_pea(pea_args, as_pod, die_with_parent)
