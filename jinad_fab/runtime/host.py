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
from .pod import Pod
from .sockets import bind, ctrl_reply, drain, make_context, signal_wakeup_fd

log = logging.getLogger("jinad_fab.pod")


def run_pod(args: dict, report, die_with_parent: bool = False) -> int:
    stop = {"flag": False}

    def on_term(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    wake = signal_wakeup_fd()
    ctx = make_context()
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
        if events.get(ctrl):
            cmd = ctrl.recv_json()
            op = cmd.get("cmd") if isinstance(cmd, dict) else None
            try:
                if op == "connect":
                    pod.connect(cmd["targets"])
                    ctrl_reply(ctrl, True)
                elif op == "status":
                    ctrl_reply(ctrl, True, dead=pod.dead(), pod=pod.describe())
                elif op == "terminate":
                    ctrl_reply(ctrl, True)
                    break
                else:
                    ctrl_reply(ctrl, False, error=f"unknown command {op!r}")
            except (JinadFabError, KeyError, TypeError) as exc:
                ctrl_reply(ctrl, False, error=f"{type(exc).__name__}: {exc}")
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
