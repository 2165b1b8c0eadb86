"""A Pod hosted in its own process (what `jinad` starts for ``POST /pods``).

The host process starts the Pod's Peas, reports the Pod's input addresses and a control
address, and relays ``connect`` commands so whoever owns the Flow can wire the Pod's outputs
(possibly from another machine). It stops its Peas on SIGTERM/SIGINT.

Live changes (issue 15) go through the same control socket, driven by whoever owns the Flow (it
also rewires the senders and tells its Gateway): ``add_replica`` (optionally with new arguments
for it and every later one), ``drain`` (plan onto it no more), ``remove_replica``. A replica that
dies is reported in ``status`` (``deaths``) and taken out; the Pod goes on while each of its sets
keeps a replica, or while its owner restarts them (``restart: on-failure``). So does a head that
dies under ``restart: on-failure`` (a death with ``head: true``): its owner has ``restart_head``
start a new one (a new input port, in the layout's ``in_target``) and rewires the senders upstream.
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
    # one Pea is served in this very process, unless the Pod must be able to grow (`changeable`: a
    # Flow's Pod, scaled, updated and restarted while it runs) and so needs a host for its replicas
    if int(args.get("parallel") or 1) == 1 and int(args.get("shards") or 1) == 1 and not args.get("changeable"):
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
    host_state = _Host(pod, float(args.get("timeout_ready") or 60))

    def ready() -> None:
        in_ports = [int(a.rsplit(":", 1)[1]) for a in pod.in_addresses]
        report({"state": "ready", "pid": os.getpid(), "in_addresses": pod.in_addresses,
                "ctrl_address": f"tcp://{host}:{port_ctrl}", "out_parts": pod.out_parts,
                "ports": {"port_in": in_ports[0], "ports_in": in_ports, "port_ctrl": port_ctrl},
                **host_state.layout()})

    def reported(change):  # a change that moves the Pod's inputs is reported again: jinad answers GET with it
        def run(cmd: dict) -> dict:
            out = change(cmd)
            ready()
            return out
        return run

    ready()
    parent = os.getppid()
    commands = Commands(ctrl, {"connect": lambda cmd: pod.connect(cmd["targets"]),
                               "status": host_state.status, "add_replica": reported(host_state.add_replica),
                               "drain": host_state.drain, "remove_replica": reported(host_state.remove_replica),
                               "restart_head": reported(host_state.restart_head),
                               "terminate": lambda cmd: None})
    poller = zmq.Poller()
    poller.register(ctrl, zmq.POLLIN)
    poller.register(wake, zmq.POLLIN)
    code = 0
    while not stop["flag"]:
        events = dict(poller.poll(50))
        if wake in events:
            drain(wake)
            if stop["flag"]:
                break
        if events.get(ctrl) and commands.serve_one() == "terminate":
            break
        failed = host_state.check()
        if failed:
            log.error("Pod %s: %s; stopping the Pod", pod.name, failed)
            code = 1
            break
        if die_with_parent and os.getppid() != parent:
            break
    pod.close()
    ctrl.close(linger=0)
    ctx.destroy(linger=0)
    return code


class _Host:
    """What a Pod host answers about its replicas, and the live changes it carries out."""

    def __init__(self, pod: Pod, timeout_ready: float):
        self.pod = pod
        self.timeout_ready = timeout_ready
        self.deaths: list[dict] = []
        self._dead_head = None  # a head whose death is reported, until a new one takes its place

    def layout(self) -> dict:
        pod = self.pod
        out = {"in_target": pod.in_target, "members": pod.members(), "idempotent": pod.idempotent(),
               "labels": {pod.set_name(s): {str(p.args["replica_id"]): p.label for p in row}
                          for s, row in enumerate(pod.peas)}}
        if pod.head is not None:  # the Gateway plans onto it too (see Pod.plan_sets)
            out["head"] = {"set": pod.head_set, **pod.plan_sets()[pod.head_set]}
        return out

    def status(self, cmd: dict) -> dict:
        return {"dead": self.pod.dead(), "pod": self.pod.describe(), "deaths": self.deaths, **self.layout()}

    def _find(self, label: str):
        for row in self.pod.peas:
            for p in row:
                if p.label == label:
                    return p
        raise JinadFabError(f"Pod {self.pod.name!r} has no replica {label!r}")

    def add_replica(self, cmd: dict) -> dict:
        if cmd.get("args"):
            self.pod.args.update(cmd["args"])  # this replica and every later one (a rolling update)
        p = self.pod.add_replica(int(cmd.get("shard") or 0), time.monotonic() + self.timeout_ready)
        self.pod.connect_head()
        return {"replica": p.label, **self.layout()}

    def drain(self, cmd: dict) -> dict:
        self.pod.draining.add(self._find(cmd["label"]).label)
        return self.layout()

    def restart_head(self, cmd: dict) -> dict:
        if self.pod.head is None or self.pod.head.alive():
            raise JinadFabError(f"Pod {self.pod.name!r} has no dead head to restart")
        p = self.pod.restart_head(time.monotonic() + self.timeout_ready)
        self._dead_head = None
        return {"replica": p.label, **self.layout()}

    def remove_replica(self, cmd: dict) -> dict:
        p = self._find(cmd["label"])
        shard = self.pod.shard_of_pea(p)
        self.pod.peas[shard].remove(p)
        self.pod.connect_head()
        self.pod.remove_replica(p)
        return self.layout()

    def check(self) -> str | None:
        """Take dead replicas out (reported in ``deaths``); a reason when the Pod cannot go on."""
        pod = self.pod
        head = pod.head
        if head is not None and not head.alive() and head is not self._dead_head:
            if (pod.args.get("restart") or "never") != "on-failure":
                return f"Pea {head.label} exited with code {head.returncode()}"
            self._dead_head = head
            self.deaths.append({"set": pod.head_set, "replica": pod.head_id, "label": head.label,
                                "code": head.returncode(), "head": True})
            log.error("Pod %s: its head %s exited with code %s", pod.name, head.label, head.returncode())
        for s, row in enumerate(pod.peas):
            for p in [p for p in row if not p.alive()]:
                code = p.returncode()
                row.remove(p)
                p.wait(1)
                self.deaths.append({"set": pod.set_name(s), "replica": str(p.args["replica_id"]),
                                    "label": p.label, "code": code})
                log.error("Pod %s: Pea %s exited with code %s", pod.name, p.label, code)
                pod.connect_head()
        # without restarts a Pod of one shard ends with its last replica; a Pod of several goes on while
        # one shard is left (its owner tells the Gateway which are missing, see runtime.shards)
        if (pod.args.get("restart") or "never") != "on-failure":
            empty = [pod.set_name(s) for s, row in enumerate(pod.peas) if not row]
            if empty and (pod.shards == 1 or len(empty) == len(pod.peas)):
                return f"no replica of {', '.join(empty)} is left"
        return None


# a Pod of one Pea hands that Pea everything but its counts, routing and process set-up (applied here)
_NOT_FOR_THE_PEA = frozenset({"parallel", "shards", "polling", "env", "gpus", "timeout_ready", "log_json",
                              "changeable", "shard_of"})


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
    if args.get("shard_of"):  # one shard of a Pod spread over hosts (issue 16): its store is that shard's
        pea_args["shard_id"], pea_args["shards"] = (int(x) for x in args["shard_of"])

    def as_pod(event: dict) -> None:
        if event.get("state") != "ready":
            report(event)
            return
        port_in, port_ctrl = event["port_in"], event["port_ctrl"]
        report({"state": "ready", "pid": os.getpid(), "in_addresses": [f"tcp://{connect_host(host)}:{port_in}"],
                "ctrl_address": f"tcp://{host}:{port_ctrl}", "out_parts": 1,
                "ports": {"port_in": port_in, "ports_in": [port_in], "port_ctrl": port_ctrl},
                "idempotent": event.get("idempotent") or []})

    return run_pea(pea_args, as_pod, die_with_parent)
