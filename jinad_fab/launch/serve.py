"""Run a Flow from YAML in the foreground until SIGTERM/SIGINT (what `jinad` starts for POST /flows)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading

from ..errors import JinadFabError
from ..flow.yaml import load_flow
from . import handoff
from .flow_control import FlowControl

log = logging.getLogger("jinad_fab.flow")


def run_flow(path: str | None, report, *, host: str | None = None, port_http: int | None = None,
             port_native: int | None = None, die_with_parent: bool = False, log_json: bool = False,
             status_file: str | None = None, port_ctrl: int | None = None, ctrl_host: str | None = None) -> int:
    stop = threading.Event()
    try:  # before anything is forked: no child inherits the key
        tokens = handoff.take(status_file, os.environ)
    except (OSError, ValueError) as exc:
        report({"state": "failed", "error": f"the daemon's tokens for remote Pods could not be read: {exc}"})
        return 1

    def on_term(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        if not path:
            raise JinadFabError("flow needs --yaml FILE")
        # this process is nothing but the Flow: its Peas and Gateway are forked from it
        flow = load_flow(path, fork=True)
        flow._use_daemon_tokens(tokens)
        from ..runtime import gateway, pea  # noqa: F401 - loaded once, inherited by every forked child

        gateway.preload()
        if host:
            flow.args["host"] = host
        if log_json:
            flow.args["log_json"] = True
        if port_http:
            flow.args["port_http"] = port_http
        if port_native:
            flow.args["port_native"] = port_native
        # a Flow run by jinad heals: a replica that exits is started again unless its Pod says never
        flow.args.setdefault("restart", "on-failure")
        # what this process holds now is shared with every child it forks: a collection in a child
        # would walk (and so copy) all of it, tens of ms of a Pea's start on a busy machine
        gc.collect()
        gc.freeze()
        flow.start()
    except JinadFabError as exc:
        report({"state": "failed", "error": str(exc)})
        return 1
    try:
        # PUT /flows/{id}: scale, rolling update, dump; on loopback unless told (a container's is published)
        control = FlowControl(flow, host=ctrl_host or "127.0.0.1", port=port_ctrl or 0, status_file=status_file)
    except JinadFabError as exc:
        flow.close()
        report({"state": "failed", "error": str(exc)})
        return 1
    ports = flow.gateway_ports
    pods = flow.describe_pods()
    ready = {"state": "ready", "pid": os.getpid(), "ctrl_address": control.address,
             "gateway": {"host": flow.args["host"], **ports}}
    report({**ready, "pods": pods})
    parent = os.getppid()
    code = 0
    ticks = 0
    try:
        while not stop.is_set():
            control.serve(20)
            ticks += 1
            if ticks % 25 == 0:  # a Pod LOST or re-placed: the daemon reads the report again on GET
                now = flow.describe_pods()
                if now != pods:
                    pods = now
                    report({**ready, "pods": pods})
            if flow.failure is not None:
                log.error("stopping: Pod %r died (%s)", flow.failure["pod"], flow.failure["msg"])
                # why, for whoever started us (jinad reads it once the process is gone)
                report({"state": "failed", "error": f"Pod {flow.failure['pod']!r} died: {flow.failure['msg']}"})
                code = 1
                break
            if die_with_parent and os.getppid() != parent:
                break
    finally:
        flow.close()
        control.close()
    return code
