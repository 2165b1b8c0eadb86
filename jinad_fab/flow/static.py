"""Static wiring: every process of a Flow, with its addresses fixed before any of them starts.

``Flow.start`` wires Peas at run time: it starts them on free ports and then tells each where to
send (control ``connect``). An engine that starts containers on its own (Docker Compose,
Kubernetes) cannot do that, so :func:`plan` computes, from the Flow alone, one *service* per group
of identical processes, each with its role, its ports and everything its process needs - the
addresses of its peers as service names and fixed ports. The export writers
(:mod:`jinad_fab.deploy.export`) turn the plan into engine objects; each container runs
``python -m jinad_fab.launch static --yaml FLOW --role SERVICE``, which computes the same plan from
the same Flow and runs its own service's part (:mod:`jinad_fab.launch.static`).

Roles and wiring (``<pod>`` is the Pod's name as a DNS label):

* ``gateway``: binds native, HTTP and results ports; pushes to the root Pods' entries.
* ``pea``: a Pod of one Pea (one replica, one shard) is its own entry: it binds ``in`` on
  :data:`PORT_IN` under the service name ``<pod>``.
* ``head``: a Pod with replicas or shards gets a head as its entry (``<pod>``): it joins the
  parts of a request, routes it (shards: by ``polling``) and *binds* one PUSH per shard on
  ``PORT_HEAD_OUT + shard``;
* ``replica`` / ``shard``: the Pod's Peas (``<pod>-peas``, or ``<pod>-shard-<i>`` per shard)
  *connect* their ``in`` to their head's PUSH, so an engine may run any number of them
  (``deploy.replicas``, ``kubectl scale``) and ZeroMQ balances between those connected.

Every Pea pushes its answers to the entries of the Pods that need it (the last ones to the
Gateway's results port). Connections name services, never IPs: ZeroMQ resolves a name again on
each reconnection, so a peer that restarts elsewhere is found again (see
:func:`jinad_fab.runtime.sockets.watch_peers`). Control sockets bind on loopback only: the
container's own health probe is the one client.

A Flow that cannot be expressed this way is refused with every reason (:class:`NotExportable`).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from .. import gpus as _gpus
from ..errors import BadConfig
from ..runtime.pod import POD_OWN_KEYS, routing
from .builder import GATEWAY, POD_PROCESS_KEYS, Flow

ENGINES = ("compose", "kubernetes")
BIND = "0.0.0.0"
CTRL_HOST = "127.0.0.1"
PORT_IN = 5555
PORT_CTRL = 5556
PORT_RESULTS = 5557
PORT_HEAD_OUT = 5600  # + shard number
DEFAULT_HTTP = 8080
DEFAULT_NATIVE = 5570
DATA_DIR = "/workspace/.jinad-data"
"""Where an ``_index`` Pea keeps its data in a container: the mount point of its volume."""
STATEFUL_EXECUTORS = ("_index",)

_LABEL = re.compile(r"[^a-z0-9-]+")
_MAX_BASE = 45  # room for "-shard-63" and an engine's own suffixes within a 63-character DNS label


class NotExportable(BadConfig):
    """The Flow cannot run on the engine; ``reasons`` lists each thing that stands in the way."""

    def __init__(self, engine: str, reasons: list[str]):
        self.engine = engine
        self.reasons = list(reasons)
        super().__init__(f"this Flow cannot be exported to {engine}: " + "; ".join(self.reasons))


def dns_label(name: str) -> str:
    """A Pod name as a DNS label (what service names must be): lower case, digits and '-'."""
    label = _LABEL.sub("-", name.lower()).strip("-")
    if not label or not label[0].isalpha():
        label = "pod-" + label
    return label[:_MAX_BASE].rstrip("-")


def is_stateful(spec: dict[str, Any]) -> bool:
    """Pods whose Peas keep data that must outlive their container (a volume per shard)."""
    uses = spec.get("uses")
    if isinstance(uses, dict):
        uses = uses.get("jtype")
    return uses in STATEFUL_EXECUTORS


def refusals(flow: Flow, engine: str) -> list[str]:
    """Why ``flow`` cannot be exported to ``engine`` (empty: it can)."""
    reasons: list[str] = []
    owner: dict[str, str] = {GATEWAY: "the Gateway"}
    for name, spec in flow.pods.items():
        for svc in service_names(name, spec):
            if svc in owner:
                reasons.append(f"Pod {name!r} and {owner[svc]} get the same service name {svc!r}; rename one")
            else:
                owner[svc] = f"Pod {name!r}"
    for name, spec in flow.pods.items():
        if spec.get("host"):
            reasons.append(f"Pod {name!r} is pinned to the jinad host {spec['host']!r}; the engine places "
                           "containers itself (remove `host`, then constrain placement in the export)")
        for key in ("py_modules", "upload_files"):
            for path in spec.get(key) or ():
                if _outside(path):
                    reasons.append(f"Pod {name!r}: {key} {path!r} is not inside the Flow's folder, "
                                   "which is all the image holds")
        uses = spec.get("uses")
        if isinstance(uses, str) and uses.endswith((".yml", ".yaml", ".py")) and _outside(uses):
            reasons.append(f"Pod {name!r}: uses {uses!r} is not inside the Flow's folder, which is all the "
                           "image holds")
        if spec.get("dump_path") and posixpath.isabs(str(spec["dump_path"])):
            reasons.append(f"Pod {name!r}: dump_path {spec['dump_path']!r} is a path of this machine; give one "
                           "inside the Flow's folder (the image's /workspace)")
        if spec.get("workspace") and posixpath.isabs(str(spec["workspace"])):
            reasons.append(f"Pod {name!r}: workspace {spec['workspace']!r} is a path of this machine; give "
                           "a relative one (inside the container's /workspace)")
        if engine == "kubernetes" and is_stateful(spec) and spec["parallel"] > 1:
            reasons.append(f"Pod {name!r}: the {spec['parallel']} replicas of each _index shard share one store, "
                           "which on Kubernetes needs a ReadWriteMany volume this export does not make "
                           "(use more shards instead of replicas)")
        asked = _gpus.parse(spec.get("gpus"))
        if engine == "kubernetes" and isinstance(asked, tuple | str):
            reasons.append(f"Pod {name!r}: gpus {spec['gpus']!r} names devices; Kubernetes schedules "
                           "nvidia.com/gpu by count only (give a number)")
    if flow.args.get("workspace") and posixpath.isabs(str(flow.args["workspace"])):
        reasons.append(f"the Flow's workspace {flow.args['workspace']!r} is a path of this machine; give a "
                       "relative one")
    if flow.args.get("secure"):
        reasons.append("secure: true makes CURVE keys per Flow and hands them over TLS; an export would have to "
                       "write them into its files in clear (leave secure off and keep the Flow on the engine's "
                       "private network)")
    if flow.args.get("static_dir") and _outside(str(flow.args["static_dir"])):
        reasons.append(f"static_dir {flow.args['static_dir']!r} is not inside the Flow's folder")
    if engine not in ENGINES:
        reasons.append(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    return reasons


def service_names(name: str, spec: dict[str, Any]) -> list[str]:
    """Every name a Pod's services take, with compose's numbered replicas."""
    label = dns_label(name)
    shards, parallel = spec.get("shards", 1), spec.get("parallel", 1)
    if shards == 1 and parallel == 1:
        return [label]
    subs = [f"{label}-shard-{s}" for s in range(shards)] if shards > 1 else [f"{label}-peas"]
    out = [label, *subs]
    if parallel > 1:
        out += [f"{sub}-{r}" for sub in subs for r in range(parallel)]
    return out


def _outside(path: str) -> bool:
    norm = posixpath.normpath(str(path).replace("\\", "/"))
    return posixpath.isabs(norm) or norm == ".." or norm.startswith("../")


def gateway_ports(flow: Flow) -> dict[str, int]:
    """The Gateway's HTTP and native ports: the Flow's own, else the defaults."""
    args = flow.args
    http = args.get("port_http")
    native = args.get("port_native")
    if args.get("port_expose"):
        if args.get("protocol") == "http":
            http = args["port_expose"]
        else:
            native = args["port_expose"]
    return {"http": int(http or DEFAULT_HTTP), "native": int(native or DEFAULT_NATIVE)}


def plan(flow: Flow, engine: str = "compose", *, local_base_port: int | None = None) -> dict[str, Any]:
    """Every service of ``flow`` with its role, ports, runtime arguments and peers (JSON-able).

    ``local_base_port`` runs every service on this machine instead: loopback addresses and a
    distinct block of ports per service from that port on (for trying the static wiring without
    an engine).
    """
    reasons = refusals(flow, engine)
    if reasons:
        raise NotExportable(engine, reasons)
    order = flow.topological_order()
    pods = flow.pods
    leaves = flow._leaves()
    local = local_base_port is not None
    bind = "127.0.0.1" if local else BIND
    blocks: dict[str, dict[str, int]] = {}
    next_port = local_base_port or 0

    def ports(service: str, extra: int = 0) -> dict[str, int]:
        """The ports of one service: the fixed scheme, or a block of its own on this machine."""
        nonlocal next_port
        if service not in blocks:
            if local:
                blocks[service] = {"in": next_port, "ctrl": next_port + 1, "results": next_port + 2,
                                   "out": next_port + 3}
                next_port += 3 + max(extra, 1)
            else:
                blocks[service] = {"in": PORT_IN, "ctrl": PORT_CTRL, "results": PORT_RESULTS,
                                   "out": PORT_HEAD_OUT}
        return blocks[service]

    def host(service: str) -> str:
        return "127.0.0.1" if local else service

    gw_ports = gateway_ports(flow)
    gw_block = ports(GATEWAY)
    results_port = gw_block["results"]
    if not local:
        while results_port in (*gw_ports.values(), gw_block["ctrl"]):
            results_port += 1
    results = f"tcp://{host(GATEWAY)}:{results_port}"

    entries: dict[str, str] = {}
    parts_out: dict[str, int] = {}
    for name in order:
        spec = pods[name]
        label = dns_label(name)
        entries[name] = f"tcp://{host(label)}:{ports(label, spec['shards'])['in']}"
        parts_out[name] = spec["shards"]

    services: list[dict[str, Any]] = []
    roots = [n for n in order if GATEWAY in pods[n]["needs"]]
    gw_args = {"name": GATEWAY, "host": bind, "ctrl_host": CTRL_HOST, "static": True,
               "port_http": gw_ports["http"], "port_native": gw_ports["native"], "port_results": results_port,
               "port_ctrl": gw_block["ctrl"], "num_parts": sum(parts_out[n] for n in leaves), "upstream": leaves,
               "targets": [[entries[n]] for n in roots]}
    if flow.args.get("static_dir"):
        gw_args["static_dir"] = flow.args["static_dir"]
    services.append({"name": GATEWAY, "kind": "gateway", "role": "gateway", "pod": None, "replicas": 1,
                     "stateful": False, "ports": {"http": gw_ports["http"], "native": gw_ports["native"],
                                                  "results": results_port},
                     "ctrl_port": gw_block["ctrl"], "publish": [gw_ports["http"], gw_ports["native"]],
                     "connects_to": [entries[n] for n in roots], "args": gw_args, "gpus": None,
                     "env": dict(flow.args.get("env") or {}), "resources": None, "restart": "on-failure",
                     "timeout_ready": float(flow.args["timeout_ready"])})

    for name in order:
        spec = pods[name]
        label = dns_label(name)
        num_parts = sum(1 if n == GATEWAY else parts_out[n] for n in spec["needs"])
        outs = [[entries[d]] for d, s in pods.items() if name in s["needs"]]
        if name in leaves:
            outs.append([results])
        pea_opts = {k: spec[k] for k in (*POD_PROCESS_KEYS, "workspace") if spec.get(k) is not None}
        pea_opts = {k: v for k, v in pea_opts.items() if k not in POD_OWN_KEYS}
        if "workspace" not in pea_opts and flow.args.get("workspace"):
            pea_opts["workspace"] = flow.args["workspace"]
        stateful = is_stateful(spec)
        if stateful:  # on this machine: a folder next to where the services start
            pea_opts["workspace"] = posixpath.basename(DATA_DIR) if local else DATA_DIR
        common = {"pod": name, "gpus": spec.get("gpus"), "resources": spec.get("resources"),
                  "restart": spec.get("restart") or "on-failure",
                  "env": {**(flow.args.get("env") or {}), **(spec.get("env") or {})},
                  "timeout_ready": float(spec.get("timeout_ready") or flow.args["timeout_ready"])}
        shards, parallel = spec["shards"], spec["parallel"]
        block = ports(label, shards)
        if shards == 1 and parallel == 1:
            args = {**pea_opts, "name": name, "pod": name, "host": bind, "ctrl_host": CTRL_HOST, "static": True,
                    "port_in": block["in"], "port_ctrl": block["ctrl"], "num_parts": num_parts,
                    "upstream": [n for n in spec["needs"] if n != GATEWAY], "shard_id": None, "replica_id": 0,
                    "shards": 1, "parallel": 1, "targets": outs}
            services.append({"name": label, "kind": "pea", "role": "pea", "replicas": 1, "stateful": stateful,
                             "ports": {"in": block["in"]}, "ctrl_port": block["ctrl"], "publish": [],
                             "connects_to": [a for t in outs for a in t], "args": args, **common})
            continue
        head_outs = [f"tcp://{bind}:{block['out'] + s}" for s in range(shards)]
        head = {"name": f"{name}/head", "pod": name, "host": bind, "ctrl_host": CTRL_HOST, "static": True,
                "port_in": block["in"], "port_ctrl": block["ctrl"], "num_parts": num_parts,
                "upstream": [n for n in spec["needs"] if n != GATEWAY],
                "route": {"polling": routing(spec.get("polling")) if shards > 1 else {"*": "all"}},
                "targets": [{"bind": a} for a in head_outs]}
        services.append({"name": label, "kind": "pea", "role": "head", "replicas": 1, "stateful": False,
                         "ports": {"in": block["in"], **{f"shard-{s}": block["out"] + s for s in range(shards)}},
                         "ctrl_port": block["ctrl"], "publish": [], "connects_to": [], "args": head,
                         **{**common, "gpus": None, "resources": None}})
        for s in range(shards):
            sub = f"{label}-shard-{s}" if shards > 1 else f"{label}-peas"
            sub_block = ports(sub)
            pea_name = name + (f"/shard-{s}" if shards > 1 else "")
            args = {**pea_opts, "name": pea_name, "pod": name, "host": bind, "ctrl_host": CTRL_HOST,
                    "static": True, "in_connect": f"tcp://{host(label)}:{block['out'] + s}",
                    "port_ctrl": 0 if local and parallel > 1 else sub_block["ctrl"], "num_parts": 1,
                    "upstream": [n for n in spec["needs"] if n != GATEWAY],
                    "shard_id": s if shards > 1 else None, "replica_id": 0, "shards": shards,
                    "parallel": parallel, "targets": outs}
            services.append({"name": sub, "kind": "pea", "role": "shard" if shards > 1 else "replica",
                             "shard": s if shards > 1 else None, "replicas": parallel, "stateful": stateful,
                             "ports": {}, "ctrl_port": args["port_ctrl"], "publish": [],
                             "connects_to": [args["in_connect"], *(a for t in outs for a in t)], "args": args,
                             **common})
    return {"name": flow.args.get("name") or "flow", "engine": engine, "protocol": flow.protocol,
            "gateway": {"http": gw_ports["http"], "native": gw_ports["native"]}, "services": services}


def service(plan_: dict[str, Any], role: str) -> dict[str, Any]:
    """The service named ``role`` in a plan; BadConfig naming the known ones otherwise."""
    for svc in plan_["services"]:
        if svc["name"] == role:
            return svc
    known = ", ".join(s["name"] for s in plan_["services"])
    raise BadConfig(f"the Flow has no service {role!r} (its services: {known})")
